import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  parseReviewDecision, REVIEW_DECISION_SCHEMA, REVIEW_DECISIONS_TOPIC, reviewDecisionOf, type DecisionRecord, type ReviewDecision,
} from '../../src/contracts/index.js';

const SHA = 'e600ad87'.padEnd(64, '0');
const minimal = { decisionId: 'd-1', label: 'ivory', verdict: 'confirmed', analyst: 'alice', decidedAt: '2025-03-01T12:00:00Z' };
const full: ReviewDecision = {
  schema: REVIEW_DECISION_SCHEMA,
  reviewId: 'r-1',
  decisionId: 'd-1',
  label: 'ivory',
  verdict: 'rejected',
  correctLabel: 'ceramic_lookalike',
  analyst: 'alice@ngo.example',
  decidedAt: '2025-03-01T12:00:00.123+01:00',
  image: { sha256: SHA, url: 'https://cdn.market.example/1.jpg' },
  listing: { id: 'L-77', platform: 'example-market', url: 'https://market.example/item/77' },
  model: { name: 'wildlife-resnet50vd', version: '1.0.0' },
  previous: { verdict: 'confirmed', label: 'ivory' },
  note: 'resin figurine, mould seam visible',
};

const parse = (value: unknown) => parseReviewDecision(Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)));
const reasonOf = (value: unknown) => {
  const r = parse(value);
  assert.equal(r.ok, false, `expected ${JSON.stringify(value)} to be refused`);
  return (r as { reason: string }).reason;
};

describe('review decision messages (images.review-decisions/v1)', () => {
  test('the topic default and schema tag are the documented ones', () => {
    assert.equal(REVIEW_DECISIONS_TOPIC, 'images.review-decisions');
    assert.equal(REVIEW_DECISION_SCHEMA, 'images.review-decisions/v1');
  });

  test('a message with only the required fields is valid', () => {
    const r = parse(minimal);
    assert.ok(r.ok);
    assert.deepEqual(r.message, minimal);
  });

  test('a message with every optional field is valid', () => {
    const r = parse(full);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.message, full);
  });

  test('each verdict is accepted, and null is accepted for correctLabel, image.url and previous', () => {
    for (const verdict of ['confirmed', 'rejected', 'escalated', 'reopened']) assert.ok(parse({ ...minimal, verdict }).ok, verdict);
    assert.ok(parse({ ...minimal, verdict: 'rejected', correctLabel: null, image: { sha256: SHA, url: null }, previous: null }).ok);
  });

  test('an empty or missing value is refused as such', () => {
    assert.deepEqual(parseReviewDecision(null), { ok: false, reason: 'empty message value' });
    assert.deepEqual(parseReviewDecision(Buffer.alloc(0)), { ok: false, reason: 'empty message value' });
  });

  test('a value that is not JSON is refused with the parser error', () => {
    assert.match(reasonOf('{"decisionId": '), /^not JSON: /);
  });

  test('each missing required field is named', () => {
    for (const field of ['decisionId', 'label', 'verdict', 'analyst', 'decidedAt']) {
      const { [field]: _gone, ...rest } = minimal as Record<string, string>;
      assert.equal(reasonOf(rest), `schema: / must have required property '${field}'`);
    }
  });

  test('an unknown verdict is refused', () => {
    assert.equal(reasonOf({ ...minimal, verdict: 'maybe' }), 'schema: /verdict must be equal to one of the allowed values');
  });

  test('an unknown top-level field is refused and named', () => {
    assert.equal(reasonOf({ ...minimal, confidence: 0.9 }), 'schema: / must NOT have additional properties (confidence)');
  });

  test('another schema tag is refused', () => {
    assert.equal(reasonOf({ ...minimal, schema: 'images.review-decisions/v2' }), 'schema: /schema must be equal to constant');
  });

  test('decidedAt must be an ISO 8601 date-time with a zone, and a real date', () => {
    assert.match(reasonOf({ ...minimal, decidedAt: '2025-03-01 12:00' }), /^schema: \/decidedAt must match pattern/);
    assert.match(reasonOf({ ...minimal, decidedAt: '2025-03-01T12:00:00' }), /^schema: \/decidedAt must match pattern/);
    assert.equal(reasonOf({ ...minimal, decidedAt: '2025-13-45T12:00:00Z' }), 'decidedAt: not a calendar date');
  });

  test('empty strings are refused for the identifying fields', () => {
    assert.equal(reasonOf({ ...minimal, analyst: '' }), 'schema: /analyst must NOT have fewer than 1 characters');
    assert.equal(reasonOf({ ...minimal, decisionId: '' }), 'schema: /decisionId must NOT have fewer than 1 characters');
  });

  test('image.sha256 must be 64 hex digits, and image must say something', () => {
    assert.equal(reasonOf({ ...minimal, image: { sha256: 'abc' } }), 'schema: /image/sha256 must match pattern "^[0-9a-fA-F]{64}$"');
    assert.equal(reasonOf({ ...minimal, image: {} }), 'schema: /image must NOT have fewer than 1 properties');
    assert.equal(reasonOf({ ...minimal, image: { sha256: SHA, bytes: 1 } }), 'schema: /image must NOT have additional properties (bytes)');
  });

  test('a note longer than 2000 characters is refused', () => {
    assert.ok(parse({ ...minimal, note: 'x'.repeat(2000) }).ok);
    assert.equal(reasonOf({ ...minimal, note: 'x'.repeat(2001) }), 'schema: /note must NOT have more than 2000 characters');
  });

  test('model needs name and version; previous needs a known verdict', () => {
    assert.equal(reasonOf({ ...minimal, model: { name: 'm' } }), "schema: /model must have required property 'version'");
    assert.match(reasonOf({ ...minimal, previous: { verdict: 'maybe', label: 'ivory' } }), /^schema: \/previous\/verdict must be equal to one of the allowed values/);
  });

  test('correctLabel is only allowed on a rejection, and must differ from the rejected label', () => {
    assert.equal(reasonOf({ ...minimal, correctLabel: 'big_cat' }), 'correctLabel: only allowed with verdict "rejected"');
    assert.equal(reasonOf({ ...minimal, verdict: 'rejected', correctLabel: 'ivory' }), 'correctLabel: equals label (a rejection must name a different label)');
  });

  test('reviewDecisionOf builds a valid decision from a flagged one', () => {
    const flagged = {
      schema: 'images.flagged/v1', decisionId: 'b57d3ee5', inputId: 'in-1', flagged: true,
      listing: { url: 'https://market.example/item/1', platform: 'example-market' },
      image: { url: 'https://cdn.market.example/1.jpg', sha256: SHA, format: 'jpeg', width: 10, height: 10, bytes: 100 },
      reasons: [{ classifier: 'wildlife-resnet50vd', label: 'big_cat', score: 0.4, threshold: 0.2 }, { classifier: 'wildlife-resnet50vd', label: 'ivory', score: 0.8, threshold: 0.2 }],
      classifiers: [{ name: 'wildlife-resnet50vd', version: '1.0.0', top: [] }],
    } as unknown as DecisionRecord;
    const d = reviewDecisionOf(flagged, { verdict: 'rejected', correctLabel: 'ceramic_lookalike', analyst: 'alice', reviewId: 'r-9', decidedAt: new Date('2025-03-01T12:00:00Z') });
    assert.deepEqual(d, {
      schema: REVIEW_DECISION_SCHEMA, reviewId: 'r-9', decisionId: 'b57d3ee5', label: 'ivory', verdict: 'rejected', correctLabel: 'ceramic_lookalike',
      analyst: 'alice', decidedAt: '2025-03-01T12:00:00.000Z',
      image: { sha256: SHA, url: 'https://cdn.market.example/1.jpg' },
      listing: { platform: 'example-market', url: 'https://market.example/item/1' },
      model: { name: 'wildlife-resnet50vd', version: '1.0.0' },
    });
    assert.ok(parse(d).ok);
    assert.throws(() => reviewDecisionOf(flagged, { verdict: 'confirmed', correctLabel: 'x', analyst: 'a' }), /correctLabel: only allowed/);
  });
});
