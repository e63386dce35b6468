/**
 * kafkajs stays in src/kafka: the components elsewhere use its lifecycle (component.ts), its
 * plumbing and the types it re-exports (client.ts), so a client upgrade or swap is one folder's change.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../../src/config.js';

const SRC = path.join(REPO_ROOT, 'src');

/** import/export … from 'kafkajs' (type-only too), import('kafkajs') and require('kafkajs'), subpaths included. */
const KAFKAJS = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"]kafkajs(?:\/[^'"]*)?['"]/m;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const file = path.join(dir, e.name);
    if (e.isDirectory()) return sources(file);
    return /\.(?:[cm]?[jt]s|tsx)$/.test(e.name) ? [file] : [];
  });
}

test("no file under src/ outside src/kafka/ imports 'kafkajs'", () => {
  const files = sources(SRC);
  assert.ok(files.length > 50, `found only ${files.length} source files under ${SRC}`);
  const offenders = files.filter((f) => !f.startsWith(path.join(SRC, 'kafka') + path.sep) && KAFKAJS.test(readFileSync(f, 'utf8')));
  assert.deepEqual(offenders.map((f) => path.relative(REPO_ROOT, f)), []);
});

test('the scan recognises every way a module names kafkajs, and not the word in prose', () => {
  for (const line of [
    "import { Kafka } from 'kafkajs';",
    'import type { Producer } from "kafkajs";',
    "export type { EachBatchPayload } from 'kafkajs';",
    "import 'kafkajs';",
    "const k = await import('kafkajs');",
    "const { errorCodes } = require('kafkajs/src/protocol/error.js');",
    "import {\n  Kafka,\n  logLevel,\n} from 'kafkajs';",
  ]) assert.ok(KAFKAJS.test(line), line);
  for (const line of ['// kafkajs restarts the consumer after retriable crashes', "const name = 'kafkajs-like';", "log('from kafkajs')"]) {
    assert.ok(!KAFKAJS.test(line), line);
  }
});
