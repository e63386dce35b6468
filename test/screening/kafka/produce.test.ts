import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../../src/config.js';
import { CRAWLED_SCHEMA, parseCrawled } from '../../../src/contracts/index.js';
import { collect } from '../../../src/kafka/tools.js';
import { kafkaBrokers, uniqueTopics } from '../../helpers/kafka.js';

const run = promisify(execFile);
const PHOTO = path.join(REPO_ROOT, 'test', 'fixtures', 'met', 'ivory_110245.jpg');

interface Outcome { code: number; stdout: string; stderr: string }

/** The command as the README gives it, through npm (-s: stdout is the tool's own line only). */
async function produce(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Outcome> {
  return run('npm', ['run', '-s', 'kafka:produce', '--', ...args], { cwd: REPO_ROOT, env: { ...process.env, KAFKA_BROKERS: '', ...env }, timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

describe('npm run kafka:produce on a real broker', () => {
  let brokers: string[];
  const topic = uniqueTopics('produce').topics.input;
  before(async () => {
    brokers = await kafkaBrokers();
  });

  test("a local photo goes out inline, and the pipeline's parser accepts the message as sent", async () => {
    const out = await produce([PHOTO, '--listing', 'https://market.example/item/7', '--brokers', brokers.join(','), '--topic', topic]);
    assert.equal(out.code, 0, out.stderr);
    const lines = out.stdout.trim().split('\n');
    assert.equal(lines.length, 1, out.stdout);
    const printed = JSON.parse(lines[0]!) as { id: string; key: string; topic: string; partition: number; offset: string; bytes: number };
    assert.equal(printed.key, printed.id);
    assert.equal(printed.topic, topic);
    assert.match(out.stderr, new RegExp(`created topic ${topic.replaceAll('.', '\\.')}`));

    const reader = await collect(brokers, [topic]);
    try {
      const records = await reader.waitFor((r) => r.some((x) => x.key === printed.id), 30_000);
      const record = records.find((x) => x.key === printed.id)!;
      assert.equal(record.partition, printed.partition);
      assert.equal(record.offset, printed.offset);
      const parsed = parseCrawled(Buffer.from(record.value));
      assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
      const message = parsed.message;
      assert.equal(message.schema, CRAWLED_SCHEMA);
      assert.equal(message.id, printed.id);
      assert.equal(message.url, undefined);
      assert.deepEqual(Buffer.from(message.imageBase64!, 'base64'), await readFile(PHOTO));
      assert.deepEqual(message.listing, { url: 'https://market.example/item/7', platform: 'market.example', title: 'ivory_110245.jpg' });
    } finally {
      await reader.close();
    }
  });

  test('a URL goes out as the url field, with the listing it is given', async () => {
    const out = await produce(['https://img.example/photos/1.jpg', '--listing', 'https://market.example/item/8', '--platform', 'example-market', '--id', 'produce-url-1'], { KAFKA_BROKERS: brokers.join(','), CONFIG_FILE: await topicConfig(topic) });
    assert.equal(out.code, 0, out.stderr);
    assert.equal((JSON.parse(out.stdout) as { id: string }).id, 'produce-url-1');
    const reader = await collect(brokers, [topic]);
    try {
      const records = await reader.waitFor((r) => r.some((x) => x.key === 'produce-url-1'), 30_000);
      const parsed = parseCrawled(Buffer.from(records.find((x) => x.key === 'produce-url-1')!.value));
      assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
      assert.equal(parsed.message.url, 'https://img.example/photos/1.jpg');
      assert.equal(parsed.message.imageBase64, undefined);
      assert.deepEqual(parsed.message.listing, { url: 'https://market.example/item/8', platform: 'example-market' });
    } finally {
      await reader.close();
    }
  });
});

let tmp: string;
/** A CONFIG_FILE whose input topic is `topic` (the default comes from the service's config). */
async function topicConfig(topic: string, extra = ''): Promise<string> {
  tmp ??= await mkdtemp(path.join(os.tmpdir(), 'wildlife-produce-'));
  const file = path.join(tmp, `${topic}.yaml`);
  await writeFile(file, `kafka:\n  topics: { input: ${topic} }\n${extra}`);
  return file;
}

describe('npm run kafka:produce refuses bad input before it sends anything', () => {
  // An unreachable broker: a message that got as far as sending would fail with KAFKA_UNAVAILABLE instead.
  const nowhere = ['--brokers', '127.0.0.1:1'];
  before(async () => {
    tmp ??= await mkdtemp(path.join(os.tmpdir(), 'wildlife-produce-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  const refused = async (args: string[], code: string, exit = 1, env: NodeJS.ProcessEnv = {}) => {
    const out = await produce(args, env);
    assert.equal(out.code, exit, out.stderr);
    assert.equal(out.stdout, '');
    assert.match(out.stderr, new RegExp(`^error ${code}: `, 'm'));
    return out.stderr;
  };

  test('a file that is not an image is IMAGE_UNSUPPORTED_FORMAT, naming the file', async () => {
    const notes = path.join(tmp, 'notes.txt');
    await writeFile(notes, 'ivory carving, 30 cm\n');
    assert.match(await refused([notes, ...nowhere], 'IMAGE_UNSUPPORTED_FORMAT'), /notes\.txt/);
  });

  test('an empty file is IMAGE_EMPTY, a missing one INPUT_NOT_READABLE', async () => {
    const empty = path.join(tmp, 'empty.jpg');
    await writeFile(empty, '');
    await refused([empty, ...nowhere], 'IMAGE_EMPTY');
    await refused([path.join(tmp, 'missing.jpg'), ...nowhere], 'INPUT_NOT_READABLE');
  });

  test('a URL the service would not fetch is URL_SCHEME_NOT_ALLOWED', async () => {
    await refused(['ftp://img.example/1.jpg', ...nowhere], 'URL_SCHEME_NOT_ALLOWED');
  });

  test('a message that breaks the images.crawled/v1 contract is MESSAGE_INVALID with the reason', async () => {
    const stderr = await refused([PHOTO, '--listing', `https://market.example/${'x'.repeat(5000)}`, ...nowhere], 'MESSAGE_INVALID');
    assert.match(stderr, /\/listing\/url must NOT have more than 4096 characters/);
  });

  test('a photo too large to go inline under kafka.maxRecordBytes is IMAGE_TOO_LARGE, pointing at URLs', async () => {
    const stderr = await refused([PHOTO, ...nowhere], 'IMAGE_TOO_LARGE', 1, { CONFIG_FILE: await topicConfig('images.crawled', '  maxRecordBytes: 16384\n') });
    assert.match(stderr, /publish the photo's URL instead/);
  });

  test('no input, or an unknown option, is CLI_USAGE with exit code 2', async () => {
    await refused([...nowhere], 'CLI_USAGE', 2);
    await refused([PHOTO, '--lisitng', 'https://market.example/1', ...nowhere], 'CLI_USAGE', 2);
  });

  test('an unreachable broker is KAFKA_UNAVAILABLE, within seconds', async () => {
    const started = Date.now();
    await refused([PHOTO, ...nowhere], 'KAFKA_UNAVAILABLE');
    assert.ok(Date.now() - started < 30_000);
  });
});
