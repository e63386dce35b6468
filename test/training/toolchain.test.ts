import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { loadClassifier, openSessionCount } from '../../src/model/engine.js';
import { readManifest } from '../../src/model/manifest.js';
import { loadTrainConfig } from '../../src/training/config.js';
import { readDataset } from '../../src/training/dataset.js';
import { predict, score } from '../../src/training/evaluate.js';
import { trainModel, type TrainResult } from '../../src/training/pipeline.js';
import { REPO_ROOT } from '../../src/training/python-env.js';
import { makeSyntheticDataset, SYNTHETIC_CLASSES, type SyntheticDataset } from '../helpers/synthetic.js';

const run = promisify(execFile);

describe('the tiny end-to-end training run (ResNet18_vd, 64 px, 2 epochs)', () => {
  let tmp: string;
  let data: SyntheticDataset;
  let result: TrainResult;
  const modelDir = () => path.join(tmp, 'model');

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-tiny-'));
    data = await makeSyntheticDataset(path.join(tmp, 'data'));
    const configPath = path.join(REPO_ROOT, 'configs/train/tiny-resnet18vd.yaml');
    result = await trainModel({
      config: await loadTrainConfig(configPath),
      configPath,
      out: modelDir(),
      workDir: path.join(tmp, 'work'),
      dataRoot: data.root,
      name: 'tiny-test',
      version: '0.0.1',
      int8Out: path.join(tmp, 'model-int8'),
    });
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('writes an FP32 model directory whose manifest validates and names every class', async () => {
    const manifest = await readManifest(modelDir());
    assert.equal(manifest.architecture, 'ResNet18_vd');
    assert.equal(manifest.precision, 'fp32');
    assert.equal(manifest.input.size, 64);
    assert.equal(manifest.preprocess.resize_short, 73);
    assert.deepEqual(manifest.labels.map((l) => l.name), SYNTHETIC_CLASSES.map((c) => c.name).sort());
    for (const label of manifest.labels) {
      const expected = SYNTHETIC_CLASSES.find((c) => c.name === label.name)!.trade_relevant;
      assert.equal(label.trade_relevant, expected, label.name);
      assert.equal(label.threshold === null, !expected, `${label.name} threshold`);
    }
    assert.equal((manifest.training as { epochs: number }).epochs, 2);
    assert.match(manifest.pretrained.note, /No ImageNet-pretrained weights/);
  });

  test('reports the corrupt and the missing image with their paths instead of failing', () => {
    const skipped = result.summary.skipped.map((s) => s.path);
    assert.ok(skipped.includes(data.corruptPath), `corrupt file not reported: ${skipped.join(', ')}`);
    assert.ok(skipped.includes(data.missingPath), `missing file not reported: ${skipped.join(', ')}`);
    assert.equal(result.summary.train_images, 36);
  });

  test('writes a JSON-lines training log with one record per epoch', async () => {
    const lines = (await readFile(path.join(tmp, 'work', 'train.log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { event: string });
    assert.equal(lines.filter((l) => l.event === 'epoch').length, 2);
    assert.ok(lines.some((l) => l.event === 'done'));
  });

  test('the exported model loads in the service engine and evaluates through the serving path', async () => {
    const classifier = await loadClassifier(modelDir());
    try {
      const dataset = await readDataset({ root: data.root, labels: data.labels, split: 'val' });
      const { predictions, skipped } = await predict(classifier, dataset);
      assert.equal(predictions.length, 12);
      assert.deepEqual(skipped.map((s) => s.path), [data.missingPath]);
      const metrics = score(predictions, classifier.manifest.labels);
      assert.equal(metrics.n, 12);
      assert.equal(metrics.flag.tp + metrics.flag.fn, 8);
      assert.equal(metrics.flag.fp + metrics.flag.tn, 4);
      for (const p of predictions) assert.ok(Math.abs(p.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-4);
    } finally {
      await classifier.dispose();
    }
    assert.equal(openSessionCount(), 0);
  });

  test('the INT8 model directory is smaller and agrees with FP32 on most validation images', async () => {
    const int8Dir = path.join(tmp, 'model-int8');
    const manifest = await readManifest(int8Dir);
    assert.equal(manifest.precision, 'int8');
    const fp32 = await loadClassifier(modelDir());
    const int8 = await loadClassifier(int8Dir);
    try {
      const dataset = await readDataset({ root: data.root, labels: data.labels, split: 'val' });
      const a = await predict(fp32, dataset);
      const b = await predict(int8, dataset);
      const argmax = (p: Float32Array) => p.indexOf(Math.max(...p));
      const agree = a.predictions.filter((p, i) => argmax(p.probabilities) === argmax(b.predictions[i]!.probabilities)).length;
      assert.ok(agree >= 9, `INT8 agrees with FP32 on only ${agree}/12 images`);
      const size = async (dir: string) => (await readFile(path.join(dir, 'model.onnx'))).length;
      assert.ok((await size(int8Dir)) < (await size(modelDir())) / 2);
    } finally {
      await fp32.dispose();
      await int8.dispose();
    }
  });

  test('static INT8 quantization (calibrated QDQ) quantizes activations too, says so, and still agrees with FP32', async () => {
    const { quantizeModelDir } = await import('../../src/training/pipeline.js');
    const dataset = await readDataset({ root: data.root, labels: data.labels, split: 'train' });
    const dir = path.join(tmp, 'model-static');
    const manifest = await quantizeModelDir(modelDir(), dir, dataset.samples.map((s) => s.path), path.join(tmp, 'calib.json'), 16, 'static');
    assert.deepEqual(manifest.quantization, { method: 'static' });
    assert.equal(manifest.preprocess.pixel_scale, result.fp32.preprocess.pixel_scale);
    assert.equal((await readManifest(path.join(tmp, 'model-int8'))).quantization?.method, 'weights');
    // QDQ: activations pass through QuantizeLinear (weight-only INT8 has DequantizeLinear alone).
    const graph = (await readFile(path.join(dir, 'model.onnx'))).toString('latin1');
    assert.ok((graph.match(/(?<!De)QuantizeLinear/g) ?? []).length > 5, 'no activation QuantizeLinear nodes');
    const weightOnly = (await readFile(path.join(tmp, 'model-int8', 'model.onnx'))).toString('latin1');
    assert.equal((weightOnly.match(/(?<!De)QuantizeLinear/g) ?? []).length, 0);
    const fp32 = await loadClassifier(modelDir());
    const int8 = await loadClassifier(dir);
    try {
      const val = await readDataset({ root: data.root, labels: data.labels, split: 'val' });
      const a = await predict(fp32, val);
      const b = await predict(int8, val);
      const argmax = (p: Float32Array) => p.indexOf(Math.max(...p));
      const agree = a.predictions.filter((p, i) => argmax(p.probabilities) === argmax(b.predictions[i]!.probabilities)).length;
      assert.ok(agree >= 9, `static INT8 agrees with FP32 on only ${agree}/12 images`);
      for (const p of b.predictions) assert.ok(Math.abs(p.probabilities.reduce((x, y) => x + y, 0) - 1) < 1e-4);
    } finally {
      await fp32.dispose();
      await int8.dispose();
    }
  });

  test('npm run eval --json prints exactly one JSON object with the documented fields', async () => {
    const { stdout } = await run('npx', ['tsx', 'src/training/cli/eval.ts', '--model', modelDir(), '--data', data.root,
      '--labels', data.labels, '--split', 'val', '--json', '--report', path.join(tmp, 'report.html')], { cwd: REPO_ROOT });
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const out = JSON.parse(lines[0]!) as { n: number; top1: number; flag: Record<string, number>; perClass: Record<string, unknown> };
    assert.equal(out.n, 12);
    assert.ok(out.top1 >= 0 && out.top1 <= 1);
    for (const k of ['precision', 'recall', 'f1']) assert.equal(typeof out.flag[k], 'number');
    assert.ok(Object.keys(out.perClass).length >= 1);
    assert.match(await readFile(path.join(tmp, 'report.html'), 'utf8'), /Confusion matrix/);
  });

  test('eval --calibrate writes per-label thresholds, and --record the metrics, into model.json', async () => {
    await run('npx', ['tsx', 'src/training/cli/eval.ts', '--model', modelDir(), '--data', data.root,
      '--labels', data.labels, '--split', 'train', '--calibrate', '0.9', '--report', path.join(tmp, 'r2.html')], { cwd: REPO_ROOT });
    await run('npx', ['tsx', 'src/training/cli/eval.ts', '--model', modelDir(), '--data', data.root,
      '--labels', data.labels, '--split', 'val', '--record', '--report', path.join(tmp, 'r3.html')], { cwd: REPO_ROOT });
    const manifest = await readManifest(modelDir());
    const calibration = manifest.metrics.calibration as { target_precision: number; data: string };
    assert.equal(calibration.target_precision, 0.9);
    assert.match(calibration.data, /split train$/);
    assert.equal((manifest.metrics.eval as { n: number; data: string }).n, 12);
    assert.match((manifest.metrics.eval as { data: string }).data, /split val$/);
    for (const label of manifest.labels.filter((l) => l.trade_relevant)) {
      assert.ok(label.threshold !== null && label.threshold >= 0 && label.threshold <= 1);
    }
    // Thresholds changed, the ONNX file did not: the checksum still holds and the model still loads.
    const classifier = await loadClassifier(modelDir());
    await classifier.dispose();
  });
});
