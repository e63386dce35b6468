/**
 * Admission control for request bodies: a budget of in-flight body bytes and in-flight requests,
 * decided from the headers alone, before any byte of the body is read. Without it every upload is
 * buffered whole before the screening queue can say it is full, so a burst of large photos grows
 * the heap past the pod's memory limit (issue 12, defect 3).
 *
 * A request with a Content-Length reserves exactly that many bytes: Node's HTTP parser never hands
 * more than Content-Length bytes to the body. A request without one (chunked) reserves the worst
 * case, the body limit, because admission has to be decided before its size is known; counting as
 * the bytes stream would mean admitting first and failing half-way, after memory is spent. Clients
 * that send files (browsers, curl, fetch with a Blob, FormData or Buffer) set Content-Length, so
 * the pessimism only costs chunked senders their concurrency, never the pod its memory.
 *
 * The reservation is held while the body is read and screened: it is released when the handler
 * settles or the parser fails, not when the response closes. A client that goes away does not
 * stop its screening, which still holds the body, and a pipelined request on a destroyed socket
 * may never see its response close at all.
 */
import { EventEmitter } from 'node:events';
import type { Request } from 'express';
import { AppError } from '../../errors.js';

export interface AdmissionLimits {
  /** Sum of the reserved body sizes of requests being read or screened. */
  maxInFlightBodyBytes: number;
  /** Requests with a body being read or screened. */
  maxInFlightRequests: number;
  /** Largest body a single request may send. */
  bodyLimitBytes: number;
}

export type RejectionReason = 'body_bytes' | 'requests' | 'too_large';
export const REJECTION_REASONS: readonly RejectionReason[] = ['body_bytes', 'requests', 'too_large'];

export interface AdmissionEvents { rejected: [{ reason: RejectionReason; reserve: number }] }

/** Seconds a client is asked to wait: screening a full budget takes about that long on one pod. */
const RETRY_AFTER_SECONDS = 1;

export class Admission extends EventEmitter<AdmissionEvents> {
  #bytes = 0;
  #requests = 0;

  constructor(private readonly limits: Readonly<AdmissionLimits>) {
    super();
  }

  inFlight(): { bodyBytes: number; requests: number } {
    return { bodyBytes: this.#bytes, requests: this.#requests };
  }

  /** The bytes a request must reserve, or null when its headers make it too large whatever the load. */
  reserveFor(req: Request): number | null {
    const header = req.headers['content-length'];
    if (header === undefined) return this.limits.bodyLimitBytes;
    const length = Number(header);
    return length > this.limits.bodyLimitBytes ? null : length;
  }

  /**
   * Admits a request or refuses it (413 REQUEST_BODY_TOO_LARGE, 503 QUEUE_FULL). An admitted
   * request must call release() once it no longer holds its body; release is idempotent.
   */
  admit(req: Request): { release(): void } | AppError {
    const reserve = this.reserveFor(req);
    if (reserve === null) {
      this.emit('rejected', { reason: 'too_large', reserve: Number(req.headers['content-length']) });
      return new AppError('REQUEST_BODY_TOO_LARGE', `Content-Length ${req.headers['content-length']} exceeds the limit of ${this.limits.bodyLimitBytes} bytes.`);
    }
    const reason: RejectionReason | null = this.#requests + 1 > this.limits.maxInFlightRequests ? 'requests'
      : this.#bytes + reserve > this.limits.maxInFlightBodyBytes ? 'body_bytes' : null;
    if (reason) {
      this.emit('rejected', { reason, reserve });
      return Object.assign(new AppError('QUEUE_FULL', 'Too many uploads in flight on this instance.'), { retryAfterSeconds: RETRY_AFTER_SECONDS });
    }
    this.#bytes += reserve;
    this.#requests += 1;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#bytes -= reserve;
        this.#requests -= 1;
      },
    };
  }
}
