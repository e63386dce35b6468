/**
 * model.json: everything the service, the evaluator and an auditor need to know about one model
 * directory. Preprocessing settings live here (not in code) so serving matches training exactly.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { Ajv } from 'ajv';
import { describeSchemaError } from '../config.js';
import { AppError } from '../errors.js';

export const MANIFEST_FILE = 'model.json';
export const ONNX_FILE = 'model.onnx';
export const ARCHITECTURES = [
  'ResNet18_vd', 'ResNet34_vd', 'ResNet50_vd', 'ResNet101_vd', 'ResNet152_vd', 'ResNet200_vd',
  'EfficientNetLite0', 'EfficientNetLite1', 'EfficientNetLite2',
] as const;
/** Written by this version. Version 1 (no pixel_scale: always 255) is read and migrated in memory. */
export const MANIFEST_VERSION = 2;

export interface LabelSpec {
  name: string;
  trade_relevant: boolean;
  /** Softmax score at or above which this label flags an image; null for benign labels. */
  threshold: number | null;
}

/**
 * x = (pixel / pixel_scale − mean) / std, after resizing the short side to resize_short and taking
 * the centre input.size square. PaddleClas models use pixel_scale 255 with ImageNet mean/std;
 * TensorFlow's EfficientNet-Lite uses pixel_scale 1, mean 127, std 128.
 */
export interface PreprocessSpec {
  /** The short side before the centre crop, always concrete (whatever rule produced it). */
  resize_short: number;
  /** When the rule is "short side = size / crop_ratio" (TF/timm style), the ratio; resize_short is its floor. */
  crop_ratio?: number;
  interpolation: 'bilinear';
  crop: 'center';
  mean: [number, number, number];
  std: [number, number, number];
  pixel_scale: 1 | 255;
}

export interface ModelManifest {
  /** Always the current version in memory: readManifest migrates older files. */
  schema_version: typeof MANIFEST_VERSION;
  name: string;
  version: string;
  architecture: (typeof ARCHITECTURES)[number];
  precision: 'fp32' | 'fp16' | 'int8';
  /** How an INT8 model was quantized; "weights" asks the engine to fold the dequantization at load. */
  quantization?: { method: 'weights' | 'static' };
  input: { name: string; size: number; layout: 'NCHW'; channels: 'RGB' };
  output: { name: string; kind: 'logits' };
  preprocess: PreprocessSpec;
  labels: LabelSpec[];
  sha256: string;
  created: string;
  pretrained: { source: string | null; note: string };
  training: Record<string, unknown>;
  metrics: Record<string, unknown>;
}

const triple = { type: 'array', items: { type: 'number' }, minItems: 3, maxItems: 3 };
const MANIFEST_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['schema_version', 'name', 'version', 'architecture', 'precision', 'input', 'output', 'preprocess',
    'labels', 'sha256', 'created', 'pretrained', 'training', 'metrics'],
  properties: {
    schema_version: { enum: [1, MANIFEST_VERSION] },
    name: { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' },
    version: { type: 'string', pattern: '^\\d+\\.\\d+\\.\\d+([-+][0-9A-Za-z.-]+)?$' },
    architecture: { enum: ARCHITECTURES },
    precision: { enum: ['fp32', 'fp16', 'int8'] },
    quantization: { type: 'object', additionalProperties: false, required: ['method'], properties: { method: { enum: ['weights', 'static'] } } },
    input: {
      type: 'object', additionalProperties: false, required: ['name', 'size', 'layout', 'channels'],
      properties: {
        name: { type: 'string', minLength: 1 }, size: { type: 'integer', minimum: 16, maximum: 1024 },
        layout: { const: 'NCHW' }, channels: { const: 'RGB' },
      },
    },
    output: {
      type: 'object', additionalProperties: false, required: ['name', 'kind'],
      properties: { name: { type: 'string', minLength: 1 }, kind: { const: 'logits' } },
    },
    preprocess: {
      type: 'object', additionalProperties: false, required: ['resize_short', 'interpolation', 'crop', 'mean', 'std'],
      properties: {
        resize_short: { type: 'integer', minimum: 16, maximum: 2048 }, interpolation: { const: 'bilinear' },
        crop: { const: 'center' }, mean: triple, std: { ...triple, items: { type: 'number', exclusiveMinimum: 0 } },
        crop_ratio: { type: 'number', exclusiveMinimum: 0, maximum: 1 }, pixel_scale: { enum: [1, 255] },
      },
    },
    labels: {
      type: 'array', minItems: 2,
      items: {
        type: 'object', additionalProperties: false, required: ['name', 'trade_relevant', 'threshold'],
        properties: {
          name: { type: 'string', minLength: 1 }, trade_relevant: { type: 'boolean' },
          threshold: { type: ['number', 'null'], minimum: 0, maximum: 1 },
        },
      },
    },
    sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
    created: { type: 'string' },
    pretrained: {
      type: 'object', additionalProperties: false, required: ['source', 'note'],
      properties: { source: { type: ['string', 'null'] }, note: { type: 'string' } },
    },
    training: { type: 'object' },
    metrics: { type: 'object' },
  },
} as const;

const ajv = new Ajv({ allErrors: true });
const validateSchema = ajv.compile(MANIFEST_SCHEMA);

/** Every problem at once, so a broken manifest is fixed in one pass. */
export function manifestProblems(value: unknown): string[] {
  const problems: string[] = [];
  if (!validateSchema(value)) {
    // The same wording as every other file this project validates (config, training configs).
    return [...new Set((validateSchema.errors ?? []).map(describeSchemaError))];
  }
  const m = value as Omit<ModelManifest, 'schema_version' | 'preprocess'> & { schema_version: number; preprocess: Partial<PreprocessSpec> & Omit<PreprocessSpec, 'pixel_scale'> };
  const pre = m.preprocess;
  if (m.schema_version === 1 && (pre.pixel_scale !== undefined || pre.crop_ratio !== undefined)) {
    problems.push(`/preprocess pixel_scale and crop_ratio need schema_version ${MANIFEST_VERSION}`);
  }
  if (m.schema_version === MANIFEST_VERSION && pre.pixel_scale === undefined) problems.push("/preprocess must have required property 'pixel_scale'");
  // A mean in the other unit is the likeliest way to get this wrong: 127 with scale 255 (or 0.5 with scale 1).
  const scale = pre.pixel_scale ?? 255;
  const range = 255 / scale;
  if (pre.mean.some((v) => v < 0 || v > range)) problems.push(`/preprocess mean ${JSON.stringify(pre.mean)} is outside 0–${range}, the pixel range pixel_scale ${scale} gives`);
  else if (scale === 1 && pre.mean.every((v) => v <= 1)) problems.push('/preprocess mean looks like 0–1 units but pixel_scale 1 means 0–255 units');
  if (pre.crop_ratio !== undefined && pre.resize_short !== Math.floor(m.input.size / pre.crop_ratio)) {
    problems.push(`/preprocess resize_short ${pre.resize_short} is not floor(input.size / crop_ratio) = ${Math.floor(m.input.size / pre.crop_ratio)}`);
  }
  const names = new Set<string>();
  for (const label of m.labels) {
    if (names.has(label.name)) problems.push(`/labels duplicate label ${label.name}`);
    names.add(label.name);
    if (label.trade_relevant && label.threshold === null) problems.push(`/labels ${label.name} is trade-relevant but has no threshold`);
  }
  if (m.preprocess.resize_short < m.input.size) problems.push('/preprocess resize_short must be at least input.size');
  if ((m.precision === 'int8') !== (m.quantization !== undefined)) problems.push('/quantization is required for int8 models and only for them');
  return problems;
}

/** Validates and migrates to the current version (v1 → v2: its implicit pixel_scale 255 made explicit). */
export function parseManifest(value: unknown, source: string): ModelManifest {
  const problems = manifestProblems(value);
  if (problems.length) {
    throw new AppError('MODEL_MANIFEST_INVALID', `${source}:\n  ${problems.join('\n  ')}`);
  }
  const m = value as ModelManifest;
  if ((m.schema_version as number) === MANIFEST_VERSION) return m;
  return { ...m, schema_version: MANIFEST_VERSION, preprocess: { ...m.preprocess, pixel_scale: 255 } };
}

export async function readManifest(dir: string): Promise<ModelManifest> {
  const file = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new AppError('MODEL_FILE_MISSING', file, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new AppError('MODEL_MANIFEST_INVALID', `${file}: not JSON`, { cause });
  }
  return parseManifest(json, file);
}

export async function writeManifest(dir: string, manifest: ModelManifest): Promise<void> {
  parseManifest(manifest, path.join(dir, MANIFEST_FILE));
  const tmp = path.join(dir, `${MANIFEST_FILE}.tmp`);
  await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  await rename(tmp, path.join(dir, MANIFEST_FILE));
}

export async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
