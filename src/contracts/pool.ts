/**
 * The unlabelled pool's on-disk format: written by the screening service (src/screening/pool.ts),
 * read by the training toolchain (SSLD's unlabelled data), so it is a contract like a topic's:
 *
 *   <dir>/images/<first 2 hex of sha256>/<sha256>.<jpg|png|webp|gif|tiff>
 *   <dir>/index.jsonl   one PoolEntry per line, appended after its image is in place
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors.js';

export const POOL_INDEX = 'index.jsonl';
export const POOL_IMAGES = 'images';

/** Where a sampled photo came in (the screening service's sources). */
export type PoolSource = 'http' | 'kafka' | 'cli';

export interface PoolMeta { listingId?: string; platform?: string; imageUrl?: string }

export interface PoolEntry {
  sha256: string;
  /** Relative to the pool directory, always with forward slashes. */
  file: string;
  format: string;
  width: number;
  height: number;
  bytes: number;
  source: PoolSource;
  sampledAt: string;
  models: Array<{ name: string; version: string }>;
  /** Top-1 label of the first model. */
  top: { label: string; score: number };
  flagged: boolean;
  meta: PoolMeta;
}

const FILE_PATTERN = /^images\/([0-9a-f]{2})\/([0-9a-f]{64})\.(?:jpg|png|webp|gif|tiff)$/;

/** The file must be where the layout puts it, so an edited index cannot point a reader elsewhere. */
function isEntry(v: unknown): v is PoolEntry {
  const e = v as PoolEntry;
  const file = typeof e?.file === 'string' ? FILE_PATTERN.exec(e.file) : null;
  return !!file && file[2] === e.sha256 && file[1] === e.sha256.slice(0, 2);
}

function parseLine(line: string): PoolEntry | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return isEntry(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export interface IndexText { entries: PoolEntry[]; text: string; tail: 'none' | 'complete' | 'cut' }

export async function readIndex(index: string): Promise<IndexText> {
  let text: string;
  try {
    text = await readFile(index, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], text: '', tail: 'none' };
    throw new AppError('DATASET_INVALID', `${index}: ${(err as Error).message}`, { cause: err });
  }
  const lines = text.split('\n');
  // What follows the last newline: '' normally, else an append a crash cut short (or, rarely, one
  // whose newline alone is missing).
  const last = lines.pop()!;
  const entries: PoolEntry[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const entry = parseLine(line);
    // A bad line before the last is not a crash artefact but damage; say so rather than skip data.
    if (!entry) throw new AppError('DATASET_INVALID', `${index}:${i + 1}: not a pool entry`);
    entries.push(entry);
  });
  const lastEntry = last === '' ? undefined : parseLine(last);
  if (lastEntry) entries.push(lastEntry);
  return { entries, text, tail: last === '' ? 'none' : lastEntry ? 'complete' : 'cut' };
}

/**
 * Every entry of a pool directory, with the image's absolute path. A cut-off last line (an append a
 * crash interrupted) is skipped; a bad line elsewhere throws DATASET_INVALID.
 */
export async function readPool(dir: string): Promise<Array<PoolEntry & { path: string }>> {
  const root = path.resolve(dir);
  const { entries } = await readIndex(path.join(root, POOL_INDEX));
  return entries.map((e) => ({ ...e, path: path.join(root, ...e.file.split('/')) }));
}
