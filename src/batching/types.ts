import type { AppError } from '../errors.js';

export type Lane = 'interactive' | 'bulk';

export interface BatcherOptions<TIn, TOut> {
  /** Hard cap per batch. */
  maxBatchSize: number;
  /** Dispatch as soon as the queue reaches one of these (Triton preferred_batch_size). */
  preferredBatchSizes?: number[];
  /** Measured from the OLDEST waiting request; 0 dispatches whatever is queued whenever a slot is free. */
  maxQueueDelayMs: number;
  /** Total queued across lanes; beyond it submit() rejects with QUEUE_FULL. */
  maxQueueSize: number;
  /** Per-request deadline default; a request may only shorten it. */
  defaultTimeoutMs: number;
  /** Default 1, because CPU inference gains nothing from overlapping batches. */
  maxConcurrentBatches?: number;
  /** One output per item, same order. */
  execute: (items: TIn[], info: { lanes: Lane[] }) => Promise<TOut[]>;
}

export interface SubmitOptions {
  /** Default 'interactive'. */
  lane?: Lane;
  /** Can only shorten the batcher's defaultTimeoutMs; <= 0 rejects at once with DEADLINE_EXCEEDED. */
  timeoutMs?: number;
  /** Aborting while queued rejects with DEADLINE_EXCEEDED whose `cause` is `signal.reason`. */
  signal?: AbortSignal;
}

export interface BatcherStats {
  queued: number;
  queuedByLane: Record<Lane, number>;
  inFlightBatches: number;
  closed: boolean;
}

export interface BatchEvent {
  size: number;
  lanes: Lane[];
  queueWaitMs: number[];
  executeMs: number;
  ok: boolean;
  errorCode?: string;
}

export interface QueuedEvent {
  lane: Lane;
  /** Queue length across lanes right after this request joined. */
  queued: number;
  /** The effective timeout after applying the default cap. */
  timeoutMs: number;
}

/** A request refused by submit() without ever being queued. */
export interface RejectedEvent {
  lane: Lane;
  code: 'QUEUE_FULL' | 'SHUTTING_DOWN' | 'DEADLINE_EXCEEDED';
  error: AppError;
  retryAfterSeconds?: number;
}

/** A queued request removed before it reached a batch. */
export interface ExpiredEvent {
  lane: Lane;
  reason: 'deadline' | 'cancelled';
  queueWaitMs: number;
}

export interface BatcherEventMap {
  batch: BatchEvent;
  queued: QueuedEvent;
  rejected: RejectedEvent;
  expired: ExpiredEvent;
}

export type BatcherEventName = keyof BatcherEventMap;

export interface Batcher<TIn, TOut> {
  /** One promise per request. */
  submit(item: TIn, options?: SubmitOptions): Promise<TOut>;
  stats(): BatcherStats;
  /** Stop accepting (SHUTTING_DOWN), finish everything queued and in flight, then resolve. */
  drain(): Promise<void>;
  on<K extends BatcherEventName>(event: K, listener: (e: BatcherEventMap[K]) => void): void;
  off<K extends BatcherEventName>(event: K, listener: (e: BatcherEventMap[K]) => void): void;
}
