import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig, REPO_ROOT } from '../../src/config.js';
import { isAppError } from '../../src/errors.js';
import { loadClassifier, openSessionCount, sessionOptionsOf, softmax } from '../../src/model/engine.js';
import { manifestProblems, readManifest } from '../../src/model/manifest.js';
import { createModelRegistry, discoverModelDirectories } from '../../src/model/registry.js';
import { TEST_MODEL_DIRS } from '../helpers/server.js';

const MODEL = TEST_MODEL_DIRS[0]!;

describe('model manifests', () => {
  test('the shipped model manifests are all found and validate: the default config\'s models and ResNet50_vd', async () => {
    const root = path.join(REPO_ROOT, 'models');
    const found = await discoverModelDirectories(root);
    // The default set, and the model kept for MODEL_DIRS that tests run on (models/README.md).
    const shipped = [...loadConfig({ LOG_LEVEL: 'silent' }).models.directories.map((d) => path.resolve(REPO_ROOT, d)), path.join(root, 'wildlife-resnet50vd')];
    for (const dir of shipped) assert.ok(found.includes(dir), `${dir} is discovered (found: ${found.join(', ') || 'nothing'})`);
    for (const dir of found) await readManifest(dir);
  });

  test('unknown keys, missing keys and bad values are all listed', async () => {
    const manifest = JSON.parse(await readFile(path.join(MODEL, 'model.json'), 'utf8')) as Record<string, any>;
    delete manifest.sha256;
    manifest.colour = 'blue';
    manifest.preprocess.mean = [0.5, 0.5];
    manifest.labels.push({ ...manifest.labels[0], name: manifest.labels[0].name });
    const problems = manifestProblems(manifest);
    assert.ok(problems.includes('(top level): missing key "sha256"'), problems.join('\n'));
    assert.ok(problems.includes('(top level): unknown key "colour"'), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('preprocess.mean: ')), problems.join('\n'));
  });

  test('a trade-relevant label without a threshold, or a duplicated label, is refused', async () => {
    const manifest = JSON.parse(await readFile(path.join(MODEL, 'model.json'), 'utf8')) as Record<string, any>;
    const relevant = manifest.labels.find((l: any) => l.trade_relevant);
    relevant.threshold = null;
    manifest.labels.push({ ...manifest.labels[0] });
    const problems = manifestProblems(manifest);
    assert.ok(problems.some((p) => p.includes(`${relevant.name} is trade-relevant but has no threshold`)), problems.join('\n'));
    assert.ok(problems.some((p) => p.includes('duplicate label')), problems.join('\n'));
  });
});

describe('the ONNX Runtime engine', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-engine-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('classifies a batch into one probability vector per image and releases its session', async () => {
    const before = openSessionCount();
    const classifier = await loadClassifier(MODEL);
    assert.equal(openSessionCount(), before + 1);
    const n = 3;
    const batch = new Float32Array(n * classifier.inputLength).map((_, i) => Math.sin(i));
    const outputs = await classifier.classify(batch, n);
    assert.equal(outputs.length, n);
    for (const o of outputs) {
      assert.equal(o.probabilities.length, classifier.manifest.labels.length);
      assert.ok(Math.abs(o.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-5);
    }
    // The same image alone and inside a batch gives the same answer.
    const single = await classifier.classify(batch.slice(classifier.inputLength, 2 * classifier.inputLength), 1);
    single[0]!.logits.forEach((v, i) => assert.ok(Math.abs(v - outputs[1]!.logits[i]!) < 1e-3));
    await classifier.dispose();
    await classifier.dispose();
    assert.equal(openSessionCount(), before);
    await assert.rejects(classifier.classify(batch, 1), (e: unknown) => isAppError(e, 'INFERENCE_FAILED'));
  });

  test('thread spinning off asks ONNX Runtime to put its idle intra-op and inter-op threads to sleep; left unset, its default stays', () => {
    const manifest = { quantization: { method: 'static' } } as Parameters<typeof sessionOptionsOf>[0];
    const off = sessionOptionsOf(manifest, { threadSpinning: false }).extra as { session: Record<string, unknown> };
    assert.deepEqual(off.session.intra_op, { allow_spinning: '0' });
    assert.deepEqual(off.session.inter_op, { allow_spinning: '0' });
    for (const options of [{}, { threadSpinning: true }]) {
      const session = (sessionOptionsOf(manifest, options).extra as { session: Record<string, unknown> }).session;
      assert.equal(session.intra_op, undefined);
    }
    const weights = sessionOptionsOf({ quantization: { method: 'weights' } } as Parameters<typeof sessionOptionsOf>[0], { threadSpinning: false }).extra as { session: Record<string, unknown> };
    assert.equal(weights.session.disable_quant_qdq, '1', 'weight-only INT8 keeps its own setting beside it');
  });

  test('a session in a worker thread gives the main thread\'s answers and leaves the event loop free while it runs', async () => {
    const before = openSessionCount();
    const main = await loadClassifier(MODEL, { intraOpThreads: 1 });
    const worker = await loadClassifier(MODEL, { intraOpThreads: 1, inferenceThread: 'worker' });
    assert.equal(openSessionCount(), before + 2);
    try {
      const n = 16;
      const batch = new Float32Array(n * main.inputLength).map((_, i) => Math.cos(i / 7));
      const expected = await main.classify(batch, n);
      const view = new Float32Array(batch.length + 5).fill(9);
      view.set(batch, 5);
      // A view into a larger buffer, as batchers hand over: only its own floats go to the worker.
      const got = await worker.classify(view.subarray(5), n);
      got.forEach((o, i) => o.logits.forEach((v, k) => assert.ok(Math.abs(v - expected[i]!.logits[k]!) < 1e-4)));
      // Ticks of the event loop while each engine runs the same batch: none can happen while the
      // main thread itself is inside ONNX Runtime.
      const ticksDuring = async (run: () => Promise<unknown>) => {
        let ticks = 0;
        let running = true;
        const tick = (): void => { if (running) { ticks++; setImmediate(tick); } };
        setImmediate(tick);
        await run();
        running = false;
        return ticks;
      };
      const blocked = await ticksDuring(() => main.classify(batch, n));
      const free = await ticksDuring(() => worker.classify(batch, n));
      assert.ok(blocked <= 2, `main thread: ${blocked} ticks`);
      assert.ok(free > 10, `worker: only ${free} ticks`);
    } finally {
      await main.dispose();
      await worker.dispose();
    }
    assert.equal(openSessionCount(), before, 'the worker session is released too');
    await assert.rejects(worker.classify(new Float32Array(worker.inputLength), 1), (e: unknown) => isAppError(e, 'INFERENCE_FAILED'));
  });

  test('a model file that does not match its sha256 is refused', async () => {
    const dir = path.join(tmp, 'tampered');
    await cp(MODEL, dir, { recursive: true });
    const onnx = await readFile(path.join(dir, 'model.onnx'));
    onnx[onnx.length - 1] = onnx[onnx.length - 1]! ^ 0xff;
    await writeFile(path.join(dir, 'model.onnx'), onnx);
    await assert.rejects(loadClassifier(dir), (e: unknown) => isAppError(e, 'MODEL_CHECKSUM_MISMATCH'));
  });

  test('a directory without model.onnx or model.json is MODEL_FILE_MISSING', async () => {
    const dir = path.join(tmp, 'empty');
    await cp(MODEL, dir, { recursive: true });
    await rm(path.join(dir, 'model.onnx'));
    await assert.rejects(loadClassifier(dir), (e: unknown) => isAppError(e, 'MODEL_FILE_MISSING'));
    await assert.rejects(loadClassifier(path.join(tmp, 'nowhere')), (e: unknown) => isAppError(e, 'MODEL_FILE_MISSING'));
  });

  test('a manifest whose labels do not match the output is refused at load, leaving no session open', async () => {
    const dir = path.join(tmp, 'labels');
    await cp(MODEL, dir, { recursive: true });
    const manifest = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8')) as Record<string, any>;
    manifest.labels.push({ name: 'extra_label', trade_relevant: false, threshold: null });
    await writeFile(path.join(dir, 'model.json'), JSON.stringify(manifest));
    const before = openSessionCount();
    await assert.rejects(loadClassifier(dir), (e: unknown) => isAppError(e, 'MODEL_SHAPE_MISMATCH'));
    assert.equal(openSessionCount(), before);
  });

  test('softmax is stable for large logits', () => {
    const p = softmax(Float32Array.from([1000, 1000, -1000]));
    assert.deepEqual([...p].map((x) => Number(x.toFixed(3))), [0.5, 0.5, 0]);
  });
});

describe('the model registry', () => {
  test('loads every directory with a model.json, and a reload swaps generations without leaking sessions', async () => {
    const before = openSessionCount();
    const attached: number[] = [];
    const detached: number[] = [];
    let counter = 0;
    const registry = await createModelRegistry<number>({
      directories: [MODEL], modelsRoot: path.dirname(MODEL), engine: {},
      attach: () => { attached.push(++counter); return counter; },
      detach: async (n) => { detached.push(n); },
    });
    const lease = registry.acquire();
    await registry.reload();
    assert.equal(registry.current().id, 2);
    assert.equal(openSessionCount(), before + 2, 'the old generation stays while a lease holds it');
    assert.deepEqual(detached, []);
    lease.release();
    lease.release();
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(detached, [1]);
    assert.equal(openSessionCount(), before + 1);
    await registry.close();
    assert.deepEqual(detached, [1, 2]);
    assert.equal(openSessionCount(), before);
    assert.throws(() => registry.acquire(), (e: unknown) => isAppError(e, 'SHUTTING_DOWN'));
  });
});
