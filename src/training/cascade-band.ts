/**
 * Choosing a cascade's escalation band from labelled photos that are not val (the `calib` split):
 * the narrowest band on the first stage's trade score whose cascade decisions lose at most
 * `maxRecallLoss` of flag recall and `maxPrecisionLoss` of flag precision against running the last
 * stage on every photo (CASCADE=off). Narrowest means fewest escalations, i.e. the most photos
 * decided at the first stage's cost.
 */
import { isMap, isScalar, parseDocument } from 'yaml';
import { AppError } from '../errors.js';
import { flagMetrics, tally, type FlagMetrics } from './evaluate.js';
import { escalates, type EscalationBand } from '../policy/cascade.js';

export interface BandItem {
  relevant: boolean;
  /** The first stage's trade score (tradeScore()). */
  score: number;
  /** Decisions of the first stage alone and of the last stage alone. */
  firstFlags: boolean;
  lastFlags: boolean;
}

export interface BandChoice {
  band: EscalationBand;
  escalated: number;
  escalationRate: number;
  cascade: FlagMetrics;
  off: FlagMetrics;
  first: FlagMetrics;
  /** False when no band short of escalating everything meets the targets (the band then covers every score). */
  reached: boolean;
}

function metricsOf(items: readonly BandItem[], flags: (item: BandItem, index: number) => boolean): FlagMetrics {
  const c = { tp: 0, fp: 0, fn: 0, tn: 0 };
  items.forEach((item, i) => tally(c, flags(item, i), item.relevant));
  return flagMetrics(c);
}

export function chooseBand(input: readonly BandItem[], targets: { maxRecallLoss: number; maxPrecisionLoss: number }): BandChoice {
  const items = [...input].sort((a, b) => a.score - b.score);
  const n = items.length;
  const off = metricsOf(items, (it) => it.lastFlags);
  const first = metricsOf(items, (it) => it.firstFlags);
  // Prefix counts over the sorted order: decisions outside the band are the first stage's, inside the last's.
  const tp1 = [0], fp1 = [0], tp2 = [0], fp2 = [0];
  items.forEach((it, k) => {
    tp1.push(tp1[k]! + (it.firstFlags && it.relevant ? 1 : 0));
    fp1.push(fp1[k]! + (it.firstFlags && !it.relevant ? 1 : 0));
    tp2.push(tp2[k]! + (it.lastFlags && it.relevant ? 1 : 0));
    fp2.push(fp2[k]! + (it.lastFlags && !it.relevant ? 1 : 0));
  });
  const positives = items.filter((it) => it.relevant).length;
  // A band edge can only fall where the score changes, or equal scores would be split.
  const cuts = [0];
  for (let k = 1; k < n; k++) if (items[k]!.score > items[k - 1]!.score) cuts.push(k);
  cuts.push(n);
  let best: { a: number; b: number; f1: number } | null = null;
  for (const a of cuts) {
    for (const b of cuts) {
      if (b < a) continue;
      if (best && b - a > best.b - best.a) break;
      const tp = tp1[a]! + tp2[b]! - tp2[a]! + tp1[n]! - tp1[b]!;
      const fp = fp1[a]! + fp2[b]! - fp2[a]! + fp1[n]! - fp1[b]!;
      const precision = tp + fp === 0 ? 0 : tp / (tp + fp);
      const recall = positives === 0 ? 0 : tp / positives;
      if (recall < off.recall - targets.maxRecallLoss - 1e-12 || precision < off.precision - targets.maxPrecisionLoss - 1e-12) continue;
      const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
      if (!best || b - a < best.b - best.a || f1 > best.f1) best = { a, b, f1 };
    }
  }
  const reached = best !== null;
  const { a, b } = best ?? { a: 0, b: n };
  // Edges halfway between the neighbouring scores: [from, below) holds exactly items a..b-1 here,
  // and new photos scoring between two calibration photos fall on the nearer one's side.
  const mid = (k: number) => Math.round(((items[k - 1]!.score + items[k]!.score) / 2) * 1e6) / 1e6;
  const band = { from: a === 0 ? 0 : a >= n ? 1 : mid(a), below: b >= n ? 1 : b === 0 ? 0 : mid(b) };
  // The cascade runner's own test, so the escalations counted here are the ones it will make.
  const inBand = (it: BandItem) => escalates(band, it.score);
  return {
    band,
    escalated: items.filter(inBand).length,
    escalationRate: n === 0 ? 0 : items.filter(inBand).length / n,
    cascade: metricsOf(items, (it) => (inBand(it) ? it.lastFlags : it.firstFlags)),
    off,
    first,
    reached,
  };
}

/**
 * `source` with stage 0's escalate replaced by `band` and a comment: a splice of that one line, so
 * every other line, comment and alignment of a hand-kept config file stays as it was.
 */
export function withBand(source: string, file: string, model: string, band: string, comment: string): string {
  const doc = parseDocument(source, { keepSourceTokens: true });
  const stage = doc.getIn(['cascade', 'stages', 0], true);
  if (!isMap(stage) || stage.get('model') !== model) throw new AppError('CLI_USAGE', `${file} has no cascade.stages[0] naming ${model}; add the stages there first.`);
  const lineEnd = (offset: number) => { const i = source.indexOf('\n', offset); return i < 0 ? source.length : i; };
  const escalate = stage.items.find((pair) => isScalar(pair.key) && pair.key.value === 'escalate');
  const value = escalate?.value as { range?: [number, number, number] } | undefined;
  if (value?.range) {
    const [start, end] = value.range;
    if (source.slice(start, end).includes('\n')) throw new AppError('CLI_USAGE', `${file}: write cascade.stages[0].escalate on one line ({ from: …, below: … }) so it can be replaced in place.`);
    return `${source.slice(0, start)}${band} # ${comment}${source.slice(lineEnd(end))}`;
  }
  const modelPair = stage.items.find((pair) => isScalar(pair.key) && pair.key.value === 'model')!;
  const key = modelPair.key as { range?: [number, number, number] };
  const valueEnd = (modelPair.value as { range?: [number, number, number] }).range![1];
  const indent = ' '.repeat(key.range![0] - source.lastIndexOf('\n', key.range![0]) - 1);
  const at = lineEnd(valueEnd);
  return `${source.slice(0, at)}\n${indent}escalate: ${band} # ${comment}${source.slice(at)}`;
}
