/**
 * The flagged photos an analyst looks at. The browser never loads a listing's image from the
 * marketplace: that would leak the analyst's address to the seller and let a hostile host serve the
 * console anything. The console fetches each photo once, through the service's SSRF-guarded fetcher,
 * checks it is the very photo that was screened (sha256), keeps the original bytes (listings get
 * taken down, and a decision needs its evidence), and serves a re-encoded copy without metadata.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import sharp from 'sharp';
import { AppError } from '../errors.js';
import { sniffImageType, type Fetcher } from '../net/fetcher.js';
import type { ReviewDb } from './db.js';

export type PhotoSize = 'thumb' | 'full';
const SIDE: Record<PhotoSize, number> = { thumb: 160, full: 1024 };

export interface PhotoKeeperOptions {
  db: ReviewDb;
  /** null: only photos already stored are shown (review.photos.fetch: false). */
  fetcher: Fetcher | null;
  concurrency: number;
  maxAttempts: number;
  now?: () => Date;
}

export interface PhotoEvents {
  stored: { sha256: string; bytes: number };
  failed: { sha256: string; code: string; attempts: number };
}

export interface PhotoKeeper {
  /** A JPEG rendering of the item's photo, fetching and storing it first if needed. */
  render(itemId: number, size: PhotoSize): Promise<{ bytes: Buffer; contentType: 'image/jpeg' }>;
  /** Fetches photos not yet stored, newest items first, until none are left or all failed too often. */
  drain(): Promise<number>;
  /** Starts a drain unless one runs; for the store's 'ingested' event. */
  poke(): void;
  on<K extends keyof PhotoEvents>(event: K, listener: (e: PhotoEvents[K]) => void): this;
  close(): Promise<void>;
}

/**
 * The one writer of the photos table: keeps `bytes` as the photo screened under `sha256` if they are
 * that photo (an image whose sha256 matches); says whether they were. Fetched and inline photos alike.
 */
export function keepPhoto(db: ReviewDb, sha256: string, bytes: Buffer, storedAt: Date): boolean {
  const contentType = sniffImageType(bytes);
  if (!contentType || createHash('sha256').update(bytes).digest('hex') !== sha256) return false;
  db.prepare('INSERT OR IGNORE INTO photos (sha256, content_type, bytes, stored_at) VALUES (?, ?, ?, ?)').run(sha256, contentType, bytes, storedAt.toISOString());
  return true;
}

interface Wanted { id: number; image_url: string | null; image_sha256: string }

class Keeper extends EventEmitter implements PhotoKeeper {
  private readonly inFlight = new Map<string, Promise<Buffer>>();
  private draining: Promise<number> | null = null;
  private closed = false;
  private pokedWhileDraining = false;
  private viewFetches = 0;
  private readonly now: () => Date;

  constructor(private readonly o: PhotoKeeperOptions) {
    super();
    this.now = o.now ?? (() => new Date());
  }

  async render(itemId: number, size: PhotoSize) {
    const item = this.o.db.prepare('SELECT id, image_url, image_sha256 FROM items WHERE id = ?').get(itemId) as Wanted | undefined;
    if (!item) throw new AppError('REVIEW_ITEM_NOT_FOUND', `Item ${itemId}.`);
    const original = this.stored(item.image_sha256) ?? (await this.fetchForView(item));
    const side = SIDE[size];
    // Re-encoding drops EXIF (sellers' GPS, camera serials) and anything that is not pixels.
    let bytes: Buffer;
    try {
      bytes = await sharp(original, { limitInputPixels: 40_000_000 }).rotate().resize(side, side, { fit: 'inside', withoutEnlargement: true }).jpeg({ quality: size === 'thumb' ? 70 : 85 }).toBuffer();
    } catch (err) {
      // The bytes came from a listing's host (they only had to hash right and look like an image), so a
      // picture that does not decode, or exceeds the pixel limit, is the photo's fault, not the console's.
      throw new AppError('REVIEW_PHOTO_UNAVAILABLE', 'The stored photo could not be decoded.', { cause: err });
    }
    return { bytes, contentType: 'image/jpeg' as const };
  }

  private stored(sha256: string): Buffer | null {
    const row = this.o.db.prepare('SELECT bytes FROM photos WHERE sha256 = ?').get(sha256) as { bytes: Buffer } | undefined;
    return row?.bytes ?? null;
  }

  /**
   * A page view may fetch a missing photo, but it neither retries a photo whose attempts are used up
   * (the background drain owns retries) nor opens more connections than the configured concurrency:
   * a queue page of fifty unreachable thumbnails must not become fifty outbound fetches per view.
   */
  private async fetchForView(item: Wanted): Promise<Buffer> {
    const tried = this.o.db.prepare('SELECT attempts, last_error FROM photo_attempts WHERE sha256 = ?').get(item.image_sha256) as { attempts: number; last_error: string } | undefined;
    if (tried && tried.attempts >= this.o.maxAttempts) {
      throw new AppError('REVIEW_PHOTO_UNAVAILABLE', `Gave up after ${tried.attempts} attempts; last: ${tried.last_error}`);
    }
    if (this.inFlight.has(item.image_sha256)) return this.fetchOnce(item);
    if (this.viewFetches >= this.o.concurrency) throw new AppError('REVIEW_PHOTO_UNAVAILABLE', 'The photo is being fetched; reload in a moment.');
    this.viewFetches++;
    try {
      return await this.fetchOnce(item);
    } finally {
      this.viewFetches--;
    }
  }

  private fetchOnce(item: Wanted): Promise<Buffer> {
    const running = this.inFlight.get(item.image_sha256);
    if (running) return running;
    const job = this.fetchAndStore(item).finally(() => this.inFlight.delete(item.image_sha256));
    this.inFlight.set(item.image_sha256, job);
    return job;
  }

  private async fetchAndStore(item: Wanted): Promise<Buffer> {
    if (!item.image_url) throw new AppError('REVIEW_PHOTO_UNAVAILABLE', 'The photo was sent inline and its flag did not carry it (over the inline limit, or a flag from an older screening service); only the listing link remains.');
    if (!this.o.fetcher) throw new AppError('REVIEW_PHOTO_UNAVAILABLE', 'Fetching photos is switched off (review.photos.fetch).');
    try {
      const fetched = await this.o.fetcher.fetchImage(item.image_url);
      if (!keepPhoto(this.o.db, item.image_sha256, fetched.bytes, this.now())) {
        throw new AppError('REVIEW_PHOTO_UNAVAILABLE', 'The photo at the listing URL changed since it was screened; showing it would mislead the review.');
      }
      this.o.db.prepare('DELETE FROM photo_attempts WHERE sha256 = ?').run(item.image_sha256);
      this.emit('stored', { sha256: item.image_sha256, bytes: fetched.bytes.length });
      return fetched.bytes;
    } catch (err) {
      const code = err instanceof AppError ? err.code : 'INTERNAL';
      const message = err instanceof Error ? err.message : String(err);
      this.o.db.prepare(`INSERT INTO photo_attempts (sha256, attempts, last_error, last_at) VALUES (?, 1, ?, ?)
        ON CONFLICT (sha256) DO UPDATE SET attempts = attempts + 1, last_error = excluded.last_error, last_at = excluded.last_at`).run(item.image_sha256, `${code}: ${message}`.slice(0, 500), this.now().toISOString());
      const { attempts } = this.o.db.prepare('SELECT attempts FROM photo_attempts WHERE sha256 = ?').get(item.image_sha256) as { attempts: number };
      this.emit('failed', { sha256: item.image_sha256, code, attempts });
      if (err instanceof AppError && err.code === 'REVIEW_PHOTO_UNAVAILABLE') throw err;
      throw new AppError('REVIEW_PHOTO_UNAVAILABLE', `Fetching it failed (${code}).`, { cause: err });
    }
  }

  poke(): void {
    if (this.closed || !this.o.fetcher) return;
    if (this.draining) {
      this.pokedWhileDraining = true; // items that arrived after the drain's query
      return;
    }
    this.draining = this.drain().finally(() => {
      this.draining = null;
      if (this.pokedWhileDraining) {
        this.pokedWhileDraining = false;
        this.poke();
      }
    });
    this.draining.catch(() => undefined);
  }

  async drain(): Promise<number> {
    if (!this.o.fetcher) return 0;
    const next = this.o.db.prepare(`SELECT i.id, i.image_url, i.image_sha256 FROM items i
      WHERE i.image_url IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM photos p WHERE p.sha256 = i.image_sha256)
        AND COALESCE((SELECT attempts FROM photo_attempts a WHERE a.sha256 = i.image_sha256), 0) < ?
      GROUP BY i.image_sha256 ORDER BY MAX(i.id) DESC LIMIT ?`);
    // Each photo is tried at most once per drain; failures wait for the next poke (new items, or the
    // console's retry timer) instead of hammering a host that just failed.
    const wanted = next.all(this.o.maxAttempts, 500) as Wanted[];
    let stored = 0;
    for (let at = 0; at < wanted.length && !this.closed; at += this.o.concurrency) {
      const results = await Promise.allSettled(wanted.slice(at, at + this.o.concurrency).map((item) => this.fetchOnce(item)));
      stored += results.filter((r) => r.status === 'fulfilled').length;
    }
    return stored;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.draining?.catch(() => undefined);
    await Promise.allSettled(this.inFlight.values());
  }
}

export function createPhotoKeeper(options: PhotoKeeperOptions): PhotoKeeper {
  return new Keeper(options);
}
