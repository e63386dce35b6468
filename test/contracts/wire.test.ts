import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  deadLetterOf, decisionOf, encodeDecision, flaggedOf, isCalendarDateTime, MAX_FLAGGED_INLINE_BASE64, parseCrawled, parseDeadLetter,
  parseFlagged, parseReviewDecision, parseScreened, parseWireJson, type CrawledImage, type ScreenedResult,
} from '../../src/contracts/index.js';

const SHA = 'ab'.repeat(32);
const input: CrawledImage = {
  schema: 'images.crawled/v1', id: 'listing-1', imageBase64: 'iVBORw0KGgo=',
  listing: { url: 'https://market.example/1', platform: 'example-market', title: 'carved tusk' }, crawledAt: '2025-03-01T12:00:00Z',
};
const result = (flagged: boolean): ScreenedResult => ({
  requestId: 'decision-1', sha256: SHA, flagged,
  reasons: flagged ? [{ classifier: 'wildlife', label: 'ivory', score: 0.9, threshold: 0.5 }] : [],
  classifiers: [{ name: 'wildlife', version: '1.0.0', top: [{ label: 'ivory', score: flagged ? 0.9 : 0.1, trade_relevant: true }] }],
  image: { format: 'png', width: 64, height: 64, bytes: 120 },
  timings: { fetchMs: 0, preprocessMs: 1, queueMs: 1, inferenceMs: 5, totalMs: 7 },
});
const bytes = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
const reasonOf = (parsed: { ok: boolean; reason?: string }) => (parsed.ok ? 'ok' : parsed.reason);

describe('date-times on the wire', () => {
  test('only real calendar instants pass, whatever the pattern admits', () => {
    for (const good of ['2025-03-01T12:00:00Z', '2024-02-29T23:59:59.999+01:00', '2025-12-31T00:00:00-23:59', '2000-02-29T00:00:00Z', '0000-02-29T00:00:00Z']) assert.ok(isCalendarDateTime(good), good);
    for (const bad of ['2025-13-45T99:99:99Z', '2025-02-29T00:00:00Z', '1900-02-29T00:00:00Z', '2025-00-10T00:00:00Z', '2025-04-31T00:00:00Z', '2025-01-01T24:00:00Z', '2025-01-01T00:60:00Z', '2025-01-01T00:00:60Z', '2025-01-01T00:00:00+24:00', '2025-01-01 00:00:00Z']) {
      assert.ok(!isCalendarDateTime(bad), bad);
    }
  });

  test('the crawled contract refuses an impossible crawledAt, so no flag built from it can be refused later', () => {
    assert.equal(reasonOf(parseCrawled(bytes({ ...input, crawledAt: '2025-13-45T99:99:99Z' }))), 'crawledAt: not a calendar date');
    assert.equal(reasonOf(parseCrawled(bytes({ ...input, crawledAt: '2025-02-30T10:00:00Z' }))), 'crawledAt: not a calendar date');
    assert.equal(reasonOf(parseCrawled(bytes(input))), 'ok');
  });
});

describe('bytes in', () => {
  test('invalid UTF-8 is refused with the byte where it starts, not silently replaced', () => {
    const value = Buffer.concat([bytes('{"id":"x","meta":{"note":"'), Buffer.alloc(420 * 1024, 0xff), bytes('"}}')]);
    assert.equal(reasonOf(parseCrawled(value)), 'not UTF-8: invalid byte sequence at byte 26');
    assert.match(reasonOf(parseFlagged(value))!, /^not UTF-8/);
    assert.match(reasonOf(parseReviewDecision(value))!, /^not UTF-8/);
  });

  test('JSON nested 10,000 deep is refused on receipt, by every parser, without overflowing the stack', () => {
    const deep = `{"id":"x","meta":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`;
    for (const parse of [parseCrawled, parseFlagged, parseScreened, parseReviewDecision, parseDeadLetter]) {
      assert.match(reasonOf(parse(bytes(deep)))!, /^nested deeper than 64 levels \(at \/meta\/a\/a/);
    }
    const fine = `{"a":${'['.repeat(63)}${']'.repeat(63)}}`;
    assert.equal(parseWireJson(bytes(fine)).ok, true, '64 levels are allowed');
  });
});

describe('records out', () => {
  test('every record the pipeline can build is accepted by the parser its consumer runs', () => {
    const withMeta = { ...input, meta: { crawler: 'c1', tags: ['a', 'b'] } };
    const byUrl: CrawledImage = { ...input, imageBase64: undefined, url: 'https://cdn.example/1.jpg' };
    delete byUrl.imageBase64;
    for (const source of [input, withMeta, byUrl]) {
      for (const flagged of [false, true]) {
        const decision = decisionOf(source, result(flagged), new Date('2025-03-01T12:00:05Z'));
        const screened = encodeDecision(decision, 1_000_000);
        assert.ok(screened.ok && parseScreened(bytes(screened.value)).ok, `screened ${source.id} flagged=${flagged}`);
        if (!flagged) continue;
        const flag = encodeDecision(flaggedOf(decision, source.imageBase64), 1_000_000);
        assert.ok(flag.ok, `flag ${source.id}`);
        const parsed = parseFlagged(bytes(flag.value));
        assert.ok(parsed.ok, `the review console takes the flag: ${reasonOf(parsed)}`);
        assert.equal(parsed.message.image.base64, source.imageBase64);
      }
    }
  });

  test('a cascade decision carries which stages ran and which decided, and the consumers keep it', () => {
    const cascade = { mode: 'on', ran: ['lite0', 'lite2'], decidedBy: 'lite2' };
    const decision = decisionOf(input, { ...result(true), cascade }, new Date('2025-03-01T12:00:05Z'));
    const flag = encodeDecision(flaggedOf(decision, input.imageBase64), 1_000_000);
    assert.ok(flag.ok);
    const parsed = parseFlagged(bytes(flag.value));
    assert.ok(parsed.ok, reasonOf(parsed));
    assert.deepEqual(parsed.message.cascade, cascade);
    const broken = encodeDecision({ ...decision, cascade: { ...cascade, ran: [] } }, 1_000_000);
    assert.equal(broken.ok, false, 'a cascade that ran no stage breaks the contract');
    assert.equal('cascade' in decisionOf(input, result(false), new Date()), false, 'without a cascade the field is absent');
  });

  test('a decision answered by a near-duplicate names that photo and the distance, and the review console keeps both', () => {
    const near = { distance: 2, sha256: 'cd'.repeat(32) };
    const decision = decisionOf(input, { ...result(true), near }, new Date('2025-03-01T12:00:05Z'));
    assert.equal(decision.image.sha256, SHA, 'the photo under image is still the one crawled');
    const flag = encodeDecision(flaggedOf(decision, input.imageBase64), 1_000_000);
    assert.ok(flag.ok);
    const parsed = parseFlagged(bytes(flag.value));
    assert.ok(parsed.ok, reasonOf(parsed));
    assert.deepEqual(parsed.message.near, near);
    const screened = encodeDecision(decision, 1_000_000);
    assert.ok(screened.ok && parseScreened(bytes(screened.value)).ok);
    for (const broken of [{ ...near, distance: 65 }, { ...near, sha256: 'CD'.repeat(32) }, { distance: 2 }]) {
      assert.equal(encodeDecision({ ...decision, near: broken as typeof near }, 1_000_000).ok, false, JSON.stringify(broken));
    }
    assert.equal('near' in decisionOf(input, result(false), new Date()), false, 'a decision made on the photo itself has no near field');
  });

  test('an output over the budget leaves out meta first, then the inline photo, and says so in the record', () => {
    const photo = 'A'.repeat(MAX_FLAGGED_INLINE_BASE64);
    const decision = decisionOf({ ...input, imageBase64: photo, meta: { description: 'x'.repeat(400_000) } }, result(true), new Date());
    const flag = encodeDecision(flaggedOf(decision, photo), 1_000_000);
    assert.ok(flag.ok);
    const kept = JSON.parse(flag.value);
    assert.equal(kept.meta, undefined);
    assert.equal(kept.image.base64, photo, 'the analysts keep the photo');
    assert.deepEqual(kept.omitted, [{ field: 'meta', bytes: 400_018, reason: 'record size limit' }]);
    assert.ok(parseFlagged(bytes(flag.value)).ok);

    const tight = encodeDecision(flaggedOf(decision, photo), 100_000);
    assert.ok(tight.ok && tight.bytes <= 100_000);
    assert.deepEqual(JSON.parse(tight.value).omitted.map((o: { field: string }) => o.field), ['meta', 'image.base64']);

    const tooSmall = encodeDecision(decisionOf(input, result(true), new Date()), 200);
    assert.ok(!tooSmall.ok && tooSmall.code === 'RECORD_TOO_LARGE', 'nothing left to leave out');
  });

  test('a record that breaks its own contract is caught before it is produced', () => {
    const broken = decisionOf(input, { ...result(true), sha256: 'not-a-sha' }, new Date());
    const encoded = encodeDecision(broken, 1_000_000);
    assert.ok(!encoded.ok && encoded.code === 'OUTPUT_INVALID');
    assert.match(encoded.reason, /sha256/);
  });

  test('a dead letter fits the budget whatever the original, even when JSON escaping grows it six-fold', () => {
    const at = { code: 'MESSAGE_INVALID' as const, reason: 'r'.repeat(100_000), retriable: false, attempts: 1, topic: 't', partition: 0, offset: '7', key: Buffer.alloc(5000, 0x6b), timestamp: '0' };
    const controls = Buffer.alloc(1_000_000, 0x01);
    const letter = deadLetterOf({ ...at, value: controls }, 100_000);
    const text = JSON.stringify(letter);
    assert.ok(Buffer.byteLength(text) <= 100_000, `${Buffer.byteLength(text)} bytes`);
    assert.equal(letter.original.bytes, 1_000_000);
    assert.equal(letter.original.truncated, true);
    assert.ok(letter.reason.length < 2100 && (letter.source.key ?? '').length < 1100, 'reason and key are cut too');
    assert.ok(parseDeadLetter(bytes(text)).ok);
  });
});
