/**
 * Scores → flag decision. A photo is flagged when any trade-relevant label of any classifier scores
 * at or above its threshold (from model.json, overridable per classifier and label in config).
 * Benign labels never flag; they only explain what the model saw.
 */
/** What the rule reads of a label (a model.json label, LabelSpec in src/model/manifest.ts, is one). */
export interface LabelRule {
  name: string;
  trade_relevant: boolean;
  /** Score at or above which this label flags; null for benign labels. */
  threshold: number | null;
}

export interface ClassifierScores {
  classifier: string;
  version: string;
  labels: readonly LabelRule[];
  probabilities: ArrayLike<number>;
}

/** classifier name → label → threshold */
export type ThresholdOverrides = Readonly<Record<string, Readonly<Record<string, number>>>>;

export interface FlagReason {
  classifier: string;
  label: string;
  score: number;
  threshold: number;
}

export interface Decision {
  flagged: boolean;
  reasons: FlagReason[];
}

export function thresholdFor(classifier: string, label: LabelRule, overrides: ThresholdOverrides = {}): number | null {
  if (!label.trade_relevant) return null;
  return overrides[classifier]?.[label.name] ?? label.threshold;
}

export function decide(scores: readonly ClassifierScores[], overrides: ThresholdOverrides = {}): Decision {
  const reasons: FlagReason[] = [];
  for (const s of scores) {
    s.labels.forEach((label, i) => {
      const threshold = thresholdFor(s.classifier, label, overrides);
      const score = s.probabilities[i] ?? 0;
      if (threshold !== null && score >= threshold) reasons.push({ classifier: s.classifier, label: label.name, score, threshold });
    });
  }
  reasons.sort((a, b) => b.score - a.score);
  return { flagged: reasons.length > 0, reasons };
}
