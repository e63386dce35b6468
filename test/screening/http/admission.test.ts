/**
 * Admission control (issue 12, defect 3): a request with a body is admitted or refused from its
 * headers, before any body byte is buffered, against a budget of in-flight body bytes and
 * requests; the budget is released on every path. Real service, real HTTP; uploads that stall
 * half-way hold their reservation the way a slow client over a real network does.
 */
import assert from 'node:assert/strict';
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../../src/screening/server.js';
import { jpegOf } from '../../helpers/images.js';
import { startTestServer } from '../../helpers/server.js';

const BODY_LIMIT = 300_000;
const BUDGET = 600_000;
const MAX_REQUESTS = 3;

interface Answer { status: number; headers: IncomingMessage['headers']; body: any }

/** Sends the headers and `sent` bytes of the body, then waits; `finish()` sends the rest. */
function upload(url: string, opts: { path?: string; type?: string; length?: number | null; sent?: Buffer }) {
  const headers: Record<string, string | number> = { 'content-type': opts.type ?? 'image/jpeg' };
  if (opts.length !== null) headers['content-length'] = opts.length ?? opts.sent?.length ?? 0;
  let req!: ClientRequest;
  const answer = new Promise<Answer>((resolve, reject) => {
    req = request(`${url}${opts.path ?? '/v1/screen'}`, { method: 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
    });
    req.on('error', reject);
  });
  // An aborted upload's answer rejects; only the tests that await it care.
  answer.catch(() => undefined);
  req.flushHeaders();
  if (opts.sent?.length) req.write(opts.sent);
  return { answer, req, finish: (rest: Buffer = Buffer.alloc(0)) => req.end(rest), abort: () => req.destroy() };
}

async function gauges(url: string): Promise<{ bytes: number; requests: number; rejected: Record<string, number> }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  const rejected: Record<string, number> = {};
  for (const m of text.matchAll(/^wildlife_http_admission_rejections_total\{reason="(\w+)"\} (\d+)/gm)) rejected[m[1]!] = Number(m[2]);
  return { bytes: value(/^wildlife_http_inflight_body_bytes (\d+)/m), requests: value(/^wildlife_http_inflight_requests (\d+)/m), rejected };
}

/** The server sees a client's bytes or its going away a little after the client acts: poll, bounded by count, never by time asserted. */
async function until(url: string, want: { bytes: number; requests: number }): Promise<void> {
  let last = await gauges(url);
  for (let i = 0; i < 200 && (last.bytes !== want.bytes || last.requests !== want.requests); i++) {
    await new Promise((r) => setTimeout(r, 25));
    last = await gauges(url);
  }
  assert.deepEqual({ bytes: last.bytes, requests: last.requests }, want);
}

describe('admission control: the body budget is checked before the body is read', () => {
  let server: RunningServer;
  let photo: Buffer;
  before(async () => {
    photo = await jpegOf('spotted_skin', 160, 120, 3);
    server = await startTestServer({ server: { bodyLimitBytes: BODY_LIMIT, maxInFlightBodyBytes: BUDGET, maxInFlightRequests: MAX_REQUESTS, batchLimit: 4 }, images: { maxBytes: 200_000 } });
  });
  after(async () => {
    await server.close();
  });

  test('a Content-Length over the body limit is 413 at once, for every body type, without sending a byte of it', async () => {
    for (const type of ['image/jpeg', 'multipart/form-data; boundary=XyZ', 'application/json']) {
      const u = upload(server.url, { type, length: 10 * 1024 ** 3 });
      const res = await u.answer;
      u.abort();
      assert.equal(res.status, 413, type);
      assert.equal(res.body.error.code, 'REQUEST_BODY_TOO_LARGE', type);
    }
    assert.ok((await gauges(server.url)).rejected.too_large! >= 3);
    await until(server.url, { bytes: 0, requests: 0 });
  });

  test('uploads in flight hold their declared bytes; one more that would exceed the budget is 503 QUEUE_FULL with Retry-After', async () => {
    const slow = [upload(server.url, { length: 250_000, sent: photo.subarray(0, 10) }), upload(server.url, { length: 250_000, sent: photo.subarray(0, 10) })];
    await until(server.url, { bytes: 500_000, requests: 2 });
    const before = (await gauges(server.url)).rejected.body_bytes ?? 0;
    const refused = upload(server.url, { length: 200_000, sent: Buffer.alloc(1000) });
    const res = await refused.answer;
    refused.abort();
    assert.equal(res.status, 503);
    assert.equal(res.body.error.code, 'QUEUE_FULL');
    assert.match(String(res.headers['retry-after']), /^\d+$/);
    assert.equal((await gauges(server.url)).rejected.body_bytes, before + 1);
    // A small photo still fits the budget and is screened.
    const small = upload(server.url, { sent: photo });
    small.finish();
    assert.equal((await small.answer).status, 200);
    for (const s of slow) s.abort();
    await until(server.url, { bytes: 0, requests: 0 });
  });

  test('past maxInFlightRequests the next upload is 503 QUEUE_FULL, whatever its size', async () => {
    const slow = Array.from({ length: MAX_REQUESTS }, () => upload(server.url, { length: 1000, sent: Buffer.alloc(1) }));
    await until(server.url, { bytes: 3000, requests: 3 });
    const refused = upload(server.url, { sent: photo });
    refused.finish();
    const res = await refused.answer;
    assert.equal(res.status, 503);
    assert.equal(res.body.error.code, 'QUEUE_FULL');
    assert.ok((await gauges(server.url)).rejected.requests! >= 1);
    for (const s of slow) s.abort();
    await until(server.url, { bytes: 0, requests: 0 });
  });

  test('a chunked upload reserves the body limit, and is cut off with 413 once it streams past it', async () => {
    const chunked = upload(server.url, { length: null, sent: Buffer.alloc(100) });
    await until(server.url, { bytes: BODY_LIMIT, requests: 1 });
    chunked.abort();
    await until(server.url, { bytes: 0, requests: 0 });
    for (const type of ['image/jpeg', 'application/json']) {
      const big = upload(server.url, { type, length: null });
      big.finish(Buffer.alloc(BODY_LIMIT + 1));
      const res = await big.answer;
      assert.equal(res.status, 413, type);
      assert.equal(res.body.error.code, 'REQUEST_BODY_TOO_LARGE', type);
    }
    await until(server.url, { bytes: 0, requests: 0 });
  });

  test('after many successful, failed, refused and aborted uploads the budget is back to zero', async () => {
    const bad = Buffer.from('not an image at all');
    const runs: Array<Promise<unknown>> = [];
    for (let i = 0; i < 12; i++) {
      const ok = upload(server.url, { sent: photo });
      ok.finish();
      const failed = upload(server.url, { sent: bad });
      failed.finish();
      const malformed = upload(server.url, { type: 'multipart/form-data; boundary=XyZ', sent: Buffer.from('--XyZ\r\nContent-Disposition: form-data; name=""; filename="a.jpg"\r\n\r\nabc\r\n--XyZ--\r\n') });
      malformed.finish();
      const aborted = upload(server.url, { length: 100_000, sent: photo.subarray(0, 500) });
      setTimeout(() => aborted.abort(), 5);
      runs.push(ok.answer, failed.answer, malformed.answer, aborted.answer.catch(() => undefined));
    }
    const statuses = (await Promise.all(runs)).filter(Boolean).map((a) => (a as Answer).status);
    assert.ok(statuses.every((s) => [200, 400, 415, 503].includes(s)), statuses.join());
    await until(server.url, { bytes: 0, requests: 0 });
    const after = upload(server.url, { sent: photo });
    after.finish();
    assert.equal((await after.answer).status, 200);
    await until(server.url, { bytes: 0, requests: 0 });
  });
});

/** Connects, sends `requests` raw HTTP/1.1 requests back to back (pipelined), then destroys the socket. */
async function pipelineAndDrop(url: string, requests: Buffer[]): Promise<void> {
  const { connect } = await import('node:net');
  const { port } = new URL(url);
  await new Promise<void>((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => {
      socket.write(Buffer.concat(requests), () => setTimeout(() => {
        socket.destroy();
        resolve();
      }, 50));
    });
    socket.on('error', reject);
  });
}

describe('admission control: the reservation lasts as long as the body is held', () => {
  let server: RunningServer;
  let photo: Buffer;
  before(async () => {
    photo = await jpegOf('spotted_skin', 160, 120, 5);
    // A batch waits up to 3 s for company, so a screened body is held well after its client left.
    server = await startTestServer({
      server: { bodyLimitBytes: BODY_LIMIT, maxInFlightBodyBytes: BUDGET, maxInFlightRequests: 8 },
      batching: { enabled: true, maxBatchSize: 16, preferredBatchSizes: [16], maxQueueDelayMs: 3000 },
      cache: { maxEntries: 0 },
    });
  });
  after(async () => {
    await server.close();
  });

  test('an upload whose client leaves while it is screened keeps its reservation until screening lets go of the body', async () => {
    const bodies = await Promise.all([0, 1, 2].map((i) => jpegOf('spotted_skin', 150 + i, 120, 30 + i)));
    const uploads = bodies.map((body) => upload(server.url, { sent: body }));
    // Wait until all three are admitted and read, then leave.
    await until(server.url, { bytes: bodies.reduce((n, b) => n + b.length, 0), requests: 3 });
    for (const u of uploads) u.abort();
    await new Promise((r) => setTimeout(r, 200));
    const held = await gauges(server.url);
    assert.equal(held.requests, 3, 'the bodies are still in the screening queue, so still counted');
    await until(server.url, { bytes: 0, requests: 0 });
  });

  test('pipelined uploads on a connection that is destroyed release their reservations', async () => {
    const raw = (i: number) => Buffer.concat([
      Buffer.from(`POST /v1/screen HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: ${photo.length}\r\nX-Request-Id: pipelined-${i}\r\n\r\n`),
      photo,
    ]);
    for (let round = 0; round < 3; round++) await pipelineAndDrop(server.url, [0, 1, 2, 3].map(raw));
    await until(server.url, { bytes: 0, requests: 0 });
  });
});
