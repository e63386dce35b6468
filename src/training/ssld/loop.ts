/**
 * The SSLD loop end to end: teacher pass over the unlabelled pool with the serving engine,
 * val-duplicate removal, top-k-per-class mining, JS-divergence distillation in Paddle, a final
 * fine-tune on labelled data, export, threshold calibration, and a comparison with the model in
 * service. Every stage reports progress; every number lands in the student's model.json.
 */
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../../errors.js';
import { loadClassifier, type Classifier } from '../../model/engine.js';
import { readManifest, type ModelManifest } from '../../model/manifest.js';
import type { DatasetSpec } from '../config.js';
import { readDataset, type Dataset, type DatasetSample } from '../dataset.js';
import { calibrate, writeBack } from '../calibration.js';
import { classifyFiles, predict } from '../evaluate.js';
import { finishTraining, quantizeModelDir, runTraining, type OnlineTeacherRecord, type TrainingSummary } from '../pipeline.js';
import { compareModels, recordComparison, renderComparison, type Comparison } from './compare.js';
import { imagenetLabels, locatePretrained } from '../pretrained.js';
import { distillStageConfig, finetuneStageConfig, imagenetDistillStageConfig, type SsldConfig } from './config.js';
import { DEFAULT_PHASH_DISTANCE, dedupePool } from './dedupe.js';
import { topKPerClass } from './mine.js';
import { readPoolSources } from './sources.js';

export interface SsldRunOptions {
  config: SsldConfig;
  configPath: string;
  out: string;
  workDir: string;
  dataRoot?: string;
  name: string;
  version: string;
  threads?: number;
  int8?: boolean;
  /** Experiments only: true labels of the pool (CSV path,class) to score the teacher's pseudo-labels. */
  hiddenLabels?: string;
  /** Also train the same student without SSLD (labelled images, cross-entropy, as many epochs) here, for a with/without table. */
  controlOut?: string;
  log?: (line: string) => void;
}

export interface SsldRunResult {
  manifest: ModelManifest;
  /** The without-SSLD control and its comparison with the same baseline, when asked for. */
  control?: { manifest: ModelManifest; comparison: Comparison };
  int8?: ModelManifest;
  comparison: Comparison;
  stats: SsldStats;
}

export interface SsldStats {
  teacher: { name: string; version: string; sha256: string; architecture: string };
  labeled: { images: number; from_analysts: number; analysts_dropped: number };
  pool: { sources: string[]; images: number; dedupe: Record<string, number>; teacher_skipped: number };
  mining: { top_k: number; min_score: number; selected: number; below_min_score: number; per_class: Record<string, { candidates: number; selected: number; minScore: number | null }>; pseudo_label_accuracy: number | null };
  stages: Record<string, { epochs: number; images: number; unlabeled: number; val_top1: number | null; online_teacher?: OnlineTeacherRecord }>;
}

export const STAGES = ['teacher', 'labelled data', 'pool and dedupe', 'teacher pass', 'top-k mining', 'ImageNet knowledge', 'distillation', 'fine-tune', 'export and calibrate', 'compare'] as const;

function sourceOf(spec: DatasetSpec, dataRoot?: string) {
  const root = dataRoot ?? spec.root;
  if (!root) throw new AppError('DATASET_INVALID', 'dataset root is not set: pass --data or set DataLoader.*.dataset.root.');
  return { root, labels: spec.name === 'CSVDataset' ? (spec.labels ?? 'labels.csv') : undefined, split: spec.split ?? null };
}

function progressLine(log: (l: string) => void) {
  const tty = process.stderr.isTTY;
  let lastTenth = -1;
  return (what: string, done: number, total: number) => {
    if (tty) { process.stderr.write(`\r  ${what} ${done}/${total}${done === total ? '\n' : ''}`); return; }
    const tenth = Math.floor((done / Math.max(total, 1)) * 10);
    if (tenth !== lastTenth || done === total) { lastTenth = tenth; if (tenth % 5 === 0 || done === total) log(`  ${what} ${done}/${total}`); }
  };
}

/**
 * The config's labelled data plus the analysts' sets. Analysts label live traffic, which can repost
 * an eval photo: those are dropped like pool copies, or the comparison would be marked on its own
 * training photos.
 */
async function readLabeled(cfg: SsldConfig, dataRoot: string | undefined, evalFiles: readonly string[], maxDistance: number) {
  const main = await readDataset(sourceOf(cfg.DataLoader.Train.dataset, dataRoot));
  const analysts: DatasetSample[] = [];
  for (const dir of cfg.SSLD.labeled_sets ?? []) {
    analysts.push(...(await readDataset({ root: path.resolve(dir), labels: path.resolve(dir, 'labels.csv'), split: 'train' })).samples);
  }
  const checked = analysts.length
    ? await dedupePool({ pool: analysts.map((a) => ({ path: a.path, source: 'analysts' })), valFiles: evalFiles, labeledFiles: [], maxDistance })
    : null;
  const keep = new Set(checked?.kept.map((k) => k.path) ?? []);
  const kept = analysts.filter((a) => keep.has(a.path));
  return { samples: [...main.samples, ...kept], fromAnalysts: kept.length, droppedFromAnalysts: checked?.dropped ?? [] };
}

async function readHidden(file: string | undefined, root: string | undefined): Promise<Map<string, string> | null> {
  if (!file) return null;
  const hidden = await readDataset({ root: root ?? path.dirname(file), labels: path.resolve(file), split: null });
  return new Map(hidden.samples.map((s) => [s.path, s.label]));
}

const round = (p: Float32Array) => Array.from(p, (v) => Number(v.toFixed(6)));

export async function runSsld(opts: SsldRunOptions): Promise<SsldRunResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const cfg = opts.config;
  const s = cfg.SSLD;
  const workDir = path.resolve(opts.workDir);
  await mkdir(workDir, { recursive: true });
  const progress = progressLine(log);
  let step = 0;
  const stage = (detail = '') => log(`[${++step}/${STAGES.length}] ${STAGES[step - 1]}${detail ? `: ${detail}` : ''}`);

  stage(s.teacher);
  if (s.distill.online) {
    try {
      await access(s.teacher_weights!);
    } catch (cause) {
      throw new AppError('SSLD_TEACHER_WEIGHTS_MISSING', `${s.teacher_weights}: distill.online needs the teacher's Paddle weights.`, { cause });
    }
  }
  const teacher: Classifier = await loadClassifier(s.teacher, { intraOpThreads: opts.threads ?? 0 });
  const teacherManifest = teacher.manifest;
  let labeledKept: Array<{ path: string; label: string; soft: number[] }>;
  let minedKept: Array<{ path: string; label: null; soft: number[] }>;
  let stats: SsldStats;
  const classes = teacher.manifest.labels.map((l) => l.name);
  const tradeRelevant = Object.fromEntries(teacher.manifest.labels.map((l) => [l.name, l.trade_relevant]));
  let evalSet: Dataset;
  let poolPaths: string[] = [];
  try {
    stage();
    evalSet = await readDataset(sourceOf(cfg.DataLoader.Eval!.dataset, opts.dataRoot));
    const maxDistance = s.mining.phash_max_distance ?? DEFAULT_PHASH_DISTANCE;
    const labeled = await readLabeled(cfg, opts.dataRoot, evalSet.samples.map((x) => x.path), maxDistance);
    const unknown = [...new Set(labeled.samples.map((x) => x.label))].filter((l) => !classes.includes(l)).sort();
    if (unknown.length) throw new AppError('SSLD_LABELS_MISMATCH', `Not in the teacher (${teacher.manifest.name}): ${unknown.join(', ')}.`);
    const analystDrops = labeled.droppedFromAnalysts.length ? `; ${labeled.droppedFromAnalysts.length} analysts' photos dropped (${labeled.droppedFromAnalysts.map((d) => d.reason).join(', ')})` : '';
    log(`  ${labeled.samples.length} labelled images (${labeled.fromAnalysts} from analysts${analystDrops}), ${evalSet.samples.length} eval images, ${classes.length} classes`);

    stage(s.pool.join(', ') || '(no pool)');
    const pool = await readPoolSources(s.pool);
    const dedupe = await dedupePool({
      pool, valFiles: evalSet.samples.map((x) => x.path), labeledFiles: labeled.samples.map((x) => x.path),
      maxDistance, onProgress: progress,
    });
    log(`  pool ${pool.length} → kept ${dedupe.counts.kept}; dropped: ${Object.entries(dedupe.counts).filter(([k, v]) => k !== 'kept' && v).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
    await writeFile(path.join(workDir, 'dedupe.json'), JSON.stringify([...labeled.droppedFromAnalysts, ...dedupe.dropped], null, 1));

    poolPaths = dedupe.kept.map((x) => x.path);
    stage(`${labeled.samples.length + dedupe.kept.length} images`);
    const labeledPass = await classifyFiles(teacher, labeled.samples.map((x) => x.path), { onProgress: (d, t) => progress('labelled', d, t) });
    const poolPass = await classifyFiles(teacher, dedupe.kept.map((x) => x.path), { onProgress: (d, t) => progress('pool', d, t) });
    const labelOf = new Map(labeled.samples.map((x) => [x.path, x.label]));
    labeledKept = labeledPass.results.map((r) => ({ path: r.path, label: labelOf.get(r.path)!, soft: round(r.probabilities) }));

    stage(`top ${s.mining.top_k} per class`);
    const mined = topKPerClass(poolPass.results, classes, s.mining.top_k, s.mining.min_score ?? 0);
    minedKept = mined.selected.map((m) => ({ path: m.path, label: null, soft: round(m.probabilities as Float32Array) }));
    const hidden = await readHidden(opts.hiddenLabels, opts.dataRoot);
    const scored = hidden ? mined.selected.filter((m) => hidden.has(m.path)) : [];
    const pseudoAccuracy = scored.length ? scored.filter((m) => hidden!.get(m.path) === m.teacherLabel).length / scored.length : null;
    log(`  mined ${mined.selected.length} of ${poolPass.results.length}${pseudoAccuracy === null ? '' : `; teacher pseudo-labels ${(pseudoAccuracy * 100).toFixed(1)} % right on ${scored.length} with hidden labels`}`);
    stats = {
      teacher: { name: teacher.manifest.name, version: teacher.manifest.version, sha256: teacher.manifest.sha256, architecture: teacher.manifest.architecture },
      labeled: { images: labeledKept.length, from_analysts: labeled.fromAnalysts, analysts_dropped: labeled.droppedFromAnalysts.length },
      pool: { sources: s.pool, images: pool.length, dedupe: dedupe.counts, teacher_skipped: poolPass.skipped.length + labeledPass.skipped.length },
      mining: { top_k: s.mining.top_k, min_score: s.mining.min_score ?? 0, selected: mined.selected.length, below_min_score: mined.belowMinScore, per_class: mined.perClass, pseudo_label_accuracy: pseudoAccuracy },
      stages: {},
    };
  } finally {
    await teacher.dispose();
  }

  const softFile = (name: string, samples: Array<{ path: string; label: string | null; soft: number[] }>) => {
    const file = path.join(workDir, `${name}.json`);
    return writeFile(file, JSON.stringify({ classes, trade_relevant: tradeRelevant, teacher: stats.teacher, samples })).then(() => file);
  };
  const distillFile = await softFile('distill', [...labeledKept, ...minedKept]);
  const finetuneFile = await softFile('finetune', labeledKept);
  const record = (name: string, summary: TrainingSummary) => {
    stats.stages[name] = {
      epochs: summary.epochs, images: summary.train_images, unlabeled: summary.unlabeled_train_images ?? 0, val_top1: summary.history.at(-1)?.val_top1 ?? null,
      // Paths in model.json are relative to the checkout, so the record reads the same on every machine.
      ...(summary.online_teacher ? { online_teacher: { ...summary.online_teacher, weights: path.relative(process.cwd(), path.resolve(summary.online_teacher.weights)) } } : {}),
    };
  };

  let init: string | undefined;
  if (s.imagenet_distill) {
    // Every photo we have that is not an eval photo (the pool was de-duplicated against eval).
    const images = [...labeledKept.map((x) => x.path), ...poolPaths];
    const kd = s.imagenet_distill;
    stage(`${kd.epochs} epochs on ${images.length} images against ${kd.teacher}'s 1000 ImageNet classes, online`);
    const { source, weights } = await locatePretrained(kd.teacher);
    const file = path.join(workDir, 'imagenet.json');
    await writeFile(file, JSON.stringify({ classes: (await imagenetLabels()).map((l) => l.name), trade_relevant: {}, teacher: { name: kd.teacher, sha256: weights.sha256 }, samples: images.map((p) => ({ path: p, label: null })) }));
    const kdDir = path.join(workDir, 'imagenet-distill');
    const teacherSpec = { arch: source.arch, weights: weights.path, class_num: 1000, image_size: source.imageSize, mean: [127, 127, 127], std: [128, 128, 128], pixel_scale: 1 as const };
    record('imagenet_distill', await runTraining({ config: imagenetDistillStageConfig(cfg, file, teacherSpec), workDir: kdDir, dataRoot: opts.dataRoot, threads: opts.threads }));
    init = path.join(kdDir, 'final.pdparams');
  } else stage('skipped (no SSLD.imagenet_distill)');

  stage(`${s.distill.epochs} epochs on ${labeledKept.length} labelled + ${minedKept.length} mined images${s.distill.online ? `, the teacher online on every crop (${teacherManifest.architecture})` : ''}`);
  const distillDir = path.join(workDir, 'distill');
  record('distill', await runTraining({ config: distillStageConfig(cfg, distillFile, teacherManifest, init), workDir: distillDir, dataRoot: opts.dataRoot, threads: opts.threads }));
  let finalDir = distillDir;
  if (s.finetune.epochs > 0) {
    stage(`${s.finetune.epochs} epochs on ${labeledKept.length} labelled images`);
    finalDir = path.join(workDir, 'finetune');
    record('finetune', await runTraining({ config: finetuneStageConfig(cfg, finetuneFile, path.join(distillDir, 'final.pdparams')), workDir: finalDir, dataRoot: opts.dataRoot, threads: opts.threads }));
  } else stage('skipped (finetune.epochs is 0)');

  stage(opts.out);
  const finished = await finishTraining({
    config: cfg, configPath: opts.configPath, out: opts.out, workDir: finalDir, name: opts.name, version: opts.version,
    dataDescription: `${stats.labeled.images} labelled images + ${minedKept.length} mined from ${stats.pool.images} unlabelled`,
    trainingExtra: { method: 'ssld', teacher: { ...stats.teacher, dir: path.relative(process.cwd(), path.resolve(s.teacher)) }, ssld: stats },
  });
  let manifest = finished.fp32;
  if (s.calibrate !== null) {
    manifest = await calibrateOn(opts.out, labeledKept.map((x) => ({ path: x.path, label: x.label, split: 'train' })), evalSet.tradeRelevant, s.calibrate ?? 'f1');
  }

  const baselineDir = s.baseline ?? s.teacher;
  stage(`against ${baselineDir}`);
  const dataName = `${path.basename(path.resolve(opts.dataRoot ?? '.'))} ${cfg.DataLoader.Eval!.dataset.split ?? ''}`.trim();
  const comparison = await compareModels({ candidate: opts.out, baseline: baselineDir, dataset: evalSet, data: dataName, threads: opts.threads });
  await writeFile(path.join(workDir, 'comparison.json'), JSON.stringify(comparison, null, 1));
  await writeFile(path.join(workDir, 'comparison.md'), renderComparison(comparison));
  manifest = await recordComparison(opts.out, comparison);
  log(renderComparison(comparison).split('\n').slice(2, 8).join('\n'));
  let control: SsldRunResult['control'];
  if (opts.controlOut) {
    const epochs = s.distill.epochs + s.finetune.epochs;
    log(`[control] the same student without SSLD: ${epochs} epochs, cross-entropy on ${labeledKept.length} labelled images`);
    const { SSLD: _s, ...plain } = cfg;
    const controlConfig = { ...plain, Global: { ...plain.Global, epochs }, DataLoader: { ...plain.DataLoader, Train: { ...plain.DataLoader.Train, dataset: { name: 'SoftLabelSet' as const, file: finetuneFile } } } };
    const controlDir = path.join(workDir, 'control');
    record('control', await runTraining({ config: controlConfig, workDir: controlDir, dataRoot: opts.dataRoot, threads: opts.threads }));
    await finishTraining({ config: controlConfig, configPath: opts.configPath, out: opts.controlOut, workDir: controlDir, name: `${opts.name}-control`, version: opts.version, dataDescription: `${labeledKept.length} labelled images (no SSLD)` });
    if (s.calibrate !== null) await calibrateOn(opts.controlOut, labeledKept.map((x) => ({ path: x.path, label: x.label, split: 'train' })), evalSet.tradeRelevant, s.calibrate ?? 'f1');
    const controlComparison = await compareModels({ candidate: opts.controlOut, baseline: baselineDir, dataset: evalSet, data: dataName, threads: opts.threads });
    control = { manifest: await readManifest(opts.controlOut), comparison: controlComparison };
    await writeFile(path.join(workDir, 'with-without.md'), renderWithWithout(comparison, controlComparison, stats));
    log(renderWithWithout(comparison, controlComparison, stats));
  }
  const int8 = opts.int8 ? await quantizeModelDir(opts.out, `${opts.out.replace(/\/$/, '')}-int8`, labeledKept.map((x) => x.path), path.join(workDir, 'calibration.json')) : undefined;
  return { manifest, int8, comparison, stats, control };
}

/** One table: the baseline, the student without SSLD and with it, on the same eval images. */
export function renderWithWithout(ssld: Comparison, control: Comparison, stats: SsldStats): string {
  const row = (label: string, m: Comparison['candidate']) => `| ${label} | ${m.name} ${m.version} | ${(m.top1 * 100).toFixed(1)} % | ${m.flag.precision.toFixed(3)} | ${m.flag.recall.toFixed(3)} | ${m.flag.f1.toFixed(3)} |`;
  return [
    `SSLD with/without on ${ssld.data} (${ssld.n} images); ${stats.labeled.images} labelled, ${stats.mining.selected} mined of ${stats.pool.images} unlabelled`,
    '',
    '| model | | top-1 | flag P | flag R | flag F1 |',
    '|---|---|---:|---:|---:|---:|',
    row('baseline / teacher', ssld.baseline),
    row('student without SSLD', control.candidate),
    row('student with SSLD', ssld.candidate),
    '',
  ].join('\n');
}

/** Thresholds for the student from its own labelled training images, as npm run eval -- --calibrate does. */
async function calibrateOn(dir: string, samples: DatasetSample[], tradeRelevant: Map<string, boolean>, target: 'f1' | number): Promise<ModelManifest> {
  const classifier = await loadClassifier(dir);
  try {
    const { predictions } = await predict(classifier, { samples, classes: [], tradeRelevant });
    const result = calibrate(predictions, classifier.manifest.labels, target === 'f1' ? null : target);
    return await writeBack(dir, { calibration: { result, data: 'SSLD labelled train images' } });
  } finally {
    await classifier.dispose();
  }
}
