import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { createReviewMetrics } from '../../src/review/metrics.js';
import { openReviewDb, type ReviewDb } from '../../src/review/db.js';
import { createReviewStore, type ReviewStore } from '../../src/review/store.js';
import { encodeDecision, parseFlagged, parseReviewDecision, type DecisionRecord } from '../../src/contracts/index.js';
import { createReviewFeed, type ReviewFeed, type ReviewFeedEvents, type ReviewFeedOptions } from '../../src/review/feed.js';
import { collect, committedOffsets, createTopics, publish } from '../../src/kafka/tools.js';
import { flaggedMessage } from '../helpers/review.js';
import { until } from '../helpers/wait.js';
import { kafkaBrokers, uniqueTopics } from '../helpers/kafka.js';

const silent = pino({ level: 'silent' });
const ana = { username: 'ana', role: 'analyst' as const };
const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

/** Flagged two hours ago, so ages and times to decision are well above a scrape's jitter. */
const decidedAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 2 * 3600_000);

const flagged = (n: number, label = 'elephant_ivory'): DecisionRecord =>
  flaggedMessage({ decisionId: `dec-${run}-${n}`, reasons: [[label, 0.93, 0.6]], decidedAt: decidedAt.toISOString() });
const wire = (d: DecisionRecord | Record<string, unknown>, key = String(d.inputId)) => ({ key, value: JSON.stringify(d) });

interface Opened { db: ReviewDb; store: ReviewStore }
const openStore = (file: string): Opened => {
  const db = openReviewDb(file);
  return { db, store: createReviewStore(db, { undoWindowSeconds: 600 }) };
};

/** What a plain consumer of the decisions topic receives (a throwaway group, from the beginning). */
async function readTopic(brokers: string[], topic: string) {
  const reader = await collect(brokers, [topic]);
  return {
    get records() {
      return reader.records.map((r) => ({ partition: r.partition, key: r.key, value: r.value, reviewId: r.headers['review-id'] ?? null }));
    },
    close: () => reader.close(),
  };
}

describe('the review feed on a real broker', () => {
  let brokers: string[];
  let tmp: string;
  before(async () => {
    brokers = await kafkaBrokers();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'review-feed-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  /** Names for one test, a database file, and a feed factory whose feeds and databases are cleaned up with the test. */
  function setup(t: TestContext, label: string) {
    const { groupId, topics } = uniqueTopics(label);
    const names = { groupId, flagged: topics.review, decisions: topics.results.replace(/^screened\./, 'review-decisions.'), dlq: topics.dlq };
    const file = path.join(tmp, `${label}-${Math.random().toString(36).slice(2)}.db`);
    const feeds: ReviewFeed[] = [];
    const dbs: ReviewDb[] = [];
    t.after(async () => {
      await Promise.allSettled(feeds.map((f) => f.stop()));
      for (const db of dbs) if (db.open) db.close();
    });
    const open = () => {
      const opened = openStore(file);
      dbs.push(opened.db);
      return opened;
    };
    const feed = (store: ReviewFeedOptions['store'], extra: Partial<ReviewFeedOptions> = {}) => {
      const f = createReviewFeed({
        brokers, logger: silent, store, flaggedTopic: names.flagged, decisionsTopic: names.decisions, groupId, dlqTopic: names.dlq,
        createTopics: { partitions: 2, replicationFactor: 1 }, publishIntervalMs: 60_000, shutdownTimeoutMs: 15_000, ...extra,
      });
      feeds.push(f);
      return f;
    };
    return { names, open, feed };
  }

  const handled = (f: ReviewFeed) => { const s = f.stats(); return s.ingested + s.duplicates + s.invalid; };

  test('flagged decisions are stored once, poison is dead-lettered, and a restarted feed re-reads nothing', async (t) => {
    const { names, open, feed } = setup(t, 'feed-ingest');
    await createTopics(brokers, [names.flagged], 2);
    const [a, b, c] = [flagged(1), flagged(2), flagged(3)];
    await publish(brokers, names.flagged, [
      wire(a), wire(b),
      { key: 'poison-json', value: '{"decisionId": ' },
      wire(a), // an at-least-once duplicate from the pipeline
      wire({ ...flagged(4), flagged: false }, 'poison-schema'),
      // A newer screening service's extra fields are taken, not dead-lettered.
      wire({ ...c, explanation: { heatmap: 'x' }, timings: { ...c.timings, decodeMs: 3 } }),
    ]);

    let { db, store } = open();
    const first = feed(store);
    await first.start();
    assert.equal(first.state(), 'running');
    // Dead letters count once the DLQ acknowledged them, when the batch commits.
    await until('six messages handled and the poison dead-lettered', () => handled(first) === 6 && first.stats().deadLettered === 2);
    assert.ok(first.ready());
    assert.deepEqual(first.stats(), { ingested: 3, duplicates: 1, invalid: 2, deadLettered: 2, published: 0, publishFailures: 0 });
    assert.deepEqual(store.queue({ status: 'all', sort: 'oldest' }).items.map((i) => i.decisionId).sort(), [a, b, c].map((d) => d.decisionId).sort());

    const dlq = await collect(brokers, [names.dlq]);
    t.after(() => dlq.close());
    const dead = await dlq.waitFor((r) => r.length >= 2, 30_000);
    const reasons = new Map(dead.map((d) => [d.key, JSON.parse(d.value) as { code: string; reason: string; source: { topic: string } }]));
    assert.match(reasons.get('poison-json')!.reason, /^not JSON/);
    assert.equal(reasons.get('poison-schema')!.reason, 'schema: /flagged must be equal to constant');
    assert.equal(reasons.get('poison-schema')!.code, 'MESSAGE_INVALID');
    assert.equal(reasons.get('poison-schema')!.source.topic, names.flagged);

    await first.stop();
    assert.equal(first.state(), 'stopped');
    assert.equal(first.ready(), false);
    for (const p of await committedOffsets(brokers, names.groupId, names.flagged)) {
      // Keys hash at random; a partition that received nothing has nothing to commit (-1).
      assert.equal(p.end === '0' && p.committed === '-1' ? '0' : p.committed, p.end, `partition ${p.partition} is committed to its end`);
    }

    // The console restarts: the database is reopened and a new feed joins the same group.
    db.close();
    ({ db, store } = open());
    const d = flagged(5);
    await publish(brokers, names.flagged, [wire(d), wire(b)]);
    const second = feed(store);
    await second.start();
    await until('the two new messages handled', () => handled(second) === 2);
    assert.deepEqual(second.stats(), { ingested: 1, duplicates: 1, invalid: 0, deadLettered: 0, published: 0, publishFailures: 0 }, 'nothing committed before was read again');
    assert.equal(store.queue({ status: 'all' }).total, 4);
    assert.equal((await dlq.waitFor((r) => r.length >= 2, 500)).length, 2, 'no poison message was dead-lettered twice');
  });

  test('a decision reaches the decisions topic exactly as stored, keyed by the flagged decisionId, in order per item', async (t) => {
    const { names, open, feed } = setup(t, 'feed-publish');
    await createTopics(brokers, [names.flagged, names.decisions, names.dlq], 2);
    const [a, b] = [flagged(11), flagged(12, 'pangolin_scales')];
    await publish(brokers, names.flagged, [wire(a), wire(b)]);
    const { db, store } = open();
    const f = feed(store); // the 60 s retry interval never fires here: 'decided' alone must trigger the publish
    const published: Array<ReviewFeedEvents['published']> = [];
    f.on('published', (e) => published.push(e));
    await f.start();
    await until('both items stored', () => handled(f) === 2);
    const reader = await readTopic(brokers, names.decisions);
    t.after(() => reader.close());

    const item = store.queue({ status: 'all' }).items.find((i) => i.decisionId === a.decisionId)!;
    const confirmed = store.decide({ itemId: item.id, verdict: 'confirmed', principal: ana });
    const undone = store.undo(ana); // a second decision on the same item right after the first
    await until('two decisions on the topic', () => reader.records.length >= 2);
    await until('the outbox drained', () => store.outboxSize() === 0);

    const rows = db.prepare('SELECT review_id AS reviewId, message, published_at AS publishedAt FROM decisions ORDER BY id').all() as Array<{ reviewId: string; message: string; publishedAt: string | null }>;
    assert.deepEqual(rows.map((r) => r.reviewId), [confirmed.reviewId, undone.reviewId]);
    assert.deepEqual(reader.records.map((r) => r.value), rows.map((r) => r.message), 'the stored messages, byte for byte, in decision order');
    assert.deepEqual(reader.records.map((r) => r.key), [a.decisionId, a.decisionId]);
    assert.deepEqual(reader.records.map((r) => r.reviewId), [confirmed.reviewId, undone.reviewId]);
    assert.equal(new Set(reader.records.map((r) => r.partition)).size, 1, 'one item, one partition');
    assert.ok(rows.every((r) => r.publishedAt !== null));
    const sent = reader.records.map((r) => parseReviewDecision(Buffer.from(r.value)));
    assert.ok(sent[0]!.ok && sent[1]!.ok, JSON.stringify(sent));
    assert.deepEqual(sent.map((s) => s.ok && [s.message.verdict, s.message.analyst, s.message.decisionId, s.message.label]), [
      ['confirmed', 'ana', a.decisionId, 'elephant_ivory'],
      ['reopened', 'ana', a.decisionId, 'elephant_ivory'],
    ]);
    assert.equal(published.reduce((n, e) => n + e.count, 0), 2);
    assert.equal(f.stats().published, 2);
    assert.equal(await f.publishNow(), 0, 'nothing is left to send');
    assert.equal(reader.records.length, 2);
  });

  test('a failed ingest leaves its offset uncommitted, surfaces the error, and the message is read again', async (t) => {
    const { names, open, feed } = setup(t, 'feed-ingest-fails');
    await createTopics(brokers, [names.flagged, names.decisions, names.dlq], 1);
    const [a, b, c] = [flagged(21), flagged(22), flagged(23)];
    await publish(brokers, names.flagged, [wire(a), wire(b), wire(c)]);
    const { store } = open();
    let failures = 1;
    // The real store behind it; only the first attempt at b fails, as SQLite does when the disk is full.
    const flaky: ReviewFeedOptions['store'] = {
      ingest: (message, source) => {
        if (message.decisionId === b.decisionId && failures-- > 0) throw new Error('SQLITE_FULL: database or disk is full');
        return store.ingest(message, source);
      },
      unpublished: (limit) => store.unpublished(limit),
      markPublished: (ids, at) => store.markPublished(ids, at),
      on: (event, listener) => store.on(event, listener),
      off: (event, listener) => store.off(event, listener),
    };
    const f = feed(flaky);
    const errors: Array<ReviewFeedEvents['clientError']> = [];
    f.on('clientError', (e) => errors.push(e));
    await f.start();
    await until('all three stored', () => store.queue({ status: 'all' }).total === 3);
    assert.deepEqual(errors.map((e) => [e.kind, e.error.message]), [['ingest', 'SQLITE_FULL: database or disk is full']]);
    assert.deepEqual(f.stats(), { ingested: 3, duplicates: 0, invalid: 0, deadLettered: 0, published: 0, publishFailures: 0 }, 'a, stored before the failure, was committed and not read again');
    assert.equal(f.state(), 'running');
  });

  test('decisions wait in SQLite while the decisions topic cannot be written, and go out once it can', async (t) => {
    const { names, open, feed } = setup(t, 'feed-outage');
    await createTopics(brokers, [names.flagged], 1);
    const { store } = open();
    const { itemId } = store.ingest(flagged(31));
    store.decide({ itemId, verdict: 'rejected', principal: ana, correctLabel: 'ceramic_lookalike' }); // taken while the feed was down
    // The operator has not created the decisions topic yet (and the feed may not): every send fails.
    const f = feed(store, { createTopics: false, publishIntervalMs: 300 });
    const failed: Array<ReviewFeedEvents['publishFailed']> = [];
    f.on('publishFailed', (e) => failed.push(e));
    await assert.rejects(f.publishNow(), /not connected/, 'before start there is nothing to publish with');
    const started = Date.now();
    await f.start();
    await until('a failed publish', () => failed.length > 0, { timeoutMs: 60_000 });
    t.diagnostic(`the first publish failed after ${Date.now() - started} ms of producer retries`);
    assert.equal(store.outboxSize(), 1, 'the decision is still in the outbox');
    assert.equal(f.stats().publishFailures, failed.length);
    assert.equal(f.stats().published, 0);

    await createTopics(brokers, [names.decisions], 1);
    const reader = await readTopic(brokers, names.decisions);
    t.after(() => reader.close());
    await until('the outbox drained by the periodic retry', () => store.outboxSize() === 0, { timeoutMs: 60_000 });
    await until('the decision on the topic', () => reader.records.length === 1);
    const sent = parseReviewDecision(Buffer.from(reader.records[0]!.value));
    assert.ok(sent.ok && sent.message.verdict === 'rejected' && sent.message.correctLabel === 'ceramic_lookalike');
  });

  test('a decision sent but not recorded as sent goes out again under the same reviewId', async (t) => {
    const { names, open, feed } = setup(t, 'feed-resend');
    await createTopics(brokers, [names.flagged, names.decisions, names.dlq], 1);
    const { store } = open();
    let failures = 1;
    // As if the process died between the broker's ack and the stamp in SQLite.
    const forgetful: ReviewFeedOptions['store'] = {
      ingest: (message, source) => store.ingest(message, source),
      unpublished: (limit) => store.unpublished(limit),
      markPublished: (ids, at) => {
        if (failures-- > 0) throw new Error('SQLITE_IOERR: disk I/O error');
        store.markPublished(ids, at);
      },
      on: (event, listener) => store.on(event, listener),
      off: (event, listener) => store.off(event, listener),
    };
    const reader = await readTopic(brokers, names.decisions);
    t.after(() => reader.close());
    const f = feed(forgetful, { publishIntervalMs: 300 });
    await f.start();
    const { itemId } = store.ingest(flagged(51));
    const decision = store.decide({ itemId, verdict: 'escalated', principal: ana });
    await until('the outbox drained on the retry', () => store.outboxSize() === 0);
    await until('both copies on the topic', () => reader.records.length === 2);
    assert.deepEqual(reader.records.map((r) => r.reviewId), [decision.reviewId, decision.reviewId], 'consumers dedupe the copy by reviewId');
    assert.equal(reader.records[0]!.value, reader.records[1]!.value);
    assert.deepEqual([f.stats().published, f.stats().publishFailures], [1, 1]);
  });

  test('the review metrics show the backlog, ingest outcomes, decisions and the outbox', async (t) => {
    const { names, open, feed } = setup(t, 'feed-metrics');
    await createTopics(brokers, [names.flagged, names.decisions, names.dlq], 1);
    await publish(brokers, names.flagged, [wire(flagged(41)), wire(flagged(42, 'pangolin_scales')), { key: 'poison', value: 'nope' }]);
    const { store } = open();
    const f = feed(store);
    const registry = createReviewMetrics(store, f);
    await f.start();
    await until('three messages handled', () => handled(f) === 3);
    let text = await registry.metrics();
    assert.match(text, /^wildlife_review_backlog\{status="pending"\} 2$/m);
    assert.match(text, /^wildlife_review_backlog\{status="escalated"\} 0$/m);
    assert.match(text, /^wildlife_review_ingested_total\{outcome="added"\} 2$/m);
    assert.match(text, /^wildlife_review_ingested_total\{outcome="invalid"\} 1$/m);
    assert.match(text, /^wildlife_review_feed_state\{state="running"\} 1$/m);
    const age = Number(/^wildlife_review_oldest_pending_age_seconds (\S+)$/m.exec(text)?.[1]);
    assert.ok(age >= 2 * 3600 && age < 3 * 3600, `flagged two hours ago: ${age}`);

    const item = store.queue({ status: 'pending', label: 'pangolin_scales' }).items[0]!;
    store.decide({ itemId: item.id, verdict: 'confirmed', principal: ana });
    await until('the decision published', () => f.stats().published === 1);
    text = await registry.metrics();
    assert.match(text, /^wildlife_review_backlog\{status="pending"\} 1$/m);
    assert.match(text, /^wildlife_review_decisions_total\{verdict="confirmed",label="pangolin_scales"\} 1$/m);
    assert.match(text, /^wildlife_review_time_to_decision_seconds_count 1$/m);
    assert.match(text, /^wildlife_review_time_to_decision_seconds_bucket\{le="7200"\} 0$/m);
    assert.match(text, /^wildlife_review_time_to_decision_seconds_bucket\{le="14400"\} 1$/m);
    assert.match(text, /^wildlife_review_published_total 1$/m);
    assert.match(text, /^wildlife_review_publish_failures_total 0$/m);
    assert.match(text, /^wildlife_review_outbox_size 0$/m);
    assert.match(text, /^wildlife_process_cpu_seconds_total /m);
    await f.stop();
    assert.match(await registry.metrics(), /^wildlife_review_feed_state\{state="stopped"\} 1$/m);
  });
});

describe('flagged decision messages (images.flagged/v1)', () => {
  const value = (v: unknown) => Buffer.from(JSON.stringify(v));
  const reasonOf = (v: unknown) => {
    const r = parseFlagged(value(v));
    assert.equal(r.ok, false, `expected ${JSON.stringify(v).slice(0, 80)} to be refused`);
    return (r as { reason: string }).reason;
  };

  test('a flag built by the pipeline\'s own assembly and encoding is accepted unchanged, with a photo URL or the photo inline', () => {
    for (const imageUrl of [undefined, null]) {
      // flaggedMessage() runs the pipeline's decisionsOf(); encodeDecision() is what the pipeline sends.
      const message = flaggedMessage({ imageUrl });
      const encoded = encodeDecision(message, 1024 * 1024);
      assert.ok(encoded.ok, JSON.stringify(encoded));
      assert.equal(message.schema, 'images.flagged/v1');
      assert.equal(message.image.base64, imageUrl === null ? 'AA==' : undefined, 'an inline photo rides along with its flag');
      const r = parseFlagged(Buffer.from(encoded.value));
      assert.ok(r.ok, JSON.stringify(r));
      assert.deepEqual(r.message, message);
    }
  });

  test('unknown fields at the top level and in timings are accepted, for newer producers', () => {
    const m = flagged(2);
    assert.ok(parseFlagged(value({ ...m, explanation: {}, timings: { ...m.timings, decodeMs: 1 } })).ok);
  });

  test('an image without a URL (uploaded bytes) and a crawl span of null are accepted', () => {
    const m = flagged(3);
    assert.ok(parseFlagged(value({ ...m, image: { ...m.image, url: null }, timings: { ...m.timings, crawlToDecisionMs: null } })).ok);
  });

  test('empty and non-JSON values are refused as such', () => {
    assert.deepEqual(parseFlagged(null), { ok: false, reason: 'empty message value' });
    assert.match(reasonOf('{'), /^schema: \/ must be object/);
    const notJson = parseFlagged(Buffer.from('{"decisionId": '));
    assert.ok(!notJson.ok && /^not JSON: /.test(notJson.reason));
  });

  test('a screened message, an unflagged one and another schema tag are refused', () => {
    const m = flagged(4);
    assert.equal(reasonOf({ ...m, schema: 'images.screened/v1' }), 'schema: /schema must be equal to constant');
    assert.equal(reasonOf({ ...m, flagged: false }), 'schema: /flagged must be equal to constant');
    const { schema: _gone, ...untagged } = m;
    assert.equal(reasonOf(untagged), "schema: / must have required property 'schema'");
  });

  test('fields the console relies on are checked strictly', () => {
    const m = flagged(5);
    assert.equal(reasonOf({ ...m, image: { ...m.image, sha256: m.image.sha256.toUpperCase() } }), 'schema: /image/sha256 must match pattern "^[0-9a-f]{64}$"');
    assert.equal(reasonOf({ ...m, image: { ...m.image, extra: 1 } }), 'schema: /image must NOT have additional properties (extra)');
    assert.equal(reasonOf({ ...m, reasons: [{ ...m.reasons[0]!, score: 1.5 }] }), 'schema: /reasons/0/score must be <= 1');
    assert.equal(reasonOf({ ...m, classifiers: [] }), 'schema: /classifiers must NOT have fewer than 1 items');
    assert.equal(reasonOf({ ...m, listing: { ...m.listing, platform: 'p'.repeat(129) } }), 'schema: /listing/platform must NOT have more than 128 characters');
    assert.equal(reasonOf({ ...m, decisionId: '' }), 'schema: /decisionId must NOT have fewer than 1 characters');
    assert.equal(reasonOf({ ...m, decidedAt: '2026-01-05 10:00:01' }), `schema: /decidedAt must match pattern "${'^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$'}"`);
    assert.equal(reasonOf({ ...m, decidedAt: '2026-13-45T10:00:01Z' }), 'decidedAt: not a calendar date');
    assert.equal(reasonOf({ ...m, timings: { ...m.timings, totalMs: '59' } }), 'schema: /timings/totalMs must be number');
  });
});
