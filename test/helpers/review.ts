/** Flagged decisions (images.flagged/v1) as the screening pipeline produces them, for review-console tests. */
import { createHash } from 'node:crypto';
import { FLAGGED_SCHEMA, type Decision } from '../../src/transport/kafka/messages.js';

let counter = 0;

export interface FlaggedOptions {
  decisionId?: string;
  platform?: string;
  title?: string;
  decidedAt?: string;
  imageUrl?: string | null;
  /** [label, score, threshold] per flag reason. */
  reasons?: Array<[string, number, number]>;
  /** Other top labels of the classifier, besides the reasons. */
  others?: string[];
}

export function flaggedMessage(o: FlaggedOptions = {}): Decision {
  const n = ++counter;
  const reasons = (o.reasons ?? [['elephant_ivory', 0.91, 0.6]]).map(([label, score, threshold]) => ({ classifier: 'wildlife-resnet50vd', label, score, threshold }));
  const top = [...reasons.map((r) => ({ label: r.label, score: r.score, trade_relevant: true })), ...(o.others ?? ['domestic_cat']).map((label) => ({ label, score: 0.01, trade_relevant: false }))];
  const decidedAt = o.decidedAt ?? new Date().toISOString();
  return {
    schema: FLAGGED_SCHEMA,
    decisionId: o.decisionId ?? `dec-${process.pid}-${n}-${Math.random().toString(36).slice(2, 8)}`,
    inputId: `input-${n}`,
    flagged: true,
    listing: { url: `https://market.example/listing/${n}`, platform: o.platform ?? 'market.example', title: o.title ?? `Carved piece #${n}`, seller: 'seller-1' },
    image: { url: o.imageUrl === undefined ? `https://img.example/${n}.jpg` : o.imageUrl, sha256: createHash('sha256').update(`image-${n}`).digest('hex'), format: 'jpeg', width: 640, height: 480, bytes: 51_234 },
    reasons,
    classifiers: [{ name: 'wildlife-resnet50vd', version: '1.0.0', top }],
    timings: { fetchMs: 12, preprocessMs: 3, queueMs: 1, inferenceMs: 40, totalMs: 56, crawlToDecisionMs: 900 },
    crawledAt: new Date(Date.parse(decidedAt) - 900).toISOString(),
    decidedAt,
  };
}
