/** images.crawled/v1: what crawlers publish. Validated on receipt by the screening pipeline. */
import { ajv, calendarReason, ISO_DATE_TIME, parseWireJson, schemaReason } from './json.js';

export const CRAWLED_SCHEMA = 'images.crawled/v1';

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
  /** Free-form crawler context, passed through to the outputs while they stay under the record budget. */
  meta?: Record<string, unknown>;
}

export const LISTING = {
  type: 'object', additionalProperties: false, required: ['url', 'platform'],
  properties: {
    url: { type: 'string', minLength: 1, maxLength: 4096 },
    platform: { type: 'string', minLength: 1, maxLength: 128 },
    title: { type: 'string', maxLength: 2048 },
    seller: { type: 'string', maxLength: 512 },
  },
} as const;

export const CRAWLED = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'listing', 'crawledAt'],
  oneOf: [{ required: ['url'] }, { required: ['imageBase64'] }],
  properties: {
    schema: { const: CRAWLED_SCHEMA },
    id: { type: 'string', minLength: 1, maxLength: 256 },
    url: { type: 'string', minLength: 1, maxLength: 4096 },
    imageBase64: { type: 'string', minLength: 1 },
    listing: LISTING,
    crawledAt: { type: 'string', pattern: ISO_DATE_TIME },
    meta: { type: 'object' },
  },
} as const;

const validateCrawled = ajv.compile(CRAWLED);

export type ParseResult<T> = { ok: true; message: T } | { ok: false; reason: string };

/** Parses and validates one input message value; never throws. */
export function parseCrawled(value: Buffer | null): ParseResult<CrawledImage> {
  const parsed = parseWireJson(value);
  if (!parsed.ok) return parsed;
  if (!validateCrawled(parsed.json)) return { ok: false, reason: schemaReason(validateCrawled.errors) };
  const message = parsed.json as unknown as CrawledImage;
  // crawlToDecisionMs and the review queue's dates derive from it, so it must be a real instant.
  const calendar = calendarReason(parsed.json as object, ['crawledAt']);
  if (calendar) return { ok: false, reason: calendar };
  return { ok: true, message };
}
