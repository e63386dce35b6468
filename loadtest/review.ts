/**
 * npm run loadtest:review [-- --items N] [--requests R]
 * The review console under a large backlog, in one run and one process: flagged items ingested per
 * second into SQLite, then page latencies (the queue, a filtered queue, the stats view, a decision)
 * with 100 items and with N items, reported with the ratio large ÷ small. No Kafka: the store is fed
 * directly, as the feed does after parsing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { hashPassword } from '../src/review/auth.js';
import { startReviewConsole, type ReviewConsole } from '../src/review/console.js';
import { flaggedMessage } from '../test/helpers/review.js';

const args = process.argv.slice(2);
const flag = (name: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined; };
const LABELS = ['ivory', 'big_cat', 'rhino', 'primate', 'parrot', 'turtle_tortoise', 'shark_product', 'pangolin'];
const PLATFORMS = ['market-a', 'market-b', 'social-c', 'auction-d'];

/** Spread over labels, platforms, scores and the last 30 days, so filters and stats have work to do. */
const flagged = (n: number, now: number) => flaggedMessage({
  decisionId: `load-${n}`, platform: PLATFORMS[n % PLATFORMS.length]!, imageUrl: null,
  reasons: [[LABELS[n % LABELS.length]!, 0.5 + ((n * 7919) % 500) / 1000, 0.5]], others: LABELS.slice(0, 4),
  decidedAt: new Date(now - ((n * 104_729) % (30 * 86_400_000))).toISOString(),
});

async function signIn(base: string): Promise<{ cookie: string; csrf: string }> {
  const page = await fetch(`${base}/login`, { headers: { accept: 'text/html' } });
  const loginCsrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
  const cookie = page.headers.getSetCookie()[0]!.split(';')[0]!;
  const res = await fetch(`${base}/login`, { method: 'POST', redirect: 'manual', headers: { accept: 'text/html', cookie }, body: new URLSearchParams({ _csrf: loginCsrf, username: 'load', password: 'load-test-password', next: '/' }) });
  const session = res.headers.getSetCookie().find((c) => c.startsWith('review_session='))!.split(';')[0]!;
  const home = await (await fetch(`${base}/`, { headers: { accept: 'text/html', cookie: session } })).text();
  return { cookie: session, csrf: /name="csrf-token" content="([^"]+)"/.exec(home)![1]! };
}

const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;

async function measure(c: ReviewConsole, requests: number, firstId: number) {
  const who = await signIn(c.url);
  const time = async (run: (i: number) => Promise<Response>) => {
    const ms: number[] = [];
    for (let i = 0; i < requests; i++) {
      const t0 = performance.now();
      const res = await run(i);
      await res.arrayBuffer();
      if (!res.ok && res.status !== 303) throw new Error(`HTTP ${res.status}`);
      ms.push(performance.now() - t0);
    }
    return { p50: percentile(ms, 50), p95: percentile(ms, 95) };
  };
  const get = (p: string) => () => fetch(`${c.url}${p}`, { headers: { accept: 'text/html', cookie: who.cookie } });
  return {
    queue: await time(get('/')),
    filtered: await time(get('/?label=rhino&platform=market-b&min=0.7&sort=score')),
    stats: await time(get('/stats')),
    decision: await time((i) => fetch(`${c.url}/items/${firstId + i}/decisions`, { method: 'POST', headers: { accept: 'application/json', 'content-type': 'application/json', cookie: who.cookie, 'x-csrf-token': who.csrf }, body: JSON.stringify({ verdict: i % 3 ? 'confirmed' : 'rejected' }) })),
  };
}

async function run(items: number, requests: number) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'review-load-'));
  const defaults = loadConfig({});
  const config = loadConfig({}, {
    kafka: { ...defaults.kafka, brokers: [] },
    review: { ...defaults.review, port: 0, database: path.join(dir, 'review.db'), photos: { ...defaults.review.photos, fetch: false }, auth: { ...defaults.review.auth, accounts: [{ username: 'load', passwordHash: await hashPassword('load-test-password', { N: 1024 }), role: 'lead' }] } },
  });
  const c = await startReviewConsole(config, { logger: pino({ level: 'silent' }) });
  try {
    const now = Date.now();
    const messages = Array.from({ length: items }, (_, n) => flagged(n, now));
    const t0 = performance.now(); // ingest only, not building the messages
    for (const message of messages) c.store.ingest(message);
    const ingestSeconds = (performance.now() - t0) / 1000;
    return { items, ingestPerSecond: items / ingestSeconds, ...(await measure(c, requests, 1)) };
  } finally {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const large = Number(flag('items') ?? 20_000);
const requests = Number(flag('requests') ?? 40);
const small = await run(100, requests);
const big = await run(large, requests);
const row = (name: string, a: { p50: number; p95: number }, b: { p50: number; p95: number }) =>
  `| ${name} | ${a.p50.toFixed(1)} / ${a.p95.toFixed(1)} | ${b.p50.toFixed(1)} / ${b.p95.toFixed(1)} | ${(b.p50 / a.p50).toFixed(2)} |`;
console.log(`\nReview console, ${requests} sequential requests per route (ms p50 / p95):\n`);
console.log(`| route | ${small.items} items | ${big.items} items | ratio p50 |`);
console.log('|---|---:|---:|---:|');
console.log(row('GET / (queue page, 50 items + the selected one)', small.queue, big.queue));
console.log(row('GET / filtered (label, platform, min score, by score)', small.filtered, big.filtered));
console.log(row('GET /stats (30 days, SVG charts)', small.stats, big.stats));
console.log(row('POST /items/:id/decisions (JSON)', small.decision, big.decision));
console.log(`\nIngest into SQLite: ${Math.round(big.ingestPerSecond)} flagged items/s (${big.items} items, one transaction each).`);
