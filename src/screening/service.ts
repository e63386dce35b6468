/**
 * The screening pipeline: bytes (or a URL) → preprocessing → the model generation's batchers →
 * policy → one result. Transport-free: HTTP, Kafka and the CLI all call screen(). Components emit
 * named events; metrics and logs subscribe to them, so none of that leaks in here. After a fresh
 * result, two optional side paths get the photo without holding up the answer: the unlabeled pool
 * (pool.ts) and the shadow candidate (shadow.ts).
 */
import { createHash, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { createBatcher, type Batcher, type BatchEvent, type Lane } from '../batching/index.js';
import type { AppConfig } from '../config.js';
import { isAppError, AppError, type ErrorCode } from '../errors.js';
import type { Classifier } from '../model/engine.js';
import { createModelRegistry, type ModelRegistry, type RegistryEvents } from '../model/registry.js';
import { cascadeProblems } from '../policy/cascade.js';
import type { FlagReason } from '../policy/index.js';
import type { SourceInfo } from '../preprocess/index.js';
import { createFetcher, type Fetcher } from '../net/fetcher.js';
import { DecisionCache, makerOf } from './decision-cache.js';
import { screenAll, screenCascade, type CascadeResult, type RunContext, type StageEvent } from './model-runs.js';
import { createPoolSampler, type PoolEvents, type PoolMeta, type PoolSampler, type PoolStatus } from './pool.js';
import { Shadow, type ShadowEvents, type ShadowStatus } from './shadow.js';

export type Source = 'http' | 'kafka' | 'cli';

export interface ScreenRequest {
  bytes?: Uint8Array;
  url?: string;
  source: Source;
  lane?: Lane;
  timeoutMs?: number;
  requestId?: string;
  /** Listing context, kept with the photo if it is sampled into the unlabeled pool. */
  meta?: PoolMeta;
}

export interface LabelScore { label: string; score: number; trade_relevant: boolean }
export interface ClassifierResult { name: string; version: string; top: LabelScore[] }

export type { CascadeResult };

export interface ScreenResult {
  requestId: string;
  sha256: string;
  flagged: boolean;
  reasons: FlagReason[];
  /** The models that screened this photo (with a cascade, only the stages that ran). */
  classifiers: ClassifierResult[];
  cascade?: CascadeResult;
  image: SourceInfo & { url?: string };
  /** true: these bytes were screened before; "near": a photo within `near.distance` pHash bits was. */
  cached: boolean | 'near';
  /** With cached "near": how many of the 64 pHash bits differ, and the photo whose decision this is. */
  near?: { distance: number; sha256: string };
  timings: { fetchMs: number; preprocessMs: number; queueMs: number; inferenceMs: number; totalMs: number };
}

export interface ScreeningEvents {
  screened: { source: Source; result: ScreenResult };
  failed: { source: Source; code: ErrorCode | 'INTERNAL'; error: Error };
  /** hit: by sha256; near: by pHash, `distance` bits away; miss: screened. */
  cache: { result: 'hit' | 'near' | 'miss'; distance?: number };
  batch: BatchEvent & { model: string };
  /** One cascade stage ran on a fresh photo: its preprocessing + queue + inference time, and whether it passed the photo on. */
  stage: StageEvent;
  models: RegistryEvents['generation'];
  modelLoaded: RegistryEvents['loaded'];
  reloadFailed: RegistryEvents['reloadFailed'];
  poolSample: PoolEvents['sample'];
  poolFailed: PoolEvents['failed'];
  shadowRequest: ShadowEvents['request'];
  shadowComparison: ShadowEvents['comparison'];
  shadowCandidate: ShadowEvents['candidate'];
  shadowFailed: ShadowEvents['failed'];
}

export interface ServiceOptions {
  /** [0, 1) source for the pool and shadow sampling decisions; tests force them with () => 0 or () => 1. */
  random?: () => number;
}

interface BatchItem { tensor: Float32Array; enqueuedAt: number }
interface BatchOutput { probabilities: Float32Array; startedAt: number; finishedAt: number }
interface Generation {
  batchers: Map<Classifier, Batcher<BatchItem, BatchOutput>>;
  /** The cascade's classifiers in stage order; null without a cascade (every model on every photo). */
  stages: Classifier[] | null;
}

export interface ScreeningService {
  screen(request: ScreenRequest): Promise<ScreenResult>;
  models(): Array<{ name: string; version: string; architecture: string; precision: string; inputSize: number; labels: Classifier['manifest']['labels']; sha256: string; generation: number }>;
  /** Reloads the primary models, then the shadow candidate (cleared if it has been promoted). */
  reload(): Promise<void>;
  queueDepth(): { interactive: number; bulk: number };
  shadowStatus(): ShadowStatus;
  /** Directories outside the models root and shadow.allowedRoots are refused (SHADOW_DIR_FORBIDDEN). */
  setShadow(modelDir: string, options?: { sampleRate?: number }): Promise<ShadowStatus>;
  clearShadow(): Promise<ShadowStatus>;
  /** null when the pool is off. */
  poolStatus(): PoolStatus | null;
  /** Resolves once the background work started so far (pool writes, shadow runs) has finished. */
  settle(): Promise<void>;
  ready(): boolean;
  close(): Promise<void>;
  on<K extends keyof ScreeningEvents>(event: K, listener: (e: ScreeningEvents[K]) => void): void;
}

type Cached = Omit<ScreenResult, 'requestId' | 'timings' | 'cached' | 'near' | 'image'> & { image: SourceInfo };

class Service extends EventEmitter implements ScreeningService {
  private registry!: ModelRegistry<Generation>;
  private readonly fetcher: Fetcher;
  private readonly cache: DecisionCache<Cached> | null;
  private readonly shadow: Shadow;
  private pool: PoolSampler | null = null;
  private closing = false;

  constructor(private readonly config: Readonly<AppConfig>, private readonly modelsRoot: string, private readonly options: ServiceOptions) {
    super();
    this.shadow = new Shadow({
      engine: this.engineOptions(), thresholds: config.models.thresholds, images: config.images,
      sampleRate: config.shadow.sampleRate, maxInFlight: config.shadow.maxInFlight,
      allowedRoots: [modelsRoot, ...config.shadow.allowedRoots], random: options.random,
    });
    this.shadow.on('request', (e) => this.emit('shadowRequest', e));
    this.shadow.on('comparison', (e) => this.emit('shadowComparison', e));
    this.shadow.on('candidate', (e) => this.emit('shadowCandidate', e));
    this.shadow.on('failed', (e) => this.emit('shadowFailed', e));
    this.fetcher = createFetcher({ timeoutMs: config.fetch.timeoutMs, maxBytes: config.fetch.maxBytes, maxRedirects: config.fetch.maxRedirects, allowlist: [...config.fetch.allowlist] });
    this.cache = config.cache.maxEntries > 0 ? new DecisionCache(config.cache, config.images) : null;
  }

  private engineOptions() {
    const m = this.config.models;
    return { executionProvider: m.executionProvider, intraOpThreads: m.intraOpThreads, graphOptimization: m.graphOptimization, inferenceThread: m.inferenceThread, threadSpinning: m.threadSpinning };
  }

  async start(): Promise<void> {
    const cfg = this.config;
    this.registry = await createModelRegistry<Generation>({
      directories: cfg.models.directories,
      modelsRoot: this.modelsRoot,
      engine: this.engineOptions(),
      attach: (classifiers) => {
        const stages = this.cascadeStages(classifiers);
        return { batchers: new Map(classifiers.map((c) => [c, this.batcherFor(c)])), stages };
      },
      detach: async ({ batchers }) => {
        await Promise.all([...batchers.values()].map((b) => b.drain()));
      },
    });
    this.registry.on('generation', (e) => this.emit('models', e));
    this.registry.on('loaded', (e) => this.emit('modelLoaded', e));
    this.registry.on('reloadFailed', (e) => this.emit('reloadFailed', e));
    if (cfg.pool.enabled) {
      this.pool = await createPoolSampler({ ...cfg.pool, random: this.options.random });
      this.pool.on('sample', (e) => this.emit('poolSample', e));
      this.pool.on('failed', (e) => this.emit('poolFailed', e));
    }
    // The configured candidate is the operator's own choice, so no root restriction; and a candidate
    // that does not load must not keep the service from starting: shadowStatus().lastError says why.
    if (cfg.shadow.modelDir) await this.shadow.activate(cfg.shadow.modelDir, { restricted: false }).catch(() => undefined);
  }

  /** The cascade's stages among a generation's models, or a CASCADE_INVALID listing every mismatch. */
  private cascadeStages(classifiers: readonly Classifier[]): Classifier[] | null {
    const { stages } = this.config.cascade;
    if (stages.length === 0) return null;
    const problems = cascadeProblems(stages, classifiers.map((c) => c.manifest.name));
    if (problems.length) throw new AppError('CASCADE_INVALID', problems.join('; '));
    return stages.map((st) => classifiers.find((c) => c.manifest.name === st.model)!);
  }

  private batcherFor(classifier: Classifier): Batcher<BatchItem, BatchOutput> {
    const b = this.config.batching;
    const batcher = createBatcher<BatchItem, BatchOutput>({
      maxBatchSize: b.enabled ? b.maxBatchSize : 1,
      preferredBatchSizes: b.enabled ? b.preferredBatchSizes : [1],
      maxQueueDelayMs: b.enabled ? b.maxQueueDelayMs : 0,
      maxQueueSize: b.maxQueueSize,
      defaultTimeoutMs: b.defaultTimeoutMs,
      execute: async (items) => {
        const startedAt = performance.now();
        const input = new Float32Array(items.length * classifier.inputLength);
        items.forEach((item, i) => input.set(item.tensor, i * classifier.inputLength));
        const outputs = await classifier.classify(input, items.length);
        const finishedAt = performance.now();
        return outputs.map((o) => ({ probabilities: o.probabilities, startedAt, finishedAt }));
      },
    });
    batcher.on('batch', (e: BatchEvent) => this.emit('batch', { ...e, model: classifier.manifest.name }));
    return batcher;
  }

  ready(): boolean {
    return !this.closing && this.registry !== undefined;
  }

  queueDepth() {
    const depth = { interactive: 0, bulk: 0 };
    for (const b of this.registry.current().extra.batchers.values()) {
      const s = b.stats();
      depth.interactive += s.queuedByLane.interactive;
      depth.bulk += s.queuedByLane.bulk;
    }
    return depth;
  }

  models() {
    const g = this.registry.current();
    return g.classifiers.map((c) => ({
      name: c.manifest.name, version: c.manifest.version, architecture: c.manifest.architecture, precision: c.manifest.precision,
      inputSize: c.manifest.input.size, labels: c.manifest.labels, sha256: c.manifest.sha256, generation: g.id,
    }));
  }

  async reload(): Promise<void> {
    await this.registry.reload();
    this.cache?.clear();
    await this.shadow.reload(this.registry.current().classifiers.map((c) => c.manifest.sha256));
  }

  shadowStatus(): ShadowStatus {
    return this.shadow.status();
  }

  setShadow(modelDir: string, options: { sampleRate?: number } = {}): Promise<ShadowStatus> {
    if (this.closing) return Promise.reject(new AppError('SHUTTING_DOWN'));
    return this.shadow.activate(modelDir, { ...options, restricted: true });
  }

  clearShadow(): Promise<ShadowStatus> {
    return this.shadow.clear();
  }

  poolStatus(): PoolStatus | null {
    return this.pool?.status() ?? null;
  }

  async settle(): Promise<void> {
    await Promise.all([this.shadow.settle(), this.pool?.settle()]);
  }

  async screen(request: ScreenRequest): Promise<ScreenResult> {
    const started = performance.now();
    const requestId = request.requestId ?? randomUUID();
    try {
      if (this.closing) throw new AppError('SHUTTING_DOWN');
      let bytes = request.bytes;
      let fetchMs = 0;
      if (!bytes) {
        if (!request.url) throw new AppError('IMAGE_EMPTY', 'Send image bytes or a URL.');
        const t0 = performance.now();
        bytes = (await this.fetcher.fetchImage(request.url)).bytes;
        fetchMs = performance.now() - t0;
      }
      const result = await this.screenBytes(bytes, request, requestId, started, fetchMs);
      this.emit('screened', { source: request.source, result });
      if (this.pool && !result.cached) {
        const pool = this.pool;
        const offer = { bytes, result, source: request.source, meta: { imageUrl: request.url, ...request.meta } };
        this.sidePath(() => pool.offer(offer), (error) => this.emit('poolFailed', { sha256: result.sha256, error }));
      }
      return result;
    } catch (err) {
      const error = err as Error;
      this.emit('failed', { source: request.source, code: isAppError(error) ? error.code : 'INTERNAL', error });
      throw err;
    }
  }

  /** A bug in the pool or the shadow must cost the request nothing, not even an exception. */
  private sidePath(run: () => void, report: (error: Error) => void): void {
    try {
      run();
    } catch (err) {
      report(err as Error);
    }
  }

  private async screenBytes(bytes: Uint8Array, request: ScreenRequest, requestId: string, started: number, fetchMs: number): Promise<ScreenResult> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const lease = this.registry.acquire();
    try {
      const { classifiers, extra: { stages } } = lease.generation;
      // The models' versions and the cascade as served: a reposted photo costs no inference until a
      // model, a band or the CASCADE mode changes.
      const maker = makerOf(classifiers, stages ? this.config.cascade : null, lease.generation.id);
      const lookup = this.cache ? await this.cache.lookup(bytes, sha256, maker) : null;
      if (lookup) this.emit('cache', { result: lookup.result, ...(lookup.result === 'near' ? { distance: lookup.distance } : {}) });
      const finish = (partial: Cached, cached: ScreenResult['cached'], timings: Omit<ScreenResult['timings'], 'totalMs' | 'fetchMs'>, near?: ScreenResult['near']): ScreenResult => ({
        requestId, ...partial, image: { ...partial.image, ...(request.url ? { url: request.url } : {}) }, cached, ...(near ? { near } : {}),
        timings: { fetchMs, ...timings, totalMs: performance.now() - started },
      });
      if (lookup?.result === 'hit') return finish(lookup.value, true, { preprocessMs: 0, queueMs: 0, inferenceMs: 0 });
      // Another photo's decision, describing this photo.
      if (lookup?.result === 'near') return finish({ ...lookup.value, sha256, image: lookup.source }, 'near', { preprocessMs: lookup.hashMs, queueMs: 0, inferenceMs: 0 }, { distance: lookup.distance, sha256: lookup.sha256 });

      const { batchers } = lease.generation.extra;
      const run: RunContext = {
        images: this.config.images, thresholds: this.config.models.thresholds, cascade: this.config.cascade,
        inspected: lookup?.result === 'miss' ? lookup.source : undefined,
        infer: (classifier, tensor) => batchers.get(classifier)!.submit({ tensor, enqueuedAt: performance.now() }, { lane: request.lane ?? 'interactive', timeoutMs: request.timeoutMs }),
        onStage: (e) => this.emit('stage', e),
      };
      const screened = stages ? await screenCascade(run, bytes, stages) : await screenAll(run, bytes, classifiers);
      const { scores, decision, timings, source } = screened;
      const partial: Cached = {
        sha256,
        flagged: decision.flagged,
        reasons: decision.reasons,
        classifiers: scores.map((sc) => ({ name: sc.classifier, version: sc.version, top: topK(sc.labels, sc.probabilities, this.config.response.topK) })),
        ...(screened.cascade ? { cascade: screened.cascade } : {}),
        image: source,
      };
      if (lookup) this.cache!.remember(lookup, sha256, maker, partial);
      const result = finish(partial, false, { ...timings, preprocessMs: timings.preprocessMs + (lookup?.hashMs ?? 0) });
      // The deciding model first: a candidate with no same-named primary among those that ran is
      // compared with what decided (with a cascade, a stage-2 candidate on a photo stage 1 kept).
      const primaries = screened.cascade ? [...scores].reverse() : scores;
      this.sidePath(() => this.shadow.offer(bytes, sha256, primaries), (error) => this.emit('shadowFailed', { candidate: '', during: 'compare', error }));
      return result;
    } finally {
      lease.release();
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    // The candidate takes no new work once closing; its running comparisons finish, then its session goes.
    await this.shadow.close();
    await this.registry?.close();
    // Last: requests that were still in flight above may have queued a sample.
    await this.pool?.settle();
  }
}

function topK(labels: readonly Classifier['manifest']['labels'][number][], probabilities: ArrayLike<number>, k: number): LabelScore[] {
  return labels
    .map((l, i) => ({ label: l.name, score: Number(probabilities[i]!.toFixed(6)), trade_relevant: l.trade_relevant }))
    .sort((a, b) => b.score - a.score)
    .slice(0, k);
}

export async function createScreeningService(config: Readonly<AppConfig>, modelsRoot = path.resolve('models'), options: ServiceOptions = {}): Promise<ScreeningService> {
  const service = new Service(config, modelsRoot, options);
  try {
    await service.start();
  } catch (err) {
    // Whatever did load (the models, when the pool index is unreadable) is released.
    await service.close().catch(() => undefined);
    throw err;
  }
  return service;
}
