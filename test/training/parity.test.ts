import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAppError } from '../../src/errors.js';
import { loadClassifier } from '../../src/model/engine.js';
import { readManifest } from '../../src/model/manifest.js';
import { defaultLabels } from '../../src/training/model-dir.js';
import { generateWeights, importPdparams, paddleLogits } from '../../src/training/pipeline.js';
import { readNpy, writeNpy } from '../helpers/npy.js';
import { seededRandom } from '../helpers/synthetic.js';

const MEAN: [number, number, number] = [0.485, 0.456, 0.406];
const STD: [number, number, number] = [0.229, 0.224, 0.225];

function labelsOf(count: number) {
  const names = Array.from({ length: count }, (_, i) => `class_${i}`);
  return defaultLabels(names, Object.fromEntries(names.map((n, i) => [n, i % 2 === 0])));
}

describe('importing PaddleClas .pdparams', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-parity-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  for (const arch of ['ResNet50_vd', 'ResNet18_vd', 'EfficientNetLite0'] as const) {
    test(`${arch}: Paddle and the exported ONNX model run by the service engine agree within 1e-4`, async () => {
      const classes = 7;
      const weights = path.join(tmp, `${arch}.pdparams`);
      await generateWeights(arch, classes, 11, weights);
      const out = path.join(tmp, arch);
      const result = await importPdparams({ pdparams: weights, arch, labels: labelsOf(classes), out, name: 'parity', version: '0.0.1', imageSize: 96, resizeShort: 110, mean: MEAN, std: STD });
      assert.equal(result.headReinitialised, false);
      const rand = seededRandom(3);
      const batch = 3;
      const input = new Float32Array(batch * 3 * 96 * 96).map(() => (rand() - 0.5) * 4);
      await writeNpy(path.join(tmp, 'x.npy'), input, [batch, 3, 96, 96]);
      await paddleLogits(weights, arch, classes, path.join(tmp, 'x.npy'), path.join(tmp, 'y.npy'));
      const reference = await readNpy(path.join(tmp, 'y.npy'));
      assert.deepEqual(reference.shape, [batch, classes]);
      const classifier = await loadClassifier(out);
      try {
        const outputs = await classifier.classify(input, batch);
        let maxDelta = 0;
        outputs.forEach((o, i) => o.logits.forEach((v, j) => (maxDelta = Math.max(maxDelta, Math.abs(v - reference.data[i * classes + j]!)))));
        assert.ok(maxDelta <= 1e-4, `max |Δlogit| = ${maxDelta} (logits span ${Math.min(...reference.data)}..${Math.max(...reference.data)})`);
        // Guard against a vacuous pass: the logits must actually vary.
        assert.ok(Math.max(...reference.data) - Math.min(...reference.data) > 0.1);
      } finally {
        await classifier.dispose();
      }
    });
  }

  test('a checkpoint with another class count loads with only the FC head re-initialised, and says so', async () => {
    const weights = path.join(tmp, 'r18-1000.pdparams');
    await generateWeights('ResNet18_vd', 1000, 5, weights);
    const out = path.join(tmp, 'head');
    const result = await importPdparams({ pdparams: weights, arch: 'ResNet18_vd', labels: labelsOf(4), out, name: 'head', version: '0.0.1', imageSize: 64, resizeShort: 73, mean: MEAN, std: STD });
    assert.equal(result.headReinitialised, true);
    assert.equal(result.loaded, 117 - 2);
    const manifest = await readManifest(out);
    assert.match(manifest.pretrained.note, /re-initialised: fine-tune before serving/);
    assert.equal(manifest.labels.length, 4);
  });

  test('a checkpoint of another architecture is refused with every mismatching key listed', async () => {
    const weights = path.join(tmp, 'r18.pdparams');
    await generateWeights('ResNet18_vd', 5, 2, weights);
    await assert.rejects(
      importPdparams({ pdparams: weights, arch: 'ResNet34_vd', labels: labelsOf(5), out: path.join(tmp, 'bad'), name: 'bad', version: '0.0.1', imageSize: 64, resizeShort: 73, mean: MEAN, std: STD }),
      (err: unknown) => {
        assert.ok(isAppError(err, 'TRAIN_FAILED'));
        assert.match(err.message, /missing: blocks\.\d+\.conv0\.conv\.weight/);
        return true;
      },
    );
  });
});

describe('parameter names', () => {
  test('every ResNet_vd variant has exactly PaddleClas\'s state-dict names and shapes, in order', async () => {
    const { wildtrainJson } = await import('../../src/training/python-env.js');
    const { KEYS_RESULT_SCHEMA } = await import('../../src/training/python-results.js');
    const { readFile } = await import('node:fs/promises');
    const { REPO_ROOT } = await import('../../src/config.js');
    const golden = JSON.parse(await readFile(path.join(REPO_ROOT, 'test/fixtures/paddleclas-resnet-vd-keys.json'), 'utf8')) as { architectures: Record<string, string[]> };
    assert.equal(Object.keys(golden.architectures).length, 6);
    for (const [arch, keys] of Object.entries(golden.architectures)) {
      const ours = await wildtrainJson<string[]>(['keys', '--arch', arch], KEYS_RESULT_SCHEMA);
      assert.deepEqual(ours, keys, arch);
    }
  });
});
