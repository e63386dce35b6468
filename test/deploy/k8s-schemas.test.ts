import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { renderKustomization, type Resource } from './kustomize.js';
import { K8S_DIR, OVERLAYS, render } from './manifests.js';

/**
 * Built-in kinds are validated against the Kubernetes OpenAPI schemas that the kubernetes-models
 * package compiles into validators (offline, no cluster). Custom resources are validated against
 * the CRD schemas of @kubernetes-models/keda and @kubernetes-models/prometheus-operator, plus a
 * structural check of the fields their controllers need. Note: these schemas, like the API
 * server's, do not reject unknown fields, so a misspelt optional field is not caught here.
 */
const CRD_PACKAGES: Record<string, string> = {
  'keda.sh': '@kubernetes-models/keda',
  'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
};

async function modelFor(r: Resource): Promise<{ new (data: unknown): { validate(): void } }> {
  const [group, version] = r.apiVersion.includes('/') ? r.apiVersion.split('/') : ['', r.apiVersion];
  const specifier = group && CRD_PACKAGES[group]
    ? `${CRD_PACKAGES[group]}/${group}/${version}/${r.kind}`
    : `kubernetes-models/${r.apiVersion}/${r.kind}`;
  const mod = (await import(specifier).catch(() => {
    throw new Error(`no schema for ${r.apiVersion} ${r.kind} (${specifier})`);
  })) as Record<string, { new (data: unknown): { validate(): void } }>;
  const model = mod[r.kind];
  assert.ok(model, `${specifier} exports ${r.kind}`);
  return model;
}

/** Fields the controllers of the custom resources need (their CRD schemas leave most optional). */
function structuralProblems(r: Resource): string[] {
  const problems: string[] = [];
  const spec = (r.spec ?? {}) as Record<string, unknown>;
  const need = (cond: unknown, what: string) => { if (!cond) problems.push(`${r.kind}/${r.metadata.name}: ${what}`); };
  switch (r.kind) {
    case 'ScaledObject': {
      const ref = spec.scaleTargetRef as { name?: string } | undefined;
      need(ref?.name, 'spec.scaleTargetRef.name');
      const triggers = spec.triggers as Array<{ type?: string; metadata?: Record<string, unknown> }> | undefined;
      need(Array.isArray(triggers) && triggers.length > 0, 'spec.triggers');
      for (const t of triggers ?? []) {
        need(t.type && t.metadata, 'each trigger has type and metadata');
        // KEDA reads trigger metadata as strings.
        for (const [k, v] of Object.entries(t.metadata ?? {})) need(typeof v === 'string', `trigger ${t.type} metadata.${k} is a string`);
        if (t.type === 'kafka') for (const k of ['bootstrapServers', 'consumerGroup', 'topic', 'lagThreshold']) need(t.metadata?.[k], `kafka trigger metadata.${k}`);
      }
      need(Number(spec.minReplicaCount ?? 0) <= Number(spec.maxReplicaCount ?? 100), 'minReplicaCount <= maxReplicaCount');
      break;
    }
    case 'ServiceMonitor': {
      need((spec.selector as { matchLabels?: object } | undefined)?.matchLabels, 'spec.selector.matchLabels');
      const endpoints = spec.endpoints as Array<{ port?: string; targetPort?: unknown }> | undefined;
      need(Array.isArray(endpoints) && endpoints.length > 0 && endpoints.every((e) => e.port || e.targetPort), 'spec.endpoints[].port');
      break;
    }
    case 'PrometheusRule': {
      const groups = spec.groups as Array<{ name?: string; rules?: Array<{ alert?: string; record?: string; expr?: unknown }> }> | undefined;
      need(Array.isArray(groups) && groups.length > 0, 'spec.groups');
      for (const g of groups ?? []) {
        need(g.name, 'each group has a name');
        need(Array.isArray(g.rules) && g.rules.length > 0, `group ${g.name} has rules`);
        for (const rule of g.rules ?? []) need((rule.alert || rule.record) && rule.expr !== undefined && rule.expr !== '', `group ${g.name}: each rule has alert|record and expr`);
      }
      break;
    }
  }
  return problems;
}

/** Every schema and structural problem of the resources, one line each. */
async function schemaProblems(resources: Iterable<Parameters<typeof modelFor>[0]>): Promise<string[]> {
  const problems: string[] = [];
  for (const r of resources) {
    const Model = await modelFor(r);
    try {
      new Model(r).validate();
    } catch (err) {
      problems.push(`${r.kind}/${r.metadata.name}: ${(err as Error).message}`);
    }
    problems.push(...structuralProblems(r));
  }
  return problems;
}

describe('kubernetes schemas', () => {
  for (const overlay of OVERLAYS) {
    test(`every resource of the ${overlay} overlay validates against its Kubernetes or CRD schema`, async () => {
      assert.deepEqual(await schemaProblems(render(overlay)), []);
    });
  }

  // The review console's own kustomization (k8s/review; its other checks: review-manifests.test.ts).
  test('every resource of k8s/review validates against its Kubernetes or CRD schema', async () => {
    const resources = renderKustomization(path.join(K8S_DIR, 'review'));
    assert.ok(resources.length >= 7);
    assert.deepEqual(await schemaProblems(resources), []);
  });

  test('the validators reject a malformed Deployment (the check can fail)', async () => {
    const d = structuredClone(render('cpu').find((r) => r.kind === 'Deployment') as Resource);
    const c = ((d.spec as any).template.spec.containers as Array<Record<string, any>>)[0] as Record<string, any>;
    c.ports[0].containerPort = 'eighty';
    delete c.name;
    const Model = await modelFor(d);
    assert.throws(() => new Model(d).validate(), /containerPort|name/);
  });

  test('the structural check rejects a ScaledObject without a target or triggers', () => {
    const so = structuredClone(render('cpu').find((r) => r.kind === 'ScaledObject') as Resource);
    so.spec = { triggers: [{ type: 'kafka', metadata: { lagThreshold: 5 } }] };
    assert.ok(structuralProblems(so).length >= 3);
  });
});
