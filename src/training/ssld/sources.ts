/**
 * Where SSLD's unlabelled images come from: the service's sampled pool (a directory with
 * index.jsonl, written by src/screening/pool.ts), any image folder (searched recursively), or a
 * text file listing image paths one per line (relative lines are relative to the file).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../../errors.js';
import { POOL_INDEX, readPool } from '../../contracts/index.js';

export interface PoolImage {
  path: string;
  /** Known when the source recorded it (the service's pool); otherwise hashed later. */
  sha256?: string;
  source: string;
}

const IMAGE_EXT = /\.(jpe?g|png|webp|gif|tiff?)$/i;

async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(full);
    else if (entry.isFile() && IMAGE_EXT.test(entry.name)) yield full;
  }
}

export async function readPoolSource(source: string): Promise<PoolImage[]> {
  const resolved = path.resolve(source);
  if (!existsSync(resolved)) throw new AppError('DATASET_INVALID', `pool source ${source} does not exist.`);
  if ((await stat(resolved)).isDirectory()) {
    if (existsSync(path.join(resolved, POOL_INDEX))) return (await readPool(resolved)).map((e) => ({ path: e.path, sha256: e.sha256, source }));
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
