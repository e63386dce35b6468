/**
 * Who is signed in to the review console, without express. Two modes: `accounts` (usernames and
 * scrypt hashes in the config) and `proxy` (an SSO reverse proxy names the user in a header). Either
 * way a signed-in browser holds an opaque session token; the database keeps only its sha256, so a
 * leaked database or backup cannot be replayed as a cookie. Each session carries its own CSRF token.
 */
import { createHash, createHmac, randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { AppConfig } from '../config.js';
import { AppError } from '../errors.js';
import type { Logger } from 'pino';
import type { ReviewDb } from './db.js';
import { LoginThrottle, logLockout } from './throttle.js';

/** Who is signed in: every decision, page and audit row names one. */
export interface Principal { username: string; role: 'analyst' | 'lead' }

export type ReviewConfig = AppConfig['review'];
type Role = Principal['role'];

export interface ReviewSession {
  /** sha256 of the token (hex), the row's primary key; safe to log, useless as a cookie. */
  id: string;
  username: string;
  role: Role;
  /** Submitted back with every state-changing request (form field `_csrf` or header X-CSRF-Token). */
  csrf: string;
  expiresAt: Date;
}

// ---------------------------------------------------------------------------------------------
// Password hashes: scrypt$N$r$p$<salt base64>$<key base64>, the format the config schema accepts.

const DEFAULT_SCRYPT = { N: 32768, r: 8, p: 1 };
const KEY_BYTES = 32;
const SALT_BYTES = 16;

function scrypt(password: string, salt: Buffer, keyLength: number, params: { N: number; r: number; p: number }): Promise<Buffer> {
  // Node's default maxmem (32 MiB) is exactly what N=32768, r=8 needs and the check is exclusive,
  // so the default parameters would fail without headroom.
  const options: ScryptOptions = { ...params, maxmem: 128 * params.r * (params.N + params.p + 2) + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scryptCallback(password.normalize('NFC'), salt, keyLength, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export async function hashPassword(password: string, opts: { N?: number; r?: number; p?: number } = {}): Promise<string> {
  const params = { ...DEFAULT_SCRYPT, ...opts };
  const salt = randomBytes(SALT_BYTES);
  const key = await scrypt(password, salt, KEY_BYTES, params);
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

interface ParsedHash { N: number; r: number; p: number; salt: Buffer; key: Buffer }

const HASH_FORMAT = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

/** Bounds keep a hand-edited config from making every sign-in allocate gigabytes. */
function parseHash(stored: string): ParsedHash | null {
  const m = HASH_FORMAT.exec(stored);
  if (!m) return null;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const powerOfTwo = N >= 2 && (N & (N - 1)) === 0;
  if (!powerOfTwo || N > 2 ** 20 || r < 1 || r > 32 || p < 1 || p > 16) return null;
  const salt = Buffer.from(m[4]!, 'base64');
  const key = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8 || key.length < 16 || key.length > 64) return null;
  return { N, r, p, salt, key };
}

/** Never throws: a malformed or unusable hash simply matches no password. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = typeof password === 'string' && typeof stored === 'string' ? parseHash(stored) : null;
  if (!parsed) return false;
  try {
    const key = await scrypt(password, parsed.salt, parsed.key.length, parsed);
    return timingSafeEqual(key, parsed.key);
  } catch {
    return false;
  }
}

/**
 * A hash no password matches, with the same cost as the real ones, so that an unknown username
 * takes as long to refuse as a wrong password and response times do not list the accounts.
 */
function dummyHashLike(stored: string | undefined): string {
  const parsed = stored ? parseHash(stored) : null;
  const { N, r, p } = parsed ?? DEFAULT_SCRYPT;
  return `scrypt$${N}$${r}$${p}$${randomBytes(SALT_BYTES).toString('base64')}$${randomBytes(KEY_BYTES).toString('base64')}`;
}

// ---------------------------------------------------------------------------------------------
// Sign-in throttling

/** THROTTLED with the hint an HTTP layer needs for a Retry-After header. */
export class LoginThrottledError extends AppError {
  readonly retryAfterSeconds: number;

  constructor(retryAfterSeconds: number) {
    super('REVIEW_LOGIN_THROTTLED', `Try again in ${retryAfterSeconds} s.`);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

// ---------------------------------------------------------------------------------------------
// Device cookies (throttle.ts says what they are for)

/** What the HTTP layer sets after a successful sign-in: the cookie's value and lifetime. */
export interface DeviceCookie { value: string; maxAgeSeconds: number }

const DEVICE_COOKIE_MAX_LENGTH = 512;
const DEVICE_ID_FORMAT = /^[A-Za-z0-9_-]{22}$/;

/**
 * The HMAC key for device cookies. It lives in the review database because the sessions do: a
 * database that survives a restart keeps both the analysts' sessions and their trusted devices, and a
 * fresh (or ':memory:') one starts both over. It is the auth module's own state, created on first use
 * and idempotently, so it is not a numbered migration (db.ts): a build that does not know the table
 * ignores it. Deleting the row (and restarting) makes every device cookie worthless, which is all a
 * rotation needs: analysts' next sign-in gets a fresh one. Whoever can read the database can mint
 * cookies with it, and so guess at the perDevice rate from as many made-up devices as they like: guard
 * the file (and its backups) as the secret it holds.
 */
function deviceCookieKey(db: ReviewDb, created: Date): Buffer {
  db.exec('CREATE TABLE IF NOT EXISTS auth_secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL, created_at TEXT NOT NULL)');
  db.prepare('INSERT OR IGNORE INTO auth_secrets (name, value, created_at) VALUES (?, ?, ?)').run('device-cookie', randomBytes(32), created.toISOString());
  return (db.prepare('SELECT value FROM auth_secrets WHERE name = ?').get('device-cookie') as { value: Buffer }).value;
}

/**
 * `<username, base64url>.<id>.<expiry, unix seconds>.<HMAC-SHA256 of the three>`. The username is the
 * account's lower-cased name, the key the throttle counts by; the expiry is signed because the
 * browser's Max-Age is only a request to the browser.
 */
function deviceCookieCodec(key: Buffer) {
  const mac = (body: string) => createHmac('sha256', key).update(`review-device-v1.${body}`).digest();
  return {
    mint(username: string, expiresAt: number): string {
      const body = `${Buffer.from(username).toString('base64url')}.${randomBytes(16).toString('base64url')}.${Math.floor(expiresAt / 1000)}`;
      return `${body}.${mac(body).toString('base64url')}`;
    },
    /** The device id if `value` is a cookie we minted for `username` that has not expired; else undefined. */
    verify(value: string | undefined, username: string, now: number): string | undefined {
      if (typeof value !== 'string' || value.length > DEVICE_COOKIE_MAX_LENGTH) return undefined;
      const parts = value.split('.');
      if (parts.length !== 4) return undefined;
      const [user, id, expiry, signature] = parts as [string, string, string, string];
      const supplied = Buffer.from(signature, 'base64url');
      const expected = mac(`${user}.${id}.${expiry}`);
      if (supplied.length !== expected.length || !timingSafeEqual(supplied, expected)) return undefined;
      if (!DEVICE_ID_FORMAT.test(id) || !/^\d{1,12}$/.test(expiry) || Number(expiry) * 1000 <= now) return undefined;
      return Buffer.from(user, 'base64url').toString() === username ? id : undefined;
    },
  };
}

/** Sessions kept per user in proxy mode (one per browser the user signs in with, and then some). */
export const PROXY_SESSIONS_PER_USER = 20;

// ---------------------------------------------------------------------------------------------
// Sessions

const TOKEN_FORMAT = /^[A-Za-z0-9_-]{43}$/;

const newToken = () => randomBytes(32).toString('base64url');
const tokenId = (token: string) => createHash('sha256').update(token).digest('hex');
const digest = (value: string) => createHash('sha256').update(value).digest();

/** Throws REVIEW_CSRF_INVALID unless `supplied` is the session's token (compared in constant time). */
export function checkCsrf(session: Pick<ReviewSession, 'csrf'>, supplied: string | undefined): void {
  // Digests have equal length whatever was supplied, so the comparison leaks neither content nor length.
  if (typeof supplied !== 'string' || supplied.length === 0 || !timingSafeEqual(digest(session.csrf), digest(supplied))) {
    throw new AppError('REVIEW_CSRF_INVALID');
  }
}

type Headers = Record<string, string | string[] | undefined>;

export interface ReviewAuth {
  readonly mode: ReviewConfig['auth']['mode'];
  readonly sessionTtlSeconds: number;
  /**
   * Accounts mode. Throws REVIEW_LOGIN_FAILED (unknown user or wrong password alike) or
   * LoginThrottledError. `deviceCookie` is the browser's device cookie, if any; on success `device` is
   * the new one to set in its place.
   */
  signIn(username: string, password: string, clientKey: string, deviceCookie?: string): Promise<{ token: string; session: ReviewSession; device: DeviceCookie }>;
  /** The live session for a cookie token; null when unknown, expired, or (accounts mode) the account is gone. */
  session(token: string | undefined): ReviewSession | null;
  /** Proxy mode: the session for the proxy's user header, reusing the cookie's when it is theirs. */
  proxySession(headers: Headers, token: string | undefined): { token: string; session: ReviewSession; created: boolean } | null;
  signOut(token: string | undefined): void;
  /** Deletes expired sessions; returns how many. */
  purgeExpired(): number;
}

interface SessionRow { id: string; username: string; role: Role; csrf: string; expires_at: string }

function headerValue(headers: Headers, name: string): string | string[] | undefined {
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === wanted) return value;
  return undefined;
}

/**
 * The user the proxy names. Several values (as an array, or joined with commas by Node) mean something
 * upstream appended rather than replaced the header, so none of them can be trusted.
 */
function proxyUsername(headers: Headers, header: string): string | null {
  const raw = headerValue(headers, header);
  const value = Array.isArray(raw) ? (raw.length === 1 ? raw[0] : undefined) : raw;
  const username = value?.trim();
  // Node joins a repeated header into "a, b", so a comma is the only trace of a client-supplied
  // value the proxy appended to instead of replacing; such a user is nobody.
  return username && username.length <= 256 && !username.includes(',') && !/[\u0000-\u001f\u007f]/.test(username) ? username : null;
}

function proxyRole(proxy: ReviewConfig['auth']['proxy'], headers: Headers, username: string): Role {
  if (proxy.leads.some((lead) => lead.toLowerCase() === username.toLowerCase())) return 'lead';
  if (proxy.roleHeader === null) return 'analyst';
  const raw = headerValue(headers, proxy.roleHeader);
  const values = (Array.isArray(raw) ? raw.join(',') : raw ?? '').split(/[\s,]+/);
  return values.includes(proxy.leadValue) ? 'lead' : 'analyst';
}

export function createReviewAuth(db: ReviewDb, config: ReviewConfig, options: { now?: () => Date; logger?: Logger } = {}): ReviewAuth {
  const now = options.now ?? (() => new Date());
  const { mode } = config.auth;
  const accounts = new Map(config.auth.accounts.map((a) => [a.username.toLowerCase(), a]));
  const dummyHash = dummyHashLike(config.auth.accounts[0]?.passwordHash);
  // The throttle only measures durations, so unless a test injects a clock it gets a monotonic one
  // (aligned with the wall clock at start, so that lockout log lines still say roughly when).
  const throttleClock = options.now ? () => now().getTime() : () => performance.timeOrigin + performance.now();
  const throttle = new LoginThrottle(config.auth.throttle, throttleClock, options.logger ? logLockout(options.logger) : undefined);
  const devices = mode === 'accounts' ? deviceCookieCodec(deviceCookieKey(db, now())) : null;

  const statements = {
    insert: db.prepare('INSERT INTO sessions (id, username, role, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)'),
    byId: db.prepare('SELECT id, username, role, csrf, expires_at FROM sessions WHERE id = ?'),
    setRole: db.prepare('UPDATE sessions SET role = ? WHERE id = ?'),
    remove: db.prepare('DELETE FROM sessions WHERE id = ?'),
    purge: db.prepare('DELETE FROM sessions WHERE expires_at <= ?'),
  };

  const toSession = (row: SessionRow): ReviewSession => ({ id: row.id, username: row.username, role: row.role, csrf: row.csrf, expiresAt: new Date(row.expires_at) });

  function createSession(username: string, role: Role): { token: string; session: ReviewSession } {
    const token = newToken();
    const created = now();
    const expiresAt = new Date(created.getTime() + config.sessionTtlSeconds * 1000);
    const row: SessionRow = { id: tokenId(token), username, role, csrf: newToken(), expires_at: expiresAt.toISOString() };
    statements.insert.run(row.id, username, role, row.csrf, created.toISOString(), row.expires_at);
    // Sessions are created far less often than they are read, so this is where the table gets swept.
    purgeExpired();
    return { token, session: toSession(row) };
  }

  /** The stored row if the token names a session that has not expired; expired rows go on sight. */
  function liveRow(token: string | undefined): SessionRow | null {
    if (typeof token !== 'string' || !TOKEN_FORMAT.test(token)) return null;
    const row = statements.byId.get(tokenId(token)) as SessionRow | undefined;
    if (!row) return null;
    if (new Date(row.expires_at).getTime() <= now().getTime()) {
      statements.remove.run(row.id);
      return null;
    }
    return row;
  }

  function withRole(row: SessionRow, role: Role): SessionRow {
    if (row.role === role) return row;
    statements.setRole.run(role, row.id);
    return { ...row, role };
  }

  /** Accounts come from config, so a session is only as good as the account it was opened for is now. */
  function followConfig(row: SessionRow): SessionRow | null {
    const account = accounts.get(row.username.toLowerCase());
    if (!account) {
      statements.remove.run(row.id);
      return null;
    }
    return withRole(row, account.role);
  }

  async function signIn(username: string, password: string, clientKey: string, deviceCookie?: string): Promise<{ token: string; session: ReviewSession; device: DeviceCookie }> {
    if (mode !== 'accounts' || !devices) throw new Error('signIn is only available in accounts mode; in proxy mode the proxy signs users in');
    const name = typeof username === 'string' ? username.trim() : '';
    // Keyed by the name as typed, whether or not it is an account, so that throttling says nothing about which names exist.
    const key = name.toLowerCase();
    // Only a successful sign-in mints a cookie, so an unknown name never has a valid one, and a cookie
    // for another account (a shared machine) is no cookie for this one.
    const deviceId = devices.verify(deviceCookie, key, now().getTime());
    const wait = throttle.retryAfter(key, clientKey, deviceId);
    if (wait > 0) throw new LoginThrottledError(wait);
    const attempt = throttle.begin(key, clientKey, deviceId);
    const account = accounts.get(key);
    const ok = await verifyPassword(typeof password === 'string' ? password : '', account?.passwordHash ?? dummyHash);
    if (!account || !ok) {
      throttle.failed(attempt);
      throw new AppError('REVIEW_LOGIN_FAILED');
    }
    throttle.succeeded(attempt);
    // A new id on every sign-in, so the device starts with a clean count of its own, and a new expiry.
    const lifetime = config.auth.throttle.deviceCookieSeconds;
    const device = { value: devices.mint(key, now().getTime() + lifetime * 1000), maxAgeSeconds: lifetime };
    return { ...createSession(account.username, account.role), device };
  }

  function session(token: string | undefined): ReviewSession | null {
    const row = liveRow(token);
    if (!row) return null;
    const current = mode === 'accounts' ? followConfig(row) : row;
    return current ? toSession(current) : null;
  }

  function proxySession(headers: Headers, token: string | undefined): { token: string; session: ReviewSession; created: boolean } | null {
    // In accounts mode the header is just something a client sent, not something a proxy vouches for.
    if (mode !== 'proxy') return null;
    const username = proxyUsername(headers, config.auth.proxy.userHeader);
    if (!username) return null;
    const role = proxyRole(config.auth.proxy, headers, username);
    const row = liveRow(token);
    if (row && token && row.username === username) return { token, session: toSession(withRole(row, role)), created: false };
    // Someone else's session in this browser: the cookie is about to be replaced, so nothing can reach it any more.
    if (row) statements.remove.run(row.id);
    const created = createSession(username, role);
    // Requests that carry the proxy's header but not our SameSite=Strict cookie (cross-site
    // subresources, scripts) each make a session: keep a user's newest few, so they cannot pile up.
    db.prepare(`DELETE FROM sessions WHERE username = ? AND id NOT IN
      (SELECT id FROM sessions WHERE username = ? ORDER BY created_at DESC, rowid DESC LIMIT ${PROXY_SESSIONS_PER_USER})`).run(username, username);
    return { ...created, created: true };
  }

  function signOut(token: string | undefined): void {
    if (typeof token === 'string' && TOKEN_FORMAT.test(token)) statements.remove.run(tokenId(token));
  }

  function purgeExpired(): number {
    return statements.purge.run(now().toISOString()).changes;
  }

  return { mode, sessionTtlSeconds: config.sessionTtlSeconds, signIn, session, proxySession, signOut, purgeExpired };
}
