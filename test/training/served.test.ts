/**
 * npm run eval -- --served evaluates what npm start serves: the config's model directories and its
 * threshold overrides, through the service's flag rule. Driven through the CLI with CONFIG_FILE, as
 * an operator's deployment file would be read.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../src/config.js';
import { readManifest } from '../../src/model/manifest.js';
import { writeFixtureLabels } from '../helpers/fixture-labels.js';
import { TEST_MODEL_DIRS } from '../helpers/server.js';

const run = promisify(execFile);
const MODEL = TEST_MODEL_DIRS[0]!;

interface EvalJson { n: number; top1: number; flag: { tp: number; fp: number; fn: number; tn: number; precision: number; recall: number; f1: number }; perClass: Record<string, unknown>; models?: Array<{ name: string }> }

async function evalCli(args: string[], configFile?: string): Promise<EvalJson> {
  const env = { ...process.env, CONFIG_FILE: configFile ?? '', MODEL_DIRS: '' };
  const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/training/cli/eval.ts'), ...args, '--json', '--threads', '2'], { cwd: REPO_ROOT, env, maxBuffer: 1 << 24 });
  return JSON.parse(stdout) as EvalJson;
}

describe('npm run eval -- --served', () => {
  let tmp: string;
  let labels: string;
  let name: string;
  let tradeLabels: string[];
  const config = async (file: string, thresholds: Record<string, number>) => {
    const yaml = `models:\n  directories: [${JSON.stringify(MODEL)}]\n  thresholds: ${JSON.stringify(Object.keys(thresholds).length ? { [name]: thresholds } : {})}\n`;
    await writeFile(path.join(tmp, file), yaml);
    return path.join(tmp, file);
  };

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-served-'));
    labels = await writeFixtureLabels(tmp);
    const manifest = await readManifest(MODEL);
    name = manifest.name;
    tradeLabels = manifest.labels.filter((l) => l.trade_relevant).map((l) => l.name);
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  test('without overrides it matches the single-model evaluation of the served directory', async () => {
    const data = ['--data', tmp, '--labels', labels, '--split', 'val'];
    const served = await evalCli(['--served', ...data], await config('plain.yaml', {}));
    const single = await evalCli(['--model', MODEL, ...data]);
    assert.equal(served.n, 8);
    assert.deepEqual(served.models?.map((m) => m.name), [name]);
    assert.deepEqual(served.flag, single.flag);
    assert.equal(served.top1, single.top1);
    assert.deepEqual(Object.keys(served.perClass).sort(), Object.keys(single.perClass).sort());
    // Otherwise the override test below could not tell an applied override from an ignored one.
    assert.ok(served.flag.tp + served.flag.fp < served.n, 'the fixture photos must not all be flagged at model.json thresholds');
  });

  test('a config threshold override changes the decision exactly as the service applies it', async () => {
    const zero = Object.fromEntries(tradeLabels.map((l) => [l, 0]));
    const served = await evalCli(['--served', '--data', tmp, '--labels', labels, '--split', 'val'], await config('zero.yaml', zero));
    // Threshold 0 on every trade-relevant label: the service flags every photo.
    assert.equal(served.flag.tp + served.flag.fp, served.n);
    assert.equal(served.flag.fp, 6);
    assert.equal(served.flag.recall, 1);
  });

  test('--served refuses options that only make sense for one model', async () => {
    await assert.rejects(evalCli(['--served', '--model', MODEL, '--data', tmp, '--labels', labels]), /exactly one of --model and --served/);
  });

  test('with a cascade it follows CASCADE and the bands exactly: first = the first stage alone, off = the last stage alone', async () => {
    const small = path.join(REPO_ROOT, 'models', 'wildlife-efficientnet-lite0');
    const smallName = (await readManifest(small)).name;
    const data = ['--data', tmp, '--labels', labels, '--split', 'val'];
    const cascadeConfig = async (file: string, band: { from: number; below: number }) => {
      await writeFile(path.join(tmp, file), [
        // The last stage flags every photo (threshold 0), so whoever decides shows in the counts.
        `models:\n  directories: [${JSON.stringify(small)}, ${JSON.stringify(MODEL)}]\n  thresholds: ${JSON.stringify({ [name]: Object.fromEntries(tradeLabels.map((l) => [l, 0])) })}`,
        `cascade:\n  stages:\n    - model: ${smallName}\n      escalate: { from: ${band.from}, below: ${band.below} }\n    - model: ${name}\n`,
      ].join('\n'));
      return path.join(tmp, file);
    };
    const smallAlone = await evalCli(['--model', small, ...data]);
    assert.ok(smallAlone.flag.tp + smallAlone.flag.fp < smallAlone.n, 'the first stage must leave some photos unflagged, or this test could not tell the stages apart');
    // The last stage at threshold 0 flags every photo: what the service's own rule gives for that config alone.
    const bigAlone = await evalCli(['--served', ...data], await config('big-zero.yaml', Object.fromEntries(tradeLabels.map((l) => [l, 0]))));
    assert.equal(bigAlone.flag.tp + bigAlone.flag.fp, bigAlone.n);
    type Served = EvalJson & { cascade: { mode: string; escalated: number; decidedBy: Record<string, number> } };
    const served = async (file: string, band: { from: number; below: number }, mode?: string) => {
      const env = mode ? { CASCADE: mode } : {};
      const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/training/cli/eval.ts'), '--served', ...data, '--json', '--threads', '2'],
        { cwd: REPO_ROOT, env: { ...process.env, CONFIG_FILE: await cascadeConfig(file, band), MODEL_DIRS: '', ...env }, maxBuffer: 1 << 24 });
      return JSON.parse(stdout) as Served;
    };
    const everything = { from: 0, below: 1 };
    const off = await served('off.yaml', everything, 'off');
    assert.deepEqual(off.flag, bigAlone.flag);
    assert.equal(off.cascade.escalated, 8);
    const first = await served('first.yaml', everything, 'first');
    assert.deepEqual(first.flag, smallAlone.flag);
    assert.deepEqual(first.cascade.decidedBy, { [smallName]: 8 });
    const never = await served('never.yaml', { from: 0, below: 0 });
    assert.deepEqual(never.flag, smallAlone.flag, 'an empty band: the first stage decides every photo');
    const always = await served('always.yaml', everything);
    assert.deepEqual(always.flag, bigAlone.flag, 'a band over every score: the last stage decides every photo');
    assert.equal(always.cascade.mode, 'on');
  });

  test('cascade:calibrate writes a band that eval --served then reproduces, and refuses to calibrate on val', async () => {
    const small = path.join(REPO_ROOT, 'models', 'wildlife-efficientnet-lite0');
    const smallName = (await readManifest(small)).name;
    const calibLabels = path.join(tmp, 'calib.csv');
    await writeFile(calibLabels, (await readFile(labels, 'utf8')).replaceAll(',val\n', ',calib\n'));
    const file = path.join(tmp, 'calibrated.yaml');
    await writeFile(file, [
      `# deployment file\nmodels:\n  directories: [${JSON.stringify(small)}, ${JSON.stringify(MODEL)}]`,
      `  thresholds: ${JSON.stringify({ [name]: Object.fromEntries(tradeLabels.map((l) => [l, 0])) })}`,
      `cascade:\n  stages:\n    - model: ${smallName}  # the cheap one\n      escalate: { from: 0, below: 1 }\n    - model: ${name}\n`,
    ].join('\n'));
    const env = { ...process.env, CONFIG_FILE: file, MODEL_DIRS: '' };
    const cli = (args: string[]) => run(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/training/cli/cascade-calibrate.ts'), '--data', tmp, '--labels', calibLabels, '--threads', '2', '--json', ...args], { cwd: REPO_ROOT, env, maxBuffer: 1 << 24 });
    await assert.rejects(cli(['--split', 'val']), /calibrating on val would tune the val numbers/);
    // The last stage flags everything, so any loss of precision is allowed and no recall may be lost.
    const { stdout } = await cli(['--split', 'calib', '--max-precision-loss', '0.9', '--write', file]);
    const choice = JSON.parse(stdout) as { band: { from: number; below: number }; escalated: number; cascade: { precision: number; recall: number } };
    assert.equal(choice.cascade.recall, 1);
    assert.ok(choice.escalated < 8, 'a first stage that is right on some photos keeps them');
    const written = await readFile(file, 'utf8');
    assert.match(written, /# deployment file/, 'comments survive');
    assert.match(written, /# the cheap one/);
    assert.match(written, new RegExp(`escalate: \\{ from: ${choice.band.from}, below: ${choice.band.below} \\} # calibrated on`));
    const { stdout: servedOut } = await run(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/training/cli/eval.ts'), '--served', '--data', tmp, '--labels', calibLabels, '--split', 'calib', '--json', '--threads', '2'], { cwd: REPO_ROOT, env, maxBuffer: 1 << 24 });
    const served = JSON.parse(servedOut) as EvalJson & { cascade: { escalated: number } };
    assert.equal(served.cascade.escalated, choice.escalated);
    assert.deepEqual([served.flag.precision, served.flag.recall], [choice.cascade.precision, choice.cascade.recall]);
  });
});
