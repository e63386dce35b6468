/** Shared by the benchmarks: a service in its own process, and an HTTP load loop. */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { REPO_ROOT } from '../src/config.js';

export function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startService(modelDir: string, batching: boolean, env: NodeJS.ProcessEnv = {}): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/main.ts')], {
    env: { ...process.env, PORT: String(port), MODEL_DIRS: modelDir, BATCHING: batching ? 'on' : 'off', LOG_LEVEL: 'warn', CONFIG_FILE: path.join(REPO_ROOT, 'loadtest', 'bench-config.yaml'), ...env },
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

export interface HttpResult {
  concurrency: number; imagesPerSecond: number; p50: number; p95: number; p99: number; errors: number;
  /** CPU the load generator itself used, per second of the run (in cores): it shares the machine. */
  clientCores: number;
}

/**
 * POST /v1/screen from `concurrency` clients on kept-alive node:http connections, for `seconds`.
 * node:http rather than fetch: the generator runs on the service's own cores, and fetch cost it
 * three times the CPU (0.15 vs 0.05 cores at ~105 requests/s; docs/BENCHMARKS.md "Where the rest goes").
 */
export async function httpLoad(url: string, photos: Buffer[], concurrency: number, seconds: number): Promise<HttpResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const target = new URL('/v1/screen', url);
  const post = (photo: Buffer) => new Promise<number>((resolve, reject) => {
    const req = http.request(target, { method: 'POST', agent, headers: { 'content-type': 'image/jpeg', 'content-length': photo.length } }, (res) => {
      res.on('data', () => undefined);
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(photo);
  });
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const deadline = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline) {
      const photo = photos[next++ % photos.length]!;
      const t0 = performance.now();
      const status = await post(photo).catch(() => 0);
      if (status >= 200 && status < 300) latencies.push(performance.now() - t0);
      else errors++;
    }
  };
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    concurrency, imagesPerSecond: latencies.length / elapsed, p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99), errors,
    clientCores: (used.user + used.system) / 1e6 / elapsed,
  };
}

/** The middle value (the upper middle of an even count): what a benchmark reports of its rounds. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)]! : NaN;
}

export async function fixturePhotos(): Promise<Buffer[]> {
  const dir = path.join(REPO_ROOT, 'test', 'fixtures', 'met');
  return Promise.all((await readdir(dir)).filter((f) => f.endsWith('.jpg')).map((f) => readFile(path.join(dir, f))));
}

/** Stops a service from startService and waits, so a run never leaves a model-sized process behind. */
export async function stopService(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/** Resident set of a process from /proc (Linux), in bytes; null once the process is gone. */
export async function residentBytes(pid: number): Promise<number | null> {
  try {
    const kib = /^VmRSS:\s+(\d+)\s+kB/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kib === undefined ? null : Number(kib) * 1024;
  } catch {
    return null;
  }
}

/** The first unlabelled sample of a metric in Prometheus text format. */
export function metricValue(exposition: string, name: string): number | undefined {
  const m = new RegExp(`^${name}(?:\\{\\})? ([^ \\n]+)`, 'm').exec(exposition);
  return m ? Number(m[1]) : undefined;
}

/** Sum of a labelled metric's samples whose labels contain `labels` (e.g. `result="miss"`). */
export function metricSum(exposition: string, name: string, labels = ''): number {
  let sum = 0;
  for (const m of exposition.matchAll(new RegExp(`^${name}\\{([^}]*)\\} ([^ \\n]+)`, 'gm'))) {
    if (m[1]!.includes(labels)) sum += Number(m[2]);
  }
  return sum;
}

/**
 * Ordinary least squares y = slope·x + intercept. Null with fewer than two points or all x equal,
 * where no slope exists; callers must say so rather than print 0.
 */
export function linearFit(points: ReadonlyArray<readonly [number, number]>): { slope: number; intercept: number } | null {
  const n = points.length;
  if (n < 2) return null;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
  }
  if (sxx === 0) return null;
  const slope = sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

/**
 * Replaces the `## ` section whose heading starts with `headingPrefix` (up to the next `## `
 * heading), or appends it, so each benchmark can rewrite its own part of docs/BENCHMARKS.md
 * without touching the others.
 */
export function replaceMarkdownSection(doc: string, headingPrefix: string, section: string): string {
  const lines = doc.split('\n');
  const start = lines.findIndex((l) => l.startsWith(headingPrefix));
  const body = section.trimEnd().split('\n');
  if (start < 0) return `${doc.trimEnd()}\n\n${body.join('\n')}\n`;
  let end = lines.findIndex((l, i) => i > start && l.startsWith('## '));
  if (end < 0) end = lines.length;
  const after = lines.slice(end);
  return [...lines.slice(0, start), ...body, ...(after.length ? ['', ...after] : [''])].join('\n');
}
