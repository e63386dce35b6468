/** The cascade as an HTTP client sees it: /v1/models describes it, each answer says who decided, both as documented. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { loadConfig, REPO_ROOT } from '../../../src/config.js';
import { readManifest } from '../../../src/model/manifest.js';
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

const SMALL = path.join(REPO_ROOT, 'models', 'wildlife-efficientnet-lite0');
const BIG = path.join(REPO_ROOT, 'models', 'wildlife-resnet50vd');

describe('the cascade over HTTP', () => {
  let server: RunningServer;
  let small: string;
  let big: string;
  before(async () => {
    small = (await readManifest(SMALL)).name;
    big = (await readManifest(BIG)).name;
    server = await startTestServer({
      models: { directories: [SMALL, BIG] },
      cascade: { mode: 'on', stages: [{ model: small, escalate: { from: 0, below: 1 } }, { model: big }] },
    });
  });
  after(async () => server.close());

  test('GET /v1/models lists the stages and their bands, as documented', async () => {
    const body = await (await fetch(`${server.url}/v1/models`)).json() as Record<string, any>;
    assertMatches('Models', body);
    assert.deepEqual(body.cascade, { mode: 'on', stages: [{ model: small, escalate: { from: 0, below: 1 } }, { model: big, escalate: null }] });
  });

  test('POST /v1/screen answers which stages ran and which decided, as documented', async () => {
    const res = await fetch(`${server.url}/v1/screen`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(await jpegOf('spotted_skin', 160, 120, 3)) });
    assert.equal(res.status, 200);
    const body = await res.json() as Record<string, any>;
    assertMatches('ScreenResult', body);
    assert.deepEqual(body.cascade, { mode: 'on', ran: [small, big], decidedBy: big });
  });
});
