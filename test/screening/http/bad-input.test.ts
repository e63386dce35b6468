import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ERROR_CATALOGUE } from '../../../src/errors.js';
import type { RunningServer } from '../../../src/screening/server.js';
import { jpegOf, pngHeaderOnly, pngOf } from '../../helpers/images.js';
import { startTestServer } from '../../helpers/server.js';

interface Case {
  name: string;
  status: number;
  code: keyof typeof ERROR_CATALOGUE;
  /** The exact message, where its wording is part of the contract (e.g. said once, not twice). */
  message?: string;
  path?: string;
  request: () => Promise<{ body: BodyInit; headers?: Record<string, string> }>;
}

const raw = (bytes: Uint8Array, type = 'image/jpeg') => async () => ({ body: bytes as BodyInit, headers: { 'content-type': type } });
const json = (value: unknown) => async () => ({ body: typeof value === 'string' ? value : JSON.stringify(value), headers: { 'content-type': 'application/json' } });
const form = (field: string, bytes: Uint8Array | null, filename = 'x.jpg') => async () => {
  const fd = new FormData();
  if (bytes) fd.append(field, new Blob([new Uint8Array(bytes)]), filename);
  else fd.append(field, 'just text');
  return { body: fd };
};

const BOUNDARY = 'XyZ';
const cases: Case[] = [
  { name: 'zero bytes', status: 400, code: 'IMAGE_EMPTY', request: raw(new Uint8Array(0)) },
  { name: 'a truncated JPEG', status: 422, code: 'IMAGE_CORRUPT', request: async () => { const j = await jpegOf('striped_skin', 300, 300); return raw(j.subarray(0, Math.floor(j.length / 2)))(); } },
  { name: 'random bytes', status: 415, code: 'IMAGE_UNSUPPORTED_FORMAT', request: raw(Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)) },
  { name: 'an HTML page sent as image/jpeg', status: 415, code: 'IMAGE_UNSUPPORTED_FORMAT', request: raw(Buffer.from('<!doctype html><html><body>ivory for sale</body></html>')) },
  { name: 'a PDF', status: 415, code: 'IMAGE_UNSUPPORTED_FORMAT', request: raw(Buffer.from('%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF'), 'image/png') },
  { name: 'a ZIP archive', status: 415, code: 'IMAGE_UNSUPPORTED_FORMAT', request: raw(Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0, 0, 0, 8, 0, ...Array(40).fill(0)])) },
  { name: 'an SVG with an external reference', status: 415, code: 'IMAGE_UNSUPPORTED_FORMAT', request: raw(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><image href="http://169.254.169.254/x"/><rect width="64" height="64" fill="red"/></svg>'), 'image/svg+xml') },
  { name: 'a HEIC header', status: 415, code: 'IMAGE_UNSUPPORTED_FORMAT', request: raw(Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from('ftypheic\0\0\0\0mif1heic'), Buffer.alloc(64)]), 'image/heic') },
  { name: 'a 60000×60000 decompression bomb', status: 422, code: 'IMAGE_TOO_MANY_PIXELS', request: raw(pngHeaderOnly(60000, 60000), 'image/png') },
  { name: 'a 100-megapixel image', status: 422, code: 'IMAGE_TOO_MANY_PIXELS', request: raw(pngHeaderOnly(12500, 8000), 'image/png') },
  { name: 'a 4×4 image', status: 422, code: 'IMAGE_TOO_SMALL', request: async () => raw(await pngOf(4, 4), 'image/png')() },
  { name: 'a text/plain body', status: 415, code: 'REQUEST_UNSUPPORTED_MEDIA_TYPE', message: 'Unsupported Content-Type for this route. Got text/plain. Use multipart/form-data, image/*, or application/json.', request: async () => ({ body: 'hello', headers: { 'content-type': 'text/plain; charset=utf-8' } }) },
  { name: 'no content type', status: 415, code: 'REQUEST_UNSUPPORTED_MEDIA_TYPE', message: 'Unsupported Content-Type for this route. No Content-Type header. Use multipart/form-data, image/*, or application/json.', request: async () => ({ body: new Uint8Array([1, 2, 3]), headers: { 'content-type': '' } }) },
  { name: 'malformed multipart', status: 400, code: 'REQUEST_MALFORMED_MULTIPART', request: async () => ({ body: `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\nabc`, headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` } }) },
  { name: 'multipart with the wrong field name', status: 400, code: 'REQUEST_MISSING_IMAGE', request: async () => form('photo', await jpegOf())() },
  { name: 'multipart with a text field and no file', status: 400, code: 'REQUEST_MISSING_IMAGE', request: form('image', null) },
  { name: 'multipart with a zero-byte file', status: 400, code: 'IMAGE_EMPTY', request: form('image', new Uint8Array(0)) },
  { name: 'a raw body over the body limit', status: 413, code: 'REQUEST_BODY_TOO_LARGE', request: raw(new Uint8Array(300_001)) },
  { name: 'a multipart file over the image limit', status: 413, code: 'IMAGE_TOO_LARGE', request: form('image', new Uint8Array(200_001)) },
  { name: 'invalid JSON', status: 400, code: 'REQUEST_INVALID_JSON', request: json('{"url": ') },
  { name: 'a JSON array', status: 400, code: 'REQUEST_INVALID_JSON', request: json([1, 2]) },
  { name: 'JSON without url or image', status: 400, code: 'REQUEST_MISSING_IMAGE', request: json({}) },
  { name: 'JSON with both url and imageBase64', status: 400, code: 'REQUEST_MISSING_IMAGE', request: json({ url: 'https://example.org/a.jpg', imageBase64: 'AAAA' }) },
  { name: 'JSON with an unknown field', status: 400, code: 'REQUEST_INVALID_JSON', request: json({ url: 'https://example.org/a.jpg', callback: 'x' }) },
  { name: 'imageBase64 that is not base64', status: 400, code: 'REQUEST_INVALID_JSON', request: json({ imageBase64: '***not base64***' }) },
  { name: 'a URL to 127.0.0.1', status: 403, code: 'URL_HOST_FORBIDDEN', request: json({ url: 'http://127.0.0.1:8080/admin' }) },
  { name: 'a URL to the cloud metadata address', status: 403, code: 'URL_HOST_FORBIDDEN', request: json({ url: 'http://169.254.169.254/latest/meta-data/' }) },
  { name: 'a URL to [::1]', status: 403, code: 'URL_HOST_FORBIDDEN', request: json({ url: 'http://[::1]/x.jpg' }) },
  { name: 'a decimal-encoded loopback URL', status: 403, code: 'URL_HOST_FORBIDDEN', request: json({ url: 'http://2130706433/x.jpg' }) },
  { name: 'a private-range URL', status: 403, code: 'URL_HOST_FORBIDDEN', request: json({ url: 'http://10.0.0.7/x.jpg' }) },
  { name: 'a file: URL', status: 400, code: 'URL_SCHEME_NOT_ALLOWED', request: json({ url: 'file:///etc/passwd' }) },
  { name: 'an ftp: URL', status: 400, code: 'URL_SCHEME_NOT_ALLOWED', request: json({ url: 'ftp://example.org/a.jpg' }) },
  { name: 'a string that is not a URL', status: 400, code: 'URL_INVALID', request: json({ url: 'not a url' }) },
  { name: 'a URL with credentials', status: 400, code: 'URL_INVALID', request: json({ url: 'https://user:pw@example.org/a.jpg' }) },
  { name: 'a batch over the item limit', status: 413, code: 'BATCH_TOO_LARGE', path: '/v1/screen/batch', request: json({ items: Array.from({ length: 5 }, () => ({ url: 'https://example.org/a.jpg' })) }) },
  { name: 'an empty batch', status: 400, code: 'BATCH_EMPTY', path: '/v1/screen/batch', request: json({ items: [] }) },
  { name: 'a batch body without items', status: 400, code: 'REQUEST_INVALID_JSON', path: '/v1/screen/batch', request: json({ images: [] }) },
  { name: 'a raw image body to the batch route', status: 415, code: 'REQUEST_UNSUPPORTED_MEDIA_TYPE', message: 'Unsupported Content-Type for this route. Got image/jpeg. Use multipart/form-data (field "images") or application/json.', path: '/v1/screen/batch', request: raw(new Uint8Array([0xff, 0xd8, 0xff])) },
  { name: 'an unknown route', status: 404, code: 'NOT_FOUND', path: '/v1/screenz', request: json({}) },
];

describe('bad input: every kind gets its status and stable code, and the service keeps serving', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ server: { bodyLimitBytes: 300_000, batchLimit: 4 }, images: { maxBytes: 200_000 } });
  });
  after(async () => {
    await server.close();
  });

  test(`covers at least 30 kinds of bad input (${cases.length})`, () => {
    assert.ok(cases.length >= 30);
  });

  for (const c of cases) {
    test(`${c.name} → ${c.status} ${c.code}`, async () => {
      const { body, headers } = await c.request();
      const res = await fetch(`${server.url}${c.path ?? '/v1/screen'}`, { method: 'POST', body, headers });
      const payload = (await res.json()) as { error: { code: string; message: string; requestId: string } };
      assert.equal(payload.error?.code, c.code, JSON.stringify(payload));
      assert.equal(res.status, c.status);
      assert.equal(ERROR_CATALOGUE[c.code].status, c.status, 'status comes from the catalogue');
      assert.ok(payload.error.message.length > 0);
      if (c.message !== undefined) assert.equal(payload.error.message, c.message);
      assert.equal(payload.error.requestId, res.headers.get('x-request-id'));
    });
  }

  test('after all of that, a good photo is still screened', async () => {
    const res = await fetch(`${server.url}/v1/screen`, { method: 'POST', body: (await jpegOf()) as BodyInit, headers: { 'content-type': 'image/jpeg' } });
    assert.equal(res.status, 200);
    const result = (await res.json()) as { flagged: boolean; classifiers: unknown[] };
    assert.equal(typeof result.flagged, 'boolean');
    assert.equal(result.classifiers.length, 1);
  });

  test('errors are counted by code on /metrics', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const expected = new Map<string, number>();
    for (const c of cases) expected.set(c.code, (expected.get(c.code) ?? 0) + 1);
    for (const [code, count] of expected) {
      const line = text.split('\n').find((l) => l.startsWith(`wildlife_errors_total{code="${code}",source="http"}`));
      assert.equal(line?.split(' ').pop(), String(count), `${code}: ${line ?? 'no line'}`);
    }
  });
});
