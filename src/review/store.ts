/**
 * The review queue over SQLite: flagged decisions in, analysts' decisions out.
 *
 * Ingest is idempotent by the screening decisionId, so Kafka's at-least-once redelivery never makes a
 * second item. A decision is one transaction: an audit row (who, what, when, the previous verdict and
 * label, and the exact images.review-decisions/v1 message) plus the item's new status. The audit row
 * doubles as the outbox: the Kafka publisher sends rows whose published_at is null, in order. Nothing
 * is ever erased; an undo or a lead's re-open is a new "reopened" decision.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { AppError } from '../errors.js';
import { reviewDecisionOf, type DecisionRecord as FlaggedDecision, type ReviewDecision, type ReviewVerdict } from '../contracts/index.js';
import type { ReviewDb } from './db.js';
import type { Principal } from './auth.js';
import { keepPhoto } from './photos.js';

export type ItemStatus = 'pending' | 'confirmed' | 'rejected' | 'escalated';
export type QueueStatus = 'pending' | 'escalated' | 'decided' | 'all';
export type QueueSort = 'newest' | 'oldest' | 'score';

export interface QueueFilter {
  status?: QueueStatus;
  label?: string;
  platform?: string;
  minScore?: number;
  maxScore?: number;
  /** Flagged at or after this instant (ISO). */
  from?: string;
  /** Flagged before this instant (ISO). */
  to?: string;
  sort?: QueueSort;
}

export interface ReasonRow { classifier: string; label: string; score: number; threshold: number }

export interface QueueItem {
  id: number;
  decisionId: string;
  inputId: string;
  flaggedAt: string;
  receivedAt: string;
  platform: string;
  listingUrl: string;
  listingTitle: string | null;
  listingSeller: string | null;
  imageUrl: string | null;
  imageSha256: string;
  topLabel: string;
  topScore: number;
  model: { name: string; version: string } | null;
  status: ItemStatus;
  label: string | null;
  lastDecisionId: number | null;
  reasons: ReasonRow[];
}

export interface DecisionRecord {
  id: number;
  reviewId: string;
  itemId: number;
  verdict: ReviewVerdict;
  label: string;
  correctLabel: string | null;
  note: string | null;
  analyst: string;
  role: Principal['role'];
  decidedAt: string;
  previous: { verdict: ReviewVerdict; label: string } | null;
  publishedAt: string | null;
}

export interface ItemDetail extends QueueItem {
  /** The flagged message as received (classifiers' top labels, timings, meta). */
  message: FlaggedDecision;
  /** Labels an analyst can pick: the flag reasons first, then the classifiers' other top labels. */
  labelChoices: string[];
  history: DecisionRecord[];
}

export interface DecideInput {
  itemId: number;
  verdict: 'confirmed' | 'rejected' | 'escalated';
  principal: Principal;
  /** confirmed: the label the analyst confirms (default: the top flag reason). */
  label?: string | null;
  /** rejected: the true label, when the analyst knows it. */
  correctLabel?: string | null;
  note?: string | null;
  /** The item's last decision id the analyst saw (0 = none); a mismatch is REVIEW_CONFLICT. */
  expectLastDecisionId?: number | null;
}

export interface ReviewStoreEvents {
  ingested: { outcome: 'added' | 'duplicate'; itemId: number };
  decided: { decision: DecisionRecord; secondsToDecision: number | null };
}

export interface OutboxEntry { id: number; decisionId: string; reviewId: string; message: string }

export interface ReviewStore {
  ingest(flagged: FlaggedDecision, source?: { topic: string; partition: number; offset: string }): { outcome: 'added' | 'duplicate'; itemId: number };
  queue(filter: QueueFilter, page?: { limit: number; offset: number }): { items: QueueItem[]; total: number };
  item(id: number): ItemDetail | null;
  decide(input: DecideInput): DecisionRecord;
  /** The decision undo() would re-open now, if any: the principal's newest, still its item's latest, within the window. */
  undoable(principal: Principal): DecisionRecord | null;
  /**
   * Re-opens that decision. `expectDecisionId` (the id the page showed) makes a repeated undo a
   * REVIEW_CONFLICT instead of silently undoing the decision before it.
   */
  undo(principal: Principal, expectDecisionId?: number | null): DecisionRecord;
  /** A lead re-opens a decided or escalated item. */
  reopen(input: { itemId: number; principal: Principal; note?: string | null; expectLastDecisionId?: number | null }): DecisionRecord;
  audit(filter?: { analyst?: string; itemId?: number; limit?: number }): DecisionRecord[];
  backlog(): { pending: number; escalated: number; oldestPendingAt: string | null };
  /** Distinct values for the queue's filter menus. */
  facets(): { labels: string[]; platforms: string[] };
  unpublished(limit: number): OutboxEntry[];
  markPublished(ids: readonly number[], at?: Date): void;
  outboxSize(): number;
  on<K extends keyof ReviewStoreEvents>(event: K, listener: (e: ReviewStoreEvents[K]) => void): this;
  off<K extends keyof ReviewStoreEvents>(event: K, listener: (e: ReviewStoreEvents[K]) => void): this;
}

export interface ReviewStoreOptions {
  undoWindowSeconds: number;
  now?: () => Date;
}

const LABEL_PATTERN = /^[\p{L}\p{N}_.:-][\p{L}\p{N}_.: -]{0,127}$/u;
const MAX_NOTE = 2000;

interface ItemRow {
  id: number; decision_id: string; input_id: string; flagged_at: string; received_at: string; platform: string;
  listing_url: string; listing_title: string | null; listing_seller: string | null; image_url: string | null; image_sha256: string;
  top_label: string; top_score: number; model_name: string | null; model_version: string | null; message: string;
  status: ItemStatus; label: string | null; last_decision_id: number | null; first_decided_at: string | null;
}
interface DecisionRow {
  id: number; review_id: string; item_id: number; verdict: ReviewVerdict; label: string; correct_label: string | null; note: string | null;
  analyst: string; role: Principal['role']; decided_at: string; previous_verdict: ReviewVerdict | null; previous_label: string | null;
  message: string; published_at: string | null;
}

const invalid = (why: string) => new AppError('REVIEW_DECISION_INVALID', why);

function toDecision(r: DecisionRow): DecisionRecord {
  return {
    id: r.id, reviewId: r.review_id, itemId: r.item_id, verdict: r.verdict, label: r.label, correctLabel: r.correct_label, note: r.note,
    analyst: r.analyst, role: r.role, decidedAt: r.decided_at,
    previous: r.previous_verdict && r.previous_label ? { verdict: r.previous_verdict, label: r.previous_label } : null,
    publishedAt: r.published_at,
  };
}

class SqliteReviewStore extends EventEmitter implements ReviewStore {
  private readonly now: () => Date;
  private readonly reasonsOf;
  private readonly itemById;
  private readonly insertItem;
  private readonly insertReason;
  private readonly insertDecision;
  private readonly updateItem;
  private readonly decisionById;

  constructor(private readonly db: ReviewDb, private readonly options: ReviewStoreOptions) {
    super();
    this.now = options.now ?? (() => new Date());
    this.reasonsOf = db.prepare('SELECT classifier, label, score, threshold FROM reasons WHERE item_id = ? ORDER BY score DESC');
    this.itemById = db.prepare('SELECT * FROM items WHERE id = ?');
    this.insertItem = db.prepare(`INSERT OR IGNORE INTO items
      (decision_id, input_id, flagged_at, received_at, platform, listing_url, listing_title, listing_seller, image_url, image_sha256, top_label, top_score, model_name, model_version, message, source)
      VALUES (@decisionId, @inputId, @flaggedAt, @receivedAt, @platform, @listingUrl, @listingTitle, @listingSeller, @imageUrl, @imageSha256, @topLabel, @topScore, @modelName, @modelVersion, @message, @source)`);
    this.insertReason = db.prepare('INSERT INTO reasons (item_id, classifier, label, score, threshold) VALUES (?, ?, ?, ?, ?)');
    this.insertDecision = db.prepare(`INSERT INTO decisions
      (review_id, item_id, verdict, label, correct_label, note, analyst, role, decided_at, previous_verdict, previous_label, message)
      VALUES (@reviewId, @itemId, @verdict, @label, @correctLabel, @note, @analyst, @role, @decidedAt, @previousVerdict, @previousLabel, @message)`);
    this.updateItem = db.prepare(`UPDATE items SET status = @status, label = @label, last_decision_id = @decisionId,
      first_decided_at = COALESCE(first_decided_at, @firstDecidedAt) WHERE id = @itemId`);
    this.decisionById = db.prepare('SELECT * FROM decisions WHERE id = ?');
  }

  ingest(message: FlaggedDecision, source?: { topic: string; partition: number; offset: string }) {
    // An inline photo is kept in the photos table (if it is the photo that was screened), not in the item's message.
    const { base64, ...image } = message.image;
    const flagged: FlaggedDecision = { ...message, image };
    const reasons = [...flagged.reasons].sort((a, b) => b.score - a.score);
    const top = reasons[0];
    // A flagged message always has a reason; should one arrive without, the classifier's best guess still identifies it.
    const fallback = flagged.classifiers[0]?.top[0];
    const topLabel = top?.label ?? fallback?.label ?? 'unknown';
    const classifier = flagged.classifiers.find((c) => c.name === top?.classifier) ?? flagged.classifiers[0];
    const run = this.db.transaction(() => {
      const info = this.insertItem.run({
        // One ISO form (UTC, milliseconds), so the queue's date filters and sorts can compare text.
        decisionId: flagged.decisionId, inputId: flagged.inputId, flaggedAt: new Date(flagged.decidedAt).toISOString(), receivedAt: this.now().toISOString(),
        platform: flagged.listing.platform, listingUrl: flagged.listing.url, listingTitle: flagged.listing.title ?? null, listingSeller: flagged.listing.seller ?? null,
        imageUrl: flagged.image.url, imageSha256: flagged.image.sha256, topLabel, topScore: top?.score ?? fallback?.score ?? 0,
        modelName: classifier?.name ?? null, modelVersion: classifier?.version ?? null, message: JSON.stringify(flagged),
        source: source ? `${source.topic}/${source.partition}/${source.offset}` : null,
      });
      if (base64) keepPhoto(this.db, image.sha256, Buffer.from(base64, 'base64'), this.now());
      if (info.changes === 0) {
        const existing = this.db.prepare('SELECT id FROM items WHERE decision_id = ?').get(flagged.decisionId) as { id: number };
        return { outcome: 'duplicate' as const, itemId: existing.id };
      }
      const itemId = Number(info.lastInsertRowid);
      for (const r of reasons) this.insertReason.run(itemId, r.classifier, r.label, r.score, r.threshold);
      return { outcome: 'added' as const, itemId };
    });
    const result = run();
    this.emit('ingested', result);
    return result;
  }

  queue(filter: QueueFilter, page = { limit: 50, offset: 0 }) {
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    const status = filter.status ?? 'pending';
    if (status === 'decided') where.push("status IN ('confirmed', 'rejected')");
    else if (status !== 'all') {
      where.push('status = @status');
      params.status = status;
    }
    // Each filter is one SQL condition on a named parameter; flagged_at is one ISO form (see ingest),
    // so text comparison is time order.
    const conditions: Array<[keyof QueueFilter, string]> = [
      ['label', 'id IN (SELECT item_id FROM reasons WHERE label = @label)'],
      ['platform', 'platform = @platform'],
      ['minScore', 'top_score >= @minScore'],
      ['maxScore', 'top_score <= @maxScore'],
      ['from', 'flagged_at >= @from'],
      ['to', 'flagged_at < @to'],
    ];
    for (const [key, sql] of conditions) {
      const value = filter[key];
      if (value === undefined || value === '') continue;
      where.push(sql);
      params[key] = value;
    }
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const order = filter.sort === 'score' ? 'top_score DESC, flagged_at DESC, id DESC' : filter.sort === 'oldest' ? 'flagged_at ASC, id ASC' : 'flagged_at DESC, id DESC';
    const rows = this.db.prepare(`SELECT * FROM items ${clause} ORDER BY ${order} LIMIT @limit OFFSET @offset`).all({ ...params, limit: page.limit, offset: page.offset }) as ItemRow[];
    const { total } = this.db.prepare(`SELECT COUNT(*) AS total FROM items ${clause}`).get(params) as { total: number };
    return { items: rows.map((r) => this.toItem(r)), total };
  }

  private toItem(r: ItemRow): QueueItem {
    return {
      id: r.id, decisionId: r.decision_id, inputId: r.input_id, flaggedAt: r.flagged_at, receivedAt: r.received_at, platform: r.platform,
      listingUrl: r.listing_url, listingTitle: r.listing_title, listingSeller: r.listing_seller, imageUrl: r.image_url, imageSha256: r.image_sha256,
      topLabel: r.top_label, topScore: r.top_score, model: r.model_name && r.model_version ? { name: r.model_name, version: r.model_version } : null,
      status: r.status, label: r.label, lastDecisionId: r.last_decision_id,
      reasons: this.reasonsOf.all(r.id) as ReasonRow[],
    };
  }

  item(id: number): ItemDetail | null {
    const row = this.itemById.get(id) as ItemRow | undefined;
    if (!row) return null;
    const item = this.toItem(row);
    const message = JSON.parse(row.message) as FlaggedDecision;
    const choices = new Set(item.reasons.map((r) => r.label));
    for (const c of message.classifiers) for (const t of c.top) choices.add(t.label);
    return { ...item, message, labelChoices: [...choices], history: this.audit({ itemId: id, limit: 1000 }).reverse() };
  }

  decide(input: DecideInput): DecisionRecord {
    const note = this.checkNote(input.note);
    return this.record(input.itemId, input.expectLastDecisionId, (row) => {
      if (row.status === 'escalated' && input.principal.role !== 'lead') throw new AppError('REVIEW_FORBIDDEN', 'Escalated items are decided by a lead.');
      if (row.status === 'confirmed' || row.status === 'rejected') throw new AppError('REVIEW_NOT_PENDING', `It was ${row.status}.`);
      if (row.status === 'escalated' && input.verdict === 'escalated') throw new AppError('REVIEW_NOT_PENDING', 'It is already escalated.');
      let label = row.top_label;
      let correctLabel: string | null = null;
      if (input.verdict === 'confirmed' && input.label) label = this.checkLabel(input.label, 'label');
      if (input.verdict !== 'confirmed' && input.label && input.label !== row.top_label) {
        const flaggedLabels = (this.reasonsOf.all(row.id) as ReasonRow[]).map((r) => r.label);
        // Rejecting or escalating speaks about what the model flagged, so only a flagged label fits.
        if (!flaggedLabels.includes(input.label)) throw invalid(`label "${input.label}" is not one the model flagged (${flaggedLabels.join(', ')}).`);
        label = input.label;
      }
      if (input.correctLabel) {
        if (input.verdict !== 'rejected') throw invalid('correctLabel is only for a rejection.');
        correctLabel = this.checkLabel(input.correctLabel, 'correctLabel');
        if (correctLabel === label) throw invalid('correctLabel equals the flagged label; that is a confirmation.');
      }
      return { verdict: input.verdict, label, correctLabel, note, status: input.verdict };
    }, input.principal);
  }

  undoable(principal: Principal): DecisionRecord | null {
    const since = new Date(this.now().getTime() - this.options.undoWindowSeconds * 1000).toISOString();
    // Only the newest decision of the item can be undone, and only by its author: anything older was
    // already superseded, and somebody else's verdict is a lead's to re-open.
    const last = this.db.prepare(`SELECT d.* FROM decisions d JOIN items i ON i.id = d.item_id AND i.last_decision_id = d.id
      WHERE d.analyst = ? AND d.verdict != 'reopened' AND d.decided_at >= ? ORDER BY d.id DESC LIMIT 1`).get(principal.username, since) as DecisionRow | undefined;
    return last ? toDecision(last) : null;
  }

  undo(principal: Principal, expectDecisionId?: number | null): DecisionRecord {
    const last = this.undoable(principal);
    if (!last) throw new AppError('REVIEW_NOTHING_TO_UNDO');
    if (expectDecisionId !== undefined && expectDecisionId !== null && expectDecisionId !== last.id) {
      throw new AppError('REVIEW_CONFLICT', 'The decision this page offered to undo is no longer your latest (already undone?).');
    }
    return this.reopenRow(last.itemId, last.id, principal, 'undo', true);
  }

  reopen(input: { itemId: number; principal: Principal; note?: string | null; expectLastDecisionId?: number | null }): DecisionRecord {
    if (input.principal.role !== 'lead') throw new AppError('REVIEW_FORBIDDEN', 'Re-opening a decided item is for leads.');
    return this.reopenRow(input.itemId, input.expectLastDecisionId, input.principal, this.checkNote(input.note));
  }

  /**
   * An undo puts the item back where the undone decision found it (a lead's undo of a decision on an
   * escalated item leaves it escalated, not open to analysts); a lead's re-open makes it pending.
   */
  private reopenRow(itemId: number, expect: number | null | undefined, principal: Principal, note: string | null, undo = false): DecisionRecord {
    return this.record(itemId, expect, (row) => {
      if (row.status === 'pending') throw new AppError('REVIEW_NOT_PENDING', 'It is already pending.');
      let status: ItemStatus = 'pending';
      let forgetFirstDecision = false;
      if (undo && row.last_decision_id) {
        const undone = this.decisionById.get(row.last_decision_id) as DecisionRow;
        if (undone.previous_verdict === 'escalated') status = 'escalated';
        // An undone slip is not the item's time to decision; the decision that replaces it will be.
        forgetFirstDecision = undone.decided_at === row.first_decided_at;
      }
      return { verdict: 'reopened', label: row.label ?? row.top_label, correctLabel: null, note, status, forgetFirstDecision };
    }, principal);
  }

  /** The one writer of decisions: checks, audit row, item status and the outbox message in a single transaction. */
  private record(
    itemId: number,
    expect: number | null | undefined,
    plan: (row: ItemRow) => { verdict: ReviewVerdict; label: string; correctLabel: string | null; note: string | null; status: ItemStatus; forgetFirstDecision?: boolean },
    principal: Principal,
  ): DecisionRecord {
    let secondsToDecision: number | null = null;
    const run = this.db.transaction(() => {
      const row = this.itemById.get(itemId) as ItemRow | undefined;
      if (!row) throw new AppError('REVIEW_ITEM_NOT_FOUND', `Item ${itemId}.`);
      if (expect !== undefined && expect !== null && (row.last_decision_id ?? 0) !== expect) throw new AppError('REVIEW_CONFLICT');
      const p = plan(row);
      const previous = row.last_decision_id ? (this.decisionById.get(row.last_decision_id) as DecisionRow) : null;
      const now = this.now();
      const reviewId = randomUUID();
      const message: ReviewDecision = reviewDecisionOf(JSON.parse(row.message) as FlaggedDecision, {
        verdict: p.verdict, analyst: principal.username, label: p.label, reviewId, decidedAt: now,
        ...(p.correctLabel ? { correctLabel: p.correctLabel } : {}),
        previous: previous ? { verdict: previous.verdict, label: previous.label } : null,
        ...(p.note ? { note: p.note } : {}),
      });
      const info = this.insertDecision.run({
        reviewId, itemId, verdict: p.verdict, label: p.label, correctLabel: p.correctLabel, note: p.note, analyst: principal.username, role: principal.role,
        decidedAt: message.decidedAt, previousVerdict: previous?.verdict ?? null, previousLabel: previous?.label ?? null, message: JSON.stringify(message),
      });
      const decisionId = Number(info.lastInsertRowid);
      const terminal = p.verdict !== 'reopened';
      // Time to decision runs from the flag to the first confirmation or rejection: an escalation
      // hands the item on, it does not decide it.
      const decides = p.verdict === 'confirmed' || p.verdict === 'rejected';
      if (decides && row.first_decided_at === null) secondsToDecision = Math.max(0, (now.getTime() - Date.parse(row.flagged_at)) / 1000);
      this.updateItem.run({ status: p.status, label: terminal ? p.label : null, decisionId, firstDecidedAt: decides ? message.decidedAt : null, itemId });
      if (p.forgetFirstDecision) this.db.prepare('UPDATE items SET first_decided_at = NULL WHERE id = ?').run(itemId);
      return toDecision(this.decisionById.get(decisionId) as DecisionRow);
    });
    const decision = run.immediate();
    this.emit('decided', { decision, secondsToDecision });
    return decision;
  }

  private checkLabel(value: string, field: string): string {
    const label = value.trim();
    if (!LABEL_PATTERN.test(label)) throw invalid(`${field} must be 1–128 letters, digits, spaces or _ . : - (got ${JSON.stringify(value.slice(0, 40))}).`);
    return label;
  }

  private checkNote(note: string | null | undefined): string | null {
    const text = note?.trim() ?? '';
    if (text.length > MAX_NOTE) throw invalid(`note is longer than ${MAX_NOTE} characters.`);
    return text || null;
  }

  audit(filter: { analyst?: string; itemId?: number; limit?: number } = {}): DecisionRecord[] {
    const where: string[] = [];
    const params: Record<string, unknown> = { limit: filter.limit ?? 100 };
    if (filter.analyst) {
      where.push('analyst = @analyst');
      params.analyst = filter.analyst;
    }
    if (filter.itemId !== undefined) {
      where.push('item_id = @itemId');
      params.itemId = filter.itemId;
    }
    const rows = this.db.prepare(`SELECT * FROM decisions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT @limit`).all(params) as DecisionRow[];
    return rows.map(toDecision);
  }

  backlog() {
    const row = this.db.prepare(`SELECT
      SUM(status = 'pending') AS pending, SUM(status = 'escalated') AS escalated,
      MIN(CASE WHEN status = 'pending' THEN flagged_at END) AS oldest FROM items`).get() as { pending: number | null; escalated: number | null; oldest: string | null };
    return { pending: row.pending ?? 0, escalated: row.escalated ?? 0, oldestPendingAt: row.oldest };
  }

  facets() {
    const labels = (this.db.prepare('SELECT DISTINCT label FROM reasons ORDER BY label').all() as Array<{ label: string }>).map((r) => r.label);
    const platforms = (this.db.prepare('SELECT DISTINCT platform FROM items ORDER BY platform').all() as Array<{ platform: string }>).map((r) => r.platform);
    return { labels, platforms };
  }

  unpublished(limit: number): OutboxEntry[] {
    return (this.db.prepare(`SELECT d.id, i.decision_id AS decisionId, d.review_id AS reviewId, d.message FROM decisions d JOIN items i ON i.id = d.item_id
      WHERE d.published_at IS NULL ORDER BY d.id LIMIT ?`).all(limit) as OutboxEntry[]);
  }

  markPublished(ids: readonly number[], at: Date = this.now()): void {
    const stamp = this.db.prepare('UPDATE decisions SET published_at = ? WHERE id = ? AND published_at IS NULL');
    this.db.transaction(() => {
      for (const id of ids) stamp.run(at.toISOString(), id);
    })();
  }

  outboxSize(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM decisions WHERE published_at IS NULL').get() as { n: number }).n;
  }
}

export function createReviewStore(db: ReviewDb, options: ReviewStoreOptions): ReviewStore {
  return new SqliteReviewStore(db, options);
}
