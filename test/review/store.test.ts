import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { appliedMigrations, openReviewDb, SCHEMA_VERSION, type ReviewDb } from '../../src/review/db.js';
import { createReviewStore, type ReviewStore } from '../../src/review/store.js';
import { isAppError } from '../../src/errors.js';
import { REPO_ROOT } from '../../src/config.js';
import { checkReviewDecision } from '../../src/contracts/index.js';
import { flaggedMessage } from '../helpers/review.js';

const ana = { username: 'ana', role: 'analyst' as const };
const bo = { username: 'bo', role: 'analyst' as const };
const lee = { username: 'lee', role: 'lead' as const };

function withStore(fn: (store: ReviewStore, db: ReviewDb, clock: { t: number }, file: string) => void | Promise<void>) {
  return async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'review-store-'));
    const file = path.join(dir, 'review.db');
    const clock = { t: Date.parse('2026-11-20T10:00:00Z') };
    const db = openReviewDb(file);
    try {
      await fn(createReviewStore(db, { undoWindowSeconds: 600, now: () => new Date(clock.t) }), db, clock, file);
    } finally {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const code = (c: string) => (err: unknown) => isAppError(err) && err.code === c;

test('a new database is migrated through every version in order, and reopening it applies nothing twice', withStore((_s, db, _c, file) => {
  assert.deepEqual(appliedMigrations(db).map((m) => m.version), [1, 2]);
  assert.equal(SCHEMA_VERSION, 2);
  const again = openReviewDb(file);
  assert.equal(appliedMigrations(again).length, 2);
  // A database an older build left at version 1 is brought forward on open.
  again.exec("DROP TRIGGER decisions_no_replace; DELETE FROM schema_migrations WHERE version = 2");
  again.close();
  const upgraded = openReviewDb(file);
  assert.deepEqual(appliedMigrations(upgraded).map((m) => m.version), [1, 2]);
  assert.ok(upgraded.prepare("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'decisions_no_replace'").get());
  upgraded.close();
}));

test('a database from a newer build is refused instead of being half-understood', withStore((_s, db, _c, file) => {
  db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(SCHEMA_VERSION + 1, 'future', new Date().toISOString());
  assert.throws(() => openReviewDb(file), /newer than this build understands/);
}));

test('a redelivered flagged decision is stored once', withStore((store) => {
  const message = flaggedMessage();
  const first = store.ingest(message, { topic: 'images.flagged', partition: 0, offset: '7' });
  const again = store.ingest(message, { topic: 'images.flagged', partition: 0, offset: '7' });
  assert.equal(first.outcome, 'added');
  assert.deepEqual(again, { outcome: 'duplicate', itemId: first.itemId });
  assert.equal(store.queue({}).total, 1);
}));

test('items, decisions and the audit log survive closing and reopening the database', withStore((store, db, _c, file) => {
  const { itemId } = store.ingest(flaggedMessage());
  store.decide({ itemId, verdict: 'confirmed', principal: ana });
  db.close();
  const reopened = openReviewDb(file);
  try {
    const again = createReviewStore(reopened, { undoWindowSeconds: 600 });
    assert.equal(again.item(itemId)?.status, 'confirmed');
    assert.equal(again.audit().length, 1);
    assert.equal(again.outboxSize(), 1);
  } finally {
    reopened.close();
  }
  // withStore closes `db` again; better-sqlite3 allows closing twice.
}));

test('a photo that came inline with its flag is kept as the photo, not in the item, and only if it is the screened one', withStore((store, db) => {
  const bytes = readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'met', 'ivory_110245.jpg'));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const message = flaggedMessage({ imageUrl: null });
  message.image = { ...message.image, sha256, base64: bytes.toString('base64') };
  const { itemId } = store.ingest(message);
  const photo = db.prepare('SELECT content_type, bytes FROM photos WHERE sha256 = ?').get(sha256) as { content_type: string; bytes: Buffer };
  assert.equal(photo.content_type, 'image/jpeg');
  assert.ok(Buffer.from(photo.bytes).equals(bytes));
  assert.equal(store.item(itemId)!.message.image.base64, undefined, 'the item keeps the decision, not a second copy of the bytes');

  const forged = flaggedMessage({ imageUrl: null });
  forged.image = { ...forged.image, base64: bytes.toString('base64') }; // bytes of another photo than the screened sha256
  store.ingest(forged);
  assert.equal((db.prepare('SELECT COUNT(*) AS n FROM photos').get() as { n: number }).n, 1);
}));

test('the queue filters by label, platform, score range and date, and sorts newest or highest score first', withStore((store) => {
  store.ingest(flaggedMessage({ decisionId: 'a', platform: 'p1', decidedAt: '2026-11-18T08:00:00.000Z', reasons: [['elephant_ivory', 0.7, 0.6]] }));
  store.ingest(flaggedMessage({ decisionId: 'b', platform: 'p2', decidedAt: '2026-11-19T08:00:00.000Z', reasons: [['tiger_skin', 0.95, 0.5], ['elephant_ivory', 0.65, 0.6]] }));
  store.ingest(flaggedMessage({ decisionId: 'c', platform: 'p1', decidedAt: '2026-11-20T08:00:00.000Z', reasons: [['parrot', 0.8, 0.5]] }));
  const ids = (f: Parameters<ReviewStore['queue']>[0]) => store.queue(f).items.map((i) => i.decisionId);
  assert.deepEqual(ids({}), ['c', 'b', 'a']);
  assert.deepEqual(ids({ sort: 'score' }), ['b', 'c', 'a']);
  assert.deepEqual(ids({ sort: 'oldest' }), ['a', 'b', 'c']);
  assert.deepEqual(ids({ label: 'elephant_ivory' }), ['b', 'a'], 'an item is found by any of its flag labels');
  assert.deepEqual(ids({ platform: 'p1' }), ['c', 'a']);
  assert.deepEqual(ids({ minScore: 0.75, maxScore: 0.9 }), ['c']);
  assert.deepEqual(ids({ from: '2026-11-19T00:00:00.000Z', to: '2026-11-20T00:00:00.000Z' }), ['b']);
  assert.deepEqual(store.facets(), { labels: ['elephant_ivory', 'parrot', 'tiger_skin'], platforms: ['p1', 'p2'] });
  const page = store.queue({}, { limit: 2, offset: 2 });
  assert.deepEqual([page.items.map((i) => i.decisionId), page.total], [['a'], 3]);
}));

test('a confirmation writes the audit row, the outbox message and the item status in one step', withStore((store, _db, clock) => {
  const message = flaggedMessage({ decidedAt: new Date(clock.t - 3600_000).toISOString(), reasons: [['elephant_ivory', 0.9, 0.6]], others: ['rhino_horn'] });
  const { itemId } = store.ingest(message);
  const seen: number[] = [];
  store.on('decided', (e) => seen.push(e.secondsToDecision ?? -1));
  const d = store.decide({ itemId, verdict: 'confirmed', label: 'rhino_horn', principal: ana, expectLastDecisionId: 0 });
  assert.equal(d.verdict, 'confirmed');
  assert.equal(d.label, 'rhino_horn');
  assert.equal(d.previous, null);
  assert.deepEqual(seen, [3600]);
  const item = store.item(itemId)!;
  assert.equal(item.status, 'confirmed');
  assert.equal(item.label, 'rhino_horn');
  assert.deepEqual(item.labelChoices, ['elephant_ivory', 'rhino_horn'], 'the flag reasons first, then the classifier’s other top labels');
  const [out] = store.unpublished(10);
  const published = JSON.parse(out!.message);
  assert.equal(checkReviewDecision(published).ok, true);
  assert.equal(published.decisionId, message.decisionId);
  assert.equal(published.reviewId, d.reviewId);
  assert.equal(published.analyst, 'ana');
  assert.deepEqual(published.image, { sha256: message.image.sha256, url: message.image.url });
  store.markPublished([out!.id]);
  assert.equal(store.outboxSize(), 0);
  assert.ok(store.audit()[0]!.publishedAt);
}));

test('a rejection may name the true label, which must differ from the flagged one', withStore((store) => {
  const { itemId } = store.ingest(flaggedMessage({ reasons: [['elephant_ivory', 0.9, 0.6]] }));
  assert.throws(() => store.decide({ itemId, verdict: 'rejected', correctLabel: 'elephant_ivory', principal: ana }), code('REVIEW_DECISION_INVALID'));
  assert.throws(() => store.decide({ itemId, verdict: 'confirmed', correctLabel: 'x', principal: ana }), code('REVIEW_DECISION_INVALID'));
  assert.throws(() => store.decide({ itemId, verdict: 'rejected', label: 'tiger_skin', principal: ana }), code('REVIEW_DECISION_INVALID'), 'only a flagged label can be rejected');
  assert.throws(() => store.decide({ itemId, verdict: 'confirmed', label: '<script>', principal: ana }), code('REVIEW_DECISION_INVALID'));
  const d = store.decide({ itemId, verdict: 'rejected', correctLabel: 'cattle_bone', note: ' carved bone, not ivory ', principal: ana });
  assert.equal(d.label, 'elephant_ivory');
  assert.equal(d.correctLabel, 'cattle_bone');
  assert.equal(d.note, 'carved bone, not ivory');
  assert.equal(JSON.parse(store.unpublished(1)[0]!.message).correctLabel, 'cattle_bone');
}));

test('a stale page cannot overwrite a decision made since it was loaded', withStore((store) => {
  const { itemId } = store.ingest(flaggedMessage());
  store.decide({ itemId, verdict: 'escalated', principal: bo, expectLastDecisionId: 0 });
  assert.throws(() => store.decide({ itemId, verdict: 'confirmed', principal: lee, expectLastDecisionId: 0 }), code('REVIEW_CONFLICT'));
}));

test('decided items are not decided again, and escalated items are a lead’s to decide', withStore((store) => {
  const a = store.ingest(flaggedMessage()).itemId;
  store.decide({ itemId: a, verdict: 'confirmed', principal: ana });
  assert.throws(() => store.decide({ itemId: a, verdict: 'rejected', principal: bo }), code('REVIEW_NOT_PENDING'));
  const b = store.ingest(flaggedMessage()).itemId;
  store.decide({ itemId: b, verdict: 'escalated', principal: ana });
  assert.throws(() => store.decide({ itemId: b, verdict: 'confirmed', principal: bo }), code('REVIEW_FORBIDDEN'));
  assert.equal(store.decide({ itemId: b, verdict: 'confirmed', principal: lee }).previous?.verdict, 'escalated');
  assert.throws(() => store.decide({ itemId: 999, verdict: 'confirmed', principal: lee }), code('REVIEW_ITEM_NOT_FOUND'));
  assert.deepEqual(store.backlog(), { pending: 0, escalated: 0, oldestPendingAt: null });
}));

test('an undo is a new reopened decision by its author, within the window, of the newest decision only', withStore((store, _db, clock) => {
  const a = store.ingest(flaggedMessage()).itemId;
  const b = store.ingest(flaggedMessage()).itemId;
  assert.throws(() => store.undo(ana), code('REVIEW_NOTHING_TO_UNDO'));
  const first = store.decide({ itemId: a, verdict: 'confirmed', principal: ana });
  store.decide({ itemId: b, verdict: 'rejected', principal: ana });
  assert.throws(() => store.undo(bo), code('REVIEW_NOTHING_TO_UNDO'), "another analyst's decision is not theirs to undo");
  assert.equal(store.undoable(ana)?.itemId, b);
  assert.throws(() => store.undo(ana, first.id), code('REVIEW_CONFLICT'), 'a page that offered another decision does not undo this one');
  const undone = store.undo(ana, store.undoable(ana)!.id);
  assert.equal(undone.itemId, b, 'the latest decision is undone first');
  assert.throws(() => store.undo(ana, store.audit({ itemId: b })[1]!.id), code('REVIEW_CONFLICT'), 'pressing undo twice does not undo the decision before it');
  assert.equal(undone.verdict, 'reopened');
  assert.deepEqual(undone.previous, { verdict: 'rejected', label: 'elephant_ivory' });
  assert.equal(undone.note, 'undo');
  assert.equal(store.item(b)!.status, 'pending');
  clock.t += 601_000;
  assert.throws(() => store.undo(ana), code('REVIEW_NOTHING_TO_UNDO'), 'outside the window');
  assert.equal(store.item(a)!.lastDecisionId, first.id);
  const history = store.item(b)!.history.map((d) => d.verdict);
  assert.deepEqual(history, ['rejected', 'reopened'], 'nothing is erased');
  assert.equal(store.outboxSize(), 3);
}));

test('only a lead re-opens a decided item, and the time to decision counts the first decision only', withStore((store) => {
  const a = store.ingest(flaggedMessage()).itemId;
  const times: Array<number | null> = [];
  store.on('decided', (e) => times.push(e.secondsToDecision));
  store.decide({ itemId: a, verdict: 'confirmed', principal: ana });
  assert.throws(() => store.reopen({ itemId: a, principal: ana }), code('REVIEW_FORBIDDEN'));
  const r = store.reopen({ itemId: a, principal: lee, note: 'wrong species' });
  assert.equal(r.role, 'lead');
  assert.throws(() => store.reopen({ itemId: a, principal: lee }), code('REVIEW_NOT_PENDING'));
  store.decide({ itemId: a, verdict: 'rejected', principal: bo });
  assert.equal(times.length, 3);
  assert.equal(typeof times[0], 'number');
  assert.deepEqual(times.slice(1), [null, null]);
  // An escalation hands the item on without deciding it; an undone slip does not count either.
  const b = store.ingest(flaggedMessage()).itemId;
  times.length = 0;
  store.decide({ itemId: b, verdict: 'escalated', principal: ana });
  store.decide({ itemId: b, verdict: 'confirmed', principal: lee });
  store.undo(lee);
  store.decide({ itemId: b, verdict: 'rejected', principal: lee });
  assert.deepEqual(times.map((t) => typeof t), ['object', 'number', 'object', 'number'], 'escalated: null; confirmed: counted; undo: null; the real decision: counted again');
}));

test('the audit log refuses edits and deletions at the database level', withStore((store, db) => {
  const { itemId } = store.ingest(flaggedMessage());
  const d = store.decide({ itemId, verdict: 'confirmed', principal: ana });
  assert.throws(() => db.prepare('UPDATE decisions SET verdict = ? WHERE id = ?').run('rejected', d.id), /append-only/);
  assert.throws(() => db.prepare('DELETE FROM decisions WHERE id = ?').run(d.id), /append-only/);
  store.markPublished([d.id]);
  assert.throws(() => db.prepare('UPDATE decisions SET published_at = NULL WHERE id = ?').run(d.id), /append-only/);
  // REPLACE deletes without firing DELETE triggers; the insert guard (migration 2) stops it.
  assert.throws(() => db.prepare(`INSERT OR REPLACE INTO decisions (id, review_id, item_id, verdict, label, analyst, role, decided_at, message)
    VALUES (?, 'forged', ?, 'rejected', 'x', 'mallory', 'lead', '2026-01-01T00:00:00.000Z', '{}')`).run(d.id, itemId), /append-only/);
  assert.equal(store.audit()[0]!.analyst, 'ana');
}));
