import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { AppError, type ErrorCode } from '../../src/errors.js';
import { createFetcher, isForbiddenAddress, sniffImageType, type FetcherOptions } from '../../src/net/fetcher.js';

/*
 * Tripwire: every client socket created in this process is recorded, and any whose destination
 * is not loopback (or a test name whose injected resolver only answers 127.0.0.1) is destroyed
 * before it connects. So a regression in the guard fails the "no connection" assertions below
 * without ever sending a packet off this machine.
 */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'images.test', 'images.internal']);
const connectAttempts: string[] = [];
dc.subscribe('net.client.socket', (message) => {
  const socket = (message as { socket: Socket }).socket;
  const patchable = socket as unknown as { connect: (...args: unknown[]) => Socket };
  const connect = patchable.connect;
  patchable.connect = function (this: Socket, ...args: unknown[]) {
    const first = Array.isArray(args[0]) ? (args[0][0] as unknown) : args[0];
    const host = String((first as { host?: unknown } | undefined)?.host);
    connectAttempts.push(host);
    if (LOOPBACK_HOSTS.has(host)) return connect.apply(this, args);
    setImmediate(() => this.destroy(new Error(`test tripwire blocked a connection to ${host}`)));
    return this;
  };
});

const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]), Buffer.from('JFIF\0'), Buffer.alloc(64, 7)]);
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, 1)]);

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** One loopback server shared by the tests; each test swaps in its own handler. */
class TestServer {
  handler: Handler = (_req, res) => res.end();
  requests: Array<{ url: string; host: string | undefined }> = [];
  connections = 0;
  private readonly open = new Set<Socket>();
  private readonly server = http.createServer((req, res) => {
    this.requests.push({ url: req.url ?? '', host: req.headers.host });
    this.handler(req, res);
  });

  async listen(): Promise<this> {
    this.server.on('connection', (socket) => {
      this.connections++;
      this.open.add(socket);
      socket.on('close', () => this.open.delete(socket));
    });
    await new Promise<void>((done) => this.server.listen(0, '127.0.0.1', done));
    return this;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  url(path = '/'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** The fetcher must hang up by itself: the server never closes a connection on its own. */
  async waitUntilClientHungUp(): Promise<void> {
    const deadline = Date.now() + 1000;
    while (this.open.size > 0) {
      if (Date.now() > deadline) assert.fail(`${this.open.size} connection(s) still open after the fetch settled`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((done) => this.server.close(() => done()));
  }
}

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<AppError> {
  const err = await promise.then(
    () => assert.fail(`expected ${code}, but the fetch succeeded`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof AppError, `expected a AppError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (message) assert.match(err.message, message);
  return err;
}

const BASE: FetcherOptions = { timeoutMs: 2000, maxBytes: 64 * 1024, maxRedirects: 3 };
const local = (extra: Partial<FetcherOptions> = {}) => createFetcher({ ...BASE, allowlist: ['127.0.0.1'], ...extra });
const resolverTo = (...addresses: string[]) => async () =>
  addresses.map((address) => ({ address, family: (address.includes(':') ? 6 : 4) as 4 | 6 }));

let server: TestServer;
before(async () => {
  server = await new TestServer().listen();
});
after(() => server.close());
beforeEach(() => {
  server.requests.length = 0;
  server.connections = 0;
  connectAttempts.length = 0;
  server.handler = (_req, res) => res.end();
});

// Suites carry a timeout so that a fetch which never settles fails instead of stalling the run.
const serve = (body: Buffer | string, headers: Record<string, string> = {}, status = 200): Handler =>
  (_req, res) => {
    res.writeHead(status, headers);
    res.end(body);
  };

describe('fetching from an allowlisted local server', { timeout: 5000 }, () => {
  test('returns JPEG bytes with the sniffed and the declared content type', async () => {
    server.handler = serve(JPEG, { 'content-type': 'image/jpeg' });
    const image = await local().fetchImage(server.url('/cat.jpg'));
    assert.deepEqual(image.bytes, JPEG);
    assert.equal(image.contentType, 'image/jpeg');
    assert.equal(image.declaredContentType, 'image/jpeg');
    assert.equal(image.finalUrl, server.url('/cat.jpg'));
    assert.equal(image.redirects, 0);
    await server.waitUntilClientHungUp();
  });

  test('trusts the PNG signature over a misleading Content-Type header', async () => {
    server.handler = serve(PNG, { 'content-type': 'application/octet-stream' });
    const image = await local().fetchImage(server.url('/x'));
    assert.equal(image.contentType, 'image/png');
    assert.equal(image.declaredContentType, 'application/octet-stream');
  });

  test('connects to the vetted address while sending the original host name, resolving it only once', async () => {
    server.handler = serve(JPEG);
    const asked: string[] = [];
    const fetcher = local({ resolve: async (h) => (asked.push(h), [{ address: '127.0.0.1', family: 4 }]) });
    await fetcher.fetchImage(`http://images.test:${server.port}/a.jpg`);
    assert.deepEqual(asked, ['images.test']);
    assert.equal(server.requests[0]?.host, `images.test:${server.port}`);
  });

  test('exempts a host-name allowlist entry and a CIDR entry', async () => {
    server.handler = serve(JPEG);
    const byName = createFetcher({ ...BASE, allowlist: ['images.internal'], resolve: resolverTo('127.0.0.1') });
    await byName.fetchImage(`http://images.internal:${server.port}/`);
    const byRange = createFetcher({ ...BASE, allowlist: ['127.0.0.0/8'] });
    await byRange.fetchImage(server.url());
    assert.equal(server.requests.length, 2);
  });

  test('follows a relative redirect and reports the final URL', async () => {
    server.handler = (req, res) => {
      if (req.url === '/old') res.writeHead(302, { location: '/new.png' }).end();
      else serve(PNG)(req, res);
    };
    const image = await local().fetchImage(server.url('/old'));
    assert.equal(image.finalUrl, server.url('/new.png'));
    assert.equal(image.redirects, 1);
    await server.waitUntilClientHungUp();
  });

  test('leaves no timer behind after a successful fetch', async () => {
    server.handler = serve(JPEG);
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    await local({ timeoutMs: 60_000 }).fetchImage(server.url());
    assert.equal(timers(), before);
  });
});

describe('refusing forbidden addresses before connecting', { timeout: 5000 }, () => {
  const cases: Array<[string, (port: number) => string, FetcherOptions['resolve']?]> = [
    ['loopback 127.0.0.1', (p) => `http://127.0.0.1:${p}/`],
    ['localhost (via its resolved addresses)', (p) => `http://localhost:${p}/`, resolverTo('127.0.0.1', '::1')],
    ['IPv6 loopback [::1]', (p) => `http://[::1]:${p}/`],
    ['the cloud metadata address 169.254.169.254', () => 'http://169.254.169.254/latest/meta-data/'],
    ['a public-looking name that resolves to the metadata address', () => 'http://metadata.example.com/', resolverTo('169.254.169.254')],
    ['private 10.0.0.1', () => 'http://10.0.0.1/'],
    ['private 192.168.1.1 over https', () => 'https://192.168.1.1/'],
    ['private 172.16.0.1', () => 'http://172.16.0.1/'],
    ['the unspecified 0.0.0.0', (p) => `http://0.0.0.0:${p}/`],
    ['decimal 2130706433', (p) => `http://2130706433:${p}/`],
    ['octal 0177.0.0.1', (p) => `http://0177.0.0.1:${p}/`],
    ['hex 0x7f000001', (p) => `http://0x7f000001:${p}/`],
    ['IPv4-mapped ::ffff:127.0.0.1', (p) => `http://[::ffff:127.0.0.1]:${p}/`],
    ['unique-local fd00::1', () => 'http://[fd00::1]/'],
    ['link-local fe80::1', () => 'http://[fe80::1]/'],
    ['AWS IPv6 metadata fd00:ec2::254', () => 'http://[fd00:ec2::254]/'],
    ['a name with one public and one private answer', () => 'http://cdn.example.com/', resolverTo('203.0.113.10', '10.1.2.3')],
  ];
  for (const [name, url, resolve] of cases) {
    test(`refuses ${name} without opening a socket`, async () => {
      const fetcher = createFetcher({ ...BASE, ...(resolve ? { resolve } : {}) });
      await rejectsWith(fetcher.fetchImage(url(server.port)), 'URL_HOST_FORBIDDEN');
      assert.deepEqual(connectAttempts, []);
      assert.equal(server.connections, 0);
    });
  }

  test('does not call the resolver for IP literals', async () => {
    let calls = 0;
    const fetcher = createFetcher({ ...BASE, resolve: async () => (calls++, []) });
    await rejectsWith(fetcher.fetchImage('http://10.0.0.1/'), 'URL_HOST_FORBIDDEN');
    assert.equal(calls, 0);
  });

  test('refuses a redirect from an allowlisted server to the metadata address', async () => {
    server.handler = (_req, res) => res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
    await rejectsWith(local().fetchImage(server.url('/img')), 'URL_HOST_FORBIDDEN');
    assert.deepEqual(connectAttempts, ['127.0.0.1']);
  });

  test('refuses a redirect to a name that resolves to a private address', async () => {
    server.handler = (_req, res) => res.writeHead(301, { location: 'http://internal.example.com/x.jpg' }).end();
    await rejectsWith(local({ resolve: resolverTo('10.0.0.5') }).fetchImage(server.url()), 'URL_HOST_FORBIDDEN');
    assert.deepEqual(connectAttempts, ['127.0.0.1']);
  });

  test('refuses a redirect to a file: URL', async () => {
    server.handler = (_req, res) => res.writeHead(307, { location: 'file:///etc/passwd' }).end();
    await rejectsWith(local().fetchImage(server.url()), 'URL_SCHEME_NOT_ALLOWED');
  });
});

describe('rejecting unusable URLs', { timeout: 5000 }, () => {
  for (const url of ['file:///etc/passwd', 'ftp://example.com/a.jpg', 'gopher://example.com/', 'data:image/png;base64,iVBORw0KGgo=', 'javascript:alert(1)', 'ws://example.com/']) {
    test(`refuses the scheme of ${url}`, async () => {
      await rejectsWith(createFetcher(BASE).fetchImage(url), 'URL_SCHEME_NOT_ALLOWED');
      assert.deepEqual(connectAttempts, []);
    });
  }

  for (const url of ['', 'not a url', '/relative/path.jpg', 'http://', 'http://[::1']) {
    test(`refuses the unparseable ${JSON.stringify(url)}`, async () => {
      await rejectsWith(createFetcher(BASE).fetchImage(url), 'URL_INVALID');
    });
  }

  test('refuses URLs carrying credentials, even for an allowlisted host', async () => {
    await rejectsWith(local().fetchImage(`http://user:pass@127.0.0.1:${server.port}/`), 'URL_INVALID', /credentials/);
    await rejectsWith(local().fetchImage(`http://user@127.0.0.1:${server.port}/`), 'URL_INVALID', /credentials/);
    assert.equal(server.connections, 0);
  });
});

describe('failing fetches', { timeout: 5000 }, () => {
  test('stops after maxRedirects and says so', async () => {
    server.handler = (req, res) => res.writeHead(302, { location: `${req.url}x` }).end();
    await rejectsWith(local({ maxRedirects: 3 }).fetchImage(server.url('/r')), 'FETCH_TOO_MANY_REDIRECTS');
    assert.deepEqual(server.requests.map((r) => r.url), ['/r', '/rx', '/rxx', '/rxxx']);
  });

  test('allows exactly maxRedirects redirects', async () => {
    server.handler = (req, res) => (req.url!.length < 5 ? res.writeHead(308, { location: `${req.url}x` }).end() : serve(JPEG)(req, res));
    const image = await local({ maxRedirects: 3 }).fetchImage(server.url('/r'));
    assert.equal(image.redirects, 3);
  });

  test('times out on a server that never responds, and hangs up', async () => {
    server.handler = () => {};
    const started = Date.now();
    const err = await rejectsWith(local({ timeoutMs: 150 }).fetchImage(server.url()), 'FETCH_TIMEOUT');
    assert.ok(Date.now() - started < 1500, 'took too long to time out');
    assert.equal(err.retriable, true);
    await server.waitUntilClientHungUp();
  });

  test('times out when the body trickles in past the deadline', async () => {
    server.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      res.write(JPEG.subarray(0, 4));
    };
    await rejectsWith(local({ timeoutMs: 150 }).fetchImage(server.url()), 'FETCH_TIMEOUT');
    await server.waitUntilClientHungUp();
  });

  test('rejects with the caller\'s abort reason and hangs up', async () => {
    server.handler = () => {};
    const controller = new AbortController();
    const reason = new Error('client went away');
    setTimeout(() => controller.abort(reason), 30);
    await assert.rejects(local().fetchImage(server.url(), { signal: controller.signal }), (e) => e === reason);
    await server.waitUntilClientHungUp();
  });

  test('refuses a declared Content-Length over maxBytes before reading the body', async () => {
    server.handler = (_req, res) => {
      res.writeHead(200, { 'content-length': '1000000', 'content-type': 'image/jpeg' });
      res.write(JPEG);
    };
    await rejectsWith(local({ maxBytes: 1024 }).fetchImage(server.url()), 'FETCH_TOO_LARGE', /1000000/);
    await server.waitUntilClientHungUp();
  });

  test('stops reading a chunked body as soon as it passes maxBytes', async () => {
    let chunksSent = 0;
    server.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      const timer = setInterval(() => {
        if (res.destroyed || chunksSent >= 500) return clearInterval(timer), res.end();
        res.write(chunksSent++ === 0 ? JPEG : Buffer.alloc(1024));
      }, 2);
    };
    await rejectsWith(local({ maxBytes: 4096 }).fetchImage(server.url()), 'FETCH_TOO_LARGE');
    await server.waitUntilClientHungUp();
    assert.ok(chunksSent < 100, `server kept sending (${chunksSent} chunks)`);
  });

  const impostors: Array<[string, Buffer]> = [
    ['an HTML page', Buffer.from('<!doctype html><html><body>Not found</body></html>')],
    ['a PDF', Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj')],
    ['a ZIP archive', Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00])],
    ['an empty body', Buffer.alloc(0)],
  ];
  for (const [name, body] of impostors) {
    test(`refuses ${name} served as image/jpeg`, async () => {
      server.handler = serve(body, { 'content-type': 'image/jpeg' });
      await rejectsWith(local().fetchImage(server.url()), 'FETCH_NOT_IMAGE', /image\/jpeg/);
    });
  }

  test('reports 404 as a non-retriable status error', async () => {
    server.handler = serve('nope', {}, 404);
    const err = await rejectsWith(local().fetchImage(server.url()), 'FETCH_HTTP_STATUS', /404/);
    assert.equal(err.retriable, false);
  });

  for (const status of [503, 429]) {
    test(`reports ${status} as a retriable status error`, async () => {
      server.handler = serve('busy', {}, status);
      const err = await rejectsWith(local().fetchImage(server.url()), 'FETCH_HTTP_STATUS', new RegExp(String(status)));
      assert.equal(err.retriable, true);
      assert.ok(err instanceof AppError);
    });
  }

  test('reports a failing resolver as FETCH_DNS_FAILED, keeping the cause', async () => {
    const cause = Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.example'), { code: 'ENOTFOUND' });
    const err = await rejectsWith(createFetcher({ ...BASE, resolve: () => Promise.reject(cause) }).fetchImage('http://nowhere.example/'), 'FETCH_DNS_FAILED');
    assert.equal(err.cause, cause);
    await rejectsWith(createFetcher({ ...BASE, resolve: resolverTo() }).fetchImage('http://empty.example/'), 'FETCH_DNS_FAILED');
    assert.deepEqual(connectAttempts, []);
  });

  test('reports a refused connection as a retriable FETCH_FAILED', async () => {
    const gone = await new TestServer().listen();
    const url = gone.url();
    await gone.close();
    const err = await rejectsWith(local().fetchImage(url), 'FETCH_FAILED', /ECONNREFUSED/);
    assert.equal(err.retriable, true);
  });
});

test('isForbiddenAddress classifies addresses', () => {
  const table: Array<[string, boolean]> = [
    ['0.0.0.0', true], ['0.255.1.1', true], ['10.0.0.1', true], ['100.64.0.1', true], ['100.127.255.255', true],
    ['127.0.0.1', true], ['127.255.0.9', true], ['169.254.169.254', true], ['172.16.0.1', true], ['172.31.255.255', true],
    ['192.0.0.192', true], ['192.168.1.1', true], ['198.18.0.1', true], ['198.19.255.255', true], ['224.0.0.1', true],
    ['239.255.255.250', true], ['240.0.0.1', true], ['255.255.255.255', true],
    ['8.8.8.8', false], ['1.1.1.1', false], ['100.63.255.255', false], ['100.128.0.0', false], ['172.15.255.255', false],
    ['172.32.0.0', false], ['192.167.255.255', false], ['198.20.0.0', false], ['223.255.255.255', false],
    ['::', true], ['::1', true], ['fc00::1', true], ['fd00::1', true], ['fd00:ec2::254', true], ['fe80::1', true],
    ['fe80::1%eth0', true], ['febf::1', true], ['ff02::1', true], ['::ffff:127.0.0.1', true], ['::ffff:7f00:1', true],
    ['::ffff:169.254.169.254', true], ['::ffff:10.0.0.1', true], ['64:ff9b::10.0.0.1', true], ['64:ff9b::a9fe:a9fe', true],
    ['2002:c0a8:0101::1', true],
    ['::ffff:8.8.8.8', false], ['64:ff9b::8.8.8.8', false], ['2606:4700:4700::1111', false], ['2001:4860:4860::8888', false],
    ['2002:0808:0808::1', false],
    // Not a canonical IP: fail closed rather than guess.
    ['0177.0.0.1', true], ['2130706433', true], ['localhost', true], ['', true],
  ];
  for (const [ip, expected] of table) assert.equal(isForbiddenAddress(ip), expected, ip);
});

test('sniffImageType recognises image signatures and nothing else', () => {
  const ftyp = (...brands: string[]) => {
    const body = Buffer.from(`ftyp${brands[0]}\0\0\0\0${brands.slice(1).join('')}`, 'latin1');
    const size = Buffer.alloc(4);
    size.writeUInt32BE(body.length + 4);
    return Buffer.concat([size, body]);
  };
  const bmp = Buffer.alloc(30);
  bmp.write('BM');
  bmp.writeUInt32LE(40, 14);
  const table: Array<[string, Uint8Array, string | null]> = [
    ['jpeg', JPEG, 'image/jpeg'],
    ['png', PNG, 'image/png'],
    ['gif', Buffer.from('GIF89a\x01\x00\x01\x00', 'latin1'), 'image/gif'],
    ['webp', Buffer.from('RIFF\x24\x00\x00\x00WEBPVP8 ', 'latin1'), 'image/webp'],
    ['tiff LE', Buffer.from([0x49, 0x49, 0x2a, 0x00, 8, 0, 0, 0]), 'image/tiff'],
    ['tiff BE', Buffer.from([0x4d, 0x4d, 0x00, 0x2a, 0, 0, 0, 8]), 'image/tiff'],
    ['avif', ftyp('avif', 'mif1', 'miaf'), 'image/avif'],
    ['avif as compatible brand', ftyp('mif1', 'avif'), 'image/avif'],
    ['heic', ftyp('heic', 'mif1'), 'image/heic'],
    ['bmp', bmp, 'image/bmp'],
    ['mp4 video', ftyp('isom', 'iso2', 'mp41'), null],
    ['text starting with BM', Buffer.from('BMW service records, 2019-2024'), null],
    ['html', Buffer.from('<html></html>'), null],
    ['svg', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'), null],
    ['truncated jpeg', Buffer.from([0xff, 0xd8]), null],
    ['empty', new Uint8Array(0), null],
  ];
  for (const [name, bytes, expected] of table) assert.equal(sniffImageType(bytes), expected, name);
});
