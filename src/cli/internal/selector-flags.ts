import { parseSelector, type Selector } from '../../model/selector.js';
import { UsageError } from './remote.js';

/** The selector flags of `flip` and `resume`. */
export const SELECTOR_OPTIONS = {
  tenant: { type: 'string' },
  capability: { type: 'string' },
  run: { type: 'string' },
  feature: { type: 'string' },
  global: { type: 'boolean', default: false },
} as const;

/** The `--help` lines of {@link SELECTOR_OPTIONS}. */
export const SELECTOR_HELP = `  --tenant <t>       every run of tenant t
  --feature <f>      every run of feature f
  --run <id>         one run and every run it spawned (its descendants, in any process)
  --capability <c>   one tool or capability (combine with --tenant to narrow it)
  --global           everything (refused together with any other selector flag)`;

/**
 * The selector the flags name. At least one flag is required, so an empty command line never
 * means "global" by accident; `--global` must be explicit and alone. KS-5.3.3
 *
 * @throws {UsageError} when no selector flag, or `--global` with others
 */
export function selectorFromFlags(values: {
  tenant?: string | undefined;
  capability?: string | undefined;
  run?: string | undefined;
  feature?: string | undefined;
  global?: boolean | undefined;
}): Selector {
  const named = {
    ...(values.tenant === undefined ? {} : { tenant: values.tenant }),
    ...(values.feature === undefined ? {} : { feature: values.feature }),
    ...(values.run === undefined ? {} : { runId: values.run }),
    ...(values.capability === undefined ? {} : { capability: values.capability }),
  };
  const n = Object.keys(named).length;
  if (values.global === true && n > 0)
    throw new UsageError('--global cannot be combined with another selector flag');
  if (values.global !== true && n === 0) {
    throw new UsageError(
      'name what to flip: --tenant, --feature, --run, --capability, or --global',
    );
  }
  try {
    return parseSelector(named);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
