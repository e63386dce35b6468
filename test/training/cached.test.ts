/**
 * The frozen-prefix path (Global.cached_views, configs/train/wildlife-lite0.yaml): the frozen stem
 * and first stages must leave training exactly as they came in, weights and BatchNorm statistics
 * alike, while the stages after them learn; and the exported model must be the whole network.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { loadClassifier } from '../../src/model/engine.js';
import { loadTrainConfig, parseTrainConfig } from '../../src/training/config.js';
import { generateWeights, trainModel, type TrainResult } from '../../src/training/pipeline.js';
import { REPO_ROOT, venvPython } from '../../src/training/python-env.js';
import { makeSyntheticDataset, type SyntheticDataset } from '../helpers/synthetic.js';

const run = promisify(execFile);

/** Largest |Δ| per tensor between two .pdparams files, for the named tensors. */
async function maxDiffs(a: string, b: string, names: string[]): Promise<Record<string, number>> {
  const code = `import json,sys,numpy as np,paddle
a=paddle.load(sys.argv[1],return_numpy=True);b=paddle.load(sys.argv[2],return_numpy=True)
print(json.dumps({k: float(np.abs(np.asarray(a[k])-np.asarray(b[k])).max()) for k in json.loads(sys.argv[3])}))`;
  const { stdout } = await run(venvPython(), ['-c', code, a, b, JSON.stringify(names)], { maxBuffer: 1 << 22 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, number>;
}

describe('training EfficientNet-Lite with a frozen, cached prefix (64 px, 2 epochs)', () => {
  let tmp: string;
  let data: SyntheticDataset;
  let result: TrainResult;
  let init: string;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-cached-'));
    data = await makeSyntheticDataset(path.join(tmp, 'data'));
    init = path.join(tmp, 'init.pdparams');
    await generateWeights('EfficientNetLite0', 3, 5, init);
    const configPath = path.join(REPO_ROOT, 'configs/train/tiny-lite0-cached.yaml');
    const config = await loadTrainConfig(configPath);
    result = await trainModel({
      config: { ...config, Arch: { ...config.Arch, pretrained: init } },
      configPath, out: path.join(tmp, 'model'), workDir: path.join(tmp, 'work'), dataRoot: data.root, name: 'tiny-cached', version: '0.0.1',
    });
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  test('frozen layers keep their weights and BatchNorm statistics; later stages and the head learn', async () => {
    // Blocks 0-7 are stages 16-80 (lr groups 1-2); block 8 opens stage 112 (group 3).
    const frozen = ['stem.conv.weight', 'stem.bn._mean', 'stem.bn._variance', 'blocks.0.depthwise.conv.weight', 'blocks.7.project.bn._mean', 'blocks.7.expand.conv.weight'];
    const trained = ['blocks.8.expand.conv.weight', 'blocks.8.expand.bn._mean', 'head.conv.weight', 'fc.weight'];
    const diffs = await maxDiffs(init, path.join(tmp, 'work', 'final.pdparams'), [...frozen, ...trained]);
    for (const name of frozen) assert.equal(diffs[name], 0, `${name} changed by ${diffs[name]}`);
    for (const name of trained) assert.ok(diffs[name]! > 1e-6, `${name} did not change`);
    const summary = JSON.parse(await readFile(path.join(tmp, 'work', 'training.json'), 'utf8')) as { cached_views: number; history: unknown[] };
    assert.equal(summary.cached_views, 2);
    assert.equal(summary.history.length, 2);
  });

  test('the exported model is the whole network and classifies through the engine', async () => {
    assert.equal(result.fp32.architecture, 'EfficientNetLite0');
    assert.equal(result.fp32.preprocess.pixel_scale, 1);
    // model.json says in words what was not fine-tuned.
    assert.match(String((result.fp32.training as Record<string, unknown>).frozen), /the stem, stages 16-24, stages 40-80 \(lr_mult 0.*2 augmented crops/);
    const classifier = await loadClassifier(path.join(tmp, 'model'));
    try {
      const [out] = await classifier.classify(new Float32Array(classifier.inputLength), 1);
      assert.equal(out!.probabilities.length, 3);
      assert.ok(Math.abs(out!.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-4);
    } finally {
      await classifier.dispose();
    }
  });

  test('cached views are refused without a frozen prefix to cache', async () => {
    const config = await loadTrainConfig(path.join(REPO_ROOT, 'configs/train/tiny-lite0-cached.yaml'));
    assert.throws(() => parseTrainConfig({ ...config, Arch: { ...config.Arch, lr_mult_list: [0.1, 0.2, 0.5, 1, 1] } }), /cached_views: needs .* frozen prefix/);
  });
});
