import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.js';
import { isAppError } from '../../src/errors.js';
import { openSessionCount } from '../../src/model/engine.js';
import { readManifest, writeManifest } from '../../src/model/manifest.js';
import { createScreeningService, type ScreeningService, type ScreenResult } from '../../src/screening/service.js';
import { jpegOf, metPhotos } from '../helpers/images.js';
import { copyModel, thresholdsAtZero } from '../helpers/models.js';
import { TEST_MODEL_DIRS } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

const configWith = (directories: string[], cacheEntries = 1000) => loadConfig({ LOG_LEVEL: 'silent' }, {
  models: { directories, intraOpThreads: 2 },
  cache: { maxEntries: cacheEntries, ttlSeconds: 60 },
});

describe('hot reload', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-reload-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
    assert.equal(openSessionCount(), 0, 'every session released after close');
  });

  /** A service of its own, on a copy of the test model at version 1.0.0-old whose files the test may change. */
  async function reloadable(t: TestContext, label: string) {
    const modelDir = await copyModel(TEST_MODEL_DIRS[0]!, path.join(tmp, label), { version: '1.0.0-old' });
    const service = await createScreeningService(configWith([modelDir], 0));
    t.after(() => service.close());
    return { modelDir, service };
  }

  const versionsOf = (results: ScreenResult[]) => [...new Set(results.map((r) => r.classifiers[0]!.version))];

  test('a reload during traffic drops nothing: in-flight requests finish on the old generation, later ones run on the new', async (t) => {
    const { modelDir, service } = await reloadable(t, 'in-flight');
    const sessions = openSessionCount();
    const manifest = await readManifest(modelDir);
    await writeManifest(modelDir, { ...manifest, version: '1.0.0-new' });

    // Distinct bytes every time (a byte after the JPEG's end), each screened afresh: the cache is off.
    const photos = await Promise.all(Array.from({ length: 8 }, (_, i) => jpegOf('striped_skin', 480, 360, 100 + i)));
    let sent = 0;
    const next = () => {
      const n = sent++;
      return Buffer.concat([photos[n % photos.length]!, Buffer.from([n & 255, n >> 8])]);
    };
    let pending = 0;
    let pendingAtSwap: number | undefined;
    // Failures are kept as answers, to be listed once every request is done.
    const screen = (): Promise<ScreenResult | Error> => {
      pending++;
      return service.screen({ bytes: next(), source: 'http' }).catch((err: Error) => err).finally(() => pending--);
    };
    const results = (answers: Array<ScreenResult | Error>) => {
      assert.deepEqual(answers.filter((a) => a instanceof Error).map((e) => e.message), [], 'no request failed');
      return answers as ScreenResult[];
    };
    // A request takes its lease before anything it awaits. These all begin on generation 1: a burst
    // that is queued or running at the swap, and a second one sent once the new model has loaded,
    // in the same tick as the swap, so it is still being decoded when the swap happens.
    const old = Array.from({ length: 16 }, screen);
    service.on('modelLoaded', () => old.push(...Array.from({ length: 8 }, screen)));
    service.on('models', (e) => { if (e.id === 2) pendingAtSwap = pending; });
    const reloaded = service.reload();
    await reloaded;
    assert.equal(old.length, 24);
    const answered = results(await Promise.all(old));
    assert.ok(pendingAtSwap !== undefined && pendingAtSwap >= 8, `requests were still running when generation 2 took over (${pendingAtSwap})`);
    assert.deepEqual(versionsOf(answered), ['1.0.0-old'], 'every request that began before the swap was answered by the old models');

    const later = results(await Promise.all(Array.from({ length: 4 }, screen)));
    assert.deepEqual(versionsOf(later), ['1.0.0-new'], 'requests after the swap run on the new models');
    assert.deepEqual(service.models().map((m) => [m.version, m.generation]), [['1.0.0-new', 2]]);
    // The old generation retires once its last request is done.
    await until('the old generation\'s session released', () => openSessionCount() === sessions, { timeoutMs: 5000, intervalMs: 10 });
  });

  test('a reload that fails keeps the current models serving and says why', async (t) => {
    const { modelDir, service } = await reloadable(t, 'failing');
    const manifestPath = path.join(modelDir, 'model.json');
    const good = await readFile(manifestPath, 'utf8');
    const broken = good.replace(/"schema_version": \d+/, '"schema_version": 99');
    assert.notEqual(broken, good);
    await writeFile(manifestPath, broken);
    await assert.rejects(service.reload(), (err: unknown) => isAppError(err, 'MODEL_MANIFEST_INVALID'));
    const result = await service.screen({ bytes: await jpegOf('plain_ceramic', 80, 80, 7), source: 'http' });
    assert.deepEqual(result.classifiers.map((c) => c.version), ['1.0.0-old']);
    assert.deepEqual(service.models().map((m) => [m.version, m.generation]), [['1.0.0-old', 1]]);
  });
});

describe('resource use', () => {
  let service: ScreeningService;
  before(async () => {
    service = await createScreeningService(configWith(TEST_MODEL_DIRS, 0));
  });
  after(async () => {
    await service.close();
  });

  test('screening 300 distinct photos leaves memory, sessions and sharp work flat', async () => {
    const sessions = openSessionCount();
    const screenRange = async (from: number, to: number) => {
      for (let i = from; i < to; i += 10) {
        await Promise.all(Array.from({ length: Math.min(10, to - i) }, async (_, j) => service.screen({ bytes: await jpegOf(j % 2 ? 'spotted_skin' : 'plain_ceramic', 120, 100, i + j), source: 'http' })));
      }
    };
    await screenRange(0, 60);
    global.gc?.();
    const baseline = process.memoryUsage().heapUsed;
    await screenRange(60, 300);
    global.gc?.();
    const grown = process.memoryUsage().heapUsed - baseline;
    assert.ok(grown < 40 * 1024 * 1024, `heap grew by ${(grown / 1048576).toFixed(1)} MiB over 240 photos`);
    assert.equal(openSessionCount(), sessions);
    const counters = sharp.counters();
    assert.equal(counters.queue + counters.process, 0);
    assert.deepEqual(service.queueDepth(), { interactive: 0, bulk: 0 });
  });
});

describe('threshold overrides (models.thresholds)', () => {
  test('an override in the config decides the service\'s answer: a photo the model\'s own thresholds pass is flagged at 0', async () => {
    const photos = await metPhotos();
    const { thresholds, ownFlag } = await thresholdsAtZero(TEST_MODEL_DIRS);
    const service = await createScreeningService(loadConfig({ LOG_LEVEL: 'silent' }, {
      models: { directories: TEST_MODEL_DIRS, intraOpThreads: 2, thresholds },
      cache: { maxEntries: 0 },
    }));
    try {
      const results = [];
      for (const bytes of photos) results.push(await service.screen({ bytes, source: 'http' }));
      const every = Object.entries(thresholds).flatMap(([model, labels]) => Object.keys(labels).map((label) => `${model}/${label}@0`)).sort();
      for (const r of results) {
        assert.equal(r.flagged, true);
        assert.deepEqual(r.reasons.map((x) => `${x.classifier}/${x.label}@${x.threshold}`).sort(), every, 'every trade-relevant label is a reason, at the overridden threshold');
      }
      assert.ok(results.some((r) => !ownFlag(r.reasons)), 'some Met photo is flagged only because of the override');
    } finally {
      await service.close();
    }
  });
});
