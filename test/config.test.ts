import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.js';

describe('service configuration', () => {
  test('the defaults validate and come back frozen', () => {
    const config = loadConfig({});
    assert.equal(config.server.port, 8080);
    assert.equal(config.server.host, '127.0.0.1');
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.batching) && Object.isFrozen(config.batching.preferredBatchSizes));
    assert.equal(config.production, false);
  });

  test('environment variables override the file', () => {
    const config = loadConfig({ PORT: '9000', API_KEYS: 'a'.repeat(16) + ', ' + 'b'.repeat(16), MODEL_DIRS: 'x,y', BATCHING: 'off', EXECUTION_PROVIDER: 'cuda' });
    assert.equal(config.server.port, 9000);
    assert.deepEqual(config.auth.apiKeys, ['a'.repeat(16), 'b'.repeat(16)]);
    assert.deepEqual(config.models.directories, ['x', 'y']);
    assert.equal(config.batching.enabled, false);
    assert.equal(config.models.executionProvider, 'cuda');
  });

  test('every problem is listed in one error', () => {
    assert.throws(() => loadConfig({ PORT: 'eighty', EXECUTION_PROVIDER: 'gpu', API_KEYS: 'short', LOG_LEVEL: 'loud' }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 4, err.message);
      assert.match(err.message, /server\.port/);
      assert.match(err.message, /models\.executionProvider: must be one of cpu, cuda, tensorrt/);
      assert.match(err.message, /auth\.apiKeys\.0/);
      assert.match(err.message, /logging\.level/);
      return true;
    });
  });

  test('a CONFIG_FILE merges its sections over the defaults, and its unknown keys are errors', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'wildlife-config-'));
    try {
      const file = path.join(dir, 'deploy.yaml');
      await writeFile(file, 'cache:\n  maxEntries: 5\nbatching:\n  maxBatchSize: 16\n  preferredBatchSizes: [8, 16]\n');
      const config = loadConfig({ CONFIG_FILE: file });
      assert.equal(config.cache.maxEntries, 5);
      assert.equal(config.cache.ttlSeconds, 3600, 'keys the file does not name keep their defaults');
      assert.equal(config.batching.maxBatchSize, 16);
      await writeFile(file, 'cache:\n  maxEntrys: 5\nmetrics: {}\n');
      assert.throws(() => loadConfig({ CONFIG_FILE: file }), (err: unknown) => err instanceof ConfigError
        && err.problems.includes('cache: unknown key "maxEntrys"') && err.problems.includes('(top level): unknown key "metrics"'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a CONFIG_FILE that names one nested review key keeps the other keys of that object', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'wildlife-config-'));
    try {
      const file = path.join(dir, 'review.yaml');
      const hash = 'scrypt$1024$8$1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=';
      await writeFile(file, `review:\n  port: 9091\n  auth:\n    accounts:\n      - { username: ana, passwordHash: '${hash}', role: lead }\n`);
      const config = loadConfig({ CONFIG_FILE: file });
      assert.equal(config.review.port, 9091);
      assert.equal(config.review.auth.mode, 'accounts', 'auth.mode kept from the defaults');
      assert.equal(config.review.auth.proxy.userHeader, 'X-Forwarded-User');
      assert.deepEqual(config.review.auth.accounts.map((a) => a.username), ['ana']);
      await writeFile(file, `review:\n  auth:\n    accounts:\n      - { username: ana, passwordHash: plain-text, role: boss }\n      - { username: ANA, passwordHash: '${hash}', role: analyst }\n`);
      assert.throws(() => loadConfig({ CONFIG_FILE: file }), (err: unknown) => err instanceof ConfigError
        && err.problems.some((p) => p.startsWith('review.auth.accounts.0.passwordHash'))
        && err.problems.includes('review.auth.accounts.0.role: must be one of analyst, lead'));
      await writeFile(file, `review:\n  auth:\n    accounts:\n      - { username: ana, passwordHash: '${hash}', role: lead }\n      - { username: ANA, passwordHash: '${hash}', role: analyst }\n`);
      assert.throws(() => loadConfig({ CONFIG_FILE: file }), /username "ana" appears more than once/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the review console listens on 8081 beside the service, and REVIEW_* variables override it', () => {
    assert.equal(loadConfig({}).review.port, 8081);
    const config = loadConfig({ REVIEW_PORT: '9191', REVIEW_DB: '/data/review.db', REVIEW_COOKIE_SECURE: 'true' });
    assert.deepEqual([config.review.port, config.review.database, config.review.cookieSecure], [9191, '/data/review.db', true]);
  });

  test('the upload admission budget: defaults sized for the 2 GiB CPU pod, env overrides, and never below the body limit', () => {
    const config = loadConfig({});
    assert.equal(config.server.maxInFlightBodyBytes, 128 * 1024 * 1024);
    assert.equal(config.server.maxInFlightRequests, 64);
    assert.ok(config.server.maxInFlightBodyBytes >= config.server.bodyLimitBytes);
    const env = loadConfig({ MAX_INFLIGHT_BODY_BYTES: '268435456', MAX_INFLIGHT_REQUESTS: '16' });
    assert.equal(env.server.maxInFlightBodyBytes, 268435456);
    assert.equal(env.server.maxInFlightRequests, 16);
    assert.throws(() => loadConfig({ MAX_INFLIGHT_BODY_BYTES: '1000' }), (err: unknown) => err instanceof ConfigError && /server\.maxInFlightBodyBytes: must be at least bodyLimitBytes/.test(err.message));
    assert.throws(() => loadConfig({ MAX_INFLIGHT_REQUESTS: '0' }), (err: unknown) => err instanceof ConfigError && /server\.maxInFlightRequests/.test(err.message));
  });

  test('preferred batch sizes above the maximum are refused', () => {
    assert.throws(() => loadConfig({ MAX_BATCH_SIZE: '4' }), /preferredBatchSizes: 8 exceeds maxBatchSize 4/);
  });

  test('the pool is off and no candidate is in shadow by default', () => {
    const config = loadConfig({});
    assert.deepEqual(config.pool, { enabled: false, directory: 'runs/pool', sampleRate: 0.05, maxImages: 100000, maxPendingWrites: 32, sources: ['http', 'kafka'] });
    assert.deepEqual(config.shadow, { modelDir: null, sampleRate: 0.1, maxInFlight: 4, allowedRoots: ['runs'] });
    assert.ok(Object.isFrozen(config.pool.sources) && Object.isFrozen(config.shadow.allowedRoots));
  });

  test('POOL_DIR switches the pool on with that directory; POOL_SAMPLE_RATE, SHADOW_MODEL_DIR and SHADOW_SAMPLE_RATE override', () => {
    const config = loadConfig({ POOL_DIR: '/data/pool', POOL_SAMPLE_RATE: '0.2', SHADOW_MODEL_DIR: 'runs/ssld/model', SHADOW_SAMPLE_RATE: '1' });
    assert.equal(config.pool.enabled, true);
    assert.equal(config.pool.directory, '/data/pool');
    assert.equal(config.pool.sampleRate, 0.2);
    assert.equal(config.shadow.modelDir, 'runs/ssld/model');
    assert.equal(config.shadow.sampleRate, 1);
    assert.equal(loadConfig({ POOL_SAMPLE_RATE: '0.2' }).pool.enabled, false, 'a rate alone does not switch the pool on');
  });

  test('pool and shadow settings out of range are all listed', () => {
    assert.throws(() => loadConfig({ POOL_SAMPLE_RATE: '1.5', SHADOW_SAMPLE_RATE: 'often' }, { pool: { sources: ['http', 'ftp'], maxImages: 0 }, shadow: { maxInFlight: 0, modelDir: '' } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      for (const where of ['pool.sampleRate', 'pool.sources.1', 'pool.maxImages', 'shadow.sampleRate', 'shadow.maxInFlight', 'shadow.modelDir']) {
        assert.ok(err.problems.some((p) => p.startsWith(`${where}:`)), `${where} in ${err.message}`);
      }
      return true;
    });
  });

  test('near-duplicate answers are on by default within a small distance; NEAR_DEDUPE=off switches them off', () => {
    const config = loadConfig({});
    assert.equal(config.cache.nearEnabled, true);
    assert.ok(Number.isInteger(config.cache.nearDistance) && config.cache.nearDistance > 0 && config.cache.nearDistance <= 8, `default ${config.cache.nearDistance}`);
    assert.equal(loadConfig({ NEAR_DEDUPE: 'off' }).cache.nearEnabled, false);
    assert.equal(loadConfig({}, { cache: { nearDistance: 0 } }).cache.nearDistance, 0, '0 = the same pHash only');
  });

  test('every bad near-duplicate setting is listed: distance negative, fractional, past 16 or not a number; the switch not a boolean', () => {
    for (const [nearDistance, expected] of [[-1, /must be >= 0/], [17, /must be <= 16/], [2.5, /must be integer/], ['six', /must be integer/]] as const) {
      assert.throws(() => loadConfig({}, { cache: { nearDistance } }), (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.startsWith('cache.nearDistance:') && expected.test(p)), String(nearDistance));
    }
    assert.throws(() => loadConfig({ NEAR_DEDUPE: 'maybe' }, { cache: { nearDistance: 40 } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.ok(err.problems.some((p) => p.startsWith('cache.nearEnabled:')), err.message);
      assert.ok(err.problems.some((p) => p.startsWith('cache.nearDistance:')), err.message);
      return true;
    });
  });

  test('ONNX Runtime\'s thread spinning is off by default; THREAD_SPINNING=on turns it on and a non-boolean is listed', () => {
    assert.equal(loadConfig({}).models.threadSpinning, false);
    assert.equal(loadConfig({ THREAD_SPINNING: 'on' }).models.threadSpinning, true);
    assert.throws(() => loadConfig({ THREAD_SPINNING: 'sometimes' }), (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.startsWith('models.threadSpinning:')));
  });

  test('production without API keys is refused', () => {
    assert.throws(() => loadConfig({ NODE_ENV: 'production' }), /NODE_ENV=production requires API keys/);
    assert.equal(loadConfig({ NODE_ENV: 'production', API_KEYS: 'k'.repeat(32) }).production, true);
  });

  test('CASCADE picks the cascade mode, and every problem with the cascade stages is listed at start-up', () => {
    assert.equal(loadConfig({}).cascade.mode, 'on');
    assert.equal(loadConfig({ CASCADE: 'first' }).cascade.mode, 'first');
    assert.throws(() => loadConfig({ CASCADE: 'maybe' }), /cascade\.mode: must be one of on, off, first/);
    const stages = [{ model: 'a', escalate: { from: 0.8, below: 0.2 } }, { model: 'b', escalate: { from: 0, below: 1 } }, { model: 'a', escalate: { from: 0, below: 2 } }];
    assert.throws(() => loadConfig({}, { cascade: { stages } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.ok(err.problems.some((p) => /cascade\.stages\.2\.escalate/.test(p)), err.message);
      return true;
    });
    assert.throws(() => loadConfig({}, { cascade: { stages: stages.slice(0, 2) } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      for (const expected of [/stages\[0\]\.escalate: need 0 <= from <= below <= 1/, /stages\[1\]\.escalate: the last stage/]) assert.ok(err.problems.some((p) => expected.test(p)), err.message);
      return true;
    });
  });

  test('a layer that names the models without a cascade serves exactly those models, without the default cascade', async () => {
    assert.ok(loadConfig({}).cascade.stages.length >= 2, 'the defaults ship a cascade');
    assert.deepEqual(loadConfig({ MODEL_DIRS: 'models/x' }).cascade.stages, []);
    assert.deepEqual(loadConfig({}, { models: { directories: ['models/x'] } }).cascade.stages, []);
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-config-'));
    try {
      const only = path.join(tmp, 'only.yaml');
      await writeFile(only, 'models:\n  directories: [models/x]\n');
      assert.deepEqual(loadConfig({ CONFIG_FILE: only }).cascade.stages, []);
      const both = path.join(tmp, 'both.yaml');
      await writeFile(both, 'models:\n  directories: [models/a, models/b]\ncascade:\n  stages:\n    - { model: a, escalate: { from: 0.1, below: 0.9 } }\n    - { model: b }\n');
      assert.deepEqual(loadConfig({ CONFIG_FILE: both }).cascade.stages.map((st) => st.model), ['a', 'b']);
      const threshold = path.join(tmp, 'threshold.yaml');
      await writeFile(threshold, 'models:\n  thresholds: { m: { ivory: 0.5 } }\n');
      assert.deepEqual(loadConfig({ CONFIG_FILE: threshold }).cascade, loadConfig({}).cascade, 'a file that does not name the models keeps the cascade');
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});

