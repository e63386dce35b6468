/**
 * images.screened/v1 (every decision) and images.flagged/v1 (the flagged ones, for analysts): one
 * builder, one schema, one encoder. The pipeline checks every record it produces with the same
 * validator the review console parses flags with, so what one side writes the other always reads.
 */
import { ajv, calendarReason, echo, ISO_DATE_TIME, parseWireJson, schemaReason, serializedBytes, shortText } from './json.js';
import { LISTING, type CrawledImage, type Listing, type ParseResult } from './crawled.js';

export const SCREENED_SCHEMA = 'images.screened/v1';
export const FLAGGED_SCHEMA = 'images.flagged/v1';

/**
 * A photo that came inline is kept nowhere but in the crawled message, so its flag carries it to the
 * review console, up to this many base64 characters (about 525 KB of image). The record budget
 * still applies: a flag that would not fit goes without the bytes, and says so.
 */
export const MAX_FLAGGED_INLINE_BASE64 = 700 * 1024;

/** The screening result as the wire carries it (structurally, so this module depends on no application). */
export interface ScreenedResult {
  requestId: string;
  sha256: string;
  flagged: boolean;
  reasons: Array<{ classifier: string; label: string; score: number; threshold: number }>;
  classifiers: Array<{ name: string; version: string; top: Array<{ label: string; score: number; trade_relevant: boolean }> }>;
  image: { format: string; width: number; height: number; bytes: number };
  timings: { fetchMs: number; preprocessMs: number; queueMs: number; inferenceMs: number; totalMs: number };
  /** With a cascade: the mode, the stages that ran, and the model that decided. */
  cascade?: { mode: string; ran: string[]; decidedBy: string };
  /** Answered by a near-duplicate: pHash bits apart, and the photo whose decision this is. */
  near?: { distance: number; sha256: string };
}

/** A pass-through field left out of a record to keep it under the record budget. */
export interface Omission { field: 'meta' | 'image.base64'; bytes: number; reason: 'record size limit' }

/** One screening decision as it goes on the results and review topics (policy's `Decision` is the in-process verdict it carries). */
export interface DecisionRecord {
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
  reasons: ScreenedResult['reasons'];
  classifiers: ScreenedResult['classifiers'];
  timings: ScreenedResult['timings'] & { crawlToDecisionMs: number | null };
  cascade?: ScreenedResult['cascade'];
  /**
   * Present when the decision is another photo's, a near-duplicate of this one (the service's
   * cache.nearDistance): analysts see that the scores were not computed on the photo under `image`.
   */
  near?: ScreenedResult['near'];
  crawledAt: string;
  decidedAt: string;
  meta?: Record<string, unknown>;
  /** Present when a pass-through field was left out; consumers can tell "none sent" from "too big". */
  omitted?: Omission[];
}

export function decisionOf(input: CrawledImage, result: ScreenedResult, decidedAt: Date, schema: DecisionRecord['schema'] = SCREENED_SCHEMA): DecisionRecord {
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
    ...(result.cascade ? { cascade: result.cascade } : {}),
    ...(result.near ? { near: result.near } : {}),
    crawledAt: input.crawledAt,
    decidedAt: decidedAt.toISOString(),
    ...(input.meta ? { meta: input.meta } : {}),
  };
}

/** The flag for a decision; an inline photo rides along when it is within MAX_FLAGGED_INLINE_BASE64. */
export function flaggedOf(decision: DecisionRecord, inlineBase64?: string): DecisionRecord {
  const inline = inlineBase64 !== undefined && inlineBase64.length <= MAX_FLAGGED_INLINE_BASE64 ? { base64: inlineBase64 } : {};
  return { ...decision, schema: FLAGGED_SCHEMA, image: { ...decision.image, ...inline } };
}

const unit = { type: 'number', minimum: 0, maximum: 1 };
const millis = { type: 'number', minimum: 0 };

/**
 * Strict where consumers depend on a field (types, lengths, the sha256 the console stores photos
 * under, scores it sorts by). The top level and `timings` admit unknown properties: a newer
 * screening service may add fields there, and consumers must keep taking its records rather than
 * dead-letter them during a rolling upgrade.
 */
function decisionSchema(tag: DecisionRecord['schema']) {
  return {
    type: 'object',
    additionalProperties: true,
    required: ['schema', 'decisionId', 'inputId', 'flagged', 'listing', 'image', 'reasons', 'classifiers', 'timings', 'crawledAt', 'decidedAt'],
    properties: {
      schema: { const: tag },
      decisionId: shortText(256),
      inputId: shortText(256),
      flagged: tag === FLAGGED_SCHEMA ? { const: true } : { type: 'boolean' },
      listing: LISTING,
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
          ...(tag === FLAGGED_SCHEMA ? { base64: { type: 'string', minLength: 1, maxLength: MAX_FLAGGED_INLINE_BASE64 } } : {}),
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
      cascade: {
        type: 'object', additionalProperties: false, required: ['mode', 'ran', 'decidedBy'],
        properties: { mode: shortText(16), ran: { type: 'array', minItems: 1, maxItems: 32, items: shortText(128) }, decidedBy: shortText(128) },
      },
      near: {
        type: 'object', additionalProperties: false, required: ['distance', 'sha256'],
        properties: { distance: { type: 'integer', minimum: 0, maximum: 64 }, sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
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
      omitted: {
        type: 'array', maxItems: 2,
        items: {
          type: 'object', additionalProperties: false, required: ['field', 'bytes', 'reason'],
          properties: { field: { enum: ['meta', 'image.base64'] }, bytes: { type: 'integer', minimum: 0 }, reason: { const: 'record size limit' } },
        },
      },
    },
  } as const;
}

const validators = {
  [SCREENED_SCHEMA]: ajv.compile(decisionSchema(SCREENED_SCHEMA)),
  [FLAGGED_SCHEMA]: ajv.compile(decisionSchema(FLAGGED_SCHEMA)),
} as const;

/** Validates an already-parsed decision of the given schema; never throws. */
export function checkDecision(json: unknown, tag: DecisionRecord['schema']): ParseResult<DecisionRecord> {
  const validate = validators[tag];
  if (!validate(json)) return { ok: false, reason: schemaReason(validate.errors) };
  // The pattern admits 2025-13-45T…; the queue sorts and filters by decidedAt, so it must be real.
  const calendar = calendarReason(json as object, ['decidedAt', 'crawledAt']);
  if (calendar) return { ok: false, reason: calendar };
  return { ok: true, message: json as unknown as DecisionRecord };
}

/**
 * Parses one images.flagged/v1 value, as the review console does; never throws. Reasons: those of
 * parseWireJson, `schema: <path> <problem>; …`, or `<field>: not a calendar date`.
 */
export function parseFlagged(value: Buffer | null): ParseResult<DecisionRecord> {
  const parsed = parseWireJson(value);
  return parsed.ok ? checkDecision(parsed.json, FLAGGED_SCHEMA) : parsed;
}

/** Parses one images.screened/v1 value; never throws. */
export function parseScreened(value: Buffer | null): ParseResult<DecisionRecord> {
  const parsed = parseWireJson(value);
  return parsed.ok ? checkDecision(parsed.json, SCREENED_SCHEMA) : parsed;
}

export type EncodeResult =
  | { ok: true; value: string; bytes: number; omitted: Omission[] }
  | { ok: false; code: 'RECORD_TOO_LARGE' | 'OUTPUT_INVALID'; reason: string };

/**
 * Serialises a decision for the wire within `maxBytes`: pass-through fields are left out, largest
 * first by importance to analysts (the crawler's meta, then the inline photo), and each omission is
 * recorded in the decision itself. The result is checked against its own schema, the same check
 * its consumers run. Never throws.
 */
export function encodeDecision(decision: DecisionRecord, maxBytes: number): EncodeResult {
  let current = decision;
  const omitted: Omission[] = [];
  for (;;) {
    let value: string;
    try {
      value = JSON.stringify(omitted.length ? { ...current, omitted } : current);
    } catch (err) {
      return { ok: false, code: 'OUTPUT_INVALID', reason: `the decision could not be serialised: ${echo((err as Error).message)}` };
    }
    const bytes = serializedBytes(value);
    if (bytes <= maxBytes) {
      const checked = checkDecision(JSON.parse(value), current.schema);
      if (!checked.ok) return { ok: false, code: 'OUTPUT_INVALID', reason: `${current.schema} record breaks its own contract: ${checked.reason}` };
      return { ok: true, value, bytes, omitted };
    }
    if (current.meta !== undefined) {
      const { meta, ...rest } = current;
      omitted.push({ field: 'meta', bytes: serializedBytes(JSON.stringify(meta)), reason: 'record size limit' });
      current = rest;
    } else if (current.image.base64 !== undefined) {
      const { base64, ...image } = current.image;
      omitted.push({ field: 'image.base64', bytes: base64.length, reason: 'record size limit' });
      current = { ...current, image };
    } else {
      return { ok: false, code: 'RECORD_TOO_LARGE', reason: `the ${current.schema} record is ${bytes} bytes without its pass-through fields, over the ${maxBytes}-byte record budget (kafka.maxRecordBytes)` };
    }
  }
}
