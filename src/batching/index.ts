/**
 * Transport-free dynamic batcher with Triton Inference Server semantics: groups single-image
 * requests into batches for ONNX Runtime. The implementation class stays private; callers get
 * the `Batcher` interface from `createBatcher`.
 */
export { createBatcher } from './batcher.js';
export { QueueFullError } from './errors.js';
export type {
  BatchEvent,
  Batcher,
  BatcherEventMap,
  BatcherEventName,
  BatcherOptions,
  BatcherStats,
  ExpiredEvent,
  Lane,
  QueuedEvent,
  RejectedEvent,
  SubmitOptions,
} from './types.js';
