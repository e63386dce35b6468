/**
 * Calibration counts flags with the service's rule, and writeBack() is the one way its thresholds
 * reach model.json (npm run eval -- --calibrate and SSLD both use it): what is written flags, under
 * decide(), exactly as calibrate() reported.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readManifest, type ModelManifest } from '../../src/model/manifest.js';
import { calibrate, calibratedLabels, writeBack } from '../../src/training/calibration.js';
import { score, type Prediction } from '../../src/training/evaluate.js';
import { copyModel } from '../helpers/models.js';
import { fixturePredictions } from '../helpers/predictions.js';
import { TEST_MODEL_DIRS } from '../helpers/server.js';

describe('calibration and its write-back into model.json', () => {
  let tmp: string;
  let manifest: ModelManifest;
  let predictions: Prediction[];

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-calibration-'));
    ({ manifest, predictions } = await fixturePredictions(TEST_MODEL_DIRS[0]!, tmp));
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  test('"before" is what the service\'s rule gives at model.json\'s thresholds', () => {
    for (const target of [null, 0.9]) {
      assert.deepEqual(calibrate(predictions, manifest.labels, target).before, score(predictions, manifest.labels, manifest.name).flag);
    }
  });

  test('calibrated thresholds name every trade-relevant label and no benign one', () => {
    const result = calibrate(predictions, manifest.labels, null);
    assert.deepEqual(Object.keys(result.thresholds).sort(), manifest.labels.filter((l) => l.trade_relevant).map((l) => l.name).sort());
    for (const t of Object.values(result.thresholds)) assert.ok(t >= 0 && t <= 1, String(t));
    for (const l of calibratedLabels(manifest.labels, result.thresholds)) assert.equal(l.threshold === null, !l.trade_relevant, l.name);
  });

  test('writeBack writes the thresholds and metrics.calibration, keeps other metrics, and the model then flags as "after" said', async () => {
    const dir = await copyModel(TEST_MODEL_DIRS[0]!, path.join(tmp, 'model'));
    const result = calibrate(predictions, manifest.labels, 0.9);
    const atModelJson = score(predictions, manifest.labels, manifest.name).flag;
    assert.notDeepEqual(result.after, atModelJson, 'calibration must change the flags, or reading them back could not tell the written thresholds from the old ones');
    const returned = await writeBack(dir, { calibration: { result, data: 'fixtures val' }, metrics: { eval: { n: 8 } } });
    const written = await readManifest(dir);
    assert.deepEqual(written, returned);
    assert.deepEqual(written.labels, calibratedLabels(manifest.labels, result.thresholds));
    assert.deepEqual(score(predictions, written.labels, written.name).flag, result.after);
    assert.deepEqual(written.metrics.calibration, {
      data: 'fixtures val', target_precision: 0.9, reached: result.reached, common_threshold: result.commonThreshold, before: result.before, after: result.after, note: result.note,
    });
    assert.deepEqual(written.metrics.eval, { n: 8 });
    for (const key of Object.keys(manifest.metrics).filter((k) => k !== 'calibration' && k !== 'eval')) assert.deepEqual(written.metrics[key], manifest.metrics[key], key);
    assert.equal(written.sha256, manifest.sha256);
  });

  test('writeBack with metrics alone leaves the thresholds as they were', async () => {
    const dir = await copyModel(TEST_MODEL_DIRS[0]!, path.join(tmp, 'record-only'));
    const written = await writeBack(dir, { metrics: { eval: { n: 1 } } });
    assert.deepEqual(written.labels, manifest.labels);
    assert.deepEqual(written.metrics.calibration, manifest.metrics.calibration);
  });
});
