/**
 * Keeps validation images out of the unlabelled pool, as SSLD removes ImageNet-1k val images from
 * ImageNet-22k: an exact match by sha256, and a near match by a 64-bit DCT perceptual hash (pHash,
 * src/preprocess/phash.ts, the function the screening service's near-duplicate cache uses too),
 * which survives re-encoding, resizing and small crops — the usual fate of a photo reposted on a
 * marketplace. Also drops pool images that are already labelled, and repeats within the pool.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hammingDistance, perceptualHash } from '../../preprocess/phash.js';
import type { PoolImage } from './sources.js';

export interface Fingerprint { sha256: string; phash: bigint }

/**
 * Near-duplicate cut-off for the pool. On wildlife-v1 photos, copies halved and re-encoded as JPEG
 * q60, WebP q50 or cropped 3 % per side were within distance 10 in 96 % of cases, while 99.9 % of
 * pairs of different photos were 16 or more apart. Looser than the screening service's cut-off
 * (cache.nearDistance): a false match here drops one pool image, there it answers with another
 * photo's decision.
 */
export const DEFAULT_PHASH_DISTANCE = 10;

export async function fingerprint(file: string): Promise<Fingerprint> {
  const bytes = await readFile(file);
  return { sha256: createHash('sha256').update(bytes).digest('hex'), phash: await perceptualHash(bytes) };
}

export type DropReason = 'val_exact' | 'val_near' | 'labeled_exact' | 'pool_duplicate' | 'unreadable';

export interface DedupeResult {
  kept: Array<PoolImage & { sha256: string }>;
  dropped: Array<{ path: string; reason: DropReason; match?: string; distance?: number; error?: string }>;
  counts: Record<DropReason | 'kept', number>;
}

export async function fingerprintAll(files: readonly string[], onProgress?: (done: number) => void): Promise<Map<string, Fingerprint | Error>> {
  const out = new Map<string, Fingerprint | Error>();
  let done = 0;
  for (const file of files) {
    try { out.set(file, await fingerprint(file)); } catch (err) { out.set(file, err as Error); }
    onProgress?.(++done);
  }
  return out;
}

export async function dedupePool(opts: {
  pool: readonly PoolImage[];
  valFiles: readonly string[];
  labeledFiles: readonly string[];
  maxDistance: number;
  onProgress?: (stage: string, done: number, total: number) => void;
}): Promise<DedupeResult> {
  const val = await fingerprintAll(opts.valFiles, (d) => opts.onProgress?.('fingerprint val', d, opts.valFiles.length));
  const valPrints = [...val].filter((e): e is [string, Fingerprint] => !(e[1] instanceof Error));
  const valBySha = new Map(valPrints.map(([file, fp]) => [fp.sha256, file]));
  const labeledSha = new Set<string>();
  let done = 0;
  for (const file of opts.labeledFiles) {
    try { labeledSha.add(createHash('sha256').update(await readFile(file)).digest('hex')); } catch { /* unreadable labelled images are the trainer's to report */ }
    opts.onProgress?.('hash labelled', ++done, opts.labeledFiles.length);
  }
  const result: DedupeResult = { kept: [], dropped: [], counts: { kept: 0, val_exact: 0, val_near: 0, labeled_exact: 0, pool_duplicate: 0, unreadable: 0 } };
  const drop = (entry: DedupeResult['dropped'][number]) => { result.dropped.push(entry); result.counts[entry.reason]++; };
  const seen = new Map<string, string>();
  done = 0;
  for (const image of opts.pool) {
    opts.onProgress?.('dedupe pool', ++done, opts.pool.length);
    let fp: Fingerprint;
    try { fp = await fingerprint(image.path); } catch (err) { drop({ path: image.path, reason: 'unreadable', error: (err as Error).message }); continue; }
    if (valBySha.has(fp.sha256)) { drop({ path: image.path, reason: 'val_exact', match: valBySha.get(fp.sha256) }); continue; }
    let nearest: { file: string; distance: number } | undefined;
    for (const [file, v] of valPrints) {
      const distance = hammingDistance(fp.phash, v.phash);
      if (distance <= opts.maxDistance && (!nearest || distance < nearest.distance)) nearest = { file, distance };
    }
    if (nearest) { drop({ path: image.path, reason: 'val_near', match: nearest.file, distance: nearest.distance }); continue; }
    if (labeledSha.has(fp.sha256)) { drop({ path: image.path, reason: 'labeled_exact' }); continue; }
    if (seen.has(fp.sha256)) { drop({ path: image.path, reason: 'pool_duplicate', match: seen.get(fp.sha256) }); continue; }
    seen.set(fp.sha256, image.path);
    result.kept.push({ ...image, sha256: fp.sha256 });
    result.counts.kept++;
  }
  return result;
}
