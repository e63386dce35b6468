/**
 * npm run cascade:calibrate -- --data ROOT --labels CSV --split calib [--max-recall-loss 0]
 *                              [--max-precision-loss 0.005] [--write FILE] [--json]
 * Chooses the first stage's escalation band for the served two-stage cascade (the config's
 * cascade.stages; CONFIG_FILE and MODEL_DIRS apply) on labelled photos that must not be val: the
 * narrowest band whose decisions lose at most the given flag recall and precision against the last
 * stage on every photo. --write FILE puts the band into FILE's cascade.stages[0].escalate, keeping
 * the file's comments, with a comment saying where it came from.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../../config.js';
import { AppError } from '../../errors.js';
import { tradeScore } from '../../policy/cascade.js';
import { decide } from '../../policy/index.js';
import { chooseBand, withBand } from '../cascade-band.js';
import { readDataset } from '../dataset.js';
import { scoreServed } from '../served.js';
import { parseFlags, runCli } from './args.js';
import { progressPerModel } from './progress.js';

const USAGE = 'usage: npm run cascade:calibrate -- --data ROOT --labels CSV --split calib [--max-recall-loss 0] [--max-precision-loss 0.005] [--write FILE] [--json]';

function fraction(value: string | boolean | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!(n >= 0 && n < 1)) throw new AppError('CLI_USAGE', `--${name} takes a number in [0, 1), got ${String(value)}.`);
  return n;
}

runCli(async () => {
  const flags = parseFlags(process.argv.slice(2), {
    data: { type: 'string', required: true, help: 'dataset root' },
    labels: { type: 'string', required: true, help: 'labels CSV (path,class,trade_relevant,split)' },
    split: { type: 'string', required: true, help: 'the calibration split (never val: the val numbers would be tuned on val)' },
    'max-recall-loss': { type: 'string', help: 'flag recall the cascade may lose against the last stage alone (default 0)' },
    'max-precision-loss': { type: 'string', help: 'flag precision it may lose (default 0.005)' },
    write: { type: 'string', help: 'YAML config file whose cascade.stages[0].escalate gets the band' },
    threads: { type: 'string', help: 'ONNX Runtime intra-op threads (default: all cores)' },
    json: { type: 'boolean', help: 'print one JSON object on stdout' },
  }, USAGE);
  const split = String(flags.split);
  if (split === 'val') throw new AppError('CLI_USAGE', 'calibrating on val would tune the val numbers; use a held-out split of train (npm run ssld:split -- --holdout).');
  const targets = { maxRecallLoss: fraction(flags['max-recall-loss'], 0, 'max-recall-loss'), maxPrecisionLoss: fraction(flags['max-precision-loss'], 0.005, 'max-precision-loss') };
  const config = loadConfig(process.env);
  const stages = config.cascade.stages;
  if (stages.length !== 2) throw new AppError('CLI_USAGE', `the served config has ${stages.length} cascade stage(s); this calibrates a two-stage cascade (set cascade.stages to the two models first).`);
  const dataset = await readDataset({ root: String(flags.data), labels: String(flags.labels), split });
  if (dataset.samples.length === 0) throw new AppError('DATASET_INVALID', `no images in split ${split}.`);
  const scored = await scoreServed({ config, dataset, threads: flags.threads ? Number(flags.threads) : undefined, onProgress: progressPerModel() });
  const overrides = config.models.thresholds;
  const items = scored.photos.map((p) => ({
    relevant: p.relevant,
    score: tradeScore(p.scores[0]!),
    firstFlags: decide([p.scores[0]!], overrides).flagged,
    lastFlags: decide([p.scores[1]!], overrides).flagged,
  }));
  const choice = chooseBand(items, targets);
  const data = `${path.basename(path.resolve(String(flags.data)))} split ${split}`;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const summary = `calibrated on ${data} (${items.length} photos): ${pct(choice.escalationRate)} escalated; flag P/R cascade ${choice.cascade.precision.toFixed(3)}/${choice.cascade.recall.toFixed(3)}, last stage alone ${choice.off.precision.toFixed(3)}/${choice.off.recall.toFixed(3)}, first alone ${choice.first.precision.toFixed(3)}/${choice.first.recall.toFixed(3)}`;
  if (flags.write) {
    const file = String(flags.write);
    const source = await readFile(file, 'utf8');
    await writeFile(file, withBand(source, file, stages[0]!.model, `{ from: ${choice.band.from}, below: ${choice.band.below} }`, `${summary}; max loss R ${targets.maxRecallLoss} P ${targets.maxPrecisionLoss}`));
  }
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ stages: stages.map((s) => s.model), data, n: items.length, targets, ...choice, written: flags.write ?? null })}\n`);
  } else {
    process.stdout.write(`${stages[0]!.model} escalates [${choice.band.from}, ${choice.band.below}) to ${stages[1]!.model}${choice.reached ? '' : ' (no narrower band met the targets: every photo escalates)'}\n${summary}\n${flags.write ? `written to ${String(flags.write)}\n` : ''}`);
  }
});
