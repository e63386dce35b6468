import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { loadConfig, REPO_ROOT, type AppConfig } from '../../src/config.js';
import { hammingDistance, perceptualHash } from '../../src/preprocess/phash.js';
import { createScreeningService, type ScreeningEvents, type ScreeningService, type ScreenResult } from '../../src/screening/service.js';
import { fingerprint } from '../../src/training/ssld/dedupe.js';
import { TEST_MODEL_DIRS } from '../helpers/server.js';

const MET = path.join(REPO_ROOT, 'test/fixtures/met');
const photo = (name: string) => readFile(path.join(MET, name));
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const halfSize = async (bytes: Buffer) => sharp(bytes).resize(Math.round((await sharp(bytes).metadata()).width! / 2)).jpeg({ quality: 80 }).toBuffer();
const cropped = async (bytes: Buffer, share: number) => {
  const { width, height } = await sharp(bytes).metadata();
  const [left, top] = [Math.round(width! * share), Math.round(height! * share)];
  return sharp(bytes).extract({ left, top, width: width! - 2 * left, height: height! - 2 * top }).jpeg({ quality: 90 }).toBuffer();
};
const decision = (r: ScreenResult) => ({ flagged: r.flagged, reasons: r.reasons, classifiers: r.classifiers });

function serviceWith(cache: Partial<AppConfig['cache']>, env: NodeJS.ProcessEnv = {}): Promise<ScreeningService> {
  return createScreeningService(loadConfig({ LOG_LEVEL: 'silent', ...env }, {
    models: { directories: TEST_MODEL_DIRS, intraOpThreads: 2 },
    cache: { maxEntries: 100, ttlSeconds: 60, ...cache },
  }));
}

describe('near-duplicate answers from the dedupe cache (default settings)', () => {
  let service: ScreeningService;
  let tmp: string;
  const lookups: Array<ScreeningEvents['cache']> = [];
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-near-'));
    service = await serviceWith({});
    service.on('cache', (e) => lookups.push(e));
  });
  after(async () => {
    await service.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test('a half-size re-encoded copy of a screened photo is answered "near", with the distance the SSLD dedupe measures and the screened photo\'s sha256', async () => {
    const original = await photo('ivory_209842.jpg');
    const copy = await halfSize(original);
    const first = await service.screen({ bytes: original, source: 'http' });
    const again = await service.screen({ bytes: copy, source: 'http' });
    await writeFile(path.join(tmp, 'original.jpg'), original);
    await writeFile(path.join(tmp, 'copy.jpg'), copy);
    const ssld = hammingDistance((await fingerprint(path.join(tmp, 'original.jpg'))).phash, (await fingerprint(path.join(tmp, 'copy.jpg'))).phash);
    assert.ok(ssld > 0, 'a copy that differs in its pHash, so the distance is seen');
    assert.equal(first.cached, false);
    assert.equal(again.cached, 'near');
    assert.deepEqual(again.near, { distance: ssld, sha256: first.sha256 });
    assert.deepEqual(decision(again), decision(first));
    // The photo described is the copy that was sent, not the one screened.
    assert.equal(again.sha256, sha(copy));
    assert.deepEqual([again.image.width, again.image.bytes], [(await sharp(copy).metadata()).width, copy.length]);
    assert.equal(again.timings.inferenceMs, 0);
    assert.deepEqual(lookups.slice(-2), [{ result: 'miss' }, { result: 'near', distance: ssld }]);
  });

  test('an exact repeat is still cached: true with no near field, and the copy\'s repeat is "near" again', async () => {
    const original = await photo('ivory_209842.jpg');
    const repeat = await service.screen({ bytes: original, source: 'http' });
    assert.equal(repeat.cached, true);
    assert.equal('near' in repeat, false);
    assert.equal((await service.screen({ bytes: await halfSize(original), source: 'http' })).cached, 'near');
  });

  test('a different photo, and a copy cropped further than the distance allows, are screened afresh', async () => {
    const config = loadConfig({});
    const original = await photo('non_ivory_467372.jpg');
    const crop = await cropped(original, 0.05);
    assert.ok(hammingDistance(await perceptualHash(original), await perceptualHash(crop)) > config.cache.nearDistance, 'the crop is beyond the default distance');
    assert.equal((await service.screen({ bytes: original, source: 'http' })).cached, false);
    const results = [await service.screen({ bytes: crop, source: 'http' }), await service.screen({ bytes: await photo('non_ivory_36078.jpg'), source: 'http' })];
    assert.deepEqual(results.map((r) => [r.cached, r.near]), [[false, undefined], [false, undefined]]);
  });

  test('a hot reload forgets near-duplicates along with exact repeats', async () => {
    const original = await photo('ivory_209842.jpg');
    await service.reload();
    assert.equal((await service.screen({ bytes: await halfSize(original), source: 'http' })).cached, false);
  });
});

describe('near-duplicate answers switched off or narrowed', () => {
  const services: ScreeningService[] = [];
  after(async () => {
    await Promise.all(services.map((s) => s.close()));
  });

  test('with NEAR_DEDUPE=off a copy is screened afresh, while an exact repeat is still cached: true', async () => {
    const service = await serviceWith({}, { NEAR_DEDUPE: 'off' });
    services.push(service);
    const original = await photo('ivory_209842.jpg');
    await service.screen({ bytes: original, source: 'http' });
    assert.equal((await service.screen({ bytes: await halfSize(original), source: 'http' })).cached, false);
    assert.equal((await service.screen({ bytes: original, source: 'http' })).cached, true);
  });

  test('with nearDistance 0 only a copy with the same pHash is answered, at distance 0', async () => {
    const service = await serviceWith({ nearDistance: 0 });
    services.push(service);
    const same = await photo('ivory_110245.jpg');
    const close = await photo('ivory_209842.jpg');
    assert.equal(await perceptualHash(await halfSize(same)), await perceptualHash(same), 'this copy keeps its pHash');
    await service.screen({ bytes: same, source: 'http' });
    await service.screen({ bytes: close, source: 'http' });
    const [a, b] = [await service.screen({ bytes: await halfSize(same), source: 'http' }), await service.screen({ bytes: await halfSize(close), source: 'http' })];
    assert.deepEqual([a.cached, a.near?.distance], ['near', 0]);
    assert.equal(b.cached, false);
  });
});
