/**
 * The analysts' labeled set: review decisions (images.review-decisions/v1) in, training labels out.
 * Transport-free: the Kafka consumer (src/transport/kafka/review-decisions.ts) feeds it, and so can
 * anything else that holds ReviewDecisions.
 *
 *   <dir>/decisions.jsonl                   every decision as received, one JSON line each, with
 *                                           receivedAt, its source (topic/partition/offset) and how
 *                                           its image was resolved. Append-only: never rewritten;
 *                                           each append is fsynced before append() resolves.
 *   <dir>/images/<sha[0:2]>/<sha>.<ext>     image bytes, content-addressed (sha256 verified)
 *   <dir>/labels.csv                        compiled: path,class,split,decision_id,analyst,decided_at
 *   <dir>/report.json                       compiled: counts, conflicts, unresolved images, unknown labels
 *
 * Which decision labels an image, and what the report lists, is decided in labeled-set-compile.ts;
 * this module is the storage around it.
 *
 * compile() derives everything from decisions.jsonl and the images folder, so the same files always
 * compile to the same labels.csv — after a restart, or in another process (npm run labels:compile).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors.js';
import { readManifest } from '../model/manifest.js';
import { sniffImageType, type Fetcher } from '../net/fetcher.js';
import { checkReviewDecision, type ReviewDecision } from '../contracts/index.js';
import { csvLine } from './dataset.js';
import {
  compileDecisions, duplicateKey, LABELS_HEADER, parseDecisionLine,
  type DecisionLine, type ImageStatus, type LabeledSetReport,
} from './labeled-set-compile.js';

// Re-exported so importers of the labeled set need not know where compiling lives.
export { duplicateKey, LABELS_HEADER, REPORT_SCHEMA } from './labeled-set-compile.js';
export type { DecisionSummary, ImageOutcome, ImageStatus, LabeledSetReport } from './labeled-set-compile.js';

export const DECISIONS_FILE = 'decisions.jsonl';
export const LABELS_FILE = 'labels.csv';
export const REPORT_FILE = 'report.json';
export const IMAGES_DIR = 'images';
export const POOL_INDEX_FILE = 'index.jsonl';

export interface LabeledSetOptions {
  /** A directory with index.jsonl lines {"sha256","file"} (file relative to it): images are copied from here first. */
  pool?: string;
  /** Classes the model can learn (e.g. readKnownClasses(modelDir)); labels outside it are reported, not trained. */
  knownClasses?: Iterable<string> | null;
  /** The SSRF-guarded fetcher (src/transport/fetcher.ts) for image.url; without one, URLs are not fetched. */
  fetcher?: Fetcher;
  /** false: the directory and its decisions.jsonl must exist already (compile-only use). Default true. */
  create?: boolean;
}

/** Where a decision came from; all optional (not every source is a Kafka topic). */
export interface AppendMeta {
  topic?: string;
  partition?: number;
  offset?: string;
  receivedAt?: Date;
}

export interface AppendResult {
  /** Already appended before (same reviewId, or same decisionId+verdict+label+analyst+decidedAt). */
  duplicate: boolean;
  sha256: string | null;
  image: ImageStatus;
  reason?: string;
}

export interface LabeledSet {
  readonly dir: string;
  /** Resolves once the decision (and its image, if any) is durable on disk. */
  append(decision: ReviewDecision, meta?: AppendMeta): Promise<AppendResult>;
  /** Writes labels.csv and report.json (temp file + rename) from what is on disk, and returns the report. */
  compile(): Promise<LabeledSetReport>;
  close(): Promise<void>;
}

const STORED_FILE = /^([0-9a-f]{64})\.([a-z0-9]+)$/;
const EXTENSIONS: Record<string, string> = {
  'image/jpeg': 'jpg', 'image/png': 'png', 'image/gif': 'gif', 'image/webp': 'webp', 'image/tiff': 'tif',
  'image/bmp': 'bmp', 'image/avif': 'avif', 'image/heic': 'heic', 'image/heif': 'heif',
};

const sha256Of = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** The label names of a model directory's model.json. */
export async function readKnownClasses(modelDir: string): Promise<string[]> {
  return (await readManifest(modelDir)).labels.map((l) => l.name);
}

async function fsyncDir(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch {
    // Not every platform can fsync a directory; the rename itself is still atomic.
  } finally {
    await handle?.close();
  }
}

/** Writes a file atomically: a temp file beside it, fsynced, renamed over it. */
async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(tmp, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await handle.close();
  await rename(tmp, file);
  await fsyncDir(path.dirname(file));
}

/** Complete lines of a file (a fragment after the last newline — an append in progress or torn — is not a line). */
async function* completeLines(file: string): AsyncGenerator<string> {
  let rest = '';
  const stream = createReadStream(file, { encoding: 'utf8' });
  for await (const chunk of stream) {
    rest += chunk as string;
    let nl: number;
    while ((nl = rest.indexOf('\n')) >= 0) {
      yield rest.slice(0, nl);
      rest = rest.slice(nl + 1);
    }
  }
}

class Store implements LabeledSet {
  private readonly decisionsFile: string;
  private readonly imagesDir: string;
  private readonly known: Set<string> | null;
  private readonly seen = new Set<string>();
  /** decisionId → sha256, so a decision without an image reference (e.g. a reopen) finds its photo. */
  private readonly shaByDecision = new Map<string, string>();
  private readonly stored = new Map<string, string>();
  private pool: { mtimeMs: number; files: Map<string, string> } | null = null;
  private handle: FileHandle | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(readonly dir: string, private readonly options: LabeledSetOptions) {
    this.decisionsFile = path.join(dir, DECISIONS_FILE);
    this.imagesDir = path.join(dir, IMAGES_DIR);
    this.known = options.knownClasses ? new Set(options.knownClasses) : null;
  }

  /** Appends, compiles and closes run one at a time, in call order. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  async init(): Promise<void> {
    const exists = await stat(this.decisionsFile).then((s) => s.isFile(), () => false);
    if (!exists && this.options.create === false) {
      throw new AppError('DATASET_INVALID', `${this.decisionsFile} does not exist: not a labeled set.`);
    }
    await mkdir(this.imagesDir, { recursive: true });
    if (exists) {
      for await (const text of completeLines(this.decisionsFile)) {
        const parsed = parseDecisionLine(text);
        if (parsed.ok) this.remember(parsed.line);
      }
    }
    await this.scanImages();
  }

  private remember(line: DecisionLine): void {
    this.seen.add(duplicateKey(line.decision));
    const sha = line.decision.image?.sha256?.toLowerCase() ?? line.image.sha256;
    if (sha && !this.shaByDecision.has(line.decision.decisionId)) this.shaByDecision.set(line.decision.decisionId, sha);
  }

  /** sha256 → path relative to dir, for every stored image. */
  private async scanImages(): Promise<Map<string, string>> {
    this.stored.clear();
    for (const sub of await readdir(this.imagesDir, { withFileTypes: true })) {
      if (!sub.isDirectory() || !/^[0-9a-f]{2}$/.test(sub.name)) continue;
      for (const name of await readdir(path.join(this.imagesDir, sub.name))) {
        const m = STORED_FILE.exec(name);
        // Anything else (a temp file of a write in progress, here or in another process) is not an image yet.
        if (m && m[1]!.startsWith(sub.name)) this.stored.set(m[1]!, `${IMAGES_DIR}/${sub.name}/${name}`);
      }
    }
    return this.stored;
  }

  private async appendHandle(): Promise<FileHandle> {
    if (this.handle) return this.handle;
    const existed = await stat(this.decisionsFile).then((s) => s.size, () => -1);
    const handle = await open(this.decisionsFile, 'a');
    if (existed > 0) {
      // A crash mid-append can leave a fragment without its newline. End it, so the next line is
      // whole; the fragment stays (append-only) and compile reports it as an invalid line. Its
      // offset was never committed, so the decision itself is redelivered.
      const probe = await open(this.decisionsFile, 'r');
      const last = Buffer.alloc(1);
      await probe.read(last, 0, 1, existed - 1);
      await probe.close();
      if (last[0] !== 0x0a) await handle.write('\n');
    }
    if (existed < 0) await fsyncDir(this.dir);
    this.handle = handle;
    return handle;
  }

  append(decision: ReviewDecision, meta: AppendMeta = {}): Promise<AppendResult> {
    return this.serial(async () => {
      if (this.closed) throw new Error('labeled set is closed');
      const checked = checkReviewDecision(decision);
      if (!checked.ok) throw new TypeError(`not a valid review decision: ${checked.reason}`);
      const duplicate = this.seen.has(duplicateKey(decision));
      const image = duplicate
        ? { sha256: this.shaOf(decision), status: 'skipped' as const, reason: 'duplicate' }
        : await this.resolveImage(decision);
      const line: DecisionLine = {
        receivedAt: (meta.receivedAt ?? new Date()).toISOString(),
        source: meta.topic !== undefined || meta.partition !== undefined || meta.offset !== undefined
          ? { topic: meta.topic ?? null, partition: meta.partition ?? null, offset: meta.offset ?? null }
          : null,
        decision,
        image,
        ...(duplicate ? { duplicate: true as const } : {}),
      };
      const handle = await this.appendHandle();
      await handle.write(`${JSON.stringify(line)}\n`);
      await handle.sync();
      this.remember(line);
      return { duplicate, sha256: image.sha256, image: image.status, ...(image.reason && !duplicate ? { reason: image.reason } : {}) };
    });
  }

  private shaOf(d: ReviewDecision): string | null {
    return d.image?.sha256?.toLowerCase() ?? this.shaByDecision.get(d.decisionId) ?? null;
  }

  /** Finds the photo's bytes: already stored → the pool → image.url (sha256 verified when given). */
  private async resolveImage(d: ReviewDecision): Promise<DecisionLine['image']> {
    const claimed = this.shaOf(d);
    if (claimed && this.stored.has(claimed)) return { sha256: claimed, status: 'present' };
    // A reopen never makes a label: nothing worth fetching for it.
    if (d.verdict === 'reopened') return { sha256: claimed, status: 'skipped', reason: 'not fetched for a reopened decision' };
    const reasons: string[] = [];
    if (claimed) {
      const fromPool = await this.fromPool(claimed);
      if (fromPool === true) return { sha256: claimed, status: 'pool' };
      reasons.push(fromPool);
    }
    const url = d.image?.url;
    if (url) {
      if (!this.options.fetcher) {
        reasons.push('image.url not fetched: no fetcher configured');
      } else {
        try {
          const fetched = await this.options.fetcher.fetchImage(url);
          const actual = sha256Of(fetched.bytes);
          if (claimed && actual !== claimed) {
            reasons.push(`sha256 mismatch: ${url} returned ${actual}`);
          } else {
            await this.storeImage(actual, fetched.bytes, EXTENSIONS[fetched.contentType] ?? 'bin');
            return { sha256: actual, status: 'fetched' };
          }
        } catch (err) {
          const e = err as { code?: string; message?: string };
          reasons.push(`fetch failed: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`);
        }
      }
    } else if (!claimed) {
      reasons.push('no image reference (image.sha256 or image.url)');
    } else {
      reasons.push('no image.url to fetch');
    }
    return { sha256: claimed, status: 'unresolved', reason: reasons.join('; ') };
  }

  /** true when copied from the pool, else why not. */
  private async fromPool(sha: string): Promise<true | string> {
    if (!this.options.pool) return 'no pool configured';
    const poolDir = path.resolve(this.options.pool);
    const index = path.join(poolDir, POOL_INDEX_FILE);
    const mtimeMs = await stat(index).then((s) => s.mtimeMs, () => -1);
    if (mtimeMs < 0) return `pool index ${index} missing`;
    if (!this.pool || this.pool.mtimeMs !== mtimeMs) {
      const files = new Map<string, string>();
      for (const text of (await readFile(index, 'utf8')).split('\n')) {
        if (!text.trim()) continue;
        try {
          const entry = JSON.parse(text) as { sha256?: unknown; file?: unknown };
          if (typeof entry.sha256 === 'string' && typeof entry.file === 'string') files.set(entry.sha256.toLowerCase(), entry.file);
        } catch {
          // A bad index line only hides that one image.
        }
      }
      this.pool = { mtimeMs, files };
    }
    const file = this.pool.files.get(sha);
    if (!file) return 'not in the pool';
    const full = path.resolve(poolDir, file);
    if (path.isAbsolute(file) || !full.startsWith(poolDir + path.sep)) return `pool file ${file} is outside the pool`;
    let bytes: Buffer;
    try {
      bytes = await readFile(full);
    } catch (err) {
      return `pool file ${file} unreadable: ${(err as Error).message}`;
    }
    const actual = sha256Of(bytes);
    if (actual !== sha) return `sha256 mismatch: pool file ${file} is ${actual}`;
    const type = sniffImageType(bytes);
    if (!type) return `pool file ${file} is not an image`;
    await this.storeImage(sha, bytes, EXTENSIONS[type] ?? 'bin');
    return true;
  }

  private async storeImage(sha: string, bytes: Uint8Array, ext: string): Promise<void> {
    if (this.stored.has(sha)) return;
    const sub = path.join(this.imagesDir, sha.slice(0, 2));
    await mkdir(sub, { recursive: true });
    await writeAtomic(path.join(sub, `${sha}.${ext}`), bytes);
    this.stored.set(sha, `${IMAGES_DIR}/${sha.slice(0, 2)}/${sha}.${ext}`);
  }

  compile(): Promise<LabeledSetReport> {
    return this.serial(() => this.compileNow());
  }

  private async compileNow(): Promise<LabeledSetReport> {
    const texts: string[] = [];
    if (await stat(this.decisionsFile).then(() => true, () => false)) {
      for await (const text of completeLines(this.decisionsFile)) texts.push(text);
    }
    const stored = await this.scanImages();
    const { rows, report } = compileDecisions(texts, { stored, knownClasses: this.known, generatedAt: new Date() });
    await writeAtomic(path.join(this.dir, LABELS_FILE), [LABELS_HEADER, ...rows].map(csvLine).join(''));
    await writeAtomic(path.join(this.dir, REPORT_FILE), `${JSON.stringify(report, null, 2)}\n`);
    return report;
  }

  close(): Promise<void> {
    return this.serial(async () => {
      this.closed = true;
      await this.handle?.close();
      this.handle = null;
    });
  }
}

/** Opens (creating unless options.create is false) a labeled set directory. */
export async function openLabeledSet(dir: string, options: LabeledSetOptions = {}): Promise<LabeledSet> {
  const store = new Store(path.resolve(dir), options);
  await store.init();
  return store;
}
