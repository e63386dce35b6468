import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { loadConfig } from '../../src/config.js';
import type { Obj, Resource } from './kustomize.js';
import { hasKubectl, normalise } from './manifests.js';
import { containers, cpuCores, K8S_DIR, ofKind, one, OVERLAYS, podLabels, podSpec, portNumber, render, selects } from './manifests.js';

const APP = 'wildlife-screening';

describe('kubernetes manifests', () => {
  for (const overlay of OVERLAYS) {
    describe(`the ${overlay} overlay`, () => {
      test('renders one Deployment, Service, PodDisruptionBudget, NetworkPolicy and generated ConfigMap in one namespace', () => {
        const rs = render(overlay);
        for (const kind of ['Deployment', 'Service', 'PodDisruptionBudget', 'NetworkPolicy', 'ConfigMap', 'ServiceMonitor', 'PrometheusRule']) one(rs, kind);
        const namespaces = new Set(rs.map((r) => r.metadata.namespace));
        assert.deepEqual([...namespaces], ['wildlife'], 'every resource is namespaced by the overlay');
        assert.equal(new Set(rs.map((r) => `${r.kind}/${r.metadata.name}`)).size, rs.length, 'no duplicate resources');
        assert.equal(ofKind(rs, 'Secret').length, 0, 'no Secret is rendered from git');
      });

      test('every container has liveness, readiness and startup probes on the service port and the right paths', () => {
        const d = one(render(overlay), 'Deployment');
        for (const c of containers(d)) {
          assert.equal(c.livenessProbe?.httpGet?.path, '/healthz', `${c.name} liveness`);
          assert.equal(c.readinessProbe?.httpGet?.path, '/readyz', `${c.name} readiness`);
          assert.equal(c.startupProbe?.httpGet?.path, '/healthz', `${c.name} startup (answers once models are warm)`);
          for (const p of [c.livenessProbe, c.readinessProbe, c.startupProbe]) assert.equal(portNumber(c, p?.httpGet?.port), 8080, `${c.name} probe port`);
          const startupBudget = Number(c.startupProbe?.periodSeconds) * Number(c.startupProbe?.failureThreshold);
          assert.ok(startupBudget >= 60, `startup probe allows ${startupBudget}s for model warm-up`);
        }
      });

      test('every container sets cpu and memory requests and limits', () => {
        for (const c of containers(one(render(overlay), 'Deployment'))) {
          for (const k of ['cpu', 'memory']) {
            assert.ok(c.resources?.requests?.[k] !== undefined, `${c.name} requests.${k}`);
            assert.ok(c.resources?.limits?.[k] !== undefined, `${c.name} limits.${k}`);
          }
          assert.ok(cpuCores(c.resources?.requests?.cpu) <= cpuCores(c.resources?.limits?.cpu), 'cpu request <= limit');
        }
      });

      test('pods run as non-root with a read-only root filesystem, no capabilities and a writable /tmp', () => {
        const d = one(render(overlay), 'Deployment');
        const spec = podSpec(d);
        const podSc = (spec.securityContext ?? {}) as Obj;
        for (const c of containers(d)) {
          const sc = (c.securityContext ?? {}) as Obj;
          assert.equal(sc.runAsNonRoot ?? podSc.runAsNonRoot, true, `${c.name} runAsNonRoot`);
          assert.notEqual(sc.runAsUser ?? podSc.runAsUser, 0);
          assert.equal(sc.readOnlyRootFilesystem, true, `${c.name} readOnlyRootFilesystem`);
          assert.equal(sc.allowPrivilegeEscalation, false, `${c.name} allowPrivilegeEscalation`);
          assert.deepEqual((sc.capabilities as Obj | undefined)?.drop, ['ALL'], `${c.name} drops ALL capabilities`);
          const tmp = c.volumeMounts?.find((m) => m.mountPath === '/tmp');
          assert.ok(tmp, `${c.name} mounts /tmp`);
          const vol = (spec.volumes as Obj[]).find((v) => v.name === tmp.name);
          assert.ok(vol?.emptyDir, '/tmp is an emptyDir');
        }
      });

      test('the termination grace period outlasts the Kafka and HTTP drains plus the preStop pause', () => {
        const d = one(render(overlay), 'Deployment');
        const grace = Number(podSpec(d).terminationGracePeriodSeconds);
        const config = parseYaml(readConfigMap(render(overlay))) as { kafka?: { shutdownTimeoutMs?: number }; server?: { shutdownGraceMs?: number } };
        const defaults = loadConfig({});
        const drainS = ((config.kafka?.shutdownTimeoutMs ?? defaults.kafka.shutdownTimeoutMs) + (config.server?.shutdownGraceMs ?? defaults.server.shutdownGraceMs)) / 1000;
        const c = containers(d)[0];
        const preStop = ((c?.lifecycle as Obj | undefined)?.preStop as Obj | undefined)?.exec as { command?: string[] } | undefined;
        const pause = preStop?.command?.[0] === 'sleep' ? Number(preStop.command[1]) : 0;
        assert.ok(pause > 0, 'a preStop sleep lets endpoints drop the pod before SIGTERM');
        assert.ok(grace > 20 && grace > drainS + pause, `terminationGracePeriodSeconds ${grace} > ${drainS}s drain + ${pause}s preStop`);
      });

      test('the Service selects the Deployment pods and targets the container port', () => {
        const rs = render(overlay);
        const d = one(rs, 'Deployment');
        const svc = one(rs, 'Service');
        const spec = svc.spec as { selector: Record<string, string>; ports: Array<{ name: string; port: number; targetPort: number | string }> };
        assert.ok(selects(spec.selector, podLabels(d)), 'Service selector matches the pod labels');
        assert.ok(selects((d.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels, podLabels(d)), 'Deployment selector matches its own pods');
        const http = spec.ports.find((p) => p.name === 'http');
        assert.ok(http, 'a port named http (scraped by the ServiceMonitor)');
        assert.equal(portNumber(containers(d)[0] as never, http.targetPort), 8080);
      });

      test('the NetworkPolicy and PodDisruptionBudget select the pods; ingress allows 8080 and egress allows DNS, Kafka and HTTPS', () => {
        const rs = render(overlay);
        const labels = podLabels(one(rs, 'Deployment'));
        const np = one(rs, 'NetworkPolicy').spec as { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress: Array<{ ports: Array<{ port: number }> }>; egress: Array<{ ports: Array<{ port: number; protocol?: string }> }> };
        assert.ok(selects(np.podSelector.matchLabels, labels), 'NetworkPolicy podSelector');
        assert.deepEqual([...np.policyTypes].sort(), ['Egress', 'Ingress']);
        assert.deepEqual(np.ingress.flatMap((r) => r.ports.map((p) => p.port)), [8080]);
        const egress = np.egress.flatMap((r) => r.ports.map((p) => `${p.port}/${p.protocol ?? 'TCP'}`));
        for (const want of ['53/UDP', '53/TCP', '9092/TCP', '443/TCP', '80/TCP']) assert.ok(egress.includes(want), `egress ${want}`);
        const pdb = one(rs, 'PodDisruptionBudget').spec as { selector: { matchLabels: Record<string, string> } };
        assert.ok(selects(pdb.selector.matchLabels, labels), 'PodDisruptionBudget selector');
      });

      test('the autoscaler targets the Deployment by name and exactly one autoscaler owns it', () => {
        const rs = render(overlay);
        const d = one(rs, 'Deployment');
        const scalers = [...ofKind(rs, 'HorizontalPodAutoscaler'), ...ofKind(rs, 'ScaledObject')];
        assert.equal(scalers.length, 1, 'an HPA next to a ScaledObject would fight over replicas');
        const ref = (scalers[0]?.spec as { scaleTargetRef: { kind?: string; name: string } }).scaleTargetRef;
        assert.equal(ref.name, d.metadata.name);
        assert.equal(ref.kind ?? 'Deployment', 'Deployment');
      });

      test('the mounted service config plus the pod environment is a valid production configuration', () => {
        const rs = render(overlay);
        const d = one(rs, 'Deployment');
        const c = containers(d)[0];
        assert.ok(c);
        const env: Record<string, string> = {};
        for (const e of c.env ?? []) {
          if (e.value !== undefined) env[e.name] = e.value;
          const field = (e.valueFrom as { resourceFieldRef?: { resource: string } } | undefined)?.resourceFieldRef;
          if (field) env[e.name] = String(Math.ceil(cpuCores(c.resources?.limits?.[field.resource.replace('limits.', '')])));
          const secret = (e.valueFrom as { secretKeyRef?: { name: string; key: string } } | undefined)?.secretKeyRef;
          if (secret) env[e.name] = 'k'.repeat(32); // stands in for the operator-created Secret
        }
        // The pod mounts the generated ConfigMap where CONFIG_FILE points.
        const cmName = one(rs, 'ConfigMap').metadata.name;
        const volume = (podSpec(d).volumes as Array<{ name: string; configMap?: { name: string } }>).find((v) => v.configMap?.name === cmName);
        assert.ok(volume, 'the generated ConfigMap is mounted (name suffix rewritten)');
        const mount = c.volumeMounts?.find((m) => m.name === volume.name);
        const data = (one(rs, 'ConfigMap').data ?? {}) as Record<string, string>;
        assert.ok(env.CONFIG_FILE && mount && path.dirname(env.CONFIG_FILE) === mount.mountPath && path.basename(env.CONFIG_FILE) in data, 'CONFIG_FILE names a key of the mounted ConfigMap');
        assert.ok(env.API_KEYS, 'API_KEYS comes from a Secret');
        const dir = mkdtempSync(path.join(os.tmpdir(), 'k8s-config-'));
        try {
          const file = path.join(dir, path.basename(env.CONFIG_FILE));
          writeFileSync(file, data[path.basename(env.CONFIG_FILE)] as string);
          const config = loadConfig({ ...env, CONFIG_FILE: file });
          assert.equal(config.production, true);
          assert.equal(config.server.host, '0.0.0.0', 'listens on the pod IP');
          assert.equal(config.server.port, c.ports?.find((p) => p.name === 'http')?.containerPort);
          assert.equal(config.models.executionProvider, overlay === 'gpu' ? 'cuda' : 'cpu');
          assert.ok(config.kafka.brokers.length > 0, 'the Kafka pipeline is on');
          const so = ofKind(rs, 'ScaledObject')[0];
          if (so) {
            const spec = so.spec as { maxReplicaCount: number; triggers: Array<{ type: string; metadata: Record<string, string> }> };
            const kafka = spec.triggers.find((t) => t.type === 'kafka');
            assert.ok(kafka, 'a kafka trigger');
            assert.equal(kafka.metadata.consumerGroup, config.kafka.groupId);
            assert.equal(kafka.metadata.topic, config.kafka.topics.input);
            assert.deepEqual(kafka.metadata.bootstrapServers?.split(','), [...config.kafka.brokers]);
            assert.ok(spec.maxReplicaCount <= config.kafka.partitions, 'no more replicas than partitions of a topic the service creates');
          }
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });
    });
  }

  test('the gpu overlay requests one NVIDIA GPU, schedules onto the GPU pool and selects the CUDA provider', () => {
    const d = one(render('gpu'), 'Deployment');
    const c = containers(d)[0];
    assert.equal(String(c?.resources?.limits?.['nvidia.com/gpu']), '1');
    assert.equal(c?.env?.find((e) => e.name === 'EXECUTION_PROVIDER')?.value, 'cuda');
    assert.match(c?.image ?? '', /:gpu$/);
    const spec = podSpec(d);
    assert.ok(spec.nodeSelector && Object.keys(spec.nodeSelector).length > 0, 'nodeSelector for the GPU pool');
    assert.ok((spec.tolerations as Obj[] | undefined)?.some((t) => String(t.key).includes('nvidia.com/gpu')), 'tolerates the GPU taint');
  });

  test('the cpu overlays use the cpu image, the CPU provider and no GPU', () => {
    for (const overlay of ['cpu', 'cpu-without-keda'] as const) {
      const c = containers(one(render(overlay), 'Deployment'))[0];
      assert.match(c?.image ?? '', /:cpu$/);
      assert.equal(c?.env?.find((e) => e.name === 'EXECUTION_PROVIDER')?.value, 'cpu');
      assert.equal(c?.resources?.limits?.['nvidia.com/gpu'], undefined);
    }
  });

  test('the KEDA ScaledObject scales on the consumer lag of group wildlife-screening on images.crawled', () => {
    for (const overlay of ['cpu', 'gpu'] as const) {
      const so = one(render(overlay), 'ScaledObject');
      const kafka = (so.spec as { triggers: Array<{ type: string; metadata: Record<string, string> }> }).triggers.find((t) => t.type === 'kafka');
      assert.equal(kafka?.metadata.consumerGroup, APP);
      assert.equal(kafka?.metadata.topic, 'images.crawled');
      assert.ok(Number(kafka?.metadata.lagThreshold) > 0);
    }
    const hpa = one(render('cpu-without-keda'), 'HorizontalPodAutoscaler');
    const metrics = (hpa.spec as { metrics: Array<{ resource?: { name: string } }> }).metrics;
    assert.ok(metrics.some((m) => m.resource?.name === 'cpu'), 'the HPA scales on CPU');
  });

  test('the base kustomization lists the monitoring resources', () => {
    const k = parseYaml(readFileSync(path.join(K8S_DIR, 'base', 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    for (const f of ['servicemonitor.yaml', 'prometheusrule.yaml', 'deployment.yaml', 'service.yaml', 'networkpolicy.yaml', 'poddisruptionbudget.yaml', 'scaledobject.yaml']) {
      assert.ok(k.resources.includes(f), f);
    }
  });

  const kubectl = hasKubectl();
  test('the offline renderer agrees with kubectl kustomize where kubectl is installed', { skip: kubectl ? false : 'kubectl not installed' }, () => {
    for (const overlay of OVERLAYS) {
      const theirs = parseAllDocuments(execFileSync('kubectl', ['kustomize', path.join(K8S_DIR, 'overlays', overlay)], { encoding: 'utf8' })).map((doc) => doc.toJS() as Resource);
      const key = (r: Resource) => `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;
      const mine = new Map(render(overlay).map((r) => [key(r), normalise(r)]));
      assert.deepEqual([...mine.keys()].sort(), theirs.map(key).sort(), `${overlay}: same resources and names (incl. ConfigMap hash)`);
      for (const r of theirs) assert.ok(isDeepStrictEqual(mine.get(key(r)), normalise(r)), `${overlay}: ${key(r)} differs`);
    }
  });
});

function readConfigMap(rs: Resource[]): string {
  const data = (one(rs, 'ConfigMap').data ?? {}) as Record<string, string>;
  const text = data['service-config.yaml'];
  assert.ok(text, 'the ConfigMap holds service-config.yaml');
  return text;
}


