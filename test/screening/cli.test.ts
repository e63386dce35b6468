import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../src/config.js';
import { TEST_MODEL_DIRS } from '../helpers/server.js';

const run = promisify(execFile);

test('npm run screen prints one JSON line per input, in order, and exits 1 when one failed', async () => {
  const photo = path.join(REPO_ROOT, 'test', 'fixtures', 'met', 'ivory_110245.jpg');
  const missing = path.join(REPO_ROOT, 'test', 'fixtures', 'met', 'nope.jpg');
  const result = await run(process.execPath, ['--import', 'tsx', 'src/screening/cli.ts', photo, missing], {
    cwd: REPO_ROOT, env: { ...process.env, MODEL_DIRS: TEST_MODEL_DIRS.join(',') },
  }).then(() => assert.fail('expected exit code 1'), (err: { code: number; stdout: string }) => err);
  assert.equal(result.code, 1);
  const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  assert.equal(lines.length, 2);
  assert.equal(lines[0]!.input, photo);
  assert.equal(typeof lines[0]!.flagged, 'boolean');
  assert.match(lines[0]!.sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(Object.keys(lines[1]!), ['input', 'error']);
  assert.equal(lines[1]!.error.code, 'INPUT_NOT_READABLE');
});
