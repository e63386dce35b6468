/**
 * npm run eval -- --model models/<dir> --data <root> [--labels <labels.csv>] [--split val] [--json]
 *                 [--calibrate 0.9] [--report FILE]
 * Evaluates through the serving preprocessing and engine. Prints a summary and the per-class table
 * (label, n, precision, recall, F1); --json prints exactly one JSON object on stdout instead.
 * Progress (model, images done/total) always goes to stderr. --calibrate sets per-label thresholds for a target flag
 * precision on this data and writes them into model.json; --record writes the metrics there.
 * Calibrate on one split and --record on another, so the recorded numbers are not optimistic.
 * Flags are decide()'s at model.json's thresholds: a config's overrides apply with --served only.
 *
 * npm run eval -- --served --data <root> [--labels CSV] [--split val] [--json]
 * Evaluates what `npm start` serves: the config's model directories (CONFIG_FILE, MODEL_DIRS and
 * CASCADE apply, as for the service) under the service's flag rule with the config's threshold
 * overrides, and its cascade bands when it has stages.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../../errors.js';
import { loadClassifier } from '../../model/engine.js';
import { readDataset } from '../dataset.js';
import { calibrate, calibratedLabels, writeBack } from '../calibration.js';
import { predict, score, type EvalReport } from '../evaluate.js';
import { perClassTable, renderReport } from '../report.js';
import { compareModels, recordComparison, renderComparison } from '../ssld/compare.js';
import type { Dataset } from '../dataset.js';
import { parseFlags, runCli } from './args.js';
import { progressPerModel, progressReporter } from './progress.js';
import { loadConfig } from '../../config.js';
import { evaluateServed } from '../served.js';

const USAGE = 'usage: npm run eval -- (--model DIR | --served) --data ROOT [--labels CSV] [--split val] [--json] [--compare DIR]';

runCli(async () => {
  const flags = parseFlags(process.argv.slice(2), {
    model: { type: 'string', help: 'model directory (model.onnx + model.json); or --served' },
    served: { type: 'boolean', help: 'evaluate the models and threshold overrides npm start serves (configs/default.yaml, CONFIG_FILE, MODEL_DIRS)' },
    data: { type: 'string', required: true, help: 'dataset root' },
    labels: { type: 'string', help: 'labels CSV (path,class[,trade_relevant,split]); omit for an image folder' },
    split: { type: 'string', help: 'only rows of this split (e.g. val)' },
    json: { type: 'boolean', help: 'print one JSON object on stdout' },
    calibrate: { type: 'string', help: 'target flag precision (0–1), or "f1" for the best-F1 threshold: calibrate on this data and write the thresholds into model.json' },
    record: { type: 'boolean', help: 'write these metrics into model.json (metrics.eval)' },
    report: { type: 'string', help: 'HTML report path (default runs/eval/<model>-<version>-<split>.html)' },
    threads: { type: 'string', help: 'ONNX Runtime intra-op threads (default: all cores)' },
    compare: { type: 'string', help: 'a second model directory (the one in service): evaluate both on the same images and compare; with --record the comparison goes into --model\'s model.json, which npm run model:promote checks' },
  }, USAGE);
  if (Boolean(flags.served) === (flags.model !== undefined)) throw new AppError('CLI_USAGE', `give exactly one of --model and --served\n${USAGE}`);
  if (flags.served && (flags.calibrate !== undefined || flags.record || flags.compare)) throw new AppError('CLI_USAGE', '--served evaluates the served set as it is: --calibrate, --record and --compare need --model.');
  const target = flags.calibrate === undefined ? undefined : flags.calibrate === 'f1' ? null : Number(flags.calibrate);
  if (typeof target === 'number' && !(target > 0 && target < 1)) throw new AppError('CLI_USAGE', '--calibrate takes a precision between 0 and 1 (e.g. 0.9) or "f1".');
  const modelDir = String(flags.model);
  const dataset = await readDataset({ root: String(flags.data), labels: flags.labels ? String(flags.labels) : undefined, split: flags.split ? String(flags.split) : null });
  if (dataset.samples.length === 0) throw new AppError('DATASET_INVALID', `no images${flags.split ? ` in split ${String(flags.split)}` : ''}.`);
  if (flags.served) return servedCli(dataset, flags);
  if (flags.compare) return compareCli(modelDir, String(flags.compare), dataset, flags);
  const classifier = await loadClassifier(modelDir, { intraOpThreads: flags.threads ? Number(flags.threads) : 0 });
  try {
    const m = classifier.manifest;
    const { predictions, skipped, seconds, inferenceSeconds } = await predict(classifier, dataset, { onProgress: progressReporter(m.name) });
    const labels = m.labels;
    const calibration = target === undefined ? undefined : calibrate(predictions, labels, target);
    const effectiveLabels = calibration ? calibratedLabels(labels, calibration.thresholds) : labels;
    const report: EvalReport = {
      model: { name: m.name, version: m.version, precision: m.precision, architecture: m.architecture },
      ...score(predictions, effectiveLabels, m.name),
      skipped,
      speed: { images: predictions.length, seconds, imagesPerSecond: predictions.length / seconds, inferenceImagesPerSecond: predictions.length / inferenceSeconds },
    };
    const reportPath = String(flags.report ?? path.join('runs', 'eval', `${m.name}-${m.version}-${String(flags.split ?? 'all')}.html`));
    await mkdir(path.dirname(reportPath), { recursive: true });
    await writeFile(reportPath, renderReport(report, calibration));
    const dataName = `${path.basename(path.resolve(String(flags.data)))}${flags.split ? ` split ${String(flags.split)}` : ''}`;
    if (calibration || flags.record) {
      await writeBack(modelDir, {
        calibration: calibration && { result: calibration, data: dataName },
        metrics: flags.record ? {
          eval: {
            data: dataName,
            n: report.n, top1: report.top1, flag: report.flag,
            per_class_f1: Object.fromEntries(Object.entries(report.perClass).map(([k, v]) => [k, Number(v.f1.toFixed(4))])),
            inference_images_per_second: Number(report.speed.inferenceImagesPerSecond.toFixed(2)),
            evaluated: new Date().toISOString(),
          },
        } : {},
      });
    }
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ ...report, calibration, report: reportPath })}\n`);
    } else {
      const f = report.flag;
      process.stdout.write([
        `${m.name} ${m.version} (${m.architecture}, ${m.precision}) on ${report.n} images${skipped.length ? ` (${skipped.length} skipped)` : ''}`,
        `top-1 ${(report.top1 * 100).toFixed(1)}%   flag precision ${(f.precision * 100).toFixed(1)}%  recall ${(f.recall * 100).toFixed(1)}%  F1 ${f.f1.toFixed(3)}`,
        calibration ? `calibrated (${calibration.targetPrecision === null ? 'best F1' : `precision ${calibration.targetPrecision}`}): ${calibration.note}` : '',
        `${report.speed.inferenceImagesPerSecond.toFixed(1)} images/s inference; report: ${reportPath}`,
      ].filter(Boolean).join('\n') + `\n\n${perClassTable(report.perClass)}`);
    }
  } finally {
    await classifier.dispose();
  }
});

async function servedCli(dataset: Dataset, flags: Record<string, string | boolean | undefined>): Promise<void> {
  const config = loadConfig(process.env);
  const report = await evaluateServed({ config, dataset, threads: flags.threads ? Number(flags.threads) : undefined, onProgress: progressPerModel() });
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return;
  }
  const f = report.flag;
  const overrides = Object.keys(report.thresholdOverrides).length ? ` with threshold overrides ${JSON.stringify(report.thresholdOverrides)}` : '';
  process.stdout.write([
    `served set: ${report.models.map((m) => `${m.name} ${m.version} (${m.architecture}, ${m.precision})`).join(' + ')}${overrides}`,
    `on ${report.n} images${report.skipped.length ? ` (${report.skipped.length} skipped)` : ''}: top-1 ${(report.top1 * 100).toFixed(1)}%   flag precision ${(f.precision * 100).toFixed(1)}%  recall ${(f.recall * 100).toFixed(1)}%  F1 ${f.f1.toFixed(3)}`,
    report.cascade ? `cascade ${report.cascade.mode}: ${report.cascade.escalated} of ${report.n} photos escalated (${(report.cascade.escalationRate * 100).toFixed(1)}%); decided by ${Object.entries(report.cascade.decidedBy).map(([m, k]) => `${m} ${k}`).join(', ')}` : '',
    `${report.speed.inferenceImagesPerSecond.toFixed(1)} images/s inference (every model on every photo)`,
  ].filter(Boolean).join('\n') + `\n\n${perClassTable(report.perClass)}`);
}

/** --compare: candidate and current model on the same images, through the same evaluation. */
async function compareCli(modelDir: string, baselineDir: string, dataset: Dataset, flags: Record<string, string | boolean | undefined>): Promise<void> {
  const data = `${path.basename(path.resolve(String(flags.data)))}${flags.split ? ` ${String(flags.split)}` : ''}`;
  const comparison = await compareModels({ candidate: modelDir, baseline: baselineDir, dataset, data, threads: flags.threads ? Number(flags.threads) : 0 });
  const c = comparison.candidate;
  const reportPath = String(flags.report ?? path.join('runs', 'eval', `${c.name}-${c.version}-vs-${comparison.baseline.name}-${comparison.baseline.version}.md`));
  await mkdir(path.dirname(reportPath), { recursive: true });
  await writeFile(reportPath, renderComparison(comparison));
  if (flags.record) await recordComparison(modelDir, comparison);
  process.stdout.write(flags.json ? `${JSON.stringify({ ...comparison, report: reportPath })}\n` : `${renderComparison(comparison).split('\n').slice(0, 10).join('\n')}\nreport: ${reportPath}\n`);
}
