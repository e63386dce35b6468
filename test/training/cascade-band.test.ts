import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { chooseBand, withBand, type BandItem } from '../../src/training/cascade-band.js';

/** Photos where the first stage errs only between 0.3 and 0.7, and the last stage is always right. */
function items(): BandItem[] {
  const out: BandItem[] = [];
  for (let i = 0; i < 100; i++) {
    const score = i / 100;
    const relevant = i >= 50;
    const unsure = score >= 0.3 && score < 0.7;
    const firstFlags = unsure ? !relevant : relevant;
    out.push({ relevant, score, firstFlags, lastFlags: relevant });
  }
  return out;
}

describe('choosing a cascade band', () => {
  test('with no loss allowed, the band covers exactly the scores where the first stage errs', () => {
    const choice = chooseBand(items(), { maxRecallLoss: 0, maxPrecisionLoss: 0 });
    assert.equal(choice.reached, true);
    assert.equal(choice.escalated, 40);
    assert.ok(choice.band.from > 0.29 && choice.band.from <= 0.3, `from ${choice.band.from}`);
    assert.ok(choice.band.below > 0.69 && choice.band.below <= 0.7, `below ${choice.band.below}`);
    assert.deepEqual([choice.cascade.recall, choice.cascade.precision], [1, 1]);
    assert.equal(choice.off.f1, 1);
    assert.ok(choice.first.f1 < 0.7);
  });

  test('allowing some loss narrows the band and stays within the allowed loss', () => {
    const strict = chooseBand(items(), { maxRecallLoss: 0, maxPrecisionLoss: 0 });
    const loose = chooseBand(items(), { maxRecallLoss: 0.1, maxPrecisionLoss: 0.1 });
    assert.ok(loose.escalated < strict.escalated, `${loose.escalated} vs ${strict.escalated}`);
    assert.ok(loose.cascade.recall >= loose.off.recall - 0.1 - 1e-9);
    assert.ok(loose.cascade.precision >= loose.off.precision - 0.1 - 1e-9);
  });

  test('a first stage as good as the last needs no escalation at all', () => {
    const perfect = items().map((it) => ({ ...it, firstFlags: it.relevant }));
    const choice = chooseBand(perfect, { maxRecallLoss: 0, maxPrecisionLoss: 0 });
    assert.equal(choice.escalated, 0);
    assert.equal(choice.cascade.f1, 1);
  });

  test('equal scores are never split by a band edge', () => {
    // Errors from i = 27 to 62, while scores come in groups of ten equal values (0.25–0.34 → 0.3…):
    // the tightest band would cut inside the 0.3 and 0.6 groups.
    const tied = items().map((it, i) => {
      const unsure = i >= 27 && i < 63;
      return { ...it, score: Math.round(it.score * 10) / 10, firstFlags: unsure ? !it.relevant : it.relevant };
    });
    const choice = chooseBand(tied, { maxRecallLoss: 0, maxPrecisionLoss: 0 });
    assert.deepEqual([choice.cascade.recall, choice.cascade.precision], [1, 1], `the band as served, ${JSON.stringify(choice.band)}, keeps the targets`);
    for (const s of [...new Set(tied.map((t) => t.score))]) {
      const group = tied.filter((t) => t.score === s).map((t) => t.score >= choice.band.from && t.score < choice.band.below);
      assert.ok(group.every((g) => g === group[0]), `score ${s} split by ${JSON.stringify(choice.band)}`);
    }
  });
});

describe('writing a band into a config file', () => {
  const file = [
    'server:',
    '  port: 8080                # PORT, aligned comments stay aligned',
    'cascade:',
    '  mode: on                  # CASCADE',
    '  stages:',
    '    - model: small   # the cheap one',
    '      escalate: { from: 0, below: 1 }  # placeholder',
    '    - model: big',
    '',
  ].join('\n');

  test('replaces only the first stage\'s escalate line, keeping every other line byte for byte', () => {
    const out = withBand(file, 'f.yaml', 'small', '{ from: 0.2, below: 0.5 }', 'calibrated on calib');
    const before = file.split('\n');
    const after = out.split('\n');
    assert.equal(after.length, before.length);
    after.forEach((line, i) => {
      if (i === 6) assert.equal(line, '      escalate: { from: 0.2, below: 0.5 } # calibrated on calib');
      else assert.equal(line, before[i]);
    });
  });

  test('adds the line under the model when the stage has no band yet, at the same indentation', () => {
    const out = withBand(file.replace('      escalate: { from: 0, below: 1 }  # placeholder\n', ''), 'f.yaml', 'small', '{ from: 0.2, below: 0.5 }', 'c');
    assert.match(out, /    - model: small   # the cheap one\n      escalate: \{ from: 0\.2, below: 0\.5 \} # c\n    - model: big/);
  });

  test('refuses a file whose first stage is another model, or whose band spans lines', () => {
    assert.throws(() => withBand(file, 'f.yaml', 'other', '{}', 'c'), /no cascade\.stages\[0\] naming other/);
    const block = file.replace('escalate: { from: 0, below: 1 }  # placeholder', 'escalate:\n        from: 0\n        below: 1');
    assert.throws(() => withBand(block, 'f.yaml', 'small', '{}', 'c'), /on one line/);
  });
});

