/**
 * The unlabeled pool: a sample of screened photos kept on disk as SSLD's unlabeled data. The
 * format is read by the training toolchain, so it is fixed:
 *
 *   <dir>/images/<first 2 hex of sha256>/<sha256>.<jpg|png|webp|gif|tiff>
 *   <dir>/index.jsonl   one PoolEntry per line, appended after its image is in place
 *
 * Sampling must never cost a screening request anything: offer() decides synchronously and queues
 * the write; one writer drains the queue, and when the queue is full the sample is dropped instead
 * of waiting. One process writes a directory (give each replica its own).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { appendFile, mkdir, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors.js';
import type { ScreenResult, Source } from './service.js';
import { POOL_IMAGES, POOL_INDEX, readIndex, type PoolEntry, type PoolMeta } from '../contracts/pool.js';

export { POOL_IMAGES, POOL_INDEX, readPool, type PoolEntry, type PoolMeta } from '../contracts/pool.js';

const EXTENSIONS: Record<string, string> = { jpeg: 'jpg', png: 'png', webp: 'webp', gif: 'gif', tiff: 'tiff' };
// Samples hold their image bytes until written; cap the bytes too, not just the count, so a burst of
// 20 MB photos cannot pin hundreds of megabytes while the disk is slow.
const PENDING_BYTES_LIMIT = 64 * 1024 * 1024;

export type PoolOutcome = 'stored' | 'duplicate' | 'full' | 'dropped' | 'failed';

export interface PoolEvents {
  sample: { outcome: PoolOutcome; images: number };
  failed: { sha256: string; error: Error };
}

export interface PoolOptions {
  directory: string;
  sampleRate: number;
  maxImages: number;
  maxPendingWrites: number;
  sources: readonly Source[];
  /** [0, 1); tests pass () => 0 to sample everything. */
  random?: () => number;
}

export interface PoolOffer { bytes: Uint8Array; result: ScreenResult; source: Source; meta?: PoolMeta }

export interface PoolStatus { directory: string; images: number; pending: number }

export interface PoolSampler {
  /** Decides at once and never throws or waits: the write, if any, happens later. */
  offer(sample: PoolOffer): void;
  status(): PoolStatus;
  /** Resolves once every write queued so far has finished. */
  settle(): Promise<void>;
  on<K extends keyof PoolEvents>(event: K, listener: (e: PoolEvents[K]) => void): void;
}

interface Pending { entry: PoolEntry; bytes: Uint8Array }

class Sampler extends EventEmitter implements PoolSampler {
  private readonly known = new Set<string>();
  private readonly queue: Pending[] = [];
  private pendingBytes = 0;
  private stored = 0;
  private draining: Promise<void> | null = null;
  private readonly random: () => number;

  constructor(private readonly options: PoolOptions, existing: readonly PoolEntry[]) {
    super();
    this.random = options.random ?? Math.random;
    for (const e of existing) this.known.add(e.sha256);
    this.stored = this.known.size;
  }

  status(): PoolStatus {
    return { directory: this.options.directory, images: this.stored, pending: this.queue.length };
  }

  offer({ bytes, result, source, meta }: PoolOffer): void {
    const o = this.options;
    if (result.cached || !o.sources.includes(source)) return;
    if (o.sampleRate <= 0 || this.random() >= o.sampleRate) return;
    const { sha256 } = result;
    if (this.known.has(sha256)) return this.count('duplicate');
    // Queued writes count against the limit, so a burst cannot overshoot it.
    if (this.known.size >= o.maxImages) return this.count('full');
    if (this.queue.length >= o.maxPendingWrites || this.pendingBytes + bytes.length > PENDING_BYTES_LIMIT) return this.count('dropped');
    const ext = EXTENSIONS[result.image.format];
    if (!ext) return this.count('failed');
    const first = result.classifiers[0]?.top[0];
    const entry: PoolEntry = {
      sha256,
      file: `${POOL_IMAGES}/${sha256.slice(0, 2)}/${sha256}.${ext}`,
      format: result.image.format,
      width: result.image.width,
      height: result.image.height,
      bytes: bytes.length,
      source,
      sampledAt: new Date().toISOString(),
      models: result.classifiers.map((c) => ({ name: c.name, version: c.version })),
      top: { label: first?.label ?? '', score: first?.score ?? 0 },
      flagged: result.flagged,
      meta: Object.fromEntries(Object.entries(meta ?? {}).filter(([, v]) => typeof v === 'string' && v !== '')) as PoolMeta,
    };
    this.known.add(sha256);
    this.queue.push({ entry, bytes });
    this.pendingBytes += bytes.length;
    this.draining ??= this.drain();
  }

  settle(): Promise<void> {
    return this.draining ?? Promise.resolve();
  }

  private count(outcome: PoolOutcome): void {
    this.emit('sample', { outcome, images: this.stored });
  }

  /** One write at a time: the index is appended in order, and a slow disk gets one request, not 32. */
  private async drain(): Promise<void> {
    // Off the request path: the response goes out before the first byte is written.
    await new Promise((resolve) => setImmediate(resolve));
    for (let item = this.queue[0]; item; item = this.queue[0]) {
      try {
        await this.write(item);
        this.stored++;
        this.count('stored');
      } catch (error) {
        // Forget it, so the same photo can be sampled again once the disk is fixed.
        this.known.delete(item.entry.sha256);
        this.emit('failed', { sha256: item.entry.sha256, error: error as Error });
        this.count('failed');
      } finally {
        this.queue.shift();
        this.pendingBytes -= item.bytes.length;
      }
    }
    this.draining = null;
  }

  private async write({ entry, bytes }: Pending): Promise<void> {
    const dir = path.resolve(this.options.directory);
    const target = path.join(dir, ...entry.file.split('/'));
    await mkdir(path.dirname(target), { recursive: true });
    // Temp name then rename: a crash leaves a stray .tmp file, never a half image under its real name.
    const tmp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, bytes);
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw err;
    }
    // Last, so a reader never finds an index line whose image is not there yet.
    await appendFile(path.join(dir, POOL_INDEX), `${JSON.stringify(entry)}\n`);
  }
}

/** Loads the existing index (so dedupe survives restarts) and returns the sampler. */
export async function createPoolSampler(options: PoolOptions): Promise<PoolSampler> {
  const index = path.join(path.resolve(options.directory), POOL_INDEX);
  const { entries, text, tail } = await readIndex(index);
  // Our next append must start on a line of its own, not glue onto an unfinished one.
  if (tail === 'cut') await truncate(index, Buffer.byteLength(text.slice(0, text.lastIndexOf('\n') + 1)));
  if (tail === 'complete') await appendFile(index, '\n');
  return new Sampler(options, entries);
}
