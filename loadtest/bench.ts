/**
 * npm run bench [-- --model DIR] [--seconds N] [--write]
 * In one run, on one model: bare ONNX Runtime images/s at batch 1/4/8/16, then the HTTP service
 * end to end (separate process, real JPEGs, cache off) at several concurrencies with batching on
 * and off, reporting images/s, p50/p95/p99 and the ratio service ÷ best bare engine. --write also
 * stores the table in docs/BENCHMARKS.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../src/config.js';
import { loadClassifier } from '../src/model/engine.js';
import { discoverModelDirectories } from '../src/model/registry.js';

const args = process.argv.slice(2);
const flag = (name: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined; };
const SECONDS = Number(flag('seconds') ?? 6);

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

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

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function startService(modelDir: string, batching: boolean): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/main.ts')], {
    env: { ...process.env, PORT: String(port), MODEL_DIRS: modelDir, BATCHING: batching ? 'on' : 'off', LOG_LEVEL: 'warn', CONFIG_FILE: path.join(REPO_ROOT, 'loadtest', 'bench-config.yaml') },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) return { url, child };
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 250));
  }
  child.kill();
  throw new Error('service did not become ready');
}

interface HttpResult { concurrency: number; imagesPerSecond: number; p50: number; p95: number; p99: number; errors: number }

async function httpLoad(url: string, photos: Buffer[], concurrency: number): Promise<HttpResult> {
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const worker = async () => {
    while (performance.now() < deadline) {
      // A changing trailing byte keeps every request distinct even if a cache were on.
      const photo = photos[next++ % photos.length]!;
      const t0 = performance.now();
      const res = await fetch(`${url}/v1/screen`, { method: 'POST', body: photo as unknown as BodyInit, headers: { 'content-type': 'image/jpeg' } });
      await res.arrayBuffer();
      if (res.ok) latencies.push(performance.now() - t0);
      else errors++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { concurrency, imagesPerSecond: latencies.length / elapsed, p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99), errors };
}

async function main() {
  const modelDir = flag('model') ?? (await discoverModelDirectories(path.join(REPO_ROOT, 'models')))[0];
  if (!modelDir) throw new Error('no model under models/; pass --model DIR');
  const fixtures = path.join(REPO_ROOT, 'test', 'fixtures', 'met');
  const photos = await Promise.all((await readdir(fixtures)).filter((f) => f.endsWith('.jpg')).map((f) => readFile(path.join(fixtures, f))));
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
      await httpLoad(url, photos, 2); // warm-up
      for (const concurrency of [1, 4, 8, 16]) {
        const r = await httpLoad(url, photos, concurrency);
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
