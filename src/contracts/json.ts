/**
 * The lowest layer of every wire contract: bytes → JSON under the limits any Kafka input needs
 * (strict UTF-8, bounded nesting), the calendar check behind every date-time field, one shape for
 * validation failures, and the record budget outputs are measured against. Nothing here throws on
 * bad input: every failure is a stable, human-readable reason that ends up in images.dlq.
 */
import { Ajv, type ErrorObject } from 'ajv';

/**
 * Deeper JSON is refused on receipt. JSON.parse copes with any depth, but JSON.stringify and every
 * recursive consumer downstream overflow the stack near 10,000 levels; no crawler needs more than a
 * few levels of listing context.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Default budget for one produced record (key + value), under the broker's default
 * message.max.bytes (1,048,588) with room for the record batch's own framing.
 */
export const DEFAULT_MAX_RECORD_BYTES = 1_000_000;

/** Longest reason or key text a dead letter repeats, so a hostile input cannot inflate it. */
export const MAX_ECHO_CHARS = 2048;

export const ajv = new Ajv({ allErrors: true, strict: false });

/** A required string field of bounded length. */
export const shortText = (max: number) => ({ type: 'string', minLength: 1, maxLength: max });

/** ISO 8601 date-time with seconds and an explicit zone, e.g. 2025-03-01T12:00:00Z or …+01:00. */
export const ISO_DATE_TIME = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$';
const DATE_TIME_PARTS = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|[+-](\d{2}):(\d{2}))$/;

/**
 * True for a date-time that names a real instant: month 1–12, a day that exists in that month,
 * hours 0–23, minutes and seconds 0–59, a zone offset within ±23:59. The schema pattern alone
 * admits 2025-13-45T99:99:99Z, and Date.parse admits 2025-02-30.
 */
export function isCalendarDateTime(text: string): boolean {
  const m = DATE_TIME_PARTS.exec(text);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  // Computed, not taken from Date.UTC, which reads years 0–99 as 1900–1999.
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 59) return false;
  return m[7] === undefined || (Number(m[7]) <= 23 && Number(m[8]) <= 59);
}

/** `<field>: not a calendar date` for the first of `fields` (top-level strings) that is not one. */
export function calendarReason(json: object, fields: readonly string[]): string | null {
  for (const field of fields) {
    const value = (json as Record<string, unknown>)[field];
    if (typeof value === 'string' && !isCalendarDateTime(value)) return `${field}: not a calendar date`;
  }
  return null;
}

export type JsonResult = { ok: true; json: unknown } | { ok: false; reason: string };

/**
 * Parses one message value. Reasons: `empty message value`, `not UTF-8: …`, `not JSON: …`,
 * `nested deeper than 64 levels (at /meta/a/…)`.
 */
export function parseWireJson(value: Buffer | null | undefined, maxDepth = MAX_JSON_DEPTH): JsonResult {
  if (!value || value.length === 0) return { ok: false, reason: 'empty message value' };
  let text: string;
  try {
    // Lossy decoding would turn each bad byte into a 3-byte U+FFFD and silently change the data.
    text = new TextDecoder('utf-8', { fatal: true }).decode(value);
  } catch {
    return { ok: false, reason: `not UTF-8: invalid byte sequence at byte ${firstInvalidUtf8Byte(value)}` };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not JSON: ${echo((err as Error).message)}` };
  }
  const deep = deeperThan(json, maxDepth);
  if (deep !== null) return { ok: false, reason: `nested deeper than ${maxDepth} levels (at ${echo(deep, 120)})` };
  return { ok: true, json };
}

/** Validity of a prefix is monotonic, so a binary search finds where the first bad sequence starts. */
function firstInvalidUtf8Byte(value: Buffer): number {
  const validPrefix = (end: number) => {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(value.subarray(0, end), { stream: true });
      return true;
    } catch {
      return false;
    }
  };
  let good = 0;
  let bad = value.length;
  while (bad - good > 1) {
    const mid = (good + bad) >>> 1;
    if (validPrefix(mid)) good = mid;
    else bad = mid;
  }
  return good;
}

/** The path of the first container nested deeper than `max` (the root is level 1), or null. Iterative: it must not overflow either. */
function deeperThan(root: unknown, max: number): string | null {
  const stack: Array<{ node: unknown; depth: number; path: string }> = [{ node: root, depth: 1, path: '' }];
  while (stack.length) {
    const { node, depth, path } = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    if (depth > max) return path || '/';
    for (const [key, child] of Object.entries(node)) {
      if (child !== null && typeof child === 'object') stack.push({ node: child, depth: depth + 1, path: `${path}/${key}` });
    }
  }
  return null;
}

/** One stable line for an ajv failure: `schema: <path> <message>[ (<extra key>)]; …`. */
export function schemaReason(errors: ErrorObject[] | null | undefined): string {
  const reasons = (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'invalid'}${e.params && 'additionalProperty' in e.params ? ` (${echo(String(e.params.additionalProperty), 200)})` : ''}`);
  return echo(`schema: ${[...new Set(reasons)].join('; ')}`);
}

/** Text from an input, cut so that it cannot inflate what we write about it. */
export function echo(text: string, max = MAX_ECHO_CHARS): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`;
}

/** The size a value takes on the wire. */
export function serializedBytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}
