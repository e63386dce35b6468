import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test, type TestContext } from 'node:test';
import express from 'express';
import { pino } from 'pino';
import { loadConfig, type AppConfig } from '../../src/config.js';
import { isAppError } from '../../src/errors.js';
import { checkCsrf, createReviewAuth, hashPassword, verifyPassword, type ReviewAuth, PROXY_SESSIONS_PER_USER } from '../../src/review/auth.js';
import { authMiddleware, loginRouter, requireCsrf, requireLead, requireSession, reviewErrorHandler, safeNext } from '../../src/review/auth-http.js';
import { openReviewDb, type ReviewDb } from '../../src/review/db.js';

const SCHEMA_HASH = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/;
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

function reviewConfig(auth: AuthSection = {}, extra: Record<string, unknown> = {}): AppConfig['review'] {
  const defaults = loadConfig({}).review.auth;
  return loadConfig({}, { review: { auth: { ...defaults, accounts: ACCOUNTS, ...auth }, sessionTtlSeconds: 3600, ...extra } }).review;
}

/** A fresh database file and a movable clock; both are cleaned up when the test ends. */
function setup(t: TestContext, auth: AuthSection = {}, extra: Record<string, unknown> = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'review-auth-'));
  const db = openReviewDb(path.join(dir, 'review.db'));
  t.after(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const clock = { now: new Date(T0) };
  const advance = (seconds: number) => (clock.now = new Date(clock.now.getTime() + seconds * 1000));
  /** Everything the auth logs, parsed. */
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const make = (a: AuthSection = auth) => createReviewAuth(db, reviewConfig(a, extra), { now: () => clock.now, logger });
  return { db, auth: make(), make, advance, logs };
}

async function rejects(promise: Promise<unknown>, code: string): Promise<unknown> {
  let caught: unknown;
  await promise.then(() => assert.fail(`expected ${code}`), (err: unknown) => (caught = err));
  assert.ok(isAppError(caught), String(caught));
  assert.equal(caught.code, code);
  return caught;
}

describe('review passwords', () => {
  test('a password hash has the format the config schema accepts and verifies only its own password', async () => {
    const hash = await hashPassword('a long enough password', { N: 1024 });
    assert.match(hash, SCHEMA_HASH);
    assert.match(hash, /^scrypt\$1024\$8\$1\$/);
    assert.doesNotThrow(() => loadConfig({}, { review: { auth: { ...loadConfig({}).review.auth, accounts: [{ username: 'x', passwordHash: hash, role: 'lead' }] } } }));
    assert.equal(await verifyPassword('a long enough password', hash), true);
    assert.equal(await verifyPassword('a long enough passworD', hash), false);
    assert.match(await hashPassword('x'), /^scrypt\$32768\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/, 'defaults: N=32768, 16-byte salt, 32-byte key');
  });

  test('a malformed or hostile hash matches no password rather than throwing', async () => {
    const good = ACCOUNTS[0]!.passwordHash;
    const [, , , , salt, key] = good.split('$');
    for (const bad of ['', 'plain', good.replace('scrypt', 'bcrypt'), `scrypt$1000$8$1$${salt}$${key}`, `scrypt$${2 ** 24}$8$1$${salt}$${key}`,
      `scrypt$1024$0$1$${salt}$${key}`, `scrypt$1024$8$1$${salt}$AAAA`, `scrypt$1024$8$1$$${key}`, `${good}$extra`]) {
      assert.equal(await verifyPassword(PASSWORDS.ana, bad), false, bad);
    }
    assert.equal(await verifyPassword(undefined as unknown as string, good), false);
  });
});

describe('review sign-in and sessions', () => {
  test('a wrong password and an unknown user get the same error', async (t) => {
    const { auth } = setup(t);
    const wrong = await rejects(auth.signIn('Ana', 'not-the-password', 'c1'), 'REVIEW_LOGIN_FAILED');
    const unknown = await rejects(auth.signIn('nobody', PASSWORDS.ana, 'c2'), 'REVIEW_LOGIN_FAILED');
    assert.equal((wrong as Error).message, (unknown as Error).message);
  });

  test('usernames match case-insensitively and the session carries the configured spelling and role', async (t) => {
    const { auth } = setup(t);
    const { token, session } = await auth.signIn('ANA', PASSWORDS.ana, 'c');
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(session.username, 'Ana');
    assert.equal(session.role, 'analyst');
    assert.equal(session.expiresAt.getTime(), T0.getTime() + 3600_000);
    assert.deepEqual(auth.session(token), session);
  });

  test('a session expires after sessionTtlSeconds and its row is deleted', async (t) => {
    const { auth, db, advance } = setup(t);
    const { token } = await auth.signIn('ana', PASSWORDS.ana, 'c');
    advance(3599);
    assert.ok(auth.session(token));
    advance(1);
    assert.equal(auth.session(token), null);
    assert.equal((db.prepare('SELECT count(*) AS n FROM sessions').get() as { n: number }).n, 0);
  });

  test('purgeExpired removes only expired sessions', async (t) => {
    const { auth, advance } = setup(t);
    const first = await auth.signIn('ana', PASSWORDS.ana, 'c');
    advance(1800);
    const second = await auth.signIn('lee', PASSWORDS.lee, 'c');
    advance(1800);
    assert.equal(auth.purgeExpired(), 1);
    assert.equal(auth.session(first.token), null);
    assert.ok(auth.session(second.token));
  });

  test('the database holds only the sha256 of a session token', async (t) => {
    const { auth, db } = setup(t);
    const { token, session } = await auth.signIn('ana', PASSWORDS.ana, 'c');
    const rows = db.prepare('SELECT * FROM sessions').all() as Array<Record<string, string>>;
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.id, createHash('sha256').update(token).digest('hex'));
    assert.equal(session.id, rows[0]!.id);
    assert.ok(!Object.values(rows[0]!).some((v) => String(v).includes(token)));
    assert.equal(auth.session(rows[0]!.id), null, 'the stored id is not itself a token');
  });

  test('an account removed from the config loses its session on restart', async (t) => {
    const { auth, make } = setup(t);
    const { token } = await auth.signIn('ana', PASSWORDS.ana, 'c');
    const restarted = make({ accounts: ACCOUNTS.filter((a) => a.username !== 'Ana') });
    assert.equal(restarted.session(token), null);
    assert.equal(make().session(token), null, 'the session is gone, not just hidden');
  });

  test('a role changed in the config applies to existing sessions', async (t) => {
    const { auth, make } = setup(t);
    const { token } = await auth.signIn('lee', PASSWORDS.lee, 'c');
    const demoted = make({ accounts: ACCOUNTS.map((a) => ({ ...a, role: 'analyst' as const })) });
    assert.equal(demoted.session(token)?.role, 'analyst');
  });

  test('signing out ends the session', async (t) => {
    const { auth } = setup(t);
    const { token } = await auth.signIn('ana', PASSWORDS.ana, 'c');
    auth.signOut(token);
    assert.equal(auth.session(token), null);
    assert.doesNotThrow(() => auth.signOut(undefined));
  });

  test('the CSRF check accepts only the session\'s own token', async (t) => {
    const { auth } = setup(t);
    const a = (await auth.signIn('ana', PASSWORDS.ana, 'c')).session;
    const b = (await auth.signIn('lee', PASSWORDS.lee, 'c')).session;
    assert.notEqual(a.csrf, b.csrf);
    assert.doesNotThrow(() => checkCsrf(a, a.csrf));
    for (const supplied of [undefined, '', b.csrf, a.csrf.slice(1)]) {
      assert.throws(() => checkCsrf(a, supplied), (err: unknown) => isAppError(err, 'REVIEW_CSRF_INVALID'));
    }
  });
});

describe('review sessions behind an SSO proxy', () => {
  const proxy = (p: Partial<AppConfig['review']['auth']['proxy']> = {}) => ({
    mode: 'proxy' as const, accounts: [], proxy: { userHeader: 'X-Forwarded-User', roleHeader: 'X-Forwarded-Groups', leadValue: 'wildlife-leads', leads: ['Boss@example.org'], ...p },
  });

  test('leads come from the leads list or the role header, everyone else is an analyst', (t) => {
    const { auth } = setup(t, proxy());
    const role = (headers: Record<string, string>) => auth.proxySession(headers, undefined)?.session.role;
    assert.equal(role({ 'x-forwarded-user': 'boss@example.org' }), 'lead');
    assert.equal(role({ 'X-Forwarded-User': 'kim', 'x-forwarded-groups': 'staff, wildlife-leads' }), 'lead');
    assert.equal(role({ 'x-forwarded-user': 'kim', 'x-forwarded-groups': 'staff wildlife-leads-alumni' }), 'analyst');
    assert.equal(role({ 'x-forwarded-user': 'kim' }), 'analyst');
    assert.equal(auth.proxySession({}, undefined), null, 'no header, no session');
    assert.equal(auth.proxySession({ 'x-forwarded-user': ['a', 'b'] }, undefined), null, 'an appended header is not trusted');
    assert.equal(auth.proxySession({ 'x-forwarded-user': 'mallory, ana' }, undefined), null, 'a repeated header, joined by Node, is not trusted either');
  });

  test('the same proxy user reuses the session, a different one gets a new session and CSRF token', (t) => {
    const { auth, db } = setup(t, proxy());
    const first = auth.proxySession({ 'x-forwarded-user': 'kim' }, undefined)!;
    assert.equal(first.created, true);
    const again = auth.proxySession({ 'x-forwarded-user': 'kim', 'x-forwarded-groups': 'wildlife-leads' }, first.token)!;
    assert.deepEqual([again.created, again.token, again.session.csrf, again.session.role], [false, first.token, first.session.csrf, 'lead']);
    const other = auth.proxySession({ 'x-forwarded-user': 'sam' }, first.token)!;
    assert.equal(other.created, true);
    assert.notEqual(other.token, first.token);
    assert.notEqual(other.session.csrf, first.session.csrf);
    assert.equal(auth.session(first.token), null, "the previous user's session is dropped");
    assert.equal((db.prepare('SELECT count(*) AS n FROM sessions').get() as { n: number }).n, 1);
  });

  test('cookieless requests through the proxy cannot pile up sessions: a user keeps the newest few', (t) => {
    const { auth, db } = setup(t, proxy());
    const tokens = Array.from({ length: PROXY_SESSIONS_PER_USER + 5 }, () => auth.proxySession({ 'x-forwarded-user': 'kim' }, undefined)!.token);
    auth.proxySession({ 'x-forwarded-user': 'sam' }, undefined);
    const count = (u: string) => (db.prepare('SELECT count(*) AS n FROM sessions WHERE username = ?').get(u) as { n: number }).n;
    assert.deepEqual([count('kim'), count('sam')], [PROXY_SESSIONS_PER_USER, 1]);
    assert.ok(auth.session(tokens.at(-1)), 'the newest session lives');
    assert.equal(auth.session(tokens[0]), null, 'the oldest went');
  });

  test('in accounts mode the proxy header is ignored', (t) => {
    const { auth } = setup(t);
    assert.equal(auth.proxySession({ 'x-forwarded-user': 'lee' }, undefined), null);
  });
});

// ---------------------------------------------------------------------------------------------
// Over HTTP

async function startApp(t: TestContext, auth: ReviewAuth, cookieSecure = false): Promise<string> {
  const app = express();
  // One proxy hop, so that each request can say which client it comes from (X-Forwarded-For).
  app.set('trust proxy', 1);
  app.use(express.urlencoded({ extended: false }), express.json());
  app.use(authMiddleware(auth, { cookieSecure }));
  app.use(loginRouter(auth, { cookieSecure }));
  app.get('/private', requireSession, (_req, res) => res.json({ principal: res.locals.principal, csrf: res.locals.session?.csrf }));
  app.post('/private', requireSession, requireCsrf, (_req, res) => res.json({ ok: true }));
  app.post('/lead', requireSession, requireCsrf, requireLead, (_req, res) => res.json({ ok: true }));
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

/** Fetches the sign-in form and posts it, as a browser would. */
async function postLogin(base: string, username: string, password: string, next = '/'): Promise<Response> {
  const page = await fetch(`${base}/login`, { headers: HTML });
  const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())![1]!;
  const body = new URLSearchParams({ _csrf: csrf, next, username, password });
  return fetch(`${base}/login`, { method: 'POST', redirect: 'manual', body, headers: { ...HTML, cookie: cookiePair(findCookie(page, 'review_login_csrf')!) } });
}

async function signedIn(base: string, username: string, password: string): Promise<{ cookie: string; csrf: string }> {
  const res = await postLogin(base, username, password);
  assert.equal(res.status, 303);
  const cookie = cookiePair(findCookie(res, 'review_session')!);
  const { csrf } = (await (await fetch(`${base}/private`, { headers: { cookie } })).json()) as { csrf: string };
  return { cookie, csrf };
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

describe('review authentication over HTTP', () => {
  test('signing in sets an HttpOnly SameSite=Strict session cookie, Secure only when configured', async (t) => {
    for (const secure of [false, true]) {
      const base = await startApp(t, setup(t).auth, secure);
      const res = await postLogin(base, 'ana', PASSWORDS.ana, '/private?page=2');
      assert.equal(res.status, 303);
      assert.equal(res.headers.get('location'), '/private?page=2');
      const cookie = findCookie(res, 'review_session')!;
      assert.match(cookie, /^review_session=[A-Za-z0-9_-]{43}; /);
      for (const attr of ['HttpOnly', 'SameSite=Strict', 'Path=/', 'Max-Age=3600']) assert.ok(cookie.split('; ').includes(attr), `${attr} in ${cookie}`);
      assert.equal(cookie.split('; ').includes('Secure'), secure);
    }
  });

  test('a page request without a session redirects to sign-in with a safe next, an API call gets JSON 401', async (t) => {
    const base = await startApp(t, setup(t).auth);
    const page = await fetch(`${base}/private?x=1`, { headers: HTML, redirect: 'manual' });
    assert.equal(page.status, 303);
    assert.equal(page.headers.get('location'), `/login?next=${encodeURIComponent('/private?x=1')}`);
    const api = await fetch(`${base}/private`, { redirect: 'manual' });
    assert.equal(api.status, 401);
    assert.deepEqual(await api.json(), { error: { code: 'REVIEW_UNAUTHENTICATED', message: 'Sign in to the review console first.', retriable: false } });
  });

  test('sign-in only ever redirects within the site', async (t) => {
    const base = await startApp(t, setup(t).auth);
    for (const next of ['//evil.example', '/\\evil.example', 'https://evil.example/', '/\tx']) assert.equal(safeNext(next), '/', next);
    assert.equal(safeNext('/?status=escalated'), '/?status=escalated');
    const form = await (await fetch(`${base}/login?next=${encodeURIComponent('//evil.example')}`, { headers: HTML })).text();
    assert.match(form, /name="next" value="\/"/);
    const res = await postLogin(base, 'ana', PASSWORDS.ana, '//evil.example');
    assert.equal(res.headers.get('location'), '/');
  });

  test('a failed sign-in re-renders the form with 401, escapes the username and never echoes the password', async (t) => {
    const base = await startApp(t, setup(t).auth);
    const res = await postLogin(base, '<b>ana</b>', 'secret-guess-123');
    assert.equal(res.status, 401);
    const page = await res.text();
    assert.match(page, /Unknown username or wrong password/);
    assert.match(page, /value="&lt;b&gt;ana&lt;\/b&gt;"/);
    assert.ok(!page.includes('secret-guess-123'));
    assert.equal(findCookie(res, 'review_session'), undefined);
  });

  test('the sign-in form is refused without its double-submit token', async (t) => {
    const base = await startApp(t, setup(t).auth);
    const body = new URLSearchParams({ _csrf: 'forged', username: 'ana', password: PASSWORDS.ana });
    const res = await fetch(`${base}/login`, { method: 'POST', body, redirect: 'manual' });
    assert.equal(res.status, 403);
    assert.equal(await errorCode(res), 'REVIEW_CSRF_INVALID');
  });

  test('a POST needs the session CSRF token, by form field or header', async (t) => {
    const base = await startApp(t, setup(t).auth);
    const { cookie, csrf } = await signedIn(base, 'ana', PASSWORDS.ana);
    const post = (body: URLSearchParams, headers: Record<string, string> = {}) => fetch(`${base}/private`, { method: 'POST', body, headers: { cookie, ...headers } });
    const missing = await post(new URLSearchParams({ verdict: 'x' }));
    assert.equal(missing.status, 403);
    assert.equal(await errorCode(missing), 'REVIEW_CSRF_INVALID');
    assert.equal((await post(new URLSearchParams({ _csrf: 'wrong' }))).status, 403);
    assert.equal((await post(new URLSearchParams({ _csrf: csrf }))).status, 200);
    assert.equal((await post(new URLSearchParams(), { 'x-csrf-token': csrf })).status, 200);
    const noSession = await fetch(`${base}/private`, { method: 'POST', body: new URLSearchParams({ _csrf: csrf }) });
    assert.equal(await errorCode(noSession), 'REVIEW_UNAUTHENTICATED');
  });

  test('a POST from another origin is refused even with the right token', async (t) => {
    const base = await startApp(t, setup(t).auth);
    const { cookie, csrf } = await signedIn(base, 'ana', PASSWORDS.ana);
    const post = (origin: string) => fetch(`${base}/private`, { method: 'POST', body: new URLSearchParams({ _csrf: csrf }), headers: { cookie, origin } });
    const evil = await post('https://evil.example');
    assert.equal(evil.status, 403);
    assert.equal(await errorCode(evil), 'REVIEW_CSRF_INVALID');
    assert.equal((await post('null')).status, 403);
    assert.equal((await post(base)).status, 200);
  });

  test('an analyst gets 403 REVIEW_FORBIDDEN on a lead route and a lead gets through', async (t) => {
    const base = await startApp(t, setup(t).auth);
    const post = ({ cookie, csrf }: { cookie: string; csrf: string }) => fetch(`${base}/lead`, { method: 'POST', headers: { cookie, 'x-csrf-token': csrf } });
    const analyst = await post(await signedIn(base, 'ana', PASSWORDS.ana));
    assert.equal(analyst.status, 403);
    assert.equal(await errorCode(analyst), 'REVIEW_FORBIDDEN');
    assert.equal((await post(await signedIn(base, 'lee', PASSWORDS.lee))).status, 200);
  });

  test('signing out clears the cookie and the token no longer works', async (t) => {
    const base = await startApp(t, setup(t).auth);
    const { cookie, csrf } = await signedIn(base, 'ana', PASSWORDS.ana);
    const refused = await fetch(`${base}/logout`, { method: 'POST', headers: { cookie }, redirect: 'manual' });
    assert.equal(refused.status, 403, 'sign-out needs the CSRF token too');
    const res = await fetch(`${base}/logout`, { method: 'POST', body: new URLSearchParams({ _csrf: csrf }), headers: { ...HTML, cookie }, redirect: 'manual' });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/login');
    assert.match(findCookie(res, 'review_session')!, /^review_session=; .*Max-Age=0/);
    assert.equal((await fetch(`${base}/private`, { headers: { cookie } })).status, 401);
  });

  test('behind a proxy the user header opens a session and the sign-in page sends the user on', async (t) => {
    const proxy = { mode: 'proxy' as const, proxy: { userHeader: 'X-Forwarded-User', roleHeader: null, leadValue: 'leads', leads: ['boss'] } };
    const base = await startApp(t, setup(t, proxy).auth);
    const first = await fetch(`${base}/private`, { headers: { 'x-forwarded-user': 'boss' } });
    assert.deepEqual(((await first.json()) as { principal: unknown }).principal, { username: 'boss', role: 'lead' });
    const cookie = cookiePair(findCookie(first, 'review_session')!);
    const second = await fetch(`${base}/private`, { headers: { 'x-forwarded-user': 'boss', cookie } });
    assert.equal(findCookie(second, 'review_session'), undefined, 'the session is reused, not reissued');
    assert.equal((await fetch(`${base}/private`, { headers: { cookie } })).status, 401, 'the cookie alone is not enough');
    const login = await fetch(`${base}/login`, { headers: { ...HTML, 'x-forwarded-user': 'boss' }, redirect: 'manual' });
    assert.equal(login.status, 303);
    assert.equal((await fetch(`${base}/login`, { headers: HTML })).status, 401);
  });
});
