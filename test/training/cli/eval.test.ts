/**
 * npm run eval on a terminal: progress on stderr, the summary and the per-class table on stdout;
 * with --json, stdout is one JSON document and nothing else, however much progress there was;
 * --calibrate writes thresholds that a fresh evaluation then reads back as the flags it reported.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../../src/config.js';
import { readManifest } from '../../../src/model/manifest.js';
import { calibratedLabels } from '../../../src/training/calibration.js';
import type { FlagMetrics } from '../../../src/training/evaluate.js';
import { writeFixtureLabels } from '../../helpers/fixture-labels.js';
import { copyModel } from '../../helpers/models.js';
import { TEST_MODEL_DIRS } from '../../helpers/server.js';

const run = promisify(execFile);
const MODEL = TEST_MODEL_DIRS[0]!;

describe('npm run eval -- --model on the terminal', () => {
  let tmp: string;
  let args: string[];
  const evalCli = async (extra: string[], model = MODEL) => {
    const env = { ...process.env, CONFIG_FILE: '', MODEL_DIRS: '' };
    return run(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/training/cli/eval.ts'), '--model', model, ...args, ...extra], { cwd: REPO_ROOT, env, maxBuffer: 1 << 24 });
  };

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-eval-cli-'));
    args = ['--data', tmp, '--labels', await writeFixtureLabels(tmp), '--split', 'val', '--threads', '2', '--report', path.join(tmp, 'report.html')];
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  test('--json prints exactly one JSON document on stdout; the progress goes to stderr', async () => {
    const { stdout, stderr } = await evalCli(['--json']);
    assert.equal(stdout.split('\n').length, 2, 'one line and its newline');
    const report = JSON.parse(stdout) as { n: number; perClass: Record<string, unknown> };
    assert.equal(report.n, 8);
    assert.match(stderr, /: 8\/8 images \(100%\)/);
  });

  test('without --json the summary is followed by a per-class row for every class evaluated', async () => {
    const { stdout, stderr } = await evalCli([]);
    const { stdout: json } = await evalCli(['--json']);
    const perClass = (JSON.parse(json) as { perClass: Record<string, { support: number; f1: number }> }).perClass;
    const lines = stdout.trimEnd().split('\n');
    const header = lines.findIndex((l) => /^label +n +precision +recall +F1$/.test(l));
    assert.ok(header > 0, stdout);
    assert.match(lines[header - 1]!, /^$/, 'a blank line between the summary and the table');
    const rows = lines.slice(header + 1);
    assert.deepEqual(rows.map((r) => r.split(/ +/)[0]), Object.keys(perClass));
    for (const row of rows) {
      const [label, n, , , f1] = row.split(/ +/);
      assert.equal(Number(n), perClass[label!]!.support, row);
      assert.equal(f1, perClass[label!]!.f1.toFixed(3), row);
    }
    assert.doesNotMatch(stdout, /images \(\d+%\)/, 'no progress on stdout');
    assert.match(stderr, /images \(100%\)/);
  });

  test('--calibrate writes thresholds under which a fresh evaluation flags exactly as the calibration reported', async () => {
    const copy = await copyModel(MODEL, path.join(tmp, 'calibrated'));
    const before = await readManifest(copy);
    type Calibrated = { flag: FlagMetrics; calibration: { thresholds: Record<string, number>; after: FlagMetrics } };
    const calibrated = JSON.parse((await evalCli(['--json', '--calibrate', '0.9'], copy)).stdout) as Calibrated;
    const written = await readManifest(copy);
    assert.deepEqual(written.labels, calibratedLabels(before.labels, calibrated.calibration.thresholds));
    assert.notDeepEqual(written.labels, before.labels, 'the fixture photos must move the thresholds, or this test could not see them written');
    assert.deepEqual(calibrated.flag, calibrated.calibration.after);
    const again = JSON.parse((await evalCli(['--json'], copy)).stdout) as Calibrated;
    assert.deepEqual(again.flag, calibrated.calibration.after);
  });
});
