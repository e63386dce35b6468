/**
 * npm run bench [-- --model DIR] [--seconds N] [--write]
 * In one run, on one model: bare ONNX Runtime images/s at batch 1/4/8/16, then the HTTP service
 * end to end (separate process, real JPEGs, cache off) at several concurrencies with batching on
 * and off, reporting images/s, p50/p95/p99 and the ratio service ÷ best bare engine. --write also
 * stores the table in docs/BENCHMARKS.md.
 */
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../src/config.js';
import { loadClassifier } from '../src/model/engine.js';
import { discoverModelDirectories } from '../src/model/registry.js';
import { fixturePhotos, httpLoad, startService } from './lib.js';

const args = process.argv.slice(2);
const flag = (name: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined; };
const SECONDS = Number(flag('seconds') ?? 6);

async function bareEngine(modelDir: string, batch: number): Promise<number> {
  const classifier = await loadClassifier(modelDir, { intraOpThreads: 0 });
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
  for (const batch of [1, 4, 8, 16]) {
    const ips = await bareEngine(modelDir, batch);
    bestBare = Math.max(bestBare, ips);
    log(`| ${batch} | ${ips.toFixed(1)} |`);
  }
  log('');
  log('## HTTP service end to end (POST /v1/screen, real JPEGs, cache off, separate process)');
  log('');
  log('| batching | concurrency | images/s | p50 ms | p95 ms | p99 ms | errors | service ÷ best bare |');
  log('|---|---:|---:|---:|---:|---:|---:|---:|');
  let best = { ratio: 0, label: '' };
  for (const batching of [true, false]) {
    const { url, child } = await startService(modelDir, batching);
    try {
      await httpLoad(url, photos, 2, 2); // warm-up
      for (const concurrency of [1, 4, 8, 16]) {
        const r = await httpLoad(url, photos, concurrency, SECONDS);
        const ratio = r.imagesPerSecond / bestBare;
        if (ratio > best.ratio) best = { ratio, label: `batching ${batching ? 'on' : 'off'}, concurrency ${concurrency}` };
        log(`| ${batching ? 'on' : 'off'} | ${concurrency} | ${r.imagesPerSecond.toFixed(1)} | ${r.p50.toFixed(0)} | ${r.p95.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.errors} | ${ratio.toFixed(2)} |`);
      }
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }
  log('');
  log(`Best service ÷ bare-engine throughput: **${best.ratio.toFixed(2)}** (${best.label}; bare best ${bestBare.toFixed(1)} images/s).`);
  if (args.includes('--write')) {
    const file = path.join(REPO_ROOT, 'docs', 'BENCHMARKS.md');
    await writeFile(file, `${lines.join('\n')}\n\nMade by \`npm run bench -- --write\`. The load generator shares the machine's cores with the service, which costs the service some throughput at high concurrency.\n`);
    process.stdout.write(`wrote ${file}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
