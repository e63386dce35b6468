import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { deflateSync } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';
import { DEFAULT_LIMITS, prepareImage, SUPPORTED_FORMATS, type ImageLimits, type PreparedImage } from '../../src/preprocess/index.js';
import { isAppError, type ErrorCode } from '../../src/errors.js';
import { seededRandom } from '../helpers/synthetic.js';

type RGB = [number, number, number];
const SMALL = { size: 8, resizeShort: 8 };
const RED: RGB = [255, 0, 0];
const BLUE: RGB = [0, 0, 255];
const ORANGE: RGB = [200, 100, 50];

/** Raw RGB pixels from a function of (x, y), as a sharp instance. */
function drawn(width: number, height: number, colourAt: (x: number, y: number) => RGB): Sharp {
  const px = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) px.set(colourAt(x, y), (y * width + x) * 3);
  }
  return sharp(px, { raw: { width, height, channels: 3 } });
}

function solid(width: number, height: number, rgba: RGB | [number, number, number, number]): Sharp {
  const [r, g, b, a = 255] = rgba;
  return sharp({ create: { width, height, channels: rgba.length as 3 | 4, background: { r, g, b, alpha: a / 255 } } });
}

function pixel(prepared: PreparedImage, size: number, x: number, y: number): RGB {
  const i = (y * size + x) * 3;
  return [prepared.rgb[i]!, prepared.rgb[i + 1]!, prepared.rgb[i + 2]!];
}

function assertNear(actual: readonly number[], expected: readonly number[], tolerance: number, what = ''): void {
  const ok = actual.length === expected.length && actual.every((v, i) => Math.abs(v - expected[i]!) <= tolerance);
  assert.ok(ok, `${what} expected ${JSON.stringify(expected)} ±${tolerance}, got ${JSON.stringify(actual)}`);
}

/** Every pixel of the output within `tolerance` of one colour. */
function assertUniform(prepared: PreparedImage, expected: RGB, tolerance: number): void {
  for (let i = 0; i < prepared.rgb.length; i += 3) {
    assertNear([prepared.rgb[i]!, prepared.rgb[i + 1]!, prepared.rgb[i + 2]!], expected, tolerance, `pixel ${i / 3}:`);
  }
}

function maxAbsDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

async function assertRejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isAppError(err), `expected a AppError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return true;
  });
}

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(body.length + 8);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), body.length + 4);
  return out;
}

/**
 * A PNG that declares width × height but carries only one row of pixel data: anything that tried
 * to decode it would fail as corrupt, so only a header-only check can give any other answer.
 */
function declaredPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, no filter, not interlaced
  const oneRow = deflateSync(Buffer.alloc(1 + width * 3));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), pngChunk('IDAT', oneRow)]);
}

describe('prepareImage geometry', () => {
  test('a 200×100 image with resizeShort 73 and size 64 becomes 64×64 RGB and reports the source size', async () => {
    const png = await solid(200, 100, ORANGE).png().toBuffer();
    const prepared = await prepareImage(png, { size: 64, resizeShort: 73 });
    assert.equal(prepared.rgb.length, 64 * 64 * 3);
    assert.deepEqual(prepared.source, { format: 'png', width: 200, height: 100, bytes: png.length });
    assertUniform(prepared, ORANGE, 0);
  });

  test('a wide image is cropped to its horizontal middle: red left half and blue right half meet at the centre column', async () => {
    const png = await drawn(200, 100, (x) => (x < 100 ? RED : BLUE)).png().toBuffer();
    // 200×100 → 128×64, crop columns 32..95, so the red/blue edge lands between output columns 31 and 32.
    const prepared = await prepareImage(png, { size: 64, resizeShort: 64 });
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 64; x++) {
        if (x === 31 || x === 32) continue;
        assert.deepEqual(pixel(prepared, 64, x, y), x < 32 ? RED : BLUE, `pixel (${x}, ${y})`);
      }
    }
    const [r31, , b31] = pixel(prepared, 64, 31, 0);
    const [r32, , b32] = pixel(prepared, 64, 32, 0);
    assert.ok(r31 > b31 && b32 > r32, 'the edge is exactly at the centre');
  });

  test('a tall image is cropped to its vertical middle, not its top', async () => {
    const white: RGB = [255, 255, 255];
    const png = await drawn(60, 180, (_x, y) => (y < 60 ? RED : y < 120 ? white : BLUE)).png().toBuffer();
    // 60×180 → 32×96, crop rows 32..63: the white middle third.
    const prepared = await prepareImage(png, { size: 32, resizeShort: 32 });
    for (let y = 2; y < 30; y++) {
      for (let x = 0; x < 32; x++) assert.deepEqual(pixel(prepared, 32, x, y), white, `pixel (${x}, ${y})`);
    }
    assert.ok(pixel(prepared, 32, 16, 0)[1] > 128, 'the top row is not red');
    assert.ok(pixel(prepared, 32, 16, 31)[1] > 128, 'the bottom row is not blue');
  });

  test('a tie in the resized size rounds half to even, like the training transform\'s Python round()', async () => {
    // Short side 146 → 73 halves the long side 293 to 146.5: Python rounds to 146, Math.round to 147.
    const png = await drawn(293, 146, (x) => { const v = (x * 7) % 256; return [v, v, v]; }).png().toBuffer();
    const reference = async (resizedWidth: number) => sharp(png)
      .resize(resizedWidth, 73, { fit: 'fill', kernel: 'linear' })
      .extract({ left: Math.floor((resizedWidth - 64) / 2), top: 4, width: 64, height: 64 })
      .raw()
      .toBuffer();
    const [even, up] = await Promise.all([reference(146), reference(147)]);
    assert.ok(maxAbsDiff(even, up) > 2, 'the two candidate sizes must give distinguishable crops');
    const prepared = await prepareImage(png, { size: 64, resizeShort: 73 });
    assert.deepEqual(prepared.rgb, even);
  });

  test('a Uint8Array view into a larger buffer is read from its own offset', async () => {
    const png = await solid(32, 32, ORANGE).png().toBuffer();
    const backing = new Uint8Array(png.length + 100).fill(0xab);
    backing.set(png, 37);
    const view = backing.subarray(37, 37 + png.length);
    const prepared = await prepareImage(view, SMALL);
    assert.equal(prepared.source.bytes, png.length);
    assertUniform(prepared, ORANGE, 0);
  });
});

describe('prepareImage EXIF orientation', () => {
  // 40×20 with a red top-left quadrant on blue: asymmetric under every rotation and flip.
  const marked = () => drawn(40, 20, (x, y) => (x < 20 && y < 10 ? RED : BLUE));
  const geometry = { size: 20, resizeShort: 20 };

  test('a JPEG with orientation 6 comes out like the same picture physically rotated 90° clockwise', async () => {
    const tagged = await marked().jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
    assert.equal((await sharp(tagged).metadata()).orientation, 6, 'fixture carries orientation 6');
    const rotated = await marked().rotate(90).jpeg({ quality: 100 }).toBuffer();
    const upright = await marked().jpeg({ quality: 100 }).toBuffer();
    const [fromTag, fromPixels, unrotated] = await Promise.all([tagged, rotated, upright].map((b) => prepareImage(b, geometry)));
    assert.ok(maxAbsDiff(fromTag!.rgb, fromPixels!.rgb) <= 8, 'oriented output matches the physically rotated image');
    assert.ok(maxAbsDiff(fromTag!.rgb, unrotated!.rgb) > 200, 'and differs from ignoring the tag');
    // Clockwise: the red top-left quadrant moves to the top-right.
    assertNear(pixel(fromTag!, 20, 19, 0), RED, 8, 'top-right');
    assertNear(pixel(fromTag!, 20, 0, 0), BLUE, 8, 'top-left');
  });

  test('the source size is reported after orientation', async () => {
    const tagged = await marked().jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const prepared = await prepareImage(tagged, geometry);
    assert.deepEqual(prepared.source, { format: 'jpeg', width: 20, height: 40, bytes: tagged.length });
  });

  test('the minimum side is checked after orientation', async () => {
    // 40×15 stored, 15×40 shown: too small either way round, but reported in display orientation.
    const tagged = await solid(40, 15, RED).jpeg().withMetadata({ orientation: 8 }).toBuffer();
    await assert.rejects(prepareImage(tagged, SMALL), (err: unknown) => isAppError(err, 'IMAGE_TOO_SMALL') && /15×40/.test(err.message));
  });
});

describe('prepareImage alpha and animation', () => {
  test('a fully transparent PNG becomes white, even where its colour is black', async () => {
    const png = await solid(32, 32, [0, 0, 0, 0]).png().toBuffer();
    assertUniform(await prepareImage(png, SMALL), [255, 255, 255], 0);
  });

  test('a half-transparent red pixel blends halfway toward white', async () => {
    const png = await solid(32, 32, [255, 0, 0, 128]).png().toBuffer();
    assertUniform(await prepareImage(png, SMALL), [255, 127, 127], 2);
  });

  test('a palette PNG with a transparent entry is flattened onto white', async () => {
    const png = await solid(32, 32, [200, 100, 50, 0]).png({ palette: true }).toBuffer();
    assertUniform(await prepareImage(png, SMALL), [255, 255, 255], 0);
  });

  test('an animated GIF uses its first frame, whichever colour that is', async () => {
    const red = await solid(40, 20, RED).png().toBuffer();
    const blue = await solid(40, 20, BLUE).png().toBuffer();
    for (const [frames, first] of [[[red, blue], RED], [[blue, red], BLUE]] as const) {
      const gif = await sharp([...frames], { join: { animated: true } }).gif().toBuffer();
      assert.equal((await sharp(gif).metadata()).pages, 2, 'fixture is animated');
      const prepared = await prepareImage(gif, SMALL);
      assertUniform(prepared, first, 0);
      assert.deepEqual([prepared.source.width, prepared.source.height], [40, 20], 'one frame, not the frame strip');
    }
  });

  test('an animated WebP uses its first frame', async () => {
    const frames = await Promise.all([solid(40, 20, BLUE).png().toBuffer(), solid(40, 20, RED).png().toBuffer()]);
    const webp = await sharp(frames, { join: { animated: true } }).webp({ lossless: true }).toBuffer();
    assertUniform(await prepareImage(webp, SMALL), BLUE, 0);
  });
});

describe('prepareImage colour decoding', () => {
  for (const format of ['jpeg', 'png', 'webp', 'gif', 'tiff'] as const) {
    test(`a ${format} image decodes to its colour`, async () => {
      const bytes = await solid(32, 32, ORANGE).toFormat(format, format === 'jpeg' || format === 'webp' ? { quality: 100 } : {}).toBuffer();
      const prepared = await prepareImage(bytes, SMALL);
      assert.equal(prepared.source.format, format);
      assertUniform(prepared, ORANGE, format === 'gif' ? 8 : 3);
    });
  }

  test('a CMYK JPEG is converted to RGB', async () => {
    const jpeg = await solid(32, 32, ORANGE).toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
    assert.equal((await sharp(jpeg).metadata()).space, 'cmyk', 'fixture is CMYK');
    assertUniform(await prepareImage(jpeg, SMALL), ORANGE, 8);
  });

  test('a 16-bit PNG is scaled down to 8 bits, not clipped', async () => {
    const png = await solid(32, 32, ORANGE).toColourspace('rgb16').png().toBuffer();
    assert.equal((await sharp(png).metadata()).depth, 'ushort', 'fixture is 16-bit');
    assertUniform(await prepareImage(png, SMALL), ORANGE, 1);
  });

  test('a 16-bit PNG with an embedded Display P3 profile is converted to sRGB', async () => {
    const png = await solid(32, 32, ORANGE).toColourspace('rgb16').withIccProfile('p3').png().toBuffer();
    const meta = await sharp(png).metadata();
    assert.ok(meta.depth === 'ushort' && meta.icc, 'fixture is 16-bit with a profile');
    assertUniform(await prepareImage(png, SMALL), ORANGE, 3);
  });

  test('an 8-bit and a 16-bit greyscale PNG become equal R, G and B', async () => {
    const grey = sharp(Buffer.alloc(32 * 32, 90), { raw: { width: 32, height: 32, channels: 1 } });
    for (const space of ['b-w', 'grey16'] as const) {
      const png = await grey.clone().toColourspace(space).png().toBuffer();
      assert.equal((await sharp(png).metadata()).channels, 1, `${space} fixture has one channel`);
      assertUniform(await prepareImage(png, SMALL), [90, 90, 90], 1);
    }
  });

  test('a palette PNG decodes to its palette colours', async () => {
    const png = await drawn(32, 32, (x) => (x < 16 ? ORANGE : BLUE)).png({ palette: true, colours: 4 }).toBuffer();
    assert.equal((await sharp(png).metadata()).isPalette, true, 'fixture is a palette PNG');
    const prepared = await prepareImage(png, { size: 32, resizeShort: 32 });
    assert.deepEqual(pixel(prepared, 32, 0, 0), ORANGE);
    assert.deepEqual(pixel(prepared, 32, 31, 31), BLUE);
  });
});

describe('prepareImage errors', () => {
  test('0 bytes is IMAGE_EMPTY', async () => {
    await assertRejectsWith(prepareImage(Buffer.alloc(0), SMALL), 'IMAGE_EMPTY');
    await assertRejectsWith(prepareImage(new Uint8Array(0), SMALL), 'IMAGE_EMPTY');
  });

  test('more bytes than maxBytes is IMAGE_TOO_LARGE, and exactly maxBytes is accepted', async () => {
    const png = await solid(32, 32, ORANGE).png().toBuffer();
    await assertRejectsWith(prepareImage(png, SMALL, { ...DEFAULT_LIMITS, maxBytes: png.length - 1 }), 'IMAGE_TOO_LARGE');
    await prepareImage(png, SMALL, { ...DEFAULT_LIMITS, maxBytes: png.length });
  });

  test('errors carry the catalogue status and are not retriable', async () => {
    await assert.rejects(prepareImage(Buffer.from('hello'), SMALL), (err: unknown) => {
      assert.ok(isAppError(err, 'IMAGE_UNSUPPORTED_FORMAT'));
      assert.equal(err.status, 415);
      assert.equal(err.retriable, false);
      return true;
    });
  });

  const rand = seededRandom(7);
  const notImages: Record<string, Buffer> = {
    'random bytes': Buffer.from(Array.from({ length: 4096 }, () => Math.floor(rand() * 256))),
    'an HTML page': Buffer.from('<!doctype html>\n<html><head><title>Listing</title></head><body><img src="x.jpg"></body></html>\n'),
    'a PDF header': Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n', 'latin1'),
    'a ZIP header': Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0, 0, 0, 8, 0]), Buffer.alloc(64, 0x41)]),
    'plain text': Buffer.from('Tiger skin rug, good condition, collection only.\n'),
    'a HEIC ftyp header': Buffer.concat([Buffer.from('\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic', 'latin1'), Buffer.alloc(64)]),
    'a binary PPM (which libvips can decode)': Buffer.concat([Buffer.from('P6\n32 32\n255\n'), Buffer.alloc(32 * 32 * 3, 0x80)]),
  };
  for (const [name, bytes] of Object.entries(notImages)) {
    test(`${name} is IMAGE_UNSUPPORTED_FORMAT`, async () => {
      await assertRejectsWith(prepareImage(bytes, SMALL), 'IMAGE_UNSUPPORTED_FORMAT');
    });
  }

  test('an SVG is IMAGE_UNSUPPORTED_FORMAT although sharp can render it', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="red"/></svg>');
    assert.equal((await sharp(svg).metadata()).format, 'svg', 'sharp decodes the fixture');
    await assertRejectsWith(prepareImage(svg, SMALL), 'IMAGE_UNSUPPORTED_FORMAT');
  });

  test('an SVG declaring a huge canvas is still IMAGE_UNSUPPORTED_FORMAT, not a pixel-limit error', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="20000" height="20000"><rect width="9" height="9"/></svg>');
    await assertRejectsWith(prepareImage(svg, SMALL), 'IMAGE_UNSUPPORTED_FORMAT');
  });

  test('an AVIF image is IMAGE_UNSUPPORTED_FORMAT although sharp can decode it', async (t) => {
    if (!sharp.format.heif.output.buffer) return t.skip('this sharp build cannot encode AVIF');
    const avif = await solid(32, 32, ORANGE).avif().toBuffer();
    assert.equal((await sharp(avif).metadata()).format, 'heif', 'sharp decodes the fixture');
    await assertRejectsWith(prepareImage(avif, SMALL), 'IMAGE_UNSUPPORTED_FORMAT');
  });

  test('the first half of a JPEG is IMAGE_CORRUPT', async () => {
    const jpeg = await drawn(96, 64, (x, y) => [(x * 5) % 256, (y * 3) % 256, (x * y) % 256]).jpeg().toBuffer();
    await assertRejectsWith(prepareImage(jpeg.subarray(0, jpeg.length >> 1), SMALL), 'IMAGE_CORRUPT');
  });

  for (const format of ['png', 'webp', 'gif', 'tiff'] as const) {
    test(`the first half of a ${format} is IMAGE_CORRUPT, not unsupported`, async () => {
      const bytes = await drawn(96, 64, (x, y) => [(x * 5) % 256, (y * 3) % 256, (x * y) % 256]).toFormat(format).toBuffer();
      await assertRejectsWith(prepareImage(bytes.subarray(0, bytes.length >> 1), SMALL), 'IMAGE_CORRUPT');
    });
  }

  test('JPEG magic bytes followed by garbage are IMAGE_CORRUPT', async () => {
    await assertRejectsWith(prepareImage(Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(200, 0x5a)]), SMALL), 'IMAGE_CORRUPT');
  });

  test('a PNG declaring 12000×12000 is IMAGE_TOO_MANY_PIXELS under the default limits, from its header alone', async () => {
    const png = declaredPng(12000, 12000);
    assert.ok(png.length < 100_000 && 12000 * 12000 > DEFAULT_LIMITS.maxPixels);
    // The body is one row of a 12000-row image: decoding it would be IMAGE_CORRUPT.
    await assertRejectsWith(prepareImage(png, SMALL), 'IMAGE_TOO_MANY_PIXELS');
  });

  test('the pixel limit is checked before decoding: the same truncated PNG is corrupt once it fits the limit', async () => {
    const png = declaredPng(300, 300);
    const limits = (maxPixels: number): ImageLimits => ({ ...DEFAULT_LIMITS, maxPixels });
    await assertRejectsWith(prepareImage(png, SMALL, limits(89_999)), 'IMAGE_TOO_MANY_PIXELS');
    await assertRejectsWith(prepareImage(png, SMALL, limits(90_000)), 'IMAGE_CORRUPT');
  });

  test('a custom pixel limit applies to real images, inclusive of the limit itself', async () => {
    const png = await solid(120, 100, ORANGE).png().toBuffer();
    await assertRejectsWith(prepareImage(png, SMALL, { ...DEFAULT_LIMITS, maxPixels: 11_999 }), 'IMAGE_TOO_MANY_PIXELS');
    await prepareImage(png, SMALL, { ...DEFAULT_LIMITS, maxPixels: 12_000 });
  });

  test('a 10×10 image is IMAGE_TOO_SMALL, and a 16×16 one is accepted', async () => {
    await assertRejectsWith(prepareImage(await solid(10, 10, ORANGE).png().toBuffer(), SMALL), 'IMAGE_TOO_SMALL');
    await assertRejectsWith(prepareImage(await solid(200, 15, ORANGE).png().toBuffer(), SMALL), 'IMAGE_TOO_SMALL');
    assert.equal(DEFAULT_LIMITS.minSide, 16);
    await prepareImage(await solid(16, 16, ORANGE).png().toBuffer(), SMALL);
  });

  test('the supported formats are exactly jpeg, png, webp, gif and tiff', () => {
    assert.deepEqual([...SUPPORTED_FORMATS].sort(), ['gif', 'jpeg', 'png', 'tiff', 'webp']);
  });
});

describe('prepareImage resources', () => {
  test('200 calls, successes and failures alike, leave no sharp task queued or running', async () => {
    const good = await solid(24, 24, ORANGE).jpeg().toBuffer();
    const truncated = good.subarray(0, good.length >> 1);
    const settled = [];
    for (let batch = 0; batch < 20; batch++) {
      const calls = Array.from({ length: 10 }, (_, i) => prepareImage(i % 4 === 3 ? truncated : good, SMALL));
      settled.push(...(await Promise.allSettled(calls)));
    }
    assert.equal(settled.length, 200);
    assert.equal(settled.filter((s) => s.status === 'fulfilled').length, 160);
    for (const s of settled) {
      if (s.status === 'rejected') assert.ok(isAppError(s.reason, 'IMAGE_CORRUPT'), String(s.reason));
    }
    assert.deepEqual(sharp.counters(), { queue: 0, process: 0 });
  });
});
