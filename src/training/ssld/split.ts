/**
 * Hides the labels of part of a labelled train split, for measuring SSLD honestly: the hidden part
 * becomes the unlabeled pool, the rest stays labelled, and the val split is untouched. Selection is
 * per class and deterministic (rows ordered by sha256 of their path), so every run and machine
 * gets the same split without a random seed to carry around.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../../errors.js';
import { csvLine, parseCsv } from '../dataset.js';

export interface SplitResult {
  labeled: number;
  hidden: number;
  kept: number;
  files: { labeled: string; pool: string; hidden: string };
}

/**
 * Writes into `out`: labeled.csv (labelled train rows + every other split's rows, paths relative to
 * the dataset root), pool.txt (absolute paths of the hidden images, one per line) and hidden.csv
 * (their labels, for scoring the teacher's pseudo-labels afterwards — never read by training).
 * Every class keeps at least one labelled image so the class list does not change.
 */
export async function hideLabels(opts: { root: string; labels?: string; split?: string; labeledFraction: number; out: string }): Promise<SplitResult> {
  const { root, labeledFraction, out } = opts;
  if (!(labeledFraction > 0 && labeledFraction < 1)) throw new AppError('CLI_USAGE', '--labeled must be between 0 and 1 (exclusive).');
  const split = opts.split ?? 'train';
  const csvPath = path.resolve(root, opts.labels ?? 'labels.csv');
  const [header, ...rows] = parseCsv(await readFile(csvPath, 'utf8'));
  const col = (name: string) => header?.indexOf(name) ?? -1;
  const [pathCol, classCol, splitCol] = [col('path'), col('class'), col('split')];
  if (pathCol < 0 || classCol < 0 || splitCol < 0) throw new AppError('DATASET_INVALID', `${csvPath} needs path, class and split columns.`);
  const byClass = new Map<string, string[][]>();
  const kept: string[][] = [];
  for (const row of rows) {
    if (row[splitCol] !== split) { kept.push(row); continue; }
    const list = byClass.get(row[classCol]!) ?? [];
    list.push(row);
    byClass.set(row[classCol]!, list);
  }
  const digest = (row: string[]) => createHash('sha256').update(row[pathCol]!).digest('hex');
  const labeled: string[][] = [];
  const hidden: string[][] = [];
  for (const [, list] of [...byClass].sort(([a], [b]) => a.localeCompare(b))) {
    list.sort((a, b) => digest(a).localeCompare(digest(b)));
    const keep = Math.max(1, Math.round(list.length * labeledFraction));
    labeled.push(...list.slice(0, keep));
    hidden.push(...list.slice(keep));
  }
  await mkdir(out, { recursive: true });
  const files = { labeled: path.join(out, 'labeled.csv'), pool: path.join(out, 'pool.txt'), hidden: path.join(out, 'hidden.csv') };
  await writeFile(files.labeled, [header!, ...labeled, ...kept].map(csvLine).join(''));
  await writeFile(files.pool, hidden.map((r) => `${path.resolve(root, r[pathCol]!)}\n`).join(''));
  await writeFile(files.hidden, [header!, ...hidden].map(csvLine).join(''));
  return { labeled: labeled.length, hidden: hidden.length, kept: kept.length, files };
}
