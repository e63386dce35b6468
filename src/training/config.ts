/**
 * Training configs: PaddleClas-style fixed sections (Global / Arch / Loss / Optimizer / DataLoader),
 * read from YAML and validated against one schema before anything runs. Unknown and missing keys
 * are all reported together, so a config is fixed in one pass.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Ajv } from 'ajv';
import { describeSchemaError } from '../config.js';
import { parse as parseYaml } from 'yaml';
import { AppError } from '../errors.js';
import { ARCHITECTURES } from '../model/manifest.js';

const num = { type: 'number' };
const pair = (min = 0) => ({ type: 'array', items: { type: 'number', minimum: min }, minItems: 2, maxItems: 2 });
const rgb = { type: 'array', items: num, minItems: 3, maxItems: 3 };

const datasetSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { enum: ['CSVDataset', 'ImageFolder', 'SoftLabelSet'] },
    root: { type: ['string', 'null'] },
    file: { type: 'string' },
    labels: { type: 'string' },
    split: { type: ['string', 'null'] },
  },
};

const lossEntry = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  maxProperties: 1,
  properties: {
    CELoss: {
      type: 'object', additionalProperties: false, required: ['weight'],
      properties: { weight: { type: 'number', exclusiveMinimum: 0 }, epsilon: { type: 'number', minimum: 0, maximum: 0.5 } },
    },
    JSDivLoss: {
      type: 'object', additionalProperties: false, required: ['weight'],
      properties: { weight: { type: 'number', exclusiveMinimum: 0 } },
    },
  },
};

export const TRAIN_CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['Global', 'Arch', 'Loss', 'Optimizer', 'DataLoader'],
  properties: {
    Global: {
      type: 'object', additionalProperties: false,
      required: ['epochs', 'image_size', 'resize_short', 'mean', 'std'],
      properties: {
        epochs: { type: 'integer', minimum: 1, maximum: 10000 },
        seed: { type: 'integer' },
        image_size: { type: 'integer', minimum: 32, maximum: 1024 },
        resize_short: { type: 'integer', minimum: 32, maximum: 2048 },
        mean: rgb,
        std: rgb,
        // Pixels are divided by this before mean/std: 255 (default, ImageNet mean/std in 0–1) or 1 (EfficientNet-Lite: mean 127, std 128).
        pixel_scale: { enum: [1, 255] },
        eval_interval: { type: 'integer', minimum: 1 },
        // EfficientNet-Lite with a frozen prefix (leading lr_mult 0): augmented crops per training
        // image whose prefix outputs are computed once in ONNX Runtime (wildtrain/cached.py).
        cached_views: { type: 'integer', minimum: 1, maximum: 64 },
      },
    },
    Arch: {
      type: 'object', additionalProperties: false, required: ['name'],
      properties: {
        name: { enum: ARCHITECTURES },
        pretrained: { type: ['string', 'null'] },
        lr_mult_list: { type: 'array', items: { type: 'number', minimum: 0 }, minItems: 5, maxItems: 5 },
      },
    },
    Loss: {
      type: 'object', additionalProperties: false, required: ['Train'],
      properties: { Train: { type: 'array', items: lossEntry, minItems: 1, maxItems: 2 } },
    },
    Optimizer: {
      type: 'object', additionalProperties: false, required: ['name', 'lr'],
      properties: {
        name: { const: 'Momentum' },
        momentum: { type: 'number', minimum: 0, maximum: 1 },
        lr: {
          type: 'object', additionalProperties: false, required: ['name', 'learning_rate'],
          properties: {
            name: { const: 'Cosine' },
            learning_rate: { type: 'number', exclusiveMinimum: 0 },
            warmup_epoch: { type: 'number', minimum: 0 },
            warmup_start_lr: { type: 'number', minimum: 0 },
          },
        },
        regularizer: {
          type: ['object', 'null'], additionalProperties: false, required: ['name', 'coeff'],
          properties: { name: { const: 'L2' }, coeff: { type: 'number', minimum: 0 } },
        },
      },
    },
    // An online teacher (SSLD's distillation stage): a frozen model run in Paddle on every crop the
    // student trains on; its probabilities replace stored soft labels in JSDivLoss.
    Teacher: {
      type: 'object', additionalProperties: false,
      required: ['arch', 'weights', 'class_num', 'image_size', 'mean', 'std'],
      properties: {
        arch: { enum: ARCHITECTURES },
        weights: { type: 'string', minLength: 1 },
        class_num: { type: 'integer', minimum: 2 },
        image_size: { type: 'integer', minimum: 32, maximum: 1024 },
        mean: rgb,
        std: rgb,
        pixel_scale: { enum: [1, 255] },
      },
    },
    DataLoader: {
      type: 'object', additionalProperties: false, required: ['Train'],
      properties: {
        Train: {
          type: 'object', additionalProperties: false, required: ['dataset', 'batch_size'],
          properties: {
            dataset: datasetSchema,
            batch_size: { type: 'integer', minimum: 1, maximum: 4096 },
            transforms: {
              type: 'object', additionalProperties: false,
              properties: {
                random_resized_crop: {
                  type: 'object', additionalProperties: false,
                  properties: { scale: pair(0), ratio: pair(0) },
                },
                horizontal_flip: { type: 'boolean' },
              },
            },
          },
        },
        Eval: {
          type: 'object', additionalProperties: false, required: ['dataset'],
          properties: { dataset: datasetSchema, batch_size: { type: 'integer', minimum: 1, maximum: 4096 } },
        },
      },
    },
  },
} as const;

export interface DatasetSpec {
  name: 'CSVDataset' | 'ImageFolder' | 'SoftLabelSet';
  root?: string | null;
  /** SoftLabelSet only: the JSON written by the SSLD teacher pass. */
  file?: string;
  labels?: string;
  split?: string | null;
}

/** A frozen teacher run in Paddle on each training crop (wildtrain/teacher.py). */
export interface OnlineTeacherSpec {
  arch: (typeof ARCHITECTURES)[number];
  /** Its Paddle weights (.pdparams, e.g. the training run's final.pdparams) or EfficientNet-Lite .pth. */
  weights: string;
  class_num: number;
  image_size: number;
  mean: number[];
  std: number[];
  pixel_scale?: 1 | 255;
}

export type LossEntry = { CELoss: { weight: number; epsilon?: number } } | { JSDivLoss: { weight: number } };

export interface TrainConfig {
  Global: { epochs: number; seed?: number; image_size: number; resize_short: number; mean: number[]; std: number[]; pixel_scale?: 1 | 255; eval_interval?: number; cached_views?: number };
  Arch: { name: (typeof ARCHITECTURES)[number]; pretrained?: string | null; lr_mult_list?: number[] };
  Loss: { Train: LossEntry[] };
  Optimizer: Record<string, unknown>;
  Teacher?: OnlineTeacherSpec;
  DataLoader: { Train: { dataset: DatasetSpec; batch_size: number; transforms?: Record<string, unknown> }; Eval?: { dataset: DatasetSpec; batch_size?: number } };
}

const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(TRAIN_CONFIG_SCHEMA);

export function trainConfigProblems(value: unknown): string[] {
  const problems = validate(value) ? [] : [...new Set((validate.errors ?? []).map(describeSchemaError))];
  if (problems.length === 0) {
    const cfg = value as TrainConfig;
    if (cfg.Global.resize_short < cfg.Global.image_size) problems.push('Global.resize_short: must be at least Global.image_size');
    if (cfg.Global.cached_views !== undefined && !(cfg.Arch.name.startsWith('EfficientNetLite') && cfg.Arch.lr_mult_list?.[0] === 0)) {
      problems.push('Global.cached_views: needs an EfficientNetLite* architecture with a frozen prefix (Arch.lr_mult_list starting with 0)');
    }
    const losses = cfg.Loss.Train.map((entry) => Object.keys(entry)[0]!);
    if (new Set(losses).size !== losses.length) problems.push('Loss.Train: each loss may appear once');
    const train = cfg.DataLoader.Train.dataset;
    const soft = train.name === 'SoftLabelSet';
    if (soft && !train.file) problems.push('DataLoader.Train.dataset: SoftLabelSet needs "file"');
    if (losses.includes('JSDivLoss') && !soft && !cfg.Teacher) problems.push('Loss.Train: JSDivLoss needs teacher soft labels (DataLoader.Train.dataset.name: SoftLabelSet) or an online Teacher');
    if (cfg.Teacher && !losses.includes('JSDivLoss')) problems.push('Teacher: an online teacher only feeds JSDivLoss, which Loss.Train does not have');
    if (cfg.DataLoader.Eval?.dataset.name === 'SoftLabelSet') problems.push('DataLoader.Eval.dataset: evaluation needs real labels, not SoftLabelSet');
  }
  return problems;
}

export function parseTrainConfig(value: unknown, source = 'config'): TrainConfig {
  const problems = trainConfigProblems(value);
  if (problems.length) {
    throw new AppError('TRAIN_CONFIG_INVALID', `${source} has ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  }
  return value as TrainConfig;
}

export async function loadTrainConfig(file: string): Promise<TrainConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new AppError('TRAIN_CONFIG_INVALID', `cannot read ${file}`, { cause });
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (cause) {
    throw new AppError('TRAIN_CONFIG_INVALID', `${file}: ${(cause as Error).message}`, { cause });
  }
  return parseTrainConfig(value, file);
}

function mapDatasets<T extends TrainConfig>(config: T, swap: (spec: DatasetSpec) => DatasetSpec): T {
  const { Train, Eval } = config.DataLoader;
  return { ...config, DataLoader: { ...config.DataLoader, Train: { ...Train, dataset: swap(Train.dataset) }, ...(Eval ? { Eval: { ...Eval, dataset: swap(Eval.dataset) } } : {}) } };
}

/** The config with every CSV dataset reading `labelsFile` (made absolute) instead of its own labels. */
export function withLabelsFile<T extends TrainConfig>(config: T, labelsFile: string | undefined): T {
  if (!labelsFile) return config;
  const labels = path.resolve(labelsFile);
  return mapDatasets(config, (spec) => (spec.name === 'CSVDataset' ? { ...spec, labels } : spec));
}

/**
 * The config as a manifest records it: dataset paths relative to `base`, so a model.json says
 * `runs/wildlife-v2-calib/labels.csv` rather than one machine's absolute checkout path.
 */
export function withRelativeDataPaths<T extends TrainConfig>(config: T, base: string): T {
  const rel = (p: string | null | undefined) => (typeof p === 'string' && path.isAbsolute(p) ? path.relative(base, p) || '.' : p);
  return mapDatasets(config, (spec) => ({
    ...spec,
    ...(spec.root !== undefined ? { root: rel(spec.root) } : {}),
    ...(spec.file !== undefined ? { file: rel(spec.file) as string } : {}),
    ...(spec.labels !== undefined ? { labels: rel(spec.labels) as string } : {}),
  }));
}
