import type { BatcherOptions } from './types.js';

export interface ResolvedOptions<TIn, TOut> extends BatcherOptions<TIn, TOut> {
  /** Sorted largest first, so the first one that fits is the largest that fits. */
  preferredBatchSizes: number[];
  maxConcurrentBatches: number;
}

const isPositiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
const isNonNegativeInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;

/**
 * Collects every problem before throwing, so a bad config file is fixed in one round trip rather
 * than one error at a time. A plain TypeError, not a AppError: this is a programming or
 * deployment mistake, never something a client should see as an API error.
 */
export function resolveOptions<TIn, TOut>(options: BatcherOptions<TIn, TOut>): ResolvedOptions<TIn, TOut> {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('Invalid batcher options: expected an options object.');
  }
  const o = options as unknown as Record<string, unknown>;
  const problems: string[] = [];
  const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : String(v));

  const maxBatchOk = isPositiveInt(o.maxBatchSize);
  if (!maxBatchOk) problems.push(`maxBatchSize must be a positive integer (got ${show(o.maxBatchSize)}).`);

  const preferred = o.preferredBatchSizes;
  if (preferred !== undefined) {
    if (!Array.isArray(preferred)) {
      problems.push(`preferredBatchSizes must be an array of positive integers (got ${show(preferred)}).`);
    } else {
      const seen = new Set<number>();
      for (const size of preferred as unknown[]) {
        if (!isPositiveInt(size)) {
          problems.push(`preferredBatchSizes entries must be positive integers (got ${show(size)}).`);
        } else if (maxBatchOk && size > (o.maxBatchSize as number)) {
          problems.push(`preferredBatchSizes entry ${size} exceeds maxBatchSize (${show(o.maxBatchSize)}).`);
        } else if (seen.has(size)) {
          problems.push(`preferredBatchSizes lists ${size} more than once.`);
        }
        if (isPositiveInt(size)) seen.add(size);
      }
    }
  }

  const delayOk = isNonNegativeInt(o.maxQueueDelayMs);
  if (!delayOk) problems.push(`maxQueueDelayMs must be a non-negative integer (got ${show(o.maxQueueDelayMs)}).`);

  if (!isPositiveInt(o.maxQueueSize)) {
    problems.push(`maxQueueSize must be a positive integer (got ${show(o.maxQueueSize)}).`);
  } else if (maxBatchOk && o.maxQueueSize < (o.maxBatchSize as number)) {
    // Batches are formed only from queued requests, so a full batch could never form.
    problems.push(`maxQueueSize (${o.maxQueueSize}) must be at least maxBatchSize (${show(o.maxBatchSize)}).`);
  }

  if (!isPositiveInt(o.defaultTimeoutMs)) {
    problems.push(`defaultTimeoutMs must be a positive integer (got ${show(o.defaultTimeoutMs)}).`);
  } else if (delayOk && o.defaultTimeoutMs <= (o.maxQueueDelayMs as number)) {
    // Otherwise a lone request under light load always expires before the delay releases it.
    problems.push(
      `defaultTimeoutMs (${o.defaultTimeoutMs}) must be greater than maxQueueDelayMs (${show(o.maxQueueDelayMs)}).`,
    );
  }

  if (o.maxConcurrentBatches !== undefined && !isPositiveInt(o.maxConcurrentBatches)) {
    problems.push(`maxConcurrentBatches must be a positive integer (got ${show(o.maxConcurrentBatches)}).`);
  }

  if (typeof o.execute !== 'function') problems.push(`execute must be a function (got ${typeof o.execute}).`);

  if (problems.length > 0) {
    throw new TypeError(`Invalid batcher options:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
  return {
    ...options,
    preferredBatchSizes: [...(options.preferredBatchSizes ?? [])].sort((a, b) => b - a),
    maxConcurrentBatches: options.maxConcurrentBatches ?? 1,
  };
}
