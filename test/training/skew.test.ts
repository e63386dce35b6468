/**
 * Train/serve skew: the Python eval transform (PIL, wildtrain/data.py) and the serving transform
 * (sharp, src/preprocess) must give the same normalised tensor for the same photo and spec.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { REPO_ROOT } from '../../src/config.js';
import { modelInput, tensorSpecOf, type ModelPreprocessing } from '../../src/preprocess/index.js';
import { pythonEvalTensors } from '../../src/training/pipeline.js';
import { readNpy } from '../helpers/npy.js';

// Bounds, in 0–255 grey levels (converted by each spec's pixel scale and std, so the ImageNet and the
// EfficientNet-Lite specs are held to the same pixels). Both sides decode JPEG with libjpeg-turbo and
// enlarge small photos identically (src/preprocess/upsample.ts reproduces Pillow bit for bit), but
// reductions differ: libvips' linear reduce and Pillow's antialiased bilinear weight the source
// pixels slightly differently, so pixels at hard edges move by a few levels (4.1 measured) while the
// mean stays under half a level (0.40 measured). A wrong resize rule, crop offset, channel order or
// normalisation moves the mean by several levels, and libvips' own enlargement by ~8 (120 max).
const MAX_LEVELS = 6;
const MEAN_LEVELS = 0.6;

// As model.json carries them: the service reads a model's preprocessing from there (modelInput),
// Python is handed the same settings as tensorSpecOf reads them.
const MODELS: Record<string, ModelPreprocessing> = {
  'ResNet50_vd (ImageNet mean/std, pixel scale 255, short side 128)': { input: { size: 112 }, preprocess: { resize_short: 128, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], pixel_scale: 255 } },
  'EfficientNet-Lite0 (mean 127, std 128, pixel scale 1, short side 224 / 0.875)': { input: { size: 224 }, preprocess: { resize_short: 256, mean: [127, 127, 127], std: [128, 128, 128], pixel_scale: 1 } },
};

describe('train/serve skew of the eval transform', () => {
  let tmp: string;
  let photos: string[];
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-skew-'));
    // Noise, small enough that both specs enlarge it: the enlargement path, pixel for pixel.
    const noise = Buffer.from(Array.from({ length: 61 * 47 * 3 }, (_, i) => (i * 7919 + (i >> 3) * 104729) % 251));
    photos = [path.join(tmp, 'noise.png')];
    await sharp(noise, { raw: { width: 61, height: 47, channels: 3 } }).png().toFile(photos[0]!);
    for (const dir of ['test/fixtures/met', 'test/fixtures/imagenet']) {
      for (const f of (await readdir(path.join(REPO_ROOT, dir))).sort()) if (f.endsWith('.jpg')) photos.push(path.join(REPO_ROOT, dir, f));
    }
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  for (const [name, model] of Object.entries(MODELS)) {
    const spec = tensorSpecOf(model);
    test(`${name}: Python's eval transform and the service's give the same tensor for eight photos and a small noise image, within ${MAX_LEVELS} grey levels max and ${MEAN_LEVELS} mean`, async () => {
      assert.equal(photos.length, 9);
      const out = path.join(tmp, 'py.npy');
      await pythonEvalTensors(photos, spec, path.join(tmp, 'list.json'), out);
      const py = await readNpy(out);
      assert.deepEqual(py.shape, [photos.length, 3, spec.size, spec.size]);
      const plane = 3 * spec.size * spec.size;
      const report: string[] = [];
      const worst = { max: 0, mean: 0 };
      for (let i = 0; i < photos.length; i++) {
        const { tensor } = await modelInput(await readFile(photos[i]!), model);
        let max = 0;
        let sum = 0;
        for (let j = 0; j < plane; j++) {
          const d = Math.abs(tensor[j]! - py.data[i * plane + j]!);
          sum += d;
          if (d > max) max = d;
        }
        // One grey level in normalised units is 1 / (pixelScale · std); the largest std makes it smallest, so the strictest reading.
        const perLevel = 1 / ((spec.pixelScale ?? 255) * Math.max(...spec.std));
        worst.max = Math.max(worst.max, max / perLevel);
        worst.mean = Math.max(worst.mean, sum / plane / perLevel);
        report.push(`${path.basename(photos[i]!)}: max ${(max / perLevel).toFixed(2)} levels, mean ${(sum / plane / perLevel).toFixed(3)}`);
      }
      assert.ok(worst.max <= MAX_LEVELS && worst.mean <= MEAN_LEVELS, report.join('\n'));
    });
  }
});
