import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT } from '../../src/config.js';
import { baseImageOf, copied, copySources, dockerignored, importGraph, isFullImageReference, lineage, lintProblems, nativeModuleProblems, parseDockerfile, stageReferenceProblems, type Stage } from './dockerfile.js';

const dockerfile = readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfile);
const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { engines: { node: string }; scripts: Record<string, string>; dependencies: Record<string, string> };
const defaults = parseYaml(readFileSync(path.join(REPO_ROOT, 'configs', 'default.yaml'), 'utf8')) as { server: { port: number } };
const ignorePatterns = readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
const TARGETS = ['cpu', 'gpu'] as const;
const instructionsOf = (target: string, op: string) => (stages.find((s) => s.name === target)?.instructions ?? []).filter((i) => i.op === op);
/** The stage and the stages it is built FROM, down to the base image. */
const fromChain = (target: string, all = stages) => {
  const out: Stage[] = [];
  for (let s = all.find((x) => x.name === target); s && !out.includes(s); s = all.find((x) => x.name === s!.from)) out.push(s);
  return out;
};
const entryOfNpmStart = () => {
  const m = /(?:^|\s)(?:tsx|node(?:\s+--import\s+tsx)?)\s+(\S+\.ts)\b/.exec(pkg.scripts.start ?? '');
  assert.ok(m, `cannot find the entry file in npm start: ${pkg.scripts.start}`);
  return m[1] as string;
};

describe('Dockerfile', () => {
  test('has the cpu and gpu targets, the gpu one on a CUDA cuDNN runtime base', () => {
    for (const t of TARGETS) assert.ok(stages.some((s) => s.name === t), `stage ${t}`);
    assert.match(baseImageOf(stages, 'gpu'), /^nvidia\/cuda:12\.[\d.]+-cudnn\d*-runtime-(ubuntu|debian)/);
    assert.match(dockerfile, /docker build --target cpu/);
    assert.match(dockerfile, /docker build --target gpu/);
  });

  test('every Node base image has the major version package.json engines.node asks for', () => {
    const major = /(\d+)/.exec(pkg.engines.node)?.[1];
    assert.ok(major, 'engines.node names a major version');
    const nodeImages = stages.filter((s) => /^node:/.test(s.from));
    assert.ok(nodeImages.length > 0);
    for (const s of nodeImages) assert.equal(/^node:(\d+)/.exec(s.from)?.[1], major, `stage ${s.name} FROM ${s.from}`);
    // The CUDA-based targets take their node binary from a node:<major> stage.
    for (const t of ['gpu', 'train-gpu']) {
      const copy = fromChain(t).flatMap((s) => s.instructions).find((i) => i.op === 'COPY' && /\/bin\/node\b/.test(i.args));
      assert.ok(copy?.refs[0], `the ${t} target copies a node binary`);
      assert.match(baseImageOf(stages, copy.refs[0]), new RegExp(`^node:${major}\\b`));
    }
  });

  test('both targets run the npm start entry with tsx, as production, non-root, with a /healthz HEALTHCHECK', () => {
    const entry = entryOfNpmStart();
    for (const t of TARGETS) {
      const cmd = instructionsOf(t, 'CMD').at(-1);
      assert.ok(cmd, `${t} has a CMD`);
      assert.deepEqual(JSON.parse(cmd.args), ['node', '--import', 'tsx', entry], `${t} CMD`);
      const env = instructionsOf(t, 'ENV').map((i) => i.args).join(' ');
      assert.match(env, /\bNODE_ENV=production\b/, `${t} NODE_ENV`);
      const user = instructionsOf(t, 'USER').at(-1)?.args ?? 'root';
      assert.ok(!/^(root|0)(:|$)/.test(user), `${t} runs as ${user}`);
      assert.match(instructionsOf(t, 'HEALTHCHECK').at(-1)?.args ?? '', /\/healthz/, `${t} HEALTHCHECK`);
    }
  });

  test('EXPOSE and PORT match the default port in configs/default.yaml', () => {
    for (const t of TARGETS) {
      assert.deepEqual(instructionsOf(t, 'EXPOSE').map((i) => Number(i.args)), [defaults.server.port], `${t} EXPOSE`);
      const port = /\bPORT=(\d+)/.exec(instructionsOf(t, 'ENV').map((i) => i.args).join(' '))?.[1];
      if (port) assert.equal(Number(port), defaults.server.port, `${t} ENV PORT`);
    }
  });

  test('the files the CMD needs are copied into both targets and not excluded by .dockerignore', () => {
    const needed = [...importGraph(entryOfNpmStart()), 'package.json', 'package-lock.json', 'configs/default.yaml', 'models/wildlife-resnet50vd/model.json', 'models/wildlife-resnet50vd/model.onnx'];
    for (const t of TARGETS) {
      const sources = copySources(lineage(stages, t));
      const missing = needed.filter((f) => !copied(f, sources));
      assert.deepEqual(missing, [], `${t} does not COPY these`);
      const npmCi = lineage(stages, t).some((s) => s.instructions.some((i) => i.op === 'RUN' && /\bnpm ci\b.*--omit=dev/.test(i.args)));
      assert.ok(npmCi, `${t}'s node_modules come from npm ci --omit=dev`);
    }
    assert.deepEqual(needed.filter((f) => dockerignored(f, ignorePatterns)), [], '.dockerignore excludes needed files');
  });

  test('the cpu image holds the review console: the entry of npm run review, every module it imports, and the page assets it serves', () => {
    const entry = /^tsx\s+(\S+\.ts)$/.exec(pkg.scripts.review ?? '')?.[1];
    assert.equal(entry, 'src/review/main.ts', `npm run review: ${pkg.scripts.review}`);
    // app.ts serves src/review/static/ (read at run time, not imported); the layout links these.
    const staticDir = path.join(REPO_ROOT, 'src', 'review', 'static');
    const assets = readdirSync(staticDir).map((f) => `src/review/static/${f}`);
    const layout = readFileSync(path.join(REPO_ROOT, 'src', 'review', 'html.ts'), 'utf8');
    const linked = [...layout.matchAll(/(?:href|src)="\/static\/([^"]+)"/g)].map((m) => `src/review/static/${m[1]}`);
    assert.ok(linked.length >= 2, 'the layout links a stylesheet and a script');
    for (const f of linked) assert.ok(assets.includes(f), `${f} is linked by the layout but missing`);
    assert.match(readFileSync(path.join(REPO_ROOT, 'src', 'review', 'app.ts'), 'utf8'), /express\.static\(STATIC_DIR/);
    const needed = [...importGraph(entry), ...importGraph('src/review/cli/hash-password.ts'), ...assets, 'package.json', 'configs/default.yaml'];
    const sources = copySources(lineage(stages, 'cpu'));
    assert.deepEqual(needed.filter((f) => !copied(f, sources)), [], 'cpu does not COPY these');
    assert.deepEqual(needed.filter((f) => dockerignored(f, ignorePatterns)), [], '.dockerignore excludes these');
    assert.match(dockerfile, /^#\s+.*wildlife-screening:cpu node --import tsx src\/review\/main\.ts$/m, 'the header shows how to run it');
  });

  test('the node_modules stages can compile better-sqlite3 against Node\'s own headers, and no final image carries the compilers', () => {
    assert.ok(pkg.dependencies['better-sqlite3'], 'better-sqlite3 is a runtime dependency');
    const installScript = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'node_modules', 'better-sqlite3', 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.install ?? '';
    assert.match(installScript, /node-gyp/, 'its install script falls back to node-gyp');
    const toolchain = /apt-get install\b(?=.*--no-install-recommends)(?=.*\bpython3\b)(?=.*\bmake\b)(?=.*\bg\+\+)/;
    const builders = stages.filter((s) => s.instructions.some((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args)));
    assert.deepEqual(builders.map((s) => s.name).sort(), ['deps', 'deps-gpu', 'deps-train']);
    for (const s of builders) {
      const runs = s.instructions.filter((i) => i.op === 'RUN');
      const tools = runs.findIndex((i) => toolchain.test(i.args));
      assert.ok(tools >= 0 && tools < runs.findIndex((i) => /\bnpm ci\b/.test(i.args)), `${s.name} installs python3, make and g++ before npm ci`);
      assert.match(runs[tools]!.args, /rm -rf \/var\/lib\/apt\/lists/, `${s.name} cleans the apt lists`);
      // node-gyp compiles against the headers of the very node that runs, not a download.
      const env = s.instructions.filter((i) => i.op === 'ENV').map((i) => i.args).join(' ');
      assert.match(env, /\bnpm_config_nodedir=\/usr\/local\b/, `${s.name} points node-gyp at /usr/local`);
      const hasHeaders = /^node:/.test(baseImageOf(stages, s.name)) || s.instructions.some((i) => i.op === 'COPY' && i.refs.length > 0 && /^\/usr\/local\/include\/node\s/.test(i.args));
      assert.ok(hasHeaders, `${s.name} has Node's headers under /usr/local/include/node`);
    }
    for (const t of [...TARGETS, 'train-gpu']) {
      // Final images take node_modules with COPY --from, never a builder stage as (part of) their base.
      for (const stage of fromChain(t)) {
        assert.ok(!builders.includes(stage), `${t} is built FROM ${stage.name}, a stage with compilers`);
        for (const i of stage.instructions.filter((x) => x.op === 'RUN')) assert.doesNotMatch(i.args, /\b(g\+\+|gcc|build-essential|make)\b/, `${t} installs a compiler in ${stage.name}`);
      }
    }
  });

  test('every FROM and --from names a stage defined above it or a full image reference', () => {
    assert.deepEqual(stageReferenceProblems(stages), []);
    // node-bin is used by the CUDA bases, so the order is what makes them buildable.
    const nodeBin = stages.findIndex((s) => s.name === 'node-bin');
    for (const user of ['gpu-base', 'train-base']) assert.ok(nodeBin >= 0 && nodeBin < stages.findIndex((s) => s.name === user), `node-bin comes before ${user}`);
  });

  test('every image loads native modules that npm ci installed on its own base image', () => {
    assert.deepEqual(nativeModuleProblems(stages), []);
    for (const t of [...TARGETS, 'train-gpu']) {
      const copy = fromChain(t).flatMap((s) => s.instructions).find((i) => i.op === 'COPY' && i.refs.length > 0 && /node_modules\s/.test(i.args));
      assert.ok(copy, `${t} copies node_modules from a stage`);
      assert.equal(baseImageOf(stages, copy.refs[0] as string), baseImageOf(stages, t), `${t}'s node_modules`);
    }
  });

  test('dockerfile-utils, the Dockerfile language server\'s linter, reports nothing', () => {
    assert.deepEqual(lintProblems(dockerfile), []);
  });

  test('the stage graph, base image and lint checks fail on Dockerfiles that are broken that way', () => {
    // node-bin moved after the stages that copy from it (the defect BuildKit fails on).
    const nodeBin = /^FROM \$\{NODE_IMAGE\} AS node-bin\n/m;
    assert.match(dockerfile, nodeBin);
    const late = parseDockerfile(`${dockerfile.replace(nodeBin, '')}\nFROM \${NODE_IMAGE} AS node-bin\n`);
    assert.ok(stageReferenceProblems(late).some((p) => /--from=node-bin names stage node-bin of line \d+, which is not defined above it/.test(p)), stageReferenceProblems(late).join('\n'));
    const unknown = parseDockerfile(dockerfile.replace('COPY --from=app /app ./', 'COPY --from=application /app ./'));
    assert.ok(stageReferenceProblems(unknown).some((p) => /--from=application names no stage/.test(p)));
    const forwardFrom = parseDockerfile(dockerfile.replace('FROM gpu-base AS deps-gpu', 'FROM gpu AS deps-gpu'));
    assert.ok(stageReferenceProblems(forwardFrom).some((p) => /FROM gpu names stage gpu/.test(p)));
    assert.deepEqual(stageReferenceProblems(parseDockerfile(dockerfile.replace('COPY --from=app /app ./', 'COPY --from=busybox:1.36 /bin/sh /bin/sh'))), []);
    assert.ok(isFullImageReference('nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04') && isFullImageReference('registry.example:5000/team/node@sha256:' + 'a'.repeat(64)));
    assert.ok(!isFullImageReference('node-bin') && !isFullImageReference('registry.example:5000/node'));
    // The gpu image's node_modules installed on the node image again (the glibc mismatch).
    const debianDeps = parseDockerfile(dockerfile.replace('FROM gpu-base AS deps-gpu', 'FROM ${NODE_IMAGE} AS deps-gpu'));
    assert.ok(nativeModuleProblems(debianDeps).some((p) => /gpu runs on nvidia\/cuda:.*ubuntu22\.04 but takes node_modules from deps-gpu, installed on node:20/.test(p)), nativeModuleProblems(debianDeps).join('\n'));
    assert.ok(lintProblems(dockerfile.replace('EXPOSE 8080', 'EXPOSE http')).some((p) => /Invalid containerPort: http/.test(p)));
    assert.ok(lintProblems(dockerfile.replace('COPY --from=app', 'COPY --form=app')).some((p) => /Unknown flag: form/.test(p)));
  });

  test('.dockerignore keeps local environments, data and non-runtime code out of the build context', () => {
    for (const f of ['node_modules/x/index.js', '.venv/bin/python', 'kafka/data/x', 'runs/r1/model.onnx', 'test/config.test.ts', 'docs/OPERATIONS.md', 'src/training/python/log/workerlog.0', '.git/HEAD']) {
      assert.ok(dockerignored(f, ignorePatterns), `${f} is ignored`);
    }
  });

  test('the gpu target installs the CUDA 12 onnxruntime-node binaries with the variable its install script reads', () => {
    const installUtils = readFileSync(path.join(REPO_ROOT, 'node_modules', 'onnxruntime-node', 'script', 'install-utils.js'), 'utf8');
    assert.match(installUtils, /process\.env\.ONNXRUNTIME_NODE_INSTALL\b/);
    const gpuStages = lineage(stages, 'gpu');
    const builder = gpuStages.find((s) => s.instructions.some((i) => i.op === 'ENV' && /\bONNXRUNTIME_NODE_INSTALL=cuda12\b/.test(i.args)));
    assert.ok(builder, 'a stage of the gpu target sets ONNXRUNTIME_NODE_INSTALL=cuda12');
    assert.ok(builder.instructions.some((i) => i.op === 'RUN' && /npm ci/.test(i.args) && /script\/install/.test(i.args)), 'and runs the install script');
    assert.ok(!lineage(stages, 'cpu').includes(builder), 'the cpu target does not pull CUDA binaries');
    // The other npm ci stages switch the download off themselves: .npmrc does not (npm warns on the key).
    for (const s of stages.filter((x) => x !== builder && x.instructions.some((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args)))) {
      assert.match(s.instructions.filter((i) => i.op === 'ENV').map((i) => i.args).join(' '), /\bONNXRUNTIME_NODE_INSTALL=skip\b/, `${s.name} skips the CUDA download`);
    }
    assert.match(dockerfile, /ARG WITH_TENSORRT=false/);
  });

  test('the train-gpu target runs the training CLI with the toolchain files, a venv stamp, and no dev-only paths ignored', () => {
    const train = stages.find((s) => s.name === 'train-gpu');
    assert.ok(train, 'a train-gpu stage');
    const entry = train.instructions.find((i) => i.op === 'ENTRYPOINT');
    assert.match(entry?.args ?? '', /src\/training\/cli\/train\.ts/);
    const copies = train.instructions.filter((i) => i.op === 'COPY').map((i) => i.args);
    assert.ok(copies.some((c) => /^src src$/.test(c)) && copies.some((c) => /^configs configs$/.test(c)), copies.join(' | '));
    assert.ok(train.instructions.some((i) => i.op === 'RUN' && /requirements\.sha256/.test(i.args)), 'writes the venv stamp setup:train checks');
    const ignore = readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const needed of ['src/training', 'src/training/python', 'configs']) assert.ok(!ignore.includes(needed), `${needed} is ignored`);
  });

  test('the parser sees a broken Dockerfile as broken (the checks can fail)', () => {
    const broken = parseDockerfile(dockerfile.replace(/"src\/main\.ts"/g, '"src/server.ts"').replace(/EXPOSE 8080/g, 'EXPOSE 3000'));
    const cpu = broken.find((s) => s.name === 'cpu') as Stage;
    assert.notDeepEqual(JSON.parse(cpu.instructions.filter((i) => i.op === 'CMD').at(-1)?.args ?? '[]'), ['node', '--import', 'tsx', entryOfNpmStart()]);
    assert.equal(cpu.instructions.find((i) => i.op === 'EXPOSE')?.args, '3000');
    assert.ok(dockerignored('src/main.ts', [...ignorePatterns, 'src']));
    assert.ok(!dockerignored('src/main.ts', [...ignorePatterns, 'src', '!src/main.ts']));
    assert.ok(!copied('src/model/engine.ts', ['src/*.ts']));
  });
});
