import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, symlink, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig, REPO_ROOT, type AppConfig } from '../../src/config.js';
import { isAppError } from '../../src/errors.js';
import { openSessionCount } from '../../src/model/engine.js';
import { readManifest, writeManifest } from '../../src/model/manifest.js';
import { createScreeningService, type ScreeningEvents, type ScreeningService, type ScreenResult } from '../../src/screening/service.js';
import { jpegOf, metPhotos } from '../helpers/images.js';
import { until } from '../helpers/wait.js';
import { copyModel, thresholdsAtZero } from '../helpers/models.js';
import { TEST_MODEL_DIRS } from '../helpers/server.js';

type Overrides = { [K in keyof AppConfig]?: Partial<AppConfig[K]> };

const configWith = (overrides: Overrides) => loadConfig({ LOG_LEVEL: 'silent' }, {
  ...overrides,
  models: { directories: TEST_MODEL_DIRS, intraOpThreads: 2, ...overrides.models },
  // Off, so every request is a fresh decision the candidate can be offered.
  cache: { maxEntries: 0, ...overrides.cache },
} as unknown as Record<string, Record<string, unknown>>);

/** Records a service's events of one kind; take() returns and forgets what came since the last take. */
function recorder<K extends keyof ScreeningEvents>(service: ScreeningService, event: K) {
  let seen: Array<ScreeningEvents[K]> = [];
  service.on(event, (e) => seen.push(e));
  return {
    take: () => {
      const out = seen;
      seen = [];
      return out;
    },
  };
}

/** Screens one photo at a time and waits for its shadow run, so comparisons come in photo order. */
async function screenEach(service: ScreeningService, photos: Buffer[]): Promise<ScreenResult[]> {
  const results: ScreenResult[] = [];
  for (const bytes of photos) {
    results.push(await service.screen({ bytes, source: 'http' }));
    await service.settle();
  }
  return results;
}

/** What a client sees, minus what differs per request anyway. */
const decision = (r: ScreenResult) => ({ sha256: r.sha256, flagged: r.flagged, reasons: r.reasons, classifiers: r.classifiers, image: r.image, cached: r.cached });

describe('shadow mode on live traffic', () => {
  let tmp: string;
  let dirs: { same: string; low: string; high: string };
  let photos: Buffer[];
  let service: ScreeningService;
  let comparisons: ReturnType<typeof recorder<'shadowComparison'>>;
  let requests: ReturnType<typeof recorder<'shadowRequest'>>;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-shadow-'));
    const source = TEST_MODEL_DIRS[0]!;
    dirs = {
      same: await copyModel(source, path.join(tmp, 'same')),
      low: await copyModel(source, path.join(tmp, 'low'), { threshold: 0.0001, version: '1.0.1-low' }),
      high: await copyModel(source, path.join(tmp, 'high'), { threshold: 1, version: '1.0.1-high' }),
    };
    photos = await metPhotos();
    service = await createScreeningService(configWith({ shadow: { modelDir: dirs.same, sampleRate: 1, allowedRoots: [tmp] } }), undefined, { random: () => 0 });
    comparisons = recorder(service, 'shadowComparison');
    requests = recorder(service, 'shadowRequest');
  });
  after(async () => {
    await service.close();
    await rm(tmp, { recursive: true, force: true });
    assert.equal(openSessionCount(), 0, 'primary and candidate sessions released after close');
  });

  test('a candidate identical to the primary agrees on every Met fixture, flags and top-1 labels alike', async () => {
    const results = await screenEach(service, photos);
    const seen = comparisons.take();
    assert.equal(seen.length, photos.length);
    seen.forEach((c, i) => {
      assert.equal(c.candidate, 'wildlife-resnet50vd@1.0.0');
      assert.equal(c.sha256, results[i]!.sha256);
      assert.equal(c.flag, results[i]!.flagged ? 'both' : 'neither');
      assert.equal(c.top1, 'agree');
      assert.ok(c.scoreDelta < 1e-4, `score delta ${c.scoreDelta}`);
    });
    assert.ok(results.some((r) => r.flagged) && results.some((r) => !r.flagged), 'the fixtures hold flagged and unflagged photos');
    const status = service.shadowStatus();
    assert.equal(status.candidate?.directory, dirs.same);
    assert.equal(status.compared, photos.length);
    assert.equal(status.flagAgreementRate, 1);
    assert.equal(status.top1AgreementRate, 1);
    assert.deepEqual(requests.take().map((r) => r.outcome), photos.map(() => 'compared'));
  });

  test('responses are the same with the shadow on and off', async () => {
    const on = await screenEach(service, photos);
    assert.equal(comparisons.take().length, photos.length);
    await service.clearShadow();
    const off = await screenEach(service, photos);
    assert.equal(comparisons.take().length, 0);
    assert.deepEqual(off.map(decision), on.map(decision));
  });

  test('a candidate whose thresholds are 0.0001 flags what the primary does not: candidate_only', async () => {
    const status = await service.setShadow(dirs.low);
    assert.equal(status.candidate?.version, '1.0.1-low');
    assert.equal(status.compared, 0, 'counts start at activation');
    const results = await screenEach(service, photos);
    const seen = comparisons.take();
    assert.deepEqual(seen.map((c) => c.flag), results.map((r) => (r.flagged ? 'both' : 'candidate_only')));
    assert.ok(seen.some((c) => c.flag === 'candidate_only'));
    assert.ok(seen.every((c) => c.top1 === 'agree'), 'same weights, same top-1');
    const after = service.shadowStatus();
    assert.equal(after.flag.candidate_only, results.filter((r) => !r.flagged).length);
    assert.ok(after.flagAgreementRate! < 1);
  });

  test('a candidate whose thresholds are 1 misses what the primary flags: primary_only', async () => {
    await service.setShadow(dirs.high);
    const results = await screenEach(service, photos);
    const seen = comparisons.take();
    assert.deepEqual(seen.map((c) => c.flag), results.map((r) => (r.flagged ? 'primary_only' : 'neither')));
    assert.ok(seen.some((c) => c.flag === 'primary_only'));
  });

  test('a sample rate of 0 sends nothing to the candidate; those requests count as skipped', async () => {
    const status = await service.setShadow(dirs.same, { sampleRate: 0 });
    assert.equal(status.sampleRate, 0);
    requests.take();
    await screenEach(service, photos.slice(0, 2));
    assert.equal(comparisons.take().length, 0);
    assert.deepEqual(requests.take().map((r) => r.outcome), ['skipped', 'skipped']);
    assert.equal(service.shadowStatus().compared, 0);
    assert.equal(service.shadowStatus().skipped, 2);
    await service.setShadow(dirs.same, { sampleRate: 1 });
  });

  test('replacing and clearing the candidate disposes its session', async () => {
    await service.clearShadow();
    const baseline = openSessionCount();
    await service.setShadow(dirs.low);
    assert.equal(openSessionCount(), baseline + 1);
    await service.setShadow(dirs.high);
    assert.equal(openSessionCount(), baseline + 1, 'the replaced candidate was released');
    const cleared = await service.clearShadow();
    assert.equal(cleared.candidate, null);
    assert.equal(openSessionCount(), baseline);
  });

  test('a directory outside the models root and shadow.allowedRoots is refused, also through a symlink', async () => {
    const outside = await mkdtemp(path.join(os.tmpdir(), 'wildlife-outside-'));
    const link = path.join(tmp, 'link');
    try {
      await symlink(outside, link);
      for (const dir of ['/etc', path.join(tmp, '..'), path.join(tmp, 'same', '..', '..', path.basename(outside)), link]) {
        await assert.rejects(service.setShadow(dir), (err: unknown) => isAppError(err, 'SHADOW_DIR_FORBIDDEN'), dir);
      }
      assert.equal(service.shadowStatus().candidate, null);
      // The models root is allowed without being listed.
      assert.equal((await service.setShadow(path.join(REPO_ROOT, 'models', 'wildlife-resnet50vd'))).candidate?.name, 'wildlife-resnet50vd');
    } finally {
      await unlink(link).catch(() => undefined);
      await rm(outside, { recursive: true, force: true });
    }
  });

  test('a candidate that fails to load leaves the current one running and says why', async () => {
    await service.setShadow(dirs.same);
    const broken = path.join(tmp, 'broken');
    await cp(dirs.same, broken, { recursive: true });
    const manifest = await readManifest(broken);
    manifest.sha256 = '0'.repeat(64);
    await writeManifest(broken, manifest);
    const sessions = openSessionCount();
    await assert.rejects(service.setShadow(broken), (err: unknown) => isAppError(err, 'MODEL_CHECKSUM_MISMATCH'));
    await assert.rejects(service.setShadow(path.join(tmp, 'missing')), (err: unknown) => isAppError(err, 'MODEL_FILE_MISSING'));
    assert.equal(openSessionCount(), sessions);
    const status = service.shadowStatus();
    assert.equal(status.candidate?.directory, dirs.same);
    assert.equal(status.lastError?.code, 'MODEL_FILE_MISSING');
    await screenEach(service, photos.slice(0, 1));
    assert.equal(comparisons.take().length, 1, 'the previous candidate still compares');
  });
});

describe('shadow mode under threshold overrides', () => {
  test('the primary\'s and the candidate\'s flags are both read with models.thresholds: at 0, both flag every photo', async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-shadow-thresholds-'));
    const photos = await metPhotos();
    // The candidate keeps the primary's name, so the override applies to both.
    const candidate = await copyModel(TEST_MODEL_DIRS[0]!, path.join(tmp, 'candidate'));
    const { thresholds, ownFlag } = await thresholdsAtZero(TEST_MODEL_DIRS);
    const service = await createScreeningService(configWith({ models: { thresholds }, shadow: { modelDir: candidate, sampleRate: 1 } }), undefined, { random: () => 0 });
    try {
      const comparisons = recorder(service, 'shadowComparison');
      const results = await screenEach(service, photos);
      assert.deepEqual(comparisons.take().map((c) => c.flag), photos.map(() => 'both'));
      assert.ok(results.some((r) => !ownFlag(r.reasons)), 'some Met photo is flagged only because of the override');
    } finally {
      await service.close();
      await rm(tmp, { recursive: true, force: true });
    }
  });
});

describe('shadow capacity', () => {
  let service: ScreeningService;
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-shadow-cap-'));
    const candidate = await copyModel(TEST_MODEL_DIRS[0]!, path.join(tmp, 'candidate'));
    // One batch of four: the four results, and so the four offers, arrive together.
    service = await createScreeningService(configWith({
      shadow: { modelDir: candidate, sampleRate: 1, maxInFlight: 1 },
      batching: { maxBatchSize: 4, preferredBatchSizes: [4], maxQueueDelayMs: 20_000 },
    }), undefined, { random: () => 0 });
  });
  after(async () => {
    await service.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test('offers beyond maxInFlight are dropped and counted, and every request is still answered', async () => {
    const outcomes = recorder(service, 'shadowRequest');
    const bytes = await Promise.all([0, 1, 2, 3].map((i) => jpegOf('spotted_skin', 100, 90, 40 + i)));
    const results = await Promise.all(bytes.map((b) => service.screen({ bytes: b, source: 'kafka', lane: 'bulk' })));
    await service.settle();
    assert.equal(results.length, 4);
    // The first offer takes the one slot; the other three come before it has even started.
    assert.deepEqual(outcomes.take().map((r) => r.outcome).sort(), ['compared', 'dropped', 'dropped', 'dropped']);
    const status = service.shadowStatus();
    assert.equal(status.compared, 1);
    assert.equal(status.dropped, 3);
    assert.equal(status.inFlight, 0);
  });
});

describe('shadow candidates across reloads', () => {
  let tmp: string;
  let primary: string;
  let next: string;
  let service: ScreeningService;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-shadow-reload-'));
    primary = await copyModel(TEST_MODEL_DIRS[0]!, path.join(tmp, 'models', 'wildlife-resnet50vd'));
    // Same name, new checksum and version: what the next fine-tune looks like to the service.
    next = await copyModel(TEST_MODEL_DIRS[0]!, path.join(tmp, 'runs', 'next'), { docString: 'ssld fine-tune 2', version: '1.1.0' });
    service = await createScreeningService(configWith({ models: { directories: [primary] }, shadow: { sampleRate: 1, allowedRoots: [path.join(tmp, 'runs')] } }), path.join(tmp, 'models'), { random: () => 0 });
  });
  after(async () => {
    await service.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test('a reload keeps an unchanged candidate and its counts, and re-reads a changed one', async () => {
    const changes = recorder(service, 'shadowCandidate');
    await service.setShadow(next);
    await screenEach(service, [await jpegOf('striped_skin', 96, 96, 11)]);
    assert.equal(service.shadowStatus().compared, 1);
    await service.reload();
    assert.equal(service.shadowStatus().candidate?.version, '1.1.0');
    assert.equal(service.shadowStatus().compared, 1, 'same files, same counts');
    const manifest = await readManifest(next);
    manifest.labels.forEach((l) => { if (l.trade_relevant) l.threshold = 0.5; });
    await writeManifest(next, manifest);
    await service.reload();
    assert.equal(service.shadowStatus().compared, 0, 'new thresholds, new counts');
    assert.deepEqual(changes.take().map((c) => c.reason), ['activated', 'reloaded', 'reloaded']);
  });

  test('after a reload, a candidate that has become the primary model is cleared and its session released', async () => {
    const changes = recorder(service, 'shadowCandidate');
    await until('two open sessions', () => openSessionCount() === 2, { timeoutMs: 5000, intervalMs: 10 });
    assert.equal(openSessionCount(), 2, 'the primary and the candidate');
    const candidateSha = service.shadowStatus().candidate!.sha256;
    assert.notEqual(service.models()[0]!.sha256, candidateSha);
    for (const file of ['model.onnx', 'model.json']) await cp(path.join(next, file), path.join(primary, file));
    await service.reload();
    assert.equal(service.models()[0]!.sha256, candidateSha);
    assert.equal(service.shadowStatus().candidate, null);
    const [change] = changes.take();
    assert.equal(change?.reason, 'promoted');
    assert.equal(change?.previous?.sha256, candidateSha);
    // The old primary generation retires when its last request is done; the candidate went at once.
    await until('one open session', () => openSessionCount() === 1, { timeoutMs: 5000, intervalMs: 10 });
    assert.equal(openSessionCount(), 1);
    const result = await service.screen({ bytes: await jpegOf('striped_skin', 96, 96, 12), source: 'http' });
    assert.equal(result.classifiers[0]!.version, '1.1.0');
  });
});
