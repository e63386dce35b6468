import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { loadConfig, REPO_ROOT } from '../../../src/config.js';
import { openSessionCount } from '../../../src/model/engine.js';
import { readManifest, writeManifest } from '../../../src/model/manifest.js';
import type { RunningServer } from '../../../src/screening/server.js';
import { openApiDocument } from '../../../src/screening/http/openapi.js';
import { copyModel } from '../../helpers/models.js';
import { startTestServer, TEST_MODEL_DIRS } from '../../helpers/server.js';

const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
ajv.addSchema(openApiDocument(loadConfig({ LOG_LEVEL: 'silent' })) as object, 'openapi');
function assertMatches(schemaName: string, value: unknown) {
  const validate = ajv.compile({ $ref: `openapi#/components/schemas/${schemaName}` });
  assert.ok(validate(value), `${schemaName}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 500)}`);
}

const KEY = 's'.repeat(32);
const MET = path.join(REPO_ROOT, 'test', 'fixtures', 'met');

describe('the shadow admin API', () => {
  let tmp: string;
  let candidate: string;
  let broken: string;
  let server: RunningServer;

  const call = async (method: string, body?: unknown, headers: Record<string, string> = { authorization: `Bearer ${KEY}` }) => {
    const res = await fetch(`${server.url}/admin/shadow`, {
      method, headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  const screen = async (file: string) => {
    const res = await fetch(`${server.url}/v1/screen`, { method: 'POST', headers: { 'content-type': 'image/jpeg', 'x-api-key': KEY }, body: new Uint8Array(await readFile(path.join(MET, file))) });
    assert.equal(res.status, 200);
    const body = await res.json();
    assertMatches('ScreenResult', body);
    return body as { flagged: boolean };
  };
  const metrics = async () => (await fetch(`${server.url}/metrics`)).text();

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-shadow-api-'));
    candidate = await copyModel(TEST_MODEL_DIRS[0]!, path.join(tmp, 'candidate'));
    broken = await copyModel(TEST_MODEL_DIRS[0]!, path.join(tmp, 'broken'));
    const manifest = await readManifest(broken);
    manifest.sha256 = 'f'.repeat(64);
    await writeManifest(broken, manifest);
    server = await startTestServer({ shadow: { sampleRate: 1, allowedRoots: [tmp] }, cache: { maxEntries: 0 } }, { API_KEYS: KEY });
  });
  after(async () => {
    await server.close();
    await rm(tmp, { recursive: true, force: true });
  });

  test('GET, PUT and DELETE /admin/shadow need an API key, like POST /admin/reload', async () => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const res = await call(method, method === 'PUT' ? { modelDir: candidate } : undefined, {});
      assert.equal(res.status, 401, method);
      assert.equal(res.body.error.code, 'UNAUTHORIZED');
    }
    assert.equal((await call('GET')).body.candidate, null, 'the refused PUT loaded nothing');
  });

  test('GET /admin/shadow without a candidate answers the documented status', async () => {
    const { status, body } = await call('GET');
    assert.equal(status, 200);
    assertMatches('ShadowStatus', body);
    assert.equal(body.candidate, null);
    assert.equal(body.sampleRate, 1);
    assert.equal(body.flagAgreementRate, null);
  });

  test('PUT /admin/shadow loads a candidate that then sees live traffic; GET and /metrics report the agreement', async () => {
    const put = await call('PUT', { modelDir: candidate });
    assert.equal(put.status, 200);
    assertMatches('ShadowStatus', put.body);
    assert.equal(put.body.candidate.name, 'wildlife-resnet50vd');
    assert.equal(put.body.candidate.sha256, server.service.models()[0]!.sha256);
    const decisions = [await screen('ivory_110245.jpg'), await screen('non_ivory_467372.jpg')];
    await server.service.settle();
    const { body } = await call('GET');
    assertMatches('ShadowStatus', body);
    assert.equal(body.compared, 2);
    assert.equal(body.flagAgreementRate, 1);
    assert.equal(body.top1AgreementRate, 1);
    assert.deepEqual(body.flag, { both: decisions.filter((d) => d.flagged).length, primary_only: 0, candidate_only: 0, neither: decisions.filter((d) => !d.flagged).length });
    const text = await metrics();
    assert.match(text, /wildlife_shadow_comparisons_total\{candidate="wildlife-resnet50vd@1\.0\.0",flag="both",top1="agree"\} 1/);
    assert.match(text, /wildlife_shadow_comparisons_total\{candidate="wildlife-resnet50vd@1\.0\.0",flag="neither",top1="agree"\} 1/);
    assert.match(text, /wildlife_shadow_requests_total\{outcome="compared"\} 2/);
    assert.match(text, /wildlife_shadow_score_delta_bucket\{le="0\.01",candidate="wildlife-resnet50vd@1\.0\.0"\} 2/);
    assert.match(text, new RegExp(`wildlife_shadow_candidate_info\\{name="wildlife-resnet50vd",version="1\\.0\\.0",sha256="${body.candidate.sha256}"\\} 1`));
    assert.match(text, /wildlife_http_request_duration_seconds_count\{route="\/admin\/shadow",method="PUT",status="200"\} 1/);
  });

  test('PUT with a directory outside the models root and shadow.allowedRoots is 400 SHADOW_DIR_FORBIDDEN and changes nothing', async () => {
    for (const modelDir of [os.tmpdir(), path.join(tmp, '..', '..', 'etc'), '/etc']) {
      const { status, body } = await call('PUT', { modelDir });
      assert.equal(status, 400, modelDir);
      assertMatches('Error', body);
      assert.equal(body.error.code, 'SHADOW_DIR_FORBIDDEN');
    }
    assert.equal((await call('GET')).body.candidate.directory, candidate);
  });

  test('PUT with a directory that does not load is 422 SHADOW_LOAD_FAILED with the engine\'s code as the cause; the candidate stays', async () => {
    const sessions = openSessionCount();
    for (const [modelDir, cause] of [[broken, 'MODEL_CHECKSUM_MISMATCH'], [path.join(tmp, 'nothing-here'), 'MODEL_FILE_MISSING']] as const) {
      const { status, body } = await call('PUT', { modelDir, sampleRate: 0.5 });
      assert.equal(status, 422, modelDir);
      assertMatches('Error', body);
      assert.equal(body.error.code, 'SHADOW_LOAD_FAILED');
      assert.equal(body.error.cause, cause);
      assert.match(body.error.message, new RegExp(cause));
    }
    assert.equal(openSessionCount(), sessions);
    const { body } = await call('GET');
    assert.equal(body.candidate.directory, candidate);
    assert.equal(body.sampleRate, 1, 'a failed PUT changes no setting');
    assert.equal(body.lastError.code, 'MODEL_FILE_MISSING');
  });

  test('PUT with a body other than {modelDir, sampleRate?} is refused with a stable code', async () => {
    for (const bad of [{}, { modelDir: '' }, { modelDir: candidate, sampleRate: 2 }, { modelDir: candidate, sampleRate: '0.5' }, { modelDir: candidate, extra: 1 }, [candidate], '{"modelDir": ']) {
      const { status, body } = await call('PUT', bad);
      assert.equal(status, 400, JSON.stringify(bad));
      assert.equal(body.error.code, 'REQUEST_INVALID_JSON', JSON.stringify(bad));
    }
    const res = await fetch(`${server.url}/admin/shadow`, { method: 'PUT', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'text/plain' }, body: candidate });
    assert.equal(res.status, 415);
    assert.equal(((await res.json()) as any).error.code, 'REQUEST_UNSUPPORTED_MEDIA_TYPE');
  });

  test('DELETE /admin/shadow clears the candidate and releases its session', async () => {
    const before = openSessionCount();
    const { status, body } = await call('DELETE');
    assert.equal(status, 200);
    assertMatches('ShadowStatus', body);
    assert.equal(body.candidate, null);
    assert.equal(openSessionCount(), before - 1);
    assert.doesNotMatch(await metrics(), /wildlife_shadow_candidate_info\{/);
    assert.equal((await call('DELETE')).status, 200, 'clearing twice is fine');
  });

  test('POST /admin/reload reloads the candidate too, and clears it when it is the primary model', async () => {
    await call('PUT', { modelDir: candidate, sampleRate: 0.25 });
    const sessions = openSessionCount();
    const res = await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const { body } = await call('GET');
    assert.equal(body.candidate, null, 'same model.onnx as the primary: promoted, nothing left to compare');
    assert.equal(body.sampleRate, 0.25);
    // The replaced primary generation goes when its last request ends; the candidate went at once.
    for (let i = 0; i < 500 && openSessionCount() > sessions - 1; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(openSessionCount(), sessions - 1);
  });
});
