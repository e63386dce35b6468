/**
 * The cascade part of `npm run bench`: the served cascade (the config's cascade.stages; CONFIG_FILE
 * applies) through the HTTP service with CASCADE=first, on and off, in one run on the same photos,
 * and, given a labelled split, the flag accuracy of each mode through `eval --served`'s code path.
 * The goal it reports: cascade ÷ first-stage-alone throughput ≥ 0.85 with recall within 0.005 and
 * precision within 0.01 of CASCADE=off.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { loadConfig, REPO_ROOT } from '../src/config.js';
import type { CascadeMode } from '../src/policy/cascade.js';
import { readDataset } from '../src/training/dataset.js';
import { evaluateServed } from '../src/training/served.js';
import { httpLoad, metricSum, startService, stopService } from './lib.js';

export interface CascadeBenchOptions {
  photos: Buffer[];
  photosNote: string;
  seconds: number;
  concurrency: number;
  /** A labelled split for the accuracy columns (never used to choose anything). */
  data?: { root: string; labels: string; split: string };
  log: (line: string) => void;
}

const MODES: CascadeMode[] = ['first', 'on', 'off'];

export async function benchCascade(opts: CascadeBenchOptions): Promise<void> {
  const config = loadConfig(process.env);
  const { log } = opts;
  if (config.cascade.stages.length === 0) {
    log('## Cascade');
    log('');
    log('The served configuration has no cascade (cascade.stages is empty); nothing to measure.');
    return;
  }
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-bench-cascade-'));
  try {
    // The bench settings (cache off, long deadlines) over the served models and cascade.
    const bench = parse(await readFile(path.join(REPO_ROOT, 'loadtest', 'bench-config.yaml'), 'utf8')) as Record<string, unknown>;
    const file = path.join(tmp, 'cascade.yaml');
    await writeFile(file, stringify({ ...bench, models: { ...config.models }, cascade: { ...config.cascade } }));
    const stages = config.cascade.stages.map((s) => s.model);
    log(`## Cascade: ${stages.join(' → ')}`);
    log('');
    log(`Bands: ${config.cascade.stages.filter((s) => s.escalate).map((s) => `${s.model} escalates [${s.escalate!.from}, ${s.escalate!.below})`).join('; ')}. HTTP: ${opts.photosNote}, concurrency ${opts.concurrency}, batching on, cache off, ${opts.seconds} s per mode, one service process per mode.`);
    log('');
    const throughput = new Map<CascadeMode, { ips: number; p50: number; p95: number; escalated: number; errors: number }>();
    for (const mode of MODES) {
      const { url, child } = await startService('', true, { CONFIG_FILE: file, MODEL_DIRS: '', CASCADE: mode });
      try {
        await httpLoad(url, opts.photos, 2, 2); // warm-up
        const before = await (await fetch(`${url}/metrics`)).text();
        const r = await httpLoad(url, opts.photos, opts.concurrency, opts.seconds);
        const after = await (await fetch(`${url}/metrics`)).text();
        const runs = (text: string, outcome: string) => metricSum(text, 'wildlife_cascade_stage_runs_total', `stage="0",outcome="${outcome}"`);
        const escalated = runs(after, 'escalated') - runs(before, 'escalated');
        const all = escalated + runs(after, 'decided') - runs(before, 'decided');
        throughput.set(mode, { ips: r.imagesPerSecond, p50: r.p50, p95: r.p95, escalated: all ? escalated / all : 0, errors: r.errors });
      } finally {
        await stopService(child);
      }
    }
    let accuracy: Map<CascadeMode, { precision: number; recall: number; f1: number; escalationRate: number }> | null = null;
    if (opts.data) {
      accuracy = new Map();
      const dataset = await readDataset({ root: opts.data.root, labels: opts.data.labels, split: opts.data.split });
      for (const mode of MODES) {
        const report = await evaluateServed({ config: loadConfig({ ...process.env, CASCADE: mode }), dataset });
        accuracy.set(mode, { precision: report.flag.precision, recall: report.flag.recall, f1: report.flag.f1, escalationRate: report.cascade?.escalationRate ?? 0 });
      }
    }
    const dataName = opts.data ? `${path.basename(path.resolve(opts.data.root))} ${opts.data.split}` : '';
    log(`| CASCADE | images/s | p50 ms | p95 ms | escalated (HTTP) | errors |${opts.data ? ` flag P (${dataName}) | flag R | flag F1 | escalated (${dataName}) |` : ''}`);
    log(`|---|---:|---:|---:|---:|---:|${opts.data ? '---:|---:|---:|---:|' : ''}`);
    for (const mode of MODES) {
      const t = throughput.get(mode)!;
      const a = accuracy?.get(mode);
      log(`| ${mode} | ${t.ips.toFixed(1)} | ${t.p50.toFixed(0)} | ${t.p95.toFixed(0)} | ${mode === 'first' ? '—' : `${(t.escalated * 100).toFixed(1)} %`} | ${t.errors} |${a ? ` ${a.precision.toFixed(3)} | ${a.recall.toFixed(3)} | ${a.f1.toFixed(3)} | ${mode === 'first' ? '—' : `${(a.escalationRate * 100).toFixed(1)} %`} |` : ''}`);
    }
    log('');
    const ratio = throughput.get('on')!.ips / throughput.get('first')!.ips;
    const verdict = [`cascade ÷ first stage alone: **${ratio.toFixed(2)}** (goal ≥ 0.85)`];
    if (accuracy) {
      const on = accuracy.get('on')!;
      const off = accuracy.get('off')!;
      verdict.push(`recall − off ${(on.recall - off.recall).toFixed(4)} (goal ≥ −0.005)`, `precision − off ${(on.precision - off.precision).toFixed(4)} (goal ≥ −0.01)`);
    }
    log(`${verdict.join('; ')}.`);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The JPEGs of a labelled split (the load generator posts image/jpeg), read once. */
export async function splitPhotos(data: { root: string; labels: string; split: string }): Promise<Buffer[]> {
  const dataset = await readDataset(data);
  const photos = await Promise.all(dataset.samples.map((s) => readFile(s.path)));
  return photos.filter((b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff);
}
