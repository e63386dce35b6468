/** npm run model:quantize -- --model DIR --calibration-data ROOT [--labels CSV] [--out DIR] */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AppError } from '../../errors.js';
import { readDataset } from '../dataset.js';
import { quantizeModelDir } from '../pipeline.js';
import { parseFlags, runCli } from './args.js';

runCli(async () => {
  const flags = parseFlags(process.argv.slice(2), {
    model: { type: 'string', required: true, help: 'FP32 model directory' },
    data: { type: 'string', required: true, help: 'calibration images: dataset root' },
    labels: { type: 'string', help: 'labels CSV (default: image folder layout)' },
    split: { type: 'string', help: 'CSV split to calibrate on (default train)' },
    out: { type: 'string', help: 'INT8 model directory (default <model>-int8)' },
    count: { type: 'string', help: 'calibration images for --method static (default 200)' },
    method: { type: 'string', help: 'weights (default: INT8 weights, FP32 activations) or static (calibrated QDQ)' },
  }, 'usage: npm run model:quantize -- --model DIR --data ROOT [--labels CSV]');
  const model = String(flags.model).replace(/\/$/, '');
  const dataset = await readDataset({ root: String(flags.data), labels: flags.labels ? String(flags.labels) : undefined, split: String(flags.split ?? 'train') });
  const out = String(flags.out ?? `${model}-int8`);
  const method = String(flags.method ?? 'weights');
  if (method !== 'weights' && method !== 'static') throw new AppError('CLI_USAGE', '--method must be weights or static.');
  // The calibration list holds this machine's paths: keep it out of the model directories.
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'wildlife-quantize-'));
  try {
    const manifest = await quantizeModelDir(model, out, dataset.samples.map((s) => s.path), path.join(scratch, 'calibration.json'), Number(flags.count ?? 200), method);
    process.stderr.write(`wrote ${out} (${manifest.precision}, ${method}, sha256 ${manifest.sha256.slice(0, 12)}…)\n`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});
