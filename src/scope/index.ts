/**
 * The run scope (DESIGN section 2, spec KS-4.9): the run a piece of code belongs to, carried by
 * `AsyncLocalStorage`, and child runs spawned from it.
 */
export {
  runInScope,
  runOutsideScope,
  runScopeOf,
  runInRunScope,
  currentRunScope,
  inheritContext,
  childRunId,
  childLineage,
  scopeContext,
  type RunScope,
} from './run-scope.js';
export {
  spawnChildRun,
  SPAWN_CAPABILITY,
  type ChildRun,
  type SpawnChildRunOptions,
} from './spawn-child-run.js';
