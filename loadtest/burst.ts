/**
 * `npm run loadtest:burst`: the memory of one burst of large uploads (issue 12, defect 3).
 *
 * Starts the real service in its own process with the default config (configs/default.yaml, or
 * BURST_CONFIG_FILE), fires N concurrent ~15 MB valid JPEGs at POST /v1/screen, samples the service
 * process's VmRSS from /proc every 50 ms, and reports the baseline RSS, the peak RSS and the status
 * histogram. BURST_URL + BURST_PID measure a service that is already running instead.
 *
 * The photos are generated with sharp (noise at quality 100, so they stay large after JPEG coding)
 * into a temp dir and reused by later runs; they are never committed.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import sharp from 'sharp';
import { REPO_ROOT } from '../src/config.js';
import { freePort } from './lib.js';

const COUNT = Number(process.env.BURST_COUNT ?? 100);
const TARGET_BYTES = Number(process.env.BURST_BYTES ?? 15 * 1024 * 1024);
const DIR = path.join(tmpdir(), `wildlife-burst-${COUNT}x${TARGET_BYTES}`);
const MODEL_DIR = path.join(REPO_ROOT, 'models', 'wildlife-resnet50vd');

/** Noise at quality 100 (4:4:4) codes to about 3.1 bytes a pixel; each photo gets its own noise, so no two share a cache entry. */
async function photos(): Promise<string[]> {
  mkdirSync(DIR, { recursive: true });
  const side = Math.round(Math.sqrt(TARGET_BYTES / 3.1));
  const files: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    const file = path.join(DIR, `${String(i).padStart(3, '0')}.jpg`);
    files.push(file);
    if (existsSync(file)) continue;
    const jpeg = await sharp(randomBytes(side * side * 3), { raw: { width: side, height: side, channels: 3 } })
      .jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer();
    await writeFile(file, jpeg);
  }
  return files;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function start(): Promise<{ url: string; pid: number; child: ChildProcess | null }> {
  if (process.env.BURST_URL && process.env.BURST_PID) return { url: process.env.BURST_URL, pid: Number(process.env.BURST_PID), child: null };
  const port = await freePort();
  const cwd = process.env.BURST_SERVICE_ROOT ?? REPO_ROOT;
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(cwd, 'src/main.ts')], {
    cwd,
    env: { ...process.env, PORT: String(port), MODEL_DIRS: MODEL_DIR, LOG_LEVEL: 'warn', ...(process.env.BURST_CONFIG_FILE ? { CONFIG_FILE: process.env.BURST_CONFIG_FILE } : { CONFIG_FILE: '' }) },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 400; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) return { url, pid: child.pid!, child };
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 250));
  }
  child.kill();
  throw new Error('service did not become ready');
}

/**
 * node:http rather than fetch: a server may answer 503 before it has read the body, and the
 * client must still see that answer rather than a broken pipe.
 */
function post(url: string, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const req = request(`${url}/v1/screen`, { method: 'POST', headers: { 'content-type': 'image/jpeg', 'content-length': body.length }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.statusCode)));
      res.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
    });
    req.on('error', (e) => resolve(`error:${(e as NodeJS.ErrnoException).code ?? e.message}`));
    req.end(body);
  });
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

async function main(): Promise<void> {
  const files = await photos();
  const bodies = await Promise.all(files.map((f) => readFile(f)));
  const sizes = bodies.map((b) => b.length).sort((a, b) => a - b);
  const service = await start();
  try {
    await new Promise((r) => setTimeout(r, 2000));
    const baseline = rssBytes(service.pid);
    let peak = baseline;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssBytes(service.pid));
      } catch { /* the process ended: the caller sees it in the statuses */ }
    }, 50);
    const t0 = performance.now();
    const statuses = await Promise.all(bodies.map((b) => post(service.url, b)));
    const seconds = (performance.now() - t0) / 1000;
    // Freed buffers and late sharp work can still raise RSS just after the last answer.
    await new Promise((r) => setTimeout(r, 1000));
    clearInterval(sampler);
    const after = rssBytes(service.pid);
    const histogram: Record<string, number> = {};
    for (const s of statuses) histogram[s] = (histogram[s] ?? 0) + 1;
    const report = {
      photos: COUNT, photoBytes: { min: sizes[0], median: sizes[Math.floor(sizes.length / 2)], max: sizes.at(-1) },
      config: process.env.BURST_CONFIG_FILE ?? 'configs/default.yaml', baselineRss: mb(baseline), peakRss: mb(peak), afterRss: mb(after),
      seconds: Number(seconds.toFixed(1)), statuses: histogram,
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    const unexpected = Object.keys(histogram).filter((s) => !['200', '503', '413'].includes(s));
    if (unexpected.length) process.exitCode = 1;
  } finally {
    service.child?.kill('SIGTERM');
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
