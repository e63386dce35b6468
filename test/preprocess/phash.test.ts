import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { REPO_ROOT } from '../../src/config.js';
import { isAppError } from '../../src/errors.js';
import { DEFAULT_LIMITS } from '../../src/preprocess/index.js';
import { hammingDistance, hashHalves, hashImage, perceptualHash, popcount32 } from '../../src/preprocess/phash.js';
import { fingerprint } from '../../src/training/ssld/dedupe.js';
import { pngHeaderOnly } from '../helpers/images.js';
import { seededRandom } from '../helpers/synthetic.js';

const MET = path.join(REPO_ROOT, 'test/fixtures/met');
const metFiles = ['ivory_110245.jpg', 'ivory_209842.jpg', 'non_ivory_36078.jpg', 'non_ivory_467372.jpg'].map((f) => path.join(MET, f));

function slowDistance(a: bigint, b: bigint): number {
  let x = a ^ b;
  let count = 0;
  while (x) { x &= x - 1n; count++; }
  return count;
}

describe('the perceptual hash', () => {
  test('re-encoded, resized and slightly cropped copies of a photo stay close; different photos do not', async () => {
    const [a, b] = await Promise.all(metFiles.slice(0, 2).map((f) => readFile(f)));
    const ha = await perceptualHash(a!);
    const meta = await sharp(a!).metadata();
    const copies = [
      await sharp(a!).resize(Math.round(meta.width! / 2)).jpeg({ quality: 60 }).toBuffer(),
      await sharp(a!).webp({ quality: 50 }).toBuffer(),
      await sharp(a!).extract({ left: 8, top: 8, width: meta.width! - 16, height: meta.height! - 16 }).png().toBuffer(),
    ];
    for (const copy of copies) assert.ok(hammingDistance(ha, await perceptualHash(copy)) <= 10);
    assert.ok(hammingDistance(ha, await perceptualHash(b!)) > 10);
  });

  test('each Met fixture keeps the hash the SSLD dedupe gave it before the function moved to the core', async () => {
    const recorded = ['b3d3cc8cce31cc8c', 'b89e4a90d2b3935d', 'e43493cbcc669c72', 'fff0ac92b00bc30d'];
    const now = await Promise.all(metFiles.map(async (f) => (await perceptualHash(await readFile(f))).toString(16).padStart(16, '0')));
    assert.deepEqual(now, recorded);
  });

  test('the SSLD dedupe and the screening service give every photo the same hash', async () => {
    const first = await readFile(metFiles[0]!);
    const others = [await sharp(first).png().toBuffer(), await sharp(first).resize(200).webp({ quality: 50 }).toBuffer()];
    for (const file of metFiles) {
      const bytes = await readFile(file);
      const ssld = (await fingerprint(file)).phash;
      assert.equal((await hashImage(bytes)).phash, ssld, path.basename(file));
      assert.equal(await perceptualHash(bytes), ssld, path.basename(file));
    }
    for (const bytes of others) assert.equal((await hashImage(bytes)).phash, await perceptualHash(bytes));
  });

  test('untrusted bytes get the checks and error codes of preprocessing, and the photo\'s size', async () => {
    const bytes = await readFile(metFiles[0]!);
    const { source } = await hashImage(bytes);
    const meta = await sharp(bytes).metadata();
    assert.deepEqual(source, { format: 'jpeg', width: meta.width, height: meta.height, bytes: bytes.length });
    const refuses = async (input: Uint8Array, code: string) => assert.rejects(hashImage(input), (err: unknown) => isAppError(err) && err.code === code);
    await refuses(Buffer.from('not a photo'), 'IMAGE_UNSUPPORTED_FORMAT');
    await refuses(new Uint8Array(0), 'IMAGE_EMPTY');
    await refuses(pngHeaderOnly(12000, 12000), 'IMAGE_TOO_MANY_PIXELS');
    await refuses(bytes.subarray(0, bytes.length / 2), 'IMAGE_CORRUPT');
    await refuses(await sharp({ create: { width: 10, height: 40, channels: 3, background: '#808080' } }).png().toBuffer(), 'IMAGE_TOO_SMALL');
    await assert.rejects(hashImage(bytes, { ...DEFAULT_LIMITS, maxBytes: 100 }), (err: unknown) => isAppError(err, 'IMAGE_TOO_LARGE'));
  });

  test('the Hamming distance counts differing bits over both 32-bit halves', () => {
    const rand = seededRandom(5);
    const random64 = () => (BigInt(Math.floor(rand() * 2 ** 32)) << 32n) | BigInt(Math.floor(rand() * 2 ** 32));
    for (let i = 0; i < 500; i++) {
      const a = random64();
      const b = random64();
      assert.equal(hammingDistance(a, b), slowDistance(a, b));
    }
    assert.equal(hammingDistance(0n, (1n << 64n) - 1n), 64);
    assert.equal(hammingDistance(1n << 63n, 0n), 1);
    assert.deepEqual(hashHalves(0xdeadbeef_00000001n), [0xdeadbeef, 1]);
    assert.deepEqual([0, 1, 0x80000000, 0xffffffff, 0x0f0f0f0f].map(popcount32), [0, 1, 1, 32, 16]);
  });
});
