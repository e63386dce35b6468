/**
 * The review console's deployment (k8s/review): rendered with the offline renderer (and compared
 * with kubectl kustomize where kubectl is installed), then checked against what it runs: the npm
 * script and the cpu image that holds it, the config the pod assembles (its init container's script
 * is run here on the rendered files), the service's Kafka settings, the Secret it expects, and the
 * metrics its alerts query (the console's real registry from src/review/metrics.ts). Schemas:
 * k8s-schemas.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { ConfigError, loadConfig, REPO_ROOT, type AppConfig } from '../../src/config.js';
import { createReviewMetrics } from '../../src/review/metrics.js';
import { hashPassword } from '../../src/review/auth.js';
import type { ReviewFeed } from '../../src/review/feed.js';
import { copied, copySources, dockerignored, IGNORE_PATTERNS, imageTargets, importGraph, lineage, STAGES } from './dockerfile.js';
import { renderKustomization, type Obj, type Resource } from './kustomize.js';
import { assertHardenedContainer, cpuCores, hasKubectl, K8S_DIR, normalise, podLabels, podSpec, portNumber, selects, type Container } from './manifests.js';
import { extractSelectors, githubSlug } from './promql.js';

const REVIEW_DIR = path.join(K8S_DIR, 'review');
const rendered = renderKustomization(REVIEW_DIR);
/** A fresh copy each call, so a test cannot leak edits into another. */
const render = (): Resource[] => structuredClone(rendered);
const get = (rs: Resource[], kind: string): Resource => {
  const found = rs.filter((r) => r.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  return found[0] as Resource;
};
const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; dependencies: Record<string, string> };
const APP = 'wildlife-review';
const SECRET = 'wildlife-review-accounts';

type Mount = { name: string; mountPath: string; readOnly?: boolean; subPath?: string };
type Volume = { name: string; persistentVolumeClaim?: { claimName: string; readOnly?: boolean }; emptyDir?: { medium?: string }; configMap?: { name: string }; secret?: { secretName: string; optional?: boolean } };

const deployment = () => get(render(), 'Deployment');
const initContainers = (d: Resource) => (podSpec(d).initContainers ?? []) as Container[];
const mainContainer = (d: Resource) => {
  const cs = podSpec(d).containers as Container[];
  assert.equal(cs.length, 1, 'one container');
  return cs[0] as Container;
};
const envOf = (c: Container) => Object.fromEntries((c.env ?? []).map((e) => {
  assert.ok(e.value !== undefined, `${c.name}: env ${e.name} is a plain value`);
  return [e.name, e.value];
})) as Record<string, string>;
const mountsOf = (c: Container) => (c.volumeMounts ?? []) as Mount[];
const volumesOf = (r: Resource) => (podSpec(r).volumes ?? []) as Volume[];
/** The mount a container path lives on (the longest mountPath that contains it). */
function mountFor(c: Container, p: string): Mount | undefined {
  return mountsOf(c).filter((m) => p === m.mountPath || p.startsWith(`${m.mountPath.replace(/\/$/, '')}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
}
const volumeOf = (r: Resource, m: Mount | undefined) => volumesOf(r).find((v) => v.name === m?.name);

/** The environment the cpu image sets (ENV of its stage), under the pod's own. */
function imageEnv(): Record<string, string> {
  const cpu = STAGES.find((s) => s.name === 'cpu');
  assert.ok(cpu, 'a cpu stage');
  return Object.fromEntries(cpu.instructions.filter((i) => i.op === 'ENV').flatMap((i) => i.args.split(/\s+/).map((kv) => kv.split('=', 2) as [string, string])));
}

/**
 * Runs the init container's script, as in the pod, on the rendered ConfigMap and (optionally) a
 * Secret file, in a temporary directory standing in for its three mounts; returns CONFIG_FILE's text.
 */
function assembleConfig(secretFile: string | null): { dir: string; file: string; run: () => string } {
  const d = deployment();
  const init = initContainers(d)[0] as Container;
  const env = envOf(init);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'review-config-'));
  const cm = get(render(), 'ConfigMap');
  const configIn = path.join(dir, 'in', path.posix.basename(env.REVIEW_CONFIG_IN as string));
  const accountsIn = path.join(dir, 'secret', path.posix.basename(env.REVIEW_ACCOUNTS_IN as string));
  const out = path.join(dir, 'out', path.posix.basename(env.CONFIG_FILE as string));
  for (const sub of ['in', 'secret', 'out']) mkdirSync(path.join(dir, sub));
  writeFileSync(configIn, (cm.data as Record<string, string>)[path.posix.basename(env.REVIEW_CONFIG_IN as string)] as string);
  if (secretFile !== null) writeFileSync(accountsIn, secretFile);
  const command = init.command as string[];
  const run = () => {
    execFileSync(command[0] === 'node' ? process.execPath : (command[0] as string), command.slice(1), {
      cwd: REPO_ROOT, // the image's WORKDIR /app: node_modules/yaml resolves from there
      env: { PATH: process.env.PATH, REVIEW_CONFIG_IN: configIn, REVIEW_ACCOUNTS_IN: accountsIn, CONFIG_FILE: out },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return readFileSync(out, 'utf8');
  };
  return { dir, file: out, run };
}

/** The environment of the console's process in the pod: the image's ENV, then the container's. */
const podEnv = (configFile: string): Record<string, string> => ({ ...imageEnv(), ...envOf(mainContainer(deployment())), CONFIG_FILE: configFile });
const onlyApiKeyRule = (err: unknown) => err instanceof ConfigError && err.problems.every((p) => p.startsWith('auth.apiKeys:'));

/**
 * The config the console loads in the pod (main.ts: loadConfig() over the process environment). A
 * refusal for want of API keys alone is the known problem the TODO test below reports; here a
 * stand-in key lets the other checks go on.
 */
function podConfig(configFile: string): Readonly<AppConfig> {
  try {
    return loadConfig(podEnv(configFile));
  } catch (err) {
    if (!onlyApiKeyRule(err)) throw err;
    return loadConfig({ ...podEnv(configFile), API_KEYS: 'k'.repeat(32) });
  }
}

describe('the review console kustomization (k8s/review)', () => {
  test('renders the Deployment, its PVC, Service, NetworkPolicy, ServiceMonitor, PrometheusRule and generated ConfigMap, in namespace wildlife, and no Secret', () => {
    const rs = render();
    for (const kind of ['Deployment', 'PersistentVolumeClaim', 'Service', 'NetworkPolicy', 'ServiceMonitor', 'PrometheusRule', 'ConfigMap']) get(rs, kind);
    assert.equal(rs.length, 7, rs.map((r) => `${r.kind}/${r.metadata.name}`).join(', '));
    assert.deepEqual([...new Set(rs.map((r) => r.metadata.namespace))], ['wildlife']);
    for (const r of rs) assert.equal(r.metadata.labels?.['app.kubernetes.io/name'], APP, `${r.kind}/${r.metadata.name} is labelled ${APP}`);
    assert.ok(!rs.some((r) => r.kind === 'Secret'), 'no Secret is rendered from git');
  });

  test('no password hash is committed: the accounts Secret is shown with a placeholder that the config schema refuses', () => {
    const hash = /scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+/;
    for (const f of readdirSync(REVIEW_DIR)) assert.doesNotMatch(readFileSync(path.join(REVIEW_DIR, f), 'utf8'), hash, `k8s/review/${f} holds a password hash`);
    const text = readFileSync(path.join(REVIEW_DIR, 'deployment.yaml'), 'utf8');
    assert.match(text, /npm run -s review:hash-password/);
    assert.ok(pkg.scripts['review:hash-password'], 'package.json has review:hash-password');
    assert.match(text, /passwordHash: 'scrypt\$32768\$8\$1\$<salt>\$<key>'/);
  });

  const kubectl = hasKubectl();
  test('the offline renderer agrees with kubectl kustomize where kubectl is installed', { skip: kubectl ? false : 'kubectl not installed' }, () => {
    const theirs = parseAllDocuments(execFileSync('kubectl', ['kustomize', REVIEW_DIR], { encoding: 'utf8' })).map((d) => d.toJS() as Resource);
    const key = (r: Resource) => `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;
    const mine = new Map(render().map((r) => [key(r), normalise(r)]));
    assert.deepEqual([...mine.keys()].sort(), theirs.map(key).sort(), 'same resources and names (incl. the ConfigMap hash)');
    for (const r of theirs) assert.ok(isDeepStrictEqual(mine.get(key(r)), normalise(r)), `${key(r)} differs`);
  });
});

describe('the review console Deployment', () => {
  test('runs one replica with the Recreate strategy: SQLite has one writer', () => {
    const spec = deployment().spec as { replicas: number; strategy: { type: string; rollingUpdate?: unknown }; selector: { matchLabels: Record<string, string> } };
    assert.equal(spec.replicas, 1);
    assert.equal(spec.strategy.type, 'Recreate');
    assert.equal(spec.strategy.rollingUpdate, undefined);
    assert.ok(selects(spec.selector.matchLabels, podLabels(deployment())));
  });

  test('runs npm run review (node --import tsx src/review/main.ts) from the cpu image, which holds it', () => {
    const c = mainContainer(deployment());
    const entry = /^tsx\s+(\S+\.ts)$/.exec(pkg.scripts.review ?? '')?.[1];
    assert.ok(entry, `npm run review: ${pkg.scripts.review}`);
    assert.deepEqual(c.command, ['node', '--import', 'tsx', entry]);
    assert.equal(c.args, undefined);
    for (const x of [c, ...initContainers(deployment())]) {
      const target = imageTargets().get(x.image);
      assert.equal(target, 'cpu', `${x.name}: ${x.image} is the cpu image`);
    }
    const sources = copySources(lineage(STAGES, 'cpu'));
    const assets = readdirSync(path.join(REPO_ROOT, 'src', 'review', 'static')).map((f) => `src/review/static/${f}`);
    const missing = [...importGraph(entry), ...assets, 'package.json', 'configs/default.yaml'].filter((f) => !copied(f, sources) || dockerignored(f, IGNORE_PATTERNS));
    assert.deepEqual(missing, [], 'the cpu image lacks these');
    // The init container's script requires yaml: a production dependency (the image has npm ci --omit=dev).
    assert.ok(pkg.dependencies.yaml, 'yaml is in dependencies');
  });

  test('REVIEW_DB is on the PVC: its directory is the mount point of the wildlife-review claim, writable, ReadWriteOnce', () => {
    const d = deployment();
    const c = mainContainer(d);
    const db = envOf(c).REVIEW_DB;
    assert.ok(db && path.posix.isAbsolute(db), `REVIEW_DB ${db}`);
    const m = mountFor(c, db);
    assert.equal(m?.mountPath, path.posix.dirname(db), 'the database directory (review.db, -wal, -shm) is the mount point');
    assert.ok(!m.readOnly && !m.subPath);
    const claim = volumeOf(d, m)?.persistentVolumeClaim;
    const pvc = get(render(), 'PersistentVolumeClaim');
    assert.equal(claim?.claimName, pvc.metadata.name);
    assert.ok(!claim.readOnly);
    const spec = pvc.spec as { accessModes: string[]; resources: { requests: { storage: string } } };
    assert.deepEqual(spec.accessModes, ['ReadWriteOnce']);
    assert.match(spec.resources.requests.storage, /^\d+Gi$/);
    assert.ok((podSpec(d).securityContext as Obj).fsGroup !== undefined, 'fsGroup, so the volume is writable by the container user');
  });

  test('probes: startup and liveness on /healthz, readiness on /readyz, all on the console port; the Service targets it', () => {
    const d = deployment();
    const c = mainContainer(d);
    const { file, dir, run } = assembleConfig(null);
    try {
      run();
      const port = podConfig(file).review.port;
      assert.equal(c.ports?.find((p) => p.name === 'http')?.containerPort, port, 'the container port is review.port');
      assert.equal(c.startupProbe?.httpGet?.path, '/healthz');
      assert.equal(c.livenessProbe?.httpGet?.path, '/healthz');
      assert.equal(c.readinessProbe?.httpGet?.path, '/readyz');
      for (const p of [c.startupProbe, c.livenessProbe, c.readinessProbe]) assert.equal(portNumber(c, p?.httpGet?.port), port);
      // The port opens after the Kafka feed has started; kafkajs gives up connecting after ~30 s.
      const budget = Number(c.startupProbe?.periodSeconds) * Number(c.startupProbe?.failureThreshold);
      assert.ok(budget >= 60, `startup probe allows ${budget} s`);
      const svc = get(render(), 'Service').spec as { selector: Record<string, string>; ports: Array<{ name: string; port: number; targetPort: number | string }> };
      assert.ok(selects(svc.selector, podLabels(d)), 'the Service selects the pod');
      const http = svc.ports.find((p) => p.name === 'http');
      assert.equal(http?.port, port);
      assert.equal(portNumber(c, http?.targetPort), port);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('every container is hardened (non-root, read-only root, no capabilities) with bounded resources, /tmp on an emptyDir', () => {
    const d = deployment();
    const spec = podSpec(d);
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(((spec.securityContext as Obj).seccompProfile as Obj | undefined)?.type, 'RuntimeDefault');
    for (const c of [...initContainers(d), mainContainer(d)]) {
      assertHardenedContainer(spec, c);
      for (const k of ['cpu', 'memory']) assert.ok(c.resources?.requests?.[k] !== undefined && c.resources?.limits?.[k] !== undefined, `${c.name}: requests and limits.${k}`);
      assert.ok(cpuCores(c.resources?.requests?.cpu) <= cpuCores(c.resources?.limits?.cpu), `${c.name}: cpu request <= limit`);
    }
    const c = mainContainer(d);
    assert.ok(volumeOf(d, mountFor(c, '/tmp/x'))?.emptyDir, '/tmp (tsx cache, SQLite temp files) is an emptyDir');
  });

  test('the termination grace period outlasts the feed drain and the photo fetches in flight', () => {
    const { file, dir, run } = assembleConfig(null);
    try {
      run();
      const config = podConfig(file);
      const grace = Number(podSpec(deployment()).terminationGracePeriodSeconds);
      const need = (config.kafka.shutdownTimeoutMs + config.fetch.timeoutMs) / 1000;
      assert.ok(grace >= need + 10, `terminationGracePeriodSeconds ${grace} >= ${need} s + 10 s`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the review console configuration', () => {
  test('the init container writes CONFIG_FILE from the ConfigMap plus the accounts Secret, on a memory-backed volume the console mounts read-only', () => {
    const d = deployment();
    const init = initContainers(d);
    assert.equal(init.length, 1);
    const i = init[0] as Container;
    const c = mainContainer(d);
    const ienv = envOf(i);
    const configFile = envOf(c).CONFIG_FILE;
    assert.ok(configFile, 'CONFIG_FILE');
    assert.equal(ienv.CONFIG_FILE, configFile, 'the init container writes the file the console reads');
    const written = mountFor(i, configFile);
    assert.ok(written && !written.readOnly);
    const read = mountFor(c, configFile);
    assert.equal(read?.name, written.name);
    assert.equal(read?.readOnly, true);
    assert.equal(volumeOf(d, read)?.emptyDir?.medium, 'Memory', 'the assembled file (with the hashes) never touches a disk');
    const cm = get(render(), 'ConfigMap');
    const cmMount = mountFor(i, ienv.REVIEW_CONFIG_IN as string);
    assert.equal(volumeOf(d, cmMount)?.configMap?.name, cm.metadata.name, 'the generated ConfigMap (name suffix rewritten)');
    assert.ok(path.posix.basename(ienv.REVIEW_CONFIG_IN as string) in (cm.data as Obj));
    assert.equal(readFileSync(path.join(REVIEW_DIR, path.posix.basename(ienv.REVIEW_CONFIG_IN as string)), 'utf8'), (cm.data as Record<string, string>)[path.posix.basename(ienv.REVIEW_CONFIG_IN as string)]);
    const secretMount = mountFor(i, ienv.REVIEW_ACCOUNTS_IN as string);
    const secret = volumeOf(d, secretMount)?.secret;
    assert.equal(secret?.secretName, SECRET);
    assert.equal(secret.optional, true, 'proxy mode needs no Secret');
    assert.equal(secretMount?.readOnly, true);
    assert.ok(!mountsOf(c).some((m) => volumeOf(d, m)?.secret), 'the console itself does not mount the Secret');
  });

  test('the pod\'s config is a valid production configuration: accounts from the Secret, the pod IP, the database on the PVC, secure cookies, the service\'s Kafka', async () => {
    const c = mainContainer(deployment());
    const hash = await hashPassword('a long passphrase for ana', { N: 1024 });
    const { file, dir, run } = assembleConfig(`- { username: ana, passwordHash: '${hash}', role: lead }\n- username: ben\n  passwordHash: '${hash}'\n  role: analyst\n`);
    try {
      run();
      assert.equal(statSync(file).mode & 0o077, 0, 'the assembled file is readable by its owner only');
      const config = podConfig(file);
      assert.equal(config.production, true);
      assert.equal(config.review.host, '0.0.0.0', 'listens on the pod IP');
      assert.equal(config.review.database, envOf(c).REVIEW_DB);
      assert.equal(config.review.cookieSecure, true);
      assert.equal(config.review.auth.mode, 'accounts');
      assert.deepEqual(config.review.auth.accounts.map((a) => [a.username, a.role]), [['ana', 'lead'], ['ben', 'analyst']]);
      const service = loadConfig({ CONFIG_FILE: path.join(K8S_DIR, 'base', 'service-config.yaml') });
      assert.ok(config.kafka.brokers.length > 0, 'the Kafka feed is on');
      assert.deepEqual([...config.kafka.brokers], [...service.kafka.brokers], 'the same brokers as the service (k8s/base/service-config.yaml)');
      assert.equal(config.kafka.partitions, service.kafka.partitions, 'topics it creates get the service\'s partitions');
      assert.equal(config.kafka.replicationFactor, service.kafka.replicationFactor);
      assert.equal(config.kafka.topics.review, service.kafka.topics.review, 'it reads the topic the service flags to');
      assert.ok(!('KAFKA_BROKERS' in envOf(c)), 'no second, unchecked broker list');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the console\'s config loads under NODE_ENV=production without API_KEYS (the console has no API keys)', () => {
    const { file, dir, run } = assembleConfig(null);
    try {
      run();
      assert.equal(podEnv(file).NODE_ENV, 'production');
      assert.ok(!('API_KEYS' in podEnv(file)), 'the pod gets no screening API keys');
      // The screening service's API-key rule is the service's own; main.ts loads as the review component.
      assert.equal(loadConfig(podEnv(file), {}, { component: 'review' }).production, true);
      assert.throws(() => loadConfig(podEnv(file)), (err: unknown) => onlyApiKeyRule(err), 'the same file still refuses to start the screening service without keys');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('without the Secret the ConfigMap is copied as it is (no accounts); a Secret that is not a list is refused', () => {
    const none = assembleConfig(null);
    try {
      none.run();
      assert.deepEqual(podConfig(none.file).review.auth.accounts, [], 'main.ts then refuses to start in accounts mode');
    } finally {
      rmSync(none.dir, { recursive: true, force: true });
    }
    const wrong = assembleConfig('review:\n  auth:\n    accounts: []\n');
    try {
      assert.throws(() => wrong.run(), /must be a YAML list/);
    } finally {
      rmSync(wrong.dir, { recursive: true, force: true });
    }
  });
});

describe('the review console network policy and monitoring', () => {
  test('ingress: the console port from the labelled proxy namespace, the metrics port from Prometheus; egress: DNS, Kafka, HTTPS', () => {
    const rs = render();
    const np = get(rs, 'NetworkPolicy').spec as {
      podSelector: { matchLabels: Record<string, string> }; policyTypes: string[];
      ingress: Array<{ from?: Array<{ namespaceSelector?: { matchLabels?: Record<string, string> }; podSelector?: { matchLabels?: Record<string, string> } }>; ports: Array<{ port: number }> }>;
      egress: Array<{ to?: unknown[]; ports: Array<{ port: number; protocol?: string }> }>;
    };
    assert.ok(selects(np.podSelector.matchLabels, podLabels(get(rs, 'Deployment'))));
    assert.deepEqual([...np.policyTypes].sort(), ['Egress', 'Ingress']);
    const container = mainContainer(get(rs, 'Deployment'));
    const port = (name: string) => container.ports?.find((p) => p.name === name)?.containerPort;
    for (const rule of np.ingress) {
      assert.ok(rule.from && rule.from.length > 0, 'every ingress rule names its sources');
      for (const peer of rule.from) assert.ok(Object.keys(peer.namespaceSelector?.matchLabels ?? {}).length > 0, 'no peer admits every namespace');
    }
    assert.equal(np.ingress.length, 2, 'the proxy and Prometheus');
    const prometheus = np.ingress.find((r) => r.from?.some((peer) => peer.podSelector?.matchLabels?.['app.kubernetes.io/name'] === 'prometheus'));
    const proxy = np.ingress.find((r) => r !== prometheus);
    assert.deepEqual(proxy?.ports.map((p) => p.port), [port('http')], 'browsers (through the proxy) reach the pages');
    assert.deepEqual(prometheus?.ports.map((p) => p.port), [port('metrics')], 'Prometheus reaches the metrics port only');
    assert.equal(String(envOf(container).REVIEW_METRICS_PORT), String(port('metrics')), 'the console serves /metrics on that port');
    assert.equal(envOf(container).REVIEW_TRUST_PROXY, '1', 'one proxy hop: behind the ingress the CSRF origin check sees https');
    const egress = np.egress.flatMap((r) => r.ports.map((p) => `${p.port}/${p.protocol ?? 'TCP'}`));
    for (const want of ['53/UDP', '53/TCP', '9092/TCP', '443/TCP']) assert.ok(egress.includes(want), `egress ${want}`);
  });

  test('the ServiceMonitor scrapes /metrics on the Service\'s metrics port', () => {
    const rs = render();
    const sm = get(rs, 'ServiceMonitor').spec as { selector: { matchLabels: Record<string, string> }; endpoints: Array<{ port: string; path: string }> };
    const svc = get(rs, 'Service');
    assert.ok(selects(sm.selector.matchLabels, svc.metadata.labels ?? {}), 'selects the Service by its labels');
    assert.ok(!selects(sm.selector.matchLabels, { 'app.kubernetes.io/name': 'wildlife-screening' }), 'and not the screening service');
    assert.deepEqual(sm.endpoints.map((e) => [e.port, e.path]), [['metrics', '/metrics']]);
    assert.ok((svc.spec as { ports: Array<{ name: string }> }).ports.some((p) => p.name === 'metrics'));
  });

  test('the alerts query the oldest pending age, the outbox and the feed state, metrics createReviewMetrics registers, and each has a runbook', async () => {
    const rule = get(render(), 'PrometheusRule').spec as { groups: Array<{ rules: Array<{ alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }> }> };
    const alerts = rule.groups.flatMap((g) => g.rules).filter((r) => r.alert);
    assert.ok(alerts.length >= 2 && alerts.length <= 4, `${alerts.length} alerts`);
    const store = Object.assign(new EventEmitter(), { backlog: () => ({ pending: 0, escalated: 0, oldestPendingAt: null }), outboxSize: () => 0 });
    const feed = Object.assign(new EventEmitter(), { state: () => 'running' }) as unknown as ReviewFeed;
    const registered = new Set(createReviewMetrics(store as never, feed).getMetricsAsArray().map((m) => (m as unknown as { name: string }).name));
    const used = new Set<string>();
    for (const a of alerts) {
      for (const { metric } of extractSelectors(a.expr)) {
        if (metric === 'up') continue; // Prometheus's own, per target
        assert.ok(registered.has(metric.replace(/_(bucket|sum|count)$/, '')) || registered.has(metric), `${a.alert}: ${metric} is not registered by createReviewMetrics`);
        used.add(metric);
      }
      assert.ok(a.for, `${a.alert}: a for: duration`);
      assert.ok(['critical', 'warning', 'info'].includes(a.labels?.severity ?? ''), `${a.alert}: severity`);
    }
    for (const m of ['wildlife_review_oldest_pending_age_seconds', 'wildlife_review_outbox_size', 'wildlife_review_feed_state']) assert.ok(used.has(m), `an alert on ${m}`);
    const headings = new Set(readFileSync(path.join(REPO_ROOT, 'docs', 'OPERATIONS.md'), 'utf8').split('\n').filter((l) => /^#{1,6} /.test(l)).map((l) => githubSlug(l.replace(/^#+ /, ''))));
    for (const a of alerts) {
      const anchor = a.annotations?.runbook_url?.split('#')[1];
      assert.equal(anchor, a.alert?.toLowerCase(), `${a.alert}: runbook anchor`);
      assert.ok(headings.has(anchor as string), `${a.alert}: docs/OPERATIONS.md has a section ${a.alert}`);
    }
  });
});
