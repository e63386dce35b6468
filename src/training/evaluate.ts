/**
 * Evaluation through the serving path: the same sharp preprocessing and ONNX Runtime engine the
 * service uses, and the same policy rule for "flagged". Unreadable images are reported, not fatal.
 */
import { isAppError, type ErrorCode } from '../errors.js';
import type { Classifier } from '../model/engine.js';
import type { LabelSpec } from '../model/manifest.js';
import { decide, type ClassifierScores, type ThresholdOverrides } from '../policy/index.js';
import { modelInput } from '../preprocess/index.js';
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
  skipped: Array<{ path: string; code: ErrorCode; message: string }>;
  unknownClasses: string[];
  speed: { images: number; seconds: number; imagesPerSecond: number; inferenceImagesPerSecond: number };
}

const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
export function f1Of(precision: number, recall: number): number {
  return precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
}
/** Counts one photo: flagged or not, against whether it is trade-relevant. */
export function tally(c: BinaryCounts, flagged: boolean, relevant: boolean): void {
  if (flagged && relevant) c.tp++;
  else if (flagged) c.fp++;
  else if (relevant) c.fn++;
  else c.tn++;
}
export function flagMetrics(c: BinaryCounts): FlagMetrics {
  const precision = ratio(c.tp, c.tp + c.fp);
  const recall = ratio(c.tp, c.tp + c.fn);
  return { ...c, precision, recall, f1: f1Of(precision, recall) };
}

export async function predict(classifier: Classifier, dataset: Dataset, opts: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {}) {
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
        return await modelInput(await readFile(s.path), classifier.manifest);
      } catch (err) {
        // A catalogue code either way: an image the service would refuse keeps its own, a file that
        // cannot be read (missing, unreadable) is INPUT_NOT_READABLE with the system's reason.
        const code: ErrorCode = isAppError(err) ? err.code : 'INPUT_NOT_READABLE';
        skipped.push({ path: s.path, code, message: (err as Error).message });
        return null;
      }
    }));
    const kept = chunk.filter((_, j) => prepared[j]);
    prepared.filter((p) => p !== null).forEach((p, j) => batch.set(p.tensor, j * classifier.inputLength));
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

/** The most confident label of the models that decided: with one model, its argmax. */
export function predictedOf(scores: readonly ClassifierScores[]): string {
  let predicted = '';
  let best = -1;
  for (const s of scores) s.labels.forEach((l, i) => { if (s.probabilities[i]! > best) { best = s.probabilities[i]!; predicted = l.name; } });
  return predicted;
}

/**
 * One photo's outcome under the service's own rule: decide() over its scores with the threshold
 * overrides the service would apply (a config's models.thresholds; none for a model.json alone).
 */
export function decisionOf(label: string, relevant: boolean, scores: readonly ClassifierScores[], overrides: ThresholdOverrides = {}): Decided {
  return { label, relevant, predicted: predictedOf(scores), flagged: decide(scores, overrides).flagged };
}

/** One model's predictions scored as the service would flag them under `overrides`. */
export function score(predictions: readonly Prediction[], labels: readonly LabelSpec[], modelName = 'model', overrides: ThresholdOverrides = {}) {
  return scoreDecisions(predictions.map((p) => decisionOf(p.label, p.relevant, [{ classifier: modelName, version: '', labels, probabilities: p.probabilities }], overrides)), labels.map((l) => l.name));
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
    tally(counts, p.flagged, p.relevant);
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

/** Class probabilities for unlabelled files (SSLD's teacher pass), through the same serving path. */
export async function classifyFiles(classifier: Classifier, paths: readonly string[], opts: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {}) {
  const dataset: Dataset = { samples: paths.map((p) => ({ path: p, label: '', split: null })), classes: [], tradeRelevant: new Map() };
  const { predictions, skipped, seconds } = await predict(classifier, dataset, opts);
  return { results: predictions.map((p) => ({ path: p.path, probabilities: p.probabilities })), skipped, seconds };
}
