/**
 * Flagged decisions (images.flagged/v1) exactly as the screening pipeline writes them — its own
 * decisionsOf() of a crawled input and a screen result — for review-console tests and the console's
 * load test.
 */
import { createHash } from 'node:crypto';
import type { ScreenResult } from '../../src/screening/service.js';
import { CRAWLED_SCHEMA, type CrawledImage, type DecisionRecord } from '../../src/contracts/index.js';
import { decisionsOf } from '../../src/screening/kafka/pipeline.js';

let counter = 0;
const RUN = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

export interface FlaggedOptions {
  decisionId?: string;
  platform?: string;
  title?: string;
  decidedAt?: string;
  /** null: the photo came inline (imageBase64), so the flag has no URL and carries those bytes. */
  imageUrl?: string | null;
  /** [label, score, threshold] per flag reason. */
  reasons?: Array<[string, number, number]>;
  /** Other top labels of the classifier, besides the reasons. */
  others?: string[];
}

export function flaggedMessage(o: FlaggedOptions = {}): DecisionRecord {
  const n = ++counter;
  const decidedAt = new Date(o.decidedAt ?? Date.now());
  const url = o.imageUrl === undefined ? `https://img.example/${n}.jpg` : o.imageUrl;
  const input: CrawledImage = {
    schema: CRAWLED_SCHEMA, id: `input-${RUN}-${n}`, ...(url === null ? { imageBase64: 'AA==' } : { url }),
    listing: { url: `https://market.example/listing/${n}`, platform: o.platform ?? 'market.example', title: o.title ?? `Carved piece #${n}`, seller: 'seller-1' },
    crawledAt: new Date(decidedAt.getTime() - 900).toISOString(),
  };
  const reasons = (o.reasons ?? [['elephant_ivory', 0.91, 0.6]]).map(([label, score, threshold]) => ({ classifier: 'wildlife-resnet50vd', label, score, threshold }));
  const result: ScreenResult = {
    requestId: o.decisionId ?? `dec-${RUN}-${n}`,
    sha256: createHash('sha256').update(`image-${RUN}-${n}`).digest('hex'),
    flagged: true,
    reasons,
    classifiers: [{
      name: 'wildlife-resnet50vd', version: '1.0.0',
      top: [...reasons.map((r) => ({ label: r.label, score: r.score, trade_relevant: true })), ...(o.others ?? ['domestic_cat']).map((label) => ({ label, score: 0.01, trade_relevant: false }))],
    }],
    image: { format: 'jpeg', width: 640, height: 480, bytes: 51_234 },
    cached: false,
    timings: { fetchMs: 12, preprocessMs: 3, queueMs: 1, inferenceMs: 40, totalMs: 56 },
  };
  const topics = { results: 'screened', review: 'flagged' };
  return decisionsOf(input, result, topics, decidedAt).find((r) => r.topic === topics.review)!.decision;
}
