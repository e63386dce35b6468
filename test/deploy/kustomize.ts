/**
 * A small offline renderer for the subset of kustomize that k8s/ uses, so the deployment tests run
 * on a machine without kubectl. Supported: resources (files and directories), components,
 * namespace, images, patches (strategic merge, by apiVersion/kind/name, including `$patch: delete`)
 * and configMapGenerator (files/literals and options.labels, with kustomize's content-hash name
 * suffix and the name rewritten in pod specs). Any other kustomization field is an error, so a manifest that starts
 * using one fails the tests instead of being rendered wrongly.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

export type Obj = Record<string, unknown>;
export interface Resource extends Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
}

const SUPPORTED = new Set(['apiVersion', 'kind', 'resources', 'components', 'namespace', 'images', 'patches', 'configMapGenerator']);
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PriorityClass', 'StorageClass']);

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function readYamlDocs(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: Obj[] = [];
  for (const doc of docs) {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value == null) continue;
    if (!isObj(value)) throw new Error(`${file}: a YAML document is not a mapping`);
    out.push(value);
  }
  return out;
}

function kustomizationFile(dir: string): string {
  for (const name of ['kustomization.yaml', 'kustomization.yml', 'Kustomization']) {
    const file = path.join(dir, name);
    if (existsSync(file)) return file;
  }
  throw new Error(`${dir}: no kustomization.yaml`);
}

const id = (r: Obj) => `${String(r.apiVersion).split('/').length > 1 ? String(r.apiVersion).split('/')[0] : ''}/${String(r.kind)}/${String((r.metadata as Obj | undefined)?.name)}`;

function asResource(value: Obj, where: string): Resource {
  const meta = value.metadata;
  if (typeof value.apiVersion !== 'string' || typeof value.kind !== 'string' || !isObj(meta) || typeof meta.name !== 'string') {
    throw new Error(`${where}: every resource needs apiVersion, kind and metadata.name`);
  }
  return value as Resource;
}

/**
 * kustomize's name-suffix hash of a generated ConfigMap (api/hasher): Go json of {data,kind,name},
 * sha256, 10 hex chars with 0 1 3 a e mapped to g h k m t. kustomize v5 hashes the generated map
 * before it is named, so name is "" (checked against `kubectl kustomize` in k8s-manifests.test.ts).
 */
export function configMapHash(data: Record<string, string>, name = ''): string {
  const sorted = Object.fromEntries(Object.keys(data).sort().map((k) => [k, data[k]]));
  const json = JSON.stringify({ data: sorted, kind: 'ConfigMap', name }).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const hex = createHash('sha256').update(json).digest('hex').slice(0, 10);
  return hex.replace(/[013ae]/g, (c) => ({ '0': 'g', '1': 'h', '3': 'k', a: 'm', e: 't' })[c] as string);
}

/** Strategic merge for the fields k8s/ patches: maps merge, object lists merge by their merge key, other lists replace, null deletes. */
export function strategicMerge(base: unknown, patch: unknown, key = ''): unknown {
  if (isObj(base) && isObj(patch)) {
    const out: Obj = { ...base };
    for (const [k, v] of Object.entries(patch)) {
      if (k === '$patch') continue;
      if (v === null) delete out[k];
      else out[k] = k in base ? strategicMerge(base[k], v, k) : v;
    }
    return out;
  }
  if (Array.isArray(base) && Array.isArray(patch)) {
    const mergeKey = key === 'ports' ? (patch.every((p) => isObj(p) && 'containerPort' in p) ? 'containerPort' : 'port') : 'name';
    const keyed = (items: unknown[]) => items.length > 0 && items.every((p) => isObj(p) && p[mergeKey] !== undefined);
    if (['tolerations', 'args', 'command'].includes(key) || !keyed(patch) || !keyed(base)) return patch;
    const out = base.map((item) => {
      const match = patch.find((p) => (p as Obj)[mergeKey] === (item as Obj)[mergeKey]);
      return match === undefined ? item : strategicMerge(item, match, '');
    });
    for (const p of patch) if (!base.some((b) => (b as Obj)[mergeKey] === (p as Obj)[mergeKey])) out.push(p);
    return out;
  }
  return patch;
}

function podSpecs(r: Resource): Obj[] {
  const spec = r.spec as Obj | undefined;
  if (r.kind === 'Pod' && spec) return [spec];
  const tmpl = (spec?.template as Obj | undefined)?.spec as Obj | undefined;
  if (tmpl) return [tmpl];
  const job = ((spec?.jobTemplate as Obj | undefined)?.spec as Obj | undefined)?.template as Obj | undefined;
  return job?.spec ? [job.spec as Obj] : [];
}

const containersOf = (spec: Obj) => [...((spec.containers as Obj[] | undefined) ?? []), ...((spec.initContainers as Obj[] | undefined) ?? [])];

function renameConfigMapRefs(resources: Resource[], from: string, to: string): void {
  for (const r of resources) {
    for (const spec of podSpecs(r)) {
      for (const v of (spec.volumes as Obj[] | undefined) ?? []) {
        const cm = v.configMap as Obj | undefined;
        if (cm?.name === from) cm.name = to;
        for (const src of ((v.projected as Obj | undefined)?.sources as Obj[] | undefined) ?? []) {
          const pcm = src.configMap as Obj | undefined;
          if (pcm?.name === from) pcm.name = to;
        }
      }
      for (const c of containersOf(spec)) {
        for (const e of (c.envFrom as Obj[] | undefined) ?? []) {
          const ref = e.configMapRef as Obj | undefined;
          if (ref?.name === from) ref.name = to;
        }
        for (const e of (c.env as Obj[] | undefined) ?? []) {
          const ref = (e.valueFrom as Obj | undefined)?.configMapKeyRef as Obj | undefined;
          if (ref?.name === from) ref.name = to;
        }
      }
    }
  }
}

interface Rendered { resources: Resource[]; renames: Map<string, string> }

function renderDir(dir: string, expectKind: 'Kustomization' | 'Component', acc?: Rendered): Rendered {
  const file = kustomizationFile(dir);
  const docs = readYamlDocs(file);
  const k = docs[0] ?? {};
  for (const key of Object.keys(k)) if (!SUPPORTED.has(key)) throw new Error(`${file}: kustomize field "${key}" is not supported by the test renderer`);
  if ((k.kind ?? 'Kustomization') !== expectKind) throw new Error(`${file}: expected kind ${expectKind}, got ${String(k.kind)}`);

  const out: Rendered = acc ?? { resources: [], renames: new Map() };
  const add = (r: Resource, where: string) => {
    if (out.resources.some((o) => id(o) === id(r))) throw new Error(`${where}: duplicate resource ${id(r)}`);
    out.resources.push(r);
  };
  for (const entry of (k.resources as string[] | undefined) ?? []) {
    const target = path.resolve(dir, entry);
    if (!existsSync(target)) throw new Error(`${file}: resource ${entry} does not exist`);
    if (statSync(target).isDirectory()) {
      const sub = renderDir(target, 'Kustomization');
      for (const r of sub.resources) add(r, target);
      for (const [a, b] of sub.renames) out.renames.set(a, b);
    } else {
      const docsOf = readYamlDocs(target);
      if (docsOf.length === 0) throw new Error(`${target}: no resources`);
      for (const d of docsOf) add(asResource(structuredClone(d), target), target);
    }
  }

  for (const gen of (k.configMapGenerator as Obj[] | undefined) ?? []) {
    const name = String(gen.name);
    const data: Record<string, string> = {};
    for (const f of (gen.files as string[] | undefined) ?? []) {
      const [key, rel] = f.includes('=') ? (f.split('=', 2) as [string, string]) : [path.basename(f), f];
      data[key] = readFileSync(path.resolve(dir, rel), 'utf8');
    }
    for (const lit of (gen.literals as string[] | undefined) ?? []) {
      const i = lit.indexOf('=');
      data[lit.slice(0, i)] = lit.slice(i + 1);
    }
    for (const extra of Object.keys(gen)) if (!['name', 'files', 'literals', 'options'].includes(extra)) throw new Error(`${file}: configMapGenerator.${extra} is not supported`);
    const options = (gen.options ?? {}) as Obj;
    for (const extra of Object.keys(options)) if (extra !== 'labels') throw new Error(`${file}: configMapGenerator.options.${extra} is not supported`);
    // Labels do not enter kustomize's name hash (kind, name and data do).
    const hashed = `${name}-${configMapHash(data)}`;
    const labels = options.labels as Record<string, string> | undefined;
    add({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: hashed, ...(labels ? { labels: { ...labels } } : {}) }, data } as Resource, file);
    out.renames.set(name, hashed);
  }

  for (const comp of (k.components as string[] | undefined) ?? []) renderDir(path.resolve(dir, comp), 'Component', out);

  if (typeof k.namespace === 'string') {
    for (const r of out.resources) if (!CLUSTER_SCOPED.has(r.kind)) r.metadata.namespace = k.namespace;
  }

  for (const img of (k.images as Obj[] | undefined) ?? []) {
    for (const r of out.resources) {
      for (const spec of podSpecs(r)) {
        for (const c of containersOf(spec)) {
          const image = String(c.image);
          const at = image.indexOf('@');
          const colon = image.lastIndexOf(':');
          const bare = at >= 0 ? image.slice(0, at) : colon > image.lastIndexOf('/') ? image.slice(0, colon) : image;
          if (bare !== img.name) continue;
          const name = typeof img.newName === 'string' ? img.newName : bare;
          c.image = typeof img.digest === 'string' ? `${name}@${img.digest}` : `${name}:${String(img.newTag ?? (colon > image.lastIndexOf('/') ? image.slice(colon + 1) : 'latest'))}`;
        }
      }
    }
  }

  for (const p of (k.patches as Obj[] | undefined) ?? []) {
    if (p.target !== undefined) throw new Error(`${file}: patches with a target are not supported by the test renderer`);
    const patchDocs = typeof p.path === 'string' ? readYamlDocs(path.resolve(dir, p.path)) : typeof p.patch === 'string' ? parseAllDocuments(p.patch).map((d) => d.toJS() as Obj) : [];
    if (patchDocs.length === 0) throw new Error(`${file}: empty patch`);
    for (const doc of patchDocs) {
      const patch = asResource(doc, `${file} patch`);
      const i = out.resources.findIndex((r) => id(r) === id(patch));
      if (i < 0) throw new Error(`${file}: patch target ${id(patch)} not found`);
      if (patch.$patch === 'delete') out.resources.splice(i, 1);
      else out.resources[i] = strategicMerge(out.resources[i], patch) as Resource;
    }
  }
  return out;
}

/** Renders a kustomization directory, like `kubectl kustomize DIR`. */
export function renderKustomization(dir: string): Resource[] {
  const { resources, renames } = renderDir(path.resolve(dir), 'Kustomization');
  for (const [from, to] of renames) renameConfigMapRefs(resources, from, to);
  return resources;
}
