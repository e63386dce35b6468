/**
 * Candidate vs current model on the same images, through the same evaluation code as
 * `npm run eval`: top-1, flag precision/recall/F1 and per-class F1, side by side, with a verdict
 * promotion can act on.
 */
import { loadClassifier } from '../../model/engine.js';
import { readManifest, writeManifest, type ModelManifest } from '../../model/manifest.js';
import type { Dataset } from '../dataset.js';
import { predict, score, type FlagMetrics } from '../evaluate.js';

export interface ModelScore {
  name: string;
  version: string;
  dir: string;
  n: number;
  top1: number;
  flag: FlagMetrics;
  perClassF1: Record<string, number>;
}

export interface Comparison {
  data: string;
  n: number;
  candidate: ModelScore;
  baseline: ModelScore;
  delta: { top1: number; flagF1: number; flagPrecision: number; flagRecall: number };
  /** better: flag F1 up and top-1 not down; worse: flag F1 down; otherwise mixed (all beyond NOISE). */
  verdict: 'better' | 'worse' | 'mixed';
  compared: string;
}

export async function scoreModel(dir: string, dataset: Dataset, threads = 0): Promise<ModelScore> {
  const classifier = await loadClassifier(dir, { intraOpThreads: threads });
  try {
    const { predictions } = await predict(classifier, dataset);
    const m = classifier.manifest;
    const s = score(predictions, m.labels, m.name);
    return {
      name: m.name, version: m.version, dir, n: s.n, top1: s.top1, flag: s.flag,
      perClassF1: Object.fromEntries(Object.entries(s.perClass).map(([k, v]) => [k, Number(v.f1.toFixed(4))])),
    };
  } finally {
    await classifier.dispose();
  }
}

/**
 * Differences this small are one or two photos on a few hundred: noise, not a verdict. On the 407
 * wildlife-v1 val photos one photo moves flag F1 by about 0.003 and top-1 by 0.25 points.
 */
export const NOISE = 0.005;

export function verdictOf(delta: { flagF1: number; top1: number }): Comparison['verdict'] {
  if (delta.flagF1 > NOISE && delta.top1 >= -NOISE) return 'better';
  return delta.flagF1 < -NOISE ? 'worse' : 'mixed';
}

export async function compareModels(opts: { candidate: string; baseline: string; dataset: Dataset; data: string; threads?: number }): Promise<Comparison> {
  const candidate = await scoreModel(opts.candidate, opts.dataset, opts.threads);
  const baseline = await scoreModel(opts.baseline, opts.dataset, opts.threads);
  const delta = {
    top1: candidate.top1 - baseline.top1,
    flagF1: candidate.flag.f1 - baseline.flag.f1,
    flagPrecision: candidate.flag.precision - baseline.flag.precision,
    flagRecall: candidate.flag.recall - baseline.flag.recall,
  };
  const verdict = verdictOf(delta);
  return { data: opts.data, n: candidate.n, candidate, baseline, delta, verdict, compared: new Date().toISOString() };
}

const pct = (v: number) => `${(v * 100).toFixed(1)} %`;
const signed = (v: number, digits = 3) => `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;

export function renderComparison(c: Comparison): string {
  const row = (label: string, m: ModelScore) => `| ${label} | ${m.name} ${m.version} | ${pct(m.top1)} | ${m.flag.precision.toFixed(3)} | ${m.flag.recall.toFixed(3)} | ${m.flag.f1.toFixed(3)} |`;
  const classes = [...new Set([...Object.keys(c.candidate.perClassF1), ...Object.keys(c.baseline.perClassF1)])].sort();
  return [
    `# Candidate vs baseline on ${c.data} (${c.n} images)`,
    '',
    '| | model | top-1 | flag P | flag R | flag F1 |',
    '|---|---|---:|---:|---:|---:|',
    row('candidate', c.candidate),
    row('baseline', c.baseline),
    `| Δ | | ${signed(c.delta.top1 * 100, 1)} pt | ${signed(c.delta.flagPrecision)} | ${signed(c.delta.flagRecall)} | ${signed(c.delta.flagF1)} |`,
    '',
    `Verdict: **${c.verdict}** (better = flag F1 up by more than ${NOISE} and top-1 not down by more than ${NOISE * 100} pt; worse = flag F1 down by more than ${NOISE}).`,
    '',
    '| class | candidate F1 | baseline F1 | Δ |',
    '|---|---:|---:|---:|',
    ...classes.map((k) => {
      const a = c.candidate.perClassF1[k] ?? 0;
      const b = c.baseline.perClassF1[k] ?? 0;
      return `| ${k} | ${a.toFixed(3)} | ${b.toFixed(3)} | ${signed(a - b)} |`;
    }),
    '',
  ].join('\n');
}

/**
 * Writes the candidate's eval metrics and its verdict against the baseline into its model.json:
 * what `npm run model:promote` checks before it will replace the baseline.
 */
export async function recordComparison(candidateDir: string, c: Comparison): Promise<ModelManifest> {
  const fresh = await readManifest(candidateDir);
  const m = c.candidate;
  const updated: ModelManifest = {
    ...fresh,
    metrics: {
      ...fresh.metrics,
      eval: { data: c.data, n: m.n, top1: m.top1, flag: m.flag, per_class_f1: m.perClassF1, evaluated: c.compared },
      comparison: { baseline: `${c.baseline.name}@${c.baseline.version}`, delta: c.delta, verdict: c.verdict },
    },
  };
  await writeManifest(candidateDir, updated);
  return updated;
}
