/**
 * Evaluation through the serving path: the same sharp preprocessing and ONNX Runtime engine the
 * service uses, and the same policy rule for "flagged". Unreadable images are reported, not fatal.
 */
import { isAppError } from '../errors.js';
import type { Classifier } from '../model/engine.js';
import type { LabelSpec } from '../model/manifest.js';
import { decide } from '../policy/index.js';
import { prepareImage, tensorSpecOf, writeTensor } from '../preprocess/index.js';
import type { Dataset } from './dataset.js';
import { readFile } from 'node:fs/promises';

export interface Prediction {
  path: string;
  label: string;
  /** Ground truth for flagging: the dataset's trade_relevant, else the model's for that label. */
  relevant: boolean;
  probabilities: Float32Array;
}

export interface BinaryCounts { tp: number; fp: number; fn: number; tn: number }
export interface FlagMetrics extends BinaryCounts { precision: number; recall: number; f1: number }
export interface ClassMetrics { precision: number; recall: number; f1: number; support: number }

export interface EvalReport {
  model: { name: string; version: string; precision: string; architecture: string };
  n: number;
  top1: number;
  flag: FlagMetrics;
  perClass: Record<string, ClassMetrics>;
  confusion: { labels: string[]; matrix: number[][] };
  skipped: Array<{ path: string; code: string; message: string }>;
  unknownClasses: string[];
  speed: { images: number; seconds: number; imagesPerSecond: number; inferenceImagesPerSecond: number };
}

const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
export function f1Of(precision: number, recall: number): number {
  return precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
}
export function flagMetrics(c: BinaryCounts): FlagMetrics {
  const precision = ratio(c.tp, c.tp + c.fp);
  const recall = ratio(c.tp, c.tp + c.fn);
  return { ...c, precision, recall, f1: f1Of(precision, recall) };
}

export async function predict(classifier: Classifier, dataset: Dataset, opts: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {}) {
  const spec = tensorSpecOf(classifier.manifest);
  const modelRelevance = new Map(classifier.manifest.labels.map((l) => [l.name, l.trade_relevant]));
  const batchSize = opts.batchSize ?? 16;
  const predictions: Prediction[] = [];
  const skipped: EvalReport['skipped'] = [];
  let inferenceSeconds = 0;
  const started = performance.now();
  const batch = new Float32Array(batchSize * classifier.inputLength);
  for (let i = 0; i < dataset.samples.length; i += batchSize) {
    const chunk = dataset.samples.slice(i, i + batchSize);
    const prepared = await Promise.all(chunk.map(async (s) => {
      try {
        return await prepareImage(await readFile(s.path), spec);
      } catch (err) {
        const code = isAppError(err) ? err.code : (err as NodeJS.ErrnoException).code ?? 'READ_FAILED';
        skipped.push({ path: s.path, code, message: (err as Error).message });
        return null;
      }
    }));
    const kept = chunk.filter((_, j) => prepared[j]);
    prepared.filter((p) => p !== null).forEach((p, j) => writeTensor(p.rgb, spec, batch, j * classifier.inputLength));
    if (kept.length) {
      const t0 = performance.now();
      const outputs = await classifier.classify(batch, kept.length);
      inferenceSeconds += (performance.now() - t0) / 1000;
      kept.forEach((s, j) => predictions.push({
        path: s.path,
        label: s.label,
        relevant: dataset.tradeRelevant.get(s.label) ?? modelRelevance.get(s.label) ?? false,
        probabilities: outputs[j]!.probabilities,
      }));
    }
    opts.onProgress?.(Math.min(i + batchSize, dataset.samples.length), dataset.samples.length);
  }
  return { predictions, skipped, seconds: (performance.now() - started) / 1000, inferenceSeconds };
}

export function isFlagged(name: string, labels: readonly LabelSpec[], probabilities: Float32Array): boolean {
  return decide([{ classifier: name, version: '', labels, probabilities }]).flagged;
}

export function score(predictions: readonly Prediction[], labels: readonly LabelSpec[], modelName = 'model') {
  const names = labels.map((l) => l.name);
  return scoreDecisions(predictions.map((p) => {
    let best = 0;
    for (let i = 1; i < p.probabilities.length; i++) if (p.probabilities[i]! > p.probabilities[best]!) best = i;
    return { label: p.label, relevant: p.relevant, predicted: names[best]!, flagged: isFlagged(modelName, labels, p.probabilities) };
  }), names);
}

/** One image's outcome: its true class, the predicted one and the flag decision, however reached. */
export interface Decided { label: string; relevant: boolean; predicted: string; flagged: boolean }

/** Top-1, flag counts, per-class metrics and the confusion matrix over `names` (the predictable classes). */
export function scoreDecisions(items: readonly Decided[], names: readonly string[]) {
  const index = new Map(names.map((n, i) => [n, i]));
  const extra = [...new Set(items.map((p) => p.label).filter((l) => !index.has(l)))].sort();
  const rows = [...names, ...extra];
  const matrix = rows.map(() => names.map(() => 0));
  const counts: BinaryCounts = { tp: 0, fp: 0, fn: 0, tn: 0 };
  let correct = 0;
  for (const p of items) {
    const truth = rows.indexOf(p.label);
    matrix[truth]![index.get(p.predicted)!]!++;
    if (p.predicted === p.label) correct++;
    if (p.flagged && p.relevant) counts.tp++;
    else if (p.flagged) counts.fp++;
    else if (p.relevant) counts.fn++;
    else counts.tn++;
  }
  const perClass: Record<string, ClassMetrics> = {};
  names.forEach((name, c) => {
    const tp = matrix[c]![c]!;
    const support = matrix[c]!.reduce((a, b) => a + b, 0);
    const predicted = matrix.reduce((a, row) => a + row[c]!, 0);
    const precision = ratio(tp, predicted);
    const recall = ratio(tp, support);
    if (support > 0 || predicted > 0) perClass[name] = { precision, recall, f1: f1Of(precision, recall), support };
  });
  return { n: items.length, top1: ratio(correct, items.length), flag: flagMetrics(counts), perClass, confusion: { labels: rows, matrix: matrix.map((r) => [...r]) }, unknownClasses: extra };
}

export interface Calibration {
  /** A flag precision to reach, or null when the threshold maximises flag F1. */
  targetPrecision: number | null;
  reached: boolean;
  commonThreshold: number;
  thresholds: Record<string, number>;
  before: FlagMetrics;
  after: FlagMetrics;
  note: string;
}

const MIN_LABEL_FLAGS = 5;

/**
 * Thresholds for a target flag precision. First one common threshold on the top trade-relevant
 * score: the lowest that reaches the target (most recall), or the best-F1 one when none does. Then
 * each label whose own flags miss the target (with at least MIN_LABEL_FLAGS of them) is raised
 * until they reach it. Calibrated on the data given: report its numbers as such.
 */
export function calibrate(predictions: readonly Prediction[], labels: readonly LabelSpec[], targetPrecision: number | null): Calibration {
  const relevantIdx = labels.flatMap((l, i) => (l.trade_relevant ? [i] : []));
  const top = predictions.map((p) => {
    let best = relevantIdx[0] ?? 0;
    for (const i of relevantIdx) if (p.probabilities[i]! > p.probabilities[best]!) best = i;
    return { score: p.probabilities[best] ?? 0, label: best, relevant: p.relevant };
  });
  const countsAt = (thresholds: number[]) => {
    const c: BinaryCounts = { tp: 0, fp: 0, fn: 0, tn: 0 };
    predictions.forEach((p) => {
      const flagged = relevantIdx.some((i) => p.probabilities[i]! >= thresholds[i]!);
      if (flagged && p.relevant) c.tp++; else if (flagged) c.fp++; else if (p.relevant) c.fn++; else c.tn++;
    });
    return flagMetrics(c);
  };
  const before = countsAt(labels.map((l) => l.threshold ?? 1.1));
  const candidates = [...new Set(top.map((t) => t.score))].sort((a, b) => a - b);
  let common = 0.5;
  let reached = false;
  let bestF1 = -1;
  for (const t of candidates) {
    const m = countsAt(labels.map(() => t));
    if (targetPrecision !== null && m.tp > 0 && m.precision >= targetPrecision) { common = t; reached = true; break; }
    if (m.f1 > bestF1) { bestF1 = m.f1; common = t; }
  }
  if (targetPrecision === null) reached = true;
  const thresholds = labels.map((l) => (l.trade_relevant ? common : 1.1));
  for (const i of targetPrecision === null ? [] : relevantIdx) {
    const mine = top.filter((t) => t.label === i && t.score >= thresholds[i]!).sort((a, b) => a.score - b.score);
    if (mine.length < MIN_LABEL_FLAGS) continue;
    for (let k = 0; k < mine.length; k++) {
      const rest = mine.slice(k);
      if (ratio(rest.filter((t) => t.relevant).length, rest.length) >= targetPrecision!) {
        thresholds[i] = Math.max(thresholds[i]!, mine[k]!.score);
        break;
      }
    }
  }
  const rounded = thresholds.map((t) => Math.min(1, Math.floor(t * 1e4) / 1e4));
  const after = countsAt(rounded);
  const out: Record<string, number> = {};
  relevantIdx.forEach((i) => (out[labels[i]!.name] = rounded[i]!));
  return {
    targetPrecision,
    reached,
    commonThreshold: Math.floor(common * 1e4) / 1e4,
    thresholds: out,
    before,
    after,
    note: targetPrecision === null
      ? 'One threshold for every trade-relevant label, the one with the best flag F1 on the calibration data.'
      : reached
        ? 'Thresholds reach the target flag precision on the calibration data; expect somewhat less on new data.'
        : `No threshold reaches precision ${targetPrecision} on this data; the best-F1 threshold was used instead.`,
  };
}

/** Class probabilities for unlabelled files (SSLD's teacher pass), through the same serving path. */
export async function classifyFiles(classifier: Classifier, paths: readonly string[], opts: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {}) {
  const dataset: Dataset = { samples: paths.map((p) => ({ path: p, label: '', split: null })), classes: [], tradeRelevant: new Map() };
  const { predictions, skipped, seconds } = await predict(classifier, dataset, opts);
  return { results: predictions.map((p) => ({ path: p.path, probabilities: p.probabilities })), skipped, seconds };
}
