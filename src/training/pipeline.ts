/**
 * The model toolchain's steps, each a function the CLIs (and tests) call: train → export FP32 ONNX
 * → quantize INT8, and import of PaddleClas .pdparams. Paddle work runs in the venv; model
 * directories are written here, by the one manifest writer.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors.js';
import { readManifest, ONNX_FILE, type LabelSpec, type ModelManifest } from '../model/manifest.js';
import { withRelativeDataPaths, type TrainConfig } from './config.js';
import { defaultLabels, writeModelDir } from './model-dir.js';
import { pythonEnvReady, runWildtrain, wildtrainJson } from './python-env.js';
import { checkPythonResult, EXPORT_RESULT_SCHEMA, QUANTIZE_RESULT_SCHEMA, TRAINING_SUMMARY_SCHEMA } from './python-results.js';

export const NO_PRETRAINED_NOTE =
  'No ImageNet-pretrained weights: they cannot be downloaded on the machines this model was built on, so it was trained from random initialisation on the dataset named in training.data only. Expect lower accuracy than a fine-tuned ResNet50_vd_ssld.';

export interface TrainingSummary {
  arch: ModelManifest['architecture'];
  classes: string[];
  trade_relevant: Record<string, boolean | null>;
  image_size: number;
  resize_short: number;
  mean: [number, number, number];
  std: [number, number, number];
  /** Absent in runs from before pixel_scale existed: 255. */
  pixel_scale?: 1 | 255;
  epochs: number;
  /** Augmented crops per image whose frozen-prefix outputs were cached (Global.cached_views). */
  cached_views?: number | null;
  processes?: number;
  history: Array<Record<string, number>>;
  skipped: Array<{ path: string; error: string }>;
  train_images: number;
  unlabeled_train_images?: number;
  eval_images: number;
  calibration: string[];
  /** An online teacher's record (wildtrain/teacher.py): a frozen teacher's state is the same before and after. */
  online_teacher?: OnlineTeacherRecord;
}

export interface OnlineTeacherRecord {
  arch: string; weights: string; class_num: number; image_size: number; crops_scored: number; eval_mode: boolean; trainable_parameters: number;
  state_sha256_before: string; state_sha256_after: string;
}

interface ExportResult {
  onnx: string;
  input: string;
  output: string;
  opset: number;
  load_report: { head_reinitialised: Record<string, number[]>; loaded: number };
}

/** Loaded lazily: pretrained.ts builds on this module's import step. */
async function resolvePretrained(value: string, arch: string): Promise<{ path: string; source: string; note: string }> {
  return (await import('./pretrained.js')).resolvePretrainedWeights(value, arch);
}

async function requireEnv(): Promise<void> {
  if (!(await pythonEnvReady())) throw new AppError('TRAIN_PYTHON_MISSING');
}

export interface TrainOptions {
  config: TrainConfig;
  configPath: string;
  /** The model directory to write. */
  out: string;
  /** Checkpoints, logs and intermediate files. */
  workDir: string;
  dataRoot?: string;
  resume?: boolean;
  name: string;
  version: string;
  /** Also write an INT8 model directory here. */
  int8Out?: string;
  int8Method?: QuantizationMethod;
  threads?: number;
  /** Data-parallel processes (GPUs on a GPU node); 1 = a plain single process. */
  processes?: number;
  /** Extra provenance recorded in model.json's training section. */
  dataDescription?: string;
  /** Merged over model.json's training section (e.g. SSLD's method, teacher and pool statistics). */
  trainingExtra?: Record<string, unknown>;
}

export interface TrainResult {
  fp32: ModelManifest;
  int8?: ModelManifest;
  summary: TrainingSummary;
}

/** Python runs in its own working directory: every path handed to it must be absolute. */
function absolute(opts: TrainOptions): TrainOptions {
  return { ...opts, out: path.resolve(opts.out), workDir: path.resolve(opts.workDir), dataRoot: opts.dataRoot && path.resolve(opts.dataRoot), int8Out: opts.int8Out && path.resolve(opts.int8Out) };
}

export async function trainModel(options: TrainOptions): Promise<TrainResult> {
  await runTraining(options);
  return finishTraining(options);
}

/**
 * The config as Python reads it. Python runs in its own directory, so every file it opens is made
 * absolute here, against the directory the command was started in: the pretrained weights (the
 * config keeps a package shorthand, so model.json names the package, not this machine's venv) and
 * a soft-label file.
 */
export async function pythonConfigOf(config: TrainConfig): Promise<TrainConfig> {
  const pretrained = config.Arch.pretrained ? (await resolvePretrained(config.Arch.pretrained, config.Arch.name)).path : config.Arch.pretrained;
  const train = config.DataLoader.Train;
  const trainData = train.dataset.file ? { ...train, dataset: { ...train.dataset, file: path.resolve(train.dataset.file) } } : train;
  return { ...config, Arch: { ...config.Arch, pretrained }, DataLoader: { ...config.DataLoader, Train: trainData } };
}

/** The Paddle training run alone: leaves final.pdparams and training.json in the work directory. */
export async function runTraining(options: Pick<TrainOptions, 'config' | 'workDir' | 'dataRoot' | 'resume' | 'threads' | 'processes'>): Promise<TrainingSummary> {
  const opts = { ...options, workDir: path.resolve(options.workDir), dataRoot: options.dataRoot && path.resolve(options.dataRoot) };
  await requireEnv();
  await mkdir(opts.workDir, { recursive: true });
  const configJson = path.join(opts.workDir, 'config.json');
  await writeFile(configJson, JSON.stringify(await pythonConfigOf(opts.config), null, 1));
  const args = ['train', '--config', configJson, '--out', opts.workDir];
  if (opts.dataRoot) args.push('--data', opts.dataRoot);
  if (opts.resume) args.push('--resume');
  const processes = opts.processes ?? 1;
  const run = await runWildtrain(args, { inheritStderr: true, threads: opts.threads, processes, launchLogDir: path.join(opts.workDir, 'workers') });
  // Ctrl-C reaches the Python child too (same process group); it saves a checkpoint and exits 130.
  const ignore = () => undefined;
  process.on('SIGINT', ignore);
  try {
    await run.done;
  } finally {
    process.off('SIGINT', ignore);
  }
  return readTrainingSummary(opts.workDir);
}

export async function readTrainingSummary(workDir: string): Promise<TrainingSummary> {
  const file = path.join(path.resolve(workDir), 'training.json');
  let value: unknown;
  try {
    value = JSON.parse(await readFile(file, 'utf8'));
  } catch (cause) {
    throw new AppError('TRAIN_RESULT_INVALID', `${file}: ${(cause as Error).message}`, { cause });
  }
  return checkPythonResult<TrainingSummary>(TRAINING_SUMMARY_SCHEMA, value, file);
}

/** Export + manifests for a finished run (also usable on a run finished earlier, e.g. in the background). */
export async function finishTraining(options: TrainOptions): Promise<TrainResult> {
  const opts = absolute(options);
  const summary = await readTrainingSummary(opts.workDir);
  const labels = defaultLabels(summary.classes, summary.trade_relevant);
  await mkdir(opts.out, { recursive: true });
  const exported = await exportOnnx(path.join(opts.workDir, 'final.pdparams'), summary.arch, labels.length, path.join(opts.out, ONNX_FILE));
  const last = summary.history.at(-1) ?? {};
  const training = {
    method: 'supervised',
    config_file: path.relative(process.cwd(), opts.configPath),
    config: withRelativeDataPaths(opts.config, process.cwd()),
    data: {
      description: opts.dataDescription ?? null,
      train_images: summary.train_images,
      eval_images: summary.eval_images,
      skipped_images: summary.skipped,
    },
    epochs: summary.epochs,
    ...frozenNote(opts.config, summary),
    processes: summary.processes ?? 1,
    history: summary.history,
    onnx_opset: exported.opset,
    ...opts.trainingExtra,
  };
  const base = {
    name: opts.name,
    version: opts.version,
    architecture: summary.arch,
    input: { name: exported.input, size: summary.image_size, layout: 'NCHW' as const, channels: 'RGB' as const },
    output: { name: exported.output, kind: 'logits' as const },
    preprocess: { resize_short: summary.resize_short, interpolation: 'bilinear' as const, crop: 'center' as const, mean: summary.mean, std: summary.std, pixel_scale: summary.pixel_scale ?? 255 },
    labels,
    pretrained: opts.config.Arch.pretrained
      ? await resolvePretrained(opts.config.Arch.pretrained, opts.config.Arch.name).then(({ source, note }) => ({ source, note }))
      : { source: null, note: NO_PRETRAINED_NOTE },
    training,
    metrics: { training_val_top1: last.val_top1 ?? null, training_train_top1: last.train_top1 ?? null },
  };
  const fp32 = await writeModelDir({ dir: opts.out, manifest: { ...base, precision: 'fp32' } });
  let int8: ModelManifest | undefined;
  if (opts.int8Out) {
    int8 = await quantizeModelDir(opts.out, opts.int8Out, summary.calibration, path.join(opts.workDir, 'calibration.json'), 200, opts.int8Method);
  }
  return { fp32, int8, summary };
}

/** The five lr_mult groups by stage width (Lite2 is 1.1× wider from the third stage on). */
const LITE_LR_GROUPS: Record<string, string[]> = {
  EfficientNetLite0: ['the stem', 'stages 16-24', 'stages 40-80', 'stages 112-192', 'stage 320 and the head conv'],
  EfficientNetLite1: ['the stem', 'stages 16-24', 'stages 40-80', 'stages 112-192', 'stage 320 and the head conv'],
  EfficientNetLite2: ['the stem', 'stages 16-24', 'stages 48-88', 'stages 120-208', 'stage 352 and the head conv'],
};

/** Leading zero lr_mult groups are frozen outright (wildtrain/efficientnet_lite.py): say which, in plain words. */
function frozenNote(config: TrainConfig, summary: TrainingSummary): { frozen?: string } {
  const mults = config.Arch.lr_mult_list ?? [];
  const count = mults.findIndex((m) => m !== 0);
  const groups = LITE_LR_GROUPS[config.Arch.name];
  if (count <= 0 || !groups) return {};
  const cached = summary.cached_views ? `; their outputs were computed once in ONNX Runtime for ${summary.cached_views} augmented crops per training image (Global.cached_views)` : '';
  return { frozen: `Not fine-tuned: ${groups.slice(0, count).join(', ')} (lr_mult 0, no gradient, ImageNet BatchNorm statistics kept)${cached}. Everything after them and the classifier head were trained.` };
}

export async function exportOnnx(weights: string, arch: string, classNum: number, out: string, allowHeadReinit = false): Promise<ExportResult> {
  await requireEnv();
  const args = ['export', '--weights', path.resolve(weights), '--arch', arch, '--class-num', String(classNum), '--out', path.resolve(out)];
  if (allowHeadReinit) args.push('--allow-head-reinit');
  return wildtrainJson<ExportResult>(args, EXPORT_RESULT_SCHEMA);
}

export type QuantizationMethod = 'weights' | 'static';

/** INT8 copy of an FP32 model directory (static quantization is calibrated on the given images). */
export async function quantizeModelDir(fp32Input: string, int8Input: string, calibrationImages: string[], calibrationInput: string, count = 200, method: QuantizationMethod = 'weights'): Promise<ModelManifest> {
  await requireEnv();
  const [fp32Dir, int8Dir, calibrationFile] = [fp32Input, int8Input, calibrationInput].map((p) => path.resolve(p)) as [string, string, string];
  const source = await readManifest(fp32Dir);
  await mkdir(int8Dir, { recursive: true });
  await writeFile(calibrationFile, JSON.stringify(calibrationImages.map((p) => path.resolve(p))));
  const result = await wildtrainJson<{ method: QuantizationMethod; detail: string; calibration_images?: number }>([
    'quantize', '--onnx', path.join(fp32Dir, ONNX_FILE), '--out', path.join(int8Dir, ONNX_FILE),
    '--calibration', calibrationFile, '--image-size', String(source.input.size),
    '--resize-short', String(source.preprocess.resize_short),
    '--mean', JSON.stringify(source.preprocess.mean), '--std', JSON.stringify(source.preprocess.std),
    '--pixel-scale', String(source.preprocess.pixel_scale),
    '--count', String(count), '--method', method,
  ], QUANTIZE_RESULT_SCHEMA);
  const { sha256: _sha, created: _created, schema_version: _v, ...rest } = source;
  return writeModelDir({
    dir: int8Dir,
    manifest: {
      ...rest,
      // Same name, other precision: the manifest's `precision` tells them apart.
      precision: 'int8',
      quantization: { method: result.method },
      training: { ...source.training, quantization: { method: result.method, detail: result.detail, ...(result.calibration_images ? { calibration_images: result.calibration_images } : {}), from: { name: source.name, version: source.version, sha256: source.sha256 } } },
      metrics: {},
    },
  });
}

export interface ImportOptions {
  /** PaddleClas .pdparams, or a .pth state_dict of an architecture weights.py can map. */
  pdparams: string;
  arch: ModelManifest['architecture'];
  labels: LabelSpec[];
  out: string;
  name: string;
  version: string;
  imageSize: number;
  resizeShort: number;
  mean: [number, number, number];
  std: [number, number, number];
  /** Default 255 (mean/std in 0–1 units). */
  pixelScale?: 1 | 255;
  /** Recorded when resizeShort came from "size / crop_ratio". */
  cropRatio?: number;
  /** Provenance for model.json's pretrained section; default: the weights file's name. */
  pretrained?: { source: string; note: string };
}

export interface ImportResult {
  manifest: ModelManifest;
  headReinitialised: boolean;
  loaded: number;
}

/** Weights → model directory, strictly: any key or shape mismatch but the head fails. */
export async function importPdparams(opts: ImportOptions): Promise<ImportResult> {
  await mkdir(opts.out, { recursive: true });
  const exported = await exportOnnx(opts.pdparams, opts.arch, opts.labels.length, path.join(opts.out, ONNX_FILE), true);
  const headReinitialised = Object.keys(exported.load_report.head_reinitialised).length > 0;
  const file = path.basename(opts.pdparams);
  const manifest = await writeModelDir({
    dir: opts.out,
    manifest: {
      name: opts.name,
      version: opts.version,
      architecture: opts.arch,
      precision: 'fp32',
      input: { name: exported.input, size: opts.imageSize, layout: 'NCHW', channels: 'RGB' },
      output: { name: exported.output, kind: 'logits' },
      preprocess: {
        resize_short: opts.resizeShort, ...(opts.cropRatio !== undefined ? { crop_ratio: opts.cropRatio } : {}),
        interpolation: 'bilinear', crop: 'center', mean: opts.mean, std: opts.std, pixel_scale: opts.pixelScale ?? 255,
      },
      labels: opts.labels,
      pretrained: headReinitialised
        ? { source: opts.pretrained?.source ?? file, note: `Backbone imported from ${file}; its FC head had a different class count and was re-initialised: fine-tune before serving.` }
        : (opts.pretrained ?? { source: file, note: `Imported unchanged from ${file}.` }),
      training: { method: 'import', head_reinitialised: headReinitialised, load_report: exported.load_report, onnx_opset: exported.opset },
      metrics: {},
    },
  });
  return { manifest, headReinitialised, loaded: exported.load_report.loaded };
}

/** Reference logits from Paddle itself, for parity checks against the ONNX engine. */
export async function paddleLogits(weights: string, arch: string, classNum: number, inputNpy: string, outNpy: string): Promise<void> {
  await requireEnv();
  await (await runWildtrain(['logits', '--weights', path.resolve(weights), '--arch', arch, '--class-num', String(classNum), '--input', path.resolve(inputNpy), '--out', path.resolve(outNpy)])).done;
}

/** The Python eval transform (wildtrain/data.py) of some images, as one NCHW .npy: for train/serve skew checks. */
export async function pythonEvalTensors(images: string[], spec: { size: number; resizeShort: number; mean: readonly number[]; std: readonly number[]; pixelScale?: number }, listFile: string, outNpy: string): Promise<void> {
  await requireEnv();
  await writeFile(listFile, JSON.stringify(images.map((p) => path.resolve(p))));
  await (await runWildtrain(['transform', '--images', path.resolve(listFile), '--image-size', String(spec.size), '--resize-short', String(spec.resizeShort),
    '--mean', JSON.stringify(spec.mean), '--std', JSON.stringify(spec.std), '--pixel-scale', String(spec.pixelScale ?? 255), '--out', path.resolve(outNpy)])).done;
}

export async function generateWeights(arch: string, classNum: number, seed: number, out: string): Promise<void> {
  await requireEnv();
  await (await runWildtrain(['init', '--arch', arch, '--class-num', String(classNum), '--seed', String(seed), '--out', path.resolve(out)])).done;
}
