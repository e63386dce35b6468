import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../src/config.js';
import { jpegOf } from '../helpers/images.js';
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

/**
 * A shell glob over a crawl directory easily makes a command line of tens of kilobytes. ONNX Runtime
 * (≥ 1.29) matched its telemetry regexes against /proc/self/cmdline with a regex engine that recurses
 * once per character, so a command line over ~29 000 characters overflowed the 8 MiB main stack
 * and the process died with SIGSEGV before screening anything.
 */
describe('many inputs in one call', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-cli-many-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  /** `count` JPEG files with crawler-style long names; `distinct` different photos, repeated. */
  async function photos(dir: string, count: number, distinct: number): Promise<string[]> {
    await mkdir(dir, { recursive: true });
    const jpegs = await Promise.all(Array.from({ length: distinct }, (_, i) => jpegOf('striped_skin', 64, 48, i + 1)));
    const files = Array.from({ length: count }, (_, i) => {
      const digest = createHash('sha256').update(`listing-${i}`).digest('hex');
      return path.join(dir, `listing-${String(i).padStart(4, '0')}-${digest}${digest}.jpg`);
    });
    await Promise.all(files.map((file, i) => writeFile(file, jpegs[i % distinct]!)));
    return files;
  }

  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => run(process.execPath, ['--import', 'tsx', 'src/screening/cli.ts', ...args], {
    cwd: REPO_ROOT,
    // One ORT thread: the CI machine is shared, and the point here is the count, not the speed.
    env: { ...process.env, MODEL_DIRS: TEST_MODEL_DIRS.join(','), INTRA_OP_THREADS: '1', ...env },
    maxBuffer: 64 * 1024 * 1024,
  });

  test('400 photos on one command line: exit 0 and one line per input, in order', { timeout: 600_000 }, async () => {
    // Repeated photos hit the result cache, so this costs ~40 inferences, not 400.
    const files = await photos(path.join(tmp, 'crawl'), 400, 40);
    assert.ok(files.join(' ').length > 64_000, 'the command line must be well past the old crash threshold');
    const { stdout } = await cli(files).catch((err: { code: number | null; signal: string | null; stderr: string }) =>
      assert.fail(`exit ${err.code ?? err.signal}: ${err.stderr.slice(-2000)}`));
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    assert.equal(lines.length, files.length);
    lines.forEach((line, i) => {
      assert.equal(line.input, files[i]);
      assert.equal(line.error, undefined, `${files[i]}: ${JSON.stringify(line.error)}`);
      assert.equal(typeof line.flagged, 'boolean');
    });
  });

  test('more inputs than the batch queue holds are all screened, not refused or timed out', { timeout: 600_000 }, async () => {
    // A queue of 8 makes the old submit-everything-at-once behaviour fail fast (QUEUE_FULL) with 40
    // inputs; with the default 512 the same mistake showed up as DEADLINE_EXCEEDED on a busy machine.
    const config = path.join(tmp, 'small-queue.yaml');
    await writeFile(config, 'batching:\n  maxQueueSize: 8\nkafka:\n  highWater: 8\n  lowWater: 2\n');
    const files = await photos(path.join(tmp, 'queue'), 40, 40);
    const { stdout } = await cli(files, { CONFIG_FILE: config }).catch((err: { code: number | null; stdout: string; stderr: string }) =>
      assert.fail(`exit ${err.code}: ${err.stdout.split('\n').find((l) => l.includes('"error"')) ?? err.stderr.slice(-2000)}`));
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    assert.deepEqual(lines.map((l) => l.input), files);
    assert.ok(lines.every((l) => l.error === undefined));
  });
});
