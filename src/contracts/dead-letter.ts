/**
 * images.dlq/v1: an input that could not be screened or stored, with its reason and as much of the
 * original as fits. Dead letters are bounded like every other record: a dead letter the broker
 * refuses would put the very message it describes back in a crash loop.
 */
import { createHash } from 'node:crypto';
import { ajv, DEFAULT_MAX_RECORD_BYTES, echo, ISO_DATE_TIME, parseWireJson, schemaReason, serializedBytes } from './json.js';
import type { ParseResult } from './crawled.js';
import type { ErrorCode } from '../errors.js';

export const DLQ_SCHEMA = 'images.dlq/v1';

/** At most this much of the original is repeated, whatever arrived. */
export const MAX_DLQ_ORIGINAL_BYTES = 256 * 1024;

/** Longest record key a dead letter is produced under; longer keys are replaced by their sha256. */
const MAX_KEY_CHARS = 1024;

export interface DeadLetter {
  schema: typeof DLQ_SCHEMA;
  /** A code of the error catalogue (src/errors.ts) when this project produced it. */
  code: string;
  reason: string;
  retriable: boolean;
  attempts: number;
  source: { topic: string; partition: number; offset: string; key: string | null; timestamp: string };
  /** The original value as text when it is UTF-8, else base64; cut to fit (see `truncated`). */
  original: { encoding: 'utf8' | 'base64'; value: string; bytes: number; sha256: string; truncated: boolean };
  failedAt: string;
}

export interface DeadLetterInput {
  /** What this project dead-letters always carries a catalogue code. */
  code: ErrorCode; reason: string; retriable: boolean; attempts: number;
  topic: string; partition: number; offset: string; key: Buffer | null; timestamp: string; value: Buffer | null;
}

/** The dead letter for one input, serialised within `maxBytes` (the original is cut until it fits). */
export function deadLetterOf(args: DeadLetterInput, maxBytes = DEFAULT_MAX_RECORD_BYTES): DeadLetter {
  const full = args.value ?? Buffer.alloc(0);
  const sha256 = createHash('sha256').update(full).digest('hex');
  const build = (keep: number): DeadLetter => {
    const value = full.subarray(0, keep);
    const text = value.toString('utf8');
    const isText = Buffer.from(text, 'utf8').equals(value);
    return {
      schema: DLQ_SCHEMA,
      code: args.code,
      reason: echo(args.reason),
      retriable: args.retriable,
      attempts: args.attempts,
      source: { topic: args.topic, partition: args.partition, offset: args.offset, key: args.key ? echo(args.key.toString('utf8'), MAX_KEY_CHARS) : null, timestamp: args.timestamp },
      original: { encoding: isText ? 'utf8' : 'base64', value: isText ? text : value.toString('base64'), bytes: full.length, sha256, truncated: full.length > keep },
      failedAt: new Date().toISOString(),
    };
  };
  // JSON escaping can grow text up to six-fold (control characters), so measure rather than estimate.
  let keep = Math.min(full.length, MAX_DLQ_ORIGINAL_BYTES);
  for (;;) {
    const letter = build(keep);
    if (keep === 0 || serializedBytes(JSON.stringify(letter)) <= maxBytes) return letter;
    keep = Math.floor(keep / 2);
  }
}

/** The record key a dead letter is produced under: the input's key, or its position when it has none. */
export function deadLetterKey(key: Buffer | null, at: { topic: string; partition: number; offset: string }): string {
  if (!key) return `${at.topic}/${at.partition}/${at.offset}`;
  const text = key.toString('utf8');
  return text.length <= MAX_KEY_CHARS ? text : `sha256:${createHash('sha256').update(key).digest('hex')}`;
}

const DEAD_LETTER = {
  type: 'object',
  additionalProperties: true,
  required: ['schema', 'code', 'reason', 'retriable', 'attempts', 'source', 'original', 'failedAt'],
  properties: {
    schema: { const: DLQ_SCHEMA },
    code: { type: 'string', pattern: '^[A-Z][A-Z0-9_]*$' },
    reason: { type: 'string', maxLength: 4096 },
    retriable: { type: 'boolean' },
    attempts: { type: 'integer', minimum: 1 },
    source: {
      type: 'object', additionalProperties: false, required: ['topic', 'partition', 'offset', 'key', 'timestamp'],
      properties: {
        topic: { type: 'string', minLength: 1 }, partition: { type: 'integer', minimum: 0 }, offset: { type: 'string', pattern: '^\\d+$' },
        key: { type: ['string', 'null'] }, timestamp: { type: 'string' },
      },
    },
    original: {
      type: 'object', additionalProperties: false, required: ['encoding', 'value', 'bytes', 'sha256', 'truncated'],
      properties: {
        encoding: { enum: ['utf8', 'base64'] }, value: { type: 'string' }, bytes: { type: 'integer', minimum: 0 },
        sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' }, truncated: { type: 'boolean' },
      },
    },
    failedAt: { type: 'string', pattern: ISO_DATE_TIME },
  },
} as const;

const validateDeadLetter = ajv.compile(DEAD_LETTER);

/** Parses one images.dlq/v1 value (for operators' tools and tests); never throws. */
export function parseDeadLetter(value: Buffer | null): ParseResult<DeadLetter> {
  const parsed = parseWireJson(value);
  if (!parsed.ok) return parsed;
  if (!validateDeadLetter(parsed.json)) return { ok: false, reason: schemaReason(validateDeadLetter.errors) };
  return { ok: true, message: parsed.json as unknown as DeadLetter };
}
