/**
 * Message schemas on the Kafka topics. Inputs are validated on receipt; outputs are built here so
 * every producer writes the same shapes. All carry a `schema` tag with a version, so consumers of
 * the output topics can evolve with us.
 */
import { createHash } from 'node:crypto';
import { Ajv, type ErrorObject } from 'ajv';
import type { ScreenResult } from '../../screening/service.js';

export const CRAWLED_SCHEMA = 'images.crawled/v1';
export const SCREENED_SCHEMA = 'images.screened/v1';
export const FLAGGED_SCHEMA = 'images.flagged/v1';
export const DLQ_SCHEMA = 'images.dlq/v1';
export const REVIEW_DECISION_SCHEMA = 'images.review-decisions/v1';
/** Default topic of analysts' review decisions (produced by the review console, consumed into training labels). */
export const REVIEW_DECISIONS_TOPIC = 'images.review-decisions';
/**
 * A photo that came inline is kept nowhere but in the crawled message, so its flag carries it to the
 * review console, up to this many base64 characters (about 525 KB of image): with the decision's
 * few KB that stays under Kafka's default 1 MiB record limit. Larger inline photos are flagged
 * without their bytes.
 */
export const MAX_FLAGGED_INLINE_BASE64 = 700 * 1024;

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

/** ISO 8601 date-time with seconds and an explicit zone, e.g. 2025-03-01T12:00:00Z or …+01:00. */
const ISO_DATE_TIME = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$';

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
    crawledAt: { type: 'string', pattern: ISO_DATE_TIME },
    meta: { type: 'object' },
  },
} as const;

const validateCrawled = new Ajv({ allErrors: true, strict: false }).compile(CRAWLED);

export type ParseResult = { ok: true; message: CrawledImage } | { ok: false; reason: string };

/** Parses and validates one input message value; never throws. */
export function parseCrawled(value: Buffer | null): ParseResult {
  const parsed = parseJson(value);
  if (!parsed.ok) return parsed;
  const json = parsed.json;
  if (!validateCrawled(json)) return { ok: false, reason: schemaReason(validateCrawled.errors) };
  return { ok: true, message: json as unknown as CrawledImage };
}

/** One stable line for an ajv failure: `schema: <path> <message>[ (<extra key>)]; …`. */
function schemaReason(errors: ErrorObject[] | null | undefined): string {
  const reasons = (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'invalid'}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
  return `schema: ${[...new Set(reasons)].join('; ')}`;
}

function parseJson(value: Buffer | null): { ok: true; json: unknown } | { ok: false; reason: string } {
  if (!value || value.length === 0) return { ok: false, reason: 'empty message value' };
  try {
    return { ok: true, json: JSON.parse(value.toString('utf8')) };
  } catch (err) {
    return { ok: false, reason: `not JSON: ${(err as Error).message}` };
  }
}

export interface Decision {
  schema: typeof SCREENED_SCHEMA | typeof FLAGGED_SCHEMA;
  decisionId: string;
  inputId: string;
  flagged: boolean;
  listing: Listing;
  image: {
    url: string | null; sha256: string; format: string; width: number; height: number; bytes: number;
    /** images.flagged only: a photo that came inline (imageBase64), up to MAX_FLAGGED_INLINE_BASE64. */
    base64?: string;
  };
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

const shortText = (max: number) => ({ type: 'string', minLength: 1, maxLength: max });
const unit = { type: 'number', minimum: 0, maximum: 1 };
const millis = { type: 'number', minimum: 0 };

/**
 * images.flagged/v1 as the review console reads it. Strict where the console depends on a field
 * (types, lengths, the sha256 it stores photos under, scores it sorts by). The top level and
 * `timings` admit unknown properties: a newer screening service may add fields there, and the
 * console must keep taking its flags rather than dead-letter them during a rolling upgrade.
 */
const FLAGGED = {
  type: 'object',
  additionalProperties: true,
  required: ['schema', 'decisionId', 'inputId', 'flagged', 'listing', 'image', 'reasons', 'classifiers', 'timings', 'crawledAt', 'decidedAt'],
  properties: {
    schema: { const: FLAGGED_SCHEMA },
    decisionId: shortText(256),
    inputId: shortText(256),
    flagged: { const: true },
    listing: CRAWLED.properties.listing,
    image: {
      type: 'object', additionalProperties: false, required: ['url', 'sha256', 'format', 'width', 'height', 'bytes'],
      properties: {
        url: { anyOf: [shortText(4096), { type: 'null' }] },
        // Lower-case only: the console keys stored photos and look-ups by this exact string.
        sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
        format: shortText(32),
        width: { type: 'integer', minimum: 1 },
        height: { type: 'integer', minimum: 1 },
        bytes: { type: 'integer', minimum: 1 },
        base64: { type: 'string', minLength: 1, maxLength: MAX_FLAGGED_INLINE_BASE64 },
      },
    },
    reasons: {
      type: 'array', maxItems: 256,
      items: {
        type: 'object', additionalProperties: false, required: ['classifier', 'label', 'score', 'threshold'],
        properties: { classifier: shortText(128), label: shortText(256), score: unit, threshold: unit },
      },
    },
    classifiers: {
      type: 'array', minItems: 1, maxItems: 32,
      items: {
        type: 'object', additionalProperties: false, required: ['name', 'version', 'top'],
        properties: {
          name: shortText(128),
          version: shortText(64),
          top: {
            type: 'array', maxItems: 1000,
            items: {
              type: 'object', additionalProperties: false, required: ['label', 'score', 'trade_relevant'],
              properties: { label: shortText(256), score: unit, trade_relevant: { type: 'boolean' } },
            },
          },
        },
      },
    },
    timings: {
      type: 'object', additionalProperties: true,
      required: ['fetchMs', 'preprocessMs', 'queueMs', 'inferenceMs', 'totalMs', 'crawlToDecisionMs'],
      properties: {
        fetchMs: millis, preprocessMs: millis, queueMs: millis, inferenceMs: millis, totalMs: millis,
        // Crawler and screening clocks differ, so a negative span is possible and still honest.
        crawlToDecisionMs: { type: ['number', 'null'] },
      },
    },
    crawledAt: { type: 'string', pattern: ISO_DATE_TIME },
    decidedAt: { type: 'string', pattern: ISO_DATE_TIME },
    meta: { type: 'object' },
  },
} as const;

const validateFlagged = new Ajv({ allErrors: true, strict: false }).compile(FLAGGED);

export type FlaggedParseResult = { ok: true; message: Decision } | { ok: false; reason: string };

/**
 * Parses and validates one images.flagged/v1 value for the review console; never throws. Reasons:
 * `empty message value`, `not JSON: …`, `schema: <path> <problem>; …`, or `<field>: not a calendar date`.
 */
export function parseFlagged(value: Buffer | null): FlaggedParseResult {
  const parsed = parseJson(value);
  if (!parsed.ok) return parsed;
  const json = parsed.json;
  if (!validateFlagged(json)) return { ok: false, reason: schemaReason(validateFlagged.errors) };
  const d = json as unknown as Decision;
  // The pattern admits 2025-13-45T…; the queue sorts and filters by decidedAt, so it must be real.
  for (const field of ['decidedAt', 'crawledAt'] as const) {
    if (!Number.isFinite(Date.parse(d[field]))) return { ok: false, reason: `${field}: not a calendar date` };
  }
  return { ok: true, message: d };
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

/**
 * An analyst's verdict on one flagged decision (images.flagged), produced by the review console.
 * Decisions are never erased: an undo or a lead's re-open is a new decision with verdict
 * "reopened". See docs/REVIEW-DECISIONS.md.
 */
export type ReviewVerdict = 'confirmed' | 'rejected' | 'escalated' | 'reopened';
export const REVIEW_VERDICTS: readonly ReviewVerdict[] = ['confirmed', 'rejected', 'escalated', 'reopened'];

export interface ReviewDecision {
  schema?: typeof REVIEW_DECISION_SCHEMA;
  /** Unique id of this review action; at-least-once duplicates share it. */
  reviewId?: string;
  /** The decisionId of the images.flagged message that was reviewed. */
  decisionId: string;
  /** The label the analyst confirmed or, when rejecting, the label the model flagged. */
  label: string;
  verdict: ReviewVerdict;
  /** On "rejected": the true label, when the analyst gave one. */
  correctLabel?: string | null;
  analyst: string;
  decidedAt: string;
  image?: { sha256?: string; url?: string | null };
  listing?: { id?: string; platform?: string; url?: string; title?: string; seller?: string };
  model?: { name: string; version: string };
  previous?: { verdict: ReviewVerdict; label: string } | null;
  note?: string;
}

const REVIEW_DECISION = {
  type: 'object',
  additionalProperties: false,
  required: ['decisionId', 'label', 'verdict', 'analyst', 'decidedAt'],
  properties: {
    schema: { const: REVIEW_DECISION_SCHEMA },
    reviewId: shortText(256),
    decisionId: shortText(256),
    label: shortText(256),
    verdict: { enum: REVIEW_VERDICTS },
    correctLabel: { anyOf: [shortText(256), { type: 'null' }] },
    analyst: shortText(256),
    decidedAt: { type: 'string', pattern: ISO_DATE_TIME },
    image: {
      type: 'object', additionalProperties: false, minProperties: 1,
      properties: {
        sha256: { type: 'string', pattern: '^[0-9a-fA-F]{64}$' },
        url: { anyOf: [shortText(4096), { type: 'null' }] },
      },
    },
    listing: {
      type: 'object', additionalProperties: false,
      properties: { id: shortText(256), platform: shortText(128), url: shortText(4096), title: { type: 'string', maxLength: 2048 }, seller: { type: 'string', maxLength: 512 } },
    },
    model: { type: 'object', additionalProperties: false, required: ['name', 'version'], properties: { name: shortText(128), version: shortText(64) } },
    previous: {
      anyOf: [
        { type: 'object', additionalProperties: false, required: ['verdict', 'label'], properties: { verdict: { enum: REVIEW_VERDICTS }, label: shortText(256) } },
        { type: 'null' },
      ],
    },
    note: { type: 'string', maxLength: 2000 },
  },
} as const;

const validateReviewDecision = new Ajv({ allErrors: true, strict: false }).compile(REVIEW_DECISION);

export type ReviewDecisionParseResult = { ok: true; message: ReviewDecision } | { ok: false; reason: string };

/**
 * Parses and validates one review-decision message value; never throws. Reasons are stable:
 * `empty message value`, `not JSON: …`, `schema: <path> <problem>; …`, or one of the semantic
 * checks below (`decidedAt: not a calendar date`, `correctLabel: only allowed with verdict "rejected"`,
 * `correctLabel: equals label`).
 */
export function parseReviewDecision(value: Buffer | null): ReviewDecisionParseResult {
  const parsed = parseJson(value);
  if (!parsed.ok) return parsed;
  return checkReviewDecision(parsed.json);
}

/** The same validation for an already-parsed value (e.g. a line of a labeled set's decisions.jsonl). */
export function checkReviewDecision(json: unknown): ReviewDecisionParseResult {
  if (!validateReviewDecision(json)) return { ok: false, reason: schemaReason(validateReviewDecision.errors) };
  const d = json as unknown as ReviewDecision;
  // The pattern admits 2025-13-45T…; a label's order depends on this date, so it must be real.
  if (!Number.isFinite(Date.parse(d.decidedAt))) return { ok: false, reason: 'decidedAt: not a calendar date' };
  if (d.correctLabel != null && d.verdict !== 'rejected') return { ok: false, reason: 'correctLabel: only allowed with verdict "rejected"' };
  if (d.correctLabel != null && d.correctLabel === d.label) return { ok: false, reason: 'correctLabel: equals label (a rejection must name a different label)' };
  return { ok: true, message: d };
}

/**
 * Builds a review decision for a flagged decision, filling decisionId, image, listing and the model
 * from it; `label` defaults to the highest-scoring flag reason. For the review console and tests.
 */
export function reviewDecisionOf(flagged: Decision, review: {
  verdict: ReviewVerdict; analyst: string; label?: string; correctLabel?: string | null; reviewId?: string;
  decidedAt?: Date; previous?: ReviewDecision['previous']; note?: string; listingId?: string;
}): ReviewDecision {
  const top = [...flagged.reasons].sort((a, b) => b.score - a.score)[0];
  const label = review.label ?? top?.label;
  if (!label) throw new TypeError('reviewDecisionOf: the flagged decision has no reason to take a label from; pass label');
  const classifier = flagged.classifiers.find((c) => c.name === top?.classifier) ?? flagged.classifiers[0];
  const decision: ReviewDecision = {
    schema: REVIEW_DECISION_SCHEMA,
    ...(review.reviewId ? { reviewId: review.reviewId } : {}),
    decisionId: flagged.decisionId,
    label,
    verdict: review.verdict,
    ...(review.correctLabel !== undefined ? { correctLabel: review.correctLabel } : {}),
    analyst: review.analyst,
    decidedAt: (review.decidedAt ?? new Date()).toISOString(),
    image: { sha256: flagged.image.sha256, url: flagged.image.url },
    listing: { ...(review.listingId ? { id: review.listingId } : {}), platform: flagged.listing.platform, url: flagged.listing.url },
    ...(classifier ? { model: { name: classifier.name, version: classifier.version } } : {}),
    ...(review.previous !== undefined ? { previous: review.previous } : {}),
    ...(review.note !== undefined ? { note: review.note } : {}),
  };
  const checked = checkReviewDecision(decision);
  if (!checked.ok) throw new TypeError(`reviewDecisionOf: ${checked.reason}`);
  return decision;
}
