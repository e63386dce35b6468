/**
 * The labeled set's compile step without any I/O: decisions.jsonl lines and the stored images in,
 * labels.csv rows and report.json out. Kept apart from the store (labeled-set.ts) so the label
 * semantics below can be read, and tested, without a disk.
 *
 * Label semantics (one label per image, keyed by sha256): the decision with the latest decidedAt
 * wins (ties: later receivedAt, then file order). confirmed → class = label; rejected with
 * correctLabel → class = correctLabel; rejected without → no label (negative_without_label);
 * escalated → no label (pending); reopened → retracts everything before it (retracted). A winner
 * whose class is outside the known classes is reported (unknown_label), one whose bytes are
 * missing is reported (unresolved); neither is written to labels.csv. Disagreeing verdicts since
 * the last reopen are a conflict: resolved as above and listed in the report.
 */
import { checkReviewDecision, type ReviewDecision, type ReviewVerdict } from '../contracts/index.js';

export const LABELS_HEADER = ['path', 'class', 'split', 'decision_id', 'analyst', 'decided_at'] as const;
export const REPORT_SCHEMA = 'wildlife-labels-report/v1';

export type ImageStatus = 'present' | 'pool' | 'fetched' | 'unresolved' | 'skipped';

export type ImageOutcome = 'labeled' | 'negative_without_label' | 'pending' | 'retracted' | 'unknown_label' | 'unresolved';

/** One line of decisions.jsonl. */
export interface DecisionLine {
  receivedAt: string;
  source: { topic: string | null; partition: number | null; offset: string | null } | null;
  decision: ReviewDecision;
  image: { sha256: string | null; status: ImageStatus; reason?: string };
  duplicate?: true;
}

export interface DecisionSummary {
  decisionId: string;
  reviewId: string | null;
  analyst: string;
  verdict: ReviewVerdict;
  label: string;
  correctLabel: string | null;
  decidedAt: string;
  receivedAt: string;
}

export interface LabeledSetReport {
  schema: typeof REPORT_SCHEMA;
  generatedAt: string;
  knownClasses: string[] | null;
  counts: {
    /** Lines in decisions.jsonl (complete ones). */
    lines: number;
    invalid_lines: number;
    /** Distinct decisions (lines minus duplicates and invalid lines). */
    decisions: number;
    duplicates: number;
    /** Distinct images decided on; each has exactly one outcome below. */
    images: number;
    labeled: number;
    negative_without_label: number;
    pending: number;
    retracted: number;
    unknown_label: number;
    unresolved: number;
    conflicts: number;
  };
  /** Rows of labels.csv per class. */
  perClass: Record<string, number>;
  conflicts: Array<{ sha256: string | null; decisions: DecisionSummary[]; winner: DecisionSummary; outcome: ImageOutcome; class: string | null }>;
  unresolved: Array<{ sha256: string | null; class: string; decisionIds: string[]; url: string | null; reason: string }>;
  unknownLabels: Array<{ sha256: string | null; class: string; decisionId: string; analyst: string; decidedAt: string }>;
  invalidLines: Array<{ line: number; reason: string }>;
}

export interface CompileInput {
  /** sha256 → image path relative to the set's directory, for every image whose bytes are stored. */
  stored: ReadonlyMap<string, string>;
  /** null: no class list to check against, every class is trainable. */
  knownClasses: ReadonlySet<string> | null;
  generatedAt: Date;
}

export interface Compiled {
  /** labels.csv rows in LABELS_HEADER's column order, without the header, sorted by path. */
  rows: string[][];
  report: LabeledSetReport;
}

const SHA256 = /^[0-9a-f]{64}$/;

/** The dedupe key: reviewId when the console sent one, else the decision's content. */
export function duplicateKey(d: ReviewDecision): string {
  return d.reviewId !== undefined
    ? `review:${d.reviewId}`
    : `content:${JSON.stringify([d.decisionId, d.verdict, d.label, d.analyst, Date.parse(d.decidedAt)])}`;
}

export function parseDecisionLine(text: string): { ok: true; line: DecisionLine } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not JSON: ${(err as Error).message}` };
  }
  const line = json as Partial<DecisionLine> | null;
  if (!line || typeof line !== 'object' || typeof line.receivedAt !== 'string' || !Number.isFinite(Date.parse(line.receivedAt))) {
    return { ok: false, reason: 'no valid receivedAt' };
  }
  const checked = checkReviewDecision(line.decision);
  if (!checked.ok) return { ok: false, reason: `decision ${checked.reason}` };
  const image = line.image && typeof line.image === 'object' ? line.image : { sha256: null, status: 'unresolved' as const, reason: 'no image record' };
  return { ok: true, line: { ...(line as DecisionLine), image } };
}

interface Entry { line: DecisionLine; index: number; decidedMs: number; receivedMs: number }

/** Valid, first-seen decisions in file order; `index` is the 1-based line number. */
function readEntries(texts: Iterable<string>) {
  const invalidLines: LabeledSetReport['invalidLines'] = [];
  const entries: Entry[] = [];
  const seen = new Set<string>();
  let lines = 0;
  let duplicates = 0;
  for (const text of texts) {
    lines++;
    if (text.trim() === '') {
      invalidLines.push({ line: lines, reason: 'empty line' });
      continue;
    }
    const parsed = parseDecisionLine(text);
    if (!parsed.ok) {
      invalidLines.push({ line: lines, reason: parsed.reason });
      continue;
    }
    const key = duplicateKey(parsed.line.decision);
    if (seen.has(key)) {
      duplicates++;
      continue;
    }
    seen.add(key);
    entries.push({ line: parsed.line, index: lines, decidedMs: Date.parse(parsed.line.decision.decidedAt), receivedMs: Date.parse(parsed.line.receivedAt) });
  }
  return { lines, duplicates, invalidLines, entries };
}

/**
 * Entries per image (sha256), or per decision when no sha256 is known. A decision that names no
 * image (e.g. a reopen) borrows the sha256 another line of the same decisionId carried.
 */
function groupByImage(entries: readonly Entry[]): Map<string, Entry[]> {
  const shaByDecision = new Map<string, string>();
  const ownSha = (l: DecisionLine) => l.decision.image?.sha256?.toLowerCase() ?? l.image.sha256 ?? null;
  for (const e of entries) {
    const sha = ownSha(e.line);
    if (sha && SHA256.test(sha) && !shaByDecision.has(e.line.decision.decisionId)) shaByDecision.set(e.line.decision.decisionId, sha);
  }
  const groups = new Map<string, Entry[]>();
  for (const e of entries) {
    const sha = ownSha(e.line) ?? shaByDecision.get(e.line.decision.decisionId);
    const key = sha ?? `decision:${e.line.decision.decisionId}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(e);
  }
  return groups;
}

const summary = (e: Entry): DecisionSummary => ({
  decisionId: e.line.decision.decisionId,
  reviewId: e.line.decision.reviewId ?? null,
  analyst: e.line.decision.analyst,
  verdict: e.line.decision.verdict,
  label: e.line.decision.label,
  correctLabel: e.line.decision.correctLabel ?? null,
  decidedAt: e.line.decision.decidedAt,
  receivedAt: e.line.receivedAt,
});

/** What a confirm/reject says about the photo: a class, or "not what the model said". */
const verdictOutcome = (d: ReviewDecision): string | null =>
  d.verdict === 'confirmed' ? `class:${d.label}` : d.verdict === 'rejected' ? (d.correctLabel != null ? `class:${d.correctLabel}` : 'negative') : null;

/** labels.csv rows and the report for the given decisions.jsonl lines (complete ones, in file order). */
export function compileDecisions(texts: Iterable<string>, { stored, knownClasses: known, generatedAt }: CompileInput): Compiled {
  const { lines, duplicates, invalidLines, entries } = readEntries(texts);
  const groups = groupByImage(entries);

  const rows: string[][] = [];
  const perClass: Record<string, number> = {};
  const outcomes: Record<ImageOutcome, number> = { labeled: 0, negative_without_label: 0, pending: 0, retracted: 0, unknown_label: 0, unresolved: 0 };
  const conflicts: LabeledSetReport['conflicts'] = [];
  const unresolved: LabeledSetReport['unresolved'] = [];
  const unknownLabels: LabeledSetReport['unknownLabels'] = [];

  for (const key of [...groups.keys()].sort()) {
    const group = groups.get(key)!.sort((a, b) => a.decidedMs - b.decidedMs || a.receivedMs - b.receivedMs || a.index - b.index);
    const sha = key.startsWith('decision:') ? null : key;
    const winner = group[group.length - 1]!;
    const d = winner.line.decision;
    const cls = d.verdict === 'confirmed' ? d.label : d.verdict === 'rejected' && d.correctLabel != null ? d.correctLabel : null;
    let outcome: ImageOutcome;
    if (d.verdict === 'reopened') outcome = 'retracted';
    else if (d.verdict === 'escalated') outcome = 'pending';
    else if (cls === null) outcome = 'negative_without_label';
    else if (known && !known.has(cls)) outcome = 'unknown_label';
    else if (!sha || !stored.has(sha)) outcome = 'unresolved';
    else outcome = 'labeled';
    outcomes[outcome]++;

    // A reopen retracts what came before it; only disagreement after the last one is a conflict.
    let lastReopen = -1;
    group.forEach((e, i) => { if (e.line.decision.verdict === 'reopened') lastReopen = i; });
    const live = new Set(group.slice(lastReopen + 1).map((e) => verdictOutcome(e.line.decision)).filter((o): o is string => o !== null));
    if (live.size > 1) conflicts.push({ sha256: sha, decisions: group.map(summary), winner: summary(winner), outcome, class: cls });

    if (outcome === 'unknown_label') {
      unknownLabels.push({ sha256: sha, class: cls!, decisionId: d.decisionId, analyst: d.analyst, decidedAt: d.decidedAt });
    } else if (outcome === 'unresolved') {
      const byArrival = [...group].sort((a, b) => a.index - b.index);
      const reason = byArrival.map((e) => e.line.image.reason).filter((r): r is string => !!r && r !== 'duplicate').at(-1)
        ?? (sha ? 'image bytes are not in the store' : 'no image reference (image.sha256 or image.url)');
      const url = byArrival.map((e) => e.line.decision.image?.url).filter((u): u is string => !!u).at(-1) ?? null;
      unresolved.push({ sha256: sha, class: cls!, decisionIds: [...new Set(group.map((e) => e.line.decision.decisionId))], url, reason });
    } else if (outcome === 'labeled') {
      rows.push([stored.get(sha!)!, cls!, 'train', d.decisionId, d.analyst, d.decidedAt]);
      perClass[cls!] = (perClass[cls!] ?? 0) + 1;
    }
  }

  rows.sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0));
  const report: LabeledSetReport = {
    schema: REPORT_SCHEMA,
    generatedAt: generatedAt.toISOString(),
    knownClasses: known ? [...known].sort() : null,
    counts: {
      lines,
      invalid_lines: invalidLines.length,
      decisions: entries.length,
      duplicates,
      images: groups.size,
      ...outcomes,
      conflicts: conflicts.length,
    },
    perClass: Object.fromEntries(Object.entries(perClass).sort(([a], [b]) => (a < b ? -1 : 1))),
    conflicts,
    unresolved,
    unknownLabels,
    invalidLines,
  };
  return { rows, report };
}
