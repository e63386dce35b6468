import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { DEFAULT_LIMITS, modelInput, tensorSpecOf, writeTensor, type ModelPreprocessing, type TensorSpec } from '../../src/preprocess/index.js';

const MEAN = [0.485, 0.456, 0.406] as const;
const STD = [0.229, 0.224, 0.225] as const;
const spec = (size: number): TensorSpec => ({ size, resizeShort: size, mean: MEAN, std: STD });
/** The same, as a model.json of version 1 (no pixel_scale) gives it. */
const manifest = (size: number, resizeShort = size): ModelPreprocessing => ({ input: { size }, preprocess: { resize_short: resizeShort, mean: MEAN, std: STD } });
const normalised = (v: number, c: number) => (v / 255 - MEAN[c]!) / STD[c]!;

function assertClose(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < 1e-5, `${what}: expected ${expected}, got ${actual}`);
}

describe('writeTensor', () => {
  // 2×2 RGB, row-major: red, green / blue, (10, 128, 250).
  const rgb = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 128, 250]);

  test('normalises each value as (v/255 − mean)/std', () => {
    const out = new Float32Array(12);
    writeTensor(rgb, spec(2), out);
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 4; i++) assertClose(out[c * 4 + i]!, normalised(rgb[i * 3 + c]!, c), `channel ${c}, pixel ${i}`);
    }
  });

  test('with pixel scale 1, mean 127 and std 128 (EfficientNet-Lite) each value is exactly (v − 127)/128', () => {
    const out = new Float32Array(12);
    writeTensor(rgb, { size: 2, resizeShort: 2, mean: [127, 127, 127], std: [128, 128, 128], pixelScale: 1 }, out);
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 4; i++) assert.equal(out[c * 4 + i], (rgb[i * 3 + c]! - 127) / 128, `channel ${c}, pixel ${i}`);
    }
  });

  test('lays the tensor out as CHW: a red pixel is high in the channel 0 plane only', () => {
    const out = new Float32Array(12);
    writeTensor(rgb, spec(2), out);
    // Pixel 0 is red: R plane starts at 0, G at 4, B at 8.
    assertClose(out[0]!, (1 - 0.485) / 0.229, 'R of the red pixel');
    assertClose(out[4]!, -0.456 / 0.224, 'G of the red pixel');
    assertClose(out[8]!, -0.406 / 0.225, 'B of the red pixel');
    // Pixel 1 (x=1, y=0) is green, pixel 2 (x=0, y=1) is blue: row-major inside each plane.
    assertClose(out[4 + 1]!, (1 - 0.456) / 0.224, 'G of the green pixel');
    assertClose(out[8 + 2]!, (1 - 0.406) / 0.225, 'B of the blue pixel');
    assertClose(out[3]!, normalised(10, 0), 'R of the last pixel');
    assertClose(out[11]!, normalised(250, 2), 'B of the last pixel');
  });

  test('writes at an offset inside a batch buffer and touches nothing else', () => {
    const out = new Float32Array(12 * 3).fill(42);
    writeTensor(rgb, spec(2), out, 12);
    assert.ok(out.subarray(0, 12).every((v) => v === 42), 'slot 0 untouched');
    assert.ok(out.subarray(24).every((v) => v === 42), 'slot 2 untouched');
    assertClose(out[12]!, (1 - 0.485) / 0.229, 'slot 1 starts with R of the red pixel');
  });

  test('rejects RGB of the wrong length, a short output, a negative offset and non-RGB mean/std', () => {
    assert.throws(() => writeTensor(rgb.subarray(0, 9), spec(2), new Float32Array(12)), RangeError);
    assert.throws(() => writeTensor(rgb, spec(2), new Float32Array(11)), RangeError);
    assert.throws(() => writeTensor(rgb, spec(2), new Float32Array(24), 13), RangeError);
    assert.throws(() => writeTensor(rgb, spec(2), new Float32Array(24), -1), RangeError);
    assert.throws(() => writeTensor(rgb, { ...spec(2), mean: [0.5, 0.5] }, new Float32Array(12)), RangeError);
    assert.throws(() => writeTensor(rgb, { ...spec(2), std: [0.5] }, new Float32Array(12)), RangeError);
  });
});

describe('modelInput and tensorSpecOf', () => {
  test('a red image becomes constant planes of normalised 1, 0, 0', async () => {
    const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#ff0000' } }).png().toBuffer();
    const { tensor, source } = await modelInput(png, manifest(8, 9));
    assert.equal(tensor.length, 3 * 8 * 8);
    assert.deepEqual(source, { format: 'png', width: 40, height: 30, bytes: png.length });
    const expected = [normalised(255, 0), normalised(0, 1), normalised(0, 2)];
    for (let i = 0; i < tensor.length; i++) assertClose(tensor[i]!, expected[Math.floor(i / 64)]!, `element ${i}`);
  });

  test('modelInput passes custom limits through', async () => {
    const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#ff0000' } }).png().toBuffer();
    await assert.rejects(modelInput(png, manifest(8), { ...DEFAULT_LIMITS, minSide: 31 }), { code: 'IMAGE_TOO_SMALL' });
  });

  test('tensorSpecOf takes the size from the input and the rest from preprocess, pixel scale 255 when a v1 manifest has none', () => {
    const manifest = { input: { size: 224 }, preprocess: { resize_short: 256, mean: [0.1, 0.2, 0.3], std: [0.4, 0.5, 0.6] } };
    assert.deepEqual(tensorSpecOf(manifest), { size: 224, resizeShort: 256, interpolation: 'bilinear', crop: 'center', mean: [0.1, 0.2, 0.3], std: [0.4, 0.5, 0.6], pixelScale: 255 });
    const lite = { input: { size: 224 }, preprocess: { resize_short: 256, mean: [127, 127, 127], std: [128, 128, 128], pixel_scale: 1 } };
    assert.equal(tensorSpecOf(lite).pixelScale, 1);
  });

  test('the default limits are frozen at 20 MiB, 40 MP and a 16-pixel side', () => {
    assert.deepEqual({ ...DEFAULT_LIMITS }, { maxBytes: 20 * 1024 * 1024, maxPixels: 40_000_000, minSide: 16 });
    assert.ok(Object.isFrozen(DEFAULT_LIMITS));
  });
});
