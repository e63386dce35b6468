/**
 * Where SSLD's unlabelled images come from: the service's sampled pool (a directory with
 * index.jsonl, written by src/screening/pool.ts), any image folder (searched recursively), or a
 * text file listing image paths one per line (relative lines are relative to the file).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { ScreeningError } from '../../errors.js';

export interface PoolImage {
  path: string;
  /** Known when the source recorded it (the service's pool); otherwise hashed later. */
  sha256?: string;
  source: string;
}

const IMAGE_EXT = /\.(jpe?g|png|webp|gif|tiff?)$/i;
export const POOL_INDEX = 'index.jsonl';

async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else if (entry.isFile() && IMAGE_EXT.test(entry.name)) yield full;
  }
}

async function readPoolIndex(dir: string): Promise<PoolImage[]> {
  const lines = (await readFile(path.join(dir, POOL_INDEX), 'utf8')).split('\n');
  const images: PoolImage[] = [];
  for (const line of lines) {
    if (!line.trim()) continue;
    // The service appends while it runs: a torn last line is skipped, not fatal.
    let entry: { sha256?: unknown; file?: unknown };
    try { entry = JSON.parse(line); } catch { continue; }
    if (typeof entry.file !== 'string') continue;
    images.push({ path: path.resolve(dir, entry.file), sha256: typeof entry.sha256 === 'string' ? entry.sha256 : undefined, source: dir });
  }
  return images;
}

export async function readPoolSource(source: string): Promise<PoolImage[]> {
  const resolved = path.resolve(source);
  if (!existsSync(resolved)) throw new ScreeningError('DATASET_INVALID', `pool source ${source} does not exist.`);
  if ((await stat(resolved)).isDirectory()) {
    if (existsSync(path.join(resolved, POOL_INDEX))) return readPoolIndex(resolved);
    const images: PoolImage[] = [];
    for await (const file of walk(resolved)) images.push({ path: file, source });
    return images;
  }
  const base = path.dirname(resolved);
  return (await readFile(resolved, 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
    .map((l) => ({ path: path.resolve(base, l), source }));
}

export async function readPoolSources(sources: readonly string[]): Promise<PoolImage[]> {
  return (await Promise.all(sources.map(readPoolSource))).flat();
}
