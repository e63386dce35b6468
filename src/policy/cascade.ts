/**
 * A cascade: models run one after another, and a photo goes on to the next stage only while the
 * current stage is unsure of it. Each stage but the last has an escalation band on its trade score
 * (the highest probability of any trade-relevant label); a score inside [from, below) sends the photo
 * on, a score outside it lets this stage decide. Whichever stage ran last decides alone, by the same
 * rule as everywhere else (decide(): its labels against their thresholds), so "the cascade" is
 * configuration over models the registry already loads, not a code path per model.
 *
 * Modes: `on` follows the bands; `off` runs every stage on every photo and the last decides (the
 * accuracy the bands are calibrated against, and an audit of them); `first` runs the first stage
 * alone (its own speed and accuracy, for benchmarks).
 */
import { decide, type ClassifierScores, type Decision, type ThresholdOverrides } from './index.js';
import type { CascadeSpec, EscalationBand } from '../config.js';

// The cascade's configuration shapes and their checks live with the rest of the config, which the
// core may import (and the config may not import the core).
export { cascadeProblems, type CascadeMode, type CascadeSpec, type CascadeStageSpec, type EscalationBand } from '../config.js';

export interface CascadeOutcome extends Decision {
  /** Scores of the stages that ran, in order. */
  ran: ClassifierScores[];
  /** The model whose scores decided. */
  decidedBy: string;
}

/** The highest probability of any trade-relevant label: what a band is read on. */
export function tradeScore(scores: ClassifierScores): number {
  let best = 0;
  scores.labels.forEach((label, i) => {
    if (label.trade_relevant) best = Math.max(best, scores.probabilities[i] ?? 0);
  });
  return best;
}

export function escalates(band: EscalationBand | null | undefined, score: number): boolean {
  return !!band && score >= band.from && score < band.below;
}

/** How many stages a mode may run at most. */
function stagesToRun(spec: CascadeSpec): number {
  return spec.mode === 'first' ? Math.min(1, spec.stages.length) : spec.stages.length;
}

/**
 * Runs the stages in order through `runStage` (which screens the photo with stage i's model) and
 * decides with the last one that ran.
 */
export async function runCascade(
  spec: CascadeSpec,
  runStage: (index: number) => Promise<ClassifierScores>,
  overrides: ThresholdOverrides = {},
): Promise<CascadeOutcome> {
  const limit = stagesToRun(spec);
  if (limit === 0) throw new RangeError('runCascade needs at least one stage');
  const ran: ClassifierScores[] = [];
  for (let i = 0; i < limit; i++) {
    const scores = await runStage(i);
    ran.push(scores);
    if (i === limit - 1) break;
    if (spec.mode === 'on' && !escalates(spec.stages[i]!.escalate, tradeScore(scores))) break;
  }
  const decider = ran.at(-1)!;
  return { ...decide([decider], overrides), ran, decidedBy: decider.classifier };
}
