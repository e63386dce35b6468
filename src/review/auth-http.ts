/**
 * The review console's sessions over HTTP: the session cookie, guards for routes, the sign-in and
 * sign-out pages, and error responses (an HTML page for a browser, JSON for scripts).
 *
 * CSRF has two layers. Cookies are SameSite=Strict, so another site's form post arrives without
 * one; and every state-changing request must carry the session's CSRF token and, when the browser
 * sends an Origin, come from this origin. Either layer alone would do against today's browsers.
 */
import { randomBytes, createHash, timingSafeEqual } from 'node:crypto';
import express, { type ErrorRequestHandler, type Request, type RequestHandler, type Response, type Router } from 'express';
import { isAppError, AppError } from '../errors.js';
import { toAppError } from '../net/http-errors.js';
import { LoginThrottledError, checkCsrf, type ReviewAuth, type ReviewSession } from './auth.js';
import type { Principal } from './auth.js';
import { html, layout } from './html.js';
import type { RouteTable } from './routes.js';

declare global {
  namespace Express {
    interface Locals {
      /** Set by authMiddleware on every request: null when nobody is signed in. */
      session?: ReviewSession | null;
      principal?: Principal | null;
    }
  }
}

export const DEFAULT_COOKIE_NAME = 'review_session';
export const LOGIN_CSRF_COOKIE = 'review_login_csrf';
/**
 * The trusted-device cookie a sign-in sets (src/review/throttle.ts): it outlives sessions and sign-out,
 * and only the sign-in form's path ever receives it.
 */
export const DEVICE_COOKIE = 'review_device';

export interface AuthHttpOptions {
  cookieName?: string;
  cookieSecure: boolean;
}

// ---------------------------------------------------------------------------------------------
// Cookies

export function parseCookies(header: string | undefined): Record<string, string> {
  const cookies: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    try {
      value = decodeURIComponent(value);
    } catch {
      continue; // a cookie we did not set; ignore it rather than fail the request
    }
    // The first occurrence wins: browsers send the most specific path first.
    if (name && !(name in cookies)) cookies[name] = value;
  }
  return cookies;
}

function serializeCookie(name: string, value: string, o: { maxAgeSeconds: number; secure: boolean; path?: string }): string {
  const parts = [`${name}=${encodeURIComponent(value)}`, `Path=${o.path ?? '/'}`, `Max-Age=${Math.max(0, Math.floor(o.maxAgeSeconds))}`, 'HttpOnly', 'SameSite=Strict'];
  if (o.secure) parts.push('Secure');
  return parts.join('; ');
}

export function setSessionCookie(res: Response, token: string, maxAgeSeconds: number, options: AuthHttpOptions): void {
  res.append('Set-Cookie', serializeCookie(options.cookieName ?? DEFAULT_COOKIE_NAME, token, { maxAgeSeconds, secure: options.cookieSecure }));
}

export function clearSessionCookie(res: Response, options: AuthHttpOptions): void {
  res.append('Set-Cookie', serializeCookie(options.cookieName ?? DEFAULT_COOKIE_NAME, '', { maxAgeSeconds: 0, secure: options.cookieSecure }));
}

export function sessionToken(req: Request, options: Pick<AuthHttpOptions, 'cookieName'>): string | undefined {
  return parseCookies(req.get('cookie'))[options.cookieName ?? DEFAULT_COOKIE_NAME];
}

// ---------------------------------------------------------------------------------------------
// Middleware and guards

/**
 * Attaches res.locals.session and res.locals.principal. In proxy mode the proxy's header is the
 * authority on every request; the cookie only keeps the CSRF token stable between requests.
 */
export function authMiddleware(auth: ReviewAuth, options: AuthHttpOptions): RequestHandler {
  return (req, res, next) => {
    const token = sessionToken(req, options);
    let session: ReviewSession | null;
    try {
      if (auth.mode === 'proxy') {
        const found = auth.proxySession(req.headers, token);
        if (found?.created) setSessionCookie(res, found.token, auth.sessionTtlSeconds, options);
        session = found?.session ?? null;
      } else {
        session = auth.session(token);
      }
    } catch (err) {
      return next(new AppError('REVIEW_DB_FAILED', undefined, { cause: err }));
    }
    res.locals.session = session;
    res.locals.principal = session ? { username: session.username, role: session.role } : null;
    next();
  };
}

/** The request's session, for handlers behind requireSession. */
export function sessionOf(res: Response): ReviewSession {
  const session = res.locals.session;
  if (!session) throw new AppError('REVIEW_UNAUTHENTICATED');
  return session;
}

/** Browsers asking for a page get HTML; fetch() and scripts (accepting anything, or JSON) get JSON. */
export function wantsHtml(req: Request): boolean {
  return req.accepts(['json', 'html']) === 'html';
}

/**
 * A post-sign-in destination that cannot leave this site: a path starting with exactly one slash.
 * `//host` and `/\host` are protocol-relative to browsers, and control characters can smuggle either.
 */
export function safeNext(value: unknown): string {
  if (typeof value !== 'string' || value.length > 2048) return '/';
  if (!value.startsWith('/') || value.startsWith('//') || value.includes('\\')) return '/';
  return /[\u0000-\u001f\u007f]/.test(value) ? '/' : value;
}

export const requireSession: RequestHandler = (req, res, next) => {
  if (res.locals.session) return next();
  if ((req.method === 'GET' || req.method === 'HEAD') && wantsHtml(req)) {
    const target = safeNext(req.originalUrl);
    return res.redirect(303, target === '/' ? '/login' : `/login?next=${encodeURIComponent(target)}`);
  }
  next(new AppError('REVIEW_UNAUTHENTICATED'));
};

const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * An Origin header, when the browser sends one, must be this site's own (`null` included: it is not).
 * req.protocol and req.host both follow X-Forwarded-* exactly when `trust proxy` allows, so behind a
 * TLS-terminating proxy that rewrites Host the two sides still describe the same origin.
 */
function originAllowed(req: Request): boolean {
  const origin = req.get('origin');
  return origin === undefined || origin === `${req.protocol}://${req.host}`;
}

function suppliedCsrf(req: Request): string | undefined {
  const body = req.body as Record<string, unknown> | undefined;
  const field = body && typeof body === 'object' ? body._csrf : undefined;
  return typeof field === 'string' ? field : req.get('x-csrf-token');
}

/** For routes behind requireSession (and after any body parser, multer included, that fills req.body). */
export const requireCsrf: RequestHandler = (req, res, next) => {
  if (!UNSAFE_METHODS.has(req.method)) return next();
  if (!originAllowed(req)) return next(new AppError('REVIEW_CSRF_INVALID', 'The request came from another origin.'));
  const session = res.locals.session;
  if (!session) return next(new AppError('REVIEW_UNAUTHENTICATED'));
  checkCsrf(session, suppliedCsrf(req));
  next();
};

export const requireLead: RequestHandler = (_req, res, next) => {
  const session = res.locals.session;
  if (!session) return next(new AppError('REVIEW_UNAUTHENTICATED'));
  next(session.role === 'lead' ? undefined : new AppError('REVIEW_FORBIDDEN'));
};

// ---------------------------------------------------------------------------------------------
// Errors

function errorPage(err: AppError, res: Response): string {
  const session = res.locals.session ?? null;
  const onward = err.code === 'REVIEW_UNAUTHENTICATED' ? html`<a href="/login">Sign in</a>` : html`<a href="/">Back to the queue</a>`;
  return layout({
    title: 'Error',
    principal: res.locals.principal ?? null,
    csrf: session?.csrf ?? null,
    body: html`<h1>${err.code === 'INTERNAL' ? 'Something went wrong' : 'That did not work'}</h1><p>${err.message}</p><p>${onward}</p>`,
  });
}

/** The one way the console reports an error: an HTML page for browsers, `{error:{code,message,retriable}}` otherwise. */
export function sendReviewError(req: Request, res: Response, err: unknown): void {
  const error = toAppError(err);
  if (res.headersSent) return;
  if (error instanceof LoginThrottledError) res.set('Retry-After', String(error.retryAfterSeconds));
  res.set('Cache-Control', 'no-store');
  res.status(error.status);
  if (wantsHtml(req)) {
    res.type('html').send(errorPage(error, res));
  } else {
    res.json({ error: { code: error.code, message: error.message, retriable: error.retriable } });
  }
}

/** Express error handler around sendReviewError; `onInternal` hears about the errors that are bugs. */
export function reviewErrorHandler(onInternal?: (err: unknown, req: Request) => void): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const error = toAppError(err);
    if (error.code === 'INTERNAL' || error.code === 'REVIEW_DB_FAILED') onInternal?.(err, req);
    sendReviewError(req, res, error);
  };
}

// ---------------------------------------------------------------------------------------------
// Sign-in and sign-out

const LOGIN_CSRF_FORMAT = /^[A-Za-z0-9_-]{43}$/;
const LOGIN_CSRF_MAX_AGE = 60 * 60;
const sha256 = (value: string) => createHash('sha256').update(value).digest();

function sameToken(a: string | undefined, b: unknown): boolean {
  return typeof a === 'string' && typeof b === 'string' && a.length > 0 && timingSafeEqual(sha256(a), sha256(b));
}

/**
 * The login form's double-submit token. It is reused while the cookie lives, so two sign-in tabs do
 * not invalidate each other; it protects against a site signing the victim in as the attacker.
 */
function loginCsrf(req: Request, res: Response, secure: boolean): string {
  const existing = parseCookies(req.get('cookie'))[LOGIN_CSRF_COOKIE];
  const token = existing && LOGIN_CSRF_FORMAT.test(existing) ? existing : randomBytes(32).toString('base64url');
  res.append('Set-Cookie', serializeCookie(LOGIN_CSRF_COOKIE, token, { maxAgeSeconds: LOGIN_CSRF_MAX_AGE, secure, path: '/login' }));
  return token;
}

interface LoginView { status: number; username: string; next: string; message: string | null }

function renderLogin(req: Request, res: Response, secure: boolean, view: LoginView): void {
  const csrf = loginCsrf(req, res, secure);
  const body = html`<h1>Sign in</h1>
<form method="post" action="/login" class="login">
<input type="hidden" name="_csrf" value="${csrf}"><input type="hidden" name="next" value="${view.next}">
<label>Username <input name="username" autocomplete="username" required maxlength="128" value="${view.username}" autofocus></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>`;
  const flash = view.message ? { kind: 'error' as const, text: view.message } : null;
  res.status(view.status).set('Cache-Control', 'no-store').type('html').send(layout({ title: 'Sign in', principal: null, csrf: null, body, flash }));
}

function renderProxyLogin(res: Response): void {
  const body = html`<h1>Sign in</h1><p>This console is signed in to through the organisation's single sign-on proxy, and this
request did not come through it (or the proxy did not name a user). Open the console at its usual address to sign in.</p>`;
  res.status(401).set('Cache-Control', 'no-store').type('html').send(layout({ title: 'Sign in', principal: null, csrf: null, body }));
}

function loginFailureMessage(err: AppError): string {
  if (err instanceof LoginThrottledError) return `Too many failed sign-ins. Try again in ${Math.ceil(err.retryAfterSeconds / 60)} minute(s).`;
  return 'Unknown username or wrong password.';
}

/** GET/POST /login and POST /logout. Mount after authMiddleware (and after express.urlencoded, or not: it parses its own form). */
export function loginRouter(auth: ReviewAuth, options: AuthHttpOptions, routes?: RouteTable): Router {
  const router = express.Router();
  for (const [method, path] of [['GET', '/login'], ['POST', '/login'], ['POST', '/logout']] as const) routes?.add(method, path);
  const form = express.urlencoded({ extended: false, limit: '8kb' });
  const secure = options.cookieSecure;

  router.get('/login', (req, res) => {
    const next = safeNext(req.query.next);
    if (res.locals.session) return res.redirect(303, next);
    if (auth.mode === 'proxy') return renderProxyLogin(res);
    renderLogin(req, res, secure, { status: 200, username: '', next, message: null });
  });

  router.post('/login', form, async (req, res) => {
    if (auth.mode !== 'accounts') return res.redirect(303, '/login');
    const body = (req.body ?? {}) as Record<string, unknown>;
    const next = safeNext(body.next);
    const username = typeof body.username === 'string' ? body.username.slice(0, 128) : '';
    const password = typeof body.password === 'string' ? body.password.slice(0, 1024) : '';
    const csrfCookie = parseCookies(req.get('cookie'))[LOGIN_CSRF_COOKIE];
    if (!originAllowed(req) || !sameToken(csrfCookie, body._csrf)) {
      const err = new AppError('REVIEW_CSRF_INVALID');
      if (!wantsHtml(req)) return sendReviewError(req, res, err);
      return renderLogin(req, res, secure, { status: err.status, username, next, message: 'The sign-in form had expired or came from another site. Please try again.' });
    }
    try {
      const deviceCookie = parseCookies(req.get('cookie'))[DEVICE_COOKIE];
      const { token, device } = await auth.signIn(username, password, req.ip ?? req.socket.remoteAddress ?? 'unknown', deviceCookie);
      // The old token (if any) dies here; sign-in always mints a new one, so a planted cookie is worthless.
      auth.signOut(sessionToken(req, options));
      setSessionCookie(res, token, auth.sessionTtlSeconds, options);
      res.append('Set-Cookie', serializeCookie(LOGIN_CSRF_COOKIE, '', { maxAgeSeconds: 0, secure, path: '/login' }));
      res.append('Set-Cookie', serializeCookie(DEVICE_COOKIE, device.value, { maxAgeSeconds: device.maxAgeSeconds, secure, path: '/login' }));
      res.redirect(303, next);
    } catch (err) {
      if (!isAppError(err, 'REVIEW_LOGIN_FAILED') && !isAppError(err, 'REVIEW_LOGIN_THROTTLED')) throw err;
      if (!wantsHtml(req)) return sendReviewError(req, res, err);
      if (err instanceof LoginThrottledError) res.set('Retry-After', String(err.retryAfterSeconds));
      renderLogin(req, res, secure, { status: err.status, username, next, message: loginFailureMessage(err) });
    }
  });

  // In proxy mode this ends the console's session only; the proxy's own sign-out ends the user's.
  router.post('/logout', form, requireSession, requireCsrf, (req, res) => {
    auth.signOut(sessionToken(req, options));
    clearSessionCookie(res, options);
    res.redirect(303, '/login');
  });

  return router;
}
