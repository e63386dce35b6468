/**
 * A small labelled image set drawn from code (no downloads, no ../shared): three visually distinct
 * classes, two trade-relevant, laid out like wildlife-v1 (images/<class>/, labels.csv).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';

export const SYNTHETIC_CLASSES = [
  { name: 'striped_skin', trade_relevant: true },
  { name: 'spotted_skin', trade_relevant: true },
  { name: 'plain_ceramic', trade_relevant: false },
] as const;

export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function drawImage(kind: string, width: number, height: number, rand: () => number): Buffer {
  const px = Buffer.alloc(width * height * 3);
  const phase = rand() * 10;
  const period = 6 + rand() * 6;
  const base = [180 + rand() * 60, 120 + rand() * 60, 40 + rand() * 40];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let on: boolean;
      if (kind === 'striped_skin') on = Math.sin((y + phase) / period * Math.PI) > 0.2;
      else if (kind === 'spotted_skin') on = Math.hypot(((x + phase) % (period * 2)) - period, ((y + phase * 2) % (period * 2)) - period) < period * 0.45;
      else on = false;
      const noise = (rand() - 0.5) * 30;
      const i = (y * width + x) * 3;
      const colour = kind === 'plain_ceramic' ? [225, 222, 210] : on ? [20, 15, 10] : base;
      for (let c = 0; c < 3; c++) px[i + c] = Math.max(0, Math.min(255, colour[c]! + noise));
    }
  }
  return px;
}

export interface SyntheticDataset {
  root: string;
  labels: string;
  corruptPath: string;
  missingPath: string;
}

/** perClass train images and valPerClass val images per class, plus one corrupt and one missing file. */
export async function makeSyntheticDataset(root: string, perClass = 12, valPerClass = 4, seed = 7): Promise<SyntheticDataset> {
  const rand = seededRandom(seed);
  const rows = ['path,class,trade_relevant,split,source_repo,licence_note'];
  for (const cls of SYNTHETIC_CLASSES) {
    await mkdir(path.join(root, 'images', cls.name), { recursive: true });
    for (let i = 0; i < perClass + valPerClass; i++) {
      const w = 72 + Math.floor(rand() * 40);
      const h = 72 + Math.floor(rand() * 40);
      const rel = `images/${cls.name}/${String(i).padStart(3, '0')}.jpg`;
      await sharp(drawImage(cls.name, w, h, rand), { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(path.join(root, rel));
      rows.push(`${rel},${cls.name},${cls.trade_relevant ? 'yes' : 'no'},${i < perClass ? 'train' : 'val'},synthetic,"generated, CC0"`);
    }
  }
  const corrupt = `images/${SYNTHETIC_CLASSES[0].name}/corrupt.jpg`;
  await writeFile(path.join(root, corrupt), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00]));
  const missing = `images/${SYNTHETIC_CLASSES[1].name}/missing.jpg`;
  rows.push(`${corrupt},${SYNTHETIC_CLASSES[0].name},yes,train,synthetic,broken on purpose`);
  rows.push(`${missing},${SYNTHETIC_CLASSES[1].name},yes,val,synthetic,missing on purpose`);
  const labels = path.join(root, 'labels.csv');
  await writeFile(labels, `${rows.join('\n')}\n`);
  return { root, labels, corruptPath: path.join(root, corrupt), missingPath: path.join(root, missing) };
}
