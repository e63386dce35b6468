/**
 * The served OpenAPI document states what the service enforces (issue 12): every route and method
 * the app answers is driven with a battery of bad requests, and each status it returns must be
 * documented for that operation (with its WWW-Authenticate or Retry-After header); every other
 * method on a documented path is 405 with an Allow header naming exactly the documented ones.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../../src/screening/server.js';
import { startTestServer } from '../../helpers/server.js';

const KEY = 'k'.repeat(24);
const BATCH_LIMIT = 4;
type Operation = { requestBody?: { content: Record<string, { schema: any }> }; responses: Record<string, { headers?: Record<string, unknown> }> };
type Doc = { paths: Record<string, Record<string, Operation>> };
interface Probe { name: string; headers: Record<string, string | number>; body?: Buffer }

const auth = { authorization: `Bearer ${KEY}` };
const BODY_PROBES: Probe[] = [
  { name: 'no key', headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') },
  { name: 'a wrong key', headers: { authorization: 'Bearer nope', 'content-type': 'application/json' }, body: Buffer.from('{}') },
  { name: 'no body', headers: { ...auth } },
  { name: 'text/plain', headers: { ...auth, 'content-type': 'text/plain' }, body: Buffer.from('hello') },
  { name: 'an empty JSON object', headers: { ...auth, 'content-type': 'application/json' }, body: Buffer.from('{}') },
  { name: 'broken JSON', headers: { ...auth, 'content-type': 'application/json' }, body: Buffer.from('{"url": ') },
  { name: 'a JSON url to loopback', headers: { ...auth, 'content-type': 'application/json' }, body: Buffer.from('{"url": "http://127.0.0.1/x.jpg"}') },
  { name: 'a batch over the limit', headers: { ...auth, 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ items: Array.from({ length: BATCH_LIMIT + 1 }, () => ({ imageBase64: 'AAAA' })) })) },
  { name: 'an empty batch', headers: { ...auth, 'content-type': 'application/json' }, body: Buffer.from('{"items": []}') },
  { name: 'random image bytes', headers: { ...auth, 'content-type': 'image/png' }, body: Buffer.from('not a png') },
  { name: 'a multipart part without a name', headers: { ...auth, 'content-type': 'multipart/form-data; boundary=b' }, body: Buffer.from('--b\r\nContent-Disposition: form-data; filename="a.jpg"\r\n\r\nx\r\n--b--\r\n') },
  { name: 'multipart without a boundary', headers: { ...auth, 'content-type': 'multipart/form-data' }, body: Buffer.from('x') },
  { name: 'a Content-Length over the body limit', headers: { ...auth, 'content-type': 'application/json', 'content-length': 10 ** 9 } },
];

function send(url: string, method: string, path: string, probe: Probe): Promise<{ status: number; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const headers = { ...(probe.body && !('content-length' in probe.headers) ? { 'content-length': probe.body.length } : {}), ...probe.headers };
    const req = request(`${url}${path}`, { method: method.toUpperCase(), headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers }));
    });
    req.on('error', reject);
    if ('content-length' in probe.headers && !probe.body) req.flushHeaders();
    else req.end(probe.body);
  });
}

describe('the OpenAPI document documents every status each operation answers', () => {
  let server: RunningServer;
  let doc: Doc;
  const seen: string[] = [];
  before(async () => {
    server = await startTestServer({ server: { bodyLimitBytes: 300_000, batchLimit: BATCH_LIMIT, maxInFlightRequests: 2, maxInFlightBodyBytes: 10_000_000 } }, { API_KEYS: KEY });
    doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as Doc;
  });
  after(async () => {
    await server.close();
  });

  const check = (method: string, path: string, probe: string, res: { status: number; headers: Record<string, unknown> }) => {
    const responses = doc.paths[path]![method]!.responses;
    seen.push(`${method} ${path} ${res.status}`);
    assert.ok(responses[String(res.status)], `${method.toUpperCase()} ${path} with ${probe} answered ${res.status}, documented: ${Object.keys(responses).join(', ')}`);
    for (const [name, spec] of Object.entries(responses[String(res.status)]!.headers ?? {})) {
      if ((spec as { required?: boolean }).required) assert.ok(res.headers[name.toLowerCase()], `${method} ${path} ${res.status} lacks ${name}`);
    }
  };

  test('batches state minItems 1 and maxItems = server.batchLimit; security only because keys are set', () => {
    const batch = doc.paths['/v1/screen/batch']!.post!.requestBody!.content;
    for (const [type, schema] of [['application/json', batch['application/json']!.schema.properties.items], ['multipart/form-data', batch['multipart/form-data']!.schema.properties.images]] as const) {
      assert.equal(schema.minItems, 1, type);
      assert.equal(schema.maxItems, BATCH_LIMIT, type);
    }
    assert.ok(doc.paths['/v1/models']!.get!.responses['401']);
  });

  test('each operation, driven with bad requests, answers only documented statuses', async () => {
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        // Operations without a body are driven once without and once with the key.
        const probes = operation.requestBody ? BODY_PROBES : [{ name: 'no key', headers: {} }, { name: 'the key', headers: auth }];
        for (const probe of probes) check(method, path, probe.name, await send(server.url, method, path, probe));
      }
    }
  });

  test('with the upload budget full, every operation with a body answers a documented 503 with Retry-After', async () => {
    const holds = Array.from({ length: 2 }, () => {
      const req = request(`${server.url}/v1/screen`, { method: 'POST', headers: { ...auth, 'content-type': 'image/jpeg', 'content-length': 1000 }, agent: false });
      req.on('error', () => undefined);
      req.write(Buffer.alloc(1));
      return req;
    });
    let statuses: number[] = [];
    // The holds reach the server a moment after they are written; retry until the budget is seen full.
    for (let i = 0; i < 100 && !statuses.includes(503); i++) {
      statuses = [];
      for (const [path, operations] of Object.entries(doc.paths)) {
        for (const [method, operation] of Object.entries(operations)) {
          if (!operation.requestBody) continue;
          const res = await send(server.url, method, path, { name: 'JSON', headers: { ...auth, 'content-type': 'application/json' }, body: Buffer.from('{}') });
          check(method, path, 'a full budget', res);
          statuses.push(res.status);
        }
      }
      if (!statuses.includes(503)) await new Promise((r) => setTimeout(r, 20));
    }
    for (const h of holds) h.destroy();
    assert.deepEqual(statuses, statuses.map(() => 503));
  });

  test('every other method on a documented path is 405 with Allow naming the documented methods', async () => {
    for (const [path, operations] of Object.entries(doc.paths)) {
      const documented = Object.keys(operations).map((m) => m.toUpperCase());
      const allow = [...new Set([...documented, ...(documented.includes('GET') ? ['HEAD'] : [])])].sort().join(', ');
      for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].filter((m) => !documented.includes(m))) {
        const res = await send(server.url, method, path, { name: method, headers: auth });
        assert.equal(res.status, 405, `${method} ${path}`);
        assert.equal(res.headers.allow, allow, `${method} ${path}`);
      }
    }
  });

  test('the probes reached 400, 401, 413, 415 and 503 at least once', () => {
    for (const status of ['400', '401', '413', '415', '403', '503']) assert.ok(seen.some((s) => s.endsWith(` ${status}`)), `${status}: ${[...new Set(seen)].join('; ')}`);
  });
});
