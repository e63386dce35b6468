import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { REPO_ROOT } from '../../src/config.js';
import { MANIFEST_VERSION, manifestProblems, parseManifest, readManifest } from '../../src/model/manifest.js';

const SHIPPED = path.join(REPO_ROOT, 'models/wildlife-resnet50vd');

async function shippedJson(): Promise<Record<string, any>> {
  return JSON.parse(await readFile(path.join(SHIPPED, 'model.json'), 'utf8')) as Record<string, any>;
}

function liteLike(base: Record<string, any>): Record<string, any> {
  return {
    ...base, schema_version: 2, architecture: 'EfficientNetLite0', input: { ...base.input, size: 224 },
    preprocess: { resize_short: 256, crop_ratio: 0.875, interpolation: 'bilinear', crop: 'center', mean: [127, 127, 127], std: [128, 128, 128], pixel_scale: 1 },
  };
}

describe('model.json versions and preprocessing units', () => {
  test('the shipped version-1 manifest loads as it is on disk and is migrated in memory with pixel scale 255', async () => {
    const onDisk = await shippedJson();
    assert.equal(onDisk.schema_version, 1);
    assert.equal(onDisk.preprocess.pixel_scale, undefined);
    const manifest = await readManifest(SHIPPED);
    assert.equal(manifest.schema_version, MANIFEST_VERSION);
    assert.deepEqual(manifest.preprocess, { ...onDisk.preprocess, pixel_scale: 255 });
    assert.deepEqual(manifestProblems(manifest), [], 'the migrated manifest is a valid current one');
  });

  test('an EfficientNet-Lite manifest with mean 127 / std 128 in 0–255 units and a crop ratio validates', async () => {
    assert.deepEqual(manifestProblems(liteLike(await shippedJson())), []);
  });

  test('version 1 cannot carry the new fields, and version 2 must state its pixel scale', async () => {
    const v1 = await shippedJson();
    v1.preprocess.pixel_scale = 255;
    assert.ok(manifestProblems(v1).some((p) => p.includes('need schema_version 2')), manifestProblems(v1).join('\n'));
    const v2 = liteLike(await shippedJson());
    delete v2.preprocess.pixel_scale;
    delete v2.preprocess.crop_ratio;
    v2.preprocess.mean = [0.5, 0.5, 0.5];
    assert.ok(manifestProblems(v2).some((p) => p.includes("'pixel_scale'")), manifestProblems(v2).join('\n'));
  });

  test('a mean in the wrong units for its pixel scale is refused either way round', async () => {
    const wrong255 = liteLike(await shippedJson());
    wrong255.preprocess.pixel_scale = 255;
    delete wrong255.preprocess.crop_ratio;
    assert.ok(manifestProblems(wrong255).some((p) => p.includes('outside 0–1')), manifestProblems(wrong255).join('\n'));
    const wrong1 = liteLike(await shippedJson());
    wrong1.preprocess.mean = [0.485, 0.456, 0.406];
    assert.ok(manifestProblems(wrong1).some((p) => p.includes('0–255 units')), manifestProblems(wrong1).join('\n'));
  });

  test('a crop ratio must agree with resize_short', async () => {
    const m = liteLike(await shippedJson());
    m.preprocess.resize_short = 257;
    assert.throws(() => parseManifest(m, 'x'), /resize_short 257 is not floor\(input.size \/ crop_ratio\) = 256/);
  });
});
