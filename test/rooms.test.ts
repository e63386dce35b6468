/**
 * The dependency direction drawn in the README's "How it works": every relative import in src/ goes
 * from a room to itself or to a room it is allowed to use, never upward and never sideways between
 * applications. The table is the drawing; a new room has to be placed in it before it can be used.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { REPO_ROOT } from '../src/config.js';

const SRC = path.join(REPO_ROOT, 'src');

/** room → the rooms it may import (besides itself). */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  // The floor: the error catalogue, the validated config and the wire contracts.
  errors: [],
  config: ['errors'],
  contracts: ['errors'],
  // The core imports only the floor's errors and config.
  model: ['errors', 'config'],
  preprocess: ['errors', 'config'],
  batching: ['errors', 'config'],
  policy: ['errors', 'config'],
  // Shared plumbing, below every application.
  net: ['errors', 'config'],
  kafka: ['errors', 'config', 'contracts'],
  metrics: [],
  // The applications: each may use everything below it, none another application.
  screening: ['errors', 'config', 'contracts', 'model', 'preprocess', 'batching', 'policy', 'net', 'kafka', 'metrics'],
  review: ['errors', 'config', 'contracts', 'net', 'kafka', 'metrics'],
  training: ['errors', 'config', 'contracts', 'model', 'preprocess', 'batching', 'policy', 'net', 'kafka', 'metrics'],
  // The service's process entry point.
  main: ['config', 'screening'],
};

/** src/a/b.ts → "a"; src/x.ts → "x". */
export function roomOf(file: string): string {
  const [first] = path.relative(SRC, file).split(path.sep);
  return first!.replace(/\.ts$/, '');
}

/** Relative imports and re-exports, static and dynamic, with the file they resolve to. */
export function importsOf(file: string, text = readFileSync(file, 'utf8')): string[] {
  const specs = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm)].map((m) => m[1]!);
  return specs.map((s) => path.resolve(path.dirname(file), s.replace(/\.js$/, '.ts')));
}

export function violations(files: readonly string[], read: (file: string) => string = (f) => readFileSync(f, 'utf8')): string[] {
  const found: string[] = [];
  for (const file of files) {
    const from = roomOf(file);
    const allowed = ALLOWED[from];
    if (!allowed) {
      found.push(`${path.relative(REPO_ROOT, file)}: room "${from}" is not in the drawing`);
      continue;
    }
    for (const target of importsOf(file, read(file))) {
      const to = roomOf(target);
      if (to !== from && !allowed.includes(to)) found.push(`${path.relative(REPO_ROOT, file)} → ${path.relative(REPO_ROOT, target)} (${from} may not import ${to})`);
    }
  }
  return found;
}

const sources = (readdirSync(SRC, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => path.join(SRC, f));

describe('rooms', () => {
  test('no file in src imports upward or from a sibling application', () => {
    assert.ok(sources.length > 50, `found only ${sources.length} source files`);
    assert.deepEqual(violations(sources), []);
  });

  test('the check sees an application importing another, the core importing plumbing, and a dynamic import', () => {
    const cases: Record<string, string> = {
      [path.join(SRC, 'review', 'x.ts')]: "import { createKafkaPipeline } from '../screening/kafka/pipeline.js';",
      [path.join(SRC, 'policy', 'x.ts')]: "import type { Fetcher } from '../net/fetcher.js';",
      [path.join(SRC, 'config.ts')]: "const { decide } = await import('./policy/index.js');",
      [path.join(SRC, 'kafka', 'x.ts')]: "export { readPool } from '../screening/pool.js';",
    };
    const found = violations(Object.keys(cases), (f) => cases[f]!);
    assert.equal(found.length, 4, found.join('\n'));
  });

  test('every room in the drawing only names rooms that exist', () => {
    const rooms = new Set(sources.map(roomOf));
    for (const [room, allowed] of Object.entries(ALLOWED)) {
      assert.ok(rooms.has(room), `${room} has no source file`);
      for (const r of allowed) assert.ok(rooms.has(r), `${room} may import ${r}, which has no source file`);
    }
  });
});
