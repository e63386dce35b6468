import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readManifest, writeManifest } from '../../src/model/manifest.js';
import type { RunningServer } from '../../src/screening/server.js';
import { nextMinor, promoteModel } from '../../src/training/promote.js';
import { copyModel } from '../helpers/models.js';
import { startTestServer, TEST_MODEL_DIRS } from '../helpers/server.js';

const SOURCE = TEST_MODEL_DIRS[0]!;

async function candidateFrom(dir: string, comparison: Record<string, unknown> | null, docString = 'ssld candidate'): Promise<string> {
  await copyModel(SOURCE, dir, { docString, version: '0.1.0' });
  const manifest = await readManifest(dir);
  const current = await readManifest(SOURCE);
  const metrics: Record<string, unknown> = { ...manifest.metrics };
  if (comparison) metrics.comparison = { baseline: `${current.name}@${current.version}`, ...comparison };
  else delete metrics.comparison;
  await writeManifest(dir, { ...manifest, name: 'wildlife-student', metrics });
  return dir;
}

describe('promoting a candidate into the served model directory', () => {
  let tmp: string;
  let target: string;
  let server: RunningServer;
  const history = () => path.join(tmp, 'history');

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-promote-'));
    target = await copyModel(SOURCE, path.join(tmp, 'models', 'wildlife-resnet50vd'));
    server = await startTestServer({ models: { directories: [target] } as never });
  });
  after(async () => {
    await server?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test('refuses a candidate without a comparison against the current version, and one that lost', async () => {
    const none = await candidateFrom(path.join(tmp, 'none'), null);
    await assert.rejects(promoteModel({ candidate: none, target, historyDir: history() }), (err: Error & { code?: string }) => err.code === 'PROMOTION_REFUSED' && /no comparison/.test(err.message));
    const worse = await candidateFrom(path.join(tmp, 'worse'), { verdict: 'worse' });
    await assert.rejects(promoteModel({ candidate: worse, target, historyDir: history() }), (err: Error & { code?: string }) => err.code === 'PROMOTION_REFUSED' && /"worse"/.test(err.message));
    const stale = await candidateFrom(path.join(tmp, 'stale'), { verdict: 'better', baseline: 'wildlife-resnet50vd@0.9.0' });
    await assert.rejects(promoteModel({ candidate: stale, target, historyDir: history() }), { code: 'PROMOTION_REFUSED' });
    assert.equal((await readManifest(target)).version, '1.0.0');
  });

  test('refuses a candidate whose labels differ, even when it won', async () => {
    const dir = await candidateFrom(path.join(tmp, 'labels'), { verdict: 'better' });
    const manifest = await readManifest(dir);
    manifest.labels[0] = { ...manifest.labels[0]!, name: 'pangolin' };
    await writeManifest(dir, manifest);
    await assert.rejects(promoteModel({ candidate: dir, target, historyDir: history() }), (err: Error & { code?: string }) => err.code === 'PROMOTION_REFUSED' && /labels/.test(err.message));
  });

  test('a candidate that does not load leaves the current model in place', async () => {
    const dir = await candidateFrom(path.join(tmp, 'broken'), { verdict: 'better' });
    await writeFile(path.join(dir, 'model.onnx'), 'not a model');
    await assert.rejects(promoteModel({ candidate: dir, target, historyDir: history(), force: true }), { code: 'PROMOTION_FAILED' });
    assert.equal((await readManifest(target)).version, '1.0.0');
    assert.deepEqual((await readdir(path.dirname(target))).filter((n) => n.startsWith('.')), [], 'no staging directory left behind');
  });

  test('a winning candidate becomes the next version and the running service serves it after a hot reload', async () => {
    const dir = await candidateFrom(path.join(tmp, 'winner'), { verdict: 'better' });
    const candidate = await readManifest(dir);
    const before = await (await fetch(`${server.url}/v1/models`)).json() as { models: Array<{ version: string }> };
    assert.equal(before.models[0]!.version, '1.0.0');
    const result = await promoteModel({ candidate: dir, target, historyDir: history(), reloadUrl: server.url });
    assert.equal(result.manifest.name, 'wildlife-resnet50vd', 'the served name stays');
    assert.equal(result.manifest.version, '1.1.0');
    assert.equal(result.manifest.sha256, candidate.sha256);
    assert.deepEqual(result.reloaded, [{ name: 'wildlife-resnet50vd', version: '1.1.0' }]);
    const after = await (await fetch(`${server.url}/v1/models`)).json() as { models: Array<{ version: string; sha256: string }> };
    assert.deepEqual([after.models[0]!.version, after.models[0]!.sha256], ['1.1.0', candidate.sha256]);
    const promoted = (await readManifest(target)).training as unknown as { promotion: { from: { name: string }; replaced: { version: string } } };
    assert.equal(promoted.promotion.from.name, 'wildlife-student');
    assert.equal(promoted.promotion.replaced.version, '1.0.0');
    assert.ok(result.previous && existsSync(path.join(result.previous.history, 'model.onnx')), 'the replaced version is kept for rollback');
    assert.equal((await readManifest(result.previous!.history)).version, '1.0.0');
  });

  test('a rollback is a forced promotion of the kept version', async () => {
    const kept = path.join(history(), 'wildlife-resnet50vd', (await readdir(path.join(history(), 'wildlife-resnet50vd')))[0]!);
    const result = await promoteModel({ candidate: kept, target, historyDir: history(), force: true, version: '1.2.0', reloadUrl: server.url });
    assert.ok(result.warnings.length > 0);
    const now = await (await fetch(`${server.url}/v1/models`)).json() as { models: Array<{ version: string; sha256: string }> };
    assert.deepEqual([now.models[0]!.version, now.models[0]!.sha256], ['1.2.0', (await readManifest(SOURCE)).sha256]);
  });

  test('versions bump the minor part', () => {
    assert.equal(nextMinor('1.0.0'), '1.1.0');
    assert.equal(nextMinor('2.9.3'), '2.10.0');
  });
});
