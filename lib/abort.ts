/**
 * The reason a signal aborted, to reject with as is (as fetch and node:timers/promises
 * do). `AbortSignal.reason` is typed `any`; it is an Error here: a DOMException
 * (AbortError, TimeoutError) unless abort() was given a reason, and every abort() in
 * this codebase passes an Error (StepAbortedError).
 */
export const abortReason = (signal: AbortSignal): Error => signal.reason as Error;
