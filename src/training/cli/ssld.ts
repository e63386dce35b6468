/**
 * npm run ssld -- --config configs/train/ssld-<name>.yaml [--data ROOT] [--out DIR] [--work DIR]
 * The whole SSLD loop (see src/training/ssld/loop.ts) with a progress display on stderr; writes
 * the student's model directory, whose model.json records training.method "ssld" and the teacher,
 * and a candidate-vs-baseline comparison (work dir comparison.md / .json).
 */
import path from 'node:path';
import { withLabelsFile } from '../config.js';
import { loadSsldConfig, parseSsldConfig, type SsldConfig } from '../ssld/config.js';
import { runSsld } from '../ssld/loop.js';
import { parseFlags, runCli } from './args.js';

const USAGE = 'usage: npm run ssld -- --config FILE [--data ROOT] [--out DIR] [--teacher DIR [--online --teacher-weights FILE]] [--pool SRC[,SRC]]';

runCli(async () => {
  const flags = parseFlags(process.argv.slice(2), {
    config: { type: 'string', required: true, help: 'SSLD config (configs/train/ssld-*.yaml)' },
    data: { type: 'string', help: 'dataset root for DataLoader.Train / Eval (overrides the config)' },
    labels: { type: 'string', help: 'labels CSV for the labelled and eval data (overrides the config)' },
    teacher: { type: 'string', help: 'teacher model directory (overrides SSLD.teacher)' },
    'teacher-weights': { type: 'string', help: 'the teacher\'s Paddle weights for an online teacher (overrides SSLD.teacher_weights)' },
    online: { type: 'boolean', help: 'the teacher scores every augmented crop in Paddle (sets SSLD.distill.online)' },
    baseline: { type: 'string', help: 'model to compare against (overrides SSLD.baseline; default the teacher)' },
    pool: { type: 'string', help: 'comma-separated pool sources (overrides SSLD.pool): pool dirs, image folders, .txt lists' },
    'labeled-sets': { type: 'string', help: 'comma-separated analysts\' labelled sets (overrides SSLD.labeled_sets)' },
    out: { type: 'string', help: 'student model directory (default runs/models/<config name>)' },
    work: { type: 'string', help: 'work directory: soft labels, checkpoints, reports (default runs/<config name>)' },
    name: { type: 'string', help: 'model name in model.json (default: the config file name)' },
    version: { type: 'string', help: 'model version (default 0.1.0)' },
    int8: { type: 'boolean', help: 'also write an INT8 (weights) model directory (<out>-int8)' },
    control: { type: 'string', help: 'also train the same student without SSLD into this directory (with/without table)' },
    'hidden-labels': { type: 'string', help: 'experiments: the pool\'s hidden labels (CSV) to score the teacher\'s pseudo-labels' },
    threads: { type: 'string', help: 'CPU threads for Paddle and ONNX Runtime' },
  }, USAGE);
  const configPath = String(flags.config);
  const list = (v: unknown) => String(v).split(',').map((x) => x.trim()).filter(Boolean);
  const loaded = withLabelsFile(await loadSsldConfig(configPath), flags.labels as string | undefined);
  const config: SsldConfig = {
    ...loaded,
    SSLD: {
      ...loaded.SSLD,
      ...(flags.teacher ? { teacher: String(flags.teacher) } : {}),
      ...(flags['teacher-weights'] ? { teacher_weights: String(flags['teacher-weights']) } : {}),
      ...(flags.baseline ? { baseline: String(flags.baseline) } : {}),
      ...(flags.pool ? { pool: list(flags.pool) } : {}),
      ...(flags['labeled-sets'] ? { labeled_sets: list(flags['labeled-sets']) } : {}),
      ...(flags.online ? { distill: { ...loaded.SSLD.distill, online: true } } : {}),
    },
  };
  // The flags can make a valid file invalid (online without weights): check the merged config.
  parseSsldConfig(config, `${configPath} with the command-line overrides`);
  const base = path.basename(configPath).replace(/\.ya?ml$/, '');
  const out = String(flags.out ?? path.join('runs', 'models', base));
  const result = await runSsld({
    config, configPath, out,
    workDir: String(flags.work ?? path.join('runs', base)),
    dataRoot: flags.data ? String(flags.data) : undefined,
    name: String(flags.name ?? base),
    version: String(flags.version ?? '0.1.0'),
    threads: flags.threads ? Number(flags.threads) : undefined,
    int8: Boolean(flags.int8),
    hiddenLabels: flags['hidden-labels'] ? String(flags['hidden-labels']) : undefined,
    controlOut: flags.control ? String(flags.control) : undefined,
  });
  process.stderr.write(`wrote ${out} (${result.manifest.architecture}, SSLD from ${result.stats.teacher.name} ${result.stats.teacher.version}); verdict vs baseline: ${result.comparison.verdict}\n`);
  if (result.int8) process.stderr.write(`wrote ${out.replace(/\/$/, '')}-int8 (INT8)\n`);
  process.stdout.write(`${JSON.stringify({ out, verdict: result.comparison.verdict, delta: result.comparison.delta, mined: result.stats.mining.selected, control: result.control ? { out: flags.control, delta: result.control.comparison.delta } : undefined })}\n`);
});
