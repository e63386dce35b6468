/**
 * One fresh photo through the generation's models, once the caches have missed: every model on the
 * photo (any may flag it), or the cascade stage by stage (src/policy/cascade.ts). Transport- and
 * cache-free; service.ts hands in how to reach each model's batcher.
 */
import type { AppConfig } from '../config.js';
import type { Classifier } from '../model/engine.js';
import { runCascade, type CascadeMode } from '../policy/cascade.js';
import { decide, type ClassifierScores, type FlagReason } from '../policy/index.js';
import { modelInput, modelInputs, type SourceInfo } from '../preprocess/index.js';

/** With a cascade: the mode, the models that ran in order, and which one decided. */
export interface CascadeResult { mode: CascadeMode; ran: string[]; decidedBy: string }

/** One cascade stage ran on a fresh photo: its preprocessing + queue + inference time, and whether it passed the photo on. */
export interface StageEvent { model: string; index: number; ms: number; escalated: boolean }

export interface RunContext {
  images: AppConfig['images'];
  thresholds: AppConfig['models']['thresholds'];
  cascade: AppConfig['cascade'];
  /** What inspectImage() already said of the bytes (the near-duplicate look-up runs it), if anything. */
  inspected?: SourceInfo;
  /** The classifier's batcher: resolves when the batch holding this tensor has run. */
  infer(classifier: Classifier, tensor: Float32Array): Promise<{ probabilities: Float32Array; startedAt: number; finishedAt: number }>;
  onStage(event: StageEvent): void;
}

export interface ModelRun {
  /** The models that screened the photo (with a cascade, the stages that ran, in order). */
  scores: ClassifierScores[];
  decision: { flagged: boolean; reasons: FlagReason[] };
  source: SourceInfo;
  timings: { preprocessMs: number; queueMs: number; inferenceMs: number };
  cascade?: CascadeResult;
}

function scoresOf(classifier: Classifier, probabilities: Float32Array): ClassifierScores {
  return { classifier: classifier.manifest.name, version: classifier.manifest.version, labels: classifier.manifest.labels, probabilities };
}

/** Without a cascade: every model screens the photo, and any of them may flag it. */
export async function screenAll(run: RunContext, bytes: Uint8Array, classifiers: readonly Classifier[]): Promise<ModelRun> {
  const t0 = performance.now();
  // Shared between classifiers only where the full preprocessing spec agrees (see modelInputs).
  const tensors = await modelInputs(bytes, classifiers.map((c) => c.manifest), run.images, run.inspected);
  const preprocessMs = performance.now() - t0;
  const enqueuedAt = performance.now();
  const outputs = await Promise.all(classifiers.map((c, i) => run.infer(c, tensors[i]!.tensor)));
  const scores = classifiers.map((c, i) => scoresOf(c, outputs[i]!.probabilities));
  return {
    scores,
    decision: decide(scores, run.thresholds),
    source: tensors[0]!.source,
    timings: {
      preprocessMs,
      queueMs: Math.max(...outputs.map((o) => o.startedAt - enqueuedAt)),
      inferenceMs: Math.max(...outputs.map((o) => o.finishedAt - o.startedAt)),
    },
  };
}

/**
 * With a cascade: stage by stage while the photo stays inside a band. Each stage prepares its own
 * input: decoding a photo once to full-size pixels and resizing that for each stage costs more on
 * every large photo than a second decode costs on the few that escalate (docs/BENCHMARKS.md,
 * "Decoding once for both cascade stages").
 */
export async function screenCascade(run: RunContext, bytes: Uint8Array, stages: readonly Classifier[]): Promise<ModelRun> {
  const timings = { preprocessMs: 0, queueMs: 0, inferenceMs: 0 };
  let source = run.inspected;
  const ran: Array<{ index: number; ms: number }> = [];
  const outcome = await runCascade(run.cascade, async (index) => {
    const classifier = stages[index]!;
    const t0 = performance.now();
    // A later stage reuses the first one's header checks.
    const prepared = await modelInput(bytes, classifier.manifest, run.images, source);
    source = prepared.source;
    const enqueuedAt = performance.now();
    timings.preprocessMs += enqueuedAt - t0;
    const output = await run.infer(classifier, prepared.tensor);
    timings.queueMs += output.startedAt - enqueuedAt;
    timings.inferenceMs += output.finishedAt - output.startedAt;
    ran.push({ index, ms: performance.now() - t0 });
    return scoresOf(classifier, output.probabilities);
  }, run.thresholds);
  ran.forEach(({ index, ms }, k) => run.onStage({ model: stages[index]!.manifest.name, index, ms, escalated: k < ran.length - 1 }));
  return {
    scores: outcome.ran,
    decision: outcome,
    source: source!,
    timings,
    cascade: { mode: run.cascade.mode, ran: outcome.ran.map((r) => r.classifier), decidedBy: outcome.decidedBy },
  };
}
