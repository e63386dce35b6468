/**
 * npm run loadtest:near-dedupe -- --data ROOT [--labels labels.csv] [--split val] [--distance N] [--all-splits] [--model DIR] [--write]
 * The measurement behind cache.nearDistance. For each photo of the split, copies made in memory
 * (JPEG q60, WebP q50, half size, 3 % and 5 % cropped off each side) are looked up in a near-
 * duplicate cache holding every original, as the service would: the share answered, and by the
 * right photo. Every pair of distinct photos gives the false-match side: pairs within each
 * distance, and photos that would be answered by another photo of the split; --all-splits adds the
 * pairs of every photo in the labels file, for the low-distance tail, listing the closest pairs:
 * some are the same photo under two names, which only an eye can tell. Also what the pHash
 * costs per request (next to the model's own preprocessing) and what a look-up costs in a full
 * cache. No image is written anywhere; --write puts the Markdown section into docs/BENCHMARKS.md.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { loadConfig, REPO_ROOT } from '../src/config.js';
import { readManifest } from '../src/model/manifest.js';
import { prepareImage, tensorSpecOf, type ImageLimits } from '../src/preprocess/index.js';
import { hammingDistance, hashImage } from '../src/preprocess/phash.js';
import { NearCache } from '../src/screening/near-cache.js';
import { readDataset } from '../src/training/dataset.js';
import { percentile, replaceMarkdownSection } from './lib.js';

const args = process.argv.slice(2);
const flag = (name: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined; };
const HEADING = '## Near-duplicate cache';
const SHOWN = [0, 2, 4, 6, 8, 10, 12, 16];

// The service under measurement runs one decode at a time per request too.
sharp.concurrency(1);

type Transform = { name: string; make: (bytes: Buffer, w: number, h: number) => Promise<Buffer> };
// Flattened onto white first, as the pHash itself does, so a PNG's alpha is not turned black by the JPEG encoder.
const base = (bytes: Buffer) => sharp(bytes).rotate().flatten({ background: '#ffffff' });
const crop = (share: number) => async (bytes: Buffer, w: number, h: number) => {
  const left = Math.round(w * share);
  const top = Math.round(h * share);
  return base(bytes).extract({ left, top, width: w - 2 * left, height: h - 2 * top }).jpeg({ quality: 90 }).toBuffer();
};
const TRANSFORMS: Transform[] = [
  { name: 'JPEG q60', make: (b) => base(b).jpeg({ quality: 60 }).toBuffer() },
  { name: 'WebP q50', make: (b) => base(b).webp({ quality: 50 }).toBuffer() },
  { name: 'half size (JPEG q85)', make: (b, w) => base(b).resize(Math.max(1, Math.round(w / 2))).jpeg({ quality: 85 }).toBuffer() },
  { name: 'crop 3 % per side (JPEG q90)', make: crop(0.03) },
  { name: 'crop 5 % per side (JPEG q90)', make: crop(0.05) },
];

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

async function main() {
  const root = flag('data');
  if (!root) throw new Error('usage: npm run loadtest:near-dedupe -- --data ROOT [--labels labels.csv] [--split val] [--distance N] [--all-splits] [--model DIR] [--write]');
  const split = flag('split') ?? 'val';
  const config = loadConfig({ ...process.env, LOG_LEVEL: 'silent' });
  const distance = Number(flag('distance') ?? config.cache.nearDistance);
  const modelDir = path.resolve(flag('model') ?? path.join(REPO_ROOT, config.models.directories[0]!));
  const spec = tensorSpecOf(await readManifest(modelDir));
  const labels = flag('labels') ?? 'labels.csv';
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const { photos, unreadable } = await hashAll(root, labels, split, config.images);
  log(`${photos.length} ${split} photos hashed (${unreadable} unreadable)`);
  const val = distinctPairs(photos, 12);
  const wide = args.includes('--all-splits') ? distinctPairs((await hashAll(root, labels, null, config.images)).photos, distance + 4) : null;
  if (wide) log(`${wide.pairs} pairs over every split`);

  // Copies, looked up in a cache holding every original (the service's NearCache, one generation).
  const cache = new NearCache<string>(Math.max(1, photos.length), 3_600_000);
  for (const p of photos) cache.set(p.phash, 'g', p.sha256, p.file);
  const copies = TRANSFORMS.map((t) => ({ ...t, distances: [] as number[], right: 0, wrong: [] as string[], failed: 0 }));
  for (const [n, p] of photos.entries()) {
    for (const c of copies) {
      try {
        const { phash } = await hashImage(await c.make(p.bytes, p.width, p.height), config.images);
        c.distances.push(hammingDistance(phash, p.phash));
        const match = cache.find(phash, 'g', distance);
        if (match?.sha256 === p.sha256) c.right++;
        else if (match) c.wrong.push(`\`${p.file}\` → \`${match.value}\` (${match.distance})`);
      } catch {
        c.failed++;
      }
    }
    if ((n + 1) % 200 === 0) log(`copies of ${n + 1} photos looked up`);
  }

  // Cost per request: the pHash beside the model's own preprocessing, alternated so load drifts hit both.
  const timed = photos.slice(0, 300).map((p) => p.bytes);
  const big = await sharp(photos[0]!.bytes).resize(4000, 3000, { fit: 'fill' }).jpeg({ quality: 90 }).toBuffer();
  const cost = async (set: Buffer[], rounds: number) => {
    const t = { hash: 0, prepare: 0 };
    for (let r = 0; r < rounds; r++) {
      for (const b of set) {
        const t0 = performance.now();
        await hashImage(b, config.images);
        const t1 = performance.now();
        await prepareImage(b, spec, config.images);
        t.hash += t1 - t0;
        t.prepare += performance.now() - t1;
      }
    }
    return { hash: t.hash / (set.length * rounds), prepare: t.prepare / (set.length * rounds) };
  };
  await cost(timed.slice(0, 20), 1);
  const small = await cost(timed, 2);
  const large = await cost([big], 10);

  // Look-up in a full cache of 10,000 entries; random hashes, so every look-up scans every slot.
  const full = new NearCache<string>(10_000, 3_600_000);
  const rand = (() => { let s = 7; return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s; }; })();
  const random64 = () => (BigInt(rand()) << 32n) | BigInt(rand());
  for (let i = 0; i < 10_000; i++) full.set(random64(), 'g', String(i), String(i));
  const probes = Array.from({ length: 2000 }, random64);
  for (const q of probes.slice(0, 200)) full.find(q, 'g', distance);
  const l0 = performance.now();
  let found = 0;
  for (let r = 0; r < 5; r++) for (const q of probes) if (full.find(q, 'g', distance)) found++;
  const lookupUs = ((performance.now() - l0) * 1000) / (probes.length * 5);

  const lines = [
    HEADING,
    '',
    `Made by \`npm run loadtest:near-dedupe -- --data ${path.relative(REPO_ROOT, path.resolve(root)) || root} --split ${split}${flag('distance') ? ` --distance ${distance}` : ''}${wide ? ' --all-splits' : ''} --write\` on ${new Date().toISOString().slice(0, 10)}: ` +
      `${photos.length} wildlife photos (${split} split; ${unreadable} unreadable), the 64-bit pHash of src/preprocess/phash.ts, copies made in memory and looked up in the service's near-duplicate index (src/screening/near-cache.ts) holding every original. ` +
      `"Right photo": the copy was answered by its own original; "wrong photo": by another photo, closer to it than its original.`,
    '',
    `At the configured distance (cache.nearDistance = ${distance}):`,
    '',
    '| copy | answered from cache | right photo | wrong photo | median distance | 90th pct. distance |',
    '|---|---|---|---|---|---|',
    ...copies.map((c) => {
      const sorted = [...c.distances].sort((a, b) => a - b);
      const n = c.distances.length;
      return `| ${c.name} | ${pct((c.right + c.wrong.length) / n)} | ${pct(c.right / n)} | ${c.wrong.length} | ${percentile(sorted, 50)} | ${percentile(sorted, 90)} |`;
    }),
    '',
    `Answered by another photo: ${[...new Set(copies.flatMap((c) => c.wrong))].join('; ') || 'none'}.`,
    '',
    `Distinct photos: ${val.pairs.toLocaleString('en')} pairs (${val.sameBytes} pairs with the same bytes left out). Distance distribution: ${val.summary}.`,
    '',
    `| distance ≤ | ${SHOWN.join(' | ')} |`,
    `|---|${SHOWN.map(() => '---').join('|')}|`,
    ...copies.map((c) => `| ${c.name} within | ${SHOWN.map((d) => pct(c.distances.filter((x) => x <= d).length / c.distances.length)).join(' | ')} |`),
    `| distinct ${split} pairs within | ${SHOWN.map((d) => `${val.within(d)} (${(val.within(d) / val.pairs).toExponential(1)})`).join(' | ')} |`,
    `| ${split} photos with another ${split} photo within | ${SHOWN.map((d) => `${val.photosWithin(d)} (${pct(val.photosWithin(d) / photos.length)})`).join(' | ')} |`,
    ...(wide ? [`| distinct pairs within, every split (${wide.photos} photos) | ${SHOWN.map((d) => `${wide.within(d)} (${(wide.within(d) / wide.pairs).toExponential(1)})`).join(' | ')} |`] : []),
    '',
    `Closest distinct ${split} pairs: ${val.closest.slice(0, 8).map((c) => `${c.d} (\`${c.a}\` / \`${c.b}\`)`).join('; ') || 'none within 12'}.`,
    ...(wide ? ['', `Every split, ${wide.pairs.toLocaleString('en')} pairs (${wide.sameBytes} with the same bytes left out; ${wide.summary}); the pairs within ${distance + 4}: ${wide.closest.map((c) => `${c.d} (\`${c.a}\` / \`${c.b}\`)`).join('; ') || 'none'}.`] : []),
    '',
    `Cost per request, on a miss by sha256: the pHash (header checks + a 32×32 greyscale decode) ${small.hash.toFixed(2)} ms per ${split} photo next to ${small.prepare.toFixed(2)} ms for the model's own preprocessing (${spec.resizeShort}/${spec.size} px), ${large.hash.toFixed(1)} ms vs ${large.prepare.toFixed(1)} ms on a 4000×3000 JPEG; ` +
      `a look-up in a full cache (10,000 entries, every slot scanned) ${lookupUs.toFixed(1)} µs. One core, sharp concurrency 1, while other work shared the machine.`,
  ];
  const section = lines.join('\n');
  process.stdout.write(`${section}\n`);
  process.stdout.write(`${JSON.stringify({ distance, photos: photos.length, pairs: val.pairs, found, copies: copies.map((c) => ({ name: c.name, n: c.distances.length, right: c.right, wrong: c.wrong.length, failed: c.failed })), pairsAt: val.pairsAt, widePairsAt: wide?.pairsAt, hashMs: small.hash, prepareMs: small.prepare, bigHashMs: large.hash, bigPrepareMs: large.prepare, lookupUs })}\n`);
  if (args.includes('--write')) {
    const file = path.join(REPO_ROOT, 'docs', 'BENCHMARKS.md');
    await writeFile(file, replaceMarkdownSection(await readFile(file, 'utf8'), HEADING, section));
    log(`wrote ${HEADING} into ${path.relative(process.cwd(), file)}`);
  }
}

interface Photo { file: string; bytes: Buffer; sha256: string; phash: bigint; width: number; height: number }

/** Bytes, sha256 and pHash (with the service's checks and limits) of a split's photos, or every photo. */
async function hashAll(root: string, labels: string, split: string | null, limits: ImageLimits): Promise<{ photos: Photo[]; unreadable: number }> {
  const photos: Photo[] = [];
  let unreadable = 0;
  for (const s of (await readDataset({ root, labels, split })).samples) {
    const bytes = await readFile(s.path);
    try {
      const { phash, source } = await hashImage(bytes, limits);
      photos.push({ file: path.relative(root, s.path), bytes, sha256: createHash('sha256').update(bytes).digest('hex'), phash, width: source.width, height: source.height });
    } catch {
      unreadable++;
    }
  }
  return { photos, unreadable };
}

/** Every pair of photos with different bytes: the distance histogram, each photo's nearest other, the pairs within `list`. */
function distinctPairs(photos: readonly Photo[], list: number) {
  const pairsAt = new Array<number>(65).fill(0);
  const nearestOther = photos.map(() => 65);
  const closest: Array<{ d: number; a: string; b: string }> = [];
  let sameBytes = 0;
  for (let i = 0; i < photos.length; i++) {
    for (let j = i + 1; j < photos.length; j++) {
      if (photos[i]!.sha256 === photos[j]!.sha256) { sameBytes++; continue; }
      const d = hammingDistance(photos[i]!.phash, photos[j]!.phash);
      pairsAt[d]!++;
      nearestOther[i] = Math.min(nearestOther[i]!, d);
      nearestOther[j] = Math.min(nearestOther[j]!, d);
      if (d <= list) closest.push({ d, a: photos[i]!.file, b: photos[j]!.file });
    }
  }
  const pairs = pairsAt.reduce((a, b) => a + b, 0);
  const at = (p: number) => {
    let seen = 0;
    for (let d = 0; d <= 64; d++) if ((seen += pairsAt[d]!) > p * pairs) return d;
    return 64;
  };
  return {
    photos: photos.length, pairs, pairsAt, sameBytes,
    closest: closest.sort((x, y) => x.d - y.d),
    within: (d: number) => pairsAt.slice(0, d + 1).reduce((a, b) => a + b, 0),
    photosWithin: (d: number) => nearestOther.filter((n) => n <= d).length,
    summary: `minimum ${pairsAt.findIndex((n) => n > 0)}, 0.1st percentile ${at(0.001)}, 1st ${at(0.01)}, 5th ${at(0.05)}, median ${at(0.5)}, 95th ${at(0.95)}`,
  };
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
