/**
 * Numbers for the stats view. Pure reads over the review database, each bounded by an index so the
 * page stays cheap as the tables grow: items are reached through `items_status_flagged` (status,
 * flagged_at), reasons through `reasons_item`, and decisions through their rowid (see
 * `firstDecisionIdFrom`). Nothing here scans a whole table; `items.message` in particular is never read.
 *
 * Timestamps are the ISO-8601 UTC strings the console writes (`Date#toISOString`), so they compare
 * as strings; windows are whole UTC days and their bounds are bare 'YYYY-MM-DD' strings, which sort
 * before every timestamp of that day whether or not it carries milliseconds.
 */
import type { ReviewDb } from './db.js';

export interface DayCount { day: string; flagged: number; confirmed: number; rejected: number }

export interface LabelStats {
  label: string;
  /** Items flagged in the window that carry this reason label (an item counts under each of its labels). */
  flagged: number;
  /** confirmed + rejected: the items that have an answer for precision. flagged = decided + escalated + pending. */
  decided: number;
  confirmed: number;
  rejected: number;
  escalated: number;
  pending: number;
  /** confirmed / decided, or null when nothing with this label has been confirmed or rejected yet. */
  precision: number | null;
}

export type AgeBucket = '<1h' | '1–6h' | '6–24h' | '1–3d' | '>3d';
export type DurationBucket = '<5m' | '5–30m' | '30m–2h' | '2–8h' | '8–24h' | '>1d';

export interface Backlog {
  pending: number;
  escalated: number;
  /** Pending items by time since flagged_at. */
  byAge: Array<{ bucket: AgeBucket; count: number }>;
  oldestPendingAt: string | null;
}

export interface TimeToDecision {
  count: number;
  /** Nearest-rank percentiles (see `percentile`): always a duration that was actually observed. */
  medianSeconds: number | null;
  p90Seconds: number | null;
  histogram: Array<{ bucket: DurationBucket; count: number }>;
}

export interface AnalystStats { analyst: string; decisions: number; confirmed: number; rejected: number; escalated: number; reopened: number }

export interface ReviewStats {
  generatedAt: string;
  /** The window: `days` whole UTC days, `from` and `to` inclusive. */
  window: { days: number; from: string; to: string };
  flagsPerDay: DayCount[];
  /** Over items flagged in the window, most-flagged label first. */
  perLabel: LabelStats[];
  /** The current queue, regardless of the window. */
  backlog: Backlog;
  /** Over items whose first terminal decision (first_decided_at) falls in the window. */
  timeToDecision: TimeToDecision;
  /** Audit-log rows in the window, most active analyst first. */
  analysts: AnalystStats[];
  /** Audit-log rows (any verdict, reopens included) since UTC midnight. */
  decisionsToday: number;
}

export const DEFAULT_STATS_DAYS = 30;
export const MAX_STATS_DAYS = 366;

const DAY_MS = 86_400_000;
const HOUR_S = 3600;
const STATUSES = "('pending', 'confirmed', 'rejected', 'escalated')"; // spelled out so the planner can seek the (status, flagged_at) index

const AGE_BUCKETS: ReadonlyArray<{ bucket: AgeBucket; below: number }> = [
  { bucket: '<1h', below: HOUR_S },
  { bucket: '1–6h', below: 6 * HOUR_S },
  { bucket: '6–24h', below: 24 * HOUR_S },
  { bucket: '1–3d', below: 72 * HOUR_S },
  { bucket: '>3d', below: Infinity },
];

const DURATION_BUCKETS: ReadonlyArray<{ bucket: DurationBucket; below: number }> = [
  { bucket: '<5m', below: 300 },
  { bucket: '5–30m', below: 1800 },
  { bucket: '30m–2h', below: 2 * HOUR_S },
  { bucket: '2–8h', below: 8 * HOUR_S },
  { bucket: '8–24h', below: 24 * HOUR_S },
  { bucket: '>1d', below: Infinity },
];

/**
 * Nearest-rank percentile of ascending `sorted`: the smallest value with at least p % of the values at
 * or below it, i.e. sorted[ceil(p/100 · n) − 1]. So the median of [1, 2, 3, 4] is 2, not 2.5.
 */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

export function reviewStats(db: ReviewDb, options: { now?: Date; days?: number } = {}): ReviewStats {
  const now = options.now ?? new Date();
  // The route passes ?days= through; clamp rather than throw so a silly value still shows a page.
  const days = Number.isFinite(options.days) ? Math.min(MAX_STATS_DAYS, Math.max(1, Math.floor(options.days!))) : DEFAULT_STATS_DAYS;
  const todayMs = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const dayList = Array.from({ length: days }, (_, i) => utcDay(todayMs - (days - 1 - i) * DAY_MS));
  const from = dayList[0]!;
  const today = dayList.at(-1)!;
  const end = utcDay(todayMs + DAY_MS); // exclusive

  // One read transaction so the sections agree with each other even while analysts keep deciding.
  const read = db.transaction(() => {
    const firstDecisionId = firstDecisionIdFrom(db, from);
    return {
      flagsPerDay: flagsPerDay(db, dayList, from, end),
      perLabel: perLabel(db, from, end),
      backlog: backlog(db, now),
      timeToDecision: timeToDecision(db, firstDecisionId, from, end),
      ...decisionsByAnalyst(db, firstDecisionId, from, today, end),
    };
  });
  return { generatedAt: now.toISOString(), window: { days, from, to: today }, ...read() };
}

/** Code-unit order, not localeCompare: the page must not reorder with the server's locale. */
function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function flagsPerDay(db: ReviewDb, dayList: string[], from: string, end: string): DayCount[] {
  const rows = db.prepare(`SELECT substr(flagged_at, 1, 10) AS day, status, COUNT(*) AS n FROM items
    WHERE status IN ${STATUSES} AND flagged_at >= ? AND flagged_at < ? GROUP BY day, status`).all(from, end) as Array<{ day: string; status: string; n: number }>;
  const byDay = new Map(dayList.map((day) => [day, { day, flagged: 0, confirmed: 0, rejected: 0 }]));
  for (const r of rows) {
    const d = byDay.get(r.day);
    if (!d) continue; // a timestamp in some other format; not worth a wrong bar
    d.flagged += r.n;
    if (r.status === 'confirmed') d.confirmed += r.n;
    else if (r.status === 'rejected') d.rejected += r.n;
  }
  return [...byDay.values()];
}

function perLabel(db: ReviewDb, from: string, end: string): LabelStats[] {
  // CROSS JOIN pins items as the outer loop (the window seek); DISTINCT because two classifiers may
  // both have flagged the same item for the same label.
  const rows = db.prepare(`SELECT r.label AS label, i.status AS status, COUNT(DISTINCT i.id) AS n
    FROM items i CROSS JOIN reasons r ON r.item_id = i.id
    WHERE i.status IN ${STATUSES} AND i.flagged_at >= ? AND i.flagged_at < ?
    GROUP BY r.label, i.status`).all(from, end) as Array<{ label: string; status: 'pending' | 'confirmed' | 'rejected' | 'escalated'; n: number }>;
  const byLabel = new Map<string, LabelStats>();
  for (const r of rows) {
    let s = byLabel.get(r.label);
    if (!s) byLabel.set(r.label, (s = { label: r.label, flagged: 0, decided: 0, confirmed: 0, rejected: 0, escalated: 0, pending: 0, precision: null }));
    s[r.status] += r.n;
    s.flagged += r.n;
  }
  const out = [...byLabel.values()];
  for (const s of out) {
    s.decided = s.confirmed + s.rejected;
    s.precision = s.decided > 0 ? s.confirmed / s.decided : null;
  }
  return out.sort((a, b) => b.flagged - a.flagged || byText(a.label, b.label));
}

function backlog(db: ReviewDb, now: Date): Backlog {
  const count = db.prepare('SELECT COUNT(*) AS n FROM items WHERE status = ?').pluck();
  const nowMs = now.getTime();
  // Bucket bounds as timestamps, so the age test is a string comparison on the index, no per-row date
  // math; strictly after the cutoff because a bucket's upper bound is exclusive (exactly 1 h old is '1–6h').
  const cutoffs = AGE_BUCKETS.slice(0, -1).map((b) => new Date(nowMs - b.below * 1000).toISOString());
  const sums = cutoffs.map((_, i) => `SUM(flagged_at > ?) AS b${i}`).join(', ');
  const row = db.prepare(`SELECT COUNT(*) AS total, MIN(flagged_at) AS oldest, ${sums} FROM items WHERE status = 'pending'`).get(...cutoffs) as Record<string, number | string | null>;
  const total = Number(row.total ?? 0);
  // b_i counts pending items younger than cutoff i; buckets are the differences of those running counts.
  const younger = cutoffs.map((_, i) => Number(row[`b${i}`] ?? 0));
  const byAge = AGE_BUCKETS.map((b, i) => ({ bucket: b.bucket, count: (i < younger.length ? younger[i]! : total) - (i > 0 ? younger[i - 1]! : 0) }));
  return {
    pending: total,
    escalated: Number(count.get('escalated') ?? 0),
    byAge,
    oldestPendingAt: (row.oldest as string | null) ?? null,
  };
}

/**
 * The smallest decision id from which every decision is at or after `from`. Decisions are appended
 * with the server's clock, so id order is time order and a binary search over rowids (about 20 point
 * lookups) replaces a scan of a table that has no index on decided_at. Returns max id + 1 when no
 * decision is that recent. Queries still filter on decided_at, so a clock step near the boundary can
 * only drop a few seconds' worth of decisions, never count one from outside the window.
 */
function firstDecisionIdFrom(db: ReviewDb, from: string): number {
  const bounds = db.prepare('SELECT MIN(id) AS lo, MAX(id) AS hi FROM decisions').get() as { lo: number | null; hi: number | null };
  if (bounds.lo === null || bounds.hi === null) return 1;
  const at = db.prepare('SELECT id, decided_at AS decidedAt FROM decisions WHERE id >= ? ORDER BY id LIMIT 1');
  let lo = bounds.lo;
  let hi = bounds.hi + 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const row = at.get(mid) as { id: number; decidedAt: string }; // exists: mid <= MAX(id)
    if (row.decidedAt >= from) hi = mid;
    else lo = row.id + 1;
  }
  return lo;
}

function timeToDecision(db: ReviewDb, firstDecisionId: number, from: string, end: string): TimeToDecision {
  // An item first decided in the window has its first terminal decision row among the window's
  // decisions, so the window's slice of the audit log bounds the search.
  const rows = db.prepare(`SELECT flagged_at AS flaggedAt, first_decided_at AS decidedAt FROM items
    WHERE id IN (SELECT item_id FROM decisions WHERE id >= ? AND verdict <> 'reopened')
      AND first_decided_at >= ? AND first_decided_at < ?`).all(firstDecisionId, from, end) as Array<{ flaggedAt: string; decidedAt: string }>;
  const seconds: number[] = [];
  for (const r of rows) {
    const ms = Date.parse(r.decidedAt) - Date.parse(r.flaggedAt);
    // A decision cannot precede its flag; a negative gap is clock skew between the screening service and the console.
    if (Number.isFinite(ms)) seconds.push(Math.max(0, ms) / 1000);
  }
  seconds.sort((a, b) => a - b);
  const histogram = DURATION_BUCKETS.map((b) => ({ bucket: b.bucket, count: 0 }));
  for (const s of seconds) histogram[DURATION_BUCKETS.findIndex((b) => s < b.below)]!.count++;
  return { count: seconds.length, medianSeconds: percentile(seconds, 50), p90Seconds: percentile(seconds, 90), histogram };
}

/** Per-analyst counts and today's total from one pass over the window's slice of the audit log. */
function decisionsByAnalyst(db: ReviewDb, firstDecisionId: number, from: string, today: string, end: string): { analysts: AnalystStats[]; decisionsToday: number } {
  const rows = db.prepare(`SELECT analyst, verdict, COUNT(*) AS n, SUM(decided_at >= ?) AS today FROM decisions
    WHERE id >= ? AND decided_at >= ? AND decided_at < ? GROUP BY analyst, verdict`).all(today, firstDecisionId, from, end) as Array<{ analyst: string; verdict: 'confirmed' | 'rejected' | 'escalated' | 'reopened'; n: number; today: number }>;
  const byAnalyst = new Map<string, AnalystStats>();
  let decisionsToday = 0;
  for (const r of rows) {
    let a = byAnalyst.get(r.analyst);
    if (!a) byAnalyst.set(r.analyst, (a = { analyst: r.analyst, decisions: 0, confirmed: 0, rejected: 0, escalated: 0, reopened: 0 }));
    a[r.verdict] += r.n;
    a.decisions += r.n;
    decisionsToday += r.today;
  }
  const analysts = [...byAnalyst.values()].sort((a, b) => b.decisions - a.decisions || byText(a.analyst, b.analyst));
  return { analysts, decisionsToday };
}
