/**
 * npm run loadtest:decode-once -- [--data ROOT --labels CSV --split val] [--count 200]
 * Why a cascade stage prepares its own input instead of sharing one decode: compares, per photo,
 * sharp's direct pipeline (decode → resize → crop, what prepareImage does) with decoding once to
 * full-size pixels and resizing those (what sharing a decode between stages would need), on real
 * JPEGs and on a 12-megapixel one, and checks that both give the same pixels.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { readDataset } from '../src/training/dataset.js';
import { fixturePhotos } from './lib.js';

const args = process.argv.slice(2);
const flag = (name: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined; };
const SHORT = 256;

async function target(bytes: Buffer) {
  const meta = await sharp(bytes).metadata();
  const scale = SHORT / Math.min(meta.width!, meta.height!);
  return { width: Math.round(meta.width! * scale), height: Math.round(meta.height! * scale) };
}

const base = (bytes: Buffer) => sharp(bytes).pipelineColourspace('srgb').autoOrient().flatten({ background: '#ffffff' });

async function direct(bytes: Buffer, t: { width: number; height: number }) {
  return base(bytes).resize(t.width, t.height, { fit: 'fill', kernel: 'linear' }).toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer();
}

async function decodeOnce(bytes: Buffer, t: { width: number; height: number }) {
  const full = await base(bytes).toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return sharp(full.data, { raw: { width: full.info.width, height: full.info.height, channels: 3 } }).resize(t.width, t.height, { fit: 'fill', kernel: 'linear' }).raw().toBuffer();
}

async function timeEach(photos: Buffer[], fn: (b: Buffer, t: { width: number; height: number }) => Promise<Buffer>, targets: Array<{ width: number; height: number }>) {
  const t0 = performance.now();
  for (let i = 0; i < photos.length; i++) await fn(photos[i]!, targets[i]!);
  return (performance.now() - t0) / photos.length;
}

async function main() {
  const count = Number(flag('count') ?? 200);
  const data = flag('data') && flag('labels') ? { root: flag('data')!, labels: flag('labels')!, split: flag('split') ?? 'val' } : null;
  const real = data
    ? (await Promise.all((await readDataset(data)).samples.map((s) => readFile(s.path)))).filter((b) => b[0] === 0xff && b[1] === 0xd8).slice(0, count)
    : await fixturePhotos();
  const big = await sharp(real[0]!).resize(4000, 3000, { fit: 'fill' }).jpeg({ quality: 90 }).toBuffer();
  for (const [name, photos] of [[`${real.length} real JPEGs`, real], ['a 4000×3000 JPEG, 10 times', Array.from({ length: 10 }, () => big)]] as const) {
    const targets = await Promise.all(photos.map(target));
    let maxDiff = 0;
    for (let i = 0; i < Math.min(photos.length, 50); i++) {
      const [a, b] = await Promise.all([direct(photos[i]!, targets[i]!), decodeOnce(photos[i]!, targets[i]!)]);
      for (let k = 0; k < a.length; k++) maxDiff = Math.max(maxDiff, Math.abs(a[k]! - b[k]!));
    }
    await timeEach(photos.slice(0, 5), direct, targets); // warm-up
    const d1 = await timeEach(photos, direct, targets);
    const o1 = await timeEach(photos, decodeOnce, targets);
    const d2 = await timeEach(photos, direct, targets);
    const o2 = await timeEach(photos, decodeOnce, targets);
    const d = (d1 + d2) / 2;
    const o = (o1 + o2) / 2;
    process.stdout.write(`${name}: direct ${d.toFixed(2)} ms, decode once + resize ${o.toFixed(2)} ms per photo (×${(o / d).toFixed(2)}); max pixel difference ${maxDiff}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
