/**
 * Every way a multipart body can be malformed that multer 2.x or busboy 1.x reports gets a 4xx
 * with a stable code, on both routes that read multipart (issue 12, defect 2: an empty field name
 * was a 500 INTERNAL). Real requests over real HTTP to the real app.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { after, before, describe, test } from 'node:test';
import { ERROR_CATALOGUE, type ErrorCode } from '../../../src/errors.js';
import type { RunningServer } from '../../../src/screening/server.js';
import { toAppError } from '../../../src/net/http-errors.js';
import { jpegOf } from '../../helpers/images.js';
import { startTestServer } from '../../helpers/server.js';

const B = 'XyZ';
const TYPE = `multipart/form-data; boundary=${B}`;
const part = (disposition: string, body: string | Buffer = 'abc', headers = '') => Buffer.concat([Buffer.from(`--${B}\r\nContent-Disposition: ${disposition}\r\n${headers}\r\n`), Buffer.from(body), Buffer.from('\r\n')]);
const file = (name: string, body: string | Buffer = 'abc', filename = 'a.jpg') => part(`form-data; name="${name}"; filename="${filename}"`, body, 'Content-Type: image/jpeg\r\n');
const end = Buffer.from(`--${B}--\r\n`);
const form = (...parts: Buffer[]) => Buffer.concat([...parts, end]);
const many = (n: number, make: (i: number) => Buffer) => Array.from({ length: n }, (_, i) => make(i));

interface Case { name: string; body: Buffer | ((path: string) => Buffer); status: number; code: ErrorCode; type?: string; paths?: string[]; chunked?: boolean }
const BOTH = ['/v1/screen', '/v1/screen/batch'];
const fieldOf = (path: string) => (path.endsWith('/batch') ? 'images' : 'image');
const cases: Case[] = [
  // multer MISSING_FIELD_NAME: the defect of issue 12
  { name: 'a file part with an empty field name (MISSING_FIELD_NAME)', body: form(file('')), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a file part without a name parameter (MISSING_FIELD_NAME)', body: form(part('form-data; filename="a.jpg"')), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a text part with an empty field name (MISSING_FIELD_NAME)', body: form(part('form-data; name=""')), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  // multer limits
  { name: '21 text fields (LIMIT_FIELD_COUNT)', body: form(...many(21, (i) => part(`form-data; name="f${i}"`))), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a field value over 64 KiB (LIMIT_FIELD_VALUE)', body: form(part('form-data; name="note"', 'v'.repeat(64 * 1024 + 1))), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a field name over 200 bytes (LIMIT_FIELD_KEY)', body: form(part(`form-data; name="${'k'.repeat(201)}"`)), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a field name nested 5 deep (LIMIT_FIELD_NESTING)', body: form(part('form-data; name="a[b][c][d][e][f]"')), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a field name with array index 101 (LIMIT_FIELD_ARRAY_INDEX)', body: form(part('form-data; name="a[101]"')), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a file over images.maxBytes (LIMIT_FILE_SIZE)', body: form(file('image', Buffer.alloc(200_001))), status: 413, code: 'IMAGE_TOO_LARGE' },
  { name: 'a batch file over images.maxBytes (LIMIT_FILE_SIZE)', body: form(file('images', Buffer.alloc(200_001))), status: 413, code: 'IMAGE_TOO_LARGE', paths: ['/v1/screen/batch'] },
  { name: 'a batch of batchLimit + 1 files (LIMIT_FILE_COUNT)', body: form(...many(5, (i) => file('images', 'x', `${i}.jpg`))), status: 413, code: 'BATCH_TOO_LARGE', paths: ['/v1/screen/batch'] },
  { name: 'two files for the single-image route (LIMIT_UNEXPECTED_FILE)', body: form(file('image'), file('image')), status: 400, code: 'REQUEST_MISSING_IMAGE' },
  { name: 'a file under another field name (LIMIT_UNEXPECTED_FILE)', body: form(file('photo')), status: 400, code: 'REQUEST_MISSING_IMAGE', paths: BOTH },
  // busboy
  { name: 'a part header without a colon (Malformed part header)', body: Buffer.concat([Buffer.from(`--${B}\r\nGarbage\r\n\r\nabc\r\n`), end]), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a part header over busboy\'s 80 KiB (Malformed part header)', body: Buffer.concat([Buffer.from(`--${B}\r\nX-Pad: ${'p'.repeat(90_000)}\r\n\r\nabc\r\n`), end]), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a body cut inside a file (Unexpected end of form/file)', body: (path) => Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="${fieldOf(path)}"; filename="a.jpg"\r\n\r\nabc`), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a body cut inside a part header (Unexpected end of form)', body: Buffer.from(`--${B}\r\nContent-Disposition: form-da`), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'an empty body (Unexpected end of form)', body: Buffer.alloc(0), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a body without any boundary line (Unexpected end of form)', body: Buffer.from('just some text'), status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'no boundary parameter (Boundary not found)', body: form(file('image')), type: 'multipart/form-data', status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'an empty boundary (Malformed content type)', body: form(file('image')), type: 'multipart/form-data; boundary=', status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  { name: 'a malformed parameter list (Malformed content type)', body: form(file('image')), type: 'multipart/form-data; ===', status: 400, code: 'REQUEST_MALFORMED_MULTIPART', paths: BOTH },
  // the body limit holds for multipart too, with or without Content-Length
  { name: 'a batch whose files fit but whose body is over bodyLimitBytes', body: form(...many(3, (i) => file('images', Buffer.alloc(150_000), `${i}.jpg`))), status: 413, code: 'REQUEST_BODY_TOO_LARGE', paths: ['/v1/screen/batch'] },
  { name: 'a chunked batch over bodyLimitBytes', body: form(...many(3, (i) => file('images', Buffer.alloc(150_000), `${i}.jpg`))), status: 413, code: 'REQUEST_BODY_TOO_LARGE', paths: ['/v1/screen/batch'], chunked: true },
];

/** node:http, so a body can go chunked and the answer is read even if the server stops reading early. */
function send(url: string, path: string, body: Buffer, type: string, chunked: boolean): Promise<{ status: number; body: any; requestId: string | undefined }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'content-type': type, ...(chunked ? {} : { 'content-length': body.length }) };
    const req = request(`${url}${path}`, { method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString() || 'null'), requestId: res.headers['x-request-id'] as string | undefined }));
    });
    req.on('error', reject);
    if (chunked) {
      for (let i = 0; i < body.length; i += 16_384) req.write(body.subarray(i, i + 16_384));
      req.end();
    } else {
      req.end(body);
    }
  });
}

describe('malformed multipart: every multer and busboy error is a 4xx with a stable code', () => {
  let server: RunningServer;
  before(async () => {
    server = await startTestServer({ server: { bodyLimitBytes: 300_000, batchLimit: 4, maxInFlightBodyBytes: 10_000_000 }, images: { maxBytes: 200_000 } });
  });
  after(async () => {
    await server.close();
  });

  for (const c of cases) {
    for (const path of c.paths ?? ['/v1/screen']) {
      test(`${path}: ${c.name} → ${c.status} ${c.code}`, async () => {
        const body = typeof c.body === 'function' ? c.body(path) : c.body;
        const res = await send(server.url, path, body, c.type ?? TYPE, c.chunked ?? false);
        assert.equal(res.body?.error?.code, c.code, JSON.stringify(res.body));
        assert.equal(res.status, c.status);
        assert.equal(ERROR_CATALOGUE[c.code].status, c.status, 'status comes from the catalogue');
        assert.equal(res.body.error.requestId, res.requestId);
      });
    }
  }

  test('a good multipart photo is still screened on both routes, and nothing above was a 500', async () => {
    const photo = await jpegOf();
    assert.equal((await send(server.url, '/v1/screen', form(file('image', photo)), TYPE, false)).status, 200);
    const batch = await send(server.url, '/v1/screen/batch', form(file('images', photo), file('images', photo, 'b.jpg')), TYPE, true);
    assert.equal(batch.status, 200);
    assert.equal(batch.body.results.length, 2);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.doesNotMatch(metrics, /wildlife_errors_total\{code="INTERNAL",source="http"\}/);
    assert.doesNotMatch(metrics, /wildlife_http_request_duration_seconds_count\{[^}]*status="5\d\d"/);
  });
});

describe('the error mapping covers every code the installed multer and busboy can raise', () => {
  const require = createRequire(import.meta.url);
  const MulterError = require('multer').MulterError as new (code: string, field?: string) => Error & { code: string };
  const multerSource = readFileSync(require.resolve('multer/lib/multer-error.js'), 'utf8');
  const multerCodes = [...multerSource.slice(multerSource.indexOf('errorMessages'), multerSource.indexOf('}')).matchAll(/^\s+([A-Z_]+):/gm)].map((m) => m[1]!);
  const busboyDir = require.resolve('busboy').replace(/index\.js$/, '');
  const busboyMessages = ['index.js', 'types/multipart.js', 'types/urlencoded.js']
    .flatMap((f) => [...readFileSync(`${busboyDir}${f}`, 'utf8').matchAll(/new Error\((['`])(.*?)\1\)/g)].map((m) => m[2]!.replace(/\$\{[^}]+\}/, 'multipart/mixed')));

  test(`multer's ${multerCodes.length} codes and busboy's ${new Set(busboyMessages).size} messages were found`, () => {
    assert.ok(multerCodes.includes('MISSING_FIELD_NAME') && multerCodes.length >= 12, multerCodes.join());
    assert.ok(busboyMessages.includes('Malformed part header'), busboyMessages.join());
  });

  test('each multer code maps to a 4xx catalogue code', () => {
    for (const code of multerCodes) {
      const mapped = toAppError(new MulterError(code, 'image'));
      assert.ok(mapped.status >= 400 && mapped.status < 500, `${code} → ${mapped.code} ${mapped.status}`);
    }
  });

  test('each busboy error message, and multer\'s client-abort errors, map to a 4xx catalogue code', () => {
    for (const message of [...busboyMessages, 'Request aborted', 'Request closed']) {
      const mapped = toAppError(new Error(message));
      assert.ok(mapped.status >= 400 && mapped.status < 500, `${message} → ${mapped.code} ${mapped.status}`);
    }
  });
});
