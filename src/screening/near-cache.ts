/**
 * The near-duplicate side of the dedupe cache: recent decisions indexed by the screened photo's
 * pHash, so that a repost of a photo (re-encoded, resized, slightly cropped: a new sha256) can be
 * answered with the decision already made for it. Bounded like the exact cache (capacity, TTL); the
 * oldest entry goes first, hit or not, since a decision ages from when it was made.
 *
 * A look-up scans every slot: at 10,000 entries that is a few tens of microseconds with the hashes
 * kept as two Uint32 halves and compared with a popcount on Numbers (docs/BENCHMARKS.md,
 * "Near-duplicate cache"), cheaper and simpler than any index over Hamming space at this size.
 */
import { hashHalves } from '../preprocess/phash.js';

export interface NearMatch<V> {
  value: V;
  /** The photo whose decision this is. */
  sha256: string;
  distance: number;
}

export class NearCache<V> {
  private readonly hi: Uint32Array;
  private readonly lo: Uint32Array;
  private readonly expires: Float64Array;
  /** undefined marks a free slot. */
  private readonly keys: Array<string | undefined>;
  private readonly shas: string[];
  private readonly values: Array<V | undefined>;
  /** The slot the next entry goes to: slots are a ring, oldest first from here. */
  private next = 0;

  constructor(private readonly capacity: number, private readonly ttlMs: number, private readonly now: () => number = () => performance.now()) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.hi = new Uint32Array(capacity);
    this.lo = new Uint32Array(capacity);
    this.expires = new Float64Array(capacity);
    this.keys = new Array<string | undefined>(capacity).fill(undefined);
    this.shas = new Array<string>(capacity).fill('');
    this.values = new Array<V | undefined>(capacity).fill(undefined);
  }

  /**
   * `key` names what made the decision (the model generation): a decision is only ever found by a
   * look-up with the same key. The oldest slot is overwritten, live or not.
   */
  set(phash: bigint, key: string, sha256: string, value: V): void {
    const [hi, lo] = hashHalves(phash);
    const i = this.next;
    this.hi[i] = hi;
    this.lo[i] = lo;
    this.keys[i] = key;
    this.shas[i] = sha256;
    this.values[i] = value;
    this.expires[i] = this.now() + this.ttlMs;
    this.next = (i + 1) % this.capacity;
  }

  /** The closest live entry with this key within maxDistance bits; among equals, the most recent. */
  find(phash: bigint, key: string, maxDistance: number): NearMatch<V> | undefined {
    const [hi, lo] = hashHalves(phash);
    const now = this.now();
    let best = -1;
    let bestDistance = maxDistance + 1;
    // Newest first, so a tie keeps the most recent decision.
    for (let k = 1, i = this.next - 1; k <= this.capacity; k++, i--) {
      if (i < 0) i = this.capacity - 1;
      let x = (this.hi[i]! ^ hi) >>> 0;
      let y = (this.lo[i]! ^ lo) >>> 0;
      // popcount32 inlined: this loop is the look-up's whole cost.
      x -= (x >>> 1) & 0x55555555;
      y -= (y >>> 1) & 0x55555555;
      x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
      y = (y & 0x33333333) + ((y >>> 2) & 0x33333333);
      const distance = (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) + (Math.imul((y + (y >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
      if (distance >= bestDistance) continue;
      const entryKey = this.keys[i];
      if (entryKey === undefined) continue;
      if (this.expires[i]! <= now) {
        this.free(i);
        continue;
      }
      if (entryKey !== key) continue;
      best = i;
      bestDistance = distance;
      if (distance === 0) break;
    }
    if (best < 0) return undefined;
    // Not moved to the newest end: a popular photo would then evict an older entry on every hit.
    return { value: this.values[best]!, sha256: this.shas[best]!, distance: bestDistance };
  }

  clear(): void {
    for (let i = 0; i < this.capacity; i++) this.free(i);
    this.next = 0;
  }

  /** Live entries (expired ones still count until a look-up passes them or their slot is reused). */
  get size(): number {
    let n = 0;
    for (const key of this.keys) if (key !== undefined) n++;
    return n;
  }

  private free(i: number): void {
    this.keys[i] = undefined;
    this.values[i] = undefined;
    this.shas[i] = '';
  }
}
