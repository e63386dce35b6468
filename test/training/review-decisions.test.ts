import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '../helpers/ports.js';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT } from '../../src/config.js';
import type { LabeledSetReport } from '../../src/training/labeled-set.js';
import type { ReviewDecision } from '../../src/contracts/index.js';
import { collect, createTopics, publish } from '../../src/kafka/tools.js';
import { jpegOf } from '../helpers/images.js';
import { kafkaBrokers } from '../helpers/kafka.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run { child: ChildProcess; stdout: string; exit: Promise<number | null> }

describe('the review-decision consumer on a real broker', () => {
  let brokers: string[];
  let tmp: string;
  let images: Server;
  let imagesUrl: string;
  const photos: Array<{ bytes: Buffer; sha: string }> = [];
  const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const topic = `review-decisions.${suffix}`;
  const dlq = `dlq.labels.${suffix}`;
  const group = `wildlife-test-labels-${suffix}`;

  before(async () => {
    brokers = await kafkaBrokers();
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-review-'));
    for (let i = 0; i < 4; i++) {
      const bytes = await jpegOf(i % 2 ? 'spotted_skin' : 'striped_skin', 70 + i, 50, 900 + i);
      photos.push({ bytes, sha: sha256(bytes) });
    }
    const pool = path.join(tmp, 'pool');
    await mkdir(pool, { recursive: true });
    for (let i = 0; i < 3; i++) await writeFile(path.join(pool, `${i}.jpg`), photos[i]!.bytes);
    await writeFile(path.join(pool, 'index.jsonl'), `${[0, 1, 2].map((i) => JSON.stringify({ sha256: photos[i]!.sha, file: `${i}.jpg` })).join('\n')}\n`);
    images = createServer((req, res) => {
      if (req.url === '/photo3.jpg') res.writeHead(200, { 'content-type': 'image/jpeg' }).end(photos[3]!.bytes);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => images.listen(0, '127.0.0.1', resolve));
    imagesUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
    await createTopics(brokers, [topic, dlq], 2);
  });
  after(async () => {
    images?.closeAllConnections();
    await new Promise((resolve) => images?.close(resolve));
    await rm(tmp, { recursive: true, force: true });
  });

  const out = () => path.join(tmp, 'labels');
  const decision = (reviewId: string, i: number, fields: Partial<ReviewDecision>): ReviewDecision => ({
    schema: 'images.review-decisions/v1', reviewId, decisionId: `d-${i}`, label: 'ivory', verdict: 'confirmed', analyst: 'alice',
    decidedAt: '2025-03-01T12:00:00Z', image: { sha256: photos[i]!.sha }, ...fields,
  });
  const message = (d: ReviewDecision) => ({ key: d.decisionId, value: JSON.stringify(d) });

  function startConsumer(metricsPort?: number): Run {
    const child = spawn(process.execPath, [
      '--import', 'tsx', path.join(REPO_ROOT, 'src/training/cli/labels.ts'), 'consume',
      '--out', out(), '--topic', topic, '--group', group, '--dlq', dlq, '--pool', path.join(tmp, 'pool'),
      '--compile-every', '1', '--compile-interval', '1', ...(metricsPort ? ['--metrics-port', String(metricsPort)] : []),
    ], {
      cwd: REPO_ROOT,
      env: { ...process.env, KAFKA_BROKERS: brokers.join(','), FETCH_ALLOWLIST: '127.0.0.1', LOG_LEVEL: 'error' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const run: Run = { child, stdout: '', exit: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
    child.stdout!.on('data', (chunk: Buffer) => { run.stdout += chunk.toString('utf8'); });
    return run;
  }

  async function report(): Promise<LabeledSetReport | null> {
    try {
      return JSON.parse(await readFile(path.join(out(), 'report.json'), 'utf8')) as LabeledSetReport;
    } catch {
      return null;
    }
  }
  const rows = async () => (await readFile(path.join(out(), 'labels.csv'), 'utf8')).trimEnd().split('\n').slice(1).map((l) => l.split(','));
  const lines = async () => (await readFile(path.join(out(), 'decisions.jsonl'), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as { source: { partition: number; offset: string }; decision: ReviewDecision; duplicate?: boolean });

  async function until(what: string, run: Run, predicate: (r: LabeledSetReport) => boolean): Promise<LabeledSetReport> {
    for (let i = 0; i < 600; i++) {
      const r = await report();
      if (r && predicate(r)) return r;
      if (run.child.exitCode !== null) assert.fail(`the consumer exited (${run.child.exitCode}) before ${what}`);
      await sleep(100);
    }
    assert.fail(`timed out waiting for ${what}: ${JSON.stringify((await report())?.counts)}`);
  }

  async function stop(run: Run): Promise<void> {
    run.child.kill('SIGTERM');
    assert.equal(await run.exit, 0, 'SIGTERM drains and exits 0');
  }

  test('decisions become labels once, across a duplicate, a conflict, a poison message and a restart', async (t) => {
    const dlqRecords = await collect(brokers, [dlq]);
    t.after(() => dlqRecords.close());
    const first = [
      decision('r1', 0, { label: 'ivory' }),
      decision('r1', 0, { label: 'ivory' }), // an at-least-once duplicate of the console's send
      decision('r2', 1, { label: 'big_cat', analyst: 'alice', decidedAt: '2025-03-01T10:00:00Z' }),
      decision('r3', 1, { verdict: 'rejected', label: 'big_cat', correctLabel: 'ceramic_lookalike', analyst: 'bob', decidedAt: '2025-03-01T11:00:00Z' }),
      decision('r4', 2, { verdict: 'rejected', label: 'ivory' }),
      decision('r5', 3, { label: 'turtle_tortoise', image: { sha256: photos[3]!.sha, url: `${imagesUrl}/photo3.jpg` } }),
    ];
    await publish(brokers, topic, [
      { key: 'poison-json', value: '{"decisionId": ' },
      ...first.slice(0, 3).map(message),
      { key: 'poison-schema', value: JSON.stringify({ decisionId: 'd-x', label: 'ivory', verdict: 'maybe', analyst: 'eve', decidedAt: '2025-03-01T12:00:00Z' }) },
      ...first.slice(3).map(message),
    ]);

    const metricsPort = await freePort();
    const run1 = startConsumer(metricsPort);
    t.after(() => { if (run1.child.exitCode === null) run1.child.kill('SIGKILL'); });
    let r = await until('six decisions compiled', run1, (x) => x.counts.lines === 6);
    const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
    assert.equal(health.status, 200);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /wildlife_labels_messages_total\{outcome="appended"\} 5\n/);
    assert.match(metrics, /wildlife_labels_messages_total\{outcome="duplicate"\} 1\n/);
    assert.match(metrics, /wildlife_labels_consumer_state\{state="running"\} 1\n/);
    assert.deepEqual((await rows()).map((row) => [row[0]!.split('/')[2]!.slice(0, 64), row[1], row[3]]).sort(), [
      [photos[0]!.sha, 'ivory', 'd-0'],
      [photos[1]!.sha, 'ceramic_lookalike', 'd-1'],
      [photos[3]!.sha, 'turtle_tortoise', 'd-3'],
    ].sort());
    assert.deepEqual([r.counts.decisions, r.counts.duplicates, r.counts.conflicts, r.counts.negative_without_label, r.counts.unresolved], [5, 1, 1, 1, 0]);
    assert.equal(r.conflicts[0]!.sha256, photos[1]!.sha);
    assert.equal(r.conflicts[0]!.winner.analyst, 'bob');

    const dead = await dlqRecords.waitFor((records) => records.length >= 2, 30_000);
    const reasons = new Map(dead.map((d) => [d.key, JSON.parse(d.value) as { code: string; reason: string; source: { topic: string } }]));
    assert.match(reasons.get('poison-json')!.reason, /^not JSON/);
    assert.equal(reasons.get('poison-schema')!.reason, 'schema: /verdict must be equal to one of the allowed values');
    assert.equal(reasons.get('poison-schema')!.code, 'MESSAGE_INVALID');
    assert.equal(reasons.get('poison-schema')!.source.topic, topic);

    await stop(run1);
    assert.match(run1.stdout, /^3 labels in /m);
    assert.match(run1.stdout, /^conflicts 1$/m);
    assert.equal((await lines()).length, 6, 'nothing more was appended while draining');

    // Later: an undo of d-0 (naming only the decision) and one more copy of r1, redelivered late.
    const { image: _none, ...undo } = decision('r6', 0, { verdict: 'reopened', analyst: 'lead', decidedAt: '2025-03-02T09:00:00Z', previous: { verdict: 'confirmed', label: 'ivory' } });
    await publish(brokers, topic, [message(undo as ReviewDecision), message(first[0]!)]);

    const run2 = startConsumer();
    t.after(() => { if (run2.child.exitCode === null) run2.child.kill('SIGKILL'); });
    r = await until('the two new messages compiled', run2, (x) => x.counts.lines === 8);
    await stop(run2);

    const all = await lines();
    assert.equal(all.length, 8, 'the first run\'s messages were committed: none was appended again');
    const sources = all.map((l) => `${l.source.partition}/${l.source.offset}`);
    assert.equal(new Set(sources).size, sources.length, 'each Kafka record is in decisions.jsonl once');
    r = (await report())!;
    assert.deepEqual([r.counts.decisions, r.counts.duplicates, r.counts.retracted, r.counts.labeled, r.counts.invalid_lines], [6, 2, 1, 2, 0]);
    assert.deepEqual((await rows()).map((row) => row[1]).sort(), ['ceramic_lookalike', 'turtle_tortoise']);
    assert.equal((await dlqRecords.waitFor((records) => records.length >= 2, 1000)).length, 2, 'no poison message was dead-lettered twice');
  });
});
