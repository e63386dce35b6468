/**
 * Bilinear enlargement that reproduces Pillow's Image.resize(..., BILINEAR) bit for bit, for the
 * photos whose short side is below the model's resize_short. libvips enlarges with a different
 * pixel-centre alignment (measured: ~8 grey levels mean, 120 max on a 197-pixel-wide photo
 * enlarged to 256), which would be train/serve skew for every small photo. Reductions stay with
 * libvips, whose antialiased reduce agrees with Pillow's to well under one level on average.
 *
 * Pillow resamples horizontally then vertically, rounding to 8 bits in between, with fixed-point
 * weights of 22 fractional bits (libImaging/Resample.c); so does this. Only the pixels of the
 * centre crop are computed.
 */
const PRECISION_BITS = 22;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

interface Taps { first: Int32Array; count: Int32Array; weights: Float64Array; stride: number }

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the triangle filter, output range [from, from + n). */
function taps(inSize: number, outSize: number, from: number, n: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(n);
  const count = new Int32Array(n);
  const weights = new Float64Array(n * stride);
  for (let i = 0; i < n; i++) {
    const center = (from + i + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    let total = 0;
    const raw: number[] = [];
    for (let x = lo; x < hi; x++) {
      const w = Math.max(0, 1 - Math.abs((x - center + 0.5) / filterScale));
      raw.push(w);
      total += w;
    }
    first[i] = lo;
    count[i] = raw.length;
    raw.forEach((w, k) => {
      const v = total !== 0 ? w / total : 0;
      weights[i * stride + k] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    });
  }
  return { first, count, weights, stride };
}

const clip8 = (ss: number) => Math.min(255, Math.max(0, Math.floor(ss / ONE)));

/** RGB (HWC, uint8) width×height → the size×size crop at (left, top) of its resize to outW×outH. */
export function enlargeAndCrop(rgb: Buffer, width: number, height: number, outW: number, outH: number, left: number, top: number, size: number): Buffer {
  const h = taps(width, outW, left, size);
  const v = taps(height, outH, top, size);
  // Horizontal pass over just the source rows the vertical taps read.
  const rowLo = v.first[0]!;
  const rowHi = v.first[size - 1]! + v.count[size - 1]!;
  const mid = new Uint8Array((rowHi - rowLo) * size * 3);
  for (let y = rowLo; y < rowHi; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 3; c++) {
        let ss = HALF;
        for (let k = 0; k < h.count[x]!; k++) ss += rgb[(y * width + h.first[x]! + k) * 3 + c]! * h.weights[x * h.stride + k]!;
        mid[((y - rowLo) * size + x) * 3 + c] = clip8(ss);
      }
    }
  }
  const out = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 3; c++) {
        let ss = HALF;
        for (let k = 0; k < v.count[y]!; k++) ss += mid[((v.first[y]! - rowLo + k) * size + x) * 3 + c]! * v.weights[y * v.stride + k]!;
        out[(y * size + x) * 3 + c] = clip8(ss);
      }
    }
  }
  return out;
}
