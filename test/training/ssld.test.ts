import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { loadClassifier, openSessionCount } from '../../src/model/engine.js';
import { readManifest } from '../../src/model/manifest.js';
import { loadTrainConfig } from '../../src/training/config.js';
import { trainModel } from '../../src/training/pipeline.js';
import { REPO_ROOT } from '../../src/training/python-env.js';
import { makeSyntheticDataset, SYNTHETIC_CLASSES, type SyntheticDataset } from '../helpers/synthetic.js';

const run = promisify(execFile);

interface SsldTraining {
  method: string;
  teacher: { name: string; version: string; sha256: string };
  ssld: {
    labeled: { images: number; from_analysts: number; analysts_dropped: number };
    pool: { images: number; dedupe: Record<string, number> };
    mining: { top_k: number; selected: number; per_class: Record<string, { selected: number }>; pseudo_label_accuracy: number | null };
    stages: Record<string, { epochs: number; images: number; unlabeled: number }>;
  };
}

describe('npm run ssld with configs/train/ssld-tiny.yaml (the CI smoke run)', () => {
  let tmp: string;
  let data: SyntheticDataset;
  let stdout: string;
  let stderr: string;
  const teacherDir = () => path.join(tmp, 'teacher');
  const studentDir = () => path.join(tmp, 'student');

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-ssld-'));
    data = await makeSyntheticDataset(path.join(tmp, 'data'));
    // The unlabelled pool: other generated photos of the same classes, plus a copy of a val image
    // that must never reach training.
    const pool = await makeSyntheticDataset(path.join(tmp, 'pool'), 8, 0, 99);
    await copyFile(path.join(data.root, 'images/striped_skin/013.jpg'), path.join(pool.root, 'images/val-copy.jpg'));
    // An analysts' labelled set (npm run labels:consume's layout): one photo also in the pool, and a
    // repost of a val photo, which must not reach training either.
    const analysts = path.join(tmp, 'analysts');
    await mkdir(path.join(analysts, 'images'), { recursive: true });
    await copyFile(path.join(data.root, 'images/striped_skin/013.jpg'), path.join(analysts, 'images/val-repost.jpg'));
    await copyFile(path.join(pool.root, 'images/plain_ceramic/000.jpg'), path.join(analysts, 'images/confirmed.jpg'));
    await writeFile(path.join(analysts, 'labels.csv'), 'path,class,split,decision_id,analyst,decided_at\n'
      + 'images/val-repost.jpg,striped_skin,train,d-1,alice,2025-03-01T12:00:00Z\nimages/confirmed.jpg,plain_ceramic,train,d-2,bob,2025-03-01T12:05:00Z\n');
    const teacherConfig = path.join(REPO_ROOT, 'configs/train/tiny-resnet18vd.yaml');
    await trainModel({ config: await loadTrainConfig(teacherConfig), configPath: teacherConfig, out: teacherDir(), workDir: path.join(tmp, 'teacher-work'), dataRoot: data.root, name: 'tiny-teacher', version: '0.0.1' });
    ({ stdout, stderr } = await run('npx', ['tsx', 'src/training/cli/ssld.ts',
      '--config', 'configs/train/ssld-tiny.yaml', '--data', data.root, '--teacher', teacherDir(), '--pool', path.join(pool.root, 'images'),
      '--labeled-sets', path.join(tmp, 'analysts'),
      '--out', studentDir(), '--work', path.join(tmp, 'work'), '--control', path.join(tmp, 'control'), '--version', '0.2.0'],
    { cwd: REPO_ROOT, maxBuffer: 32 * 1024 * 1024, env: { ...process.env, CI: 'true' } }));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('shows each stage of the loop as it goes', () => {
    for (const [i, stage] of ['teacher', 'labelled data', 'pool and dedupe', 'teacher pass', 'top-k mining', 'ImageNet knowledge', 'distillation', 'fine-tune', 'export and calibrate', 'compare'].entries()) {
      assert.match(stderr, new RegExp(`\\[${i + 1}/10\\] ${stage}`));
    }
    assert.match(stderr, /\[control\] the same student without SSLD/);
  });

  test('writes a student whose model.json records the SSLD method, the teacher and the pool statistics', async () => {
    const manifest = await readManifest(studentDir());
    const teacher = await readManifest(teacherDir());
    const training = manifest.training as unknown as SsldTraining;
    assert.equal(training.method, 'ssld');
    assert.deepEqual([training.teacher.name, training.teacher.version, training.teacher.sha256], ['tiny-teacher', '0.0.1', teacher.sha256]);
    assert.equal(manifest.version, '0.2.0');
    assert.deepEqual(manifest.labels.map((l) => l.name), teacher.labels.map((l) => l.name));
    assert.equal(training.ssld.pool.dedupe.val_exact, 1, 'the copied val image is removed');
    assert.equal(training.ssld.pool.dedupe.unreadable, 1, 'the pool\'s corrupt image is reported');
    assert.equal(training.ssld.pool.dedupe.labeled_exact, 1, 'a pool photo the analysts labelled is not mined again');
    assert.deepEqual([training.ssld.labeled.from_analysts, training.ssld.labeled.analysts_dropped], [1, 1], 'the analysts\' repost of a val photo is dropped');
    const mined = training.ssld.mining;
    assert.ok(mined.selected > 0);
    for (const [label, c] of Object.entries(mined.per_class)) assert.ok(c.selected <= mined.top_k, label);
    assert.equal(training.ssld.stages.distill!.unlabeled, mined.selected, 'the distillation stage trained on the mined images');
    assert.equal(training.ssld.stages.distill!.epochs, 2);
    assert.equal(training.ssld.stages.finetune!.unlabeled, 0, 'the fine-tune uses labelled images only');
    assert.equal(training.ssld.stages.finetune!.epochs, 1);
  });

  test('calibrates the student and records its comparison with the teacher on the same val images', async () => {
    const manifest = await readManifest(studentDir());
    const metrics = manifest.metrics as { eval: { n: number; top1: number }; comparison: { baseline: string; verdict: string }; calibration: { data: string } };
    assert.equal(metrics.eval.n, 12);
    assert.equal(metrics.comparison.baseline, 'tiny-teacher@0.0.1');
    assert.ok(['better', 'worse', 'mixed'].includes(metrics.comparison.verdict));
    assert.match(metrics.calibration.data, /SSLD labelled/);
    for (const label of manifest.labels) {
      const relevant = SYNTHETIC_CLASSES.find((c) => c.name === label.name)!.trade_relevant;
      assert.equal(label.threshold === null, !relevant, label.name);
    }
    const report = await readFile(path.join(tmp, 'work', 'comparison.md'), 'utf8');
    assert.match(report, /\| candidate \| ssld-tiny 0\.2\.0 \|/);
    assert.match(report, /\| baseline \| tiny-teacher 0\.0\.1 \|/);
    const result = JSON.parse(stdout.trim().split('\n').pop()!) as { verdict: string; mined: number; control: { out: string } };
    assert.equal(result.verdict, metrics.comparison.verdict);
    assert.equal(result.control.out, path.join(tmp, 'control'));
  });

  test('writes the with/without-SSLD table next to the control model', async () => {
    const table = await readFile(path.join(tmp, 'work', 'with-without.md'), 'utf8');
    assert.match(table, /student without SSLD \| ssld-tiny-control 0\.2\.0/);
    assert.match(table, /student with SSLD \| ssld-tiny 0\.2\.0/);
    const control = await readManifest(path.join(tmp, 'control'));
    assert.equal((control.training as { method: string }).method, 'supervised');
    assert.equal((control.training as { epochs: number }).epochs, 3, 'as many epochs as distill + fine-tune');
  });

  test('the student loads in the serving engine and classifies a photo', async () => {
    const before = openSessionCount();
    const classifier = await loadClassifier(studentDir());
    try {
      const [out] = await classifier.classify(new Float32Array(classifier.inputLength), 1);
      const sum = out!.probabilities.reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-4);
    } finally {
      await classifier.dispose();
    }
    assert.equal(openSessionCount(), before);
  });

  test('npm run eval --compare evaluates candidate and current model on the same images and records the verdict', async () => {
    const { stdout: out } = await run('npx', ['tsx', 'src/training/cli/eval.ts', '--model', path.join(tmp, 'control'), '--compare', teacherDir(),
      '--data', data.root, '--labels', data.labels, '--split', 'val', '--json', '--record', '--report', path.join(tmp, 'cmp.md')], { cwd: REPO_ROOT });
    const comparison = JSON.parse(out) as { n: number; verdict: string; candidate: { name: string }; baseline: { name: string; top1: number }; report: string };
    assert.equal(comparison.n, 12);
    assert.deepEqual([comparison.candidate.name, comparison.baseline.name], ['ssld-tiny-control', 'tiny-teacher']);
    const recorded = (await readManifest(path.join(tmp, 'control'))).metrics as { comparison: { baseline: string; verdict: string } };
    assert.deepEqual(recorded.comparison.baseline, 'tiny-teacher@0.0.1');
    assert.equal(recorded.comparison.verdict, comparison.verdict);
    assert.match(await readFile(comparison.report, 'utf8'), /\| baseline \| tiny-teacher 0\.0\.1 \|/);
  });

  test('a labelled class the teacher does not know stops the loop with SSLD_LABELS_MISMATCH', async () => {
    const csv = path.join(tmp, 'extra.csv');
    const text = await readFile(data.labels, 'utf8');
    await import('node:fs/promises').then((fs) => fs.writeFile(csv, `${text}images/striped_skin/000.jpg,pangolin_scale,yes,train,x,y\n`));
    await assert.rejects(
      run('npx', ['tsx', 'src/training/cli/ssld.ts', '--config', 'configs/train/ssld-tiny.yaml', '--data', data.root, '--labels', csv, '--teacher', teacherDir(), '--out', path.join(tmp, 'never'), '--work', path.join(tmp, 'never-work')], { cwd: REPO_ROOT }),
      (err: { stderr: string; code: number }) => err.code === 1 && /SSLD_LABELS_MISMATCH/.test(err.stderr) && /pangolin_scale/.test(err.stderr),
    );
  });
});
