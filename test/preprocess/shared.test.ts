import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { REPO_ROOT } from '../../src/config.js';
import { geometryKey, inspectImage, modelInput, modelInputs, tensorKey, tensorSpecOf, type ModelPreprocessing } from '../../src/preprocess/index.js';

const PHOTO = path.join(REPO_ROOT, 'test/fixtures/met/ivory_110245.jpg');
// As model.json gives them (a v1 manifest without pixel_scale, and EfficientNet-Lite's).
const IMAGENET: ModelPreprocessing = { input: { size: 32 }, preprocess: { resize_short: 36, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } };
const LITE: ModelPreprocessing = { input: { size: 32 }, preprocess: { resize_short: 36, mean: [127, 127, 127], std: [128, 128, 128], pixel_scale: 1 } };

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

describe('preprocessing shared between the models screening one photo', () => {
  test('two models with the same geometry but different mean/std get different tensors, each what it would get alone', async () => {
    const bytes = await readFile(PHOTO);
    const [a, b] = await modelInputs(bytes, [IMAGENET, LITE]);
    assert.notEqual(a!.tensor, b!.tensor);
    assert.ok(maxAbsDiff(a!.tensor, b!.tensor) > 0.1, 'the two normalisations must differ visibly');
    const [aloneA, aloneB] = await Promise.all([modelInput(bytes, IMAGENET), modelInput(bytes, LITE)]);
    assert.deepEqual(a!.tensor, aloneA.tensor);
    assert.deepEqual(b!.tensor, aloneB.tensor);
  });

  test('models whose full specs agree share one tensor; a different crop size does not', async () => {
    const bytes = await readFile(PHOTO);
    const [a, same, bigger] = await modelInputs(bytes, [LITE, { ...LITE, preprocess: { ...LITE.preprocess, mean: [127, 127, 127] } }, { ...LITE, input: { size: 34 } }]);
    assert.equal(a!.tensor, same!.tensor);
    assert.equal(bigger!.tensor.length, 3 * 34 * 34);
  });

  test('a caller\'s inspection of the header is used for every geometry instead of inspecting again', async () => {
    const bytes = await readFile(PHOTO);
    const inspected = await inspectImage(bytes);
    const [plain] = await modelInputs(bytes, [LITE]);
    assert.deepEqual(plain!.source, inspected);
    // A marker only an inspection that was skipped can return: the caller's own answer comes back.
    const marked = { ...inspected, format: 'inspected-by-caller' };
    const both = await modelInputs(bytes, [LITE, { input: { size: 34 }, preprocess: { ...LITE.preprocess, resize_short: 40 } }], undefined, marked);
    assert.deepEqual(both.map((p) => p.source.format), ['inspected-by-caller', 'inspected-by-caller']);
    assert.deepEqual(both[0]!.tensor, plain!.tensor, 'the pixels do not depend on who inspected');
  });

  test('the keys cover every setting: pixel scale and std change the tensor key, never the decode key', () => {
    const imagenet = tensorSpecOf(IMAGENET);
    assert.notEqual(tensorKey(imagenet), tensorKey({ ...imagenet, pixelScale: 1 }));
    assert.notEqual(tensorKey(imagenet), tensorKey({ ...imagenet, std: [1, 1, 1] }));
    assert.equal(geometryKey(imagenet), geometryKey(tensorSpecOf(LITE)));
    assert.notEqual(geometryKey(imagenet), geometryKey({ ...imagenet, resizeShort: 37 }));
    assert.equal(tensorKey({ size: 32, resizeShort: 36, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }), tensorKey(imagenet), 'defaults are spelled out in the key');
  });
});
