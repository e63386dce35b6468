import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig, type AppConfig } from '../../src/config.js';
import { isAppError } from '../../src/errors.js';
import { createMetrics } from '../../src/screening/metrics.js';
import { createPoolSampler, POOL_INDEX, readPool, type PoolOutcome } from '../../src/screening/pool.js';
import { createScreeningService, type ScreeningService, type ScreenResult } from '../../src/screening/service.js';
import { jpegOf } from '../helpers/images.js';
import { TEST_MODEL_DIRS } from '../helpers/server.js';

const always = () => 0;

const configWith = (directory: string, pool: Partial<AppConfig['pool']> = {}, cacheEntries = 1000) => loadConfig({ LOG_LEVEL: 'silent' }, {
  models: { directories: TEST_MODEL_DIRS, intraOpThreads: 2 },
  cache: { maxEntries: cacheEntries, ttlSeconds: 60 },
  fetch: { allowlist: ['127.0.0.1'] },
  pool: { enabled: true, directory, sampleRate: 0.05, ...pool },
});

/** A service on a pool directory, with the pool outcomes it reports. */
async function poolService(directory: string, pool: Partial<AppConfig['pool']> = {}, cacheEntries = 1000) {
  const service = await createScreeningService(configWith(directory, pool, cacheEntries), undefined, { random: always });
  const outcomes: PoolOutcome[] = [];
  service.on('poolSample', (e) => outcomes.push(e.outcome));
  return { service, outcomes };
}

const photo = (seed: number) => jpegOf(seed % 2 ? 'spotted_skin' : 'plain_ceramic', 110, 90, seed);

describe('the unlabeled pool', () => {
  let tmp: string;
  let images: Server;
  let imagesUrl: string;
  let remote: Buffer;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-pool-'));
    remote = await photo(900);
    images = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      res.end(remote);
    });
    await new Promise<void>((resolve) => images.listen(0, '127.0.0.1', resolve));
    imagesUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}/listing/7.jpg`;
  });
  after(async () => {
    await new Promise((resolve) => images.close(resolve));
    await rm(tmp, { recursive: true, force: true });
  });

  test('a sampled photo is stored once, in the documented layout and index format, even when screened twice', async () => {
    const dir = path.join(tmp, 'format');
    const { service, outcomes } = await poolService(dir);
    try {
      const bytes = await photo(1);
      const first = await service.screen({ bytes, source: 'http' });
      const second = await service.screen({ bytes, source: 'http' });
      assert.equal(second.cached, true, 'the repeat is a cache hit and is not offered');
      const fetched = await service.screen({ url: imagesUrl, source: 'kafka', meta: { listingId: 'L-7', platform: 'example-market' } });
      await service.settle();
      assert.deepEqual(outcomes, ['stored', 'stored']);

      const lines = (await readFile(path.join(dir, POOL_INDEX), 'utf8')).split('\n');
      assert.equal(lines.pop(), '', 'every line ends with a newline');
      const raw = JSON.parse(lines[0]!) as Record<string, unknown>;
      assert.deepEqual(Object.keys(raw), ['sha256', 'file', 'format', 'width', 'height', 'bytes', 'source', 'sampledAt', 'models', 'top', 'flagged', 'meta']);

      const entries = await readPool(dir);
      assert.equal(entries.length, 2);
      const [a, b] = entries as [typeof entries[0], typeof entries[0]];
      const top = first.classifiers[0]!.top[0]!;
      assert.deepEqual({ ...a, sampledAt: 'x' }, {
        sha256: first.sha256, file: `images/${first.sha256.slice(0, 2)}/${first.sha256}.jpg`, format: 'jpeg', width: 110, height: 90,
        bytes: bytes.length, source: 'http', sampledAt: 'x', models: [{ name: 'wildlife-resnet50vd', version: '1.0.0' }],
        top: { label: top.label, score: top.score }, flagged: first.flagged, meta: {},
        path: path.join(dir, 'images', first.sha256.slice(0, 2), `${first.sha256}.jpg`),
      });
      assert.ok(path.isAbsolute(a.path));
      assert.ok(!Number.isNaN(Date.parse(a.sampledAt)));
      assert.deepEqual(await readFile(a.path), bytes);
      assert.equal(b.sha256, fetched.sha256);
      assert.equal(b.source, 'kafka');
      assert.deepEqual(b.meta, { imageUrl: imagesUrl, listingId: 'L-7', platform: 'example-market' });
      assert.deepEqual(await readFile(b.path), remote);
      assert.deepEqual(service.poolStatus(), { directory: dir, images: 2, pending: 0 });
    } finally {
      await service.close();
    }
  });

  test('a photo seen again without the cache is a duplicate, and a restart on the same directory keeps the dedupe', async () => {
    const dir = path.join(tmp, 'dedupe');
    const [p1, p2, p3] = await Promise.all([photo(11), photo(12), photo(13)]);
    const first = await poolService(dir, { sampleRate: 1 }, 0);
    try {
      for (const bytes of [p1, p2, p1]) await first.service.screen({ bytes, source: 'http' });
      await first.service.settle();
      assert.deepEqual(first.outcomes.sort(), ['duplicate', 'stored', 'stored']);
    } finally {
      await first.service.close();
    }
    const restarted = await poolService(dir, { sampleRate: 1 }, 0);
    try {
      assert.equal(restarted.service.poolStatus()?.images, 2);
      for (const bytes of [p1, p2, p3]) await restarted.service.screen({ bytes, source: 'kafka' });
      await restarted.service.settle();
      assert.deepEqual(restarted.outcomes, ['duplicate', 'duplicate', 'stored']);
    } finally {
      await restarted.service.close();
    }
    const entries = await readPool(dir);
    assert.equal(entries.length, 3);
    assert.equal(new Set(entries.map((e) => e.sha256)).size, 3);
  });

  test('a sample rate of 0 stores nothing, nor does a draw above the rate or a source that is not listed', async () => {
    const dir = path.join(tmp, 'rate0');
    const { service, outcomes } = await poolService(dir, { sampleRate: 0 });
    let result: ScreenResult;
    let bytes: Buffer;
    try {
      bytes = await photo(21);
      result = await service.screen({ bytes, source: 'http' });
      await service.screen({ bytes: await photo(22), source: 'kafka' });
      await service.settle();
      assert.deepEqual(outcomes, []);
      assert.equal(existsSync(dir), false, 'nothing written, not even the directory');
    } finally {
      await service.close();
    }
    const sampler = await createPoolSampler({ directory: dir, sampleRate: 0.5, maxImages: 10, maxPendingWrites: 4, sources: ['http', 'kafka'], random: () => 0.7 });
    sampler.offer({ bytes, result, source: 'http' });
    const cliOnly = await createPoolSampler({ directory: dir, sampleRate: 1, maxImages: 10, maxPendingWrites: 4, sources: ['http', 'kafka'], random: always });
    cliOnly.offer({ bytes, result, source: 'cli' });
    await Promise.all([sampler.settle(), cliOnly.settle()]);
    assert.deepEqual(await readPool(dir), []);
  });

  test('once maxImages are stored, further photos are counted as full, and the metrics say so', async () => {
    const dir = path.join(tmp, 'full');
    const { service, outcomes } = await poolService(dir, { sampleRate: 1, maxImages: 2 }, 0);
    try {
      const metrics = createMetrics(service);
      for (let seed = 31; seed < 35; seed++) await service.screen({ bytes: await photo(seed), source: 'http' });
      await service.settle();
      assert.deepEqual(outcomes.sort(), ['full', 'full', 'stored', 'stored']);
      assert.equal((await readPool(dir)).length, 2);
      const text = await metrics.registry.metrics();
      assert.match(text, /wildlife_pool_samples_total\{outcome="stored"\} 2/);
      assert.match(text, /wildlife_pool_samples_total\{outcome="full"\} 2/);
      assert.match(text, /wildlife_pool_images 2/);
    } finally {
      await service.close();
    }
  });

  test('a write that fails is counted and the screen still succeeds; once the disk is fixed the photo can be stored', async () => {
    const dir = path.join(tmp, 'broken');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'images'), 'a file where the images directory should be');
    const { service, outcomes } = await poolService(dir, { sampleRate: 1 }, 0);
    const failures: Error[] = [];
    service.on('poolFailed', (e) => failures.push(e.error));
    try {
      const metrics = createMetrics(service);
      const bytes = await photo(41);
      const result = await service.screen({ bytes, source: 'http' });
      assert.equal(typeof result.flagged, 'boolean');
      await service.settle();
      assert.deepEqual(outcomes, ['failed']);
      assert.equal(failures.length, 1);
      assert.deepEqual(await readPool(dir), [], 'no index line without its image');
      assert.match(await metrics.registry.metrics(), /wildlife_pool_samples_total\{outcome="failed"\} 1/);
      await rm(path.join(dir, 'images'));
      await service.screen({ bytes, source: 'http' });
      await service.settle();
      assert.deepEqual(outcomes, ['failed', 'stored']);
      assert.equal((await readPool(dir)).length, 1);
    } finally {
      await service.close();
    }
  });

  describe('with screening results at hand', () => {
    let service: ScreeningService;
    let samples: Array<{ bytes: Buffer; result: ScreenResult }>;
    before(async () => {
      service = await createScreeningService(configWith(path.join(tmp, 'unused'), { enabled: false }));
      samples = await Promise.all([51, 52, 53].map(async (seed) => {
        const bytes = await photo(seed);
        return { bytes, result: await service.screen({ bytes, source: 'http' }) };
      }));
    });
    after(async () => {
      await service.close();
    });

    test('samples beyond maxPendingWrites are dropped at once instead of waited for', async () => {
      const dir = path.join(tmp, 'pending');
      const sampler = await createPoolSampler({ directory: dir, sampleRate: 1, maxImages: 10, maxPendingWrites: 1, sources: ['http'], random: always });
      const outcomes: PoolOutcome[] = [];
      sampler.on('sample', (e) => outcomes.push(e.outcome));
      for (const s of samples) sampler.offer({ ...s, source: 'http' });
      assert.deepEqual(outcomes, ['dropped', 'dropped'], 'decided before any write finished');
      await sampler.settle();
      assert.deepEqual(outcomes, ['dropped', 'dropped', 'stored']);
      assert.deepEqual((await readPool(dir)).map((e) => e.sha256), [samples[0]!.result.sha256]);
    });

    test('readPool skips a last line cut short by a crash, and the sampler cuts it off before appending', async () => {
      const dir = path.join(tmp, 'crash');
      const first = await createPoolSampler({ directory: dir, sampleRate: 1, maxImages: 10, maxPendingWrites: 4, sources: ['http'], random: always });
      first.offer({ ...samples[0]!, source: 'http' });
      await first.settle();
      const index = path.join(dir, POOL_INDEX);
      const good = await readFile(index, 'utf8');
      await appendFile(index, good.slice(0, 40));
      assert.equal((await readPool(dir)).length, 1);
      const second = await createPoolSampler({ directory: dir, sampleRate: 1, maxImages: 10, maxPendingWrites: 4, sources: ['http'], random: always });
      second.offer({ ...samples[1]!, source: 'http' });
      await second.settle();
      const text = await readFile(index, 'utf8');
      assert.equal(text.split('\n').filter(Boolean).length, 2);
      assert.deepEqual((await readPool(dir)).map((e) => e.sha256), [samples[0]!.result.sha256, samples[1]!.result.sha256]);
      await writeFile(index, `{"broken"\n${text}`);
      await assert.rejects(readPool(dir), (err: unknown) => isAppError(err, 'DATASET_INVALID') && /index\.jsonl:1/.test(err.message));
    });
  });
});
