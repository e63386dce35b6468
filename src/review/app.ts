/**
 * The review console's HTTP surface: the queue, decisions, the stats view, photos, the audit log,
 * sign-in, and the ops endpoints. Browsers get server-rendered pages under a strict CSP; the same
 * routes answer JSON to API clients (Accept: application/json).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Request, type Response } from 'express';
import helmet from 'helmet';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { AppConfig } from '../config.js';
import { AppError } from '../errors.js';
import { authMiddleware, loginRouter, requireCsrf, requireLead, requireSession, reviewErrorHandler, safeNext, sessionOf, wantsHtml } from './auth-http.js';
import type { ReviewAuth } from './auth.js';
import type { ReviewDb } from './db.js';
import { layout, type NavTab } from './html.js';
import type { PhotoKeeper } from './photos.js';
import { RouteTable } from './routes.js';
import { MAX_STATS_DAYS, reviewStats } from './stats.js';
import { renderStatsPage } from './stats-page.js';
import type { QueueFilter, QueueSort, QueueStatus, ReviewStore } from './store.js';
import { queueLink, renderAudit, renderQueue } from './views.js';

const STATIC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'static');

export interface ReviewAppDeps {
  config: AppConfig['review'];
  db: ReviewDb;
  store: ReviewStore;
  auth: ReviewAuth;
  photos: PhotoKeeper;
  /** Prometheus registry for GET /metrics; null when review.metricsPort serves it on a port of its own. */
  metrics: Registry | null;
  /** Whether the Kafka feed is connected (for /readyz); a console without Kafka passes () => true. */
  feedReady: () => boolean;
  logger: Logger;
}

const STATUSES: readonly QueueStatus[] = ['pending', 'escalated', 'decided', 'all'];
const SORTS: readonly QueueSort[] = ['newest', 'oldest', 'score'];
const VERDICTS = ['confirmed', 'rejected', 'escalated'] as const;
const DONE_TEXT: Record<string, string> = {
  confirmed: 'Confirmed.', rejected: 'Rejected as a false positive.', escalated: 'Escalated to a lead.', reopened: 'Re-opened for review.', undone: 'Undone: the item is pending again.',
};

/** The queue's filters from the query string; anything malformed is one REVIEW_FILTER_INVALID listing every problem. */
export function parseQueueQuery(query: Record<string, unknown>): { filter: Required<Pick<QueueFilter, 'status' | 'sort'>> & QueueFilter; keep: URLSearchParams; page: number; item: number | null; done: string | null } {
  const problems: string[] = [];
  const text = (key: string): string | undefined => {
    const v = query[key];
    if (v === undefined || v === '') return undefined;
    if (typeof v !== 'string' || v.length > 256) {
      problems.push(`${key}: must be one value of at most 256 characters`);
      return undefined;
    }
    return v;
  };
  const oneOf = <T extends string>(key: string, allowed: readonly T[], fallback: T): T => {
    const v = text(key);
    if (v === undefined) return fallback;
    if (!allowed.includes(v as T)) problems.push(`${key}: must be one of ${allowed.join(', ')}`);
    return allowed.includes(v as T) ? (v as T) : fallback;
  };
  const score = (key: string): number | undefined => {
    const v = text(key);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || n > 1) problems.push(`${key}: must be a score between 0 and 1`);
    return Number.isFinite(n) ? n : undefined;
  };
  const day = (key: string, plusDays: number): string | undefined => {
    const v = text(key);
    if (v === undefined) return undefined;
    const parsed = /^\d{4}-\d{2}-\d{2}$/.test(v) ? Date.parse(`${v}T00:00:00Z`) : NaN;
    // Date.parse rolls 2030-02-31 over to March 3rd; a day that does not exist is a typo, not a filter.
    const t = Number.isFinite(parsed) && new Date(parsed).toISOString().slice(0, 10) === v ? parsed : NaN;
    if (!Number.isFinite(t)) problems.push(`${key}: must be a date YYYY-MM-DD`);
    return Number.isFinite(t) ? new Date(t + plusDays * 86_400_000).toISOString() : undefined;
  };
  const int = (key: string): number | null => {
    const v = text(key);
    if (v === undefined) return null;
    if (!/^\d{1,9}$/.test(v) || Number(v) < 1) problems.push(`${key}: must be a positive whole number`);
    return /^\d{1,9}$/.test(v) && Number(v) >= 1 ? Number(v) : null;
  };
  const filter = {
    status: oneOf('status', STATUSES, 'pending'), sort: oneOf('sort', SORTS, 'newest'),
    label: text('label'), platform: text('platform'), minScore: score('min'), maxScore: score('max'),
    // "to" names the last day included, so the bound is the next midnight.
    from: day('from', 0), to: day('to', 1),
  };
  if (filter.minScore !== undefined && filter.maxScore !== undefined && filter.minScore > filter.maxScore) problems.push('min: must not exceed max');
  const page = int('page') ?? 1;
  const item = int('item');
  const done = text('done') ?? null;
  if (problems.length) throw new AppError('REVIEW_FILTER_INVALID', problems.join('; '));
  const keep = new URLSearchParams();
  for (const key of ['status', 'label', 'platform', 'min', 'max', 'from', 'to', 'sort']) {
    const v = text(key);
    if (v !== undefined && !(key === 'status' && v === 'pending') && !(key === 'sort' && v === 'newest')) keep.set(key, v);
  }
  return { filter, keep, page, item, done };
}

export function metricsHandler(registry: Registry): express.RequestHandler {
  return async (_req, res, next) => {
    try {
      res.type(registry.contentType).send(await registry.metrics());
    } catch (err) {
      next(err);
    }
  };
}

function itemId(raw: unknown): number {
  if (typeof raw !== 'string' || !/^\d{1,12}$/.test(raw)) throw new AppError('REVIEW_ITEM_NOT_FOUND', `Item ${JSON.stringify(raw ?? '')}.`);
  return Number(raw);
}

function optionalText(value: unknown, field: string): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string') throw new AppError('REVIEW_DECISION_INVALID', `${field} must be text.`);
  return value;
}

function expectOf(value: unknown): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,12}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n)) throw new AppError('REVIEW_DECISION_INVALID', 'expect must be the id of the last decision you saw (0 for none).');
  return n;
}

function withDone(next: unknown, done: string): string {
  const target = safeNext(next);
  // The notice goes into the query, before any #fragment (after it, the server would never see it).
  const hash = target.indexOf('#');
  const [where, fragment] = hash < 0 ? [target, ''] : [target.slice(0, hash), target.slice(hash)];
  return `${where}${where.includes('?') ? '&' : '?'}done=${done}${fragment}`;
}

export function createReviewApp(deps: ReviewAppDeps): express.Express {
  const { config, store, auth, photos } = deps;
  const app = express();
  app.disable('x-powered-by');
  // Behind proxies the client's address (sign-in throttling) and https (the CSRF origin check) come
  // from X-Forwarded-*. Only as many hops as there are proxies are believed: with `true`, the
  // leftmost X-Forwarded-For entry, which a client can write itself, would key the throttle.
  const hops = Math.max(config.trustProxy, config.auth.mode === 'proxy' ? 1 : 0);
  app.set('trust proxy', hops > 0 ? hops : false);
  app.use(helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        'default-src': ["'none'"], 'script-src': ["'self'"], 'style-src': ["'self'"], 'img-src': ["'self'"], 'connect-src': ["'self'"],
        'form-action': ["'self'"], 'frame-ancestors': ["'none'"], 'base-uri': ["'none'"], 'object-src': ["'none'"],
        ...(config.cookieSecure ? { 'upgrade-insecure-requests': [] } : {}),
      },
    },
    // same-origin, not no-referrer: under no-referrer Chromium sends "Origin: null" on our own form
    // posts, which the CSRF origin check must refuse. Other sites still get no referrer at all.
    referrerPolicy: { policy: 'same-origin' },
    strictTransportSecurity: config.cookieSecure,
  }));
  const routes = new RouteTable();
  app.use(routes.methodNotAllowed());
  const route = (method: 'get' | 'post', pathname: string, ...handlers: express.RequestHandler[]) => {
    routes.add(method, pathname);
    app[method](pathname, ...(handlers as [express.RequestHandler]));
  };

  route('get', '/favicon.ico', (_req, res) => void res.status(204).end());
  route('get', '/healthz', (_req, res) => void res.json({ status: 'ok' }));
  route('get', '/readyz', (_req, res) => {
    let db = true;
    try {
      deps.db.prepare('SELECT 1').get();
    } catch {
      db = false;
    }
    // Ready means analysts can work: the queue and decisions live in the database. A Kafka outage
    // only delays new flags and the sending of decisions (they wait in the outbox), so it is
    // reported here and alerted on, but does not take the console out of its Service.
    const kafka = deps.feedReady();
    res.status(db ? 200 : 503).json({ status: db ? 'ready' : 'not_ready', database: db, kafka });
  });
  if (deps.metrics) route('get', '/metrics', metricsHandler(deps.metrics));
  app.use('/static', express.static(STATIC_DIR, { maxAge: '1h', index: false }));

  app.use(express.urlencoded({ extended: false, limit: '32kb' }));
  app.use(express.json({ limit: '32kb' }));
  const httpOptions = { cookieSecure: config.cookieSecure };
  app.use(authMiddleware(auth, httpOptions));
  app.use(loginRouter(auth, httpOptions, routes));
  app.use(requireSession, requireCsrf);
  app.use((_req, res, next) => {
    // Pages carry listing data and the CSRF token: never from a shared cache, never from history after sign-out.
    res.set('Cache-Control', 'no-store');
    next();
  });

  const page = (res: Response, title: string, nav: NavTab, body: ReturnType<typeof renderQueue>, flash: { kind: 'ok' | 'error'; text: string } | null = null) => {
    const session = sessionOf(res);
    res.type('html').send(layout({ title, principal: { username: session.username, role: session.role }, csrf: session.csrf, body, nav, flash }));
  };

  route('get', '/', (req, res) => {
    const session = sessionOf(res);
    const q = parseQueueQuery(req.query as Record<string, unknown>);
    const pageSize = config.pageSize;
    let { items, total } = store.queue(q.filter, { limit: pageSize, offset: (q.page - 1) * pageSize });
    if (items.length === 0 && total > 0) {
      // Past the end (the last item of the last page was just decided): show the last page instead.
      q.page = Math.ceil(total / pageSize);
      ({ items, total } = store.queue(q.filter, { limit: pageSize, offset: (q.page - 1) * pageSize }));
    }
    const wanted = q.item ?? items[0]?.id ?? null;
    const selected = wanted === null ? null : store.item(wanted);
    if (q.item !== null && !selected) throw new AppError('REVIEW_ITEM_NOT_FOUND', `Item ${q.item}.`);
    if (!wantsHtml(req)) return void res.json({ total, page: q.page, pageSize, items, selected });
    const at = selected ? items.findIndex((i) => i.id === selected.id) : -1;
    const link = (id: number | undefined) => (id === undefined ? null : queueLink(q.keep, { page: q.page > 1 ? q.page : null, item: id }));
    const prev = at > 0 ? link(items[at - 1]!.id) : null;
    const next = at >= 0 ? link(items[at + 1]?.id) : link(items[0]?.id);
    // After deciding, the next item takes this one's place; at the end of the list, the previous one.
    const afterDecision = next ?? prev ?? queueLink(q.keep, { page: q.page > 1 ? q.page : null });
    const principal = { username: session.username, role: session.role };
    const model = { principal, undoable: store.undoable(principal), csrf: session.csrf, filter: q.filter, query: q.keep, items, total, page: q.page, pageSize, selected, facets: store.facets(), undoWindowSeconds: config.undoWindowSeconds };
    const nav: NavTab = q.filter.status === 'pending' ? 'queue' : q.filter.status === 'escalated' ? 'escalated' : q.filter.status === 'decided' ? 'decided' : null;
    // Own keys only: ?done=constructor must not print Object's source as the notice.
    const flash = q.done && Object.hasOwn(DONE_TEXT, q.done) ? { kind: 'ok' as const, text: `${DONE_TEXT[q.done]}${q.done === 'undone' ? '' : ' Press u to undo.'}` } : null;
    page(res, 'Queue', nav, renderQueue(model, { prev, next, afterDecision }), flash);
  });

  route('get', '/items/:id/photo', async (req, res, next) => {
    try {
      const size = req.query.size === 'thumb' ? 'thumb' : 'full';
      const photo = await photos.render(itemId(req.params.id), size);
      res.set('Cache-Control', 'private, max-age=3600');
      res.set('Content-Security-Policy', "default-src 'none'");
      res.type(photo.contentType).send(photo.bytes);
    } catch (err) {
      next(err);
    }
  });

  route('post', '/items/:id/decisions', (req, res) => {
    const session = sessionOf(res);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const verdict = VERDICTS.find((v) => v === body.verdict);
    if (!verdict) throw new AppError('REVIEW_DECISION_INVALID', `verdict must be one of ${VERDICTS.join(', ')}.`);
    const decision = store.decide({
      itemId: itemId(req.params.id), verdict, principal: { username: session.username, role: session.role },
      // The confirm form's label choice travels with every button; it only means something for a confirmation.
      label: verdict === 'confirmed' ? optionalText(body.label, 'label') : null,
      correctLabel: verdict === 'rejected' ? optionalText(body.correctLabel, 'correctLabel') : null,
      note: optionalText(body.note, 'note'),
      expectLastDecisionId: expectOf(body.expect),
    });
    if (wantsHtml(req)) return res.redirect(303, withDone(body.next, verdict));
    res.status(201).json({ decision });
  });

  route('post', '/items/:id/reopen', requireLead, (req, res) => {
    const session = sessionOf(res);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const decision = store.reopen({ itemId: itemId(req.params.id), principal: { username: session.username, role: session.role }, note: optionalText(body.note, 'note'), expectLastDecisionId: expectOf(body.expect) });
    if (wantsHtml(req)) return res.redirect(303, withDone(body.next, 'reopened'));
    res.status(201).json({ decision });
  });

  route('post', '/undo', (req, res) => {
    const session = sessionOf(res);
    const decision = store.undo({ username: session.username, role: session.role }, expectOf((req.body as Record<string, unknown> | undefined)?.expect) ?? null);
    // Back to the item that was undone, so the analyst can decide it again at once.
    if (wantsHtml(req)) return res.redirect(303, `/?item=${decision.itemId}&done=undone`);
    res.status(201).json({ decision });
  });

  route('get', '/stats', (req, res) => {
    const days = req.query.days === undefined ? undefined : Number(req.query.days);
    if (days !== undefined && !(Number.isInteger(days) && days >= 1 && days <= MAX_STATS_DAYS)) throw new AppError('REVIEW_FILTER_INVALID', `days: must be a whole number from 1 to ${MAX_STATS_DAYS}`);
    const stats = reviewStats(deps.db, days === undefined ? {} : { days });
    if (!wantsHtml(req)) return void res.json(stats);
    page(res, 'Stats', 'stats', renderStatsPage(stats));
  });

  route('get', '/audit', (req, res) => {
    const analyst = typeof req.query.analyst === 'string' && req.query.analyst ? req.query.analyst.slice(0, 256) : null;
    const entries = store.audit({ ...(analyst ? { analyst } : {}), limit: 500 });
    if (!wantsHtml(req)) return void res.json({ entries });
    page(res, 'Audit log', null, renderAudit(entries, analyst));
  });

  app.use((_req: Request, _res: Response, next: express.NextFunction) => next(new AppError('NOT_FOUND')));
  app.use((err: unknown, _req: Request, _res: Response, next: express.NextFunction) => {
    // A full disk or a locked file is the database's failure, not a bug in the request.
    next(err instanceof Error && err.name === 'SqliteError' ? new AppError('REVIEW_DB_FAILED', undefined, { cause: err }) : err);
  });
  app.use(reviewErrorHandler((err, req) => deps.logger.error({ err, path: req.path }, 'review console request failed')));
  return app;
}
