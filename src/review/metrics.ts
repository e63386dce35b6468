/** The review console's metrics (npm run review). */
import client from 'prom-client';
import { processRegistry, stateGauge } from '../metrics.js';
import type { ReviewStore } from './store.js';
import type { ReviewFeed, ReviewFeedState } from './feed.js';

/** From a minute (a quick queue) to a week (a forgotten one). */
const TIME_TO_DECISION_BUCKETS = [60, 300, 900, 1800, 3600, 7200, 14_400, 28_800, 86_400, 172_800, 345_600, 604_800];
/**
 * A confirming analyst may type a label of their own; past this many distinct labels, new ones are
 * counted as "other" so a run of typos cannot blow up the series count.
 */
const MAX_DECISION_LABELS = 200;
const REVIEW_FEED_STATES: readonly ReviewFeedState[] = ['starting', 'running', 'stopping', 'stopped', 'failed'];

/**
 * The review console (npm run review) runs in its own process, with its own registry. The queue's
 * size is read from SQLite at scrape time; everything else comes from the store's and the feed's
 * events. `feed` is null when the console runs without Kafka.
 */
export function createReviewMetrics(store: Pick<ReviewStore, 'backlog' | 'outboxSize' | 'on'>, feed: ReviewFeed | null): client.Registry {
  const { registry, m } = processRegistry();

  // Both backlog gauges come from one query: a scrape reads them one right after the other, and
  // any change to the queue goes through the store, which says so.
  let snapshot: { at: number; value: ReturnType<ReviewStore['backlog']> } | null = null;
  const backlog = () => {
    if (!snapshot || Date.now() - snapshot.at > 1000) snapshot = { at: Date.now(), value: store.backlog() };
    return snapshot.value;
  };
  store.on('ingested', () => { snapshot = null; });
  store.on('decided', () => { snapshot = null; });
  new client.Gauge({
    name: m('review_backlog'), help: 'Items waiting for a decision, by status (pending, escalated to a lead).', labelNames: ['status'], registers: [registry],
    collect() {
      const b = backlog();
      this.set({ status: 'pending' }, b.pending);
      this.set({ status: 'escalated' }, b.escalated);
    },
  });
  new client.Gauge({
    name: m('review_oldest_pending_age_seconds'), help: 'Age of the oldest pending item (since it was flagged); 0 when none is pending.', registers: [registry],
    collect() {
      const oldest = backlog().oldestPendingAt;
      const flaggedAt = oldest ? Date.parse(oldest) : NaN;
      this.set(Number.isFinite(flaggedAt) ? Math.max(0, (Date.now() - flaggedAt) / 1000) : 0);
    },
  });
  new client.Gauge({
    name: m('review_outbox_size'), help: 'Decisions not yet put on the decisions topic.', registers: [registry],
    collect() {
      this.set(store.outboxSize());
    },
  });
  const decisions = new client.Counter({ name: m('review_decisions_total'), help: 'Analysts\' decisions by verdict (confirmed, rejected, escalated, reopened) and label.', labelNames: ['verdict', 'label'], registers: [registry] });
  const timeToDecision = new client.Histogram({ name: m('review_time_to_decision_seconds'), help: 'From an item being flagged to its first decision.', buckets: TIME_TO_DECISION_BUCKETS, registers: [registry] });
  const labels = new Set<string>();
  store.on('decided', ({ decision, secondsToDecision }) => {
    if (!labels.has(decision.label) && labels.size < MAX_DECISION_LABELS) labels.add(decision.label);
    decisions.inc({ verdict: decision.verdict, label: labels.has(decision.label) ? decision.label : 'other' });
    if (secondsToDecision !== null) timeToDecision.observe(secondsToDecision);
  });

  const ingested = new client.Counter({ name: m('review_ingested_total'), help: 'Flagged decisions read from Kafka, by outcome (added, duplicate, invalid).', labelNames: ['outcome'], registers: [registry] });
  const published = new client.Counter({ name: m('review_published_total'), help: 'Decisions put on the decisions topic (re-sends after a crash count again).', registers: [registry] });
  const publishFailures = new client.Counter({ name: m('review_publish_failures_total'), help: 'Failed attempts to put decisions on the decisions topic (they stay in the outbox).', registers: [registry] });
  const clientErrors = new client.Counter({ name: m('review_client_errors_total'), help: 'Review feed errors by kind (ingest, consumer_crash).', labelNames: ['kind'], registers: [registry] });
  for (const outcome of ['added', 'duplicate', 'invalid']) ingested.inc({ outcome }, 0);
  if (feed) {
    stateGauge(registry, m('review_feed_state'), 'Review feed state (1 for the current one).', REVIEW_FEED_STATES, feed);
    feed.on('ingested', ({ outcome }) => ingested.inc({ outcome }));
    feed.on('invalid', () => ingested.inc({ outcome: 'invalid' }));
    feed.on('published', ({ count }) => published.inc(count));
    feed.on('publishFailed', () => publishFailures.inc());
    feed.on('clientError', ({ kind }) => clientErrors.inc({ kind }));
  }
  return registry;
}
