/**
 * The boundary with the Python toolchain: one protocol (exit codes, the result line, the error line),
 * declared in wildtrain/protocol.py and mirrored by PROTOCOL in python-env.ts, and a schema for
 * everything Python hands back.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { isAppError } from '../../src/errors.js';
import { PROTOCOL, PYTHON_SRC, pythonEnvReady, runWildtrain, venvPython } from '../../src/training/python-env.js';
import { checkPythonResult, TRAINING_SUMMARY_SCHEMA } from '../../src/training/python-results.js';

const run = promisify(execFile);
const skip = !(await pythonEnvReady()) && !process.env.CI ? 'the training venv is not set up: run `npm run setup:train`' : false;

describe('the wildtrain protocol', () => {
  test('protocol.py and python-env.ts declare the same exit codes and line prefixes', async () => {
    const py = await readFile(path.join(PYTHON_SRC, 'wildtrain', 'protocol.py'), 'utf8');
    const constant = (name: string) => {
      const m = new RegExp(`^${name} = (.+)$`, 'm').exec(py);
      assert.ok(m, `${name} in protocol.py`);
      return JSON.parse(m[1]!.replace(/^"(.*)"$/, '"$1"')) as unknown;
    };
    for (const name of Object.keys(PROTOCOL) as Array<keyof typeof PROTOCOL>) assert.equal(constant(name), PROTOCOL[name], name);
  });

  test('a training summary of the wrong shape is refused with every problem listed', () => {
    assert.throws(() => checkPythonResult(TRAINING_SUMMARY_SCHEMA, { arch: 'ResNet18_vd', classes: [], mean: [0.5, 0.5], epochs: 'two' }, 'runs/x/training.json'), (err: unknown) => {
      assert.ok(isAppError(err, 'TRAIN_RESULT_INVALID'));
      const message = (err as Error).message;
      for (const part of ['runs/x/training.json', 'classes', 'mean', 'epochs', 'history', 'calibration']) assert.match(message, new RegExp(part), part);
      return true;
    });
  });

  test('an expected failure through the distributed launcher\'s entry exits with the usage code and one error line, like the module entry', { skip }, async () => {
    const args = ['export', '--weights', '/nonexistent/final.pdparams', '--arch', 'ResNet18_vd', '--class-num', '3', '--out', '/tmp/never.onnx'];
    for (const entry of [['wildtrain_launch.py'], ['-m', 'wildtrain']]) {
      const failure = await run(venvPython(), [...entry, ...args], { cwd: PYTHON_SRC, env: { ...process.env, PYTHONPATH: PYTHON_SRC } }).then(() => null, (err: { code: number; stderr: string }) => err);
      assert.ok(failure, `${entry.join(' ')} should fail`);
      assert.equal(failure.code, PROTOCOL.EXIT_USAGE, `${entry.join(' ')}: ${failure.stderr.slice(-300)}`);
      assert.match(failure.stderr.trim().split('\n').at(-1)!, /^error: .*nonexistent/);
      assert.doesNotMatch(failure.stderr, /Traceback/);
    }
    await assert.rejects((await runWildtrain(args)).done, (err: unknown) => isAppError(err, 'TRAIN_FAILED') && /nonexistent/.test((err as Error).message) && !/Traceback/.test((err as Error).message));
  });
});
