/**
 * Service configuration: configs/default.yaml (or CONFIG_FILE), then environment overrides,
 * validated once at start-up against a schema with additionalProperties: false. Every problem is
 * listed in one error; the result is deeply frozen.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_CONFIG_FILE = path.join(REPO_ROOT, 'configs', 'default.yaml');

/**
 * The one config of every process this project runs (the screening service, the review console,
 * the labels consumer): one file, validated once with every problem listed, then frozen. Each
 * component takes only its own section (the console `AppConfig['review']`, the pipeline `['kafka']`).
 */
export interface AppConfig {
  server: {
    host: string; port: number; bodyLimitBytes: number; batchLimit: number; requestTimeoutMs: number; shutdownGraceMs: number; trustProxy: boolean;
    /** Admission control (src/transport/http/admission.ts): bodies being read or screened at once. */
    maxInFlightBodyBytes: number; maxInFlightRequests: number;
  };
  auth: { apiKeys: string[] };
  models: { directories: string[]; executionProvider: 'cpu' | 'cuda' | 'tensorrt'; intraOpThreads: number; graphOptimization: 'disabled' | 'basic' | 'extended' | 'all'; inferenceThread: 'main' | 'worker'; threadSpinning: boolean; thresholds: Record<string, Record<string, number>> };
  images: { maxBytes: number; maxPixels: number; minSide: number };
  fetch: { timeoutMs: number; maxBytes: number; maxRedirects: number; allowlist: string[] };
  batching: { enabled: boolean; maxBatchSize: number; preferredBatchSizes: number[]; maxQueueDelayMs: number; maxQueueSize: number; defaultTimeoutMs: number };
  /**
   * Decisions kept for repeats: by sha256 (exact), and with nearEnabled also by pHash within
   * nearDistance bits (src/screening/near-cache.ts): a repost answered with another photo's decision.
   */
  cache: { maxEntries: number; ttlSeconds: number; nearEnabled: boolean; nearDistance: number };
  /** Models run one after another while unsure (src/policy/cascade.ts); no stages = every model on every photo. */
  cascade: { mode: 'on' | 'off' | 'first'; stages: Array<{ model: string; escalate?: { from: number; below: number } | null }> };
  kafka: {
    brokers: string[]; clientId: string; groupId: string;
    topics: { input: string; results: string; review: string; dlq: string };
    partitions: number; replicationFactor: number; partitionsConsumedConcurrently: number; concurrency: number;
    maxAttempts: number; retryBackoffMs: number; highWater: number; lowWater: number; lagIntervalMs: number; shutdownTimeoutMs: number;
    /** Budget of one produced record (key + value); below the broker's message.max.bytes. */
    maxRecordBytes: number;
  };
  response: { topK: number };
  /** Screened photos sampled to disk as unlabeled data for SSLD (src/screening/pool.ts). */
  pool: { enabled: boolean; directory: string; sampleRate: number; maxImages: number; maxPendingWrites: number; sources: Array<'http' | 'kafka' | 'cli'> };
  /** A candidate model run on a share of live traffic, never deciding (src/screening/shadow.ts). */
  shadow: { modelDir: string | null; sampleRate: number; maxInFlight: number; allowedRoots: string[] };
  /** The analysts' review console, a separate process: npm run review (src/review). */
  review: {
    host: string; port: number; database: string; decisionsTopic: string; groupId: string;
    auth: {
      mode: 'accounts' | 'proxy';
      accounts: Array<{ username: string; passwordHash: string; role: 'analyst' | 'lead' }>;
      proxy: { userHeader: string; roleHeader: string | null; leadValue: string; leads: string[] };
      /** Failed sign-ins (src/review/throttle.ts explains the limits and trusted devices). */
      throttle: {
        perAccountClient: { freeFailures: number; baseDelaySeconds: number; maxDelaySeconds: number };
        perAccount: { freeFailures: number; baseDelaySeconds: number; maxDelaySeconds: number };
        perClient: { maxFailures: number; windowSeconds: number };
        perDevice: { freeFailures: number; baseDelaySeconds: number; maxDelaySeconds: number };
        forgetAfterSeconds: number; knownClientSeconds: number; deviceCookieSeconds: number; maxEntries: number;
      };
    };
    sessionTtlSeconds: number; cookieSecure: boolean; trustProxy: number; metricsPort: number | null; undoWindowSeconds: number; pageSize: number;
    photos: { fetch: boolean; concurrency: number; maxAttempts: number };
    publishIntervalMs: number;
  };
  logging: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  /** From NODE_ENV; production refuses to start without API keys. */
  production: boolean;
}

const posInt = { type: 'integer', minimum: 1 };
const section = (required: string[], properties: Record<string, unknown>) => ({ type: 'object', additionalProperties: false, required, properties });

const topicName = { type: 'string', pattern: '^[A-Za-z0-9._-]{1,249}$' };
const rate = { type: 'number', minimum: 0, maximum: 1 };
const DAY_SECONDS = 86_400;
const backoff = section(['freeFailures', 'baseDelaySeconds', 'maxDelaySeconds'], {
  freeFailures: { type: 'integer', minimum: 1, maximum: 1000 }, baseDelaySeconds: { type: 'integer', minimum: 1, maximum: DAY_SECONDS },
  maxDelaySeconds: { type: 'integer', minimum: 1, maximum: DAY_SECONDS },
});
const SCHEMA = section(['server', 'auth', 'models', 'images', 'fetch', 'batching', 'cache', 'cascade', 'kafka', 'response', 'pool', 'shadow', 'review', 'logging', 'production'], {
  server: section(['host', 'port', 'bodyLimitBytes', 'batchLimit', 'requestTimeoutMs', 'shutdownGraceMs', 'trustProxy', 'maxInFlightBodyBytes', 'maxInFlightRequests'], {
    host: { type: 'string', minLength: 1 }, port: { type: 'integer', minimum: 0, maximum: 65535 },
    bodyLimitBytes: posInt, batchLimit: { type: 'integer', minimum: 1, maximum: 256 }, requestTimeoutMs: posInt,
    shutdownGraceMs: { type: 'integer', minimum: 0 }, trustProxy: { type: 'boolean' },
    maxInFlightBodyBytes: posInt, maxInFlightRequests: posInt,
  }),
  auth: section(['apiKeys'], { apiKeys: { type: 'array', items: { type: 'string', minLength: 16 } } }),
  models: section(['directories', 'executionProvider', 'intraOpThreads', 'graphOptimization', 'inferenceThread', 'threadSpinning', 'thresholds'], {
    directories: { type: 'array', items: { type: 'string', minLength: 1 } },
    executionProvider: { enum: ['cpu', 'cuda', 'tensorrt'] },
    intraOpThreads: { type: 'integer', minimum: 0, maximum: 256 },
    graphOptimization: { enum: ['disabled', 'basic', 'extended', 'all'] },
    inferenceThread: { enum: ['main', 'worker'] },
    threadSpinning: { type: 'boolean' },
    thresholds: { type: 'object', additionalProperties: { type: 'object', additionalProperties: { type: 'number', minimum: 0, maximum: 1 } } },
  }),
  images: section(['maxBytes', 'maxPixels', 'minSide'], { maxBytes: posInt, maxPixels: posInt, minSide: posInt }),
  fetch: section(['timeoutMs', 'maxBytes', 'maxRedirects', 'allowlist'], {
    timeoutMs: posInt, maxBytes: posInt, maxRedirects: { type: 'integer', minimum: 0, maximum: 10 },
    allowlist: { type: 'array', items: { type: 'string', minLength: 1 } },
  }),
  batching: section(['enabled', 'maxBatchSize', 'preferredBatchSizes', 'maxQueueDelayMs', 'maxQueueSize', 'defaultTimeoutMs'], {
    enabled: { type: 'boolean' }, maxBatchSize: { type: 'integer', minimum: 1, maximum: 256 },
    preferredBatchSizes: { type: 'array', items: posInt }, maxQueueDelayMs: { type: 'integer', minimum: 0 },
    maxQueueSize: posInt, defaultTimeoutMs: posInt,
  }),
  cache: section(['maxEntries', 'ttlSeconds', 'nearEnabled', 'nearDistance'], {
    maxEntries: { type: 'integer', minimum: 0 }, ttlSeconds: posInt, nearEnabled: { type: 'boolean' },
    // Past 16 bits, unrelated photos match (docs/BENCHMARKS.md, "Near-duplicate cache").
    nearDistance: { type: 'integer', minimum: 0, maximum: 16 },
  }),
  cascade: section(['mode', 'stages'], {
    mode: { enum: ['on', 'off', 'first'] },
    stages: { type: 'array', items: section(['model'], { model: { type: 'string', minLength: 1 }, escalate: { oneOf: [{ type: 'null' }, section(['from', 'below'], { from: rate, below: rate })] } }) },
  }),
  kafka: section(['brokers', 'clientId', 'groupId', 'topics', 'partitions', 'replicationFactor', 'partitionsConsumedConcurrently', 'concurrency', 'maxAttempts', 'retryBackoffMs', 'highWater', 'lowWater', 'lagIntervalMs', 'shutdownTimeoutMs', 'maxRecordBytes'], {
    brokers: { type: 'array', items: { type: 'string', pattern: '^[^\\s:,]+:\\d{1,5}$' } },
    clientId: { type: 'string', minLength: 1 }, groupId: { type: 'string', minLength: 1 },
    topics: section(['input', 'results', 'review', 'dlq'], { input: topicName, results: topicName, review: topicName, dlq: topicName }),
    partitions: posInt, replicationFactor: posInt, partitionsConsumedConcurrently: posInt, concurrency: { type: 'integer', minimum: 1, maximum: 256 },
    maxAttempts: { type: 'integer', minimum: 1, maximum: 20 }, retryBackoffMs: { type: 'integer', minimum: 0 },
    highWater: posInt, lowWater: { type: 'integer', minimum: 0 }, lagIntervalMs: posInt, shutdownTimeoutMs: posInt,
    // Below 16 KiB not even a dead letter with its reason would fit.
    maxRecordBytes: { type: 'integer', minimum: 16384, maximum: 64 * 1024 * 1024 },
  }),
  response: section(['topK'], { topK: { type: 'integer', minimum: 1, maximum: 100 } }),
  pool: section(['enabled', 'directory', 'sampleRate', 'maxImages', 'maxPendingWrites', 'sources'], {
    enabled: { type: 'boolean' }, directory: { type: 'string', minLength: 1 }, sampleRate: rate, maxImages: posInt,
    maxPendingWrites: { type: 'integer', minimum: 1, maximum: 4096 },
    sources: { type: 'array', uniqueItems: true, items: { enum: ['http', 'kafka', 'cli'] } },
  }),
  shadow: section(['modelDir', 'sampleRate', 'maxInFlight', 'allowedRoots'], {
    modelDir: { type: ['string', 'null'], minLength: 1 }, sampleRate: rate, maxInFlight: { type: 'integer', minimum: 1, maximum: 64 },
    allowedRoots: { type: 'array', items: { type: 'string', minLength: 1 } },
  }),
  review: section(['host', 'port', 'database', 'decisionsTopic', 'groupId', 'auth', 'sessionTtlSeconds', 'cookieSecure', 'trustProxy', 'metricsPort', 'undoWindowSeconds', 'pageSize', 'photos', 'publishIntervalMs'], {
    host: { type: 'string', minLength: 1 }, port: { type: 'integer', minimum: 0, maximum: 65535 },
    database: { type: 'string', minLength: 1 }, decisionsTopic: topicName, groupId: { type: 'string', minLength: 1 },
    auth: section(['mode', 'accounts', 'proxy', 'throttle'], {
      mode: { enum: ['accounts', 'proxy'] },
      accounts: {
        type: 'array',
        items: section(['username', 'passwordHash', 'role'], {
          username: { type: 'string', pattern: '^[A-Za-z0-9._@-]{1,128}$' },
          passwordHash: { type: 'string', pattern: '^scrypt\\$\\d+\\$\\d+\\$\\d+\\$[A-Za-z0-9+/=]+\\$[A-Za-z0-9+/=]+$' },
          role: { enum: ['analyst', 'lead'] },
        }),
      },
      proxy: section(['userHeader', 'roleHeader', 'leadValue', 'leads'], {
        userHeader: { type: 'string', pattern: '^[A-Za-z0-9-]{1,64}$' }, roleHeader: { type: ['string', 'null'], pattern: '^[A-Za-z0-9-]{1,64}$' },
        leadValue: { type: 'string', minLength: 1 }, leads: { type: 'array', items: { type: 'string', minLength: 1 } },
      }),
      throttle: section(['perAccountClient', 'perAccount', 'perClient', 'perDevice', 'forgetAfterSeconds', 'knownClientSeconds', 'deviceCookieSeconds', 'maxEntries'], {
        perAccountClient: backoff, perAccount: backoff, perDevice: backoff,
        perClient: section(['maxFailures', 'windowSeconds'], { maxFailures: { type: 'integer', minimum: 1, maximum: 1_000_000 }, windowSeconds: { type: 'integer', minimum: 1, maximum: DAY_SECONDS } }),
        forgetAfterSeconds: { type: 'integer', minimum: 1, maximum: 30 * DAY_SECONDS },
        knownClientSeconds: { type: 'integer', minimum: 0, maximum: 365 * DAY_SECONDS },
        deviceCookieSeconds: { type: 'integer', minimum: 60, maximum: 400 * DAY_SECONDS },
        // Each counter is a few hundred bytes; the cap keeps a flood of made-up names to a few MiB.
        maxEntries: { type: 'integer', minimum: 100, maximum: 1_000_000 },
      }),
    }),
    sessionTtlSeconds: { type: 'integer', minimum: 60 }, cookieSecure: { type: 'boolean' }, trustProxy: { type: 'integer', minimum: 0, maximum: 10 },
    metricsPort: { type: ['integer', 'null'], minimum: 0, maximum: 65535 },
    undoWindowSeconds: { type: 'integer', minimum: 0 }, pageSize: { type: 'integer', minimum: 1, maximum: 200 },
    photos: section(['fetch', 'concurrency', 'maxAttempts'], { fetch: { type: 'boolean' }, concurrency: { type: 'integer', minimum: 1, maximum: 32 }, maxAttempts: { type: 'integer', minimum: 1, maximum: 20 } }),
    publishIntervalMs: posInt,
  }),
  logging: section(['level'], { level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] } }),
  production: { type: 'boolean' },
});

const validate = new Ajv({ allErrors: true, strict: false }).compile(SCHEMA);

export class ConfigError extends Error {
  constructor(readonly problems: string[], source: string) {
    super(`invalid configuration (${source}), ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** One line per schema error, named by dotted path: shared by every config this project validates. */
export function describeSchemaError(e: ErrorObject): string {
  const where = e.instancePath ? e.instancePath.slice(1).replaceAll('/', '.') : '(top level)';
  if (e.keyword === 'additionalProperties') return `${where}: unknown key "${String(e.params.additionalProperty)}"`;
  if (e.keyword === 'required') return `${where}: missing key "${String(e.params.missingProperty)}"`;
  if (e.keyword === 'enum') return `${where}: must be one of ${(e.params.allowedValues as unknown[]).join(', ')}`;
  if (e.keyword === 'const') return `${where}: must be ${JSON.stringify(e.params.allowedValue)}`;
  return `${where}: ${e.message ?? 'is invalid'}`;
}

const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
const number = (v: string) => (/^-?\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : v);
const bool = (v: string) => (v === 'true' || v === 'on' ? true : v === 'false' || v === 'off' ? false : v);

/**
 * Environment variable → config path and parser, and optionally keys of the same section that the
 * variable's presence also sets. Values that fail to parse are left for the schema to report.
 */
const ENV_OVERRIDES: Record<string, [string, string, (v: string) => unknown, Record<string, unknown>?]> = {
  HOST: ['server', 'host', String],
  PORT: ['server', 'port', number],
  MAX_INFLIGHT_BODY_BYTES: ['server', 'maxInFlightBodyBytes', number],
  MAX_INFLIGHT_REQUESTS: ['server', 'maxInFlightRequests', number],
  API_KEYS: ['auth', 'apiKeys', list],
  MODEL_DIRS: ['models', 'directories', list],
  EXECUTION_PROVIDER: ['models', 'executionProvider', String],
  INTRA_OP_THREADS: ['models', 'intraOpThreads', number],
  INFERENCE_THREAD: ['models', 'inferenceThread', String],
  THREAD_SPINNING: ['models', 'threadSpinning', bool],
  BATCHING: ['batching', 'enabled', bool],
  CASCADE: ['cascade', 'mode', String],
  NEAR_DEDUPE: ['cache', 'nearEnabled', bool],
  MAX_BATCH_SIZE: ['batching', 'maxBatchSize', number],
  FETCH_ALLOWLIST: ['fetch', 'allowlist', list],
  LOG_LEVEL: ['logging', 'level', String],
  KAFKA_BROKERS: ['kafka', 'brokers', list],
  KAFKA_GROUP_ID: ['kafka', 'groupId', String],
  // Naming a pool directory is the switch: nobody sets a directory for a pool they want off.
  POOL_DIR: ['pool', 'directory', String, { enabled: true }],
  POOL_SAMPLE_RATE: ['pool', 'sampleRate', number],
  SHADOW_MODEL_DIR: ['shadow', 'modelDir', String],
  SHADOW_SAMPLE_RATE: ['shadow', 'sampleRate', number],
  REVIEW_HOST: ['review', 'host', String],
  REVIEW_PORT: ['review', 'port', number],
  REVIEW_DB: ['review', 'database', String],
  REVIEW_COOKIE_SECURE: ['review', 'cookieSecure', bool],
  REVIEW_TRUST_PROXY: ['review', 'trustProxy', number],
  REVIEW_METRICS_PORT: ['review', 'metricsPort', number],
};

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** Objects merge key by key at every depth (a file that sets review.auth.accounts keeps auth.mode); arrays and values replace. */
function mergeOver(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over;
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) merged[key] = mergeOver(base[key], value);
  return merged;
}

function readYaml(file: string): Record<string, Record<string, unknown>> {
  try {
    return (parseYaml(readFileSync(file, 'utf8')) ?? {}) as Record<string, Record<string, unknown>>;
  } catch (err) {
    throw new ConfigError([`cannot read ${file}: ${(err as Error).message}`], file);
  }
}

/**
 * configs/default.yaml, then CONFIG_FILE merged over it at every depth (so a deployment file names
 * only what it changes), then environment variables, then `overrides` (tests).
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Record<string, Record<string, unknown>> = {},
  /** Which process reads it: production rules that concern one process are checked for that one only. */
  options: { component?: 'service' | 'review' } = {},
): Readonly<AppConfig> {
  const component = options.component ?? 'service';
  const file = env.CONFIG_FILE ? path.resolve(env.CONFIG_FILE) : DEFAULT_CONFIG_FILE;
  const raw = readYaml(DEFAULT_CONFIG_FILE);
  // A cascade belongs to the model set it was written for: a layer (file, MODEL_DIRS, overrides)
  // that names the models without naming a cascade serves exactly those models, each on every photo.
  const namesModelsOnly = (layer: Record<string, unknown>) => (layer.models as Record<string, unknown> | undefined)?.directories !== undefined && layer.cascade === undefined;
  const clearCascade = (target: Record<string, unknown>) => { target.cascade = { ...(target.cascade as object), stages: [] }; };
  if (file !== DEFAULT_CONFIG_FILE) {
    const layer = readYaml(file);
    for (const [sec, values] of Object.entries(layer)) raw[sec] = mergeOver(raw[sec], values) as Record<string, unknown>;
    if (namesModelsOnly(layer)) clearCascade(raw);
  }
  const config: Record<string, unknown> = structuredClone(raw);
  for (const [name, [sec, key, parse, also]] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    const target = (config[sec] ??= {}) as Record<string, unknown>;
    target[key] = parse(value);
    Object.assign(target, also);
  }
  if (env.MODEL_DIRS) clearCascade(config);
  for (const [sec, values] of Object.entries(overrides)) config[sec] = { ...(config[sec] as object), ...values };
  if (namesModelsOnly(overrides)) clearCascade(config);
  config.production = env.NODE_ENV === 'production';
  const problems = validate(config) ? [] : [...new Set((validate.errors ?? []).map(describeSchemaError))];
  if (problems.length === 0) {
    const c = config as unknown as AppConfig;
    if (component === 'service' && c.production && c.auth.apiKeys.length === 0) problems.push('auth.apiKeys: NODE_ENV=production requires API keys (set API_KEYS)');
    // Otherwise a body the limit allows could never be admitted, even on an idle instance.
    if (c.server.maxInFlightBodyBytes < c.server.bodyLimitBytes) problems.push(`server.maxInFlightBodyBytes: must be at least bodyLimitBytes (${c.server.bodyLimitBytes})`);
    for (const size of c.batching.preferredBatchSizes) {
      if (size > c.batching.maxBatchSize) problems.push(`batching.preferredBatchSizes: ${size} exceeds maxBatchSize ${c.batching.maxBatchSize}`);
    }
    // What can be checked without the models; names against the loaded models are checked at start.
    for (const p of cascadeProblems(c.cascade.stages, c.cascade.stages.map((st) => st.model))) problems.push(p);
    if (c.kafka.lowWater >= c.kafka.highWater) problems.push(`kafka.lowWater: must be below highWater (${c.kafka.highWater})`);
    if (c.review.auth.mode === 'accounts') {
      const names = c.review.auth.accounts.map((a) => a.username.toLowerCase());
      for (const dup of new Set(names.filter((n, i) => names.indexOf(n) !== i))) problems.push(`review.auth.accounts: username "${dup}" appears more than once`);
    }
    const throttle = c.review.auth.throttle;
    for (const name of ['perAccountClient', 'perAccount', 'perDevice'] as const) {
      const limit = throttle[name];
      if (limit.maxDelaySeconds < limit.baseDelaySeconds) problems.push(`review.auth.throttle.${name}.maxDelaySeconds: must not be below baseDelaySeconds (${limit.baseDelaySeconds})`);
      // A counter forgotten before its longest delay would hand a patient guesser fresh free failures.
      if (throttle.forgetAfterSeconds < limit.maxDelaySeconds) problems.push(`review.auth.throttle.forgetAfterSeconds: must be at least ${name}.maxDelaySeconds (${limit.maxDelaySeconds})`);
    }
    if (throttle.perClient.maxFailures <= throttle.perAccountClient.freeFailures) problems.push(`review.auth.throttle.perClient.maxFailures: must be above perAccountClient.freeFailures (${throttle.perAccountClient.freeFailures}), or one account's typos lock out everyone at that address`);
    if (component === 'review' && c.production && c.review.auth.mode === 'proxy' && !c.review.cookieSecure) problems.push('review.cookieSecure: NODE_ENV=production behind a proxy requires secure cookies (REVIEW_COOKIE_SECURE=true)');
    if (c.kafka.highWater > c.batching.maxQueueSize) problems.push(`kafka.highWater: must not exceed batching.maxQueueSize (${c.batching.maxQueueSize})`);
  }
  if (problems.length) throw new ConfigError(problems, `${path.relative(process.cwd(), file) || file} + environment`);
  return deepFreeze(config as unknown as AppConfig);
}

// The cascade's configuration (src/policy/cascade.ts runs it).
export type CascadeMode = 'on' | 'off' | 'first';

/** Scores in [from, below) are escalated. */
export interface EscalationBand { from: number; below: number }

export interface CascadeStageSpec {
  /** The model's manifest name. */
  model: string;
  /** Every stage but the last has one; the last has none. */
  escalate?: EscalationBand | null;
}

export interface CascadeSpec {
  mode: CascadeMode;
  stages: readonly CascadeStageSpec[];
}

/** Every problem with `stages` against the models that are loaded, in one list. */
export function cascadeProblems(stages: readonly CascadeStageSpec[], loadedModels: readonly string[]): string[] {
  const problems: string[] = [];
  if (stages.length === 0) return problems;
  if (stages.length < 2) problems.push('cascade.stages: a cascade needs at least two stages (leave it empty to run every model on every photo)');
  const names = stages.map((s) => s.model);
  for (const dup of new Set(names.filter((n, i) => names.indexOf(n) !== i))) problems.push(`cascade.stages: model "${dup}" appears more than once`);
  stages.forEach((stage, i) => {
    const where = `cascade.stages[${i}]`;
    if (!loadedModels.includes(stage.model)) problems.push(`${where}.model: "${stage.model}" is not among the loaded models (${loadedModels.join(', ') || 'none'})`);
    const last = i === stages.length - 1;
    if (last && stage.escalate) problems.push(`${where}.escalate: the last stage decides every photo it sees; it has no band`);
    if (!last && !stage.escalate) problems.push(`${where}.escalate: every stage but the last needs a band (from, below)`);
    const band = stage.escalate;
    if (band && !(band.from >= 0 && band.from <= band.below && band.below <= 1)) problems.push(`${where}.escalate: need 0 <= from <= below <= 1, got from ${band.from}, below ${band.below}`);
  });
  for (const model of loadedModels) {
    // A loaded model outside the cascade would neither run nor decide: almost certainly a mistake.
    if (!names.includes(model)) problems.push(`cascade.stages: loaded model "${model}" is not a stage (remove it from models.directories or add it)`);
  }
  return problems;
}
