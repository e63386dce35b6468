/**
 * Promotion: a candidate model directory becomes the next version of a served model. The swap is
 * staged beside the target in a dot-directory (which model discovery skips), checked by loading it
 * in the serving engine, then renamed into place; the replaced version moves to a history directory
 * for rollback. A running service picks the new version up by hot reload, without a restart.
 */
import { cp, mkdir, rename, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { AppError, isAppError } from '../errors.js';
import { loadClassifier } from '../model/engine.js';
import { readManifest, type ModelManifest } from '../model/manifest.js';
import { writeModelDir } from './model-dir.js';

export interface PromoteOptions {
  candidate: string;
  /** The served model directory to replace (e.g. models/wildlife-resnet50vd). */
  target: string;
  /** Default: the target's version with the minor part bumped. */
  version?: string;
  /** Promote even without a winning comparison against the target, or with other labels. */
  force?: boolean;
  historyDir?: string;
  /** A running service to reload, e.g. http://127.0.0.1:8080; its API key if it has them. */
  reloadUrl?: string;
  apiKey?: string;
}

export interface PromoteResult {
  manifest: ModelManifest;
  previous: { version: string; sha256: string; history: string } | null;
  reloaded: Array<{ name: string; version: string }> | null;
  warnings: string[];
}

export function nextMinor(version: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  return m ? `${m[1]}.${Number(m[2]) + 1}.0` : `${version}-next`;
}

interface ComparisonRecord { baseline?: string; verdict?: string }

/** Why the candidate may not replace the current model (empty: it may). */
export function promotionObjections(candidate: ModelManifest, current: ModelManifest | null): string[] {
  if (!current) return [];
  const objections: string[] = [];
  const names = (m: ModelManifest) => m.labels.map((l) => `${l.name}:${l.trade_relevant}`).join(',');
  if (names(candidate) !== names(current)) objections.push('its labels (or their trade relevance) differ from the current model\'s; downstream consumers key on them');
  const comparison = (candidate.metrics as { comparison?: ComparisonRecord }).comparison;
  const currentId = `${current.name}@${current.version}`;
  if (!comparison) objections.push(`it has no comparison on record (npm run ssld records one against ${currentId})`);
  else if (comparison.baseline !== currentId) objections.push(`its comparison was against ${comparison.baseline}, not the current ${currentId}`);
  else if (comparison.verdict !== 'better') objections.push(`its comparison with ${currentId} says "${comparison.verdict}"`);
  if (candidate.sha256 === current.sha256) objections.push('it is the model already in place (same sha256)');
  return objections;
}

async function move(from: string, to: string): Promise<void> {
  await mkdir(path.dirname(to), { recursive: true });
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await cp(from, to, { recursive: true });
    await rm(from, { recursive: true, force: true });
  }
}

export async function promoteModel(opts: PromoteOptions): Promise<PromoteResult> {
  const candidateDir = path.resolve(opts.candidate);
  const target = path.resolve(opts.target);
  const candidate = await readManifest(candidateDir);
  const current = existsSync(path.join(target, 'model.json')) ? await readManifest(target) : null;
  const objections = promotionObjections(candidate, current);
  const warnings: string[] = [];
  if (objections.length && !opts.force) throw new AppError('PROMOTION_REFUSED', `${candidateDir}: ${objections.join('; ')}.`);
  if (objections.length) warnings.push(...objections.map((o) => `forced although ${o}`));

  const name = current?.name ?? candidate.name;
  const version = opts.version ?? (current ? nextMinor(current.version) : candidate.version);
  if (current && version === current.version) throw new AppError('PROMOTION_REFUSED', `version ${version} is the current version; pass another --version.`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const staging = path.join(path.dirname(target), `.promote-${path.basename(target)}-${process.pid}`);
  await rm(staging, { recursive: true, force: true });
  let manifest: ModelManifest;
  try {
    const { sha256: _s, created: _c, schema_version: _v, ...rest } = candidate;
    manifest = await writeModelDir({
      dir: staging,
      onnxSource: path.join(candidateDir, 'model.onnx'),
      manifest: {
        ...rest, name, version,
        training: { ...rest.training, promotion: { from: { name: candidate.name, version: candidate.version, dir: path.relative(process.cwd(), candidateDir) }, replaced: current ? { version: current.version, sha256: current.sha256 } : null, forced: objections.length > 0, at: new Date().toISOString() } },
      } as Omit<ModelManifest, 'sha256' | 'created' | 'schema_version'>,
    });
    // The same checks the service runs at load (checksum, shapes, warm-up), before anything is swapped.
    const classifier = await loadClassifier(staging, { intraOpThreads: 1 });
    await classifier.dispose();
  } catch (cause) {
    await rm(staging, { recursive: true, force: true });
    throw new AppError('PROMOTION_FAILED', `the staged copy of ${candidateDir} does not load: ${isAppError(cause) ? `${cause.code}: ${cause.message}` : (cause as Error).message}`, { cause });
  }

  let previous: PromoteResult['previous'] = null;
  const aside = path.join(path.dirname(target), `.previous-${path.basename(target)}-${stamp}`);
  if (current) await rename(target, aside);
  try {
    await rename(staging, target);
  } catch (cause) {
    if (current) await rename(aside, target);
    await rm(staging, { recursive: true, force: true });
    throw new AppError('PROMOTION_FAILED', `could not move the new version into ${target}`, { cause });
  }
  if (current) {
    const history = path.join(path.resolve(opts.historyDir ?? path.join('runs', 'model-history')), name, `${current.version}-${stamp}`);
    await move(aside, history);
    previous = { version: current.version, sha256: current.sha256, history };
  }

  let reloaded: PromoteResult['reloaded'] = null;
  if (opts.reloadUrl) reloaded = await reloadService(opts.reloadUrl, opts.apiKey);
  return { manifest, previous, reloaded, warnings };
}

async function reloadService(baseUrl: string, apiKey?: string): Promise<Array<{ name: string; version: string }>> {
  const url = new URL('/admin/reload', baseUrl);
  let response: Response;
  try {
    response = await fetch(url, { method: 'POST', headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {} });
  } catch (cause) {
    throw new AppError('RELOAD_FAILED', `the new version is in place on disk, but ${url} could not be reached (${(cause as Error).message}); reload it with SIGHUP or POST /admin/reload.`, { cause });
  }
  const body = await response.json().catch(() => ({})) as { models?: Array<{ name: string; version: string }>; error?: { code?: string; message?: string } };
  if (!response.ok) throw new AppError('RELOAD_FAILED', `the new version is in place on disk, but ${url} answered ${response.status} ${body.error?.code ?? ''} ${body.error?.message ?? ''}`.trim());
  return (body.models ?? []).map((m) => ({ name: m.name, version: m.version }));
}
