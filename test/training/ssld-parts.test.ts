import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { REPO_ROOT } from '../../src/config.js';
import { parseSsldConfig, ssldConfigProblems, distillStageConfig, finetuneStageConfig, imagenetDistillStageConfig } from '../../src/training/ssld/config.js';
import { dedupePool } from '../../src/training/ssld/dedupe.js';
import { topKPerClass } from '../../src/training/ssld/mine.js';
import { verdictOf } from '../../src/training/ssld/compare.js';
import { readPoolSources } from '../../src/training/ssld/sources.js';
import { hideLabels } from '../../src/training/ssld/split.js';
import { trainConfigProblems } from '../../src/training/config.js';
import { parse as parseYaml } from 'yaml';

const MET = path.join(REPO_ROOT, 'test/fixtures/met');
const metFiles = ['ivory_110245.jpg', 'ivory_209842.jpg', 'non_ivory_36078.jpg', 'non_ivory_467372.jpg'].map((f) => path.join(MET, f));

async function tinyConfig(): Promise<Record<string, unknown>> {
  return parseYaml(await readFile(path.join(REPO_ROOT, 'configs/train/ssld-tiny.yaml'), 'utf8')) as Record<string, unknown>;
}

describe('SSLD configs', () => {
  test('the shipped ssld-*.yaml configs validate', async () => {
    const names = (await readdir(path.join(REPO_ROOT, 'configs/train'))).filter((n) => n.startsWith('ssld-'));
    assert.ok(names.length >= 3);
    for (const name of names) {
      const value = parseYaml(await readFile(path.join(REPO_ROOT, 'configs/train', name), 'utf8'));
      assert.deepEqual(ssldConfigProblems(value), [], name);
    }
  });

  test('every problem of a broken SSLD section is listed at once', async () => {
    const cfg = await tinyConfig();
    const ssld = cfg.SSLD as Record<string, unknown>;
    ssld.mining = { top_k: 0, phash_max_distance: 99 };
    ssld.shuffle = true;
    delete ssld.teacher;
    const problems = ssldConfigProblems(cfg);
    assert.ok(problems.some((p) => p.includes('teacher')), problems.join('\n'));
    assert.ok(problems.some((p) => p.includes('shuffle')), problems.join('\n'));
    assert.ok(problems.some((p) => p.includes('top_k')), problems.join('\n'));
    assert.ok(problems.some((p) => p.includes('phash_max_distance')), problems.join('\n'));
    assert.throws(() => parseSsldConfig(cfg, 'broken.yaml'), (err: Error & { code?: string }) => err.code === 'TRAIN_CONFIG_INVALID' && err.message.includes('broken.yaml'));
  });

  test('a distillation loss in the fine-tune Loss section and a missing Eval loader are refused', async () => {
    const cfg = await tinyConfig();
    (cfg.Loss as { Train: unknown[] }).Train.push({ JSDivLoss: { weight: 1 } });
    delete (cfg.DataLoader as Record<string, unknown>).Eval;
    const problems = ssldConfigProblems(cfg);
    assert.ok(problems.some((p) => p.startsWith('Loss.Train')), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('DataLoader.Eval')), problems.join('\n'));
  });

  test('the derived stage configs pass the ordinary training validation', async () => {
    const cfg = parseSsldConfig(await tinyConfig());
    const distill = distillStageConfig(cfg, '/tmp/distill.json');
    assert.deepEqual(trainConfigProblems(distill), []);
    assert.deepEqual(distill.Loss.Train, [{ JSDivLoss: { weight: 1 } }, { CELoss: { weight: 0.5, epsilon: 0.1 } }]);
    assert.equal(distill.Global.epochs, 2);
    const finetune = finetuneStageConfig(cfg, '/tmp/finetune.json', '/tmp/distill/final.pdparams');
    assert.deepEqual(trainConfigProblems(finetune), []);
    assert.equal(finetune.Arch.pretrained, '/tmp/distill/final.pdparams');
    assert.equal(finetune.Global.epochs, 1);
    assert.equal((finetune.Optimizer.lr as { learning_rate: number }).learning_rate, 0.005);
  });

  test('an online teacher needs its Paddle weights, and its stage config carries the teacher\'s own architecture, classes and geometry', async () => {
    const cfg = await tinyConfig();
    const ssld = cfg.SSLD as Record<string, any>;
    ssld.distill.online = true;
    assert.ok(ssldConfigProblems(cfg).some((p) => p.startsWith('SSLD.teacher_weights')), 'online without weights');
    ssld.teacher_weights = 'runs/teacher/final.pdparams';
    const parsed = parseSsldConfig(cfg);
    const teacher = {
      architecture: 'EfficientNetLite2', input: { name: 'x', size: 260 },
      labels: [{ name: 'a', trade_relevant: true, threshold: 0.5 }, { name: 'b', trade_relevant: false, threshold: null }],
      preprocess: { resize_short: 297, mean: [127, 127, 127], std: [128, 128, 128], pixel_scale: 1 },
    } as unknown as Parameters<typeof distillStageConfig>[2];
    const distill = distillStageConfig(parsed, '/tmp/distill.json', teacher);
    assert.deepEqual(trainConfigProblems(distill), []);
    assert.deepEqual(distill.Teacher, {
      arch: 'EfficientNetLite2', weights: path.resolve('runs/teacher/final.pdparams'), class_num: 2, image_size: 260,
      mean: [127, 127, 127], std: [128, 128, 128], pixel_scale: 1,
    });
    // The student keeps its own geometry; only the teacher sees 260 px.
    assert.equal(distill.Global.image_size, 64);
    ssld.distill.online = false;
    assert.equal(distillStageConfig(parseSsldConfig(cfg), '/tmp/distill.json', teacher).Teacher, undefined, 'stored soft labels without online');
    (cfg as Record<string, unknown>).Teacher = distill.Teacher;
    assert.ok(ssldConfigProblems(cfg).some((p) => p.startsWith('Teacher:')), 'the loop derives the teacher; a hand-written one is refused');
  });

  test('the ImageNet-knowledge stage names a known pretrained teacher and derives a JS-only, eval-free, uncached stage config', async () => {
    const cfg = await tinyConfig();
    const ssld = cfg.SSLD as Record<string, any>;
    ssld.imagenet_distill = { teacher: 'resnet50-imagenet', epochs: 0 };
    const problems = ssldConfigProblems(cfg);
    assert.ok(problems.some((p) => p.startsWith('SSLD.imagenet_distill.teacher')), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('SSLD.imagenet_distill.epochs')), problems.join('\n'));
    ssld.imagenet_distill = { teacher: 'efficientnet-lite2', epochs: 3, learning_rate: 0.01 };
    (cfg.Global as Record<string, unknown>).cached_views = 2;
    (cfg.Arch as Record<string, unknown>) = { name: 'EfficientNetLite0', pretrained: null, lr_mult_list: [0, 0, 0, 0.5, 1] };
    const teacher = { arch: 'EfficientNetLite2' as const, weights: '/w/lite2.pth', class_num: 1000, image_size: 260, mean: [127, 127, 127], std: [128, 128, 128], pixel_scale: 1 as const };
    const stage = imagenetDistillStageConfig(parseSsldConfig(cfg), '/tmp/imagenet.json', teacher);
    assert.deepEqual(trainConfigProblems(stage), []);
    assert.deepEqual(stage.Loss.Train, [{ JSDivLoss: { weight: 1 } }]);
    assert.equal(stage.DataLoader.Eval, undefined, 'no ImageNet labels to evaluate on');
    assert.equal(stage.Global.cached_views, undefined, 'the whole student learns');
    assert.equal(stage.Global.epochs, 3);
    assert.equal((stage.Optimizer.lr as { learning_rate: number }).learning_rate, 0.01);
    assert.deepEqual(stage.Teacher, teacher);
  });

  test('an online Teacher section without JSDivLoss is refused: it would feed nothing', async () => {
    const cfg = await tinyConfig();
    delete cfg.SSLD;
    cfg.Teacher = { arch: 'ResNet18_vd', weights: 'w.pdparams', class_num: 3, image_size: 64, mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2] };
    assert.ok(trainConfigProblems(cfg).some((p) => p.startsWith('Teacher:')));
    (cfg.Loss as { Train: unknown[] }).Train = [{ JSDivLoss: { weight: 1 } }];
    assert.deepEqual(trainConfigProblems(cfg), [], 'JSDivLoss on ordinary data is fine with an online teacher');
  });

  test('JS divergence on ordinary CSV data is refused: it needs soft labels', async () => {
    const cfg = await tinyConfig();
    delete cfg.SSLD;
    (cfg.Loss as { Train: unknown[] }).Train = [{ JSDivLoss: { weight: 1 } }];
    assert.ok(trainConfigProblems(cfg).some((p) => p.includes('SoftLabelSet')));
  });
});

describe('pool de-duplication against validation images', () => {
  let tmp: string;
  before(async () => { tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-dedupe-')); });
  after(async () => { await rm(tmp, { recursive: true, force: true }); });

  test('drops exact and near copies of val images, labelled images and pool repeats, and keeps the rest', async () => {
    const pool = path.join(tmp, 'pool');
    await mkdir(path.join(pool, 'nested'), { recursive: true });
    const [val1, val2, other1, other2] = metFiles;
    await copyFile(val1!, path.join(pool, 'exact.jpg'));
    await sharp(val2!).resize(200).jpeg({ quality: 70 }).toFile(path.join(pool, 'near.jpg'));
    await copyFile(other1!, path.join(pool, 'labelled-copy.jpg'));
    await copyFile(other2!, path.join(pool, 'keep.jpg'));
    await copyFile(other2!, path.join(pool, 'nested', 'keep-again.jpg'));
    await writeFile(path.join(pool, 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0x00]));
    const result = await dedupePool({ pool: await readPoolSources([pool]), valFiles: [val1!, val2!], labeledFiles: [other1!], maxDistance: 10 });
    const reason = (name: string) => result.dropped.find((d) => path.basename(d.path) === name)?.reason;
    assert.equal(reason('exact.jpg'), 'val_exact');
    assert.equal(reason('near.jpg'), 'val_near');
    assert.equal(reason('labelled-copy.jpg'), 'labeled_exact');
    assert.equal(reason('broken.jpg'), 'unreadable');
    assert.equal(reason('keep-again.jpg'), 'pool_duplicate');
    assert.deepEqual(result.kept.map((k) => path.basename(k.path)), ['keep.jpg']);
    assert.deepEqual(result.counts, { kept: 1, val_exact: 1, val_near: 1, labeled_exact: 1, pool_duplicate: 1, unreadable: 1 });
  });

  test('reads the service pool index, skipping a torn last line, and path lists relative to the list file', async () => {
    const store = path.join(tmp, 'store');
    await mkdir(path.join(store, 'images', 'ab'), { recursive: true });
    const sha = 'ab'.repeat(32);
    const entry = { sha256: sha, file: `images/ab/${sha}.jpg`, format: 'jpeg', width: 10, height: 10, bytes: 100, source: 'kafka', sampledAt: new Date().toISOString(), models: [], top: { label: 'ivory', score: 0.9 }, flagged: true, meta: {} };
    await writeFile(path.join(store, 'index.jsonl'), `${JSON.stringify(entry)}\n{"sha256":"cd`);
    const fromStore = await readPoolSources([store]);
    assert.deepEqual(fromStore.map((p) => [p.path, p.sha256]), [[path.join(store, entry.file), sha]]);
    await writeFile(path.join(tmp, 'list.txt'), `# pool\nphotos/a.jpg\n${metFiles[0]}\n`);
    assert.deepEqual((await readPoolSources([path.join(tmp, 'list.txt')])).map((p) => p.path), [path.join(tmp, 'photos/a.jpg'), metFiles[0]]);
    await assert.rejects(readPoolSources([path.join(tmp, 'nope')]), { code: 'DATASET_INVALID' });
  });
});

describe('the candidate-vs-baseline verdict', () => {
  test('calls a one-photo difference noise, and needs flag F1 up without losing top-1 to be better', () => {
    assert.equal(verdictOf({ flagF1: 0.02, top1: 0.01 }), 'better');
    assert.equal(verdictOf({ flagF1: 0.02, top1: -0.02 }), 'mixed', 'flag F1 up but top-1 down');
    assert.equal(verdictOf({ flagF1: -0.0001, top1: 0.02 }), 'mixed', 'within noise');
    assert.equal(verdictOf({ flagF1: 0.004, top1: 0 }), 'mixed', 'within noise');
    assert.equal(verdictOf({ flagF1: -0.02, top1: 0.05 }), 'worse');
  });
});

describe('top-k per class mining', () => {
  test('keeps the k most confident images of each teacher class and honours the score floor', () => {
    const items = [
      { path: 'a', probabilities: [0.9, 0.1] }, { path: 'b', probabilities: [0.8, 0.2] }, { path: 'c', probabilities: [0.7, 0.3] },
      { path: 'd', probabilities: [0.4, 0.6] }, { path: 'e', probabilities: [0.45, 0.55] }, { path: 'f', probabilities: [0.5, 0.5] },
    ];
    const result = topKPerClass(items, ['x', 'y'], 2, 0.52);
    assert.deepEqual(result.selected.map((s) => [s.path, s.teacherLabel]), [['a', 'x'], ['b', 'x'], ['d', 'y'], ['e', 'y']]);
    assert.equal(result.belowMinScore, 1);
    assert.deepEqual(result.perClass.x, { candidates: 3, selected: 2, minScore: 0.8 });
  });
});

describe('hiding part of the train labels for an SSLD experiment', () => {
  test('is per class, deterministic, keeps val untouched and at least one label per class', async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-split-'));
    try {
      const rows = ['path,class,trade_relevant,split'];
      for (let i = 0; i < 10; i++) rows.push(`images/a/${i}.jpg,a,yes,train`);
      rows.push('images/b/0.jpg,b,no,train', 'images/a/v.jpg,a,yes,val', 'images/b/v.jpg,b,no,val');
      await writeFile(path.join(tmp, 'labels.csv'), `${rows.join('\n')}\n`);
      const first = await hideLabels({ root: tmp, labeledFraction: 0.3, out: path.join(tmp, 'one') });
      const second = await hideLabels({ root: tmp, labeledFraction: 0.3, out: path.join(tmp, 'two') });
      assert.deepEqual([first.labeled, first.hidden, first.kept], [4, 7, 2]);
      assert.equal(await readFile(first.files.pool, 'utf8'), await readFile(second.files.pool, 'utf8'));
      const labeled = await readFile(first.files.labeled, 'utf8');
      assert.match(labeled, /images\/b\/0\.jpg/);
      assert.match(labeled, /images\/a\/v\.jpg,a,yes,val/);
      for (const line of (await readFile(first.files.pool, 'utf8')).trim().split('\n')) assert.ok(!labeled.includes(path.relative(tmp, line)));
      await assert.rejects(hideLabels({ root: tmp, labeledFraction: 1, out: tmp }), { code: 'CLI_USAGE' });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});
