/**
 * The cascade through the real service: EfficientNet-Lite0 as the first stage and ResNet50_vd as the
 * last, both real ONNX sessions. Bands of "every score" and "no score" make who decides certain.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig, REPO_ROOT } from '../../src/config.js';
import { isAppError } from '../../src/errors.js';
import { createMetrics } from '../../src/screening/metrics.js';
import { openSessionCount } from '../../src/model/engine.js';
import { readManifest } from '../../src/model/manifest.js';
import { createScreeningService, type ScreeningService } from '../../src/screening/service.js';
import { metPhotos } from '../helpers/images.js';
import { thresholdsAtZero } from '../helpers/models.js';

const SMALL = path.join(REPO_ROOT, 'models', 'wildlife-efficientnet-lite0');
const BIG = path.join(REPO_ROOT, 'models', 'wildlife-resnet50vd');
const EVERY = { from: 0, below: 1 };
const NONE = { from: 0, below: 0 };

async function names() {
  return { small: (await readManifest(SMALL)).name, big: (await readManifest(BIG)).name };
}

async function cascadeService(band: { from: number; below: number }, env: NodeJS.ProcessEnv = {}, dirs = [SMALL, BIG], thresholds = {}): Promise<ScreeningService> {
  const { small, big } = await names();
  const config = loadConfig({ LOG_LEVEL: 'silent', ...env }, {
    models: { directories: dirs, intraOpThreads: 2, thresholds },
    cascade: { stages: [{ model: small, escalate: band }, { model: big }] },
  });
  return createScreeningService(config);
}

describe('a two-stage cascade in the service', () => {
  let photos: Buffer[];
  let photo: Buffer;
  before(async () => {
    photos = await metPhotos();
    photo = photos[0]!;
  });
  after(() => assert.equal(openSessionCount(), 0, 'every session released'));

  test('a photo inside the band runs both stages and the last decides; the answer says so', async () => {
    const { small, big } = await names();
    const service = await cascadeService(EVERY);
    const metrics = createMetrics(service);
    try {
      const result = await service.screen({ bytes: photo, source: 'http' });
      assert.deepEqual(result.cascade, { mode: 'on', ran: [small, big], decidedBy: big });
      assert.deepEqual(result.classifiers.map((c) => c.name), [small, big]);
      assert.ok(result.reasons.every((r) => r.classifier === big), 'only the deciding stage gives reasons');
      const again = await service.screen({ bytes: photo, source: 'http' });
      assert.equal(again.cached, true);
      assert.deepEqual(again.cascade, result.cascade);
      const text = await metrics.registry.metrics();
      assert.match(text, new RegExp(`wildlife_cascade_stage_runs_total\\{model="${small}",stage="0",outcome="escalated"\\} 1`));
      assert.match(text, new RegExp(`wildlife_cascade_stage_runs_total\\{model="${big}",stage="1",outcome="decided"\\} 1`));
      assert.match(text, new RegExp(`wildlife_cascade_stage_duration_seconds_count\\{model="${big}",stage="1"\\} 1`));
    } finally {
      await service.close();
    }
  });

  test('a photo outside the band is decided by the first stage alone, and the last never runs', async () => {
    const { small } = await names();
    const service = await cascadeService(NONE);
    try {
      const result = await service.screen({ bytes: photo, source: 'http' });
      assert.deepEqual(result.cascade, { mode: 'on', ran: [small], decidedBy: small });
      assert.deepEqual(result.classifiers.map((c) => c.name), [small]);
    } finally {
      await service.close();
    }
  });

  test('threshold overrides in the config apply to the stage that decides: a photo its own thresholds pass is flagged at 0', async () => {
    const { big } = await names();
    const { thresholds, ownFlag } = await thresholdsAtZero([SMALL, BIG]);
    const service = await cascadeService(EVERY, {}, [SMALL, BIG], thresholds);
    try {
      const results = [];
      for (const bytes of photos) results.push(await service.screen({ bytes, source: 'http' }));
      for (const r of results) {
        assert.equal(r.cascade?.decidedBy, big);
        assert.equal(r.flagged, true);
        assert.deepEqual(r.reasons.map((x) => `${x.classifier}/${x.label}@${x.threshold}`).sort(), Object.keys(thresholds[big]!).map((label) => `${big}/${label}@0`).sort());
      }
      assert.ok(results.some((r) => !ownFlag(r.reasons)), 'some Met photo is flagged only because of the override');
    } finally {
      await service.close();
    }
  });

  test('CASCADE=off runs every stage whatever the band, CASCADE=first only the first', async () => {
    const { small, big } = await names();
    const off = await cascadeService(NONE, { CASCADE: 'off' });
    try {
      assert.deepEqual((await off.screen({ bytes: photo, source: 'http' })).cascade, { mode: 'off', ran: [small, big], decidedBy: big });
    } finally {
      await off.close();
    }
    const first = await cascadeService(EVERY, { CASCADE: 'first' });
    try {
      assert.deepEqual((await first.screen({ bytes: photo, source: 'http' })).cascade, { mode: 'first', ran: [small], decidedBy: small });
    } finally {
      await first.close();
    }
  });

  test('shadow mode keeps working: a candidate is compared on every sampled photo, whichever stage decided', async () => {
    for (const band of [EVERY, NONE]) {
      const service = await cascadeService(band);
      try {
        // A candidate named like the second stage: where that stage did not run, it is compared with what decided.
        await service.setShadow(BIG, { sampleRate: 1 });
        await service.screen({ bytes: photo, source: 'http' });
        await service.settle();
        const status = service.shadowStatus();
        assert.equal(status.compared, 1, JSON.stringify(status));
        assert.equal(status.failed, 0);
      } finally {
        await service.close();
      }
    }
  });

  test('a cascade naming a model that is not loaded refuses to start, listing the problem, and leaks no session', async () => {
    await assert.rejects(cascadeService(EVERY, {}, [SMALL]), (err: unknown) => {
      assert.ok(isAppError(err, 'CASCADE_INVALID'));
      assert.match(err.message, /is not among the loaded models/);
      return true;
    });
    assert.equal(openSessionCount(), 0);
  });

  test('a reload whose models no longer match the cascade fails and the current generation keeps serving', async () => {
    const { small, big } = await names();
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-cascade-'));
    const bigCopy = path.join(tmp, 'big');
    await cp(BIG, bigCopy, { recursive: true });
    const service = await cascadeService(EVERY, {}, [SMALL, bigCopy]);
    try {
      const manifestFile = path.join(bigCopy, 'model.json');
      const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as { name: string };
      await writeFile(manifestFile, JSON.stringify({ ...manifest, name: 'renamed' }));
      await assert.rejects(service.reload(), (err: unknown) => isAppError(err, 'CASCADE_INVALID'));
      assert.equal(openSessionCount(), 2, 'the refused generation\'s sessions were released');
      assert.deepEqual((await service.screen({ bytes: photo, source: 'http' })).cascade?.ran, [small, big]);
    } finally {
      await service.close();
      await rm(tmp, { recursive: true, force: true });
    }
  });
});
