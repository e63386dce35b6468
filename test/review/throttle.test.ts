import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test, type TestContext } from 'node:test';
import express from 'express';
import { pino } from 'pino';
import { loadConfig, type AppConfig } from '../../src/config.js';
import { isAppError } from '../../src/errors.js';
import { createReviewAuth, hashPassword, LoginThrottledError, type ReviewAuth } from '../../src/review/auth.js';
import { authMiddleware, loginRouter, requireSession, reviewErrorHandler } from '../../src/review/auth-http.js';
import { openReviewDb } from '../../src/review/db.js';
import { LoginThrottle, type ThrottleConfig } from '../../src/review/throttle.js';

// Sign-in throttling (src/review/throttle.ts): the limits, trusted devices, the table's bounds.

const PASSWORDS = { ana: 'ana-password-1', lee: 'lee-password-1' };
const T0 = new Date('2030-01-01T00:00:00Z');

type Account = { username: string; passwordHash: string; role: 'analyst' | 'lead' };
type AuthSection = Partial<AppConfig['review']['auth']>;
let ACCOUNTS: Account[];

before(async () => {
  ACCOUNTS = [
    { username: 'Ana', passwordHash: await hashPassword(PASSWORDS.ana, { N: 1024 }), role: 'analyst' },
    { username: 'lee', passwordHash: await hashPassword(PASSWORDS.lee, { N: 1024 }), role: 'lead' },
  ];
});

function reviewConfig(auth: AuthSection = {}): AppConfig['review'] {
  const defaults = loadConfig({}).review.auth;
  return loadConfig({}, { review: { auth: { ...defaults, accounts: ACCOUNTS, ...auth }, sessionTtlSeconds: 3600 } }).review;
}

/** A fresh database file and a movable clock; both are cleaned up when the test ends. */
function setup(t: TestContext, auth: AuthSection = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'review-throttle-'));
  const dbFile = path.join(dir, 'review.db');
  const db = openReviewDb(dbFile);
  t.after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const clock = { now: new Date(T0) };
  const advance = (seconds: number) => (clock.now = new Date(clock.now.getTime() + seconds * 1000));
  /** Everything the auth logs, parsed. */
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const make = (a: AuthSection = auth) => createReviewAuth(db, reviewConfig(a), { now: () => clock.now, logger });
  return { db, dir, auth: make(), make, advance, clock, logs };
}

async function rejects(promise: Promise<unknown>, code: string): Promise<unknown> {
  let caught: unknown;
  await promise.then(() => assert.fail(`expected ${code}`), (err: unknown) => (caught = err));
  assert.ok(isAppError(caught), String(caught));
  assert.equal(caught.code, code);
  return caught;
}

async function startApp(t: TestContext, auth: ReviewAuth, cookieSecure = false): Promise<string> {
  const app = express();
  // One proxy hop, so that each request can say which client it comes from (X-Forwarded-For).
  app.set('trust proxy', 1);
  app.use(authMiddleware(auth, { cookieSecure }));
  app.use(loginRouter(auth, { cookieSecure }));
  app.get('/private', requireSession, (_req, res) => res.json({ principal: res.locals.principal }));
  app.use(reviewErrorHandler());
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  t.after(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const HTML = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };
const cookiePair = (setCookie: string) => setCookie.split(';')[0]!;
const findCookie = (res: Response, name: string) => res.headers.getSetCookie().find((c) => c.startsWith(`${name}=`));

/** Fetches the sign-in form and posts it, as a browser at `client` holding device cookie `device` (name=value) would. */
async function postLogin(base: string, username: string, password: string, client?: string, device?: string): Promise<Response> {
  const from: Record<string, string> = client ? { 'x-forwarded-for': client } : {};
  const page = await fetch(`${base}/login`, { headers: { ...HTML, ...from } });
  const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
  const body = new URLSearchParams({ _csrf: csrf, next: '/', username, password });
  const cookie = [cookiePair(findCookie(page, 'review_login_csrf')!), ...(device ? [device] : [])].join('; ');
  return fetch(`${base}/login`, { method: 'POST', redirect: 'manual', body, headers: { ...HTML, ...from, cookie } });
}

interface Outcome { status: number; retryAfter: number; device: string | undefined }

/** Signs in as a browser at `client` would; the status, Retry-After (0 when absent) and any new device cookie (name=value). */
async function attempt(base: string, client: string, username: string, password: string, device?: string): Promise<Outcome> {
  const res = await postLogin(base, username, password, client, device);
  await res.arrayBuffer();
  const set = findCookie(res, 'review_device');
  return { status: res.status, retryAfter: Number(res.headers.get('retry-after') ?? 0), device: set && cookiePair(set) };
}

/** A browser that keeps the device cookie each sign-in gives it, as a real one does. */
function browser(base: string, client: string) {
  const self = {
    device: undefined as string | undefined,
    client,
    async signIn(username: string, password: string): Promise<Outcome> {
      const outcome = await attempt(base, self.client, username, password, self.device);
      if (outcome.device) self.device = outcome.device;
      return outcome;
    },
  };
  return self;
}

describe('sign-in throttling per account, client and account+client', () => {
  test('after five failures for one account from one client that pair waits, doubling per failure up to the cap', async (t) => {
    const { auth, advance } = setup(t);
    for (let i = 0; i < 5; i++) await rejects(auth.signIn('ana', 'wrong', 'home'), 'REVIEW_LOGIN_FAILED');
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) {
      const err = await rejects(auth.signIn('Ana', PASSWORDS.ana, 'home'), 'REVIEW_LOGIN_THROTTLED');
      assert.ok(err instanceof LoginThrottledError);
      waits.push(err.retryAfterSeconds);
      advance(err.retryAfterSeconds);
      await rejects(auth.signIn('ana', 'wrong', 'home'), 'REVIEW_LOGIN_FAILED');
    }
    assert.deepEqual(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    await auth.signIn('ana', PASSWORDS.ana, 'work'); // another client is not held by this pair's count
    await auth.signIn('lee', PASSWORDS.lee, 'home'); // nor another account at this client
  });

  test('a success starts the pair\'s count over but only takes its own attempt back from the account\'s', async (t) => {
    const { auth } = setup(t);
    for (let i = 0; i < 4; i++) await rejects(auth.signIn('ana', 'wrong', 'home'), 'REVIEW_LOGIN_FAILED');
    await auth.signIn('ana', PASSWORDS.ana, 'home');
    for (let i = 0; i < 4; i++) await rejects(auth.signIn('ana', 'wrong', 'home'), 'REVIEW_LOGIN_FAILED');
    await auth.signIn('ana', PASSWORDS.ana, 'home');
    // 8 failures stay on the account: 12 more from strangers lock it for them.
    for (let i = 0; i < 12; i++) await rejects(auth.signIn('ana', 'wrong', `bot-${i}`), 'REVIEW_LOGIN_FAILED');
    await rejects(auth.signIn('ana', PASSWORDS.ana, 'stranger'), 'REVIEW_LOGIN_THROTTLED');
  });

  test('the account-wide limit caps its delay and never holds back a client the account signed in from', async (t) => {
    const { auth, advance } = setup(t);
    await auth.signIn('ana', PASSWORDS.ana, 'office');
    for (let i = 0; i < 20; i++) await rejects(auth.signIn('ana', 'wrong', `bot-${i}`), 'REVIEW_LOGIN_FAILED');
    const first = await rejects(auth.signIn('ana', PASSWORDS.ana, 'new-laptop'), 'REVIEW_LOGIN_THROTTLED') as LoginThrottledError;
    assert.equal(first.retryAfterSeconds, 60);
    // A spray that never stops keeps strangers waiting, never longer than maxDelaySeconds at a time…
    for (let i = 0; i < 10; i++) {
      const wait = (await rejects(auth.signIn('ana', 'x', `bot-x${i}`), 'REVIEW_LOGIN_THROTTLED') as LoginThrottledError).retryAfterSeconds;
      assert.ok(wait <= 900, String(wait));
      advance(wait);
      await rejects(auth.signIn('ana', 'wrong', `bot-y${i}`), 'REVIEW_LOGIN_FAILED');
    }
    assert.equal((await rejects(auth.signIn('ana', PASSWORDS.ana, 'new-laptop'), 'REVIEW_LOGIN_THROTTLED') as LoginThrottledError).retryAfterSeconds, 900);
    // …and the analyst signs in from where they signed in before.
    await auth.signIn('ana', PASSWORDS.ana, 'office');
    advance(900);
    await auth.signIn('ana', PASSWORDS.ana, 'new-laptop');
  });
});

describe('sign-in throttling over HTTP', () => {
  test('a throttled sign-in answers 429 with Retry-After', async (t) => {
    const base = await startApp(t, setup(t).auth);
    for (let i = 0; i < 5; i++) assert.equal((await postLogin(base, 'ana', 'wrong')).status, 401);
    const res = await postLogin(base, 'ana', PASSWORDS.ana);
    assert.equal(res.status, 429);
    assert.ok(Number(res.headers.get('retry-after')) > 0);
    assert.match(await res.text(), /Too many failed sign-ins/);
  });

  test('behind one office NAT, one account\'s failures do not lock colleagues out', async (t) => {
    const base = await startApp(t, setup(t).auth);
    const office = '198.51.100.7';
    for (let i = 0; i < 5; i++) assert.equal((await attempt(base, office, 'ana', 'wrong')).status, 401);
    assert.equal((await attempt(base, office, 'ana', PASSWORDS.ana)).status, 429, 'the guessed account is held at this address');
    assert.equal((await attempt(base, office, 'lee', PASSWORDS.lee)).status, 303, 'a colleague at the same address signs in');
    assert.equal((await attempt(base, '192.0.2.10', 'ana', PASSWORDS.ana)).status, 303, 'and so does the account from elsewhere');
  });

  test('one client guessing one account waits longer after each failure, with Retry-After', async (t) => {
    const { auth, advance } = setup(t);
    const base = await startApp(t, auth);
    const client = '203.0.113.5';
    for (let i = 0; i < 5; i++) assert.equal((await attempt(base, client, 'ana', 'wrong')).status, 401);
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      const held = await attempt(base, client, 'ana', PASSWORDS.ana);
      assert.equal(held.status, 429);
      waits.push(held.retryAfter);
      advance(held.retryAfter);
      assert.equal((await attempt(base, client, 'ana', 'wrong')).status, 401);
    }
    assert.deepEqual(waits, [60, 120, 240, 480]);
  });

  test('an unknown username is throttled exactly like an account, so the answers do not list the accounts', async (t) => {
    const { auth, advance } = setup(t);
    const base = await startApp(t, auth);
    const run = async (username: string) => {
      const seen: Array<{ status: number; retryAfter: number }> = [];
      for (let i = 0; i < 6; i++) seen.push(await attempt(base, '192.0.2.200', username, 'wrong'));
      for (let i = 0; i < 22; i++) seen.push(await attempt(base, `192.0.2.${i}`, username, 'wrong'));
      advance(3600);
      return seen;
    };
    const account = await run('ana');
    assert.ok(account.some((r) => r.status === 429), 'the account was throttled at all');
    assert.deepEqual(await run('nobody-here'), account);
  });

  test('one client is capped across all accounts far above one account\'s limit, but not for an account it signed in before', async (t) => {
    const base = await startApp(t, setup(t).auth);
    const client = '203.0.113.9';
    assert.equal((await attempt(base, client, 'ana', PASSWORDS.ana)).status, 303);
    // Four guesses each at 25 names: no account, and no (account, client) pair, reaches its own limit.
    for (let i = 0; i < 100; i++) assert.equal((await attempt(base, client, `user-${i % 25}`, 'guess')).status, 401, `attempt ${i}`);
    const capped = await attempt(base, client, 'lee', PASSWORDS.lee);
    assert.equal(capped.status, 429);
    assert.ok(capped.retryAfter > 0 && capped.retryAfter <= 900, String(capped.retryAfter));
    assert.equal((await attempt(base, client, 'ana', PASSWORDS.ana)).status, 303, 'an account that signed in from here before still does');
    assert.equal((await attempt(base, '203.0.113.10', 'lee', PASSWORDS.lee)).status, 303, 'other clients are not capped');
  });

  test('each lockout is logged with the username, the client and until when, never the password', async (t) => {
    const { auth, logs } = setup(t);
    const base = await startApp(t, auth);
    for (let i = 0; i < 5; i++) await attempt(base, '203.0.113.77', 'Ana', 'hunter2-secret');
    const locks = logs.filter((l) => l.event === 'review_login_locked');
    assert.equal(locks.length, 1, JSON.stringify(logs));
    assert.deepEqual(
      { scope: locks[0]!.scope, username: locks[0]!.username, client: locks[0]!.client, until: locks[0]!.until, failures: locks[0]!.failures },
      { scope: 'account-client', username: 'ana', client: '203.0.113.77', until: new Date(T0.getTime() + 60_000).toISOString(), failures: 5 },
    );
    assert.ok(!JSON.stringify(logs).includes('hunter2-secret'));
    assert.equal((await attempt(base, '203.0.113.77', 'ana', 'hunter2-secret')).status, 429);
    assert.equal(logs.filter((l) => l.event === 'review_login_locked').length, 1, 'a refused attempt does not log again');
  });
});

describe('trusted devices (the device cookie)', () => {
  const OFFICE = '198.51.100.7';

  test('a sign-in sets a signed, HttpOnly, SameSite=Strict device cookie for the sign-in path, Secure only when configured', async (t) => {
    for (const secure of [false, true]) {
      const base = await startApp(t, setup(t).auth, secure);
      const res = await postLogin(base, 'Ana', PASSWORDS.ana);
      assert.equal(res.status, 303);
      const cookie = findCookie(res, 'review_device')!;
      assert.match(cookie, /^review_device=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}\.\d+\.[A-Za-z0-9_-]{43}; /);
      const attributes = cookie.split('; ');
      for (const attr of ['HttpOnly', 'SameSite=Strict', 'Path=/login', `Max-Age=${180 * 86_400}`]) assert.ok(attributes.includes(attr), `${attr} in ${cookie}`);
      assert.equal(attributes.includes('Secure'), secure);
      assert.equal(Buffer.from(cookiePair(cookie).split('=')[1]!.split('.')[0]!, 'base64url').toString(), 'ana', 'it names the account');
      const failed = await postLogin(base, 'ana', 'wrong');
      assert.equal(findCookie(failed, 'review_device'), undefined, 'a failure sets none');
    }
  });

  // The outside review's scenario: an attacker behind the office NAT keeps a named colleague out all day.
  test('regression: an attacker at the office address guessing ana all day never locks out ana\'s own browser there', async (t) => {
    const { auth, advance } = setup(t);
    const base = await startApp(t, auth);
    const ana = browser(base, OFFICE);
    assert.equal((await ana.signIn('ana', PASSWORDS.ana)).status, 303, 'ana signed in from the office before');
    let attackerTries = 0;
    let locked = 0;
    for (let minute = 0; minute < 8 * 60; minute++) {
      // The attacker (no device cookie, same address) guesses whenever ana's pair is not locked…
      const guess = await attempt(base, OFFICE, 'ana', `guess-${minute}`);
      if (guess.status === 401) attackerTries++;
      else locked++;
      // …and every half hour ana, at the same address, signs in with her browser.
      if (minute % 30 === 7) assert.equal((await ana.signIn('ana', PASSWORDS.ana)).status, 303, `ana at minute ${minute}`);
      advance(60);
    }
    assert.ok(locked > 400, `the attacker was held back (${attackerTries} guesses, ${locked} refusals)`);
    assert.ok(attackerTries <= 20, `the attacker got ${attackerTries} guesses`);
    assert.equal((await attempt(base, OFFICE, 'ana', PASSWORDS.ana)).status, 429, 'without the cookie the office address is still locked for ana');
    assert.equal((await ana.signIn('ana', PASSWORDS.ana)).status, 303);
  });

  test('a trusted device is not held by the account-wide or the address-wide limit either', async (t) => {
    const { auth } = setup(t);
    const base = await startApp(t, auth);
    const ana = browser(base, '192.0.2.50');
    assert.equal((await ana.signIn('ana', PASSWORDS.ana)).status, 303);
    for (let i = 0; i < 30; i++) await attempt(base, `203.0.113.${i}`, 'ana', 'spray'); // the account's limit
    for (let i = 0; i < 100; i++) await attempt(base, '192.0.2.50', `user-${i % 25}`, 'guess'); // the address's cap
    ana.client = '192.0.2.51'; // and from an address she never used
    assert.equal((await attempt(base, '192.0.2.51', 'ana', PASSWORDS.ana)).status, 429, 'a stranger there waits');
    assert.equal((await ana.signIn('ana', PASSWORDS.ana)).status, 303);
    ana.client = '192.0.2.50';
    assert.equal((await ana.signIn('ana', PASSWORDS.ana)).status, 303);
  });

  test('a forged, tampered, expired or other account\'s device cookie gives no trust', async (t) => {
    const { auth, advance, make } = setup(t);
    const base = await startApp(t, auth);
    const ana = (await attempt(base, OFFICE, 'ana', PASSWORDS.ana)).device!;
    const lee = (await attempt(base, OFFICE, 'lee', PASSWORDS.lee)).device!;
    const lockOffice = async () => {
      for (let i = 0; i < 5; i++) await attempt(base, OFFICE, 'ana', 'guess');
      assert.equal((await attempt(base, OFFICE, 'ana', PASSWORDS.ana)).status, 429);
    };
    await lockOffice();
    assert.equal((await attempt(base, OFFICE, 'ana', PASSWORDS.ana, ana)).status, 303, 'the real cookie is trusted');
    const [user, id, expiry, mac] = ana.split('=')[1]!.split('.') as [string, string, string, string];
    // Signed with another database's key, for the same account: a forgery.
    const otherDir = mkdtempSync(path.join(os.tmpdir(), 'review-throttle-other-'));
    const otherDb = openReviewDb(path.join(otherDir, 'review.db'));
    t.after(() => { otherDb.close(); rmSync(otherDir, { recursive: true, force: true }); });
    const forged = (await createReviewAuth(otherDb, reviewConfig(), { now: () => T0 }).signIn('ana', PASSWORDS.ana, 'x')).device.value;
    const flip = (s: string) => s.slice(0, -2) + (s.at(-2) === 'A' ? 'B' : 'A') + s.at(-1);
    const bad: Record<string, string> = {
      forged: `review_device=${forged}`,
      'tampered signature': `review_device=${user}.${id}.${expiry}.${flip(mac)}`,
      'longer life': `review_device=${user}.${id}.${Number(expiry) + 86_400}.${mac}`,
      'renamed to ana': `review_device=${user}.${lee.split('=')[1]!.split('.').slice(1).join('.')}`,
      "lee's, for ana": lee,
      garbage: 'review_device=x.y.z',
    };
    for (const [what, cookie] of Object.entries(bad)) assert.equal((await attempt(base, OFFICE, 'ana', PASSWORDS.ana, cookie)).status, 429, what);
    assert.equal((await attempt(base, OFFICE, 'lee', PASSWORDS.lee, lee)).status, 303, "lee's cookie is good for lee");
    // A restart on the same database keeps the key, as it keeps the sessions.
    const restarted = await startApp(t, make());
    for (let i = 0; i < 5; i++) await attempt(restarted, OFFICE, 'ana', 'guess');
    assert.equal((await attempt(restarted, OFFICE, 'ana', PASSWORDS.ana, ana)).status, 303, 'trusted after a restart');
    // Expired: past the cookie's signed expiry it is no cookie, however the browser kept it.
    advance(180 * 86_400);
    await lockOffice();
    assert.equal((await attempt(base, OFFICE, 'ana', PASSWORDS.ana, ana)).status, 429, 'expired');
  });

  test('a trusted device that fails too often is locked itself and untrusted until a sign-in succeeds', async (t) => {
    const { auth, advance, logs } = setup(t);
    const base = await startApp(t, auth);
    const ana = browser(base, OFFICE);
    assert.equal((await ana.signIn('ana', PASSWORDS.ana)).status, 303);
    for (let i = 0; i < 5; i++) await attempt(base, OFFICE, 'ana', 'attacker'); // the office pair is locked for strangers
    for (let i = 0; i < 5; i++) assert.equal((await ana.signIn('ana', 'typo')).status, 401);
    const own = await ana.signIn('ana', PASSWORDS.ana);
    assert.deepEqual([own.status, own.retryAfter], [429, 60], 'the device is locked by its own count');
    const lock = logs.find((l) => l.event === 'review_login_locked' && l.scope === 'account-device');
    assert.ok(lock && lock.username === 'ana' && typeof lock.device === 'string', JSON.stringify(logs));
    advance(60);
    assert.equal((await attempt(base, OFFICE, 'ana', 'attacker')).status, 401, 'the attacker, again');
    // Its own lock has lapsed, but it is now a stranger at the office, where the attacker's lock holds.
    assert.equal((await ana.signIn('ana', PASSWORDS.ana)).status, 429, 'no longer trusted');
    advance(24 * 3600); // waiting alone does not bring the trust back…
    for (let i = 0; i < 5; i++) await attempt(base, OFFICE, 'ana', 'attacker');
    assert.equal((await ana.signIn('ana', PASSWORDS.ana)).status, 429);
    ana.client = '192.0.2.80'; // …a success does (from home, as any stranger there could)
    assert.equal((await ana.signIn('ana', PASSWORDS.ana)).status, 303);
    ana.client = OFFICE;
    assert.equal((await ana.signIn('ana', PASSWORDS.ana)).status, 303, 'trusted again at the office');
  });

  test('parallel guesses with a trusted cookie cannot all slip past its limit', async (t) => {
    const { auth } = setup(t);
    const base = await startApp(t, auth);
    const device = (await attempt(base, OFFICE, 'ana', PASSWORDS.ana)).device!;
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => attempt(base, OFFICE, 'ana', `guess-${i}`, device)));
    assert.equal(results.filter((r) => r.status === 401).length, 5, JSON.stringify(results.map((r) => r.status)));
  });
});

describe('the sign-in throttle table', () => {
  const config = (maxEntries: number): ThrottleConfig => ({
    ...loadConfig({}).review.auth.throttle, maxEntries,
  });

  test('an untrusted device outlives a flood of made-up usernames', () => {
    let now = T0.getTime();
    const throttle = new LoginThrottle(config(1000), () => now);
    for (let i = 0; i < 5; i++) throttle.failed(throttle.begin('ana', 'office', 'device-1'));
    now += 3600_000; // its lock has lapsed; only the distrust is left
    for (let i = 0; i < 20_000; i++) throttle.failed(throttle.begin(`made-up-${i}`, `10.0.${(i >> 8) & 255}.${i & 255}`));
    assert.ok(throttle.size.counters <= 1000);
    for (let i = 0; i < 5; i++) throttle.failed(throttle.begin('ana', 'office'));
    assert.ok(throttle.retryAfter('ana', 'office', 'device-1') > 0, 'still untrusted, so the office lock holds it');
  });

  test('stays bounded under a flood of distinct clients and usernames, keeping locks and known clients', () => {
    let now = T0.getTime();
    const throttle = new LoginThrottle(config(1000), () => now);
    const fail = (user: string, client: string) => throttle.failed(throttle.begin(user, client));
    throttle.succeeded(throttle.begin('ana', 'office'));
    for (let i = 0; i < 5; i++) fail('lee', 'attacker');
    assert.ok(throttle.retryAfter('lee', 'attacker') > 0);
    let peak = 0;
    for (let i = 0; i < 50_000; i++) {
      fail(`made-up-${i}`, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
      peak = Math.max(peak, throttle.size.counters);
      if (i % 1000 === 0) now += 1000;
    }
    assert.ok(peak <= 1000, `peak ${peak}`);
    assert.ok(throttle.retryAfter('lee', 'attacker') > 0, 'a lock outlives the flood');
    assert.equal(throttle.size.known, 1, 'the known client outlives it too');
  });

  test('the settings are validated at start-up, every problem named', () => {
    const defaults = loadConfig({}).review.auth;
    const withThrottle = (throttle: Record<string, unknown>) => () => loadConfig({}, { review: { auth: { ...defaults, throttle: { ...defaults.throttle, ...throttle } } } });
    assert.throws(withThrottle({ perAccount: { freeFailures: 20, baseDelaySeconds: 600, maxDelaySeconds: 60 } }), /review\.auth\.throttle\.perAccount\.maxDelaySeconds: must not be below baseDelaySeconds/);
    assert.throws(withThrottle({ forgetAfterSeconds: 60 }), /review\.auth\.throttle\.forgetAfterSeconds: must be at least perAccountClient\.maxDelaySeconds/);
    assert.throws(withThrottle({ perClient: { maxFailures: 5, windowSeconds: 900 } }), /review\.auth\.throttle\.perClient\.maxFailures: must be above/);
    assert.throws(withThrottle({ maxEntries: 0, extra: 1 }), (err: Error) => /throttle\.maxEntries/.test(err.message) && /unknown key "extra"/.test(err.message));
  });

  test('known clients are capped as well', () => {
    const throttle = new LoginThrottle(config(100), () => T0.getTime());
    for (let i = 0; i < 1000; i++) throttle.succeeded(throttle.begin(`user-${i}`, 'c'));
    assert.ok(throttle.size.known <= 100);
  });
});
