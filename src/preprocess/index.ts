/**
 * Image bytes → model input tensor, with sharp. The geometry and normalisation come from the
 * model's manifest (PreprocessSpec + input size), so serving matches the training-time eval
 * transform: short side resized (bilinear), centre crop, (pixel / pixelScale − mean) / std, NCHW
 * float32. modelInputs() is the entry point; several models screening one photo share work only
 * where their specs agree exactly.
 */
import sharp, { type Metadata } from 'sharp';
import { AppError } from '../errors.js';
import { enlargeAndCrop } from './upsample.js';

export interface ImageGeometry {
  /** Square crop fed to the model. */
  size: number;
  /** Short side after resize, before the centre crop. */
  resizeShort: number;
  /** The only ones implemented; named so that a new kind cannot be shared with the old by accident. */
  interpolation?: 'bilinear';
  crop?: 'center';
}

export interface TensorSpec extends ImageGeometry {
  mean: readonly [number, number, number] | readonly number[];
  std: readonly [number, number, number] | readonly number[];
  /** Pixels are divided by this before mean/std apply: 255 (the default) or 1. */
  pixelScale?: number;
}

export interface ImageLimits {
  maxBytes: number;
  maxPixels: number;
  minSide: number;
}

export const DEFAULT_LIMITS: ImageLimits = Object.freeze({
  maxBytes: 20 * 1024 * 1024,
  // 40 MP: above any real listing photo, far below a decompression bomb.
  maxPixels: 40_000_000,
  minSide: 16,
});

export const SUPPORTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff']);

export interface SourceInfo {
  format: string;
  width: number;
  height: number;
  bytes: number;
}

export interface PreparedImage {
  /** RGB, HWC, uint8, size × size. */
  rgb: Buffer;
  source: SourceInfo;
}

/**
 * Magic-byte sniff, before any decoder runs: libvips would happily decode SVG, HEIF, PDF, PPM and
 * more, and each extra decoder reachable from untrusted bytes is attack surface. It also lets a
 * decoder failure on a recognised format be reported as corruption rather than "unsupported".
 */
function sniffFormat(b: Uint8Array): string | undefined {
  const ascii = (start: number, text: string) => text.split('').every((ch, i) => b[start + i] === ch.charCodeAt(0));
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (ascii(0, '\x89PNG\r\n\x1a\n')) return 'png';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  // Classic TIFF (42) and BigTIFF (43), either byte order.
  if ((ascii(0, 'II') && (b[2] === 42 || b[2] === 43) && b[3] === 0) || (ascii(0, 'MM') && b[2] === 0 && (b[3] === 42 || b[3] === 43))) return 'tiff';
  return undefined;
}

/** Only called once the magic bytes matched a supported format, so any decoder failure is corruption. */
export function classifySharpError(err: unknown): AppError {
  const message = (err as Error)?.message ?? String(err);
  if (/pixel limit/i.test(message)) return new AppError('IMAGE_TOO_MANY_PIXELS', undefined, { cause: err });
  return new AppError('IMAGE_CORRUPT', message.split('\n')[0], { cause: err });
}

/** Python's round() (ties to even), which the training transform uses for the resized size. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** sharp input options for untrusted bytes: the pixel limit enforced by the decoder too, first frame only. */
export function decodeOptions(limits: ImageLimits = DEFAULT_LIMITS) {
  return { limitInputPixels: limits.maxPixels, failOn: 'error' as const, pages: 1 };
}

/**
 * The checks every decode of untrusted bytes goes through first, from the bytes and the header
 * alone: size, magic bytes, the format sharp sees, pixel count and minimum side (after EXIF
 * orientation, which is also how the size is reported).
 */
export async function inspectImage(bytes: Uint8Array, limits: ImageLimits = DEFAULT_LIMITS): Promise<SourceInfo> {
  if (bytes.length === 0) throw new AppError('IMAGE_EMPTY');
  if (bytes.length > limits.maxBytes) {
    throw new AppError('IMAGE_TOO_LARGE', `${bytes.length} bytes, limit ${limits.maxBytes}.`);
  }
  const sniffed = sniffFormat(bytes);
  if (!sniffed) throw new AppError('IMAGE_UNSUPPORTED_FORMAT');
  let meta: Metadata;
  try {
    meta = await sharp(bytes, decodeOptions(limits)).metadata();
  } catch (err) {
    throw classifySharpError(err);
  }
  if (!meta.format || meta.format !== sniffed || !SUPPORTED_FORMATS.has(meta.format)) {
    throw new AppError('IMAGE_UNSUPPORTED_FORMAT', meta.format ? `Got ${meta.format}.` : undefined);
  }
  const rawWidth = meta.width ?? 0;
  const rawHeight = meta.pageHeight ?? meta.height ?? 0;
  if (rawWidth * rawHeight > limits.maxPixels) {
    throw new AppError('IMAGE_TOO_MANY_PIXELS', `${rawWidth}×${rawHeight}, limit ${limits.maxPixels} pixels.`);
  }
  // EXIF orientations 5–8 rotate by 90°, swapping width and height.
  const swapped = (meta.orientation ?? 1) >= 5;
  const width = swapped ? rawHeight : rawWidth;
  const height = swapped ? rawWidth : rawHeight;
  if (Math.min(width, height) < limits.minSide) {
    throw new AppError('IMAGE_TOO_SMALL', `${width}×${height}, minimum side ${limits.minSide}.`);
  }
  return { format: meta.format, width, height, bytes: bytes.length };
}

/**
 * Decodes, orients, flattens and crops one image to the model's geometry. `inspected` is what
 * inspectImage() already said of these bytes under these limits (its checks then need not run again).
 */
export async function prepareImage(bytes: Uint8Array, geometry: ImageGeometry, limits: ImageLimits = DEFAULT_LIMITS, inspected?: SourceInfo): Promise<PreparedImage> {
  const source = inspected ?? await inspectImage(bytes, limits);
  const { width, height } = source;
  const options = decodeOptions(limits);
  const scale = geometry.resizeShort / Math.min(width, height);
  const resizedWidth = Math.max(geometry.size, roundHalfEven(width * scale));
  const resizedHeight = Math.max(geometry.size, roundHalfEven(height * scale));
  const left = Math.floor((resizedWidth - geometry.size) / 2);
  const top = Math.floor((resizedHeight - geometry.size) / 2);
  try {
    // An sRGB 8-bit pipeline: otherwise 16-bit input with an embedded profile is only converted to
    // P3 and its P3 values then read as sRGB, and the resize runs on 16-bit values that are
    // truncated (not rounded) to 8 bits afterwards. Training (PIL) also resizes 8-bit RGB.
    const decode = sharp(bytes, options).pipelineColourspace('srgb').autoOrient().flatten({ background: '#ffffff' });
    if (resizedWidth > width || resizedHeight > height) {
      // Enlarging: libvips and Pillow disagree (see upsample.ts), so decode as is and enlarge here.
      const { data, info } = await decode.toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
      if (info.channels !== 3 || info.width !== width || info.height !== height) {
        throw new Error(`unexpected decoded layout: ${info.width}×${info.height}×${info.channels}`);
      }
      return { rgb: enlargeAndCrop(data, width, height, resizedWidth, resizedHeight, left, top, geometry.size), source };
    }
    const { data, info } = await decode
      .resize(resizedWidth, resizedHeight, { fit: 'fill', kernel: 'linear' })
      .extract({ left, top, width: geometry.size, height: geometry.size })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== geometry.size * geometry.size * 3) {
      throw new Error(`unexpected decoded layout: ${info.width}×${info.height}×${info.channels}`);
    }
    return { rgb: data, source };
  } catch (err) {
    throw err instanceof AppError ? err : classifySharpError(err);
  }
}

/**
 * Writes the normalised CHW tensor of `rgb` into `out` at `offset` (in floats), so a batcher can
 * fill one preallocated batch buffer without copies.
 */
export function writeTensor(rgb: Buffer, spec: TensorSpec, out: Float32Array, offset = 0): void {
  const plane = spec.size * spec.size;
  if (rgb.length !== plane * 3) throw new RangeError(`expected ${plane * 3} bytes of RGB, got ${rgb.length}`);
  if (spec.mean.length !== 3 || spec.std.length !== 3) throw new RangeError('mean and std need one value per RGB channel');
  if (!Number.isInteger(offset) || offset < 0) throw new RangeError(`offset must be a non-negative integer, got ${offset}`);
  if (out.length < offset + plane * 3) throw new RangeError('output buffer too small');
  const pixelScale = spec.pixelScale ?? 255;
  if (!(pixelScale > 0)) throw new RangeError(`pixelScale must be positive, got ${pixelScale}`);
  for (let c = 0; c < 3; c++) {
    const scale = 1 / (pixelScale * spec.std[c]!);
    const shift = spec.mean[c]! / spec.std[c]!;
    const base = offset + c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = rgb[i * 3 + c]! * scale - shift;
  }
}

/** What preprocessing reads of a model's manifest (src/model/manifest.ts's ModelManifest is one). */
export interface ModelPreprocessing {
  input: { size: number };
  preprocess: { resize_short: number; mean: readonly number[]; std: readonly number[]; pixel_scale?: number; interpolation?: 'bilinear'; crop?: 'center' };
}

export function tensorSpecOf(manifest: ModelPreprocessing): TensorSpec {
  const p = manifest.preprocess;
  return {
    size: manifest.input.size, resizeShort: p.resize_short, interpolation: p.interpolation ?? 'bilinear', crop: p.crop ?? 'center',
    mean: p.mean, std: p.std, pixelScale: p.pixel_scale ?? 255,
  };
}

/** Everything that changes the decoded, resized and cropped pixels. */
export function geometryKey(g: ImageGeometry): string {
  return JSON.stringify([g.size, g.resizeShort, g.interpolation ?? 'bilinear', g.crop ?? 'center']);
}

/** Everything that changes the tensor: the geometry and the normalisation. */
export function tensorKey(spec: TensorSpec): string {
  return JSON.stringify([geometryKey(spec), [...spec.mean], [...spec.std], spec.pixelScale ?? 255]);
}

export interface ModelInput {
  /** NCHW float32, 3 × size × size; shared between models with equal specs, so read-only. */
  tensor: Float32Array;
  source: SourceInfo;
}

/**
 * A photo → each model's input tensor, with each model's preprocessing read from its manifest: the
 * one way the service, its shadow candidate and the evaluator prepare a photo. The header is
 * checked once (or not at all when the caller's inspectImage() answer is given); it decodes once
 * per distinct geometry and normalises once per distinct full spec, so models share a tensor only
 * if every preprocessing setting agrees. Results are in `models` order.
 */
export async function modelInputs(bytes: Uint8Array, models: readonly ModelPreprocessing[], limits: ImageLimits = DEFAULT_LIMITS, inspected?: SourceInfo): Promise<ModelInput[]> {
  const source = inspected ?? await inspectImage(bytes, limits);
  const decoded = new Map<string, Promise<PreparedImage>>();
  const tensors = new Map<string, Promise<ModelInput>>();
  return Promise.all(models.map((model) => {
    const spec = tensorSpecOf(model);
    const key = tensorKey(spec);
    let tensor = tensors.get(key);
    if (!tensor) {
      const geometry = geometryKey(spec);
      let image = decoded.get(geometry);
      if (!image) decoded.set(geometry, (image = prepareImage(bytes, spec, limits, source)));
      tensor = image.then((prepared) => {
        const out = new Float32Array(3 * spec.size * spec.size);
        writeTensor(prepared.rgb, spec, out);
        return { tensor: out, source: prepared.source };
      });
      tensors.set(key, tensor);
    }
    return tensor;
  }));
}

/** One model's input tensor: modelInputs() for a single model. */
export async function modelInput(bytes: Uint8Array, model: ModelPreprocessing, limits: ImageLimits = DEFAULT_LIMITS, inspected?: SourceInfo): Promise<ModelInput> {
  return (await modelInputs(bytes, [model], limits, inspected))[0]!;
}
