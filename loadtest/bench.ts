/**
 * npm run bench [-- --model DIR] [--fp32 DIR] [--seconds N] [--rounds N] [--data ROOT --labels CSV [--split val]] [--write]
 * In one run, on one model: bare ONNX Runtime images/s at batch 1/4/8/16, then the HTTP service
 * end to end (separate process, real JPEGs, cache off) at several concurrencies with batching on
 * and off, reporting images/s, p50/p95/p99 and the ratios service ÷ best bare engine and service ÷
 * in-process pipeline, as medians of --rounds interleaved rounds (3). Every in-process figure uses
 * the served ONNX Runtime settings (thread count, spinning). When the
 * served config has a cascade, then the cascade with CASCADE=first/on/off (loadtest/cascade.ts):
 * on the split's JPEGs and with its flag accuracy when --data/--labels are given. --write stores
 * the tables in docs/BENCHMARKS.md, replacing only the sections this command writes. --fp32 DIR
 * adds the bare-engine ratio of --model (e.g. static INT8) to that FP32 export of the same model;
 * the in-process pipeline (loadtest/pipeline.ts) is what the service's overhead is measured against.
 */
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, REPO_ROOT } from '../src/config.js';
import { loadClassifier, type EngineOptions } from '../src/model/engine.js';
import { discoverModelDirectories } from '../src/model/registry.js';
import { benchCascade, splitPhotos } from './cascade.js';
import { fixturePhotos, httpLoad, median, replaceMarkdownSection, startService, stopService, type HttpResult } from './lib.js';
import { pipelineImagesPerSecond } from './pipeline.js';

const args = process.argv.slice(2);
const flag = (name: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined; };
const SECONDS = Number(flag('seconds') ?? 6);
const ROUNDS = Number(flag('rounds') ?? 3);
const CONCURRENCIES = [1, 4, 8, 16];

/** The served ONNX Runtime settings (configs/default.yaml, CONFIG_FILE and the environment), on the main thread. */
function servedEngineOptions(): EngineOptions {
  const m = loadConfig(process.env).models;
  return { executionProvider: m.executionProvider, intraOpThreads: m.intraOpThreads, graphOptimization: m.graphOptimization, threadSpinning: m.threadSpinning };
}

async function bareEngine(modelDir: string, batch: number): Promise<number> {
  const classifier = await loadClassifier(modelDir, servedEngineOptions());
  try {
    const input = new Float32Array(batch * classifier.inputLength).map(() => Math.random() - 0.5);
    await classifier.classify(input, batch);
    let images = 0;
    const start = performance.now();
    while (performance.now() - start < SECONDS * 1000) {
      await classifier.classify(input, batch);
      images += batch;
    }
    return images / ((performance.now() - start) / 1000);
  } finally {
    await classifier.dispose();
  }
}

async function main() {
  const modelDir = flag('model') ?? (await discoverModelDirectories(path.join(REPO_ROOT, 'models')))[0];
  if (!modelDir) throw new Error('no model under models/; pass --model DIR');
  const photos = await fixturePhotos();
  const lines: string[] = [];
  const log = (line: string) => { lines.push(line); process.stdout.write(`${line}\n`); };
  const manifest = JSON.parse(await readFile(path.join(modelDir, 'model.json'), 'utf8')) as { name: string; version: string; architecture: string; precision: string; input: { size: number } };
  log(`# Benchmark: ${manifest.name} ${manifest.version} (${manifest.architecture}, ${manifest.precision}, ${manifest.input.size} px)`);
  log('');
  log(`${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, ${SECONDS} s per measurement, ${new Date().toISOString().slice(0, 10)}.`);
  log('');
  log('## Bare ONNX Runtime engine (no preprocessing, no HTTP)');
  log('');
  log('| batch | images/s |');
  log('|---:|---:|');
  let bestBare = 0;
  const bare = new Map<number, number>();
  for (const batch of [1, 4, 8, 16]) {
    const ips = await bareEngine(modelDir, batch);
    bare.set(batch, ips);
    bestBare = Math.max(bestBare, ips);
    log(`| ${batch} | ${ips.toFixed(1)} |`);
  }
  log('');
  const fp32 = flag('fp32');
  if (fp32) {
    const fp32Manifest = JSON.parse(await readFile(path.join(fp32, 'model.json'), 'utf8')) as { name: string; precision: string };
    log(`## ${manifest.precision} ÷ ${fp32Manifest.precision} on the bare engine (${fp32Manifest.name} from ${fp32})`);
    log('');
    log(`| batch | ${manifest.precision} images/s | ${fp32Manifest.precision} images/s | ratio |`);
    log('|---:|---:|---:|---:|');
    for (const batch of [1, 8]) {
      const other = await bareEngine(fp32, batch);
      log(`| ${batch} | ${bare.get(batch)!.toFixed(1)} | ${other.toFixed(1)} | **${(bare.get(batch)! / other).toFixed(2)}** |`);
    }
    log('');
  }
  const data = flag('data') && flag('labels') ? { root: flag('data')!, labels: flag('labels')!, split: flag('split') ?? 'val' } : undefined;
  const loadPhotos = data ? await splitPhotos(data) : photos;
  const photosNote = data ? `the ${loadPhotos.length} JPEGs of ${path.basename(path.resolve(data.root))} ${data.split}` : `the ${photos.length} Met fixture photos (pass --data/--labels for a real split)`;
  const engine = servedEngineOptions();
  const pipelineClassifier = await loadClassifier(modelDir, engine);
  const services = [];
  // Rounds alternate the pipeline and every service configuration, so a slow spell of this shared
  // machine lands on all of them instead of on one; each figure is the median of its rounds.
  const pipelineRuns: number[] = [];
  const serviceRuns = new Map<string, HttpResult[]>();
  try {
    for (const batching of [true, false]) services.push({ batching, ...(await startService(modelDir, batching)) });
    for (const s of services) await httpLoad(s.url, loadPhotos, 2, 2); // warm-up
    for (let round = 0; round < ROUNDS; round++) {
      pipelineRuns.push(await pipelineImagesPerSecond(pipelineClassifier, loadPhotos, SECONDS));
      for (const s of round % 2 ? [...services].reverse() : services) {
        for (const concurrency of CONCURRENCIES) {
          const key = `${s.batching ? 'on' : 'off'}|${concurrency}`;
          serviceRuns.set(key, [...(serviceRuns.get(key) ?? []), await httpLoad(s.url, loadPhotos, concurrency, SECONDS)]);
        }
      }
    }
  } finally {
    await pipelineClassifier.dispose();
    for (const s of services) await stopService(s.child);
  }
  const pipeline = median(pipelineRuns);
  log('## In-process pipeline (sharp preprocessing + the same session, batches of 8, decode overlapped with inference)');
  log('');
  log(`${pipeline.toFixed(1)} images/s on ${photosNote} (median of ${ROUNDS} rounds: ${pipelineRuns.map((r) => r.toFixed(1)).join(', ')}).`);
  log('');
  log('## HTTP service end to end (POST /v1/screen, real JPEGs, cache off, separate process)');
  log('');
  log(`Photos: ${photosNote}. ${ROUNDS} rounds of ${SECONDS} s per row, interleaved with the pipeline's; each figure is the median of its rounds (images/s of every round in the last column).`);
  log('');
  log('| batching | concurrency | images/s | p50 ms | p95 ms | p99 ms | errors | load generator CPU (cores) | service ÷ best bare | service ÷ pipeline | rounds |');
  log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  let best = { ips: 0, label: '' };
  for (const [key, runs] of serviceRuns) {
    const [batching, concurrency] = key.split('|');
    const ips = median(runs.map((r) => r.imagesPerSecond));
    if (ips > best.ips) best = { ips, label: `batching ${batching}, concurrency ${concurrency}` };
    const m = (pick: (r: HttpResult) => number) => median(runs.map(pick));
    log(`| ${batching} | ${concurrency} | ${ips.toFixed(1)} | ${m((r) => r.p50).toFixed(0)} | ${m((r) => r.p95).toFixed(0)} | ${m((r) => r.p99).toFixed(0)} | ${runs.reduce((n, r) => n + r.errors, 0)} | ${m((r) => r.clientCores).toFixed(2)} | ${(ips / bestBare).toFixed(2)} | ${(ips / pipeline).toFixed(2)} | ${runs.map((r) => r.imagesPerSecond.toFixed(1)).join(', ')} |`);
  }
  log('');
  log(`Best service throughput: ${best.ips.toFixed(1)} images/s (${best.label}): ÷ best bare engine **${(best.ips / bestBare).toFixed(2)}** (bare best ${bestBare.toFixed(1)} images/s); **service ÷ in-process pipeline ${(best.ips / pipeline).toFixed(2)}** (goal ≥ 0.90).`);
  process.stdout.write('\n');
  const cascadeLines: string[] = [];
  await benchCascade({
    photos: loadPhotos,
    photosNote,
    seconds: SECONDS, rounds: ROUNDS, concurrencies: [8, 16], data,
    log: (line) => { cascadeLines.push(line); process.stdout.write(`${line}\n`); },
  });
  if (args.includes('--write')) {
    const file = path.join(REPO_ROOT, 'docs', 'BENCHMARKS.md');
    let doc = await readFile(file, 'utf8').catch(() => '');
    const made = 'Made by `npm run bench -- --write`. The load generator shares the machine\'s cores with the service, which costs the service some throughput at high concurrency.';
    // The head (title, machine) and each "## " section this command writes; other sections stay.
    const sections = `${lines.join('\n')}\n\n${made}\n`.split(/\n(?=## )/);
    const head = sections.shift()!;
    const firstSection = doc.search(/^## /m);
    doc = firstSection >= 0 ? `${head.trimEnd()}\n\n${doc.slice(firstSection)}` : head;
    for (const section of [...sections, cascadeLines.join('\n')]) doc = replaceMarkdownSection(doc, section.split('\n')[0]!.replace(/:.*$/, ''), section);
    await writeFile(file, doc);
    process.stdout.write(`wrote ${file}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
