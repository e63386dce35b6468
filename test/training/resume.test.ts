import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { isAppError } from '../../src/errors.js';
import { loadTrainConfig } from '../../src/training/config.js';
import { REPO_ROOT, runWildtrain } from '../../src/training/python-env.js';
import { makeSyntheticDataset } from '../helpers/synthetic.js';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-resume-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function events(file: string): Promise<Array<{ event: string; epoch?: number }>> {
  if (!existsSync(file)) return [];
  return (await readFile(file, 'utf8')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

test('Ctrl-C saves a checkpoint and --resume finishes the run from it', async () => {
  const data = await makeSyntheticDataset(path.join(tmp, 'data'), 10, 2);
  const config = await loadTrainConfig(path.join(REPO_ROOT, 'configs/train/tiny-resnet18vd.yaml'));
  config.Global.epochs = 8;
  const configJson = path.join(tmp, 'config.json');
  await writeFile(configJson, JSON.stringify(config));
  const work = path.join(tmp, 'work');
  const log = path.join(work, 'train.log.jsonl');
  const args = ['train', '--config', configJson, '--out', work, '--data', data.root];

  const first = await runWildtrain(args);
  // Interrupt once the first epoch is on record, as a user pressing Ctrl-C would.
  while (!(await events(log)).some((e) => e.event === 'epoch')) await new Promise((r) => setTimeout(r, 100));
  first.child.kill('SIGINT');
  await assert.rejects(first.done, (err: unknown) => isAppError(err, 'TRAIN_INTERRUPTED'));
  const checkpoint = JSON.parse(await readFile(path.join(work, 'checkpoints', 'latest.json'), 'utf8')) as { epoch: number };
  assert.ok(checkpoint.epoch >= 1 && checkpoint.epoch < 8, `checkpoint at epoch ${checkpoint.epoch}`);
  assert.ok((await events(log)).some((e) => e.event === 'interrupted'));
  assert.ok(!existsSync(path.join(work, 'final.pdparams')));

  await (await runWildtrain([...args, '--resume'])).done;
  const all = await events(log);
  const resumed = all.find((e) => e.event === 'resume');
  assert.equal(resumed?.epoch, checkpoint.epoch);
  const summary = JSON.parse(await readFile(path.join(work, 'training.json'), 'utf8')) as { history: Array<{ epoch: number }> };
  assert.deepEqual(summary.history.map((h) => h.epoch), [1, 2, 3, 4, 5, 6, 7, 8]);
});
