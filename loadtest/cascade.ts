/**
 * The cascade part of `npm run bench`: the served cascade (the config's cascade.stages; CONFIG_FILE
 * applies) through the HTTP service with CASCADE=first, on and off, in one run on the same photos,
 * and, given a labelled split, the flag accuracy of each mode through `eval --served`'s code path.
 * The goal it reports: cascade ÷ first-stage-alone throughput ≥ 0.85 with recall within 0.005 and
 * precision within 0.01 of CASCADE=off.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { loadConfig, REPO_ROOT } from '../src/config.js';
import { loadClassifier, type Classifier } from '../src/model/engine.js';
import type { CascadeMode } from '../src/policy/cascade.js';
import { readDataset } from '../src/training/dataset.js';
import { evaluateServed } from '../src/training/served.js';
import { httpLoad, median, metricSum, startService, stopService } from './lib.js';
import { pipelineImagesPerSecond } from './pipeline.js';

export interface CascadeBenchOptions {
  photos: Buffer[];
  photosNote: string;
  seconds: number;
  /** Interleaved rounds per mode and concurrency; each figure is their median. */
  rounds: number;
  concurrencies: number[];
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
    log(`Bands: ${config.cascade.stages.filter((s) => s.escalate).map((s) => `${s.model} escalates [${s.escalate!.from}, ${s.escalate!.below})`).join('; ')}. HTTP: ${opts.photosNote}, batching on, cache off, one service process per mode, all started before the first measurement; ${opts.rounds} rounds of ${opts.seconds} s per mode and concurrency, the modes' order alternating between rounds, and the in-process cascade pipeline (loadtest/pipeline.ts, the served session settings) measured in each round; each figure is the median of its rounds.`);
    log('');
    type Run = { ips: number; p50: number; p95: number; escalated: number; errors: number };
    const throughput = new Map<string, Run[]>();
    const pipelineRuns: number[] = [];
    const services: Array<{ mode: CascadeMode; url: string; child: ChildProcess }> = [];
    const m = config.models;
    const engine = { executionProvider: m.executionProvider, intraOpThreads: m.intraOpThreads, graphOptimization: m.graphOptimization, threadSpinning: m.threadSpinning };
    const classifiers: Classifier[] = [];
    try {
      for (const dir of config.models.directories) classifiers.push(await loadClassifier(path.resolve(REPO_ROOT, dir), engine));
      classifiers.sort((x, y) => stages.indexOf(x.manifest.name) - stages.indexOf(y.manifest.name));
      for (const mode of MODES) services.push({ mode, ...(await startService('', true, { CONFIG_FILE: file, MODEL_DIRS: '', CASCADE: mode })) });
      for (const s of services) await httpLoad(s.url, opts.photos, 2, 2); // warm-up
      for (let round = 0; round < opts.rounds; round++) {
        pipelineRuns.push(await pipelineImagesPerSecond(classifiers, opts.photos, opts.seconds, { cascade: config.cascade }));
        for (const s of round % 2 ? [...services].reverse() : services) {
          for (const concurrency of opts.concurrencies) {
            const before = await (await fetch(`${s.url}/metrics`)).text();
            const r = await httpLoad(s.url, opts.photos, concurrency, opts.seconds);
            const after = await (await fetch(`${s.url}/metrics`)).text();
            const runs = (text: string, outcome: string) => metricSum(text, 'wildlife_cascade_stage_runs_total', `stage="0",outcome="${outcome}"`);
            const escalated = runs(after, 'escalated') - runs(before, 'escalated');
            const all = escalated + runs(after, 'decided') - runs(before, 'decided');
            const key = `${s.mode}|${concurrency}`;
            throughput.set(key, [...(throughput.get(key) ?? []), { ips: r.imagesPerSecond, p50: r.p50, p95: r.p95, escalated: all ? escalated / all : 0, errors: r.errors }]);
          }
        }
      }
    } finally {
      for (const c of classifiers) await c.dispose();
      for (const s of services) await stopService(s.child);
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
    const pipeline = median(pipelineRuns);
    const ips = (mode: CascadeMode, concurrency: number) => median(throughput.get(`${mode}|${concurrency}`)!.map((r) => r.ips));
    log(`| CASCADE | concurrency | images/s | p50 ms | p95 ms | escalated (HTTP) | errors | rounds |${opts.data ? ` flag P (${dataName}) | flag R | flag F1 | escalated (${dataName}) |` : ''}`);
    log(`|---|---:|---:|---:|---:|---:|---:|---|${opts.data ? '---:|---:|---:|---:|' : ''}`);
    for (const mode of MODES) {
      for (const concurrency of opts.concurrencies) {
        const runs = throughput.get(`${mode}|${concurrency}`)!;
        const med = (pick: (r: Run) => number) => median(runs.map(pick));
        const a = accuracy?.get(mode);
        log(`| ${mode} | ${concurrency} | ${ips(mode, concurrency).toFixed(1)} | ${med((r) => r.p50).toFixed(0)} | ${med((r) => r.p95).toFixed(0)} | ${mode === 'first' ? '—' : `${(med((r) => r.escalated) * 100).toFixed(1)} %`} | ${runs.reduce((n, r) => n + r.errors, 0)} | ${runs.map((r) => r.ips.toFixed(1)).join(', ')} |${a ? ` ${a.precision.toFixed(3)} | ${a.recall.toFixed(3)} | ${a.f1.toFixed(3)} | ${mode === 'first' ? '—' : `${(a.escalationRate * 100).toFixed(1)} %`} |` : ''}`);
      }
    }
    log('');
    log(`In-process cascade pipeline: ${pipeline.toFixed(1)} images/s (rounds: ${pipelineRuns.map((r) => r.toFixed(1)).join(', ')}).`);
    log('');
    const verdict = opts.concurrencies.map((c) => `concurrency ${c}: cascade ÷ first stage alone **${(ips('on', c) / ips('first', c)).toFixed(2)}** (goal ≥ 0.85), cascade service ÷ in-process cascade pipeline **${(ips('on', c) / pipeline).toFixed(2)}**`);
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
