/**
 * The operations side of the continued-SSLD loop (k8s/training): the labels consumer with its PVC
 * and config, and the SSLD Job, next to the supervised training Job. Rendered with the offline
 * renderer, validated against the Kubernetes schemas, and checked against what they run: the npm
 * scripts and CLI flags in the repo, the Dockerfile target of each image, the SSLD config, and the
 * service's own Kafka settings.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { loadConfig, REPO_ROOT } from '../../src/config.js';
import { loadSsldConfig } from '../../src/training/ssld/config.js';
import { copied, copySources, dockerignored, entrypointOf, IGNORE_PATTERNS, imageTargets, importGraph, lineage, STAGES, workdirOf } from './dockerfile.js';
import { renderKustomization, type Obj, type Resource } from './kustomize.js';
import { assertHardenedContainer, containers, cpuCores, hasKubectl, K8S_DIR, normalise, podSpec, type Container } from './manifests.js';

const TRAINING_DIR = path.join(K8S_DIR, 'training');
const rendered = renderKustomization(TRAINING_DIR);
/** A fresh copy each call, so a test cannot leak edits into another. */
const render = (): Resource[] => structuredClone(rendered);
const get = (rs: Resource[], kind: string, name: string): Resource => {
  const found = rs.filter((r) => r.kind === kind && (r.metadata.name === name || (kind === 'ConfigMap' && r.metadata.name.startsWith(`${name}-`))));
  assert.equal(found.length, 1, `exactly one ${kind}/${name}`);
  return found[0] as Resource;
};
const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
const NAME_LABEL = 'app.kubernetes.io/name';

type Mount = { name: string; mountPath: string; readOnly?: boolean; subPath?: string };
type Volume = { name: string; persistentVolumeClaim?: { claimName: string; readOnly?: boolean }; emptyDir?: Obj; configMap?: { name: string } };

const argOf = (args: string[], flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
const mountsOf = (c: Container) => (c.volumeMounts ?? []) as Mount[];
const volumesOf = (r: Resource) => (podSpec(r).volumes ?? []) as Volume[];
/** The mount a container path lives on (the longest mountPath that contains it). */
function mountFor(c: Container, p: string): Mount | undefined {
  return mountsOf(c).filter((m) => p === m.mountPath || p.startsWith(`${m.mountPath.replace(/\/$/, '')}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
}
const volumeOf = (r: Resource, m: Mount | undefined) => volumesOf(r).find((v) => v.name === m?.name);

/** The Dockerfile target an image name:tag is built from (Dockerfile header: docker build --target … -t …). */
function targetOf(image: string): string {
  const target = imageTargets().get(image);
  assert.ok(target, `no "docker build --target … -t ${image}" in the Dockerfile header; known: ${[...imageTargets().keys()].join(', ')}`);
  assert.ok(STAGES.some((s) => s.name === target), `Dockerfile has no stage ${target}`);
  return target;
}

/** The process a container starts: its command, or the image's ENTRYPOINT, followed by its args. */
function argvOf(c: Container): string[] {
  const command = c.command as string[] | undefined;
  return [...(command ?? entrypointOf(STAGES, targetOf(c.image))), ...((c.args as string[] | undefined) ?? [])];
}

/**
 * The npm script whose command this argv runs: `tsx FILE [SUB…]` in package.json runs as
 * `node --import tsx FILE [SUB…]` (what the images' CMD/ENTRYPOINT use; the training image has no npm).
 */
function npmScriptOf(argv: string[]): { script: string; file: string; rest: string[] } {
  assert.deepEqual(argv.slice(0, 3), ['node', '--import', 'tsx'], `runs node --import tsx <entry>, not ${argv.join(' ')}`);
  for (const [script, cmd] of Object.entries(pkg.scripts)) {
    const words = cmd.trim().split(/\s+/);
    if (words[0] !== 'tsx' || words.length < 2 || /[;&|$`]/.test(cmd)) continue;
    const tail = words.slice(1);
    if (isDeepStrictEqual(argv.slice(3, 3 + tail.length), tail)) return { script, file: tail[0] as string, rest: argv.slice(3 + tail.length) };
  }
  assert.fail(`no package.json script runs ${argv.slice(3, 5).join(' ')}`);
}

/** The --flags a CLI declares in its parseFlags() calls (every subcommand's, together). */
function declaredFlags(file: string): Set<string> {
  const text = readFileSync(path.join(REPO_ROOT, file), 'utf8');
  const flags = new Set<string>();
  for (const call of text.matchAll(/parseFlags\([^,]+,\s*\{([\s\S]*?)\n\s*\},/g)) {
    for (const m of (call[1] as string).matchAll(/^\s*'?([a-z][\w-]*)'?:\s*\{\s*type:/gm)) flags.add(m[1] as string);
  }
  assert.ok(flags.size > 0, `no parseFlags() flags found in ${file}`);
  return flags;
}

/** A model directory (model.json + model.onnx) at a container path: on a mount, or baked into the image. */
function assertModelDirIn(r: Resource, c: Container, dir: string, what: string): void {
  if (mountFor(c, dir)) return; // comes from a volume at run time
  const target = targetOf(c.image);
  const workdir = workdirOf(STAGES, target);
  const rel = path.posix.relative(workdir, path.posix.resolve(workdir, dir));
  assert.ok(!rel.startsWith('..'), `${what} ${dir} is outside the image's working directory ${workdir} and not on a volume`);
  const sources = copySources(lineage(STAGES, target));
  for (const f of ['model.json', 'model.onnx']) {
    const file = `${rel}/${f}`;
    assert.ok(existsSync(path.join(REPO_ROOT, file)), `${what}: ${file} is not in the repo`);
    assert.ok(copied(file, sources), `${what}: the ${target} image (${r.kind}/${r.metadata.name}) does not COPY ${file}`);
    assert.ok(!dockerignored(file, IGNORE_PATTERNS), `${what}: .dockerignore excludes ${file}`);
  }
}

describe('the training kustomization (k8s/training)', () => {
  test('renders the training Job, the labels consumer with its PVC and config, and the SSLD Job, in namespace wildlife', () => {
    const rs = render();
    get(rs, 'Job', 'wildlife-train-gpu');
    get(rs, 'Job', 'wildlife-ssld-gpu');
    get(rs, 'Deployment', 'wildlife-labels');
    get(rs, 'PersistentVolumeClaim', 'wildlife-labels');
    get(rs, 'ConfigMap', 'wildlife-labels-config');
    assert.equal(rs.length, 5, rs.map((r) => `${r.kind}/${r.metadata.name}`).join(', '));
    assert.deepEqual([...new Set(rs.map((r) => r.metadata.namespace))], ['wildlife']);
    assert.ok(!rs.some((r) => r.kind === 'Secret'), 'no Secret is rendered from git');
  });

  test('every resource validates against its Kubernetes schema', async () => {
    const problems: string[] = [];
    for (const r of render()) {
      const Model = ((await import(`kubernetes-models/${r.apiVersion}/${r.kind}`)) as Record<string, new (data: unknown) => { validate(): void }>)[r.kind];
      assert.ok(Model, `kubernetes-models has ${r.apiVersion} ${r.kind}`);
      try {
        new Model(r).validate();
      } catch (err) {
        problems.push(`${r.kind}/${r.metadata.name}: ${(err as Error).message}`);
      }
    }
    assert.deepEqual(problems, []);
    // The check can fail.
    const { Deployment } = await import('kubernetes-models/apps/v1/Deployment');
    const broken = get(render(), 'Deployment', 'wildlife-labels');
    (broken.spec as Obj).replicas = 'one';
    assert.throws(() => new Deployment(broken as never).validate(), /replicas/);
  });

  test('each workload has its own app.kubernetes.io/name, so `kubectl apply -k k8s/training -l …` applies one without starting the others', () => {
    const rs = render();
    const groups = new Map<string, string[]>();
    for (const r of rs) {
      const name = r.metadata.labels?.[NAME_LABEL];
      assert.ok(name, `${r.kind}/${r.metadata.name} has no ${NAME_LABEL} label`);
      groups.set(name, [...(groups.get(name) ?? []), `${r.kind}/${r.metadata.name.replace(/-[a-z0-9]{10}$/, '')}`]);
      const template = ((r.spec as Obj | undefined)?.template as Obj | undefined)?.metadata as { labels?: Record<string, string> } | undefined;
      if (template) assert.equal(template.labels?.[NAME_LABEL], name, `${r.kind}/${r.metadata.name}: its pods carry the same name`);
    }
    assert.deepEqual(Object.fromEntries([...groups].map(([k, v]) => [k, v.sort()])), {
      'wildlife-training': ['Job/wildlife-train-gpu'],
      'wildlife-labels': ['ConfigMap/wildlife-labels-config', 'Deployment/wildlife-labels', 'PersistentVolumeClaim/wildlife-labels'],
      'wildlife-ssld': ['Job/wildlife-ssld-gpu'],
    });
  });

  test('every container runs the entry of an npm script from an image that holds it, with flags its CLI declares', () => {
    for (const r of render().filter((x) => x.kind === 'Job' || x.kind === 'Deployment')) {
      for (const c of containers(r)) {
        const where = `${r.kind}/${r.metadata.name} ${c.name}`;
        const target = targetOf(c.image);
        const { script, file, rest } = npmScriptOf(argvOf(c));
        assert.ok(pkg.scripts[script], `${where}: npm script ${script}`);
        // The entry and every local module it imports are in the image.
        const sources = copySources(lineage(STAGES, target));
        const missing = [...importGraph(file), 'package.json'].filter((f) => !copied(f, sources) || dockerignored(f, IGNORE_PATTERNS));
        assert.deepEqual(missing, [], `${where}: the ${target} image lacks these files of ${file}`);
        const flags = declaredFlags(file);
        for (const a of rest.filter((x) => x.startsWith('--'))) assert.ok(flags.has(a.slice(2)), `${where}: ${file} has no flag ${a}`);
      }
    }
  });

  test('every `npm run <script>` the training manifests mention exists in package.json', () => {
    const mentioned = new Set<string>();
    for (const f of readdirSync(TRAINING_DIR).filter((x) => /\.ya?ml$/.test(x))) {
      for (const m of readFileSync(path.join(TRAINING_DIR, f), 'utf8').matchAll(/npm run ([\w:-]+)/g)) mentioned.add(m[1] as string);
    }
    assert.ok(mentioned.has('labels:consume') && mentioned.has('ssld'), [...mentioned].join(', '));
    for (const s of mentioned) assert.ok(pkg.scripts[s], `package.json has no script ${s}`);
  });

  const kubectl = hasKubectl();
  test('the offline renderer agrees with kubectl kustomize where kubectl is installed', { skip: kubectl ? false : 'kubectl not installed' }, () => {
    const theirs = parseAllDocuments(execFileSync('kubectl', ['kustomize', TRAINING_DIR], { encoding: 'utf8' })).map((d) => d.toJS() as Resource);
    const key = (r: Resource) => `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;
    const mine = new Map(render().map((r) => [key(r), normalise(r)]));
    assert.deepEqual([...mine.keys()].sort(), theirs.map(key).sort(), 'same resources and names (incl. the ConfigMap hash)');
    for (const r of theirs) assert.ok(isDeepStrictEqual(mine.get(key(r)), normalise(r)), `${key(r)} differs`);
  });
});

describe('the labels consumer (k8s/training/labels-consumer.yaml)', () => {
  const deployment = () => get(render(), 'Deployment', 'wildlife-labels');
  const container = () => containers(deployment())[0] as Container;

  test('runs one replica with the Recreate strategy: the labelled set has one writer', () => {
    const spec = deployment().spec as { replicas: number; strategy: { type: string; rollingUpdate?: unknown } };
    assert.equal(spec.replicas, 1);
    assert.equal(spec.strategy.type, 'Recreate');
    assert.equal(spec.strategy.rollingUpdate, undefined);
    assert.equal(containers(deployment()).length, 1);
  });

  test('runs npm run labels:consume with --out on the labelled-set PVC and the pool read-only', () => {
    const d = deployment();
    const c = container();
    const { script, rest } = npmScriptOf(argvOf(c));
    assert.equal(script, 'labels:consume');
    const out = argOf(rest, '--out');
    assert.equal(out, '/data/labels');
    const outMount = mountFor(c, out);
    assert.equal(outMount?.mountPath, out, '--out is the mount point of the labelled-set volume');
    assert.ok(!outMount.readOnly && !outMount.subPath);
    const claim = volumeOf(d, outMount)?.persistentVolumeClaim;
    assert.equal(claim?.claimName, 'wildlife-labels');
    assert.ok(!claim.readOnly);
    const pvc = get(render(), 'PersistentVolumeClaim', 'wildlife-labels').spec as { accessModes: string[]; resources: { requests: { storage: string } } };
    assert.deepEqual(pvc.accessModes, ['ReadWriteOnce']);
    assert.ok(pvc.resources.requests.storage);
    const pool = argOf(rest, '--pool');
    assert.ok(pool);
    const poolMount = mountFor(c, pool);
    assert.equal(poolMount?.readOnly, true, '--pool is mounted read-only');
    assert.equal(volumeOf(d, poolMount)?.persistentVolumeClaim?.claimName, 'wildlife-pool');
    assertModelDirIn(d, c, argOf(rest, '--model') as string, '--model');
  });

  test('runs as non-root with a read-only root filesystem, no capabilities, a writable /tmp and bounded resources', () => {
    const d = deployment();
    const c = container();
    const podSc = (podSpec(d).securityContext ?? {}) as Obj;
    assertHardenedContainer(podSpec(d), c);
    assert.ok(podSc.fsGroup !== undefined, 'fsGroup, so the PVC is writable by the container user');
    assert.ok(volumeOf(d, mountFor(c, '/tmp/x'))?.emptyDir, '/tmp is an emptyDir');
    for (const k of ['cpu', 'memory']) {
      assert.ok(c.resources?.requests?.[k] !== undefined && c.resources?.limits?.[k] !== undefined, `requests and limits.${k}`);
    }
    assert.ok(cpuCores(c.resources?.requests?.cpu) <= cpuCores(c.resources?.limits?.cpu));
  });

  test('gets the service\'s Kafka settings from its mounted config file, and outlasts the drain on SIGTERM', () => {
    const rs = render();
    const d = get(rs, 'Deployment', 'wildlife-labels');
    const c = containers(d)[0] as Container;
    const configFile = c.env?.find((e) => e.name === 'CONFIG_FILE')?.value;
    assert.ok(configFile, 'CONFIG_FILE');
    const cm = get(rs, 'ConfigMap', 'wildlife-labels-config');
    const mount = mountFor(c, configFile);
    assert.equal(volumeOf(d, mount)?.configMap?.name, cm.metadata.name, 'the generated ConfigMap is mounted (name suffix rewritten)');
    assert.equal(path.posix.dirname(configFile), mount?.mountPath);
    const data = cm.data as Record<string, string>;
    assert.ok(path.posix.basename(configFile) in data, 'CONFIG_FILE names a key of the ConfigMap');
    // The same file on disk (k8s/training/), loaded as the consumer loads it (labels.ts: NODE_ENV unset).
    const file = path.join(TRAINING_DIR, path.posix.basename(configFile));
    assert.equal(readFileSync(file, 'utf8'), data[path.posix.basename(configFile)]);
    const mine = loadConfig({ CONFIG_FILE: file });
    const service = loadConfig({ CONFIG_FILE: path.join(K8S_DIR, 'base', 'service-config.yaml') });
    assert.ok(mine.kafka.brokers.length > 0, 'brokers are set');
    assert.deepEqual([...mine.kafka.brokers], [...service.kafka.brokers], 'the same brokers as the service (k8s/base/service-config.yaml)');
    assert.equal(mine.kafka.partitions, service.kafka.partitions);
    assert.equal(mine.kafka.replicationFactor, service.kafka.replicationFactor);
    assert.equal(c.env?.some((e) => e.name === 'KAFKA_BROKERS'), false, 'no second, unchecked broker list');
    // labels.ts: the Kafka drain is bounded by max(kafka.shutdownTimeoutMs, 10 s); then labels.csv
    // and report.json are compiled once more over all of decisions.jsonl.
    const drainS = Math.max(mine.kafka.shutdownTimeoutMs, 10_000) / 1000;
    const grace = Number(podSpec(d).terminationGracePeriodSeconds);
    assert.ok(grace >= drainS + 30, `terminationGracePeriodSeconds ${grace} leaves the final compile at least 30 s after a ${drainS} s drain`);
  });
});

describe('the SSLD Job (k8s/training/ssld-job-gpu.yaml)', () => {
  const job = () => get(render(), 'Job', 'wildlife-ssld-gpu');
  const container = () => containers(job())[0] as Container;
  const args = () => npmScriptOf(argvOf(container())).rest;

  test('runs npm run ssld with configs/train/ssld-wildlife.yaml, a config in the repo that validates', async () => {
    const { script, rest } = npmScriptOf(argvOf(container()));
    assert.equal(script, 'ssld');
    const config = argOf(rest, '--config');
    assert.equal(config, 'configs/train/ssld-wildlife.yaml');
    assert.ok(existsSync(path.join(REPO_ROOT, config)), `${config} exists`);
    await loadSsldConfig(path.join(REPO_ROOT, config));
    assert.ok(copied(config, copySources(lineage(STAGES, targetOf(container().image)))), 'the config is in the image');
  });

  test('requests one GPU on the GPU pool, runs once per pod, and fails at once on an error exit', () => {
    const j = job();
    const c = container();
    assert.equal(String(c.resources?.requests?.['nvidia.com/gpu']), '1');
    assert.equal(String(c.resources?.limits?.['nvidia.com/gpu']), '1', 'one training process (npm run ssld has no --nproc)');
    assert.ok(c.resources?.requests?.cpu !== undefined && c.resources?.requests?.memory !== undefined && c.resources?.limits?.memory !== undefined);
    const spec = podSpec(j);
    assert.equal(spec.restartPolicy, 'Never');
    assert.ok(spec.nodeSelector && Object.keys(spec.nodeSelector).length > 0, 'nodeSelector for the GPU pool');
    assert.ok((spec.tolerations as Obj[] | undefined)?.some((t) => String(t.key).includes('nvidia.com/gpu')), 'tolerates the GPU taint');
    assert.equal(Number(argOf(args(), '--threads')), cpuCores(c.resources?.requests?.cpu), '--threads = the CPUs requested');
    const rules = ((j.spec as Obj).podFailurePolicy as { rules: Array<{ action: string; onExitCodes?: { operator: string; values: number[] } }> } | undefined)?.rules ?? [];
    assert.ok(rules.some((r) => r.action === 'FailJob' && r.onExitCodes?.operator === 'NotIn' && r.onExitCodes.values.includes(0)), 'no --resume: an error exit is not retried from scratch');
  });

  test('reads the pool and the labelled set from their PVCs read-only, the data as mounted, and writes only to its volumes', async () => {
    const j = job();
    const c = container();
    const a = args();
    const cfg = await loadSsldConfig(path.join(REPO_ROOT, argOf(a, '--config') as string));
    const workdir = workdirOf(STAGES, targetOf(c.image));
    const list = (flag: string, fallback: readonly string[] | undefined) => (argOf(a, flag)?.split(',') ?? [...(fallback ?? [])]).map((p) => path.posix.resolve(workdir, p));
    const readOnlyFrom = (paths: string[], claim: string, what: string) => {
      assert.ok(paths.length > 0, `${what}: none`);
      for (const p of paths) {
        const m = mountFor(c, p);
        assert.ok(m, `${what} ${p} is on a volume`);
        assert.equal(m.readOnly, true, `${what} ${p} is mounted read-only`);
        assert.equal(volumeOf(j, m)?.persistentVolumeClaim?.claimName, claim, `${what} ${p} is on ${claim}`);
      }
    };
    readOnlyFrom(list('--pool', cfg.SSLD.pool), 'wildlife-pool', 'pool');
    readOnlyFrom(list('--labeled-sets', cfg.SSLD.labeled_sets), 'wildlife-labels', 'labelled set');
    // The labelled set it reads is the one the labels consumer writes.
    const consumer = get(render(), 'Deployment', 'wildlife-labels');
    const consumerOut = argOf(npmScriptOf(argvOf(containers(consumer)[0] as Container)).rest, '--out') as string;
    assert.equal(volumeOf(consumer, mountFor(containers(consumer)[0] as Container, consumerOut))?.persistentVolumeClaim?.claimName, 'wildlife-labels');
    assertModelDirIn(j, c, argOf(a, '--teacher') ?? cfg.SSLD.teacher, 'the teacher');
    if (argOf(a, '--baseline') ?? cfg.SSLD.baseline) assertModelDirIn(j, c, (argOf(a, '--baseline') ?? cfg.SSLD.baseline) as string, 'the baseline');
    assert.ok(mountFor(c, argOf(a, '--data') as string), '--data is on a volume');
    for (const flag of ['--out', '--work']) {
      const p = argOf(a, flag) as string;
      const m = mountFor(c, p);
      assert.ok(m && !m.readOnly && volumeOf(j, m)?.persistentVolumeClaim, `${flag} ${p} is on a writable PVC`);
    }
  });

  test('runs as non-root with a read-only root filesystem, HOME and /tmp on a writable emptyDir', () => {
    const j = job();
    const c = container();
    assertHardenedContainer(podSpec(j), c);
    for (const p of ['/tmp/x', `${c.env?.find((e) => e.name === 'HOME')?.value}/x`]) {
      const m = mountFor(c, p);
      assert.ok(m && !m.readOnly && volumeOf(j, m)?.emptyDir, `${p} is on a writable emptyDir`);
    }
  });
});


