import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.js';
import { isScreeningError } from '../../src/errors.js';
import { openSessionCount } from '../../src/model/engine.js';
import { createScreeningService, type ScreeningService } from '../../src/screening/service.js';
import { jpegOf, metPhotos } from '../helpers/images.js';
import { thresholdsAtZero } from '../helpers/models.js';
import { TEST_MODEL_DIRS } from '../helpers/server.js';

const configWith = (directories: string[], cacheEntries = 1000) => loadConfig({ LOG_LEVEL: 'silent' }, {
  models: { directories, intraOpThreads: 2 },
  cache: { maxEntries: cacheEntries, ttlSeconds: 60 },
});

describe('hot reload', () => {
  let tmp: string;
  let modelDir: string;
  let service: ScreeningService;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-reload-'));
    modelDir = path.join(tmp, 'model');
    await cp(TEST_MODEL_DIRS[0]!, modelDir, { recursive: true });
    service = await createScreeningService(configWith([modelDir]));
  });
  after(async () => {
    await service.close();
    await rm(tmp, { recursive: true, force: true });
    assert.equal(openSessionCount(), 0, 'every session released after close');
  });

  test('a reload during traffic drops nothing: in-flight requests finish on the old generation', async () => {
    const photos = await Promise.all(Array.from({ length: 24 }, (_, i) => jpegOf('striped_skin', 96, 96, 100 + i)));
    const inFlight = photos.map((bytes) => service.screen({ bytes, source: 'http' }));
    const reloaded = service.reload();
    const more = photos.map((bytes, i) => service.screen({ bytes: Buffer.concat([bytes, Buffer.from([i])]), source: 'kafka', lane: 'bulk' }));
    const results = await Promise.all([...inFlight, ...more]);
    await reloaded;
    assert.equal(results.length, 48);
    assert.ok(results.every((r) => typeof r.flagged === 'boolean'));
    assert.equal(service.models()[0]!.generation, 2);
    // The old generation retires once its last request is done.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(openSessionCount(), 1);
  });

  test('a reload that fails keeps the current models serving and says why', async () => {
    const manifestPath = path.join(modelDir, 'model.json');
    const good = await readFile(manifestPath, 'utf8');
    await writeFile(manifestPath, good.replace('"schema_version": 1', '"schema_version": 99'));
    try {
      await assert.rejects(service.reload(), (err: unknown) => isScreeningError(err, 'MODEL_MANIFEST_INVALID'));
      const result = await service.screen({ bytes: await jpegOf('plain_ceramic', 80, 80, 7), source: 'http' });
      assert.equal(result.classifiers.length, 1);
      assert.equal(service.models()[0]!.generation, 2);
    } finally {
      await writeFile(manifestPath, good);
    }
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
