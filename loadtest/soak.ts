/**
 * npm run loadtest:soak -- --data DIR [--minutes 30] [--concurrency 4] [--rate R] [--sample-seconds 30]
 *                          [--model DIR] [--write]
 * A soak benchmark, not a test: the real service in its own process (default config, so the result
 * cache is on) is fed distinct photos from a dataset directory (labels.csv + images/) for N minutes,
 * its RSS is sampled every few seconds, and the RSS slope after the cache has filled is reported
 * (goal: < 1 MiB/min). Prints a Markdown section and a one-line JSON summary; --write also puts the
 * section into docs/BENCHMARKS.md in place of an earlier "## Soak" section.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { loadConfig, REPO_ROOT } from '../src/config.js';
import { discoverModelDirectories } from '../src/model/registry.js';
import { linearFit, metricSum, metricValue, percentile, replaceMarkdownSection, residentBytes, startService, stopService } from './lib.js';

const args = process.argv.slice(2);
const flag = (name: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined; };
const num = (name: string, fallback: number) => {
  const value = Number(flag(name) ?? fallback);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
};
const MINUTES = num('minutes', 30);
const CONCURRENCY = Math.round(num('concurrency', 4));
const RATE = flag('rate') === undefined ? null : num('rate', 1);
const SAMPLE_SECONDS = num('sample-seconds', 30);
const MiB = 1024 * 1024;
const HEADING = '## Soak';

// libvips would otherwise take every core for the variants and starve the service it measures.
sharp.concurrency(1);

interface Sample { t: number; requests: number; distinct: number; rssMiB: number; heapUsedMiB?: number; externalMiB?: number }

/** Seeded, so two runs send the photos in the same order and their curves compare. */
function shuffle<T>(items: T[], seed = 12): T[] {
  let s = seed >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

async function datasetPhotos(dir: string): Promise<string[]> {
  const rows = (await readFile(path.join(dir, 'labels.csv'), 'utf8')).split('\n').slice(1).filter((l) => l.trim());
  // The path is the first column and never quoted; the later columns are.
  const files = rows.map((l) => path.join(dir, l.slice(0, l.indexOf(','))));
  if (files.length === 0) throw new Error(`no rows in ${path.join(dir, 'labels.csv')}`);
  // labels.csv is grouped by class; shuffled, every stretch of the run sees the same mix of sizes.
  return shuffle(files);
}

const contentType = (file: string) => (/\.png$/i.test(file) ? 'image/png' : 'image/jpeg');

/**
 * Pass 0 sends the file as it is; later passes cut one pixel off a different edge and re-encode
 * with a lower quality each four passes, so each repeat is a new photo to the cache (new sha256)
 * and costs the service a full decode and inference, as a new listing would.
 */
async function photoFor(file: string, pass: number): Promise<{ body: Buffer; type: string }> {
  const original = await readFile(file);
  if (pass === 0) return { body: original, type: contentType(file) };
  const { width, height } = await sharp(original, { failOn: 'none' }).metadata();
  if (!width || !height) return { body: original, type: contentType(file) };
  const edge = (pass - 1) % 4;
  const quality = 85 - (Math.floor((pass - 1) / 4) % 40);
  const body = await sharp(original, { failOn: 'none' })
    .extract({ left: edge === 2 ? 1 : 0, top: edge === 3 ? 1 : 0, width: edge % 2 === 0 ? width - 1 : width, height: edge % 2 === 1 ? height - 1 : height })
    .jpeg({ quality })
    .toBuffer();
  return { body, type: 'image/jpeg' };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const fmt = (n: number | undefined, digits = 1) => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits));

async function main() {
  const dataFlag = flag('data');
  if (!dataFlag) throw new Error('usage: npm run loadtest:soak -- --data DIR [--minutes 30] [--concurrency 4] [--rate R] [--sample-seconds 30] [--write]');
  const dataDir = path.resolve(dataFlag);
  const files = await datasetPhotos(dataDir);
  const modelDir = flag('model') ?? (await discoverModelDirectories(path.join(REPO_ROOT, 'models')))[0];
  if (!modelDir) throw new Error('no model under models/; pass --model DIR');
  const manifest = JSON.parse(await readFile(path.join(modelDir, 'model.json'), 'utf8')) as { name: string; version: string; precision: string; input: { size: number } };

  // The shipped defaults (cache on, as in production), with only the deadlines of the benchmark
  // config: a soak must measure the cache filling up, which bench-config.yaml switches off. Near
  // answers off: the later passes are near copies on purpose, each to cost a decode and inference.
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-soak-'));
  const configFile = path.join(tmp, 'config.yaml');
  await writeFile(configFile, JSON.stringify({ server: { requestTimeoutMs: 60000 }, batching: { defaultTimeoutMs: 60000 }, cache: { nearEnabled: false } }));
  const env = { CONFIG_FILE: configFile };
  const cacheEntries = loadConfig({ ...process.env, ...env }).cache.maxEntries;

  const { url, child } = await startService(modelDir, true, env);
  const stop = () => { void stopService(child).finally(() => process.exit(130)); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const pid = child.pid!;

  const statuses = new Map<string, number>();
  const latencies: number[] = [];
  // A few answers other than 200, with the file, so a refused photo can be looked at.
  const refused: string[] = [];
  const sent = new Set<string>();
  let issued = 0;
  let completed = 0;
  // Set inside the workers; the cast keeps TypeScript from narrowing it to null out here.
  let cacheFullAt = null as number | null;
  const samples: Sample[] = [];
  const durationMs = MINUTES * 60_000;
  let started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;

  const sample = async () => {
    const rss = await residentBytes(pid);
    if (rss === null) throw new Error('the service process is gone');
    let heapUsedMiB: number | undefined;
    let externalMiB: number | undefined;
    try {
      const text = await (await fetch(`${url}/metrics`)).text();
      const heap = metricValue(text, 'wildlife_nodejs_heap_size_used_bytes');
      const external = metricValue(text, 'wildlife_nodejs_external_memory_bytes');
      heapUsedMiB = heap === undefined ? undefined : heap / MiB;
      externalMiB = external === undefined ? undefined : external / MiB;
    } catch { /* RSS alone still answers the question */ }
    const s: Sample = { t: elapsed(), requests: completed, distinct: sent.size, rssMiB: rss / MiB, heapUsedMiB, externalMiB };
    samples.push(s);
    process.stderr.write(`soak ${(s.t / 60).toFixed(1)} min: ${s.requests} requests, ${s.distinct} distinct, RSS ${fmt(s.rssMiB)} MiB, heap ${fmt(s.heapUsedMiB)} MiB\n`);
  };

  const worker = async () => {
    while (performance.now() - started < durationMs) {
      const n = issued++;
      const file = files[n % files.length]!;
      const { body, type } = await photoFor(file, Math.floor(n / files.length));
      const sha = createHash('sha256').update(body).digest('hex');
      sent.add(sha);
      if (cacheFullAt === null && sent.size > cacheEntries) cacheFullAt = elapsed();
      if (RATE !== null) await sleep(started + (n / RATE) * 1000 - performance.now());
      const t0 = performance.now();
      let status: string;
      try {
        const res = await fetch(`${url}/v1/screen`, { method: 'POST', body: body as unknown as BodyInit, headers: { 'content-type': type } });
        await res.arrayBuffer();
        status = String(res.status);
        if (res.ok) latencies.push(performance.now() - t0);
        else if (refused.length < 5) refused.push(`${res.status} ${path.relative(dataDir, file)} (pass ${Math.floor(n / files.length)})`);
      } catch (err) {
        status = `network error (${(err as Error).message})`;
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      completed++;
    }
  };

  let metricsText = '';
  try {
    await sample(); // idle baseline, before the first photo
    samples[0]!.t = 0;
    started = performance.now();
    const load = Promise.all(Array.from({ length: CONCURRENCY }, worker));
    let done = false;
    void load.finally(() => { done = true; });
    for (let k = 1; ; k++) {
      await Promise.race([load, sleep(started + k * SAMPLE_SECONDS * 1000 - performance.now())]);
      if (done) break;
      await sample();
    }
    await load;
    // The last tick may have fallen on the deadline; one sample per instant keeps the fit unweighted.
    if (elapsed() - samples.at(-1)!.t < 1) samples.pop();
    await sample();
    metricsText = await (await fetch(`${url}/metrics`)).text().catch(() => '');
  } finally {
    await stopService(child);
    await rm(tmp, { recursive: true, force: true });
  }

  const seconds = samples.at(-1)!.t;
  const third = seconds / 3;
  const warmup = cacheFullAt !== null && cacheFullAt > third
    ? { until: cacheFullAt, rule: `the ${cacheEntries.toLocaleString('en')}-entry cache filled (distinct photos sent exceeded cache.maxEntries) at ${(cacheFullAt / 60).toFixed(1)} min` }
    : { until: third, rule: cacheFullAt === null
      ? `the first third of the run; the ${cacheEntries.toLocaleString('en')}-entry cache did NOT fill (${sent.size.toLocaleString('en')} distinct photos sent), so this slope is not yet the full-cache one`
      : `the first third of the run (later than the cache filling at ${(cacheFullAt / 60).toFixed(1)} min)` };
  const after = samples.filter((s) => s.t >= warmup.until);
  const fit = linearFit(after.map((s) => [s.t / 60, s.rssMiB] as const));
  const heapFit = linearFit(after.filter((s) => s.heapUsedMiB !== undefined).map((s) => [s.t / 60, s.heapUsedMiB!] as const));
  const ok = statuses.get('200') ?? 0;
  latencies.sort((a, b) => a - b);
  const hits = metricSum(metricsText, 'wildlife_cache_requests_total', 'result="hit"');
  const misses = metricSum(metricsText, 'wildlife_cache_requests_total', 'result="miss"');
  const peak = Math.max(...samples.map((s) => s.rssMiB));
  const histogram = [...statuses].sort(([a], [b]) => a.localeCompare(b));

  const lines: string[] = [];
  const log = (line: string) => lines.push(line);
  log(`${HEADING}: memory under sustained load (\`npm run loadtest:soak\`)`);
  log('');
  const method = 'The service in its own process with the shipped defaults (result cache on, batching on), fed '
    + `distinct photos of a dataset (\`--data\`: labels.csv + images/) by ${CONCURRENCY} clients for ${MINUTES} min; each pass `
    + 'after the first cuts one pixel off an edge and re-encodes, so every request is a new sha256 to the cache. '
    + `The service's VmRSS (/proc) is sampled every ${SAMPLE_SECONDS} s, heap used from its /metrics. The slope is a `
    + 'least-squares fit of RSS over the samples after the warm-up: until distinct photos sent exceed '
    + `\`cache.maxEntries\` (${cacheEntries.toLocaleString('en')}), or the first third of the run if that is later. Goal: < 1 MiB/min.`;
  for (const line of method.match(/.{1,100}(?:\s|$)/g) ?? []) log(line.trimEnd());
  log('');
  log('```sh');
  log(`npm run loadtest:soak -- --data ${dataFlag} --minutes ${MINUTES}${flag('concurrency') ? ` --concurrency ${CONCURRENCY}` : ''}${RATE !== null ? ` --rate ${RATE}` : ''}${flag('sample-seconds') ? ` --sample-seconds ${SAMPLE_SECONDS}` : ''} --write`);
  log('```');
  log('');
  log('Options: `--minutes N` (30), `--concurrency N` (4), `--rate R` (requests/s cap, none), `--sample-seconds S` (30),');
  log('`--model DIR`; `--write` replaces this section. It also prints a one-line JSON summary.');
  log('');
  log(`${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, ${manifest.name} ${manifest.version} (${manifest.precision}, ${manifest.input.size} px), ${new Date().toISOString().slice(0, 10)}; ${path.basename(dataDir)} (${files.length.toLocaleString('en')} photos), concurrency ${CONCURRENCY}${RATE !== null ? `, capped at ${RATE} requests/s` : ''}, \`cache.maxEntries\` ${cacheEntries.toLocaleString('en')}.`);
  log('');
  log(`- **RSS slope after warm-up: ${fit ? `${fit.slope.toFixed(2)} MiB/min` : 'n/a (fewer than two samples)'}** over ${after.length} samples from ${(warmup.until / 60).toFixed(1)} min (warm-up: ${warmup.rule}); heap used ${heapFit ? `${heapFit.slope.toFixed(2)} MiB/min` : 'n/a'}. Goal < 1 MiB/min: ${fit ? (fit.slope < 1 ? 'met' : '**not met**') : 'not measured'}.`);
  log(`- RSS ${fmt(samples[0]!.rssMiB)} MiB idle, ${fmt(samples.at(-1)!.rssMiB)} MiB at the end, peak ${fmt(peak)} MiB.`);
  log(`- Throughput: ${(completed / seconds).toFixed(1)} requests/s (${completed.toLocaleString('en')} in ${(seconds / 60).toFixed(1)} min; ${(ok / seconds).toFixed(1)}/s answered 200), latency of 200s p50 ${fmt(percentile(latencies, 50), 0)} / p95 ${fmt(percentile(latencies, 95), 0)} / p99 ${fmt(percentile(latencies, 99), 0)} ms.`);
  log(`- Statuses: ${histogram.map(([s, c]) => `${s}: ${c.toLocaleString('en')}`).join(', ')}.`);
  log(`- Photos: ${sent.size.toLocaleString('en')} distinct (sha256) of ${issued.toLocaleString('en')} sent (${issued <= files.length ? 'all originals' : `${files.length.toLocaleString('en')} originals, ${(issued - files.length).toLocaleString('en')} one-pixel-cropped re-encodings`}); cache ${hits.toLocaleString('en')} hits, ${misses.toLocaleString('en')} misses.${refused.length ? ` Not 200, e.g.: ${refused.join('; ')}.` : ''}`);
  log('');
  log('| t (min) | requests | distinct photos | VmRSS MiB | heap used MiB | external MiB |');
  log('|---:|---:|---:|---:|---:|---:|');
  for (const s of samples) log(`| ${(s.t / 60).toFixed(1)}${s.t < warmup.until ? ' (warm-up)' : ''} | ${s.requests} | ${s.distinct} | ${fmt(s.rssMiB)} | ${fmt(s.heapUsedMiB)} | ${fmt(s.externalMiB)} |`);
  log('');
  log('The load generator (and its re-encoding) shares the machine\'s cores with the service.');

  const section = lines.join('\n');
  process.stdout.write(`${section}\n\n`);
  const summary = {
    soak: {
      minutes: MINUTES, seconds: Number(seconds.toFixed(1)), concurrency: CONCURRENCY, rate: RATE, sampleSeconds: SAMPLE_SECONDS, cacheMaxEntries: cacheEntries,
      requests: completed, sent: issued, distinct: sent.size, requestsPerSecond: Number((completed / seconds).toFixed(2)), statuses: Object.fromEntries(histogram),
      cache: { hits, misses }, cacheFullAtSeconds: cacheFullAt === null ? null : Number(cacheFullAt.toFixed(1)),
      warmupSeconds: Number(warmup.until.toFixed(1)), warmupRule: cacheFullAt !== null && cacheFullAt > third ? 'cache-full' : 'first-third', cacheFilled: cacheFullAt !== null,
      samplesAfterWarmup: after.length, rssSlopeMiBPerMin: fit ? Number(fit.slope.toFixed(3)) : null, heapSlopeMiBPerMin: heapFit ? Number(heapFit.slope.toFixed(3)) : null,
      rssIdleMiB: Number(samples[0]!.rssMiB.toFixed(1)), rssEndMiB: Number(samples.at(-1)!.rssMiB.toFixed(1)), rssPeakMiB: Number(peak.toFixed(1)),
      goalMet: fit ? fit.slope < 1 : null,
    },
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  if (args.includes('--write')) {
    const file = path.join(REPO_ROOT, 'docs', 'BENCHMARKS.md');
    await writeFile(file, replaceMarkdownSection(await readFile(file, 'utf8'), HEADING, section));
    process.stderr.write(`wrote the soak section of ${file}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
