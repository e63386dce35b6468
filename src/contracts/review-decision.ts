/**
 * images.review-decisions/v1: analysts' verdicts, produced by the review console and consumed into
 * training labels (and read back from a labeled set's decisions.jsonl). See docs/REVIEW-DECISIONS.md.
 */
import { ajv, calendarReason, ISO_DATE_TIME, parseWireJson, schemaReason, shortText } from './json.js';
import type { ParseResult } from './crawled.js';
import type { DecisionRecord } from './decision.js';

export const REVIEW_DECISION_SCHEMA = 'images.review-decisions/v1';
/** Default topic of analysts' review decisions (produced by the review console, consumed into training labels). */
export const REVIEW_DECISIONS_TOPIC = 'images.review-decisions';


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

const validateReviewDecision = ajv.compile(REVIEW_DECISION);

export type ReviewDecisionParseResult = ParseResult<ReviewDecision>;

/**
 * Parses and validates one review-decision message value; never throws. Reasons are stable:
 * `empty message value`, `not JSON: …`, `schema: <path> <problem>; …`, or one of the semantic
 * checks below (`decidedAt: not a calendar date`, `correctLabel: only allowed with verdict "rejected"`,
 * `correctLabel: equals label`).
 */
export function parseReviewDecision(value: Buffer | null): ReviewDecisionParseResult {
  const parsed = parseWireJson(value);
  return parsed.ok ? checkReviewDecision(parsed.json) : parsed;
}

/** The same validation for an already-parsed value (e.g. a line of a labeled set's decisions.jsonl). */
export function checkReviewDecision(json: unknown): ReviewDecisionParseResult {
  if (!validateReviewDecision(json)) return { ok: false, reason: schemaReason(validateReviewDecision.errors) };
  const d = json as unknown as ReviewDecision;
  // The pattern admits 2025-13-45T…; a label's order depends on this date, so it must be real.
  const calendar = calendarReason(json as object, ['decidedAt']);
  if (calendar) return { ok: false, reason: calendar };
  if (d.correctLabel != null && d.verdict !== 'rejected') return { ok: false, reason: 'correctLabel: only allowed with verdict "rejected"' };
  if (d.correctLabel != null && d.correctLabel === d.label) return { ok: false, reason: 'correctLabel: equals label (a rejection must name a different label)' };
  return { ok: true, message: d };
}

/**
 * Builds a review decision for a flagged decision, filling decisionId, image, listing and the model
 * from it; `label` defaults to the highest-scoring flag reason. For the review console and tests.
 */
export function reviewDecisionOf(flagged: DecisionRecord, review: {
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
