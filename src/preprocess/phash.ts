/**
 * The 64-bit DCT perceptual hash (pHash) of a photo, the one implementation behind both near-
 * duplicate checks: the SSLD dedupe (training keeps copies of val photos out of the unlabelled pool)
 * and the screening service's near-duplicate cache. Both must call the same photo the same, so
 * neither keeps a variant of its own. It survives re-encoding, resizing and small crops, the usual
 * fate of a photo reposted on a marketplace (distances measured in docs/BENCHMARKS.md,
 * "Near-duplicate cache").
 */
import sharp, { type SharpOptions } from 'sharp';
import { classifySharpError, decodeOptions, DEFAULT_LIMITS, inspectImage, type ImageLimits, type SourceInfo } from './index.js';

const SIDE = 32;
const BASIS = Array.from({ length: 8 }, (_, u) => Array.from({ length: SIDE }, (_, x) => Math.cos(((2 * x + 1) * u * Math.PI) / (2 * SIDE))));

/**
 * 32×32 greyscale, 2-D DCT, the 8×8 lowest frequencies, one bit per coefficient above their median
 * (DC left out of the median): 31 AC bits are set, and DC's unless the photo is black, so distances
 * come out even. Its own decode straight to 32×32 costs about half (12 MP) to two thirds (val-size
 * photos) of the model's preprocessing; it cannot reuse the model's input, which is centre-cropped.
 */
async function hashOf(bytes: Uint8Array, options: SharpOptions): Promise<bigint> {
  const px = await sharp(bytes, options).rotate().flatten({ background: '#ffffff' }).greyscale()
    .resize(SIDE, SIDE, { fit: 'fill', kernel: 'linear' }).toColourspace('b-w').raw().toBuffer();
  const rows = Array.from({ length: SIDE }, (_, y) => BASIS.map((basis) => {
    let sum = 0;
    for (let x = 0; x < SIDE; x++) sum += px[y * SIDE + x]! * basis[x]!;
    return sum;
  }));
  const coefficients: number[] = [];
  for (let v = 0; v < 8; v++) {
    for (let u = 0; u < 8; u++) {
      let sum = 0;
      for (let y = 0; y < SIDE; y++) sum += rows[y]![u]! * BASIS[v]![y]!;
      coefficients.push(sum);
    }
  }
  const median = coefficients.slice(1).sort((a, b) => a - b)[31]!;
  let hash = 0n;
  for (const c of coefficients) hash = (hash << 1n) | (c > median ? 1n : 0n);
  return hash;
}

/** The pHash of trusted bytes (dataset and pool files): sharp's own limits, failures as sharp raises them. */
export function perceptualHash(bytes: Uint8Array): Promise<bigint> {
  return hashOf(bytes, { failOn: 'error' });
}

/**
 * The pHash of untrusted bytes, after the checks every decode in the service goes through
 * (inspectImage: size, format, pixel limit, minimum side) and with the same catalogue errors, plus
 * what those checks learnt about the photo. Equal to perceptualHash() for every photo both accept.
 */
export async function hashImage(bytes: Uint8Array, limits: ImageLimits = DEFAULT_LIMITS): Promise<{ phash: bigint; source: SourceInfo }> {
  const source = await inspectImage(bytes, limits);
  try {
    return { phash: await hashOf(bytes, decodeOptions(limits)), source };
  } catch (err) {
    throw classifySharpError(err);
  }
}

/** Set bits of a 32-bit integer (SWAR): hashes are compared as two Number halves, no BigInt in the loop. */
export function popcount32(value: number): number {
  let v = value - ((value >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/** The upper and lower 32 bits of a 64-bit hash, as unsigned Numbers. */
export function hashHalves(hash: bigint): [hi: number, lo: number] {
  return [Number((hash >> 32n) & 0xffffffffn), Number(hash & 0xffffffffn)];
}

export function hammingDistance(a: bigint, b: bigint): number {
  const [hi, lo] = hashHalves(a ^ b);
  return popcount32(hi) + popcount32(lo);
}
