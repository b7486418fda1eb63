import { redact } from './redact';

/**
 * One error family with a string `code`. Step authors throw NonRetryableError /
 * RetryAfterError; only the worker maps them to BullMQ behaviour and only server/app.ts
 * maps them to HTTP statuses. Messages never contain secrets.
 */
export class AppError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The step will fail the same way on every attempt: do not retry it. */
export class NonRetryableError extends AppError {
  constructor(message: string, details?: unknown) {
    super('non_retryable', message, details);
  }
}

/** Retry, but not before `retryAfterMs` (e.g. an HTTP 429 with Retry-After). */
export class RetryAfterError extends AppError {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super('retry_after', message);
  }
}

/** The step was aborted because its run was cancelled or it ran past its timeout. */
export class StepAbortedError extends AppError {
  constructor(message: string, readonly reason: 'cancelled' | 'timeout' | 'shutdown') {
    super(`step_${reason}`, message);
  }
}

/** Thrown by a streaming step whose producer is not running: the step is handed back
 *  (released, its job delayed by `delayMs`, no retry spent) instead of holding a worker
 *  slot while it waits (workflows/engine/ARCHITECTURE.md "Overlapped steps"). */
export class StepYieldError extends AppError {
  constructor(message: string, readonly delayMs = 1_000) {
    super('step_yield', message);
  }
}

export class NotFoundError extends AppError {
  constructor(what: string) {
    super('not_found', `${what} not found`);
  }
}

/** An operator action that the current state does not allow (HTTP 409). */
export class ConflictError extends AppError {
  constructor(code: string, message: string, details?: unknown) {
    super(code, message, details);
  }
}

export class ValidationError extends AppError {
  constructor(message: string, details?: unknown) {
    super('invalid_input', message, details);
  }
}

// Yespo's HTTP failures, classified where they are raised (steps/sources/yespo.ts).

/** Worth another try after a pause: 5xx, 408, connection reset, timeout, cut-off body. */
export class YespoTransientError extends AppError {
  constructor(message: string) {
    super('yespo_transient', redact(message));
  }
}

/** HTTP 429. retryAfterMs is null when the answer had no usable Retry-After. */
export class YespoRateLimitedError extends AppError {
  constructor(message: string, readonly retryAfterMs: number | null) {
    super('yespo_rate_limited', redact(message));
  }
}
