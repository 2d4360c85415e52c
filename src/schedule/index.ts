export {
  Scheduler,
  TimerState,
  type SchedulerOptions,
  type SchedulerLogger,
  type RetryOptions,
  type ScheduleOptions,
  type ScheduledTimer,
} from './scheduler.js';
export {
  resolveRetryPolicy,
  backoffDelay,
  type RetryPolicy,
  type BackoffPolicy,
  type ResolvedRetryPolicy,
} from './retry-policy.js';
