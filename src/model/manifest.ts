/**
 * model.json: everything the service, the evaluator and an auditor need to know about one model
 * directory. Preprocessing settings live here (not in code) so serving matches training exactly.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { Ajv } from 'ajv';
import { ScreeningError } from '../errors.js';

export const MANIFEST_FILE = 'model.json';
export const ONNX_FILE = 'model.onnx';
export const ARCHITECTURES = ['ResNet18_vd', 'ResNet34_vd', 'ResNet50_vd', 'ResNet101_vd', 'ResNet152_vd', 'ResNet200_vd'] as const;

export interface LabelSpec {
  name: string;
  trade_relevant: boolean;
  /** Softmax score at or above which this label flags an image; null for benign labels. */
  threshold: number | null;
}

export interface PreprocessSpec {
  resize_short: number;
  interpolation: 'bilinear';
  crop: 'center';
  mean: [number, number, number];
  std: [number, number, number];
}

export interface ModelManifest {
  schema_version: 1;
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
    schema_version: { const: 1 },
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
    for (const e of validateSchema.errors ?? []) {
      problems.push(`${e.instancePath || '/'} ${e.message ?? 'is invalid'}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
    }
    return problems;
  }
  const m = value as ModelManifest;
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

export function parseManifest(value: unknown, source: string): ModelManifest {
  const problems = manifestProblems(value);
  if (problems.length) {
    throw new ScreeningError('MODEL_MANIFEST_INVALID', `${source}:\n  ${problems.join('\n  ')}`);
  }
  return value as ModelManifest;
}

export async function readManifest(dir: string): Promise<ModelManifest> {
  const file = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new ScreeningError('MODEL_FILE_MISSING', file, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ScreeningError('MODEL_MANIFEST_INVALID', `${file}: not JSON`, { cause });
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
