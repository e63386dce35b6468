/**
 * `npm run eval -- --served`: the set of models and the policy `npm start` would serve, evaluated
 * as one. A photo is flagged by the service's own rule (decide() over every model's scores, with
 * the config's threshold overrides), so a weak model in the default set, or an override in
 * configs/default.yaml, shows up here exactly as it would in production.
 */
import path from 'node:path';
import { REPO_ROOT, type ServiceConfig } from '../config.js';
import { loadClassifier, type Classifier } from '../model/engine.js';
import { discoverModelDirectories } from '../model/registry.js';
import { decide } from '../policy/index.js';
import type { Dataset } from './dataset.js';
import { predict, scoreDecisions, type Decided, type EvalReport, type Prediction } from './evaluate.js';

export interface ServedReport extends Omit<EvalReport, 'model'> {
  models: Array<{ name: string; version: string; precision: string; architecture: string; directory: string }>;
  thresholdOverrides: ServiceConfig['models']['thresholds'];
}

/** The directories the service would load: models.directories, or every model under the models root. */
export async function servedDirectories(config: Readonly<ServiceConfig>, modelsRoot = path.join(REPO_ROOT, 'models')): Promise<string[]> {
  return config.models.directories.length ? [...config.models.directories] : discoverModelDirectories(modelsRoot);
}

export async function evaluateServed(opts: {
  config: Readonly<ServiceConfig>;
  dataset: Dataset;
  modelsRoot?: string;
  threads?: number;
  onProgress?: (model: string, done: number, total: number) => void;
}): Promise<ServedReport> {
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
    const overrides = config.models.thresholds;
    const names = [...new Set(runs.flatMap((r) => r.classifier.manifest.labels.map((l) => l.name)))];
    const items: Decided[] = [];
    for (const sample of dataset.samples) {
      const perModel = runs.map((r) => r.byPath.get(sample.path));
      if (perModel.some((p) => !p)) continue; // unreadable for some model: listed in skipped
      const scores = runs.map((r, i) => ({ classifier: r.classifier.manifest.name, version: r.classifier.manifest.version, labels: r.classifier.manifest.labels, probabilities: perModel[i]!.probabilities }));
      // The class shown is the most confident label of any model; with one model, its argmax.
      let predicted = '';
      let best = -1;
      for (const s of scores) s.labels.forEach((l, i) => { if (s.probabilities[i]! > best) { best = s.probabilities[i]!; predicted = l.name; } });
      items.push({ label: sample.label, relevant: perModel[0]!.relevant, predicted, flagged: decide(scores, overrides).flagged });
    }
    const seconds = runs.reduce((a, r) => a + r.seconds, 0);
    const inferenceSeconds = runs.reduce((a, r) => a + r.inferenceSeconds, 0);
    const skipped = [...new Map(runs.flatMap((r) => r.skipped).map((s) => [s.path, s])).values()];
    return {
      models: runs.map((r) => ({ name: r.classifier.manifest.name, version: r.classifier.manifest.version, precision: r.classifier.manifest.precision, architecture: r.classifier.manifest.architecture, directory: r.directory })),
      thresholdOverrides: overrides,
      ...scoreDecisions(items, names),
      skipped,
      speed: { images: items.length, seconds, imagesPerSecond: items.length / seconds, inferenceImagesPerSecond: items.length / inferenceSeconds },
    };
  } finally {
    await Promise.all(runs.map((r) => r.classifier.dispose()));
  }
}
