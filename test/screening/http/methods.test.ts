/** 405 + Allow for a known path with another method, 404 for unknown paths, 401 + WWW-Authenticate (issue 12). */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../../src/screening/server.js';
import { startTestServer } from '../../helpers/server.js';

const KEY = 'k'.repeat(24);

describe('methods and authentication headers', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({}, { API_KEYS: KEY });
  });
  after(async () => {
    await server.close();
  });

  const cases: Array<[method: string, path: string, allow: string]> = [
    ['DELETE', '/v1/screen', 'POST'],
    ['GET', '/v1/screen', 'POST'],
    ['PUT', '/v1/screen/batch', 'POST'],
    ['POST', '/healthz', 'GET, HEAD'],
    ['POST', '/readyz', 'GET, HEAD'],
    ['DELETE', '/metrics', 'GET, HEAD'],
    ['POST', '/v1/models', 'GET, HEAD'],
    ['GET', '/admin/reload', 'POST'],
    ['PATCH', '/admin/shadow', 'DELETE, GET, HEAD, PUT'],
    ['POST', '/openapi.json', 'GET, HEAD'],
    ['POST', '/healthz/', 'GET, HEAD'],
  ];
  for (const [method, path, allow] of cases) {
    test(`${method} ${path} → 405 METHOD_NOT_ALLOWED, Allow: ${allow}`, async () => {
      const res = await fetch(`${server.url}${path}`, { method, headers: { authorization: `Bearer ${KEY}` } });
      assert.equal(res.status, 405);
      assert.equal(res.headers.get('allow'), allow);
      const body = (await res.json()) as { error: { code: string } };
      assert.equal(body.error.code, 'METHOD_NOT_ALLOWED');
    });
  }

  test('unknown paths stay 404 NOT_FOUND, whatever the method', async () => {
    for (const method of ['GET', 'POST', 'DELETE']) {
      const res = await fetch(`${server.url}/v1/screenz`, { method });
      assert.equal(res.status, 404);
      assert.equal(res.headers.get('allow'), null);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
    }
  });

  test('a 401 carries WWW-Authenticate: Bearer, on every protected route', async () => {
    for (const [method, path] of [['GET', '/v1/models'], ['POST', '/v1/screen'], ['POST', '/admin/reload'], ['GET', '/admin/shadow']] as const) {
      const res = await fetch(`${server.url}${path}`, { method, headers: { authorization: 'Bearer wrong' } });
      assert.equal(res.status, 401, `${method} ${path}`);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer\b/, `${method} ${path}`);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
    }
  });
});
