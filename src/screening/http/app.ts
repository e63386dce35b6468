/**
 * The HTTP API (express 5 + helmet). Routes parse input into ScreenRequests and map results and
 * AppErrors to JSON; all screening logic lives in the screening service.
 */
import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import helmet from 'helmet';
import multer from 'multer';
import type { Logger } from 'pino';
import type { AppConfig } from '../../config.js';
import { isAppError, AppError, type ErrorCode } from '../../errors.js';
import type { Metrics } from '../metrics.js';
import type { ScreeningService, ScreenRequest, ScreenResult } from '../service.js';
import { toAppError } from '../../net/http-errors.js';
import { Admission } from './admission.js';
import { openApiDocument } from './openapi.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

declare module 'express-serve-static-core' {
  interface Request { id: string; started: number; routeName?: string }
}

export interface AppDeps {
  service: ScreeningService;
  config: Readonly<AppConfig>;
  metrics: Metrics;
  logger: Logger;
  /** Other components readiness depends on (the Kafka pipeline, when on). */
  readiness?: () => Record<string, { ready: boolean; state: string }>;
  /** The in-flight body budget; one per server, shared by every route that reads a body. */
  admission?: Admission;
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/** Compares digests, so neither the key's content nor its length leaks through timing. */
function authenticator(keys: readonly string[]) {
  const digests = keys.map(digest);
  return (req: Request, _res: Response, next: NextFunction) => {
    if (digests.length === 0) return next();
    const header = req.get('authorization');
    const presented = header?.startsWith('Bearer ') ? header.slice(7).trim() : req.get('x-api-key');
    if (presented && digests.some((d) => timingSafeEqual(d, digest(presented)))) return next();
    next(new AppError('UNAUTHORIZED'));
  };
}

function decodeBase64(value: unknown, field: string): Buffer {
  if (typeof value !== 'string' || !BASE64.test(value.replace(/\s/g, ''))) {
    throw new AppError('REQUEST_INVALID_JSON', `"${field}" must be a base64 string.`);
  }
  return Buffer.from(value, 'base64');
}

/** One JSON item ({url} or {imageBase64}) → the input part of a ScreenRequest. */
function jsonItem(body: unknown, where: string): Pick<ScreenRequest, 'url' | 'bytes'> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new AppError('REQUEST_INVALID_JSON', `${where} must be an object.`);
  const { url, imageBase64, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length) throw new AppError('REQUEST_INVALID_JSON', `${where} has unknown field(s): ${unknown.join(', ')}.`);
  if ((url === undefined) === (imageBase64 === undefined)) throw new AppError('REQUEST_MISSING_IMAGE', `${where} needs exactly one of "url" or "imageBase64".`);
  if (url !== undefined) {
    if (typeof url !== 'string' || url.length > 4096) throw new AppError('URL_INVALID', `${where}.url must be a string of at most 4096 characters.`);
    return { url };
  }
  return { bytes: decodeBase64(imageBase64, `${where}.imageBase64`) };
}

/** PUT /admin/shadow's body → modelDir and an optional new sample rate. */
function shadowRequest(body: unknown): { modelDir: string; sampleRate?: number } {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new AppError('REQUEST_INVALID_JSON', 'Body must be {"modelDir": …, "sampleRate"?: …}.');
  const { modelDir, sampleRate, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length) throw new AppError('REQUEST_INVALID_JSON', `Unknown field(s): ${unknown.join(', ')}.`);
  if (typeof modelDir !== 'string' || modelDir.length === 0 || modelDir.length > 4096) throw new AppError('REQUEST_INVALID_JSON', '"modelDir" must be a non-empty path.');
  if (sampleRate !== undefined && (typeof sampleRate !== 'number' || !(sampleRate >= 0 && sampleRate <= 1))) throw new AppError('REQUEST_INVALID_JSON', '"sampleRate" must be a number from 0 to 1.');
  return { modelDir, ...(sampleRate === undefined ? {} : { sampleRate }) };
}

/** busboy's own Content-Type parser, so the check below agrees with the parser that reads the body. */
const { parseContentType } = createRequire(import.meta.url)('busboy/lib/utils.js') as { parseContentType: (value: string) => { params: Record<string, string> } | undefined };

/**
 * A multipart Content-Type that busboy cannot parse, or without a boundary, is refused before the
 * body is read. Otherwise multer skips a type it cannot parse and the request looks imageless.
 */
function multipartTypeProblem(req: Request): string | null {
  const type = req.get('content-type') ?? '';
  const boundary = parseContentType(type)?.params.boundary;
  if (!boundary || !req.is('multipart/form-data')) return `Content-Type "${type.slice(0, 200)}" has no valid boundary parameter.`;
  return null;
}

export function createApp({ service, config, metrics, logger, readiness, admission = new Admission(config.server) }: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.server.trustProxy);
  app.use(helmet());
  app.use((req, res, next) => {
    const given = req.get('x-request-id');
    req.id = given && REQUEST_ID.test(given) ? given : randomUUID();
    req.started = performance.now();
    res.setHeader('x-request-id', req.id);
    res.on('finish', () => {
      const seconds = (performance.now() - req.started) / 1000;
      const route = req.routeName ?? 'unmatched';
      metrics.observeHttp({ route, method: req.method, status: res.statusCode, seconds });
      logger.info({ requestId: req.id, method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1000) }, 'request');
    });
    next();
  });
  const route = (name: string) => (req: Request, _res: Response, next: NextFunction) => {
    req.routeName = name;
    next();
  };

  const auth = authenticator(config.auth.apiKeys);
  metrics.attachAdmission(admission);
  const bodyLimit = config.server.bodyLimitBytes;
  // The app reads files only; text fields are accepted (HTML forms send them) but kept small and flat.
  const limits = {
    fileSize: config.images.maxBytes, files: config.server.batchLimit, fields: 20, parts: config.server.batchLimit + 20, fieldSize: 64 * 1024,
    fieldNameSize: 200, fieldNestingDepth: 4, fieldArrayIndexLimit: 100,
  };
  const upload = multer({
    storage: multer.memoryStorage(),
    limits,
    // multer caps each file, not the body: a chunked body has no Content-Length for admission to
    // check, so its bytes are counted here against the same body limit as every other body.
    streamHandler: (req: Request, busboy: NodeJS.WritableStream & { destroy(err: Error): void }) => {
      if (req.headers['content-length'] === undefined) {
        let seen = 0;
        req.on('data', (chunk: Buffer) => {
          seen += chunk.length;
          if (seen > bodyLimit) busboy.destroy(new AppError('REQUEST_BODY_TOO_LARGE', `The body exceeds ${bodyLimit} bytes.`));
        });
      }
      req.pipe(busboy);
    },
  } as multer.Options);
  const raw = express.raw({ type: 'image/*', limit: config.server.bodyLimitBytes });
  const json = express.json({ limit: config.server.bodyLimitBytes, strict: true });

  // Errors the screening service raised are already counted by it (its 'failed' event).
  const countedByService = new WeakSet<object>();
  const screen = (req: Request, input: Pick<ScreenRequest, 'url' | 'bytes'>, index?: number): Promise<ScreenResult> =>
    service.screen({ ...input, source: 'http', lane: 'interactive', requestId: index === undefined ? req.id : `${req.id}/${index}` })
      .catch((err: unknown) => {
        if (err && typeof err === 'object') countedByService.add(err);
        throw err;
      });

  app.get('/healthz', route('/healthz'), (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', route('/readyz'), (_req, res) => {
    const components = readiness?.() ?? {};
    const ready = service.ready() && Object.values(components).every((c) => c.ready);
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'not-ready',
      models: service.ready() ? service.models().map((m) => `${m.name}@${m.version}`) : [],
      ...(Object.keys(components).length ? { components: Object.fromEntries(Object.entries(components).map(([k, v]) => [k, v.state])) } : {}),
    });
  });
  app.get('/metrics', route('/metrics'), async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  const openapi = openApiDocument(config);
  const cascade = config.cascade.stages.length
    ? { mode: config.cascade.mode, stages: config.cascade.stages.map((st) => ({ model: st.model, escalate: st.escalate ?? null })) }
    : null;
  const modelsBody = () => ({ models: service.models(), cascade });
  app.get('/openapi.json', route('/openapi.json'), (_req, res) => {
    res.json(openapi);
  });
  app.get('/v1/models', route('/v1/models'), auth, (_req, res) => {
    res.json(modelsBody());
  });
  app.post('/admin/reload', route('/admin/reload'), auth, async (_req, res) => {
    try {
      await service.reload();
    } catch (cause) {
      // One code for operators to alert on; the cause (e.g. MODEL_CHECKSUM_MISMATCH) is in the message.
      const detail = isAppError(cause) ? `${cause.code}: ${cause.message}` : (cause as Error).message;
      throw new AppError('RELOAD_FAILED', detail, { cause });
    }
    res.json(modelsBody());
  });
  app.get('/admin/shadow', route('/admin/shadow'), auth, (_req, res) => {
    res.json(service.shadowStatus());
  });
  app.delete('/admin/shadow', route('/admin/shadow'), auth, async (_req, res) => {
    res.json(await service.clearShadow());
  });

  type Parsers = Partial<Record<'multipart' | 'image' | 'json', { parse: RequestHandler; handle: (req: Request) => Promise<unknown> }>>;
  /**
   * Picks the body parser by Content-Type, runs it, and answers with the handler's JSON.
   * `unsupported` lists the route's own types: the catalogue message cannot, since routes differ.
   */
  const byContentType = (parsers: Parsers, unsupported: string): RequestHandler => (req, res, next) => {
    const type = req.get('content-type') ?? '';
    const kind = type.startsWith('multipart/form-data') ? 'multipart' : type.startsWith('image/') ? 'image' : type.startsWith('application/json') ? 'json' : undefined;
    const parser = kind && parsers[kind];
    if (!parser) return next(new AppError('REQUEST_UNSUPPORTED_MEDIA_TYPE', type ? `Got ${type.split(';')[0]}. ${unsupported}` : `No Content-Type header. ${unsupported}`));
    const problem = kind === 'multipart' ? multipartTypeProblem(req) : null;
    if (problem) return next(new AppError('REQUEST_MALFORMED_MULTIPART', problem));
    // Admission before the parser: a refused body is never buffered (Node discards its bytes).
    const ticket = admission.admit(req);
    if (ticket instanceof AppError) return next(ticket);
    // While the body is being read, a closed connection means it will never be handled; a parser
    // that fails to call back then must not keep the reservation for good.
    let handling = false;
    const onSocketClose = () => {
      if (!handling) release();
    };
    const release = () => {
      req.socket.off('close', onSocketClose);
      ticket.release();
    };
    req.socket.once('close', onSocketClose);
    parser.parse(req, res, (err?: unknown) => {
      if (err) {
        release();
        return next(err);
      }
      handling = true;
      // Through a promise, so a handler's synchronous throw also reaches the error handler. The
      // body is held until the handler settles, whether or not the client is still there.
      Promise.resolve().then(() => parser.handle(req)).finally(release).then((body) => res.json(body), next);
    });
  };

  app.put('/admin/shadow', route('/admin/shadow'), auth, byContentType({
    json: {
      parse: json,
      handle: async (req) => {
        const { modelDir, sampleRate } = shadowRequest(req.body);
        try {
          return await service.setShadow(modelDir, { sampleRate });
        } catch (cause) {
          if (isAppError(cause, 'SHADOW_DIR_FORBIDDEN') || isAppError(cause, 'SHUTTING_DOWN')) throw cause;
          // The operator's directory is at fault, not the service: 422, with the engine's code as the cause.
          const detail = isAppError(cause) ? `${cause.code}: ${cause.message}` : (cause as Error).message;
          throw new AppError('SHADOW_LOAD_FAILED', detail, { cause });
        }
      },
    },
  }, 'Use application/json.'));

  app.post('/v1/screen', route('/v1/screen'), auth, byContentType({
    multipart: {
      parse: upload.single('image'),
      handle: async (req) => {
        if (!req.file) throw new AppError('REQUEST_MISSING_IMAGE');
        return screen(req, { bytes: req.file.buffer });
      },
    },
    image: { parse: raw, handle: (req) => screen(req, { bytes: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0) }) },
    json: { parse: json, handle: (req) => screen(req, jsonItem(req.body, 'body')) },
  }, 'Use multipart/form-data, image/*, or application/json.'));

  const screenBatch = async (req: Request, inputs: Array<Pick<ScreenRequest, 'url' | 'bytes'>>) => {
    if (inputs.length === 0) throw new AppError('BATCH_EMPTY');
    if (inputs.length > config.server.batchLimit) throw new AppError('BATCH_TOO_LARGE', `${inputs.length} items, limit ${config.server.batchLimit}.`);
    // Items succeed or fail on their own: one bad photo must not sink the other fifteen.
    const results = await Promise.all(inputs.map((input, i) => screen(req, input, i).then(
      (result) => ({ index: i, ok: true as const, result }),
      (err: unknown) => {
        const e = toAppError(err);
        return { index: i, ok: false as const, error: { code: e.code, message: e.message, retriable: e.retriable } };
      },
    )));
    return { requestId: req.id, flagged: results.some((r) => r.ok && r.result.flagged), results };
  };

  app.post('/v1/screen/batch', route('/v1/screen/batch'), auth, byContentType({
    multipart: {
      parse: upload.array('images', config.server.batchLimit),
      handle: (req) => screenBatch(req, ((req.files as Express.Multer.File[] | undefined) ?? []).map((f) => ({ bytes: f.buffer }))),
    },
    json: {
      parse: json,
      handle: (req) => {
        const items = (req.body as { items?: unknown })?.items;
        if (!Array.isArray(items)) throw new AppError('REQUEST_INVALID_JSON', 'Body must be {"items": [{"url": …} | {"imageBase64": …}, …]}.');
        if (items.length > config.server.batchLimit) throw new AppError('BATCH_TOO_LARGE', `${items.length} items, limit ${config.server.batchLimit}.`);
        return screenBatch(req, items.map((item, i) => jsonItem(item, `items[${i}]`)));
      },
    },
  }, 'Use multipart/form-data (field "images") or application/json.'));

  // A known path with another method is 405 + Allow (RFC 9110 §15.5.6); only unknown paths are 404.
  // Express matches paths case-insensitively and with an optional trailing slash; so does this.
  const allowed = new Map<string, Set<string>>();
  for (const layer of (app as unknown as { router: { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> } }).router.stack) {
    if (!layer.route) continue;
    const methods = allowed.get(layer.route.path.toLowerCase()) ?? new Set<string>();
    for (const m of Object.keys(layer.route.methods)) methods.add(m.toUpperCase());
    if (methods.has('GET')) methods.add('HEAD');
    allowed.set(layer.route.path.toLowerCase(), methods);
  }
  app.use(route('unmatched'), (req, res, next) => {
    const methods = allowed.get(req.path.toLowerCase().replace(/(.)\/$/, '$1'));
    if (!methods) return next(new AppError('NOT_FOUND'));
    res.setHeader('allow', [...methods].sort().join(', '));
    next(new AppError('METHOD_NOT_ALLOWED', `${req.method} ${req.path}: use ${[...methods].sort().join(', ')}.`));
  });
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const error = toAppError(err);
    if (error.code === 'INTERNAL') logger.error({ requestId: req.id, err }, 'unhandled error');
    if (!(err && typeof err === 'object' && countedByService.has(err))) metrics.countError(error.code, 'http');
    if (error.code === 'QUEUE_FULL') res.setHeader('retry-after', String((error as AppError & { retryAfterSeconds?: number }).retryAfterSeconds ?? 1));
    if (error.code === 'SHUTTING_DOWN') res.setHeader('retry-after', '5');
    // RFC 9110 §11.6.1: a 401 names the scheme that would succeed.
    if (error.code === 'UNAUTHORIZED') res.setHeader('www-authenticate', 'Bearer realm="wildlife-screening"');
    if (res.headersSent) return;
    // A wrapping code (RELOAD_FAILED, SHADOW_LOAD_FAILED) names the code it wraps, so clients need not parse the message.
    const cause = isAppError(error.cause) ? { cause: error.cause.code } : {};
    res.status(error.status).json({ error: { code: error.code, message: error.message, requestId: req.id, ...cause } });
  });
  return app;
}
