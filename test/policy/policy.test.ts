import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LabelSpec } from '../../src/model/manifest.js';
import { decide, thresholdFor } from '../../src/policy/index.js';

const labels: LabelSpec[] = [
  { name: 'ivory', trade_relevant: true, threshold: 0.6 },
  { name: 'ceramic_lookalike', trade_relevant: false, threshold: null },
  { name: 'big_cat', trade_relevant: true, threshold: 0.3 },
];
const scores = (p: number[], classifier = 'm1') => ({ classifier, version: '1.0.0', labels, probabilities: Float32Array.from(p) });

describe('the flag policy', () => {
  test('flags when a trade-relevant label reaches its own threshold, with that label as the reason', () => {
    const d = decide([scores([0.1, 0.5, 0.4])]);
    assert.equal(d.flagged, true);
    assert.deepEqual(d.reasons.map((r) => [r.label, r.threshold]), [['big_cat', 0.3]]);
    assert.ok(Math.abs(d.reasons[0]!.score - 0.4) < 1e-6);
  });

  test('a score exactly at the threshold flags; just below does not', () => {
    assert.equal(decide([scores([0.6, 0.4, 0])]).flagged, true);
    assert.equal(decide([scores([0.59, 0.41, 0.0])]).flagged, false);
  });

  test('benign labels never flag, however confident', () => {
    const d = decide([scores([0.0, 1.0, 0.0])]);
    assert.deepEqual(d, { flagged: false, reasons: [] });
  });

  test('config overrides replace a label threshold for one classifier only', () => {
    const overrides = { m1: { big_cat: 0.9 } };
    assert.equal(decide([scores([0.1, 0.5, 0.4])], overrides).flagged, false);
    assert.equal(decide([scores([0.1, 0.5, 0.4], 'm2')], overrides).flagged, true);
    assert.equal(thresholdFor('m1', labels[1]!, { m1: { ceramic_lookalike: 0.1 } }), null, 'an override cannot make a benign label flag');
  });

  test('reasons from several classifiers are combined, strongest first', () => {
    const d = decide([scores([0.7, 0, 0.3]), scores([0.1, 0, 0.9], 'm2')]);
    assert.deepEqual(d.reasons.map((r) => `${r.classifier}:${r.label}`), ['m2:big_cat', 'm1:ivory', 'm1:big_cat']);
  });
});
