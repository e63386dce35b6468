/**
 * Shadow mode: a candidate model (say, the next SSLD fine-tune) sees a sampled share of live
 * traffic after the primary models have decided, and only its agreement with them is recorded.
 * It never decides, never delays a response, and its failures stay here: the point is to learn
 * how a model would behave on real photos before it is allowed to matter.
 */
import { EventEmitter } from 'node:events';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { isAppError, AppError } from '../errors.js';
import { loadClassifier, type Classifier, type EngineOptions } from '../model/engine.js';
import { decide, type ClassifierScores, type ThresholdOverrides } from '../policy/index.js';
import { modelInput, type ImageLimits } from '../preprocess/index.js';

export type FlagAgreement = 'both' | 'primary_only' | 'candidate_only' | 'neither';
export type ShadowOutcome = 'compared' | 'dropped' | 'failed' | 'skipped';
export type CandidateChange = 'activated' | 'reloaded' | 'cleared' | 'promoted';

export interface CandidateInfo { name: string; version: string; sha256: string; directory: string; activatedAt: string }

export interface ShadowStatus {
  candidate: CandidateInfo | null;
  sampleRate: number;
  maxInFlight: number;
  inFlight: number;
  /** Counts since the candidate was activated; a reload of unchanged files keeps them. */
  compared: number;
  flag: Record<FlagAgreement, number>;
  flagAgreementRate: number | null;
  top1AgreementRate: number | null;
  dropped: number;
  failed: number;
  skipped: number;
  lastError: { code: string; message: string; at: string } | null;
}

export interface ShadowEvents {
  request: { candidate: string; outcome: ShadowOutcome };
  /** sha256 of the photo, so a log subscriber can collect the disagreements for review. */
  comparison: { candidate: string; sha256: string; flag: FlagAgreement; top1: 'agree' | 'disagree'; scoreDelta: number };
  candidate: { candidate: CandidateInfo | null; reason: CandidateChange; previous: CandidateInfo | null };
  failed: { candidate: string; during: 'compare' | 'load' | 'reload'; error: Error };
}

export interface ShadowOptions {
  engine: EngineOptions;
  thresholds: ThresholdOverrides;
  images: ImageLimits;
  sampleRate: number;
  maxInFlight: number;
  /** Where activate(…, { restricted: true }) may load from (the models root and shadow.allowedRoots). */
  allowedRoots: readonly string[];
  /** [0, 1); tests pass () => 0 to sample everything. */
  random?: () => number;
}

interface Stats { compared: number; flag: Record<FlagAgreement, number>; top1Agree: number; dropped: number; failed: number; skipped: number }

interface Slot {
  classifier: Classifier;
  info: CandidateInfo;
  /** The manifest as loaded: a reload of identical files continues the counts. */
  fingerprint: string;
  stats: Stats;
  tasks: Set<Promise<void>>;
}

const emptyStats = (): Stats => ({ compared: 0, flag: { both: 0, primary_only: 0, candidate_only: 0, neither: 0 }, top1Agree: 0, dropped: 0, failed: 0, skipped: 0 });
const label = (info: CandidateInfo) => `${info.name}@${info.version}`;

async function realOrResolved(p: string): Promise<string> {
  const resolved = path.resolve(p);
  try {
    return await realpath(resolved);
  } catch {
    return resolved;
  }
}

/**
 * The directory, with symlinks resolved, if it lies inside one of the roots; SHADOW_DIR_FORBIDDEN
 * otherwise. Resolving first means a link under runs/ cannot smuggle in a directory from elsewhere.
 */
export async function resolveCandidateDir(directory: string, roots: readonly string[]): Promise<string> {
  const wanted = await realOrResolved(directory);
  for (const root of roots) {
    const rel = path.relative(await realOrResolved(root), wanted);
    if (!path.isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${path.sep}`)) return wanted;
  }
  throw new AppError('SHADOW_DIR_FORBIDDEN', `Got ${directory}.`);
}

function argmax(labels: ClassifierScores['labels'], p: ArrayLike<number>): string {
  let best = 0;
  for (let i = 1; i < labels.length; i++) if ((p[i] ?? 0) > (p[best] ?? 0)) best = i;
  return labels[best]?.name ?? '';
}

function topTradeScore(s: ClassifierScores): number {
  let max = 0;
  s.labels.forEach((l, i) => {
    if (l.trade_relevant) max = Math.max(max, s.probabilities[i] ?? 0);
  });
  return max;
}

export class Shadow extends EventEmitter {
  private slot: Slot | null = null;
  private sampleRate: number;
  private inFlight = 0;
  private lastError: ShadowStatus['lastError'] = null;
  private changes: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly random: () => number;

  constructor(private readonly options: ShadowOptions) {
    super();
    this.sampleRate = options.sampleRate;
    this.random = options.random ?? Math.random;
  }

  status(): ShadowStatus {
    const s = this.slot?.stats ?? emptyStats();
    return {
      candidate: this.slot ? { ...this.slot.info } : null,
      sampleRate: this.sampleRate,
      maxInFlight: this.options.maxInFlight,
      inFlight: this.inFlight,
      compared: s.compared,
      flag: { ...s.flag },
      flagAgreementRate: s.compared ? (s.flag.both + s.flag.neither) / s.compared : null,
      top1AgreementRate: s.compared ? s.top1Agree / s.compared : null,
      dropped: s.dropped,
      failed: s.failed,
      skipped: s.skipped,
      lastError: this.lastError,
    };
  }

  /**
   * Loads, verifies and warms up a candidate, then swaps it in; the one it replaces is disposed
   * after its running comparisons. On failure the current candidate stays and the error is thrown.
   */
  activate(directory: string, options: { sampleRate?: number; restricted: boolean }): Promise<ShadowStatus> {
    return this.serialised(async () => {
      const dir = options.restricted ? await resolveCandidateDir(directory, this.options.allowedRoots) : path.resolve(directory);
      const classifier = await this.load(dir, 'load');
      if (options.sampleRate !== undefined) this.sampleRate = options.sampleRate;
      await this.swap(this.newSlot(classifier, dir), 'activated');
      return this.status();
    });
  }

  clear(): Promise<ShadowStatus> {
    return this.serialised(async () => {
      await this.swap(null, 'cleared');
      return this.status();
    });
  }

  /**
   * After the primary models reloaded: reads the candidate's directory again, and clears the shadow
   * when the candidate now is one of the primaries (it was promoted, nothing left to compare). A
   * failed load keeps the running candidate; it is reported, not thrown, since the primaries are fine.
   */
  reload(primarySha256s: readonly string[]): Promise<void> {
    return this.serialised(async () => {
      const current = this.slot;
      if (!current) return;
      if (primarySha256s.includes(current.info.sha256)) return this.swap(null, 'promoted');
      let classifier: Classifier;
      try {
        classifier = await this.load(current.info.directory, 'reload');
      } catch {
        return;
      }
      const next = this.newSlot(classifier, current.info.directory);
      if (next.fingerprint === current.fingerprint) {
        next.stats = current.stats;
        next.info.activatedAt = current.info.activatedAt;
      }
      await this.swap(next, 'reloaded');
      if (primarySha256s.includes(next.info.sha256)) await this.swap(null, 'promoted');
    });
  }

  /** Called once the primary result is ready; returns at once, the candidate runs afterwards. */
  offer(bytes: Uint8Array, sha256: string, primaries: readonly ClassifierScores[]): void {
    const slot = this.slot;
    if (!slot || this.closed || primaries.length === 0) return;
    if (this.sampleRate <= 0 || this.random() >= this.sampleRate) return this.outcome(slot, 'skipped');
    if (this.inFlight >= this.options.maxInFlight) return this.outcome(slot, 'dropped');
    this.inFlight++;
    const task = this.compare(slot, bytes, sha256, primaries).finally(() => {
      this.inFlight--;
      slot.tasks.delete(task);
    });
    slot.tasks.add(task);
  }

  /** Resolves once every comparison started so far has finished. */
  async settle(): Promise<void> {
    await this.changes;
    while (this.slot?.tasks.size) await Promise.all([...this.slot.tasks]);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.serialised(() => this.swap(null, 'cleared', false));
  }

  private serialised<T>(change: () => Promise<T>): Promise<T> {
    // One change at a time: two PUTs, or a PUT racing a SIGHUP, must not both swap in a candidate.
    const run = this.changes.then(change, change);
    this.changes = run.catch(() => undefined);
    return run;
  }

  private async load(dir: string, during: 'load' | 'reload'): Promise<Classifier> {
    try {
      return await loadClassifier(dir, this.options.engine);
    } catch (err) {
      const error = err as Error;
      this.lastError = { code: isAppError(error) ? error.code : 'INTERNAL', message: error.message, at: new Date().toISOString() };
      this.emit('failed', { candidate: this.slot ? label(this.slot.info) : dir, during, error });
      throw err;
    }
  }

  private newSlot(classifier: Classifier, directory: string): Slot {
    const m = classifier.manifest;
    return {
      classifier,
      info: { name: m.name, version: m.version, sha256: m.sha256, directory, activatedAt: new Date().toISOString() },
      fingerprint: JSON.stringify(m),
      stats: emptyStats(),
      tasks: new Set(),
    };
  }

  private async swap(next: Slot | null, reason: CandidateChange, announce = true): Promise<void> {
    const old = this.slot;
    this.slot = next;
    if (announce) this.emit('candidate', { candidate: next ? { ...next.info } : null, reason, previous: old ? { ...old.info } : null });
    if (!old) return;
    // Comparisons already running finish on the old session; nothing new reaches it.
    await Promise.allSettled([...old.tasks]);
    await old.classifier.dispose();
  }

  private outcome(slot: Slot, outcome: ShadowOutcome): void {
    if (outcome !== 'compared') slot.stats[outcome]++;
    this.emit('request', { candidate: label(slot.info), outcome });
  }

  private async compare(slot: Slot, bytes: Uint8Array, sha256: string, primaries: readonly ClassifierScores[]): Promise<void> {
    // After the response: the primary caller resumes before any of this work starts.
    await new Promise((resolve) => setImmediate(resolve));
    const { classifier, info } = slot;
    try {
      const { tensor } = await modelInput(bytes, classifier.manifest, this.options.images);
      const [output] = await classifier.classify(tensor, 1);
      const candidate: ClassifierScores = { classifier: info.name, version: info.version, labels: classifier.manifest.labels, probabilities: output!.probabilities };
      // The candidate stands in for the primary of the same name; a renamed model for the first one.
      const primary = primaries.find((p) => p.classifier === info.name) ?? primaries[0]!;
      const primaryFlag = decide([primary], this.options.thresholds).flagged;
      const candidateFlag = decide([candidate], this.options.thresholds).flagged;
      const flag: FlagAgreement = primaryFlag ? (candidateFlag ? 'both' : 'primary_only') : candidateFlag ? 'candidate_only' : 'neither';
      const top1 = argmax(primary.labels, primary.probabilities) === argmax(candidate.labels, candidate.probabilities) ? 'agree' : 'disagree';
      const scoreDelta = Math.abs(topTradeScore(candidate) - topTradeScore(primary));
      slot.stats.compared++;
      slot.stats.flag[flag]++;
      if (top1 === 'agree') slot.stats.top1Agree++;
      this.emit('comparison', { candidate: label(info), sha256, flag, top1, scoreDelta });
      this.outcome(slot, 'compared');
    } catch (err) {
      const error = err as Error;
      this.lastError = { code: isAppError(error) ? error.code : 'INTERNAL', message: error.message, at: new Date().toISOString() };
      this.emit('failed', { candidate: label(info), during: 'compare', error });
      this.outcome(slot, 'failed');
    }
  }
}
