import { AppError } from '../errors.js';

/** QUEUE_FULL with the hint an HTTP layer needs for a Retry-After header. */
export class QueueFullError extends AppError {
  readonly retryAfterSeconds: number;

  constructor(retryAfterSeconds: number, details: string) {
    super('QUEUE_FULL', details);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Keeps AppErrors from execute intact so their codes reach the client unchanged. */
export function asAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new AppError('INFERENCE_FAILED', message, { cause: err });
}

/**
 * Cancellation is reported as DEADLINE_EXCEEDED so every batcher failure stays inside the error
 * catalogue; the abort reason is kept as `cause` for callers that need to tell the two apart.
 */
export function cancelledError(signal: AbortSignal): AppError {
  return new AppError('DEADLINE_EXCEEDED', 'The request was cancelled while queued.', { cause: signal.reason });
}
