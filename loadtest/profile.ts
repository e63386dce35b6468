/**
 * npm run loadtest:profile -- [--data ROOT --labels CSV --split val] [--seconds 10] [--concurrency 8] [--model DIR]
 * Where the service's main thread spends its time under load: the service runs in its own process
 * with --cpu-prof (cache off, as in npm run bench), the split's JPEGs are posted for `seconds`, and
 * the profile's self time is summed per function. ONNX Runtime's inference shows up here because
 * onnxruntime-node runs it on the main thread; libvips' decoding runs on libuv's threads and does not.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../src/config.js';
import { splitPhotos } from './cascade.js';
import { fixturePhotos, freePort, httpLoad, stopService } from './lib.js';

const args = process.argv.slice(2);
const flag = (name: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined; };

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }

async function main() {
  const data = flag('data') && flag('labels') ? { root: flag('data')!, labels: flag('labels')!, split: flag('split') ?? 'val' } : null;
  const photos = data ? await splitPhotos(data) : await fixturePhotos();
  const seconds = Number(flag('seconds') ?? 10);
  const concurrency = Number(flag('concurrency') ?? 8);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'wildlife-profile-'));
  const port = await freePort();
  const child = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--import', 'tsx', path.join(REPO_ROOT, 'src/main.ts')], {
    env: { ...process.env, PORT: String(port), MODEL_DIRS: flag('model') ?? 'models/wildlife-efficientnet-lite0', LOG_LEVEL: 'warn', CONFIG_FILE: path.join(REPO_ROOT, 'loadtest', 'bench-config.yaml') },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  try {
    const url = `http://127.0.0.1:${port}`;
    let ready = false;
    for (let i = 0; i < 200 && !ready; i++) {
      ready = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
      if (!ready) await new Promise((r) => setTimeout(r, 250));
    }
    if (!ready) throw new Error('service did not become ready');
    await httpLoad(url, photos, 2, 2);
    const r = await httpLoad(url, photos, concurrency, seconds);
    process.stdout.write(`${r.imagesPerSecond.toFixed(1)} images/s at concurrency ${concurrency} (load generator ${r.clientCores.toFixed(2)} cores)\n`);
    // SIGINT lets Node write the profile on the way out.
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGINT');
    await exited;
    const file = (await readdir(dir)).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error('no profile written');
    const profile = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
    const selfTime = new Map<number, number>();
    profile.samples.forEach((id, i) => selfTime.set(id, (selfTime.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
    const byFunction = new Map<string, number>();
    let total = 0;
    for (const node of profile.nodes) {
      const t = selfTime.get(node.id) ?? 0;
      total += t;
      const where = `${node.callFrame.functionName || '(anonymous)'} ${node.callFrame.url.split('/').slice(-2).join('/')}:${node.callFrame.lineNumber + 1}`;
      byFunction.set(where, (byFunction.get(where) ?? 0) + t);
    }
    process.stdout.write(`main thread, whole process life (start-up included): ${(total / 1e6).toFixed(1)} s sampled\n`);
    for (const [where, t] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
      process.stdout.write(`${(t / 1e3).toFixed(0).padStart(7)} ms ${((100 * t) / total).toFixed(1).padStart(5)} %  ${where}\n`);
    }
  } finally {
    await stopService(child);
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
