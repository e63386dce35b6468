/**
 * npm run train -- --config configs/train/<name>.yaml --data <dataset root> [--out DIR] [--resume]
 * Validates the config, trains in Paddle (progress on stderr, checkpoints each epoch, Ctrl-C saves),
 * exports FP32 ONNX and, with --int8, a calibrated INT8 model directory beside it.
 */
import path from 'node:path';
import { loadTrainConfig, withLabelsFile } from '../config.js';
import { trainModel, finishTraining, type TrainOptions } from '../pipeline.js';
import { parseFlags, runCli } from './args.js';

const USAGE = 'usage: npm run train -- --config FILE [--data ROOT] [--labels CSV] [--out DIR] [--resume] [--int8]';

runCli(async () => {
  const flags = parseFlags(process.argv.slice(2), {
    config: { type: 'string', required: true, help: 'training config (YAML, PaddleClas-style sections)' },
    data: { type: 'string', help: 'dataset root; overrides DataLoader.*.dataset.root' },
    labels: { type: 'string', help: 'labels CSV; overrides DataLoader.*.dataset.labels (e.g. the labeled.csv of npm run ssld:split)' },
    out: { type: 'string', help: 'model directory to write (default models/<config name>)' },
    work: { type: 'string', help: 'checkpoints and logs (default runs/<config name>)' },
    name: { type: 'string', help: 'model name in model.json (default: the config file name)' },
    version: { type: 'string', help: 'model version (default 0.1.0)' },
    resume: { type: 'boolean', help: 'continue from the last checkpoint in the work directory' },
    int8: { type: 'boolean', help: 'also write an INT8 model directory (<out>-int8)' },
    'int8-method': { type: 'string', help: 'weights (default) or static' },
    'export-only': { type: 'boolean', help: 'skip training; export the finished run in the work directory' },
    threads: { type: 'string', help: 'CPU threads for Paddle (default 2)' },
    nproc: { type: 'string', help: 'data-parallel processes under paddle.distributed.launch: one per GPU (default 1)' },
  }, USAGE);
  const configPath = String(flags.config);
  const config = withLabelsFile(await loadTrainConfig(configPath), flags.labels as string | undefined);
  const base = path.basename(configPath).replace(/\.ya?ml$/, '');
  const out = String(flags.out ?? path.join('models', base));
  const opts: TrainOptions = {
    config,
    configPath,
    out,
    workDir: String(flags.work ?? path.join('runs', base)),
    dataRoot: flags.data ? String(flags.data) : undefined,
    resume: Boolean(flags.resume),
    name: String(flags.name ?? base),
    version: String(flags.version ?? '0.1.0'),
    int8Out: flags.int8 ? `${out.replace(/\/$/, '')}-int8` : undefined,
    int8Method: flags['int8-method'] === 'static' ? 'static' : 'weights',
    threads: flags.threads ? Number(flags.threads) : undefined,
    processes: flags.nproc ? Number(flags.nproc) : undefined,
    dataDescription: flags.data ? `${path.basename(path.resolve(String(flags.data)))} (${config.DataLoader.Train.dataset.name}, split ${config.DataLoader.Train.dataset.split ?? 'all'})` : undefined,
  };
  const result = flags['export-only'] ? await finishTraining(opts) : await trainModel(opts);
  const last = result.summary.history.at(-1);
  process.stderr.write(`wrote ${opts.out} (${result.fp32.architecture}, ${result.fp32.labels.length} labels, val top-1 ${last?.val_top1 ?? 'n/a'})\n`);
  if (result.int8) process.stderr.write(`wrote ${opts.int8Out} (INT8)\n`);
  if (result.summary.skipped.length) process.stderr.write(`skipped ${result.summary.skipped.length} unreadable image(s); see ${opts.workDir}/train.log.jsonl\n`);
});
