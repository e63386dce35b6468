import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { readFile } from 'node:fs/promises';
import { isAppError } from '../../src/errors.js';
import { loadTrainConfig, parseTrainConfig, trainConfigProblems, withLabelsFile, withRelativeDataPaths } from '../../src/training/config.js';
import { REPO_ROOT } from '../../src/training/python-env.js';

const CONFIG_DIR = path.join(REPO_ROOT, 'configs', 'train');

async function tinyConfig(): Promise<Record<string, any>> {
  return parse(await readFile(path.join(CONFIG_DIR, 'tiny-resnet18vd.yaml'), 'utf8'));
}

describe('training config validation', () => {
  test('every plain config shipped under configs/train validates (ssld-*.yaml are checked as SSLD configs)', async () => {
    const files = (await readdir(CONFIG_DIR)).filter((f) => f.endsWith('.yaml') && !f.startsWith('ssld-'));
    assert.ok(files.length >= 2);
    for (const file of files) await loadTrainConfig(path.join(CONFIG_DIR, file));
  });

  test('unknown and missing keys in different sections are all reported in one error', async () => {
    const cfg = await tinyConfig();
    cfg.Global.epoch = 3; // typo for epochs
    delete cfg.Global.epochs;
    cfg.Arch.depth = 50;
    delete cfg.Optimizer.lr.learning_rate;
    cfg.Extra = {};
    const problems = trainConfigProblems(cfg);
    assert.ok(problems.includes('Global: unknown key "epoch"'), problems.join('\n'));
    assert.ok(problems.includes('Global: missing key "epochs"'), problems.join('\n'));
    assert.ok(problems.includes('Arch: unknown key "depth"'), problems.join('\n'));
    assert.ok(problems.includes('Optimizer.lr: missing key "learning_rate"'), problems.join('\n'));
    assert.ok(problems.includes('(top level): unknown key "Extra"'), problems.join('\n'));
    assert.throws(() => parseTrainConfig(cfg, 'bad.yaml'), (err: unknown) => {
      assert.ok(isAppError(err, 'TRAIN_CONFIG_INVALID'));
      assert.match(err.message, /bad\.yaml has 5 problem\(s\)/);
      return true;
    });
  });

  test('an unknown architecture names the supported ones', async () => {
    const cfg = await tinyConfig();
    cfg.Arch.name = 'ResNet50';
    assert.deepEqual(trainConfigProblems(cfg), ['Arch.name: must be one of ResNet18_vd, ResNet34_vd, ResNet50_vd, ResNet101_vd, ResNet152_vd, ResNet200_vd, EfficientNetLite0, EfficientNetLite1, EfficientNetLite2']);
  });

  test('wrong types and ranges are reported with their path', async () => {
    const cfg = await tinyConfig();
    cfg.Global.image_size = 'big';
    cfg.DataLoader.Train.batch_size = 0;
    cfg.Arch.lr_mult_list = [1, 1];
    const problems = trainConfigProblems(cfg);
    assert.ok(problems.some((p) => p.startsWith('Global.image_size:')), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('DataLoader.Train.batch_size:')), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('Arch.lr_mult_list:')), problems.join('\n'));
  });

  test('a resize smaller than the crop is refused', async () => {
    const cfg = await tinyConfig();
    cfg.Global.resize_short = 32;
    assert.deepEqual(trainConfigProblems(cfg), ['Global.resize_short: must be at least Global.image_size']);
  });

  test('YAML syntax errors and missing files are TRAIN_CONFIG_INVALID, not crashes', async () => {
    await assert.rejects(loadTrainConfig(path.join(CONFIG_DIR, 'does-not-exist.yaml')), (e: unknown) => isAppError(e, 'TRAIN_CONFIG_INVALID'));
  });

  test('a manifest records the labels file relative to the checkout, not as one machine\'s absolute path', async () => {
    const cfg = parseTrainConfig(await tinyConfig(), 'tiny.yaml');
    const run = withLabelsFile(cfg, 'runs/calib/labels.csv');
    assert.equal(run.DataLoader.Train.dataset.labels, path.resolve('runs/calib/labels.csv'), 'training reads an absolute path');
    const recorded = withRelativeDataPaths(run, process.cwd());
    assert.equal(recorded.DataLoader.Train.dataset.labels, path.join('runs', 'calib', 'labels.csv'));
    assert.equal(recorded.DataLoader.Eval?.dataset.labels, path.join('runs', 'calib', 'labels.csv'));
    assert.equal(run.DataLoader.Train.dataset.labels, path.resolve('runs/calib/labels.csv'), 'the run config is not changed');
  });
});
