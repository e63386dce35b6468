/**
 * `npm run eval -- --served`: the set of models and the policy `npm start` would serve, evaluated
 * as one. A photo is flagged by the service's own rule (decide() over every model's scores, with
 * the config's threshold overrides; with a cascade, runCascade() in the configured CASCADE mode),
 * so a weak model in the default set, a band, or an override in configs/default.yaml shows up here
 * exactly as it would in production.
 */
import path from 'node:path';
import { REPO_ROOT, type AppConfig } from '../config.js';
import { loadClassifier, type Classifier } from '../model/engine.js';
import { discoverModelDirectories } from '../model/registry.js';
import { cascadeProblems, runCascade, type CascadeMode } from '../policy/cascade.js';
import type { ClassifierScores } from '../policy/index.js';
import { AppError } from '../errors.js';
import type { Dataset } from './dataset.js';
import { decisionOf, predict, predictedOf, scoreDecisions, type Decided, type EvalReport, type Prediction } from './evaluate.js';

export interface ServedReport extends Omit<EvalReport, 'model'> {
  models: Array<{ name: string; version: string; precision: string; architecture: string; directory: string }>;
  thresholdOverrides: AppConfig['models']['thresholds'];
  /** With a cascade: its mode and bands, and how many photos went past each stage and who decided. */
  cascade: null | {
    mode: CascadeMode;
    stages: AppConfig['cascade']['stages'];
    escalated: number;
    escalationRate: number;
    decidedBy: Record<string, number>;
  };
}

/** Every model's scores for one photo, in the served order (cascade stages first to last). */
export interface ServedScores { path: string; relevant: boolean; scores: ClassifierScores[] }

/** The directories the service would load: models.directories, or every model under the models root. */
export async function servedDirectories(config: Readonly<AppConfig>, modelsRoot = path.join(REPO_ROOT, 'models')): Promise<string[]> {
  return config.models.directories.length ? [...config.models.directories] : discoverModelDirectories(modelsRoot);
}

/**
 * Runs every served model on every photo (as CASCADE=off would) and returns the scores in served
 * order, so a cascade's decisions in any mode, and its bands, can be computed from one pass.
 */
export async function scoreServed(opts: {
  config: Readonly<AppConfig>;
  dataset: Dataset;
  modelsRoot?: string;
  threads?: number;
  onProgress?: (model: string, done: number, total: number) => void;
}) {
  const { config, dataset } = opts;
  const dirs = await servedDirectories(config, opts.modelsRoot);
  const engine = { executionProvider: config.models.executionProvider, graphOptimization: config.models.graphOptimization, intraOpThreads: opts.threads ?? config.models.intraOpThreads };
  const runs: Array<{ classifier: Classifier; directory: string; byPath: Map<string, Prediction>; seconds: number; inferenceSeconds: number; skipped: EvalReport['skipped'] }> = [];
  try {
    // One model at a time, as the registry loads them: each has its own preprocessing.
    for (const directory of dirs) {
      const classifier = await loadClassifier(directory, engine);
      const name = classifier.manifest.name;
      runs.push({ classifier, directory, byPath: new Map(), seconds: 0, inferenceSeconds: 0, skipped: [] });
      const run = runs.at(-1)!;
      const result = await predict(classifier, dataset, { onProgress: (d, t) => opts.onProgress?.(name, d, t) });
      result.predictions.forEach((p) => run.byPath.set(p.path, p));
      Object.assign(run, { seconds: result.seconds, inferenceSeconds: result.inferenceSeconds, skipped: result.skipped });
    }
  } finally {
    await Promise.all(runs.map((r) => r.classifier.dispose()));
  }
  const stages = config.cascade.stages;
  const problems = cascadeProblems(stages, runs.map((r) => r.classifier.manifest.name));
  if (problems.length) throw new AppError('CASCADE_INVALID', problems.join('; '));
  if (stages.length) runs.sort((a, b) => stages.findIndex((s) => s.model === a.classifier.manifest.name) - stages.findIndex((s) => s.model === b.classifier.manifest.name));
  const photos: ServedScores[] = [];
  for (const sample of dataset.samples) {
    const perModel = runs.map((r) => r.byPath.get(sample.path));
    if (perModel.some((p) => !p)) continue; // unreadable for some model: listed in skipped
    photos.push({
      path: sample.path,
      relevant: perModel[0]!.relevant,
      scores: runs.map((r, i) => ({ classifier: r.classifier.manifest.name, version: r.classifier.manifest.version, labels: r.classifier.manifest.labels, probabilities: perModel[i]!.probabilities })),
    });
  }
  return {
    photos,
    models: runs.map((r) => ({ name: r.classifier.manifest.name, version: r.classifier.manifest.version, precision: r.classifier.manifest.precision, architecture: r.classifier.manifest.architecture, directory: r.directory })),
    skipped: [...new Map(runs.flatMap((r) => r.skipped).map((s) => [s.path, s])).values()],
    seconds: runs.reduce((a, r) => a + r.seconds, 0),
    inferenceSeconds: runs.reduce((a, r) => a + r.inferenceSeconds, 0),
  };
}

export async function evaluateServed(opts: Parameters<typeof scoreServed>[0]): Promise<ServedReport> {
  const { config, dataset } = opts;
  const scored = await scoreServed(opts);
  const overrides = config.models.thresholds;
  const { mode, stages } = config.cascade;
  const names = [...new Set(scored.photos[0]?.scores.flatMap((s) => s.labels.map((l) => l.name)) ?? [])];
  const items: Decided[] = [];
  const decidedBy: Record<string, number> = {};
  let escalated = 0;
  const labelOf = new Map(dataset.samples.map((s) => [s.path, s.label]));
  for (const photo of scored.photos) {
    const label = labelOf.get(photo.path)!;
    if (!stages.length) {
      items.push(decisionOf(label, photo.relevant, photo.scores, overrides));
      continue;
    }
    const outcome = await runCascade({ mode, stages }, async (i) => photo.scores[i]!, overrides);
    if (outcome.ran.length > 1) escalated++;
    decidedBy[outcome.decidedBy] = (decidedBy[outcome.decidedBy] ?? 0) + 1;
    items.push({ label, relevant: photo.relevant, predicted: predictedOf([outcome.ran.at(-1)!]), flagged: outcome.flagged });
  }
  return {
    models: scored.models,
    thresholdOverrides: overrides,
    cascade: stages.length ? { mode, stages, escalated, escalationRate: items.length ? escalated / items.length : 0, decidedBy } : null,
    ...scoreDecisions(items, names),
    skipped: scored.skipped,
    // Every model ran on every photo here; the cascade's served speed is npm run bench's to measure.
    speed: { images: items.length, seconds: scored.seconds, imagesPerSecond: items.length / scored.seconds, inferenceImagesPerSecond: items.length / scored.inferenceSeconds },
  };
}

