#!/usr/bin/env node
// `npm run setup`: npm ci with the two settings this project's native dependencies need, and, when
// it fails, what to do about it. Plain JavaScript with no imports beyond Node's own: it runs before
// node_modules exists. Extra arguments go to npm ci (e.g. `npm run setup -- --omit=dev`).
//
// - onnxruntime-node's install script only downloads its CUDA 12 binaries (hundreds of MB, from
//   NuGet); its CPU binaries ship in the package, and the gpu image runs the script itself. npm 11
//   skips it (package.json allowScripts denies it); npm 10, which Node 20 comes with, runs it, and
//   then ONNXRUNTIME_NODE_INSTALL=skip stops it. The variable, not a .npmrc key: npm warns on every
//   command about keys it does not know.
// - better-sqlite3 compiles from source when its prebuilt binary cannot be downloaded; node-gyp then
//   downloads Node's headers unless npm_config_nodedir points at a copy. Official Node builds, the
//   node images and Debian's nodejs carry them next to the binary (<prefix>/include/node): use those.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** The prefix whose include/node holds the headers of the running Node's exact version, or undefined. */
function nodeHeadersPrefix() {
  const prefix = path.dirname(path.dirname(process.execPath));
  const versionHeader = path.join(prefix, 'include', 'node', 'node_version.h');
  if (!existsSync(versionHeader)) return undefined;
  const text = readFileSync(versionHeader, 'utf8');
  const version = ['MAJOR', 'MINOR', 'PATCH'].map((part) => new RegExp(`#define NODE_${part}_VERSION (\\d+)`).exec(text)?.[1]).join('.');
  return version === process.versions.node ? prefix : undefined;
}

const env = { ...process.env };
env.ONNXRUNTIME_NODE_INSTALL ||= 'skip';
const headers = nodeHeadersPrefix();
if (!env.npm_config_nodedir && headers) env.npm_config_nodedir = headers;

const args = ['ci', ...process.argv.slice(2)];
const command = [`ONNXRUNTIME_NODE_INSTALL=${env.ONNXRUNTIME_NODE_INSTALL}`,
  ...(env.npm_config_nodedir ? [`npm_config_nodedir=${env.npm_config_nodedir}`] : []), 'npm', ...args].join(' ');
console.error(`setup: ${command}`);
// Under `npm run`, npm_execpath is the npm that runs this; use the same one.
const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
const result = spawnSync(npm[0], [...npm.slice(1), ...args], { env, stdio: 'inherit' });
const status = result.status ?? 1;
if (status !== 0) {
  const headerAdvice = env.npm_config_nodedir
    ? `   node-gyp compiled against the headers in ${env.npm_config_nodedir}/include/node; check that python3, make and g++\n   are installed (Debian/Ubuntu: apt-get install python3 make g++).`
    : `   No headers of Node ${process.versions.node} were found next to ${process.execPath}, so node-gyp tried to download them:\n   a "gyp ERR! ... network connectivity" error means that. Install Node from an official build (its\n   tarball has include/node), or run with npm_config_nodedir=<dir> where <dir>/include/node/node.h is this\n   Node's, plus python3, make and g++.`;
  console.error(`
setup: npm ci failed (${result.error?.message ?? `exit ${status}`}). On a machine that cannot download, the two usual causes:
 - better-sqlite3 (the review console's database) found no prebuilt binary to download and compiled from source.
${headerAdvice}
 - onnxruntime-node tried to download its CUDA binaries: keep ONNXRUNTIME_NODE_INSTALL=skip (the default
   here). For the CUDA execution provider, after the install: ONNXRUNTIME_NODE_INSTALL=cuda12 node
   node_modules/onnxruntime-node/script/install.js (needs NuGet).
The command was: ${command}`);
}
process.exit(status);
