/**
 * What the TypeScript side hands Python: Python runs in its own directory (src/training/python), so
 * every file the config names must reach it as an absolute path.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { REPO_ROOT } from '../../src/config.js';
import { loadTrainConfig, type TrainConfig } from '../../src/training/config.js';
import { pythonConfigOf } from '../../src/training/pipeline.js';

describe('the config Python reads', () => {
  test('a soft-label file and a weights file named relative to where the command runs become absolute', async () => {
    const base = await loadTrainConfig(path.join(REPO_ROOT, 'configs', 'train', 'tiny-resnet18vd.yaml'));
    const config: TrainConfig = {
      ...base,
      Arch: { ...base.Arch, pretrained: 'package.json' },
      DataLoader: { ...base.DataLoader, Train: { ...base.DataLoader.Train, dataset: { name: 'SoftLabelSet', file: 'runs/some-run/finetune.json' } } },
    };
    const cwd = process.cwd();
    process.chdir(REPO_ROOT);
    try {
      const forPython = await pythonConfigOf(config);
      assert.equal(forPython.DataLoader.Train.dataset.file, path.join(REPO_ROOT, 'runs', 'some-run', 'finetune.json'));
      assert.equal(forPython.Arch.pretrained, path.join(REPO_ROOT, 'package.json'));
      assert.equal(config.DataLoader.Train.dataset.file, 'runs/some-run/finetune.json', 'the caller\'s config is left as written');
    } finally {
      process.chdir(cwd);
    }
  });
});
