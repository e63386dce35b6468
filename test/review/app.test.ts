/**
 * The review console over HTTP, as a browser and as an API client see it: the real console
 * (startReviewConsole, without Kafka) on an ephemeral loopback port, a fresh SQLite file per test,
 * and a tiny image host on 127.0.0.1 for the photos.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test, type TestContext } from 'node:test';
import { pino } from 'pino';
import sharp from 'sharp';
import { loadConfig, REPO_ROOT } from '../../src/config.js';
import { hashPassword } from '../../src/review/auth.js';
import { startReviewConsole, type ReviewConsole } from '../../src/review/console.js';
import type { DecisionRecord } from '../../src/contracts/index.js';
import { flaggedMessage, type FlaggedOptions } from '../helpers/review.js';
import { freePort } from '../helpers/ports.js';
import { until } from '../helpers/wait.js';

const PASSWORDS = { ana: 'ana-password-1', lee: 'lee-password-1' } as const;
type User = keyof typeof PASSWORDS;
const HTML = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };
const JSON_ACCEPT = { accept: 'application/json' };
const FIXTURE = path.join(REPO_ROOT, 'test', 'fixtures', 'met', 'ivory_110245.jpg');

let ACCOUNTS: Array<{ username: string; passwordHash: string; role: 'analyst' | 'lead' }>;

before(async () => {
  ACCOUNTS = [
    { username: 'ana', passwordHash: await hashPassword(PASSWORDS.ana, { N: 1024 }), role: 'analyst' },
    { username: 'lee', passwordHash: await hashPassword(PASSWORDS.lee, { N: 1024 }), role: 'lead' },
  ];
});

// ---------------------------------------------------------------------------------------------
// Harness

interface Harness { console: ReviewConsole; base: string; dir: string }

/** The whole console, as `npm run review` assembles it, minus Kafka; closed and deleted when the test ends. */
async function startConsole(t: TestContext, review: Record<string, unknown> = {}, brokers: string[] = []): Promise<Harness> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'review-app-'));
  const defaults = loadConfig({});
  let started: ReviewConsole | null = null;
  t.after(async () => {
    await started?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const config = loadConfig({}, {
    review: {
      ...defaults.review, host: '127.0.0.1', port: 0, database: path.join(dir, 'review.db'), sessionTtlSeconds: 3600,
      auth: { ...defaults.review.auth, mode: 'accounts', accounts: ACCOUNTS }, ...review,
    },
    kafka: { ...defaults.kafka, brokers },
    fetch: { timeoutMs: 5000, maxBytes: 20_971_520, maxRedirects: 3, allowlist: ['127.0.0.1'] },
  });
  started = await startReviewConsole(config, { logger: pino({ level: 'silent' }) });
  return { console: started, base: started.url, dir };
}

/** A flagged item without a photo URL (so no background fetch goes anywhere), ingested; returns its item id. */
function ingest(h: Harness, o: FlaggedOptions = {}, edit?: (m: DecisionRecord) => void): number {
  const message = flaggedMessage({ imageUrl: null, ...o });
  edit?.(message);
  const { outcome, itemId } = h.console.store.ingest(message);
  assert.equal(outcome, 'added');
  return itemId;
}

const cookiePair = (setCookie: string) => setCookie.split(';')[0]!;
const findCookie = (res: Response, name: string) => res.headers.getSetCookie().find((c) => c.startsWith(`${name}=`));

/** A signed-in browser: its session cookie and the session's CSRF token (from the page's meta tag). */
interface Browser {
  cookie: string;
  csrf: string;
  get(pathname: string, headers?: Record<string, string>): Promise<Response>;
  post(pathname: string, body: URLSearchParams | Record<string, unknown> | null, headers?: Record<string, string>): Promise<Response>;
}

async function signIn(h: Harness, user: User): Promise<Browser> {
  const page = await fetch(`${h.base}/login`, { headers: HTML });
  assert.equal(page.status, 200);
  const loginCsrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())?.[1];
  assert.ok(loginCsrf, 'the sign-in form has a _csrf field');
  const loginCookie = findCookie(page, 'review_login_csrf');
  assert.ok(loginCookie, 'the sign-in form sets review_login_csrf');
  const res = await fetch(`${h.base}/login`, {
    method: 'POST', redirect: 'manual', headers: { ...HTML, cookie: cookiePair(loginCookie) },
    body: new URLSearchParams({ _csrf: loginCsrf, next: '/', username: user, password: PASSWORDS[user] }),
  });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), '/');
  const session = findCookie(res, 'review_session');
  assert.ok(session, 'signing in sets review_session');
  const cookie = cookiePair(session);
  const home = await fetch(`${h.base}/`, { headers: { ...HTML, cookie }, redirect: 'manual' });
  assert.equal(home.status, 200);
  const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(await home.text())?.[1];
  assert.ok(csrf, 'a signed-in page carries the CSRF token');
  return {
    cookie, csrf,
    get: (pathname, headers = HTML) => fetch(`${h.base}${pathname}`, { headers: { ...headers, cookie }, redirect: 'manual' }),
    post: (pathname, body, headers = HTML) => fetch(`${h.base}${pathname}`, {
      method: 'POST', redirect: 'manual', headers: { ...headers, cookie, ...(body && !(body instanceof URLSearchParams) ? { 'content-type': 'application/json' } : {}) },
      ...(body === null ? {} : { body: body instanceof URLSearchParams ? body : JSON.stringify(body) }),
    }),
  };
}

/** Sends a decision as the page's form does. */
function formDecision(b: Browser, itemId: number, fields: Record<string, string>, csrf: string | null = b.csrf): Promise<Response> {
  const body = new URLSearchParams({ ...(csrf === null ? {} : { _csrf: csrf }), ...fields });
  return b.post(`/items/${itemId}/decisions`, body);
}

/** Sends a decision as an API client (review.js-style fetch): JSON body, token in X-CSRF-Token. */
function jsonDecision(b: Browser, itemId: number, body: Record<string, unknown>, csrf: string | null = b.csrf): Promise<Response> {
  return b.post(`/items/${itemId}/decisions`, body, { ...JSON_ACCEPT, ...(csrf === null ? {} : { 'x-csrf-token': csrf }) });
}

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  return ((await res.json()) as { error: { code: string; message: string } }).error;
}

async function expectError(res: Response, status: number, code: string): Promise<{ code: string; message: string }> {
  const error = await errorOf(res);
  assert.equal(res.status, status, `${code}: ${JSON.stringify(error)}`);
  assert.equal(error.code, code);
  return error;
}

interface QueueJson { total: number; page: number; pageSize: number; items: Array<{ id: number; status: string; listingTitle: string | null; lastDecisionId: number | null }>; selected: { id: number; status: string; lastDecisionId: number | null } | null }

async function queueJson(b: Browser, query = ''): Promise<QueueJson> {
  const res = await b.get(`/${query}`, JSON_ACCEPT);
  assert.equal(res.status, 200);
  return (await res.json()) as QueueJson;
}

/** The ids of the queue cards on a page, in page order. */
const cardIds = (page: string) => [...page.matchAll(/<li class="card[^"]*" data-id="(\d+)"/g)].map((m) => Number(m[1]));

// --- photos ------------------------------------------------------------------------------------

interface ImageHost { url: string; hits: number; connections: number; close(): Promise<void> }

/** Serves `bytes` at /photo.jpg from `host` (a loopback address), counting requests and TCP connections. */
async function imageHost(t: TestContext, bytes: Buffer, host = '127.0.0.1'): Promise<ImageHost> {
  const state = { hits: 0, connections: 0 };
  const server = http.createServer((req, res) => {
    state.hits++;
    if (req.url !== '/photo.jpg') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': bytes.length }).end(bytes);
  });
  server.on('connection', () => state.connections++);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  let closed: Promise<void> | null = null;
  const close = () => (closed ??= new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  t.after(close);
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}/photo.jpg`,
    get hits() { return state.hits; },
    get connections() { return state.connections; },
    close,
  };
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** A real CC0 photo with EXIF a seller would not want shown (camera owner, a description, GPS). */
async function photoWithExif(): Promise<Buffer> {
  return sharp(readFileSync(FIXTURE))
    .withExif({
      IFD0: { Artist: 'seller-secret-artist', Copyright: 'seller-secret-copyright', ImageDescription: 'warehouse 7' },
      IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1', GPSLongitudeRef: 'W', GPSLongitude: '0/1 7/1 0/1' },
    })
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** Ingests an item whose image URL and sha256 are the given ones. */
function ingestPhoto(h: Harness, url: string | null, digest: string, o: FlaggedOptions = {}): number {
  return ingest(h, { ...o, imageUrl: url }, (m) => void (m.image.sha256 = digest));
}

const storedPhoto = (h: Harness, digest: string) => h.console.db.prepare('SELECT bytes, content_type FROM photos WHERE sha256 = ?').get(digest) as { bytes: Buffer; content_type: string } | undefined;
const photoAttempt = (h: Harness, digest: string) => h.console.db.prepare('SELECT attempts, last_error FROM photo_attempts WHERE sha256 = ?').get(digest) as { attempts: number; last_error: string } | undefined;

// ---------------------------------------------------------------------------------------------

describe('review console: signing in and the open endpoints', () => {
  test('behind a TLS-terminating proxy, trustProxy lets a form posted from the https origin pass the origin check', async (t) => {
    const signInFrom = async (h: Harness) => {
      const page = await fetch(`${h.base}/login`, { headers: HTML });
      const loginCsrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
      const cookie = cookiePair(findCookie(page, 'review_login_csrf')!);
      const host = new URL(h.base).host;
      return fetch(`${h.base}/login`, {
        method: 'POST', redirect: 'manual',
        headers: { ...HTML, cookie, origin: `https://${host}`, 'x-forwarded-proto': 'https' },
        body: new URLSearchParams({ _csrf: loginCsrf, next: '/', username: 'ana', password: PASSWORDS.ana }),
      });
    };
    assert.equal((await signInFrom(await startConsole(t))).status, 403, 'without it, https://… is another origin than the http:// the console sees');
    assert.equal((await signInFrom(await startConsole(t, { trustProxy: 1 }))).status, 303);
  });

  test('with a metrics port, /metrics is served there and not beside the pages', async (t) => {
    const h = await startConsole(t, { metricsPort: 0 });
    assert.notEqual(new URL(h.console.metricsUrl).port, new URL(h.base).port);
    const metrics = await fetch(h.console.metricsUrl);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^wildlife_review_backlog\{status="pending"\} 0$/m);
    const onUi = await fetch(`${h.base}/metrics`, { headers: JSON_ACCEPT });
    assert.equal(onUi.status, 401, 'on the UI port it is just another page that needs a session');
  });

  test('with Kafka unreachable the console still serves its database, and /readyz says Kafka is not joined', async (t) => {
    const h = await startConsole(t, {}, [`127.0.0.1:${await freePort()}`]);
    const id = ingest(h);
    const ready = await fetch(`${h.base}/readyz`);
    assert.equal(ready.status, 200, 'analysts can still work: the queue and decisions live in SQLite');
    assert.deepEqual(await ready.json(), { status: 'ready', database: true, kafka: false });
    const ana = await signIn(h, 'ana');
    assert.equal((await jsonDecision(ana, id, { verdict: 'confirmed' })).status, 201);
    assert.equal(h.console.store.outboxSize(), 1, 'the decision waits in the outbox until Kafka is back');
  });

  test('without a session a page request is sent to the sign-in form and an API request gets 401 REVIEW_UNAUTHENTICATED', async (t) => {
    const h = await startConsole(t);
    const page = await fetch(`${h.base}/`, { headers: HTML, redirect: 'manual' });
    assert.equal(page.status, 303);
    assert.equal(page.headers.get('location'), '/login');
    const deep = await fetch(`${h.base}/audit?analyst=ana`, { headers: HTML, redirect: 'manual' });
    assert.equal(deep.status, 303);
    assert.equal(deep.headers.get('location'), `/login?next=${encodeURIComponent('/audit?analyst=ana')}`);
    await expectError(await fetch(`${h.base}/`, { headers: JSON_ACCEPT, redirect: 'manual' }), 401, 'REVIEW_UNAUTHENTICATED');
    await expectError(await fetch(`${h.base}/items/1/photo`, { headers: { accept: 'image/*' }, redirect: 'manual' }), 401, 'REVIEW_UNAUTHENTICATED');
    await expectError(await fetch(`${h.base}/items/1/decisions`, { method: 'POST', headers: JSON_ACCEPT, redirect: 'manual' }), 401, 'REVIEW_UNAUTHENTICATED');
  });

  test('a known path with a method it does not serve is 405 with Allow, signed in or not; an unknown path stays 404', async (t) => {
    const h = await startConsole(t);
    const call = (method: string, pathname: string, headers: Record<string, string> = JSON_ACCEPT) => fetch(`${h.base}${pathname}`, { method, headers, redirect: 'manual' });
    const cases: Array<[string, string, string]> = [
      ['DELETE', '/', 'GET, HEAD'], ['PUT', '/login', 'GET, HEAD, POST'], ['GET', '/logout', 'POST'], ['GET', '/undo', 'POST'],
      ['DELETE', '/items/7/decisions', 'POST'], ['PATCH', '/items/7/photo', 'GET, HEAD'], ['POST', '/healthz', 'GET, HEAD'], ['PUT', '/Stats/', 'GET, HEAD'],
    ];
    for (const [method, pathname, allow] of cases) {
      const res = await call(method, pathname);
      assert.equal(res.headers.get('allow'), allow, `${method} ${pathname}`);
      await expectError(res, 405, 'METHOD_NOT_ALLOWED');
    }
    const page = await call('PUT', '/login', HTML);
    assert.equal(page.status, 405);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(page.headers.get('allow'), 'GET, HEAD, POST');
    const ana = await signIn(h, 'ana');
    const signedIn = await fetch(`${h.base}/`, { method: 'DELETE', headers: { ...JSON_ACCEPT, cookie: ana.cookie, 'x-csrf-token': ana.csrf } });
    assert.equal(signedIn.headers.get('allow'), 'GET, HEAD');
    await expectError(signedIn, 405, 'METHOD_NOT_ALLOWED');
    for (const [method, pathname] of [['DELETE', '/queue'], ['GET', '/items/7'], ['POST', '/nope']] as const) {
      const res = await fetch(`${h.base}${pathname}`, { method, headers: { ...JSON_ACCEPT, cookie: ana.cookie, 'x-csrf-token': ana.csrf } });
      assert.equal(res.headers.get('allow'), null, `${method} ${pathname}`);
      await expectError(res, 404, 'NOT_FOUND');
    }
  });

  test('/healthz, /readyz, /metrics and the static script answer without a session', async (t) => {
    const h = await startConsole(t);
    const health = await fetch(`${h.base}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });
    const ready = await fetch(`${h.base}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ready', database: true, kafka: true });
    const metrics = await fetch(`${h.base}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(await metrics.text(), /^wildlife_review_backlog\{status="pending"\} 0$/m);
    const script = await fetch(`${h.base}/static/review.js`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get('content-type') ?? '', /javascript/);
    assert.match(await script.text(), /addEventListener\('keydown'/);
    assert.equal((await fetch(`${h.base}/static/review.css`)).status, 200);
    assert.equal((await fetch(`${h.base}/static/nope.js`, { headers: JSON_ACCEPT })).status, 401, 'a missing static file falls through to the signed-in routes');
  });

  test('pages carry a strict CSP, refuse framing, are never cached, and link only same-origin script and style', async (t) => {
    const h = await startConsole(t);
    ingest(h);
    const ana = await signIn(h, 'ana');
    for (const pathname of ['/', '/?status=all', '/audit', '/stats', '/login']) {
      const res = pathname === '/login' ? await fetch(`${h.base}/login`, { headers: HTML }) : await ana.get(pathname);
      assert.equal(res.status, 200, pathname);
      const csp = res.headers.get('content-security-policy') ?? '';
      const directives = new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([name, ...values]) => [name!, values]));
      assert.deepEqual(directives.get('default-src'), ["'none'"], `${pathname}: ${csp}`);
      assert.deepEqual(directives.get('script-src'), ["'self'"], `${pathname}: ${csp}`);
      assert.deepEqual(directives.get('style-src'), ["'self'"], `${pathname}: ${csp}`);
      assert.deepEqual(directives.get('frame-ancestors'), ["'none'"], `${pathname}: ${csp}`);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/, pathname);
      assert.match(res.headers.get('x-frame-options') ?? '', /^(DENY|SAMEORIGIN)$/i, pathname);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', pathname);
      assert.match(res.headers.get('referrer-policy') ?? '', /^(no-referrer|same-origin)$/, `${pathname}: no referrer to other sites`);
      assert.equal(res.headers.get('cache-control'), 'no-store', pathname);
      assert.equal(res.headers.get('x-powered-by'), null, pathname);
      const page = await res.text();
      assert.doesNotMatch(page, /<script(?![^>]*\bsrc="\/static\/review\.js")/, `${pathname}: no inline script`);
      assert.doesNotMatch(page, /<style|\sstyle="|\son[a-z]+="/i, `${pathname}: no inline style or handlers`);
    }
    const json = await ana.get('/', JSON_ACCEPT);
    assert.equal(json.headers.get('cache-control'), 'no-store');
  });
});

describe('review console: the queue', () => {
  test('the queue lists pending items newest first, and its JSON variant returns the same items', async (t) => {
    const h = await startConsole(t);
    const oldest = ingest(h, { decidedAt: '2030-03-01T08:00:00.000Z', title: 'oldest tusk' });
    const newest = ingest(h, { decidedAt: '2030-03-03T08:00:00.000Z', title: 'newest tusk' });
    const middle = ingest(h, { decidedAt: '2030-03-02T08:00:00.000Z', title: 'middle tusk' });
    const decided = ingest(h, { decidedAt: '2030-03-04T08:00:00.000Z', title: 'decided tusk' });
    const ana = await signIn(h, 'ana');
    assert.equal((await jsonDecision(ana, decided, { verdict: 'rejected' })).status, 201);

    const res = await ana.get('/');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    const page = await res.text();
    assert.deepEqual(cardIds(page), [newest, middle, oldest]);
    assert.match(page, /page 1 of 1 · 3 items/);
    assert.match(page, new RegExp(`<article class="detail" id="detail" data-item="${newest}">`), 'the newest item is opened');
    assert.match(page, /<h1>newest tusk<\/h1>/);
    assert.match(page, new RegExp(`<a href="/\\?item=${middle}" id="next-item"`), 'j goes to the next card');

    const json = await queueJson(ana);
    assert.deepEqual(json.items.map((i) => i.id), [newest, middle, oldest]);
    assert.equal(json.total, 3);
    assert.equal(json.page, 1);
    assert.equal(json.selected?.id, newest);
    assert.ok(json.items.every((i) => i.status === 'pending'));
    assert.deepEqual((await queueJson(ana, '?sort=oldest')).items.map((i) => i.id), [oldest, middle, newest]);
    assert.deepEqual((await queueJson(ana, '?status=decided')).items.map((i) => i.id), [decided]);
    assert.deepEqual((await queueJson(ana, '?status=all')).items.map((i) => i.id), [decided, newest, middle, oldest]);

    const chosen = await (await ana.get(`/?item=${oldest}`)).text();
    assert.match(chosen, new RegExp(`data-item="${oldest}"`));
    assert.match(chosen, new RegExp(`<a href="/\\?item=${middle}" id="prev-item"`));
    await expectError(await ana.get('/?item=999999', JSON_ACCEPT), 404, 'REVIEW_ITEM_NOT_FOUND');
  });

  test('the queue filters by label, platform, score and flag date from the query string', async (t) => {
    const h = await startConsole(t);
    const ivory = ingest(h, { platform: 'shop.example', decidedAt: '2030-03-01T10:00:00.000Z', reasons: [['elephant_ivory', 0.95, 0.6]] });
    const pangolin = ingest(h, { platform: 'shop.example', decidedAt: '2030-03-02T10:00:00.000Z', reasons: [['pangolin_scales', 0.7, 0.6]] });
    const both = ingest(h, { platform: 'social.example', decidedAt: '2030-03-03T23:59:59.000Z', reasons: [['rhino_horn', 0.65, 0.6], ['elephant_ivory', 0.62, 0.6]] });
    const ana = await signIn(h, 'ana');
    const ids = async (query: string) => (await queueJson(ana, query)).items.map((i) => i.id);

    assert.deepEqual(await ids('?label=elephant_ivory'), [both, ivory], 'any flag reason counts, not only the top one');
    assert.deepEqual(await ids('?platform=shop.example'), [pangolin, ivory]);
    assert.deepEqual(await ids('?min=0.69'), [pangolin, ivory]);
    assert.deepEqual(await ids('?max=0.7'), [both, pangolin]);
    assert.deepEqual(await ids('?min=0.66&max=0.9'), [pangolin]);
    assert.deepEqual(await ids('?from=2030-03-02'), [both, pangolin]);
    assert.deepEqual(await ids('?to=2030-03-02'), [pangolin, ivory], '"to" includes the whole named day');
    assert.deepEqual(await ids('?from=2030-03-03&to=2030-03-03'), [both]);
    assert.deepEqual(await ids('?label=elephant_ivory&platform=shop.example'), [ivory]);
    assert.deepEqual(await ids('?sort=score'), [ivory, pangolin, both]);
    assert.deepEqual(await ids('?label=no_such_label'), []);

    const page = await (await ana.get('/?label=elephant_ivory&platform=shop.example&min=0.5&from=2030-03-01&to=2030-03-02&sort=score')).text();
    assert.deepEqual(cardIds(page), [ivory]);
    assert.match(page, /<option value="elephant_ivory" selected>/, 'the form shows the active filter');
    assert.match(page, /<option value="shop.example" selected>/);
    assert.match(page, /name="from" value="2030-03-01"/);
    assert.match(page, /name="to" value="2030-03-02"/, 'the form shows the "to" day the user typed');
    assert.match(page, /<option value="score" selected>/);
    assert.match(page, new RegExp(`href="/\\?label=elephant_ivory&amp;platform=shop.example&amp;min=0.5&amp;from=2030-03-01&amp;to=2030-03-02&amp;sort=score&amp;item=${ivory}"`), 'card links keep the filter');
    const empty = await (await ana.get('/?platform=nowhere.example')).text();
    assert.match(empty, /id="empty"/);
  });

  test('an invalid filter is one 400 REVIEW_FILTER_INVALID that names every problem', async (t) => {
    const h = await startConsole(t);
    ingest(h);
    const ana = await signIn(h, 'ana');
    const error = await expectError(await ana.get('/?min=2&sort=random&from=yesterday', JSON_ACCEPT), 400, 'REVIEW_FILTER_INVALID');
    assert.match(error.message, /min: must be a score between 0 and 1/);
    assert.match(error.message, /sort: must be one of newest, oldest, score/);
    assert.match(error.message, /from: must be a date YYYY-MM-DD/);
    for (const query of ['?status=archived', '?min=abc', '?min=0.9&max=0.1', '?to=2030-13-45', '?from=2030-02-31', '?to=2031-04-31', '?page=0', '?item=abc', '?label=a&label=b']) {
      await expectError(await ana.get(`/${query}`, JSON_ACCEPT), 400, 'REVIEW_FILTER_INVALID');
    }
    assert.equal((await ana.get('/?from=2032-02-29&to=2032-02-29', JSON_ACCEPT)).status, 200, 'a leap day is a day');
    const page = await ana.get('/?min=2&sort=random&from=yesterday');
    assert.equal(page.status, 400);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    const text = await page.text();
    assert.match(text, /<p>A queue filter is invalid\. [^<]*min: must be a score between 0 and 1/);
    assert.match(text, /<p>A queue filter is invalid\. [^<]*from: must be a date YYYY-MM-DD/);
  });

  test('a hostile listing title, seller and a javascript: listing URL are rendered inert', async (t) => {
    const h = await startConsole(t);
    const evil = '<img src=x onerror=alert(1)>';
    const id = ingest(h, { title: evil, platform: '"><script>alert(2)</script>' }, (m) => {
      m.listing.url = 'javascript:alert(document.cookie)';
      m.listing.seller = '<b onmouseover=alert(3)>seller</b>';
    });
    const lee = await signIn(h, 'lee');
    assert.equal((await jsonDecision(lee, id, { verdict: 'escalated', note: '</td><script>alert(4)</script>' })).status, 201);
    for (const pathname of [`/?status=all&item=${id}`, '/audit', '/?status=escalated']) {
      const page = await (await lee.get(pathname)).text();
      assert.doesNotMatch(page, /<img src=x|<script>alert|<b onmouseover/, pathname);
      assert.doesNotMatch(page, /href="\s*javascript:/i, pathname);
      assert.doesNotMatch(page, /<[a-z][^>]*\son[a-z]+=/i, `${pathname}: no event handler attribute`);
    }
    const page = await (await lee.get(`/?status=all&item=${id}`)).text();
    assert.match(page, /<h1>&lt;img src=x onerror=alert\(1\)&gt;<\/h1>/);
    assert.match(page, /<a href="#" rel="noopener noreferrer nofollow" target="_blank" id="listing-link">javascript:alert\(document.cookie\)<\/a>/);
    assert.match(page, /&lt;b onmouseover=alert\(3\)&gt;seller&lt;\/b&gt;/);
    const audit = await (await lee.get('/audit')).text();
    assert.match(audit, /&lt;\/td&gt;&lt;script&gt;alert\(4\)&lt;\/script&gt;/);
  });
});

describe('review console: decisions', () => {
  test('the undo button names the decision it undoes, so pressing it twice does not undo the one before', async (t) => {
    const h = await startConsole(t);
    const a = ingest(h);
    const b = ingest(h);
    const ana = await signIn(h, 'ana');
    assert.equal((await jsonDecision(ana, a, { verdict: 'confirmed' })).status, 201);
    assert.equal((await jsonDecision(ana, b, { verdict: 'rejected' })).status, 201);
    const page = await (await ana.get('/?status=all')).text();
    const expect = /<form method="post" action="\/undo"[\s\S]*?name="expect" value="(\d+)"/.exec(page)?.[1];
    assert.ok(expect, 'the undo form carries the decision id');
    assert.match(page, new RegExp(`Undo my last decision \\(rejected elephant_ivory, item ${b}\\)`));
    const undo = () => ana.post('/undo', new URLSearchParams({ _csrf: ana.csrf, expect }));
    assert.equal((await undo()).status, 303);
    assert.equal((await undo()).status, 409, 'the second press is a conflict');
    const statuses = (await queueJson(ana, '?status=all')).items.map((i) => [i.id, i.status]);
    assert.deepEqual(statuses.sort(), [[a, 'confirmed'], [b, 'pending']].sort(), 'the first decision stands');
  });

  test('deciding the last item of the last page shows the page before, not an empty one', async (t) => {
    const h = await startConsole(t, { pageSize: 2 });
    const ids = [1, 2, 3, 4, 5].map(() => ingest(h));
    const ana = await signIn(h, 'ana');
    assert.equal((await jsonDecision(ana, ids[0]!, { verdict: 'confirmed' })).status, 201); // the oldest: alone on page 3 (newest first)
    const res = await ana.get('/?page=3');
    assert.equal(res.status, 200);
    const html = await res.text();
    assert.match(html, /page 2 of 2 · 4 items/);
    assert.doesNotMatch(html, /Nothing to review here/);
  });

  test('a decision posted from the form redirects to the next item with a done notice', async (t) => {
    const h = await startConsole(t);
    const second = ingest(h, { decidedAt: '2030-03-01T08:00:00.000Z' });
    const first = ingest(h, { decidedAt: '2030-03-02T08:00:00.000Z', reasons: [['elephant_ivory', 0.9, 0.6]], others: ['bone_carving'] });
    const ana = await signIn(h, 'ana');
    const page = await (await ana.get('/')).text();
    // The form the page renders: its hidden fields are exactly what a browser posts back.
    const form = /<form method="post" action="\/items\/(\d+)\/decisions"[^>]*>([\s\S]*?)<\/form>/.exec(page);
    assert.ok(form);
    assert.equal(Number(form[1]), first);
    const hidden = Object.fromEntries([...form[2]!.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!.replaceAll('&amp;', '&')]));
    assert.deepEqual(Object.keys(hidden).sort(), ['_csrf', 'expect', 'next']);
    assert.equal(hidden._csrf, ana.csrf);
    assert.equal(hidden.expect, '0');
    assert.equal(hidden.next, `/?item=${second}`);

    const res = await formDecision(ana, first, { ...hidden, verdict: 'confirmed', label: 'bone_carving', correctLabel: '', note: 'carved bone, not ivory' });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), `/?item=${second}&done=confirmed`);
    const after = await (await ana.get(res.headers.get('location')!)).text();
    assert.match(after, /<p class="flash ok" role="status">Confirmed\. Press u to undo\.<\/p>/);
    assert.deepEqual(cardIds(after), [second]);
    for (const done of ['constructor', 'toString', '__proto__', 'nonsense']) {
      assert.doesNotMatch(await (await ana.get(`/?done=${done}`)).text(), /class="flash/, `done=${done} shows no notice`);
    }

    const item = (await queueJson(ana, `?item=${first}`)).selected;
    assert.equal(item?.status, 'confirmed');
    const [decision] = h.console.store.audit({ itemId: first });
    assert.equal(decision?.label, 'bone_carving', 'the picked label is the confirmed one');
    assert.equal(decision?.note, 'carved bone, not ivory');
    assert.equal(decision?.analyst, 'ana');

    // Browsers send Origin with every form post; the console's own origin passes the check.
    const sameOrigin = await ana.post(`/items/${second}/decisions`, new URLSearchParams({ _csrf: ana.csrf, verdict: 'escalated', expect: '0', next: '/' }), { ...HTML, origin: h.base });
    assert.equal(sameOrigin.status, 303);
    assert.equal((await ana.post('/undo', new URLSearchParams({ _csrf: ana.csrf }), { ...HTML, origin: h.base })).status, 303);
    const outside = await formDecision(ana, second, { verdict: 'rejected', expect: '3', next: 'https://evil.example/' });
    assert.equal(outside.status, 303);
    assert.equal(outside.headers.get('location'), '/?done=rejected', 'next cannot leave the console');
  });

  test('a decision posted as JSON answers 201 with the decision', async (t) => {
    const h = await startConsole(t);
    const id = ingest(h, { reasons: [['elephant_ivory', 0.9, 0.6]], others: ['ox_bone'] });
    const ana = await signIn(h, 'ana');
    const res = await jsonDecision(ana, id, { verdict: 'rejected', correctLabel: 'ox_bone', note: 'bone', expect: 0 });
    assert.equal(res.status, 201);
    const { decision } = (await res.json()) as { decision: { id: number; itemId: number; verdict: string; label: string; correctLabel: string; analyst: string; role: string; note: string; previous: unknown } };
    assert.equal(decision.itemId, id);
    assert.equal(decision.verdict, 'rejected');
    assert.equal(decision.label, 'elephant_ivory');
    assert.equal(decision.correctLabel, 'ox_bone');
    assert.equal(decision.analyst, 'ana');
    assert.equal(decision.role, 'analyst');
    assert.equal(decision.note, 'bone');
    assert.equal(decision.previous, null);
    const selected = (await queueJson(ana, `?item=${id}`)).selected;
    assert.equal(selected?.status, 'rejected');
    assert.equal(selected?.lastDecisionId, decision.id);
    // A decided item is not decided twice.
    await expectError(await jsonDecision(ana, id, { verdict: 'confirmed', expect: decision.id }), 409, 'REVIEW_NOT_PENDING');
  });

  test('a decision without the CSRF token, with a wrong one, or from another origin is refused with 403 REVIEW_CSRF_INVALID', async (t) => {
    const h = await startConsole(t);
    const id = ingest(h);
    const ana = await signIn(h, 'ana');
    await expectError(await jsonDecision(ana, id, { verdict: 'confirmed' }, null), 403, 'REVIEW_CSRF_INVALID');
    await expectError(await jsonDecision(ana, id, { verdict: 'confirmed' }, 'x'.repeat(43)), 403, 'REVIEW_CSRF_INVALID');
    const form = await formDecision(ana, id, { verdict: 'confirmed' }, null);
    assert.equal(form.status, 403);
    assert.match(form.headers.get('content-type') ?? '', /^text\/html/);
    const crossSite = await ana.post(`/items/${id}/decisions`, new URLSearchParams({ _csrf: ana.csrf, verdict: 'confirmed' }), { ...JSON_ACCEPT, origin: 'https://evil.example' });
    await expectError(crossSite, 403, 'REVIEW_CSRF_INVALID');
    const lee = await signIn(h, 'lee');
    await expectError(await jsonDecision(ana, id, { verdict: 'confirmed' }, lee.csrf), 403, 'REVIEW_CSRF_INVALID');
    assert.equal((await queueJson(ana, `?item=${id}`)).selected?.status, 'pending', 'nothing was decided');
    assert.equal(h.console.store.audit().length, 0);
  });

  test('a stale expect is 409 REVIEW_CONFLICT, a bad verdict 400 REVIEW_DECISION_INVALID and an unknown item 404 REVIEW_ITEM_NOT_FOUND', async (t) => {
    const h = await startConsole(t);
    const id = ingest(h);
    const ana = await signIn(h, 'ana');
    const lee = await signIn(h, 'lee');
    // Lee escalates and re-opens while Ana still looks at the page she loaded (expect 0).
    assert.equal((await jsonDecision(lee, id, { verdict: 'escalated', expect: 0 })).status, 201);
    assert.equal((await lee.post(`/items/${id}/reopen`, { note: 'back' }, { ...JSON_ACCEPT, 'x-csrf-token': lee.csrf })).status, 201);
    const conflict = await expectError(await jsonDecision(ana, id, { verdict: 'confirmed', expect: 0 }), 409, 'REVIEW_CONFLICT');
    assert.match(conflict.message, /Someone else decided this item/);
    const html = await formDecision(ana, id, { verdict: 'confirmed', expect: '0', next: '/' });
    assert.equal(html.status, 409, 'a stale form is not silently applied');

    for (const body of [{ verdict: 'maybe' }, { verdict: 'reopened' }, {}, { verdict: ['confirmed'] }]) {
      await expectError(await jsonDecision(ana, id, body), 400, 'REVIEW_DECISION_INVALID');
    }
    await expectError(await jsonDecision(ana, id, { verdict: 'confirmed', expect: 'latest' }), 400, 'REVIEW_DECISION_INVALID');
    await expectError(await jsonDecision(ana, id, { verdict: 'confirmed', note: { $gt: '' } }), 400, 'REVIEW_DECISION_INVALID');
    await expectError(await jsonDecision(ana, id, { verdict: 'confirmed', label: '<script>' }), 400, 'REVIEW_DECISION_INVALID');
    await expectError(await jsonDecision(ana, id, { verdict: 'confirmed', note: 'x'.repeat(2001) }), 400, 'REVIEW_DECISION_INVALID');
    await expectError(await jsonDecision(ana, 999_999, { verdict: 'confirmed' }), 404, 'REVIEW_ITEM_NOT_FOUND');
    await expectError(await jsonDecision(ana, 'abc' as unknown as number, { verdict: 'confirmed' }), 404, 'REVIEW_ITEM_NOT_FOUND');
    assert.equal((await queueJson(ana, `?item=${id}`)).selected?.status, 'pending');
  });

  test('an analyst cannot decide an escalated item or re-open anything; a lead decides and re-opens', async (t) => {
    const h = await startConsole(t);
    const id = ingest(h);
    const ana = await signIn(h, 'ana');
    const lee = await signIn(h, 'lee');
    const escalated = (await (await jsonDecision(ana, id, { verdict: 'escalated', expect: 0 })).json()) as { decision: { id: number } };
    assert.deepEqual((await queueJson(ana, '?status=escalated')).items.map((i) => i.id), [id]);

    await expectError(await jsonDecision(ana, id, { verdict: 'confirmed', expect: escalated.decision.id }), 403, 'REVIEW_FORBIDDEN');
    const analystPage = await (await ana.get(`/?status=escalated&item=${id}`)).text();
    assert.doesNotMatch(analystPage, /id="decide-form"|id="reopen-form"/, 'an analyst gets no buttons for an escalated item');
    assert.match(analystPage, /Escalated to a lead/, 'the analyst is told a lead decides it');
    const leadPage = await (await lee.get(`/?status=escalated&item=${id}`)).text();
    assert.match(leadPage, /id="decide-form"/);
    assert.doesNotMatch(leadPage, /id="escalate"/, 'an escalated item cannot be escalated again');

    const confirmed = await jsonDecision(lee, id, { verdict: 'confirmed', expect: escalated.decision.id });
    assert.equal(confirmed.status, 201);
    const { decision } = (await confirmed.json()) as { decision: { id: number; previous: { verdict: string } } };
    assert.equal(decision.previous.verdict, 'escalated');

    await expectError(await ana.post(`/items/${id}/reopen`, {}, { ...JSON_ACCEPT, 'x-csrf-token': ana.csrf }), 403, 'REVIEW_FORBIDDEN');
    const analystForm = await ana.post(`/items/${id}/reopen`, new URLSearchParams({ _csrf: ana.csrf, next: '/' }));
    assert.equal(analystForm.status, 403);
    await expectError(await lee.post(`/items/${id}/reopen`, {}, { ...JSON_ACCEPT }), 403, 'REVIEW_CSRF_INVALID');

    const leadDone = await (await lee.get(`/?status=decided&item=${id}`)).text();
    const reopenForm = /<form method="post" action="\/items\/(\d+)\/reopen"[^>]*>([\s\S]*?)<\/form>/.exec(leadDone);
    assert.ok(reopenForm, 'a lead sees the re-open form on a decided item');
    const reopened = await lee.post(`/items/${id}/reopen`, { note: 'second look', expect: decision.id }, { ...JSON_ACCEPT, 'x-csrf-token': lee.csrf });
    assert.equal(reopened.status, 201);
    const body = (await reopened.json()) as { decision: { verdict: string; analyst: string; note: string } };
    assert.equal(body.decision.verdict, 'reopened');
    assert.equal(body.decision.analyst, 'lee');
    assert.equal(body.decision.note, 'second look');
    assert.equal((await queueJson(ana, `?item=${id}`)).selected?.status, 'pending');
    assert.deepEqual((await queueJson(ana)).items.map((i) => i.id), [id], 'back in the pending queue');
    await expectError(await lee.post(`/items/${id}/reopen`, {}, { ...JSON_ACCEPT, 'x-csrf-token': lee.csrf }), 409, 'REVIEW_NOT_PENDING');

    // The form variant redirects like a decision does.
    assert.equal((await jsonDecision(lee, id, { verdict: 'rejected' })).status, 201);
    const viaForm = await lee.post(`/items/${id}/reopen`, new URLSearchParams({ _csrf: lee.csrf, next: `/?status=decided` }));
    assert.equal(viaForm.status, 303);
    assert.equal(viaForm.headers.get('location'), '/?status=decided&done=reopened');
    assert.equal((await jsonDecision(lee, id, { verdict: 'confirmed' })).status, 201);
    const withFragment = await lee.post(`/items/${id}/reopen`, new URLSearchParams({ _csrf: lee.csrf, next: `/?status=all&item=${id}#detail` }));
    assert.equal(withFragment.headers.get('location'), `/?status=all&item=${id}&done=reopened#detail`, 'the notice goes before the fragment');
  });

  test('undo puts the author\'s last decision back to pending; with nothing left to undo it is 409 REVIEW_NOTHING_TO_UNDO', async (t) => {
    const h = await startConsole(t);
    const older = ingest(h, { decidedAt: '2030-03-01T08:00:00.000Z' });
    const id = ingest(h, { decidedAt: '2030-03-02T08:00:00.000Z' });
    const ana = await signIn(h, 'ana');
    const lee = await signIn(h, 'lee');
    await expectError(await ana.post('/undo', {}, { ...JSON_ACCEPT, 'x-csrf-token': ana.csrf }), 409, 'REVIEW_NOTHING_TO_UNDO');

    assert.equal((await formDecision(ana, id, { verdict: 'rejected', expect: '0', next: '/' })).status, 303);
    await expectError(await lee.post('/undo', {}, { ...JSON_ACCEPT, 'x-csrf-token': lee.csrf }), 409, 'REVIEW_NOTHING_TO_UNDO');
    await expectError(await ana.post('/undo', {}, JSON_ACCEPT), 403, 'REVIEW_CSRF_INVALID');

    const undone = await ana.post('/undo', new URLSearchParams({ _csrf: ana.csrf, next: '/' }));
    assert.equal(undone.status, 303);
    assert.equal(undone.headers.get('location'), `/?item=${id}&done=undone`);
    const page = await (await ana.get(undone.headers.get('location')!)).text();
    assert.match(page, /Undone: the item is pending again\.<\/p>/);
    assert.match(page, new RegExp(`data-item="${id}"`));
    assert.match(page, /id="decide-form"/, 'it can be decided again at once');
    assert.equal((await queueJson(ana, `?item=${id}`)).selected?.status, 'pending');
    await expectError(await ana.post('/undo', {}, { ...JSON_ACCEPT, 'x-csrf-token': ana.csrf }), 409, 'REVIEW_NOTHING_TO_UNDO');

    assert.equal((await jsonDecision(ana, older, { verdict: 'confirmed' })).status, 201);
    const json = await ana.post('/undo', {}, { ...JSON_ACCEPT, 'x-csrf-token': ana.csrf });
    assert.equal(json.status, 201);
    const { decision } = (await json.json()) as { decision: { itemId: number; verdict: string; analyst: string; previous: { verdict: string } } };
    assert.deepEqual([decision.itemId, decision.verdict, decision.analyst, decision.previous.verdict], [older, 'reopened', 'ana', 'confirmed']);
    assert.deepEqual((await queueJson(ana)).items.map((i) => i.id), [id, older]);
  });

  test('a lead who undoes a verdict on an escalated item gives it back to the leads, not to the analysts', async (t) => {
    const h = await startConsole(t);
    const id = ingest(h);
    const ana = await signIn(h, 'ana');
    const lee = await signIn(h, 'lee');
    assert.equal((await jsonDecision(ana, id, { verdict: 'escalated' })).status, 201);
    assert.equal((await jsonDecision(lee, id, { verdict: 'confirmed' })).status, 201);
    assert.equal((await lee.post('/undo', {}, { ...JSON_ACCEPT, 'x-csrf-token': lee.csrf })).status, 201);
    assert.equal((await queueJson(ana, `?item=${id}`)).selected?.status, 'escalated');
    await expectError(await jsonDecision(ana, id, { verdict: 'confirmed' }), 403, 'REVIEW_FORBIDDEN');
  });

  test('the audit page lists every decision including the undo, and /stats renders as HTML and as JSON', async (t) => {
    const h = await startConsole(t);
    const a = ingest(h);
    const b = ingest(h);
    const ana = await signIn(h, 'ana');
    const lee = await signIn(h, 'lee');
    assert.equal((await jsonDecision(ana, a, { verdict: 'confirmed' })).status, 201);
    assert.equal((await jsonDecision(ana, b, { verdict: 'rejected', note: 'resin copy' })).status, 201);
    assert.equal((await ana.post('/undo', {}, { ...JSON_ACCEPT, 'x-csrf-token': ana.csrf })).status, 201);
    assert.equal((await jsonDecision(lee, b, { verdict: 'escalated' })).status, 201);

    const audit = await ana.get('/audit');
    assert.equal(audit.status, 200);
    const page = await audit.text();
    const rows = [...page.matchAll(/<tr><td>(\d+)<\/td>[\s\S]*?<span class="badge (\w+)">/g)].map((m) => [Number(m[1]), m[2]]);
    assert.deepEqual(rows, [[4, 'escalated'], [3, 'reopened'], [2, 'rejected'], [1, 'confirmed']], 'newest first, the undo an entry of its own');
    assert.match(page, /resin copy/);
    assert.match(page, /rejected elephant_ivory<\/td>/, 'the undo names what it undid');
    assert.match(page, new RegExp(`<a href="/\\?status=all&(amp;)?item=${b}">${b}</a>`), 'each entry links to its item');

    const json = (await (await ana.get('/audit', JSON_ACCEPT)).json()) as { entries: Array<{ verdict: string; analyst: string }> };
    assert.deepEqual(json.entries.map((e) => e.verdict), ['escalated', 'reopened', 'rejected', 'confirmed']);
    const anaOnly = (await (await ana.get('/audit?analyst=ana', JSON_ACCEPT)).json()) as { entries: Array<{ analyst: string }> };
    assert.equal(anaOnly.entries.length, 3);
    assert.ok(anaOnly.entries.every((e) => e.analyst === 'ana'));
    assert.match(await (await ana.get('/audit?analyst=ana')).text(), /<h1>Audit log of ana<\/h1>/);

    const stats = await ana.get('/stats');
    assert.equal(stats.status, 200);
    const statsPage = await stats.text();
    assert.match(statsPage, /<title>Stats · Wildlife-trade review<\/title>/);
    assert.match(statsPage, /<dt>Escalated<\/dt><dd>1<\/dd>/);
    assert.match(statsPage, /<a href="\/stats" class="tab current">Stats<\/a>/);
    const statsJson = await ana.get('/stats', JSON_ACCEPT);
    assert.equal(statsJson.status, 200);
    const s = (await statsJson.json()) as { backlog: { pending: number; escalated: number } };
    assert.deepEqual([s.backlog.pending, s.backlog.escalated], [0, 1]);
  });
});

describe('review console: photos', () => {
  test('a photo is served as a metadata-free JPEG and kept, so it still shows after its host is gone', async (t) => {
    const h = await startConsole(t);
    const original = await photoWithExif();
    assert.ok((await sharp(original).metadata()).exif, 'the served fixture carries EXIF');
    const host = await imageHost(t, original);
    const id = ingestPhoto(h, host.url, sha256(original));
    const ana = await signIn(h, 'ana');

    const res = await ana.get(`/items/${id}/photo`, { accept: 'image/avif,image/webp,*/*' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/jpeg');
    assert.match(res.headers.get('cache-control') ?? '', /^private\b/);
    assert.equal(res.headers.get('content-security-policy'), "default-src 'none'");
    const bytes = Buffer.from(await res.arrayBuffer());
    const meta = await sharp(bytes).metadata();
    assert.equal(meta.format, 'jpeg');
    assert.deepEqual([meta.width, meta.height], [452, 625]);
    assert.equal(meta.exif, undefined, 'no EXIF in the console\'s copy');
    assert.equal(meta.xmp, undefined);
    assert.equal(meta.iptc, undefined);
    for (const secret of ['seller-secret-artist', 'seller-secret-copyright', 'warehouse 7', 'Exif\0\0']) assert.equal(bytes.includes(secret), false, secret);

    const stored = storedPhoto(h, sha256(original));
    assert.ok(stored, 'the original is kept in the photos table');
    assert.equal(stored.content_type, 'image/jpeg');
    assert.ok(Buffer.from(stored.bytes).equals(original), 'the evidence is kept byte for byte');

    const thumb = await ana.get(`/items/${id}/photo?size=thumb`, { accept: 'image/*' });
    assert.equal(thumb.status, 200);
    const thumbMeta = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata();
    assert.ok(Math.max(thumbMeta.width, thumbMeta.height) <= 160, `${thumbMeta.width}×${thumbMeta.height}`);
    assert.equal(thumbMeta.exif, undefined);

    await host.close();
    const again = await ana.get(`/items/${id}/photo`, { accept: 'image/*' });
    assert.equal(again.status, 200, 'served from the database once the host is gone');
    assert.equal((await sharp(Buffer.from(await again.arrayBuffer())).metadata()).format, 'jpeg');
    assert.equal(host.hits, 1, 'fetched once, whoever asked first (a view or the background)');

    // A second item with the same photo (a repost) shares the stored copy.
    const repost = ingestPhoto(h, host.url, sha256(original));
    assert.equal((await ana.get(`/items/${repost}/photo`, { accept: 'image/*' })).status, 200);
  });

  test('a photo whose orientation is in its EXIF is shown upright', async (t) => {
    const h = await startConsole(t);
    const original = await sharp(readFileSync(FIXTURE)).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    assert.equal((await sharp(original).metadata()).orientation, 6);
    const host = await imageHost(t, original);
    const id = ingestPhoto(h, host.url, sha256(original));
    const ana = await signIn(h, 'ana');
    const res = await ana.get(`/items/${id}/photo`, { accept: 'image/*' });
    assert.equal(res.status, 200);
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    assert.deepEqual([meta.width, meta.height, meta.orientation], [625, 452, undefined]);
  });

  test('a photo whose bytes do not match the screened sha256 is not shown, nor stored', async (t) => {
    const h = await startConsole(t);
    const original = readFileSync(FIXTURE);
    const host = await imageHost(t, original);
    const digest = sha256(Buffer.from('the photo that was really screened'));
    const id = ingestPhoto(h, host.url, digest);
    const ana = await signIn(h, 'ana');
    const error = await expectError(await ana.get(`/items/${id}/photo`, JSON_ACCEPT), 404, 'REVIEW_PHOTO_UNAVAILABLE');
    assert.match(error.message, /changed since it was screened/);
    assert.equal(storedPhoto(h, digest), undefined);
    assert.equal(storedPhoto(h, sha256(original)), undefined, 'the substitute is not kept under its own hash either');
    assert.match(photoAttempt(h, digest)?.last_error ?? '', /^REVIEW_PHOTO_UNAVAILABLE/);
    // An <img> request (Accept: image/*) gets the same 404 as JSON, not a redirect or an HTML page.
    const img = await ana.get(`/items/${id}/photo?size=thumb`, { accept: 'image/avif,image/webp,image/*,*/*;q=0.8' });
    assert.equal(img.status, 404);
  });

  test('a page view does not fetch again a photo whose attempts are used up; the background retries own that', async (t) => {
    const h = await startConsole(t, { photos: { fetch: true, concurrency: 2, maxAttempts: 2 } });
    const host = await imageHost(t, readFileSync(FIXTURE));
    const digest = sha256(Buffer.from('the photo that was really screened'));
    const id = ingestPhoto(h, host.url, digest);
    const ana = await signIn(h, 'ana');
    // The background drain tries once when the item arrives; a view tries the second time.
    await until('the background attempt', () => photoAttempt(h, digest), { timeoutMs: 5000 });
    assert.equal(photoAttempt(h, digest)?.attempts, 1);
    await expectError(await ana.get(`/items/${id}/photo`, JSON_ACCEPT), 404, 'REVIEW_PHOTO_UNAVAILABLE');
    assert.equal(photoAttempt(h, digest)?.attempts, 2);
    const hits = host.hits;
    const error = await expectError(await ana.get(`/items/${id}/photo`, JSON_ACCEPT), 404, 'REVIEW_PHOTO_UNAVAILABLE');
    assert.match(error.message, /Gave up after 2 attempts; last: REVIEW_PHOTO_UNAVAILABLE/);
    assert.equal(host.hits, hits, 'no new connection to the image host');
  });

  test('a stored photo that cannot be decoded is reported as unavailable, not as a server fault', async (t) => {
    const h = await startConsole(t);
    // Sniffs as a GIF (so the fetcher takes it) and matches its sha256, but is no picture.
    const broken = Buffer.concat([Buffer.from('GIF89a'), Buffer.alloc(64, 0x41)]);
    const host = await imageHost(t, broken);
    const id = ingestPhoto(h, host.url, sha256(broken));
    const ana = await signIn(h, 'ana');
    const error = await expectError(await ana.get(`/items/${id}/photo`, JSON_ACCEPT), 404, 'REVIEW_PHOTO_UNAVAILABLE');
    assert.match(error.message, /could not be decoded/);
    assert.ok(storedPhoto(h, sha256(broken)), 'the bytes are still kept as evidence');
    await expectError(await ana.get(`/items/${id}/photo?size=thumb`, JSON_ACCEPT), 404, 'REVIEW_PHOTO_UNAVAILABLE');
  });

  test('a photo that came inline with its flag is shown without any fetch', async (t) => {
    const h = await startConsole(t, { photos: { fetch: false, concurrency: 2, maxAttempts: 5 } });
    const original = readFileSync(FIXTURE);
    const id = ingest(h, {}, (m) => {
      m.image = { ...m.image, url: null, sha256: sha256(original), base64: original.toString('base64') };
    });
    const ana = await signIn(h, 'ana');
    const res = await ana.get(`/items/${id}/photo`, { accept: 'image/*' });
    assert.equal(res.status, 200);
    assert.equal((await sharp(Buffer.from(await res.arrayBuffer())).metadata()).format, 'jpeg');
  });

  test('an item whose image URL is null has no photo', async (t) => {
    const h = await startConsole(t);
    const id = ingestPhoto(h, null, sha256(Buffer.from('inline upload')));
    const ana = await signIn(h, 'ana');
    const error = await expectError(await ana.get(`/items/${id}/photo`, JSON_ACCEPT), 404, 'REVIEW_PHOTO_UNAVAILABLE');
    assert.match(error.message, /sent inline/);
    await expectError(await ana.get('/items/999999/photo', JSON_ACCEPT), 404, 'REVIEW_ITEM_NOT_FOUND');
    await expectError(await ana.get('/items/x/photo', JSON_ACCEPT), 404, 'REVIEW_ITEM_NOT_FOUND');
  });

  test('with photo fetching switched off only photos already stored are shown', async (t) => {
    const defaults = loadConfig({}).review.photos;
    const h = await startConsole(t, { photos: { ...defaults, fetch: false } });
    const original = readFileSync(FIXTURE);
    const host = await imageHost(t, original);
    const id = ingestPhoto(h, host.url, sha256(original));
    const ana = await signIn(h, 'ana');
    const error = await expectError(await ana.get(`/items/${id}/photo`, JSON_ACCEPT), 404, 'REVIEW_PHOTO_UNAVAILABLE');
    assert.match(error.message, /switched off/);
    assert.equal(host.hits, 0);
    h.console.db.prepare('INSERT INTO photos (sha256, content_type, bytes, stored_at) VALUES (?, ?, ?, ?)').run(sha256(original), 'image/jpeg', original, new Date().toISOString());
    assert.equal((await ana.get(`/items/${id}/photo`, { accept: 'image/*' })).status, 200);
    assert.equal(host.hits, 0);
  });

  test('a photo URL on a private address outside the allowlist is refused without a connection attempt', async (t) => {
    const h = await startConsole(t);
    const original = readFileSync(FIXTURE);
    const digest = sha256(original);
    // 127.0.0.2 is loopback but not the allowlisted 127.0.0.1: a host there would answer if asked.
    const internal = await imageHost(t, original, '127.0.0.2');
    const ana = await signIn(h, 'ana');
    for (const url of [internal.url, 'http://10.255.255.1/x.jpg', 'http://169.254.169.254/latest/meta-data/', 'http://[::ffff:169.254.169.254]/x.jpg', 'http://0x7f000002/x.jpg']) {
      const id = ingestPhoto(h, url, digest);
      const started = Date.now();
      const error = await expectError(await ana.get(`/items/${id}/photo`, JSON_ACCEPT), 404, 'REVIEW_PHOTO_UNAVAILABLE');
      assert.ok(Date.now() - started < 2000, `${url}: refused at once, not after a connect timeout`);
      assert.match(error.message, /URL_HOST_FORBIDDEN/, url);
    }
    assert.match(photoAttempt(h, digest)?.last_error ?? '', /URL_HOST_FORBIDDEN/);
    assert.equal(internal.connections, 0, 'the internal host was never contacted');
    assert.equal(storedPhoto(h, digest), undefined);
  });

  test('photos of newly ingested items are fetched and stored in the background', async (t) => {
    const h = await startConsole(t);
    const first = readFileSync(FIXTURE);
    const second = readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'met', 'non_ivory_36078.jpg'));
    const hostA = await imageHost(t, first);
    const hostB = await imageHost(t, second);
    const idA = ingestPhoto(h, hostA.url, sha256(first));
    const idB = ingestPhoto(h, hostB.url, sha256(second));
    ingest(h); // no URL: nothing to fetch, and it must not hold the others up
    await until('both photos to be stored', () => !!storedPhoto(h, sha256(first)) && !!storedPhoto(h, sha256(second)), { timeoutMs: 5000 });
    assert.equal(hostA.hits, 1);
    assert.equal(hostB.hits, 1);
    await hostA.close();
    await hostB.close();
    const ana = await signIn(h, 'ana');
    for (const id of [idA, idB]) {
      const res = await ana.get(`/items/${id}/photo?size=thumb`, { accept: 'image/*' });
      assert.equal(res.status, 200, `item ${id}: shown from the stored copy`);
      assert.equal(res.headers.get('content-type'), 'image/jpeg');
    }
    const page = await (await ana.get('/')).text();
    assert.match(page, /<img src="\/items\/\d+\/photo\?size=thumb" alt="" width="64" height="64" loading="lazy">/, 'cards show the console\'s copy');
    assert.doesNotMatch(page, /<img[^>]+src="http/, 'the browser never loads a listing\'s image from its host');
  });
});

describe('review console: metrics', () => {
  test('/metrics counts decisions by verdict and label and reports the backlog', async (t) => {
    const h = await startConsole(t);
    const a = ingest(h);
    const b = ingest(h);
    ingest(h);
    const ana = await signIn(h, 'ana');
    assert.equal((await jsonDecision(ana, a, { verdict: 'confirmed' })).status, 201);
    assert.equal((await formDecision(ana, b, { verdict: 'escalated', next: '/' })).status, 303);
    const text = await (await fetch(`${h.base}/metrics`)).text();
    assert.match(text, /^wildlife_review_decisions_total\{verdict="confirmed",label="elephant_ivory"\} 1$/m);
    assert.match(text, /^wildlife_review_decisions_total\{verdict="escalated",label="elephant_ivory"\} 1$/m);
    assert.match(text, /^wildlife_review_backlog\{status="pending"\} 1$/m);
    assert.match(text, /^wildlife_review_backlog\{status="escalated"\} 1$/m);
    assert.match(text, /^wildlife_review_outbox_size 2$/m, 'without Kafka every decision waits in the outbox');
    assert.match(text, /^wildlife_review_time_to_decision_seconds_count 1$/m, "the confirmation only: an escalation hands the item on, it does not decide it");
  });
});
