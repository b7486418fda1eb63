import { AppError, ValidationError } from '../lib/errors';

/**
 * HTTP-only members of the AppError family. app.ts is the one place that turns errors
 * into responses; these carry the status for the cases that are not domain errors.
 */
export class HttpError extends AppError {
  constructor(
    readonly status: 401 | 403 | 413 | 415 | 503,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

/** A 400 with a specific code (invalid_cron, invalid_json, ...) instead of invalid_input. */
export class BadRequestError extends ValidationError {
  constructor(code: string, message: string, details?: unknown) {
    super(message, details);
    // `code` is a readonly field of AppError set by its constructor; a subclass
    // narrowing it is the only way to keep ValidationError's 400 with another code.
    (this as { code: string }).code = code;
  }
}

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

export const errorBody = (code: string, message: string, details?: unknown): ErrorBody => ({
  error: details === undefined ? { code, message } : { code, message, details },
});
