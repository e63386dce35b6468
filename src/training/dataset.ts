/**
 * Labelled image sets on the Node side (evaluation, calibration): a CSV with at least `path` and
 * `class` columns (wildlife-v1's labels.csv also has `trade_relevant` and `split`), or an image
 * folder laid out as root/<class>/<image>.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors.js';

export interface DatasetSample {
  path: string;
  label: string;
  split: string | null;
}

export interface Dataset {
  samples: DatasetSample[];
  /** Every class named in the source, whatever the split. */
  classes: string[];
  /** From the CSV's trade_relevant column (yes/no); absent for image folders. */
  tradeRelevant: Map<string, boolean>;
}

const IMAGE_EXT = /\.(jpe?g|png|webp|gif|tiff?)$/i;

/** RFC 4180 CSV: quoted fields may hold commas, quotes ("") and newlines. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(field); field = ''; }
    else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field); field = '';
      if (row.length > 1 || row[0] !== '') rows.push(row);
      row = [];
    } else field += ch;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}

/** One CSV record for parseCsv to read back: only fields with a comma, quote or newline are quoted, so plain rows stay plain. */
export function csvLine(fields: readonly string[]): string {
  return `${fields.map((f) => (/[",\r\n]/.test(f) ? `"${f.replaceAll('"', '""')}"` : f)).join(',')}\n`;
}

export interface DatasetSource {
  root: string;
  /** CSV path: absolute, relative to the working directory, or relative to root. Omit for a folder. */
  labels?: string;
  split?: string | null;
}

export async function readDataset(source: DatasetSource): Promise<Dataset> {
  if (!existsSync(source.root)) throw new AppError('DATASET_INVALID', `${source.root} does not exist.`);
  return source.labels ? readCsvDataset(source) : readFolderDataset(source.root);
}

async function readCsvDataset({ root, labels, split }: DatasetSource): Promise<Dataset> {
  const csvPath = path.isAbsolute(labels!) || existsSync(labels!) ? labels! : path.join(root, labels!);
  let text: string;
  try {
    text = await readFile(csvPath, 'utf8');
  } catch (cause) {
    throw new AppError('DATASET_INVALID', `cannot read ${csvPath}.`, { cause });
  }
  const [header, ...rows] = parseCsv(text);
  const col = (name: string) => header?.indexOf(name) ?? -1;
  const [pathCol, classCol, splitCol, relevantCol] = [col('path'), col('class'), col('split'), col('trade_relevant')];
  if (pathCol < 0 || classCol < 0) throw new AppError('DATASET_INVALID', `${csvPath} needs "path" and "class" columns.`);
  const classes = new Set<string>();
  const tradeRelevant = new Map<string, boolean>();
  const samples: DatasetSample[] = [];
  for (const row of rows) {
    const label = row[classCol]!;
    classes.add(label);
    const relevant = relevantCol >= 0 ? row[relevantCol] : undefined;
    if (relevant === 'yes' || relevant === 'no') tradeRelevant.set(label, relevant === 'yes');
    const rowSplit = splitCol >= 0 ? (row[splitCol] ?? null) : null;
    if (split && rowSplit !== split) continue;
    // resolve, not join: merged label files (e.g. SSLD's) carry absolute paths.
    samples.push({ path: path.resolve(root, row[pathCol]!), label, split: rowSplit });
  }
  return { samples, classes: [...classes].sort(), tradeRelevant };
}

async function readFolderDataset(root: string): Promise<Dataset> {
  const entries = await readdir(root, { withFileTypes: true });
  const classes = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  const samples: DatasetSample[] = [];
  for (const label of classes) {
    for (const file of (await readdir(path.join(root, label))).sort()) {
      if (IMAGE_EXT.test(file)) samples.push({ path: path.join(root, label, file), label, split: null });
    }
  }
  return { samples, classes, tradeRelevant: new Map() };
}
