/**
 * A calibration split carved out of a labelled train split, so per-label thresholds are chosen on
 * images the model never trained on and the val split stays untouched for the recorded numbers.
 * Per class and deterministic (rows ordered by sha256 of their path, as ssld/split.ts does), so
 * every machine derives the same split from the same labels.csv.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors.js';
import { csvLine, parseCsv } from './dataset.js';

export interface HoldoutResult { train: number; heldOut: number; other: number; file: string }

/**
 * Writes `out` (a labels CSV): every row of labels.csv, with about `fraction` of each class's
 * `split` rows relabelled `heldOutSplit`. A class too small to give one image and keep at least
 * two for training is left whole: a class missing from training would change the class list.
 */
export async function holdOutSplit(opts: { root: string; labels?: string; split?: string; fraction: number; heldOutSplit?: string; out: string }): Promise<HoldoutResult> {
  const { root, fraction, out } = opts;
  if (!(fraction > 0 && fraction < 1)) throw new AppError('CLI_USAGE', '--holdout must be between 0 and 1 (exclusive).');
  const split = opts.split ?? 'train';
  const heldOutSplit = opts.heldOutSplit ?? 'calib';
  const csvPath = path.resolve(root, opts.labels ?? 'labels.csv');
  const [header, ...rows] = parseCsv(await readFile(csvPath, 'utf8'));
  const col = (name: string) => header?.indexOf(name) ?? -1;
  const [pathCol, classCol, splitCol] = [col('path'), col('class'), col('split')];
  if (pathCol < 0 || classCol < 0 || splitCol < 0) throw new AppError('DATASET_INVALID', `${csvPath} needs path, class and split columns.`);
  if (rows.some((r) => r[splitCol] === heldOutSplit)) throw new AppError('DATASET_INVALID', `${csvPath} already has a split named ${heldOutSplit}.`);
  const byClass = new Map<string, string[][]>();
  for (const row of rows) {
    if (row[splitCol] !== split) continue;
    byClass.set(row[classCol]!, [...(byClass.get(row[classCol]!) ?? []), row]);
  }
  const digest = (row: string[]) => createHash('sha256').update(row[pathCol]!).digest('hex');
  const held = new Set<string[]>();
  for (const list of byClass.values()) {
    list.sort((a, b) => digest(a).localeCompare(digest(b)));
    const take = list.length >= 3 ? Math.max(1, Math.round(list.length * fraction)) : 0;
    for (const row of list.slice(0, take)) held.add(row);
  }
  const written = rows.map((r) => (held.has(r) ? r.map((v, i) => (i === splitCol ? heldOutSplit : v)) : r));
  await mkdir(path.dirname(path.resolve(out)), { recursive: true });
  await writeFile(out, [header!, ...written].map(csvLine).join(''));
  const train = rows.filter((r) => r[splitCol] === split).length - held.size;
  return { train, heldOut: held.size, other: rows.length - train - held.size, file: path.resolve(out) };
}
