import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LabelSpec } from '../../src/model/manifest.js';
import { cascadeProblems, escalates, runCascade, tradeScore, type CascadeSpec } from '../../src/policy/cascade.js';

const labels: LabelSpec[] = [
  { name: 'ivory', trade_relevant: true, threshold: 0.5 },
  { name: 'ceramic_lookalike', trade_relevant: false, threshold: null },
];
const scores = (classifier: string, ivory: number) => ({ classifier, version: '1.0.0', labels, probabilities: Float32Array.from([ivory, 1 - ivory]) });

const spec = (mode: CascadeSpec['mode']): CascadeSpec => ({
  mode,
  stages: [{ model: 'small', escalate: { from: 0.1, below: 0.9 } }, { model: 'big' }],
});

/** Runs the cascade with fixed per-stage ivory scores and records which stages were asked. */
async function run(mode: CascadeSpec['mode'], small: number, big: number) {
  const asked: number[] = [];
  const outcome = await runCascade(spec(mode), async (i) => {
    asked.push(i);
    return i === 0 ? scores('small', small) : scores('big', big);
  });
  return { asked, outcome };
}

describe('the cascade policy', () => {
  test('a confident first stage decides alone, and the second stage never runs', async () => {
    for (const [small, flagged] of [[0.95, true], [0.05, false]] as const) {
      const { asked, outcome } = await run('on', small, 1 - small);
      assert.deepEqual(asked, [0]);
      assert.equal(outcome.decidedBy, 'small');
      assert.equal(outcome.flagged, flagged);
      assert.deepEqual(outcome.ran.map((s) => s.classifier), ['small']);
    }
  });

  test('a score inside the band goes to the second stage, which decides alone', async () => {
    const { asked, outcome } = await run('on', 0.6, 0.2);
    assert.deepEqual(asked, [0, 1]);
    assert.equal(outcome.decidedBy, 'big');
    assert.equal(outcome.flagged, false, 'the first stage would have flagged at 0.6; the second stage overrules it');
    assert.deepEqual(outcome.reasons, []);
  });

  test('the band includes its lower edge and excludes its upper edge', () => {
    const band = { from: 0.1, below: 0.9 };
    assert.equal(escalates(band, 0.1), true);
    assert.equal(escalates(band, 0.0999), false);
    assert.equal(escalates(band, 0.9), false);
    assert.equal(escalates(null, 0.5), false);
  });

  test('mode off runs every stage on every photo and the last decides; mode first runs the first alone', async () => {
    const off = await run('off', 0.99, 0.01);
    assert.deepEqual(off.asked, [0, 1]);
    assert.equal(off.outcome.decidedBy, 'big');
    assert.equal(off.outcome.flagged, false);
    const first = await run('first', 0.6, 0.01);
    assert.deepEqual(first.asked, [0]);
    assert.equal(first.outcome.flagged, true);
  });

  test('the deciding stage\'s thresholds and config overrides apply, with its name on the reasons', async () => {
    const outcome = await runCascade(spec('on'), async (i) => (i === 0 ? scores('small', 0.5) : scores('big', 0.55)), { big: { ivory: 0.6 } });
    assert.equal(outcome.flagged, false);
    const flagged = await runCascade(spec('on'), async (i) => (i === 0 ? scores('small', 0.5) : scores('big', 0.55)));
    assert.deepEqual(flagged.reasons.map((r) => `${r.classifier}:${r.label}`), ['big:ivory']);
  });

  test('the trade score is the highest trade-relevant probability, never a benign one', () => {
    assert.ok(Math.abs(tradeScore(scores('m', 0.2)) - 0.2) < 1e-6);
  });

  test('every configuration problem is listed at once', () => {
    const problems = cascadeProblems([
      { model: 'small' },
      { model: 'small', escalate: { from: 0.9, below: 0.1 } },
      { model: 'ghost', escalate: { from: 0, below: 1 } },
    ], ['small', 'big']);
    for (const expected of [
      /"small" appears more than once/,
      /stages\[0\]\.escalate: every stage but the last needs a band/,
      /stages\[1\]\.escalate: need 0 <= from <= below <= 1/,
      /stages\[2\]\.model: "ghost" is not among the loaded models/,
      /stages\[2\]\.escalate: the last stage .* has no band/,
      /loaded model "big" is not a stage/,
    ]) assert.ok(problems.some((p) => expected.test(p)), `${expected} not in:\n${problems.join('\n')}`);
    assert.deepEqual(cascadeProblems([], ['a', 'b']), [], 'no stages: no cascade, every model runs');
    assert.match(cascadeProblems([{ model: 'a' }], ['a']).join('\n'), /at least two stages/);
    assert.deepEqual(cascadeProblems(spec('on').stages, ['small', 'big']), []);
  });
});
