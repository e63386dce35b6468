import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { REPO_ROOT } from '../../src/config.js';

const SETUP = path.join(REPO_ROOT, 'scripts', 'setup.mjs');
const scratch = mkdtempSync(path.join(tmpdir(), 'setup-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
const emptyUserConfig = path.join(scratch, 'empty-npmrc');
writeFileSync(emptyUserConfig, '');

/**
 * The environment of a new user: none of the settings the script is about, and no user .npmrc (this
 * machine's sets nodedir), so what the script derives is what npm gets.
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|ONNXRUNTIME_NODE_INSTALL)/i.test(k)));
  return { ...env, npm_config_userconfig: emptyUserConfig, ...extra };
}

/** A real project for npm ci whose own install script records what it was given, or fails. */
function project(name: string, installScript?: string): string {
  const dir = path.join(scratch, name);
  const record = "require('fs').writeFileSync('seen.json', JSON.stringify({ ort: process.env.ONNXRUNTIME_NODE_INSTALL, nodedir: process.env.npm_config_nodedir }))";
  const pkg = { name, version: '1.0.0', private: true, scripts: { install: installScript ?? `node -e "${record}"` } };
  const lock = { name, version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name, version: '1.0.0', hasInstallScript: true } } };
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify(pkg));
  writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify(lock));
  return dir;
}

const runSetup = (cwd: string, env: NodeJS.ProcessEnv, node = process.execPath) => spawnSync(node, [SETUP], { cwd, env, encoding: 'utf8', timeout: 120_000 });
const seen = (dir: string) => {
  const { ort, nodedir } = JSON.parse(readFileSync(path.join(dir, 'seen.json'), 'utf8')) as { ort?: string; nodedir?: string };
  return { ort, nodedir };
};

/** Where this Node's own headers are, checked independently of the script: <prefix>/include/node. */
const prefix = path.dirname(path.dirname(process.execPath));
const versionHeader = path.join(prefix, 'include', 'node', 'node_version.h');
const hasOwnHeaders = existsSync(versionHeader)
  && ['MAJOR', 'MINOR', 'PATCH'].map((p) => new RegExp(`NODE_${p}_VERSION (\\d+)`).exec(readFileSync(versionHeader, 'utf8'))?.[1]).join('.') === process.versions.node;

describe('npm run setup (scripts/setup.mjs)', () => {
  test('runs npm ci with the CUDA download skipped and node-gyp pointed at this Node\'s own headers', () => {
    const dir = project('defaults');
    const r = runSetup(dir, cleanEnv());
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(seen(dir), { ort: 'skip', nodedir: hasOwnHeaders ? prefix : undefined });
    assert.match(r.stderr, /^setup: ONNXRUNTIME_NODE_INSTALL=skip .*npm ci$/m, 'it prints the full command it runs');
  });

  test('keeps the values a user set', () => {
    const dir = project('overrides');
    const r = runSetup(dir, cleanEnv({ ONNXRUNTIME_NODE_INSTALL: 'cuda12', npm_config_nodedir: path.join(scratch, 'headers') }));
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(seen(dir), { ort: 'cuda12', nodedir: path.join(scratch, 'headers') });
  });

  test('a failing npm ci exits with its code and says what to do', () => {
    const r = runSetup(project('fails', 'exit 3'), cleanEnv());
    assert.equal(r.status, 3);
    assert.match(r.stderr, /setup: npm ci failed \(exit 3\)/);
    assert.match(r.stderr, /python3, make and g\+\+/);
    assert.match(r.stderr, /ONNXRUNTIME_NODE_INSTALL=skip/);
    assert.match(r.stderr, /The command was: ONNXRUNTIME_NODE_INSTALL=skip .*npm ci$/m);
  });

  test('with a Node that has no headers beside it, it sets no nodedir and the failure names the missing headers', () => {
    // A real node binary in a directory with no include/node next to it.
    const bin = path.join(scratch, 'bare', 'bin');
    mkdirSync(bin, { recursive: true });
    copyFileSync(process.execPath, path.join(bin, 'node'));
    chmodSync(path.join(bin, 'node'), 0o755);
    const env = cleanEnv({ PATH: `${bin}:${process.env.PATH ?? ''}` });
    const ok = project('bare-ok');
    assert.equal(runSetup(ok, env, path.join(bin, 'node')).status, 0);
    assert.deepEqual(seen(ok), { ort: 'skip', nodedir: undefined });
    const r = runSetup(project('bare-fails', 'exit 1'), env, path.join(bin, 'node'));
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`No headers of Node ${process.versions.node.replace(/\./g, '\\.')} were found next to ${bin}/node`));
    assert.match(r.stderr, /npm_config_nodedir=<dir>/);
  });

  test('headers of another Node version beside the binary are not used', () => {
    const root = path.join(scratch, 'stale-node');
    mkdirSync(path.join(root, 'bin'), { recursive: true });
    mkdirSync(path.join(root, 'include', 'node'), { recursive: true });
    copyFileSync(process.execPath, path.join(root, 'bin', 'node'));
    chmodSync(path.join(root, 'bin', 'node'), 0o755);
    const [major] = process.versions.node.split('.');
    writeFileSync(path.join(root, 'include', 'node', 'node_version.h'), `#define NODE_MAJOR_VERSION ${Number(major) - 2}\n#define NODE_MINOR_VERSION 0\n#define NODE_PATCH_VERSION 0\n`);
    const dir = project('stale');
    const r = runSetup(dir, cleanEnv({ PATH: `${path.join(root, 'bin')}:${process.env.PATH ?? ''}` }), path.join(root, 'bin', 'node'));
    assert.equal(r.status, 0, String(r.error ?? r.stderr));
    assert.deepEqual(seen(dir), { ort: 'skip', nodedir: undefined });
  });
});

describe('installing this project', () => {
  test('npm ci on this Node prints no engine warning and no unknown .npmrc key', () => {
    // The project's own package.json, lockfile and .npmrc, resolved by npm without touching node_modules.
    const dir = path.join(scratch, 'repo');
    mkdirSync(dir, { recursive: true });
    for (const f of ['package.json', 'package-lock.json', '.npmrc']) copyFileSync(path.join(REPO_ROOT, f), path.join(dir, f));
    const r = spawnSync('npm', ['ci', '--dry-run'], { cwd: dir, env: cleanEnv(), encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const output = `${r.stdout}\n${r.stderr}`;
    assert.doesNotMatch(output, /EBADENGINE/, 'a locked package does not support this Node');
    assert.doesNotMatch(output, /Unknown (project|env|cli) config/, '.npmrc or the environment holds a key npm does not know');
    // What the .npmrc key used to do: npm 11 skips onnxruntime-node's CUDA download (npm 10 gets the variable from setup).
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
    assert.equal(pkg.allowScripts?.['onnxruntime-node'], false);
  });
});
