import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import sharp from 'sharp';
import { loadConfig, ConfigError, REPO_ROOT } from '../../../src/config.js';
import type { RunningServer } from '../../../src/screening/server.js';
import { openApiDocument } from '../../../src/screening/http/openapi.js';
import { jpegOf } from '../../helpers/images.js';
import { startTestServer } from '../../helpers/server.js';

const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
ajv.addSchema(openApiDocument(loadConfig({ LOG_LEVEL: 'silent' })) as object, 'openapi');
function assertMatches(schemaName: string, value: unknown) {
  const validate = ajv.compile({ $ref: `openapi#/components/schemas/${schemaName}` });
  assert.ok(validate(value), `${schemaName}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 500)}`);
}

describe('the HTTP API', () => {
  let server: RunningServer;
  let images: Server;
  let imagesUrl: string;
  let photo: Buffer;

  before(async () => {
    photo = await jpegOf('spotted_skin', 160, 120, 3);
    images = createServer((req, res) => {
      if (req.url === '/photo.jpg') {
        res.writeHead(200, { 'content-type': 'image/jpeg' });
        res.end(photo);
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => images.listen(0, '127.0.0.1', resolve));
    imagesUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
    server = await startTestServer({ fetch: { allowlist: ['127.0.0.1'] } });
  });
  after(async () => {
    await server.close();
    await new Promise((resolve) => images.close(resolve));
  });

  const post = (path: string, body: BodyInit | Buffer, headers: Record<string, string> = {}) => fetch(`${server.url}${path}`, { method: 'POST', body: body as BodyInit, headers });

  test('POST /v1/screen with a multipart image returns a documented decision', async () => {
    const fd = new FormData();
    fd.append('image', new Blob([new Uint8Array(photo)]), 'photo.jpg');
    const res = await post('/v1/screen', fd, { 'x-request-id': 'listing-42' });
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, any>;
    assertMatches('ScreenResult', body);
    assert.equal(body.requestId, 'listing-42');
    assert.equal(body.image.width, 160);
    assert.equal(body.classifiers[0].top.length, Math.min(5, server.service.models()[0]!.labels.length));
    assert.equal(body.flagged, body.reasons.length > 0);
    for (const t of ['preprocessMs', 'queueMs', 'inferenceMs', 'totalMs']) assert.ok(body.timings[t] >= 0, t);
  });

  test('a raw image/* body, base64 JSON and a URL all give the same decision for the same bytes, each screened afresh', async (t) => {
    // No decision cache, so each path screens the photo itself and the comparison is between three screenings.
    const fresh = await startTestServer({ fetch: { allowlist: ['127.0.0.1'] }, cache: { maxEntries: 0 } });
    t.after(() => fresh.close());
    const screen = async (body: BodyInit | Buffer, contentType: string) => {
      const res = await fetch(`${fresh.url}/v1/screen`, { method: 'POST', body: body as BodyInit, headers: { 'content-type': contentType } });
      assert.equal(res.status, 200);
      const r = (await res.json()) as Record<string, any>;
      assertMatches('ScreenResult', r);
      return r;
    };
    const raw = await screen(photo, 'image/jpeg');
    const base64 = await screen(JSON.stringify({ imageBase64: photo.toString('base64') }), 'application/json');
    const url = await screen(JSON.stringify({ url: `${imagesUrl}/photo.jpg` }), 'application/json');
    assert.equal(url.image.url, `${imagesUrl}/photo.jpg`);
    const decision = (r: Record<string, any>) => {
      const { url: _url, ...image } = r.image;
      return { cached: r.cached, sha256: r.sha256, flagged: r.flagged, reasons: r.reasons, classifiers: r.classifiers, image };
    };
    assert.equal(raw.cached, false);
    assert.ok(raw.timings.inferenceMs > 0, 'the model ran');
    assert.deepEqual(decision(base64), decision(raw));
    assert.deepEqual(decision(url), decision(raw));
  });

  test('a reposted photo is answered from the dedupe cache and counted as a hit', async () => {
    const fresh = await jpegOf('striped_skin', 100, 100, 99);
    const first = (await (await post('/v1/screen', fresh, { 'content-type': 'image/jpeg' })).json()) as Record<string, any>;
    const second = (await (await post('/v1/screen', fresh, { 'content-type': 'image/jpeg' })).json()) as Record<string, any>;
    assert.equal(first.cached, false);
    assert.equal(second.cached, true);
    assert.deepEqual(second.classifiers, first.classifiers);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /wildlife_cache_requests_total\{result="hit"\} [1-9]/);
  });

  test('a resized repost of a screened photo is answered "near" in the documented shape, and counted as a near hit', async () => {
    const original = await readFile(path.join(REPO_ROOT, 'test/fixtures/met/ivory_209842.jpg'));
    const repost = await sharp(original).resize(98).jpeg({ quality: 75 }).toBuffer();
    const first = (await (await post('/v1/screen', original, { 'content-type': 'image/jpeg' })).json()) as Record<string, any>;
    const res = await post('/v1/screen', repost, { 'content-type': 'image/jpeg' });
    assert.equal(res.status, 200);
    const near = (await res.json()) as Record<string, any>;
    assertMatches('ScreenResult', near);
    assert.equal(near.cached, 'near');
    assert.equal(near.near.sha256, first.sha256);
    assert.ok(Number.isInteger(near.near.distance));
    assert.equal(near.image.width, 98);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /wildlife_cache_requests_total\{result="near"\} [1-9]/);
    assert.match(text, /wildlife_cache_near_distance_count [1-9]/);
  });

  test('a batch screens each item on its own: one broken photo does not sink the others', async () => {
    const fd = new FormData();
    fd.append('images', new Blob([new Uint8Array(photo)]), 'a.jpg');
    fd.append('images', new Blob([new Uint8Array(Buffer.from('not an image'))]), 'b.jpg');
    fd.append('images', new Blob([new Uint8Array(await jpegOf('plain_ceramic', 90, 90, 5))]), 'c.jpg');
    const res = await post('/v1/screen/batch', fd);
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, any>;
    assertMatches('BatchResult', body);
    assert.deepEqual(body.results.map((r: any) => r.ok), [true, false, true]);
    assert.equal(body.results[1].error.code, 'IMAGE_UNSUPPORTED_FORMAT');
    const json = await post('/v1/screen/batch', JSON.stringify({ items: [{ imageBase64: photo.toString('base64') }, { url: `${imagesUrl}/missing.jpg` }] }), { 'content-type': 'application/json' });
    const jsonBody = (await json.json()) as Record<string, any>;
    assertMatches('BatchResult', jsonBody);
    assert.equal(jsonBody.results[1].error.code, 'FETCH_HTTP_STATUS');
  });

  test('GET /v1/models, /healthz, /readyz and /openapi.json answer as documented', async () => {
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as Record<string, any>;
    assertMatches('Models', models);
    assert.equal(models.models.length, 1);
    assert.deepEqual(await (await fetch(`${server.url}/healthz`)).json(), { status: 'ok' });
    const ready = await fetch(`${server.url}/readyz`);
    assert.equal(ready.status, 200);
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { openapi: string };
    assert.equal(doc.openapi, '3.1.0');
  });

  test('every route the app serves is documented in the OpenAPI document, and nothing else is', async () => {
    const { createApp } = await import('../../../src/screening/http/app.js');
    const { createMetrics } = await import('../../../src/screening/metrics.js');
    const app = createApp({ service: server.service, config: loadConfig({ LOG_LEVEL: 'silent' }), metrics: createMetrics(server.service), logger: server.logger });
    const stack = (app as unknown as { router: { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> } }).router.stack;
    const served = stack.filter((l) => l.route).flatMap((l) => Object.keys(l.route!.methods).map((m) => `${m} ${l.route!.path}`)).sort();
    const documented = Object.entries(openApiDocument(loadConfig({ LOG_LEVEL: 'silent' })).paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`)).sort();
    assert.deepEqual(served, documented);
  });

  test('/metrics exports the latency histograms by stage, batch sizes, queue depth, counts and model info', async () => {
    // A photo by URL (the fetch stage) and one never seen (the model stages), whatever ran before.
    assert.equal((await post('/v1/screen', JSON.stringify({ url: `${imagesUrl}/photo.jpg` }), { 'content-type': 'application/json' })).status, 200);
    assert.equal((await post('/v1/screen', await jpegOf('striped_skin', 90, 90, 4242), { 'content-type': 'image/jpeg' })).status, 200);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    for (const stage of ['preprocess', 'queue', 'inference', 'total', 'fetch']) {
      assert.match(text, new RegExp(`wildlife_screening_stage_duration_seconds_bucket\\{le="[^"]+",stage="${stage}",source="http"\\}`), stage);
    }
    assert.match(text, /wildlife_http_request_duration_seconds_bucket\{le="[^"]+",route="\/v1\/screen",method="POST",status="200"\}/);
    assert.match(text, /wildlife_batch_size_bucket\{le="1",model="[^"]+"\}/);
    assert.match(text, /wildlife_queue_depth\{lane="interactive"\} 0/);
    assert.match(text, /wildlife_images_screened_total\{source="http",flagged="(true|false)"\} \d+/);
    assert.match(text, /wildlife_model_info\{name="[^"]+",version="[^"]+",generation="1"\} 1/);
    assert.match(text, /wildlife_process_resident_memory_bytes/);
  });
});

describe('API keys', () => {
  let server: RunningServer;
  const key = 'k'.repeat(24);
  before(async () => {
    server = await startTestServer({}, { API_KEYS: `${key},${'z'.repeat(20)}` });
  });
  after(async () => {
    await server.close();
  });

  test('screening without a key or with a wrong one is 401 UNAUTHORIZED', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { 'x-api-key': 'k'.repeat(23) }] as Array<Record<string, string>>) {
      const res = await fetch(`${server.url}/v1/models`, { headers });
      assert.equal(res.status, 401);
      assert.equal(((await res.json()) as any).error.code, 'UNAUTHORIZED');
    }
  });

  test('a Bearer token or an X-API-Key header opens the API; probes stay open', async () => {
    assert.equal((await fetch(`${server.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status, 200);
    assert.equal((await fetch(`${server.url}/v1/models`, { headers: { 'x-api-key': 'z'.repeat(20) } })).status, 200);
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
  });

  test('NODE_ENV=production refuses to start without API keys, listing the problem', () => {
    assert.throws(() => loadConfig({ NODE_ENV: 'production' }), (err: unknown) => err instanceof ConfigError && /API_KEYS/.test(err.message));
  });
});
