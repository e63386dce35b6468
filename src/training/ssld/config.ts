/**
 * SSLD configs (configs/train/ssld-*.yaml): the student's ordinary training sections plus one SSLD
 * section, validated together before anything runs. The loop runs two Paddle stages, and both get
 * a plain training config derived here, which passes the same validation as any other:
 *   distill  — labelled + mined images, JS divergence against the frozen teacher's soft labels
 *              (plus optional cross-entropy on the labelled ones);
 *   finetune — labelled images only, the config's own Loss, starting from the distilled weights.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { describeSchemaError } from '../../config.js';
import { AppError } from '../../errors.js';
import type { ModelManifest } from '../../model/manifest.js';
import { PRETRAINED } from '../pretrained.js';
import { TRAIN_CONFIG_SCHEMA, trainConfigProblems, type LossEntry, type OnlineTeacherSpec, type TrainConfig } from '../config.js';

export interface SsldSection {
  /** Teacher model directory (model.json + model.onnx), run by the serving engine. */
  teacher: string;
  /**
   * The teacher's Paddle weights (its training run's final.pdparams), for an online teacher
   * (distill.online): model directories hold ONNX only.
   */
  teacher_weights?: string | null;
  /** The model the candidate must beat (default: the teacher). */
  baseline?: string | null;
  /** Unlabelled sources: service pool directories (index.jsonl), image folders, or .txt path lists. */
  pool: string[];
  /** Analysts' labelled sets (directories holding labels.csv, from npm run labels:*). */
  labeled_sets?: string[];
  mining: { top_k: number; min_score?: number; phash_max_distance?: number };
  /** online: the teacher, in Paddle, scores every augmented crop the student sees (needs teacher_weights). */
  distill: { epochs: number; js_weight?: number; ce_weight?: number; learning_rate?: number; online?: boolean };
  finetune: { epochs: number; learning_rate: number };
  /**
   * ImageNet knowledge first (SSLD in its original sense): the student learns an ImageNet-pretrained
   * EfficientNet-Lite's full 1000-class soft labels, online, on every labelled and pool image
   * (labels unused), then starts the wildlife stages from those weights. For a randomly initialised
   * student such as ResNet50_vd.
   */
  imagenet_distill?: { teacher: keyof typeof PRETRAINED; epochs: number; learning_rate?: number } | null;
  /** Thresholds for the student, calibrated on its labelled train images: "f1", a precision, or null to keep 0.5. */
  calibrate?: 'f1' | number | null;
}

export type SsldConfig = TrainConfig & { SSLD: SsldSection };

const paths = { type: 'array', items: { type: 'string', minLength: 1 } };
const SSLD_SECTION_SCHEMA = {
  type: 'object', additionalProperties: false,
  required: ['teacher', 'pool', 'mining', 'distill', 'finetune'],
  properties: {
    teacher: { type: 'string', minLength: 1 },
    teacher_weights: { type: ['string', 'null'], minLength: 1 },
    baseline: { type: ['string', 'null'] },
    pool: paths,
    labeled_sets: paths,
    mining: {
      type: 'object', additionalProperties: false, required: ['top_k'],
      properties: {
        top_k: { type: 'integer', minimum: 1 },
        min_score: { type: 'number', minimum: 0, maximum: 1 },
        phash_max_distance: { type: 'integer', minimum: 0, maximum: 32 },
      },
    },
    distill: {
      type: 'object', additionalProperties: false, required: ['epochs'],
      properties: {
        epochs: { type: 'integer', minimum: 1, maximum: 10000 },
        js_weight: { type: 'number', exclusiveMinimum: 0 },
        ce_weight: { type: 'number', minimum: 0 },
        learning_rate: { type: 'number', exclusiveMinimum: 0 },
        online: { type: 'boolean' },
      },
    },
    finetune: {
      type: 'object', additionalProperties: false, required: ['epochs', 'learning_rate'],
      properties: { epochs: { type: 'integer', minimum: 0, maximum: 10000 }, learning_rate: { type: 'number', exclusiveMinimum: 0 } },
    },
    imagenet_distill: {
      type: ['object', 'null'], additionalProperties: false, required: ['teacher', 'epochs'],
      properties: {
        teacher: { enum: Object.keys(PRETRAINED) },
        epochs: { type: 'integer', minimum: 1, maximum: 10000 },
        learning_rate: { type: 'number', exclusiveMinimum: 0 },
      },
    },
    calibrate: { anyOf: [{ const: 'f1' }, { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 }, { type: 'null' }] },
  },
};

const SSLD_CONFIG_SCHEMA = {
  ...TRAIN_CONFIG_SCHEMA,
  required: [...TRAIN_CONFIG_SCHEMA.required, 'SSLD'],
  properties: { ...TRAIN_CONFIG_SCHEMA.properties, SSLD: SSLD_SECTION_SCHEMA },
};

const validate = new Ajv({ allErrors: true, strict: false }).compile(SSLD_CONFIG_SCHEMA);

export function ssldConfigProblems(value: unknown): string[] {
  if (!validate(value)) return [...new Set((validate.errors ?? []).map(describeSchemaError))];
  const cfg = value as unknown as SsldConfig;
  const { SSLD: _ssld, ...train } = cfg;
  const problems = trainConfigProblems(train);
  if (cfg.Loss.Train.some((e) => 'JSDivLoss' in e)) problems.push('Loss.Train: the SSLD config\'s Loss is the fine-tune loss; the distillation loss comes from SSLD.distill');
  if (cfg.DataLoader.Train.dataset.name === 'SoftLabelSet') problems.push('DataLoader.Train.dataset: name the labelled data (CSVDataset or ImageFolder); soft labels are made by the loop');
  if (cfg.SSLD.distill.online && !cfg.SSLD.teacher_weights) problems.push('SSLD.teacher_weights: distill.online needs the teacher\'s Paddle weights (its training run\'s final.pdparams)');
  if (cfg.Teacher) problems.push('Teacher: the SSLD loop derives the online teacher from SSLD.teacher and SSLD.teacher_weights');
  if (!cfg.DataLoader.Eval) problems.push('DataLoader.Eval: SSLD compares the candidate with the baseline on it, so it is required');
  return problems;
}

export function parseSsldConfig(value: unknown, source = 'config'): SsldConfig {
  const problems = ssldConfigProblems(value);
  if (problems.length) throw new AppError('TRAIN_CONFIG_INVALID', `${source} has ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  return value as SsldConfig;
}

export async function loadSsldConfig(file: string): Promise<SsldConfig> {
  let value: unknown;
  try {
    value = parseYaml(await readFile(file, 'utf8'));
  } catch (cause) {
    throw new AppError('TRAIN_CONFIG_INVALID', `cannot read ${file}: ${(cause as Error).message}`, { cause });
  }
  return parseSsldConfig(value, file);
}

function ceEntry(cfg: TrainConfig): { weight: number; epsilon?: number } | undefined {
  const entry = cfg.Loss.Train.find((e): e is Extract<LossEntry, { CELoss: unknown }> => 'CELoss' in e);
  return entry?.CELoss;
}

/** What an online teacher needs of the teacher's model.json. */
export type TeacherManifest = Pick<ModelManifest, 'architecture' | 'labels' | 'input' | 'preprocess'>;

/** The online teacher of the distillation stage: the teacher model's architecture and eval geometry, with its Paddle weights. */
export function onlineTeacherSpec(teacher: TeacherManifest, weights: string): OnlineTeacherSpec {
  const p = teacher.preprocess;
  return {
    arch: teacher.architecture, weights: path.resolve(weights), class_num: teacher.labels.length, image_size: teacher.input.size,
    mean: [...p.mean], std: [...p.std], ...(p.pixel_scale ? { pixel_scale: p.pixel_scale as 1 | 255 } : {}),
  };
}

/**
 * The distillation stage's plain training config; with distill.online, the teacher (its manifest)
 * also runs in Paddle on every crop.
 */
export function distillStageConfig(cfg: SsldConfig, softLabelFile: string, teacher?: TeacherManifest, init?: string): TrainConfig {
  const { SSLD: s, ...train } = cfg;
  const ceWeight = s.distill.ce_weight ?? 0;
  const loss: LossEntry[] = [{ JSDivLoss: { weight: s.distill.js_weight ?? 1 } }];
  if (ceWeight > 0) loss.push({ CELoss: { weight: ceWeight, epsilon: ceEntry(cfg)?.epsilon ?? 0 } });
  const lr = { ...(train.Optimizer.lr as Record<string, unknown>), ...(s.distill.learning_rate ? { learning_rate: s.distill.learning_rate } : {}) };
  return {
    ...train,
    Global: { ...train.Global, epochs: s.distill.epochs },
    ...(init ? { Arch: { ...train.Arch, pretrained: init } } : {}),
    Loss: { Train: loss },
    Optimizer: { ...train.Optimizer, lr },
    DataLoader: { ...train.DataLoader, Train: { ...train.DataLoader.Train, dataset: { name: 'SoftLabelSet', file: softLabelFile } } },
    ...(s.distill.online && teacher && s.teacher_weights ? { Teacher: onlineTeacherSpec(teacher, s.teacher_weights) } : {}),
  };
}

/**
 * The ImageNet-knowledge stage: JS divergence only, against the online ImageNet teacher on every crop
 * of `imageFile`'s images (a SoftLabelSet of the 1000 ImageNet classes without stored soft labels),
 * from the student's own initialisation, without evaluation (there are no ImageNet labels here).
 */
export function imagenetDistillStageConfig(cfg: SsldConfig, imageFile: string, teacher: OnlineTeacherSpec): TrainConfig {
  const { SSLD: s, ...train } = cfg;
  const kd = s.imagenet_distill!;
  const { cached_views: _views, ...global } = train.Global;
  const lr = { ...(train.Optimizer.lr as Record<string, unknown>), ...(kd.learning_rate ? { learning_rate: kd.learning_rate } : {}) };
  return {
    ...train,
    Global: { ...global, epochs: kd.epochs },
    Loss: { Train: [{ JSDivLoss: { weight: 1 } }] },
    Optimizer: { ...train.Optimizer, lr },
    DataLoader: { Train: { ...train.DataLoader.Train, dataset: { name: 'SoftLabelSet', file: imageFile } } },
    Teacher: teacher,
  };
}

/** The fine-tune stage: labelled images only, the config's own loss, from the distilled weights. */
export function finetuneStageConfig(cfg: SsldConfig, labeledFile: string, distilledWeights: string): TrainConfig {
  const { SSLD: s, ...train } = cfg;
  return {
    ...train,
    Global: { ...train.Global, epochs: s.finetune.epochs },
    Arch: { ...train.Arch, pretrained: distilledWeights },
    Optimizer: { ...train.Optimizer, lr: { name: 'Cosine', learning_rate: s.finetune.learning_rate, warmup_epoch: 0 } },
    DataLoader: { ...train.DataLoader, Train: { ...train.DataLoader.Train, dataset: { name: 'SoftLabelSet', file: labeledFile } } },
  };
}
