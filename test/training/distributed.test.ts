import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadClassifier } from '../../src/model/engine.js';
import { loadTrainConfig } from '../../src/training/config.js';
import { trainModel } from '../../src/training/pipeline.js';
import { REPO_ROOT } from '../../src/training/python-env.js';
import { makeSyntheticDataset } from '../helpers/synthetic.js';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-dist-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('data-parallel training under paddle.distributed.launch (2 CPU processes) writes one model, from rank 0', async () => {
  const data = await makeSyntheticDataset(path.join(tmp, 'data'), 12, 2);
  const configPath = path.join(REPO_ROOT, 'configs/train/tiny-resnet18vd.yaml');
  const work = path.join(tmp, 'work');
  const result = await trainModel({
    config: await loadTrainConfig(configPath), configPath, out: path.join(tmp, 'model'), workDir: work,
    dataRoot: data.root, name: 'tiny-dist', version: '0.0.1', processes: 2, threads: 1,
  });
  assert.equal(result.summary.processes, 2);
  assert.deepEqual(result.summary.history.map((h) => h.epoch), [1, 2]);
  assert.equal((result.fp32.training as { processes: number }).processes, 2);
  // Both workers ran, and only rank 0 wrote the log.
  assert.ok(existsSync(path.join(work, 'workers', 'workerlog.0')) && existsSync(path.join(work, 'workers', 'workerlog.1')));
  const epochs = (await readFile(path.join(work, 'train.log.jsonl'), 'utf8')).split('\n').filter((l) => l.includes('"event": "epoch"'));
  assert.equal(epochs.length, 2);
  const classifier = await loadClassifier(path.join(tmp, 'model'));
  assert.equal((await classifier.classify(new Float32Array(classifier.inputLength), 1))[0]!.probabilities.length, 3);
  await classifier.dispose();
});
