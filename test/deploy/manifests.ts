/** Shared by the deployment tests: the rendered overlays and typed look-ups into them. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from '../../src/config.js';
import { renderKustomization, type Obj, type Resource } from './kustomize.js';

export const K8S_DIR = path.join(REPO_ROOT, 'k8s');
export const OVERLAYS = ['cpu', 'gpu', 'cpu-without-keda'] as const;
export type Overlay = (typeof OVERLAYS)[number];

const cache = new Map<Overlay, Resource[]>();
/** The rendered overlay (a fresh copy each call, so a test cannot leak edits into another). */
export function render(overlay: Overlay): Resource[] {
  if (!cache.has(overlay)) cache.set(overlay, renderKustomization(path.join(K8S_DIR, 'overlays', overlay)));
  return structuredClone(cache.get(overlay) as Resource[]);
}

export const ofKind = (resources: Resource[], kind: string) => resources.filter((r) => r.kind === kind);
export function one(resources: Resource[], kind: string): Resource {
  const found = ofKind(resources, kind);
  if (found.length !== 1) throw new Error(`expected exactly one ${kind}, found ${found.length}`);
  return found[0] as Resource;
}

export interface Container extends Obj {
  name: string;
  image: string;
  env?: Array<{ name: string; value?: string; valueFrom?: Obj }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  securityContext?: Obj;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
export interface Probe extends Obj { httpGet?: { path: string; port: number | string } }

export const podTemplate = (d: Resource) => ((d.spec as Obj).template as Obj);
export const podSpec = (d: Resource) => podTemplate(d).spec as Obj;
export const containers = (d: Resource) => podSpec(d).containers as Container[];
export const podLabels = (d: Resource) => ((podTemplate(d).metadata as Obj).labels ?? {}) as Record<string, string>;

/** A selector's matchLabels (or a Service's plain selector) matches these labels. */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  if (!selector || Object.keys(selector).length === 0) return false; // an empty selector here is a mistake, not "all"
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** Resolves a probe's port (number or named container port) to a number. */
export function portNumber(c: Container, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  return c.ports?.find((p) => p.name === port)?.containerPort;
}

/** Kubernetes CPU quantity ("2", "500m") in cores. */
export function cpuCores(q: string | number | undefined): number {
  if (q === undefined) return NaN;
  const s = String(q);
  return s.endsWith('m') ? Number(s.slice(0, -1)) / 1000 : Number(s);
}

/** Non-root, read-only root filesystem, no privilege escalation, every capability dropped. */
export function assertHardenedContainer(pod: Obj, c: Container): void {
  const podSc = (pod.securityContext ?? {}) as Obj;
  const sc = (c.securityContext ?? {}) as Obj;
  assert.equal(sc.runAsNonRoot ?? podSc.runAsNonRoot, true, `${c.name}: runAsNonRoot`);
  assert.ok(Number(sc.runAsUser ?? podSc.runAsUser) > 0, `${c.name}: runAsUser`);
  assert.equal(sc.readOnlyRootFilesystem, true, `${c.name}: readOnlyRootFilesystem`);
  assert.equal(sc.allowPrivilegeEscalation, false, `${c.name}: allowPrivilegeEscalation`);
  assert.deepEqual((sc.capabilities as { drop?: string[] } | undefined)?.drop, ['ALL'], `${c.name}: capabilities`);
}

export function hasKubectl(): boolean {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** kustomize orders merged list items differently (patched ones first); lists keyed by name compare as sets. */
export function normalise(v: unknown): unknown {
  if (Array.isArray(v)) {
    const items = v.map(normalise);
    return items.every((i) => typeof i === 'object' && i !== null && typeof (i as Obj).name === 'string')
      ? [...items].sort((a, b) => String((a as Obj).name).localeCompare(String((b as Obj).name)))
      : items;
  }
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, normalise(x)]));
  return v;
}
