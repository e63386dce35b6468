import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT } from '../../src/config.js';
import { readDataset } from '../../src/training/dataset.js';
import { openLabeledSet, readKnownClasses, type LabeledSetReport } from '../../src/training/labeled-set.js';
import { createFetcher } from '../../src/net/fetcher.js';
import type { ReviewDecision } from '../../src/contracts/index.js';
import { jpegOf } from '../helpers/images.js';
import { TEST_MODEL_DIRS } from '../helpers/server.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface Photo { bytes: Buffer; sha: string }
const photos: Photo[] = [];

let tmp: string;
let pool: string;
let images: Server;
let imagesUrl: string;

/** A confirmed decision on photo `i` unless overridden. */
function decision(i: number, overrides: Partial<ReviewDecision> = {}): ReviewDecision {
  return {
    schema: 'images.review-decisions/v1',
    reviewId: randomUUID(),
    decisionId: `d-${i}`,
    label: 'ivory',
    verdict: 'confirmed',
    analyst: 'alice',
    decidedAt: '2025-03-01T12:00:00Z',
    image: { sha256: photos[i]!.sha },
    ...overrides,
  };
}

const readCsv = async (dir: string) => (await readFile(path.join(dir, 'labels.csv'), 'utf8')).trimEnd().split('\n');
const rowsOf = async (dir: string) => (await readCsv(dir)).slice(1).map((line) => line.split(','));
const newDir = () => mkdtemp(path.join(tmp, 'set-'));

describe('the analysts\' labeled set', () => {
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-labels-'));
    for (let i = 0; i < 8; i++) {
      const bytes = await jpegOf(i % 2 ? 'spotted_skin' : 'plain_ceramic', 64 + i, 48, 700 + i);
      photos.push({ bytes, sha: sha256(bytes) });
    }
    // The pool holds photos 0–4 (as a crawler or the screening service would have kept them).
    pool = path.join(tmp, 'pool');
    await mkdir(path.join(pool, 'crawl'), { recursive: true });
    const index: string[] = [];
    for (let i = 0; i < 5; i++) {
      await writeFile(path.join(pool, 'crawl', `p${i}.jpg`), photos[i]!.bytes);
      index.push(JSON.stringify({ sha256: photos[i]!.sha, file: `crawl/p${i}.jpg` }));
    }
    await writeFile(path.join(pool, 'index.jsonl'), `${index.join('\n')}\n`);
    // Photos 5–7 only exist behind URLs; /wrong.jpg serves photo 7 whatever was asked for.
    images = createServer((req, res) => {
      const m = /^\/photo(\d)\.jpg$/.exec(req.url ?? '');
      if (m) res.writeHead(200, { 'content-type': 'image/jpeg' }).end(photos[Number(m[1])]!.bytes);
      else if (req.url === '/wrong.jpg') res.writeHead(200, { 'content-type': 'image/jpeg' }).end(photos[7]!.bytes);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => images.listen(0, '127.0.0.1', resolve));
    imagesUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
  });
  after(async () => {
    images?.closeAllConnections();
    await new Promise((resolve) => images?.close(resolve));
    await rm(tmp, { recursive: true, force: true });
  });

  const fetcher = () => createFetcher({ timeoutMs: 5000, maxBytes: 1 << 20, maxRedirects: 2, allowlist: ['127.0.0.1'] });

  test('a confirmed decision becomes a labels.csv row, its photo copied from the pool under images/<sha[0:2]>/', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool });
    const result = await set.append(decision(0), { topic: 't', partition: 1, offset: '41' });
    assert.deepEqual(result, { duplicate: false, sha256: photos[0]!.sha, image: 'pool' });
    const report = await set.compile();
    await set.close();
    const rel = `images/${photos[0]!.sha.slice(0, 2)}/${photos[0]!.sha}.jpg`;
    assert.deepEqual(await readCsv(dir), ['path,class,split,decision_id,analyst,decided_at', `${rel},ivory,train,d-0,alice,2025-03-01T12:00:00Z`]);
    assert.ok((await readFile(path.join(dir, rel))).equals(photos[0]!.bytes));
    assert.equal(report.counts.labeled, 1);
    assert.deepEqual(report.perClass, { ivory: 1 });
    const line = JSON.parse((await readFile(path.join(dir, 'decisions.jsonl'), 'utf8')).trim()) as Record<string, any>;
    assert.deepEqual(line.source, { topic: 't', partition: 1, offset: '41' });
    assert.deepEqual(line.decision, decision(0, { reviewId: line.decision.reviewId }));
    assert.ok(Number.isFinite(Date.parse(line.receivedAt)));
    // The compiled CSV is an ordinary dataset for the toolchain.
    const dataset = await readDataset({ root: dir, labels: 'labels.csv' });
    assert.deepEqual(dataset.samples, [{ path: path.join(dir, rel), label: 'ivory', split: 'train' }]);
  });

  test('the latest decidedAt wins whatever the arrival order, and the disagreement is reported as a conflict', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool });
    // Bob's later decision arrives first; Alice's earlier one after it; Carol agrees with Bob on another photo.
    const bob = decision(1, { decisionId: 'd-1b', analyst: 'bob', label: 'big_cat', decidedAt: '2025-03-02T09:00:00Z' });
    const alice = decision(1, { decisionId: 'd-1', analyst: 'alice', label: 'ivory', decidedAt: '2025-03-01T09:00:00Z' });
    await set.append(bob);
    await set.append(alice);
    await set.append(decision(2, { analyst: 'bob', label: 'big_cat' }));
    await set.append(decision(2, { analyst: 'carol', label: 'big_cat', decidedAt: '2025-03-03T09:00:00Z' }));
    const report = await set.compile();
    await set.close();
    const rows = await rowsOf(dir);
    assert.deepEqual(rows.find((r) => r[0]!.includes(photos[1]!.sha))?.slice(1), ['big_cat', 'train', 'd-1b', 'bob', '2025-03-02T09:00:00Z']);
    assert.deepEqual(rows.find((r) => r[0]!.includes(photos[2]!.sha))?.slice(1, 2), ['big_cat']);
    assert.equal(report.counts.conflicts, 1, 'agreeing analysts are not a conflict');
    const conflict = report.conflicts[0]!;
    assert.equal(conflict.sha256, photos[1]!.sha);
    assert.deepEqual(conflict.decisions.map((d) => [d.analyst, d.verdict, d.label, d.decidedAt]), [
      ['alice', 'confirmed', 'ivory', '2025-03-01T09:00:00Z'],
      ['bob', 'confirmed', 'big_cat', '2025-03-02T09:00:00Z'],
    ]);
    assert.equal(conflict.winner.analyst, 'bob');
    assert.equal(conflict.outcome, 'labeled');
    assert.equal(conflict.class, 'big_cat');
    const onDisk = JSON.parse(await readFile(path.join(dir, 'report.json'), 'utf8')) as LabeledSetReport;
    assert.deepEqual(onDisk.conflicts, report.conflicts);
  });

  test('equal decidedAt: the later received decision wins', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool });
    await set.append(decision(1, { label: 'ivory' }), { receivedAt: new Date('2025-03-05T00:00:01Z') });
    await set.append(decision(1, { label: 'rhino' }), { receivedAt: new Date('2025-03-05T00:00:00Z') });
    await set.compile();
    await set.close();
    assert.equal((await rowsOf(dir))[0]![1], 'ivory');
  });

  test('a reopened decision retracts the earlier ones; a decision after it counts again', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool });
    await set.append(decision(1, { label: 'ivory', decidedAt: '2025-03-01T10:00:00Z' }));
    // The undo names only the flagged decision: its photo is found through decisionId.
    const { image: _none, ...reopen } = decision(1, { verdict: 'reopened', analyst: 'lead', decidedAt: '2025-03-01T11:00:00Z', previous: { verdict: 'confirmed', label: 'ivory' } });
    const r = await set.append(reopen);
    assert.equal(r.sha256, photos[1]!.sha);
    let report = await set.compile();
    assert.deepEqual(await rowsOf(dir), []);
    assert.equal(report.counts.retracted, 1);
    assert.equal(report.counts.conflicts, 0);

    await set.append(decision(1, { label: 'ceramic_lookalike', analyst: 'lead', decidedAt: '2025-03-01T12:00:00Z' }));
    report = await set.compile();
    await set.close();
    assert.deepEqual((await rowsOf(dir)).map((r) => [r[1], r[4]]), [['ceramic_lookalike', 'lead']]);
    assert.equal(report.counts.conflicts, 0, 'a correction after an undo is not a conflict');
    assert.equal(report.counts.retracted, 0);
  });

  test('rejected with a correctLabel trains the correct label; rejected without one is negative_without_label; escalated is pending', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool });
    await set.append(decision(0, { verdict: 'rejected', label: 'ivory', correctLabel: 'ceramic_lookalike' }));
    await set.append(decision(1, { verdict: 'rejected', label: 'ivory' }));
    await set.append(decision(2, { verdict: 'rejected', label: 'ivory', correctLabel: null }));
    await set.append(decision(3, { verdict: 'escalated', label: 'rhino' }));
    const report = await set.compile();
    await set.close();
    assert.deepEqual((await rowsOf(dir)).map((r) => r[1]), ['ceramic_lookalike']);
    assert.equal((await rowsOf(dir))[0]![0], `images/${photos[0]!.sha.slice(0, 2)}/${photos[0]!.sha}.jpg`);
    assert.deepEqual(
      [report.counts.labeled, report.counts.negative_without_label, report.counts.pending, report.counts.images],
      [1, 2, 1, 4],
    );
  });

  test('duplicates — the same reviewId, or the same content without one — are ignored and counted', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool });
    const once = decision(0);
    assert.equal((await set.append(once)).duplicate, false);
    assert.equal((await set.append({ ...once })).duplicate, true);
    // Same reviewId, even if the redelivered copy differs, is the same review action.
    assert.equal((await set.append({ ...once, note: 'redelivered' })).duplicate, true);
    const { reviewId: _a, ...noId } = decision(1, { label: 'big_cat' });
    assert.equal((await set.append(noId)).duplicate, false);
    // Same decision, verdict, label, analyst and instant (written differently) without a reviewId.
    assert.equal((await set.append({ ...noId, decidedAt: '2025-03-01T13:00:00.000+01:00' })).duplicate, true);
    assert.equal((await set.append({ ...noId, analyst: 'bob' })).duplicate, false);
    const report = await set.compile();
    await set.close();
    assert.equal(report.counts.lines, 6);
    assert.equal(report.counts.duplicates, 3);
    assert.equal(report.counts.decisions, 3);
    assert.equal(report.counts.conflicts, 0);
    assert.deepEqual((await rowsOf(dir)).map((r) => r[1]).sort(), ['big_cat', 'ivory']);
  });

  test('a label outside the model\'s classes is reported, not trained', async () => {
    const known = await readKnownClasses(TEST_MODEL_DIRS[0]!);
    assert.ok(known.includes('ivory') && !known.includes('pangolin_scale'));
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool, knownClasses: known });
    await set.append(decision(0, { label: 'ivory' }));
    await set.append(decision(1, { label: 'pangolin_scale', analyst: 'bob' }));
    await set.append(decision(2, { verdict: 'rejected', label: 'ivory', correctLabel: 'bone_carving' }));
    const report = await set.compile();
    await set.close();
    assert.deepEqual((await rowsOf(dir)).map((r) => r[1]), ['ivory']);
    assert.equal(report.counts.unknown_label, 2);
    assert.deepEqual(report.unknownLabels.map((u) => [u.sha256, u.class, u.analyst]).sort(), [
      [photos[1]!.sha, 'pangolin_scale', 'bob'],
      [photos[2]!.sha, 'bone_carving', 'alice'],
    ].sort());
    assert.deepEqual(report.knownClasses, [...known].sort());
  });

  test('a photo is fetched from image.url through the guarded fetcher, with or without a sha256 to check', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool, fetcher: fetcher() });
    const withSha = await set.append(decision(5, { image: { sha256: photos[5]!.sha, url: `${imagesUrl}/photo5.jpg` } }));
    assert.deepEqual(withSha, { duplicate: false, sha256: photos[5]!.sha, image: 'fetched' });
    const withoutSha = await set.append(decision(6, { label: 'big_cat', image: { url: `${imagesUrl}/photo6.jpg` } }));
    assert.deepEqual(withoutSha, { duplicate: false, sha256: photos[6]!.sha, image: 'fetched' });
    // Already stored: nothing is fetched again.
    assert.equal((await set.append(decision(5, { analyst: 'bob', image: { sha256: photos[5]!.sha, url: `${imagesUrl}/gone.jpg` } }))).image, 'present');
    const report = await set.compile();
    await set.close();
    assert.deepEqual((await rowsOf(dir)).map((r) => [r[0]!.split('/')[2], r[1]]).sort(), [[`${photos[5]!.sha}.jpg`, 'ivory'], [`${photos[6]!.sha}.jpg`, 'big_cat']].sort());
    assert.equal(report.counts.unresolved, 0);
  });

  test('the fetcher\'s SSRF guard applies: without the allowlist a loopback URL is refused and the photo unresolved', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { fetcher: createFetcher({ timeoutMs: 5000, maxBytes: 1 << 20, maxRedirects: 2 }) });
    const r = await set.append(decision(5, { image: { sha256: photos[5]!.sha, url: `${imagesUrl}/photo5.jpg` } }));
    assert.equal(r.image, 'unresolved');
    assert.match(r.reason!, /URL_HOST_FORBIDDEN/);
    const report = await set.compile();
    await set.close();
    assert.match(report.unresolved[0]!.reason, /fetch failed: URL_HOST_FORBIDDEN/);
  });

  test('a fetched photo whose sha256 differs is not stored: the decision is kept, the photo unresolved with the reason', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool, fetcher: fetcher() });
    const r = await set.append(decision(5, { image: { sha256: photos[5]!.sha, url: `${imagesUrl}/wrong.jpg` } }));
    assert.equal(r.image, 'unresolved');
    assert.equal(r.reason, `not in the pool; sha256 mismatch: ${imagesUrl}/wrong.jpg returned ${photos[7]!.sha}`);
    const report = await set.compile();
    await set.close();
    assert.deepEqual(await rowsOf(dir), []);
    assert.equal(report.counts.decisions, 1);
    assert.equal(report.counts.unresolved, 1);
    assert.deepEqual(report.unresolved, [{ sha256: photos[5]!.sha, class: 'ivory', decisionIds: ['d-5'], url: `${imagesUrl}/wrong.jpg`, reason: r.reason }]);
    const lines = (await readFile(path.join(dir, 'decisions.jsonl'), 'utf8')).trim().split('\n');
    assert.equal(lines.length, 1);
    assert.equal((JSON.parse(lines[0]!) as { image: { status: string } }).image.status, 'unresolved');
  });

  test('a decision without any image reference is kept and reported unresolved', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool });
    const { image: _none, ...bare } = decision(0, { decisionId: 'd-bare' });
    assert.deepEqual(await set.append(bare), { duplicate: false, sha256: null, image: 'unresolved', reason: 'no image reference (image.sha256 or image.url)' });
    const report = await set.compile();
    await set.close();
    assert.deepEqual(report.unresolved, [{ sha256: null, class: 'ivory', decisionIds: ['d-bare'], url: null, reason: 'no image reference (image.sha256 or image.url)' }]);
  });

  test('a later decision on a photo that was unresolved resolves it (from the pool)', async () => {
    const dir = await newDir();
    const first = await openLabeledSet(dir);
    await first.append(decision(3));
    assert.equal((await first.compile()).counts.unresolved, 1);
    await first.close();
    const second = await openLabeledSet(dir, { pool });
    assert.equal((await second.append(decision(3, { analyst: 'bob' }))).image, 'pool');
    const report = await second.compile();
    await second.close();
    assert.equal(report.counts.unresolved, 0);
    assert.equal(report.counts.labeled, 1);
  });

  test('after a restart the set re-reads decisions.jsonl, recognises earlier duplicates, and compiles the same labels.csv', async () => {
    const dir = await newDir();
    const first = await openLabeledSet(dir, { pool });
    const decisions = [
      decision(0), decision(1, { label: 'big_cat' }), decision(1, { label: 'rhino', analyst: 'bob', decidedAt: '2025-03-04T00:00:00Z' }),
      decision(2, { verdict: 'rejected', correctLabel: 'ceramic_lookalike' }), decision(3, { verdict: 'escalated' }),
    ];
    for (const d of decisions) await first.append(d);
    const before = await first.compile();
    const csv = await readFile(path.join(dir, 'labels.csv'), 'utf8');
    await first.close();

    const second = await openLabeledSet(dir, { pool });
    // At-least-once: the consumer may get the last decisions again after a crash.
    assert.equal((await second.append(decisions[3]!)).duplicate, true);
    assert.equal((await second.append(decisions[4]!)).duplicate, true);
    const afterRestart = await second.compile();
    await second.close();
    assert.equal(await readFile(path.join(dir, 'labels.csv'), 'utf8'), csv);
    assert.deepEqual({ ...afterRestart.counts, lines: 0, duplicates: 0 }, { ...before.counts, lines: 0, duplicates: 0 });
    assert.equal(afterRestart.counts.duplicates, before.counts.duplicates + 2);
    assert.deepEqual(afterRestart.conflicts, before.conflicts);
  });

  test('decisions.jsonl only grows: every append adds one line and leaves the earlier bytes as they were', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool });
    const file = path.join(dir, 'decisions.jsonl');
    let previous = Buffer.alloc(0);
    const steps = [decision(0), decision(0, { verdict: 'reopened' }), decision(0, { label: 'big_cat' }), decision(1), decision(1)];
    steps[4] = { ...steps[3]! }; // a duplicate is recorded too, and ignored by compile
    for (const [i, d] of steps.entries()) {
      await set.append(d);
      if (i % 2) await set.compile();
      const now = await readFile(file);
      assert.ok(now.length > previous.length);
      assert.ok(now.subarray(0, previous.length).equals(previous), `append ${i} changed earlier bytes`);
      assert.equal(now.toString('utf8').split('\n').length - 1, i + 1);
      previous = now;
    }
    await set.close();
  });

  test('a torn last line from a crash mid-append is ended, reported as an invalid line, and later decisions are whole', async () => {
    const dir = await newDir();
    const first = await openLabeledSet(dir, { pool });
    await first.append(decision(0));
    await first.close();
    const file = path.join(dir, 'decisions.jsonl');
    const whole = await readFile(file);
    await appendFile(file, '{"receivedAt":"2025-03-01T00:00:00Z","decis');
    const second = await openLabeledSet(dir, { pool });
    assert.equal((await second.compile()).counts.invalid_lines, 0, 'an unterminated fragment may be an append in progress: not a line yet');
    await second.append(decision(1, { label: 'big_cat' }));
    const report = await second.compile();
    await second.close();
    const now = await readFile(file);
    assert.ok(now.subarray(0, whole.length).equals(whole));
    assert.equal(report.counts.invalid_lines, 1);
    assert.equal(report.invalidLines[0]!.line, 2);
    assert.match(report.invalidLines[0]!.reason, /^not JSON/);
    assert.equal(report.counts.labeled, 2);
  });

  test('compile-only use refuses a directory that is not a labeled set', async () => {
    await assert.rejects(openLabeledSet(path.join(tmp, 'nothing-here'), { create: false }), (err: Error & { code?: string }) => err.code === 'DATASET_INVALID');
  });

  test('npm run labels:compile prints the summary and writes labels.csv', async () => {
    const dir = await newDir();
    const set = await openLabeledSet(dir, { pool });
    await set.append(decision(0));
    await set.append(decision(0, { label: 'big_cat', analyst: 'bob', decidedAt: '2025-03-02T00:00:00Z' }));
    await set.append(decision(1, { label: 'pangolin_scale' }));
    await set.close();
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/training/cli/labels.ts', 'compile', '--dir', dir, '--model', TEST_MODEL_DIRS[0]!], { cwd: REPO_ROOT });
    assert.match(stdout, /^1 labels in .*labels\.csv: big_cat 1$/m);
    assert.match(stdout, /^conflicts 1$/m);
    assert.match(stdout, /alice confirmed ivory .* \| bob confirmed big_cat .* → labeled big_cat$/m);
    assert.match(stdout, /^unknown labels 1$/m);
    assert.match(stdout, /: pangolin_scale by alice$/m);
    assert.deepEqual((await rowsOf(dir)).map((r) => r[1]), ['big_cat']);
    const usage = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/training/cli/labels.ts', 'compile'], { cwd: REPO_ROOT }).catch((e: { code: number; stderr: string }) => e);
    assert.equal((usage as { code: number }).code, 2);
    assert.match((usage as { stderr: string }).stderr, /--dir is required/);
  });
});
