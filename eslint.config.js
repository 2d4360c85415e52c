import path from 'node:path';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Two local rules (a regular expression and a look at the comment before an export do not need a
// plugin): they keep what is true of the tree (CONVENTIONS: "Shape", "Docs and packaging").

/** File names in kebab-case (`flip-log-store.ts`), dots between parts (`x.test.ts`). */
const KEBAB_CASE = /^[a-z0-9]+(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)*$/;

const kebabCaseFileName = {
  meta: {
    type: 'suggestion',
    docs: { description: 'file names in kebab-case' },
    schema: [],
    messages: { notKebab: 'file name "{{name}}" is not kebab-case (e.g. flip-log-store.ts)' },
  },
  create(context) {
    return {
      Program(node) {
        const name = path.basename(context.filename);
        if (!KEBAB_CASE.test(name)) context.report({ node, messageId: 'notKebab', data: { name } });
      },
    };
  },
};

/**
 * Every exported declaration has a TSDoc comment (`/** ... *\/`) right before it; line comments
 * (an eslint directive, say) may stand between. The type naming the values of an `as const`
 * object (`export type Level = (typeof Level)[keyof typeof Level]`) shares the object's comment.
 */
const tsdocOnExports = {
  meta: {
    type: 'suggestion',
    docs: { description: 'a TSDoc comment on every exported declaration' },
    schema: [],
    messages: { missing: 'exported {{name}} has no TSDoc comment (/** what it does */)' },
  },
  create(context) {
    const source = context.sourceCode;
    function check(node) {
      const decl = node.declaration;
      if (!decl || decl.type === 'Identifier' || decl.type.endsWith('Expression')) return;
      if (
        decl.type === 'TSTypeAliasDeclaration' &&
        decl.typeAnnotation.type === 'TSIndexedAccessType'
      )
        return;
      let next = node;
      const before = source.getCommentsBefore(node);
      for (let i = before.length - 1; i >= 0; i--) {
        const c = before[i];
        if (c.loc.end.line < next.loc.start.line - 1) break; // a blank line: not this export's
        if (c.type === 'Block') {
          if (c.value.startsWith('*')) return;
          break;
        }
        next = c;
      }
      const id = decl.id ?? decl.declarations?.[0]?.id;
      context.report({ node, messageId: 'missing', data: { name: id?.name ?? 'declaration' } });
    }
    return { ExportNamedDeclaration: check, ExportDefaultDeclaration: check };
  },
};

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      '.venv-ci/**',
      'reports/**',
      'coverage/**',
      '**/*.d.ts',
    ],
  },
  {
    // A disable directive that no longer disables anything hides nothing but misleads.
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: {
      local: {
        rules: { 'kebab-case-file-name': kebabCaseFileName, 'tsdoc-on-exports': tsdocOnExports },
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
      'local/kebab-case-file-name': 'error',
    },
  },
  {
    // The library: what `src/` and `providers/` export is documented where it is declared.
    files: ['src/**/*.ts', 'providers/**/*.ts'],
    rules: { 'local/tsdoc-on-exports': 'error' },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        URL: 'readonly',
      },
    },
  },
);
