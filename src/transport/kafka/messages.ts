/**
 * Message schemas on the Kafka topics. Inputs are validated on receipt; outputs are built here so
 * every producer writes the same shapes. All carry a `schema` tag with a version, so consumers of
 * the output topics can evolve with us.
 */
import { createHash } from 'node:crypto';
import { Ajv } from 'ajv';
import type { ScreenResult } from '../../screening/service.js';

export const CRAWLED_SCHEMA = 'images.crawled/v1';
export const SCREENED_SCHEMA = 'images.screened/v1';
export const FLAGGED_SCHEMA = 'images.flagged/v1';
export const DLQ_SCHEMA = 'images.dlq/v1';

export interface Listing {
  url: string;
  platform: string;
  title?: string;
  seller?: string;
}

export interface CrawledImage {
  schema?: typeof CRAWLED_SCHEMA;
  id: string;
  url?: string;
  imageBase64?: string;
  listing: Listing;
  crawledAt: string;
  /** Free-form crawler context, passed through to the outputs untouched. */
  meta?: Record<string, unknown>;
}

const CRAWLED = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'listing', 'crawledAt'],
  oneOf: [{ required: ['url'] }, { required: ['imageBase64'] }],
  properties: {
    schema: { const: CRAWLED_SCHEMA },
    id: { type: 'string', minLength: 1, maxLength: 256 },
    url: { type: 'string', minLength: 1, maxLength: 4096 },
    imageBase64: { type: 'string', minLength: 1 },
    listing: {
      type: 'object', additionalProperties: false, required: ['url', 'platform'],
      properties: {
        url: { type: 'string', minLength: 1, maxLength: 4096 },
        platform: { type: 'string', minLength: 1, maxLength: 128 },
        title: { type: 'string', maxLength: 2048 },
        seller: { type: 'string', maxLength: 512 },
      },
    },
    crawledAt: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$' },
    meta: { type: 'object' },
  },
} as const;

const validateCrawled = new Ajv({ allErrors: true, strict: false }).compile(CRAWLED);

export type ParseResult = { ok: true; message: CrawledImage } | { ok: false; reason: string };

/** Parses and validates one input message value; never throws. */
export function parseCrawled(value: Buffer | null): ParseResult {
  if (!value || value.length === 0) return { ok: false, reason: 'empty message value' };
  let json: unknown;
  try {
    json = JSON.parse(value.toString('utf8'));
  } catch (err) {
    return { ok: false, reason: `not JSON: ${(err as Error).message}` };
  }
  if (!validateCrawled(json)) {
    const reasons = (validateCrawled.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'invalid'}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
    return { ok: false, reason: `schema: ${[...new Set(reasons)].join('; ')}` };
  }
  return { ok: true, message: json as unknown as CrawledImage };
}

export interface Decision {
  schema: typeof SCREENED_SCHEMA | typeof FLAGGED_SCHEMA;
  decisionId: string;
  inputId: string;
  flagged: boolean;
  listing: Listing;
  image: { url: string | null; sha256: string; format: string; width: number; height: number; bytes: number };
  reasons: ScreenResult['reasons'];
  classifiers: ScreenResult['classifiers'];
  timings: ScreenResult['timings'] & { crawlToDecisionMs: number | null };
  crawledAt: string;
  decidedAt: string;
  meta?: Record<string, unknown>;
}

export function decisionOf(input: CrawledImage, result: ScreenResult, decidedAt: Date, schema: Decision['schema'] = SCREENED_SCHEMA): Decision {
  const crawled = Date.parse(input.crawledAt);
  return {
    schema,
    decisionId: result.requestId,
    inputId: input.id,
    flagged: result.flagged,
    listing: input.listing,
    image: { url: input.url ?? null, sha256: result.sha256, format: result.image.format, width: result.image.width, height: result.image.height, bytes: result.image.bytes },
    reasons: result.reasons,
    classifiers: result.classifiers,
    timings: { ...result.timings, crawlToDecisionMs: Number.isFinite(crawled) ? decidedAt.getTime() - crawled : null },
    crawledAt: input.crawledAt,
    decidedAt: decidedAt.toISOString(),
    ...(input.meta ? { meta: input.meta } : {}),
  };
}

export interface DeadLetter {
  schema: typeof DLQ_SCHEMA;
  code: string;
  reason: string;
  retriable: boolean;
  attempts: number;
  source: { topic: string; partition: number; offset: string; key: string | null; timestamp: string };
  /** The original value as text when it is UTF-8, else base64; cut at MAX_DLQ_ORIGINAL_BYTES. */
  original: { encoding: 'utf8' | 'base64'; value: string; bytes: number; sha256: string; truncated: boolean };
  failedAt: string;
}

/** Keeps dead letters well under the broker's record limit, whatever arrived. */
export const MAX_DLQ_ORIGINAL_BYTES = 256 * 1024;

export function deadLetterOf(args: { code: string; reason: string; retriable: boolean; attempts: number; topic: string; partition: number; offset: string; key: Buffer | null; timestamp: string; value: Buffer | null }): DeadLetter {
  const full = args.value ?? Buffer.alloc(0);
  const value = full.subarray(0, MAX_DLQ_ORIGINAL_BYTES);
  const text = value.toString('utf8');
  const isText = Buffer.from(text, 'utf8').equals(value);
  return {
    schema: DLQ_SCHEMA,
    code: args.code,
    reason: args.reason,
    retriable: args.retriable,
    attempts: args.attempts,
    source: { topic: args.topic, partition: args.partition, offset: args.offset, key: args.key?.toString('utf8') ?? null, timestamp: args.timestamp },
    original: {
      encoding: isText ? 'utf8' : 'base64',
      value: isText ? text : value.toString('base64'),
      bytes: full.length,
      sha256: createHash('sha256').update(full).digest('hex'),
      truncated: full.length > value.length,
    },
    failedAt: new Date().toISOString(),
  };
}
