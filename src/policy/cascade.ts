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

export type CascadeMode = 'on' | 'off' | 'first';

/** Scores in [from, below) are escalated. */
export interface EscalationBand { from: number; below: number }

export interface CascadeStageSpec {
  /** The model's manifest name. */
  model: string;
  /** Every stage but the last has one; the last has none. */
  escalate?: EscalationBand | null;
}

export interface CascadeSpec {
  mode: CascadeMode;
  stages: readonly CascadeStageSpec[];
}

export interface CascadeOutcome extends Decision {
  /** Scores of the stages that ran, in order. */
  ran: ClassifierScores[];
  /** The model whose scores decided. */
  decidedBy: string;
}

/** Every problem with `stages` against the models that are loaded, in one list. */
export function cascadeProblems(stages: readonly CascadeStageSpec[], loadedModels: readonly string[]): string[] {
  const problems: string[] = [];
  if (stages.length === 0) return problems;
  if (stages.length < 2) problems.push('cascade.stages: a cascade needs at least two stages (leave it empty to run every model on every photo)');
  const names = stages.map((s) => s.model);
  for (const dup of new Set(names.filter((n, i) => names.indexOf(n) !== i))) problems.push(`cascade.stages: model "${dup}" appears more than once`);
  stages.forEach((stage, i) => {
    const where = `cascade.stages[${i}]`;
    if (!loadedModels.includes(stage.model)) problems.push(`${where}.model: "${stage.model}" is not among the loaded models (${loadedModels.join(', ') || 'none'})`);
    const last = i === stages.length - 1;
    if (last && stage.escalate) problems.push(`${where}.escalate: the last stage decides every photo it sees; it has no band`);
    if (!last && !stage.escalate) problems.push(`${where}.escalate: every stage but the last needs a band (from, below)`);
    const band = stage.escalate;
    if (band && !(band.from >= 0 && band.from <= band.below && band.below <= 1)) problems.push(`${where}.escalate: need 0 <= from <= below <= 1, got from ${band.from}, below ${band.below}`);
  });
  for (const model of loadedModels) {
    // A loaded model outside the cascade would neither run nor decide: almost certainly a mistake.
    if (!names.includes(model)) problems.push(`cascade.stages: loaded model "${model}" is not a stage (remove it from models.directories or add it)`);
  }
  return problems;
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
