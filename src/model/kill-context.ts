/**
 * The words of a halt's target: the context attributes a halt can name, a selector (which of
 * them a halt names) and the context an effect is evaluated in. It imports nothing, so the errors
 * (`src/errors.ts`) can name a flip without importing the model's parsers, which throw them.
 */

/** The evaluation-context attributes a halt can name (DESIGN section 2). KS-1.1.1 */
export const SELECTOR_KEYS = ['tenant', 'feature', 'runId', 'capability'] as const;
export type SelectorKey = (typeof SELECTOR_KEYS)[number];

/**
 * A partial evaluation context. A halt matches a context when every attribute it names is equal;
 * the empty selector matches everything (the global halt).
 */
export type Selector = { readonly [K in SelectorKey]?: string };

/**
 * The attributes the kill switch reads from an evaluation context. Other attributes are ignored.
 * `runPath` is the run's ancestry, root first, its own `runId` last (DESIGN section 2): a halt
 * naming `runId: X` matches every context whose `runPath` contains X. A context without `runPath`
 * is the path of one (`[runId]`). KS-1.5.1
 */
export type KillContext = { readonly [K in SelectorKey]?: string | undefined } & {
  readonly runPath?: readonly string[] | undefined;
};
