/**
 * SSRF-guarded image fetcher for `{"url": ...}` requests and Kafka messages carrying image URLs.
 *
 * The URL comes from an untrusted client, so every hop is vetted before a socket is opened: the
 * scheme, the absence of credentials, and every address the host resolves to. The connection is
 * then pinned to the vetted address, so a second (rebinding) DNS answer can never redirect it.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import http from 'node:http';
import https from 'node:https';
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { AppError, type ErrorCode } from '../errors.js';
import { Allowlist, isForbiddenAddress, normaliseHost } from './net-guard.js';

export { isForbiddenAddress } from './net-guard.js';

export interface FetcherOptions {
  /** Whole fetch, including DNS, redirects and the body. */
  timeoutMs: number;
  /** Body limit; a larger declared Content-Length is refused before reading. */
  maxBytes: number;
  maxRedirects: number;
  userAgent?: string;
  /** Hosts/addresses exempt from the private-address rule, for tests and in-cluster image stores, e.g. ['127.0.0.1', '::1', '10.1.2.0/24', 'images.internal']. Default []. */
  allowlist?: string[];
  /** DNS lookup, injectable for tests; default node:dns/promises lookup with {all:true, verbatim:true}. */
  resolve?: (hostname: string) => Promise<Array<{ address: string; family: 4 | 6 }>>;
}

export interface FetchedImage {
  bytes: Buffer;
  /** Sniffed from the bytes; the server's header is only reported, never trusted. */
  contentType: string;
  declaredContentType: string | null;
  finalUrl: string;
  redirects: number;
}

export interface Fetcher {
  fetchImage(url: string, options?: { signal?: AbortSignal }): Promise<FetchedImage>;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const DEFAULT_USER_AGENT = 'wildlife-trade-screening-fetcher/0.1';

export function createFetcher(options: FetcherOptions): Fetcher {
  const { timeoutMs, maxBytes, maxRedirects } = options;
  const allowlist = new Allowlist(options.allowlist ?? []);
  const resolve = options.resolve ?? defaultResolve;
  const headers = {
    'user-agent': options.userAgent ?? DEFAULT_USER_AGENT,
    accept: 'image/*',
    // Compressed bodies would defeat both the byte limit and the magic-byte sniffing.
    'accept-encoding': 'identity',
  };

  async function vetHost(url: URL, signal: AbortSignal): Promise<string> {
    const host = normaliseHost(url.hostname);
    const candidates = isIP(host) ? [host] : await resolveHost(host, signal);
    const exempt = allowlist.allowsHost(host);
    // Every answer must pass, not just the one we would pick: an attacker controls the order.
    // The details name the host only, so refusals do not leak internal DNS answers to clients.
    if (!exempt && candidates.some((ip) => isForbiddenAddress(ip) && !allowlist.allowsAddress(ip))) {
      throw new AppError('URL_HOST_FORBIDDEN', `Host: ${url.hostname}`);
    }
    return candidates[0]!;
  }

  async function resolveHost(host: string, signal: AbortSignal): Promise<string[]> {
    let answers: Array<{ address: string }>;
    try {
      answers = await untilAborted(resolve(host), signal);
    } catch (err) {
      if (signal.aborted && err === signal.reason) throw err;
      throw new AppError('FETCH_DNS_FAILED', `Host: ${host}`, { cause: err });
    }
    const addresses = Array.isArray(answers) ? answers.map((a) => a?.address) : [];
    if (addresses.length === 0) throw new AppError('FETCH_DNS_FAILED', `Host: ${host} (no addresses)`);
    // A resolver returning something that is not an IP cannot be pinned or vetted.
    if (addresses.some((a) => typeof a !== 'string' || !isIP(a.replace(/%.*$/, '')))) {
      throw new AppError('FETCH_DNS_FAILED', `Host: ${host} (malformed answer)`);
    }
    return addresses;
  }

  async function fetchImage(input: string, { signal }: { signal?: AbortSignal } = {}): Promise<FetchedImage> {
    let url = parseTarget(input);
    signal?.throwIfAborted();
    const controller = new AbortController();
    const onCallerAbort = () => controller.abort(signal!.reason);
    signal?.addEventListener('abort', onCallerAbort, { once: true });
    const timer = setTimeout(
      () => controller.abort(new AppError('FETCH_TIMEOUT', `No complete response within ${timeoutMs} ms.`)),
      timeoutMs,
    );
    try {
      for (let redirects = 0; ; redirects++) {
        const address = await vetHost(url, controller.signal);
        const { req, res } = await openResponse(url, address, headers, controller.signal);
        try {
          const status = res.statusCode ?? 0;
          const location = res.headers.location;
          if (REDIRECT_STATUSES.has(status) && location) {
            if (redirects >= maxRedirects) {
              throw new AppError('FETCH_TOO_MANY_REDIRECTS', `More than ${maxRedirects} redirects.`);
            }
            url = parseTarget(location, url);
            continue;
          }
          if (status < 200 || status > 299) {
            const err = new AppError('FETCH_HTTP_STATUS', `HTTP ${status} from ${url.host}.`);
            throw status >= 500 || status === 429 ? withRetriable(err, true) : err;
          }
          const declared = res.headers['content-length'];
          if (declared !== undefined && Number(declared) > maxBytes) {
            throw new AppError('FETCH_TOO_LARGE', `Content-Length ${declared} exceeds ${maxBytes} bytes.`);
          }
          const bytes = await readBody(res, maxBytes, controller.signal);
          const declaredContentType = res.headers['content-type'] ?? null;
          const contentType = bytes.length > 0 ? sniffImageType(bytes) : null;
          if (!contentType) {
            const what = bytes.length === 0 ? 'The body was empty' : 'No image signature in the body';
            throw new AppError('FETCH_NOT_IMAGE', `${what} (declared Content-Type: ${declaredContentType ?? 'none'}).`);
          }
          return { bytes, contentType, declaredContentType, finalUrl: url.href, redirects };
        } finally {
          // Redirect and error bodies are never read; dropping the socket is cheaper than draining.
          req.destroy();
        }
      }
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onCallerAbort);
    }
  }

  return { fetchImage };
}

/** Parse and vet the scheme/credentials of a URL (or a redirect Location relative to `base`). */
function parseTarget(input: string, base?: URL): URL {
  let url: URL;
  try {
    if (typeof input !== 'string') throw new TypeError('URL is not a string');
    url = new URL(input, base);
  } catch (err) {
    const where = base ? ` (redirect Location from ${base.host})` : '';
    throw new AppError('URL_INVALID', `Could not parse the URL${where}.`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AppError('URL_SCHEME_NOT_ALLOWED', `Scheme: ${url.protocol}`);
  }
  // Credentials would be forwarded to whatever host the URL names, and their presence usually
  // means someone is playing tricks with the authority ("http://trusted@evil/").
  if (url.username || url.password) {
    throw new AppError('URL_INVALID', 'URLs with credentials are not accepted.');
  }
  return url;
}

function openResponse(
  url: URL,
  address: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<{ req: ClientRequest; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const family = isIP(address.replace(/%.*$/, '')) === 6 ? 6 : 4;
    // Node asks for either one address or, with autoSelectFamily, a list; both get the vetted one.
    const pinned: LookupFunction = (_host, opts, cb) => {
      if (opts.all) cb(null, [{ address, family }]);
      else cb(null, address, family);
    };
    const request = url.protocol === 'https:' ? https.request : http.request;
    // agent:false gives a one-off socket with Connection: close, so nothing lingers in a pool.
    const req = request(url, { method: 'GET', headers, agent: false, lookup: pinned });
    const onAbort = () => req.destroy(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      reject(err === signal.reason ? err : networkError(err));
    });
    req.on('response', (res) => {
      signal.removeEventListener('abort', onAbort);
      resolve({ req, res });
    });
    req.end();
  });
}

function readBody(res: IncomingMessage, maxBytes: number, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let settled = false;
    const finish = (err: unknown, body?: Buffer) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      if (err === undefined) return resolve(body!);
      res.destroy();
      reject(err);
    };
    const onAbort = () => finish(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    res.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > maxBytes) return finish(new AppError('FETCH_TOO_LARGE', `Body exceeds ${maxBytes} bytes.`));
      chunks.push(chunk);
    });
    res.on('end', () => finish(undefined, Buffer.concat(chunks, total)));
    res.on('error', (err) => finish(networkError(err)));
    res.on('close', () => {
      if (!res.complete) finish(new AppError('FETCH_FAILED', 'The connection closed before the body was complete.'));
    });
  });
}

function networkError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const text = typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
  const kind: ErrorCode = code === 'ETIMEDOUT' ? 'FETCH_TIMEOUT' : 'FETCH_FAILED';
  return new AppError(kind, `(${text})`, { cause: err });
}

/** The catalogue fixes retriability per code, but whether an HTTP error is worth retrying depends on the status. */
function withRetriable(err: AppError, retriable: boolean): AppError {
  Object.defineProperty(err, 'retriable', { value: retriable, enumerable: true });
  return err;
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  // getaddrinfo cannot be cancelled; the lookup keeps running but its answer is ignored.
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

async function defaultResolve(hostname: string): Promise<Array<{ address: string; family: 4 | 6 }>> {
  const answers = await dnsLookup(hostname, { all: true, verbatim: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
}

const ascii = (bytes: Uint8Array, start: number, text: string) =>
  bytes.length >= start + text.length && [...text].every((ch, i) => bytes[start + i] === ch.charCodeAt(0));

const startsWith = (bytes: Uint8Array, sig: readonly number[]) =>
  bytes.length >= sig.length && sig.every((b, i) => bytes[i] === b);

const HEIC_BRANDS = new Set(['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'hevm', 'hevs']);

/**
 * Image type from magic bytes. SVG is deliberately not recognised: it is markup (scripts,
 * external references) rather than pixels, the models cannot use it, and accepting text here
 * would blur the line this check exists to draw against HTML error pages.
 */
export function sniffImageType(bytes: Uint8Array): string | null {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'image/jpeg';
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'image/png';
  if (ascii(bytes, 0, 'GIF87a') || ascii(bytes, 0, 'GIF89a')) return 'image/gif';
  if (ascii(bytes, 0, 'RIFF') && ascii(bytes, 8, 'WEBP')) return 'image/webp';
  if (startsWith(bytes, [0x49, 0x49, 0x2a, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2a])) return 'image/tiff';
  if (ascii(bytes, 4, 'ftyp')) return isobmffImageType(bytes);
  // "BM" alone is too weak (plain text can start with it); also require a known DIB header size.
  if (ascii(bytes, 0, 'BM') && bytes.length >= 26 && [12, 40, 52, 56, 64, 108, 124].includes(readU32LE(bytes, 14))) {
    return 'image/bmp';
  }
  return null;
}

// AVIF and HEIC share the ISOBMFF container; the brands in the ftyp box tell them apart.
function isobmffImageType(bytes: Uint8Array): string | null {
  const boxSize = readU32BE(bytes, 0);
  const end = Math.min(bytes.length, boxSize >= 16 ? boxSize : 0);
  const brands: string[] = [];
  for (let at = 8; at + 4 <= end; at += at === 8 ? 8 : 4) {
    brands.push(String.fromCharCode(...bytes.subarray(at, at + 4)));
  }
  if (brands.some((b) => b === 'avif' || b === 'avis')) return 'image/avif';
  if (brands.some((b) => HEIC_BRANDS.has(b))) return 'image/heic';
  if (brands.some((b) => b === 'mif1' || b === 'msf1')) return 'image/heif';
  return null;
}

function readU32BE(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

function readU32LE(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}
