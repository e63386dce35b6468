/**
 * The evaluator flags a photo exactly as the service does: decide() over the model's scores with the
 * threshold overrides the service's config gives, here on a real model's scores of the fixture photos.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig, type AppConfig } from '../../src/config.js';
import type { ModelManifest } from '../../src/model/manifest.js';
import { decide, type ThresholdOverrides } from '../../src/policy/index.js';
import type { Dataset } from '../../src/training/dataset.js';
import { flagMetrics, score, tally, type Prediction } from '../../src/training/evaluate.js';
import { evaluateServed } from '../../src/training/served.js';
import { fixturePredictions } from '../helpers/predictions.js';
import { TEST_MODEL_DIRS } from '../helpers/server.js';

const MODEL = TEST_MODEL_DIRS[0]!;

describe('evaluation flags by the service rule, with the config\'s threshold overrides', () => {
  let tmp: string;
  let dataset: Dataset;
  let manifest: ModelManifest;
  let predictions: Prediction[];
  let config: Readonly<AppConfig>;
  const decided = (p: Prediction, overrides: ThresholdOverrides) =>
    decide([{ classifier: manifest.name, version: manifest.version, labels: manifest.labels, probabilities: p.probabilities }], overrides).flagged;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-evaluate-'));
    ({ dataset, manifest, predictions } = await fixturePredictions(MODEL, tmp));
    // One trade-relevant label lowered to the highest score it reaches on a photo the model's own
    // thresholds leave unflagged: that photo is flagged under the config and under no other reading.
    const unflagged = predictions.filter((p) => !decided(p, {}));
    assert.ok(unflagged.length > 0, 'some fixture photo must be unflagged at model.json thresholds');
    let lowered = { label: '', score: -1 };
    for (const p of unflagged) manifest.labels.forEach((l, i) => { if (l.trade_relevant && p.probabilities[i]! > lowered.score) lowered = { label: l.name, score: p.probabilities[i]! }; });
    config = loadConfig({ LOG_LEVEL: 'silent' }, { models: { directories: [MODEL], intraOpThreads: 2, thresholds: { [manifest.name]: { [lowered.label]: lowered.score } } } });
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  const expected = () => {
    const counts = { tp: 0, fp: 0, fn: 0, tn: 0 };
    predictions.forEach((p) => tally(counts, decided(p, config.models.thresholds), p.relevant));
    return flagMetrics(counts);
  };

  test('the override changes what the service flags, so the tests below can tell it applied from ignored', () => {
    assert.equal(predictions.length, 8);
    assert.ok(predictions.some((p) => decided(p, config.models.thresholds) !== decided(p, {})));
  });

  test('score() flags each photo as decide() does with the same overrides', () => {
    assert.deepEqual(score(predictions, manifest.labels, manifest.name, config.models.thresholds).flag, expected());
  });

  test('npm run eval -- --served\'s evaluation flags as decide() does with the config\'s overrides', async () => {
    const report = await evaluateServed({ config, dataset, threads: 2 });
    assert.deepEqual(report.thresholdOverrides, config.models.thresholds);
    assert.deepEqual(report.flag, expected());
  });
});
