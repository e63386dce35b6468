/**
 * End to end in a real browser: the screening pipeline's flagged decisions arrive on the real Kafka
 * broker, an analyst signs in to the console in headless Chromium (Debian's, driven by playwright-core),
 * confirms with the keyboard, and the decision lands on the decisions topic and in the audit log.
 *
 * REVIEW_SCREENSHOT=docs/review-queue.png (npm run docs:screenshot) also saves the queue for the README.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import sharp from 'sharp';
import { chromium, type Browser } from 'playwright-core';
import { loadConfig, REPO_ROOT } from '../../src/config.js';
import { hashPassword } from '../../src/review/auth.js';
import { startReviewConsole, type ReviewConsole } from '../../src/review/console.js';
import { parseReviewDecision, type ReviewDecision } from '../../src/contracts/index.js';
import { collect, publish, type TopicCollector } from '../../src/kafka/tools.js';
import { kafkaBrokers, uniqueTopics } from '../helpers/kafka.js';
import { flaggedMessage } from '../helpers/review.js';
import { until } from '../helpers/wait.js';

const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => p && existsSync(p));
// CI installs Chromium (.ci/run); elsewhere a machine without it skips this one test, saying why.
const skip = !CHROMIUM && !process.env.CI ? 'Chromium is not installed (apt-get install chromium, or set CHROMIUM_PATH)' : false;

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'met');
const PHOTOS = ['ivory_110245.jpg', 'ivory_209842.jpg', 'non_ivory_36078.jpg', 'non_ivory_467372.jpg'];

test('an analyst signs in, sees a flagged listing from Kafka and confirms it with the keyboard; the decision reaches the topic and the audit log; undo and a rejection with the true label follow', { skip, timeout: 240_000 }, async () => {
  assert.ok(CHROMIUM, 'CI must have Chromium: .ci/run installs it with apt');
  const brokers = await kafkaBrokers();
  const { topics, groupId } = uniqueTopics('review-e2e');
  const decisionsTopic = `decisions.${groupId}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'review-e2e-'));

  // The marketplace's image host: the console fetches from it; the browser never does.
  const images = http.createServer((req, res) => {
    const name = path.basename(req.url ?? '');
    if (!PHOTOS.includes(name)) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'image/jpeg' }).end(readFileSync(path.join(FIXTURES, name)));
  });
  await new Promise<void>((r) => images.listen(0, '127.0.0.1', r));
  const imageBase = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;

  const defaults = loadConfig({});
  const config = loadConfig({}, {
    kafka: { ...defaults.kafka, brokers, groupId, topics, partitions: 1 },
    fetch: { ...defaults.fetch, allowlist: ['127.0.0.1'] },
    review: {
      ...defaults.review, port: 0, database: path.join(dir, 'review.db'), decisionsTopic, groupId: `${groupId}-review`, publishIntervalMs: 500,
      auth: { ...defaults.review.auth, mode: 'accounts', accounts: [{ username: 'ana', passwordHash: await hashPassword('ivory-is-not-for-sale', { N: 1024 }), role: 'analyst' }] },
    },
  });

  let decisions: TopicCollector | null = null;
  let console_: ReviewConsole | null = null;
  let browser: Browser | null = null;
  try {
    console_ = await startReviewConsole(config, { logger: pino({ level: 'silent' }) });
    const hour = 3_600_000;
    const listings = [
      { photo: 'ivory_110245.jpg', title: 'Antique carved tusk, 19th c., certificate on request', platform: 'marketplace.example', reasons: [['elephant_ivory', 0.94, 0.6]] as Array<[string, number, number]>, others: ['bone_carving', 'rhino_horn'], age: 1 },
      { photo: 'ivory_209842.jpg', title: 'Ivory figurine pair — private collection', platform: 'social.example', reasons: [['elephant_ivory', 0.81, 0.6]] as Array<[string, number, number]>, others: ['bone_carving'], age: 3 },
      { photo: 'non_ivory_36078.jpg', title: 'Old decorative box, estate sale', platform: 'marketplace.example', reasons: [['elephant_ivory', 0.63, 0.6]] as Array<[string, number, number]>, others: ['wood_carving'], age: 7 },
      { photo: 'non_ivory_467372.jpg', title: 'Carved ornament, unknown material', platform: 'auctions.example', reasons: [['elephant_ivory', 0.71, 0.6], ['rhino_horn', 0.66, 0.65]] as Array<[string, number, number]>, others: ['resin'], age: 26 },
    ];
    const flagged = await Promise.all(listings.map(async (l) => {
      const m = flaggedMessage({ title: l.title, platform: l.platform, reasons: l.reasons, others: l.others, imageUrl: `${imageBase}/${l.photo}`, decidedAt: new Date(Date.now() - l.age * hour).toISOString() });
      const bytes = readFileSync(path.join(FIXTURES, l.photo));
      const meta = await sharp(bytes).metadata();
      m.image = { ...m.image, sha256: createHash('sha256').update(bytes).digest('hex'), width: meta.width, height: meta.height, bytes: bytes.length };
      return m;
    }));
    // The screening pipeline's output, as it writes it: key = input id, value = the flagged decision.
    await publish(brokers, topics.review, flagged.map((m) => ({ key: m.inputId, value: JSON.stringify(m) })));
    await until('the console to consume the flagged listings', () => console_!.store.queue({}).total === flagged.length, { timeoutMs: 60_000 });

    browser = await chromium.launch({
      executablePath: CHROMIUM!, headless: true,
      // A closed network: only the console on loopback resolves; Chromium's own background lookups fail fast.
      args: ['--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost'],
    });
    const page = await browser.newPage({ viewport: { width: 1360, height: 860 } });
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    await page.goto(`${console_.url}/`);
    assert.match(page.url(), /\/login/, 'signing in comes first');
    await page.fill('input[name="username"]', 'ana');
    await page.fill('input[name="password"]', 'ivory-is-not-for-sale');
    await Promise.all([page.waitForURL(`${console_.url}/`), page.press('input[name="password"]', 'Enter')]);

    // Newest first: the selected item is the most recent flag.
    const newest = flagged[0]!;
    assert.equal(await page.locator('#detail h1').textContent(), listings[0]!.title);
    assert.equal(await page.locator('.card').count(), flagged.length);
    assert.match((await page.locator('.reasons').textContent()) ?? '', /elephant_ivory\s*94\.0 %\s*60\.0 %/);
    await until('the photo to render from the console', () => page.locator('#photo').evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0));
    assert.ok(requested.every((u) => u.startsWith(console_!.url)), `the browser only talks to the console: ${requested.filter((u) => !u.startsWith(console_!.url)).join(', ')}`);

    if (process.env.REVIEW_SCREENSHOT) {
      await page.locator('.card img').evaluateAll((imgs) => Promise.all(imgs.map((img) => (img as HTMLImageElement).decode().catch(() => undefined))));
      await page.screenshot({ path: path.resolve(REPO_ROOT, process.env.REVIEW_SCREENSHOT) });
    }
    const shot = await page.screenshot();
    assert.deepEqual([...shot.subarray(1, 4)], [...Buffer.from('PNG')]);

    // j moves to the next listing, k back; c confirms the selected one with the selected label.
    await Promise.all([page.waitForURL(/item=/), page.keyboard.press('j')]);
    assert.equal(await page.locator('#detail h1').textContent(), listings[1]!.title);
    await Promise.all([page.waitForURL(/item=/), page.keyboard.press('k')]);
    assert.equal(await page.locator('#detail h1').textContent(), listings[0]!.title);
    await Promise.all([page.waitForURL(/done=confirmed/), page.keyboard.press('c')]);
    assert.match((await page.locator('.flash').textContent()) ?? '', /Confirmed/);
    assert.equal(await page.locator('.card').count(), flagged.length - 1, 'the confirmed listing left the pending queue');

    // On the decisions topic, in the shared images.review-decisions/v1 schema.
    decisions = await collect(brokers, [decisionsTopic]);
    const sent = decisions;
    const received = (): ReviewDecision[] => sent.records.map((r) => {
      const parsed = parseReviewDecision(Buffer.from(r.value));
      assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
      assert.equal(r.key, parsed.message.decisionId);
      return parsed.message;
    });
    const [decision] = await until('the decision on the decisions topic', () => received().length >= 1 && received(), { timeoutMs: 60_000 });
    assert.equal(decision!.decisionId, newest.decisionId);
    assert.equal(decision!.verdict, 'confirmed');
    assert.equal(decision!.label, 'elephant_ivory');
    assert.equal(decision!.analyst, 'ana');
    assert.equal(decision!.image?.sha256, newest.image.sha256);

    // And in the audit log: who, what, when, the previous value, and that it went out.
    const audit = await until('the audit row to be marked published', () => {
      const rows = console_!.db.prepare('SELECT * FROM decisions').all() as Array<Record<string, unknown>>;
      return rows.length === 1 && rows[0]!.published_at !== null && rows;
    });
    assert.equal(audit[0]!.analyst, 'ana');
    assert.equal(audit[0]!.verdict, 'confirmed');
    assert.equal(audit[0]!.review_id, decision!.reviewId);
    assert.equal(audit[0]!.previous_verdict, null);

    // u undoes it: a new "reopened" decision, on the topic too; nothing is erased.
    await Promise.all([page.waitForURL(/done=undone/), page.keyboard.press('u')]);
    assert.equal(await page.locator('#detail h1').textContent(), listings[0]!.title);
    const [, reopened] = await until('the undo on the decisions topic', () => received().length >= 2 && received());
    assert.equal(reopened!.verdict, 'reopened');
    assert.deepEqual(reopened!.previous, { verdict: 'confirmed', label: 'elephant_ivory' });
    assert.equal((console_.db.prepare('SELECT COUNT(*) AS n FROM decisions').get() as { n: number }).n, 2);

    // The next listing is a false positive whose true label the analyst knows: t, type it, Enter.
    await Promise.all([page.waitForURL(/item=/), page.keyboard.press('j')]);
    assert.equal(await page.locator('#detail h1').textContent(), listings[1]!.title);
    await page.keyboard.press('t');
    await page.keyboard.type('bone_carving');
    await Promise.all([page.waitForURL(/done=rejected/), page.keyboard.press('Enter')]);
    const [, , rejected] = await until('the rejection on the decisions topic', () => received().length >= 3 && received());
    assert.deepEqual([rejected!.decisionId, rejected!.verdict, rejected!.label, rejected!.correctLabel], [flagged[1]!.decisionId, 'rejected', 'elephant_ivory', 'bone_carving']);
  } finally {
    await browser?.close();
    await decisions?.close().catch(() => undefined);
    await console_?.close();
    await new Promise((r) => images.close(r));
    rmSync(dir, { recursive: true, force: true });
  }
});
