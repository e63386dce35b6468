/**
 * The dedupe cache in front of the models: a repeat of a photo costs no inference until the models
 * change. First by content (sha256, unchanged bytes); on a miss, with near-duplicates on, by the
 * photo's pHash (near-cache.ts), which also catches the re-encoded, resized and slightly cropped
 * reposts that trade listings are full of. A near answer is another photo's decision, so it says so
 * (the distance and that photo's sha256) and the distance is kept conservative (configs/default.yaml).
 */
import { LRUCache } from 'lru-cache';
import type { AppConfig } from '../config.js';
import type { ImageLimits, SourceInfo } from '../preprocess/index.js';
import { hashImage } from '../preprocess/phash.js';
import { NearCache } from './near-cache.js';

export type Lookup<V> =
  | { result: 'hit'; value: V }
  /** `source` describes the photo looked up, `sha256` the one whose decision `value` is. */
  | { result: 'near'; value: V; distance: number; sha256: string; source: SourceInfo; hashMs: number }
  /** `phash` and `source` (the checks hashing ran) are undefined with near-duplicates off. */
  | { result: 'miss'; phash?: bigint; source?: SourceInfo; hashMs: number };

/** What made a decision: a decision is only reused by the same models (and cascade) it came from. */
export interface Maker {
  /** The models' names and versions and the cascade as served. */
  models: string;
  /** The model generation: a near entry is only found by the generation that made it. */
  generation: number;
}

export function makerOf(classifiers: ReadonlyArray<{ manifest: { name: string; version: string } }>, cascade: object | null, generation: number): Maker {
  const models = classifiers.map((c) => `${c.manifest.name}@${c.manifest.version}`).join(',');
  return { models: cascade ? `${models}:${JSON.stringify(cascade)}` : models, generation };
}

export class DecisionCache<V extends object> {
  private readonly exact: LRUCache<string, V>;
  private readonly near: NearCache<V> | null;

  constructor(private readonly config: Readonly<AppConfig['cache']>, private readonly limits: ImageLimits) {
    this.exact = new LRUCache({ max: config.maxEntries, ttl: config.ttlSeconds * 1000 });
    this.near = config.nearEnabled ? new NearCache(config.maxEntries, config.ttlSeconds * 1000) : null;
  }

  /** Exact first; then, on a miss, the pHash (which also applies the preprocessing checks to the bytes). */
  async lookup(bytes: Uint8Array, sha256: string, maker: Maker): Promise<Lookup<V>> {
    const value = this.exact.get(`${sha256}:${maker.models}`);
    if (value) return { result: 'hit', value };
    if (!this.near) return { result: 'miss', hashMs: 0 };
    const t0 = performance.now();
    const { phash, source } = await hashImage(bytes, this.limits);
    const hashMs = performance.now() - t0;
    const match = this.near.find(phash, nearKey(maker), this.config.nearDistance);
    return match ? { result: 'near', value: match.value, distance: match.distance, sha256: match.sha256, source, hashMs } : { result: 'miss', phash, source, hashMs };
  }

  /**
   * Keeps a fresh decision. Near answers are not kept: their repeats find the same decision again,
   * and a chain of near answers must not drift away from the photo that was screened.
   */
  remember(miss: Extract<Lookup<V>, { result: 'miss' }>, sha256: string, maker: Maker, value: V): void {
    this.exact.set(`${sha256}:${maker.models}`, value);
    if (miss.phash !== undefined) this.near?.set(miss.phash, nearKey(maker), sha256, value);
  }

  clear(): void {
    this.exact.clear();
    this.near?.clear();
  }
}

const nearKey = (maker: Maker) => `${maker.generation}:${maker.models}`;
