/**
 * Flag thresholds calibrated on labelled predictions, and their one write-back into model.json
 * (npm run eval -- --calibrate and SSLD's calibration both use writeBack). Every count goes through
 * decide(), the service's rule: a candidate threshold is an override of the trade-relevant labels,
 * so benign labels stay out by the rule itself rather than by a threshold no score can reach, and
 * the "after" numbers are counted on the labels exactly as they are written.
 */
import { readManifest, writeManifest, type LabelSpec, type ModelManifest } from '../model/manifest.js';
import { decide } from '../policy/index.js';
import { flagMetrics, tally, type BinaryCounts, type FlagMetrics, type Prediction } from './evaluate.js';

export interface Calibration {
  /** A flag precision to reach, or null when the threshold maximises flag F1. */
  targetPrecision: number | null;
  reached: boolean;
  commonThreshold: number;
  /** label → threshold, for every trade-relevant label and no other. */
  thresholds: Record<string, number>;
  before: FlagMetrics;
  after: FlagMetrics;
  note: string;
}

const MIN_LABEL_FLAGS = 5;
/** decide() reads overrides per classifier; calibration scores one model, under this name. */
const CALIBRATING = 'calibrating';

/** Flag precision/recall of `labels` on `predictions` under decide(), with `thresholds` overriding theirs. */
function flagsAt(predictions: readonly Prediction[], labels: readonly LabelSpec[], thresholds: Readonly<Record<string, number>> = {}): FlagMetrics {
  const overrides = { [CALIBRATING]: thresholds };
  const counts: BinaryCounts = { tp: 0, fp: 0, fn: 0, tn: 0 };
  for (const p of predictions) {
    tally(counts, decide([{ classifier: CALIBRATING, version: '', labels, probabilities: p.probabilities }], overrides).flagged, p.relevant);
  }
  return flagMetrics(counts);
}

/** The labels with calibrated thresholds: each trade-relevant label takes its own, benign labels none. */
export function calibratedLabels(labels: readonly LabelSpec[], thresholds: Readonly<Record<string, number>>): LabelSpec[] {
  return labels.map((l) => ({ ...l, threshold: l.trade_relevant ? thresholds[l.name]! : null }));
}

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
  const everyLabelAt = (t: number) => Object.fromEntries(relevantIdx.map((i) => [labels[i]!.name, t]));
  const before = flagsAt(predictions, labels);
  const candidates = [...new Set(top.map((t) => t.score))].sort((a, b) => a - b);
  let common = 0.5;
  let reached = false;
  let bestF1 = -1;
  for (const t of candidates) {
    const m = flagsAt(predictions, labels, everyLabelAt(t));
    if (targetPrecision !== null && m.tp > 0 && m.precision >= targetPrecision) { common = t; reached = true; break; }
    if (m.f1 > bestF1) { bestF1 = m.f1; common = t; }
  }
  if (targetPrecision === null) reached = true;
  const thresholds = everyLabelAt(common);
  for (const i of targetPrecision === null ? [] : relevantIdx) {
    const name = labels[i]!.name;
    const mine = top.filter((t) => t.label === i && t.score >= thresholds[name]!).sort((a, b) => a.score - b.score);
    if (mine.length < MIN_LABEL_FLAGS) continue;
    for (let k = 0; k < mine.length; k++) {
      const rest = mine.slice(k);
      if (rest.filter((t) => t.relevant).length / rest.length >= targetPrecision!) {
        thresholds[name] = Math.max(thresholds[name]!, mine[k]!.score);
        break;
      }
    }
  }
  // Rounded down, so a photo whose score sat exactly on a threshold stays flagged; model.json caps at 1.
  const rounded = Object.fromEntries(Object.entries(thresholds).map(([name, t]) => [name, Math.min(1, Math.floor(t * 1e4) / 1e4)]));
  return {
    targetPrecision,
    reached,
    commonThreshold: Math.floor(common * 1e4) / 1e4,
    thresholds: rounded,
    before,
    after: flagsAt(predictions, calibratedLabels(labels, rounded)),
    note: targetPrecision === null
      ? 'One threshold for every trade-relevant label, the one with the best flag F1 on the calibration data.'
      : reached
        ? 'Thresholds reach the target flag precision on the calibration data; expect somewhat less on new data.'
        : `No threshold reaches precision ${targetPrecision} on this data; the best-F1 threshold was used instead.`,
  };
}

/**
 * Writes what an evaluation established into a model directory's model.json: calibrated thresholds
 * with metrics.calibration (on what data, target, before and after), and any further `metrics`
 * (eval --record's). model.json is read afresh, so whatever was written to it since the model was
 * loaded stays.
 */
export async function writeBack(dir: string, opts: { calibration?: { result: Calibration; data: string }; metrics?: Record<string, unknown> }): Promise<ModelManifest> {
  const fresh = await readManifest(dir);
  const c = opts.calibration;
  const metrics = { ...fresh.metrics, ...opts.metrics };
  if (c) {
    const r = c.result;
    metrics.calibration = { data: c.data, target_precision: r.targetPrecision, reached: r.reached, common_threshold: r.commonThreshold, before: r.before, after: r.after, note: r.note };
  }
  const updated: ModelManifest = { ...fresh, labels: c ? calibratedLabels(fresh.labels, c.result.thresholds) : fresh.labels, metrics };
  await writeManifest(dir, updated);
  return updated;
}
