import { AppError } from '../errors.js';
import { asAppError, cancelledError, QueueFullError } from './errors.js';
import { resolveOptions, type ResolvedOptions } from './options.js';
import type {
  Batcher,
  BatcherEventMap,
  BatcherEventName,
  BatcherOptions,
  BatcherStats,
  Lane,
  SubmitOptions,
} from './types.js';

interface Pending<TIn, TOut> {
  item: TIn;
  lane: Lane;
  enqueuedAt: number;
  deadline: number;
  resolve: (value: TOut) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

type Listener = (e: never) => void;

const LANES: readonly Lane[] = ['interactive', 'bulk'];
/** Enough batches to smooth out one slow outlier without lagging a real slowdown for long. */
const EXECUTE_HISTORY = 16;
/** setTimeout overflows (and fires at once) past this. */
const MAX_TIMER_MS = 0x7fffffff;

// performance.now(), not Date.now(): wall-clock jumps must not release or expire requests.
const now = () => performance.now();

class DynamicBatcher<TIn, TOut> implements Batcher<TIn, TOut> {
  private readonly queues: Record<Lane, Pending<TIn, TOut>[]> = { interactive: [], bulk: [] };
  private readonly listeners = new Map<BatcherEventName, Set<Listener>>();
  private readonly recentExecuteMs: number[] = [];
  private inFlight = 0;
  private closed = false;
  private drained: Promise<void> | undefined;
  private resolveDrained: (() => void) | undefined;
  // A single timer serves both the oldest-request delay and the nearest deadline.
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt = Infinity;
  private pumping = false;
  private pumpAgain = false;

  constructor(private readonly opts: ResolvedOptions<TIn, TOut>) {}

  submit(item: TIn, options: SubmitOptions = {}): Promise<TOut> {
    const { lane = 'interactive', timeoutMs, signal } = options;
    if (lane !== 'interactive' && lane !== 'bulk') {
      return Promise.reject(new TypeError(`Unknown lane ${JSON.stringify(lane)}.`));
    }
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs))) {
      return Promise.reject(new TypeError(`timeoutMs must be a number (got ${String(timeoutMs)}).`));
    }
    if (this.closed) {
      return this.refuse(lane, new AppError('SHUTTING_DOWN', 'The batcher is draining.'));
    }
    if (signal?.aborted) return this.refuse(lane, cancelledError(signal));
    const timeout = Math.min(this.opts.defaultTimeoutMs, timeoutMs ?? Infinity);
    // Callers that forward a remaining budget can reach 0; that is a missed deadline, not a bug.
    if (timeout <= 0) {
      return this.refuse(lane, new AppError('DEADLINE_EXCEEDED', 'The request had no time left.'));
    }
    if (this.queued >= this.opts.maxQueueSize) {
      const retry = this.retryAfterSeconds();
      const detail = `${this.queued} requests are waiting; retry in ${retry} s.`;
      return this.refuse(lane, new QueueFullError(retry, detail));
    }

    return new Promise<TOut>((resolve, reject) => {
      const enqueuedAt = now();
      const entry: Pending<TIn, TOut> = {
        item, lane, enqueuedAt, deadline: enqueuedAt + timeout, resolve, reject, signal, onAbort: undefined,
      };
      if (signal) {
        entry.onAbort = () => this.removeQueued(entry, 'cancelled', cancelledError(signal));
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.queues[lane].push(entry);
      this.emit('queued', { lane, queued: this.queued, timeoutMs: timeout });
      this.pump();
    });
  }

  stats(): BatcherStats {
    const { interactive, bulk } = this.queues;
    return {
      queued: this.queued,
      queuedByLane: { interactive: interactive.length, bulk: bulk.length },
      inFlightBatches: this.inFlight,
      closed: this.closed,
    };
  }

  drain(): Promise<void> {
    if (!this.drained) {
      this.closed = true;
      this.drained = new Promise<void>((resolve) => {
        this.resolveDrained = resolve;
      });
      this.pump();
    }
    return this.drained;
  }

  on<K extends BatcherEventName>(event: K, listener: (e: BatcherEventMap[K]) => void): void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener);
  }

  off<K extends BatcherEventName>(event: K, listener: (e: BatcherEventMap[K]) => void): void {
    this.listeners.get(event)?.delete(listener as Listener);
  }

  private get queued(): number {
    return this.queues.interactive.length + this.queues.bulk.length;
  }

  private emit<K extends BatcherEventName>(event: K, payload: BatcherEventMap[K]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      try {
        (listener as (e: BatcherEventMap[K]) => void)(payload);
      } catch (err) {
        // A faulty metrics listener must not leave the queue half-updated; surface it like an
        // EventEmitter would, but outside our bookkeeping.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  private refuse(lane: Lane, error: AppError): Promise<never> {
    const code = error.code as 'QUEUE_FULL' | 'SHUTTING_DOWN' | 'DEADLINE_EXCEEDED';
    const retryAfterSeconds = error instanceof QueueFullError ? error.retryAfterSeconds : undefined;
    this.emit('rejected', { lane, code, error, ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }) });
    return Promise.reject(error);
  }

  private retryAfterSeconds(): number {
    const history = this.recentExecuteMs;
    const avgMs = history.length ? history.reduce((a, b) => a + b, 0) / history.length : 0;
    const batchesAhead = Math.ceil(this.queued / this.opts.maxBatchSize) + this.inFlight;
    const seconds = (batchesAhead * avgMs) / this.opts.maxConcurrentBatches / 1000;
    return Math.max(1, Math.ceil(seconds));
  }

  private detach(entry: Pending<TIn, TOut>): void {
    if (entry.signal && entry.onAbort) entry.signal.removeEventListener('abort', entry.onAbort);
  }

  private removeQueued(entry: Pending<TIn, TOut>, reason: 'deadline' | 'cancelled', error: AppError): void {
    const queue = this.queues[entry.lane];
    const index = queue.indexOf(entry);
    if (index < 0) return; // already batched: executing requests run to completion
    queue.splice(index, 1);
    this.reject(entry, reason, error);
    this.pump();
  }

  private reject(entry: Pending<TIn, TOut>, reason: 'deadline' | 'cancelled', error: AppError): void {
    this.detach(entry);
    entry.reject(error);
    this.emit('expired', { lane: entry.lane, reason, queueWaitMs: now() - entry.enqueuedAt });
  }

  /** Re-entrant calls (from listeners or a synchronous execute) are folded into the running pass. */
  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.pumpOnce();
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private pumpOnce(): void {
    const t = now();
    // Expire first, so a request is never dispatched after its deadline merely because the
    // timer had not fired yet.
    for (const lane of LANES) {
      const queue = this.queues[lane];
      if (!queue.some((e) => e.deadline <= t)) continue;
      const expired = queue.filter((e) => e.deadline <= t);
      this.queues[lane] = queue.filter((e) => e.deadline > t);
      const error = new AppError('DEADLINE_EXCEEDED', 'It expired while queued.');
      for (const entry of expired) this.reject(entry, 'deadline', error);
    }
    while (this.inFlight < this.opts.maxConcurrentBatches) {
      const size = this.readySize(t);
      if (size === 0) break;
      this.launch(this.take(size));
    }
    this.reschedule(t);
    if (this.closed && this.queued === 0 && this.inFlight === 0) this.resolveDrained?.();
  }

  private oldestEnqueuedAt(): number {
    return Math.min(this.queues.interactive[0]?.enqueuedAt ?? Infinity, this.queues.bulk[0]?.enqueuedAt ?? Infinity);
  }

  private readySize(t: number): number {
    const queued = this.queued;
    const { maxBatchSize, maxQueueDelayMs, preferredBatchSizes } = this.opts;
    if (queued === 0) return 0;
    if (queued >= maxBatchSize) return maxBatchSize;
    // Overdue work (or a drain, when nothing more can arrive) goes out whole rather than trimmed
    // to a preferred size, which would strand the remainder past its delay.
    if (this.closed || t - this.oldestEnqueuedAt() >= maxQueueDelayMs) return queued;
    return preferredBatchSizes.find((p) => p <= queued) ?? 0;
  }

  private take(size: number): Pending<TIn, TOut>[] {
    const batch = this.queues.interactive.splice(0, size);
    return batch.concat(this.queues.bulk.splice(0, size - batch.length));
  }

  private launch(batch: Pending<TIn, TOut>[]): void {
    this.inFlight++;
    for (const entry of batch) this.detach(entry);
    const startedAt = now();
    const lanes = batch.map((e) => e.lane);
    const queueWaitMs = batch.map((e) => startedAt - e.enqueuedAt);
    let result: Promise<TOut[]>;
    try {
      result = Promise.resolve(this.opts.execute(batch.map((e) => e.item), { lanes: [...lanes] }));
    } catch (err) {
      result = Promise.reject(err);
    }
    result
      .then((outputs) => {
        if (!Array.isArray(outputs) || outputs.length !== batch.length) {
          const got = Array.isArray(outputs) ? outputs.length : typeof outputs;
          throw new AppError('INFERENCE_FAILED', `execute returned ${got} outputs for ${batch.length} items.`);
        }
        return outputs;
      })
      .then(
        (outputs) => this.finish(batch, startedAt, lanes, queueWaitMs, outputs, undefined),
        (err: unknown) => this.finish(batch, startedAt, lanes, queueWaitMs, [], asAppError(err)),
      );
  }

  private finish(
    batch: Pending<TIn, TOut>[],
    startedAt: number,
    lanes: Lane[],
    queueWaitMs: number[],
    outputs: TOut[],
    error: AppError | undefined,
  ): void {
    const executeMs = now() - startedAt;
    this.inFlight--;
    this.recentExecuteMs.push(executeMs);
    if (this.recentExecuteMs.length > EXECUTE_HISTORY) this.recentExecuteMs.shift();
    batch.forEach((entry, i) => (error ? entry.reject(error) : entry.resolve(outputs[i] as TOut)));
    this.emit('batch', {
      size: batch.length, lanes, queueWaitMs, executeMs, ok: !error, ...(error ? { errorCode: error.code } : {}),
    });
    this.pump();
  }

  private reschedule(t: number): void {
    let next = Infinity;
    if (this.queued > 0) {
      // With every slot busy the delay cannot release anything; finish() re-pumps instead.
      if (this.inFlight < this.opts.maxConcurrentBatches) next = this.oldestEnqueuedAt() + this.opts.maxQueueDelayMs;
      // A linear scan is fine: the queue is bounded by maxQueueSize and this runs once per event.
      for (const lane of LANES) for (const e of this.queues[lane]) next = Math.min(next, e.deadline);
    }
    if (next === this.timerAt) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = next;
    if (next === Infinity) return;
    // At least 1 ms: timers can fire a hair early, and pumpOnce then simply re-arms.
    const delay = Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(next - t)));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.pump();
    }, delay);
  }
}

export function createBatcher<TIn, TOut>(options: BatcherOptions<TIn, TOut>): Batcher<TIn, TOut> {
  return new DynamicBatcher(resolveOptions(options));
}
