/** The labels consumer's metrics (npm run labels:consume). */
import client from 'prom-client';
import { processRegistry, stateGauge } from '../metrics.js';
import type { ReviewConsumerState, ReviewDecisionConsumer } from './review-decisions.js';

const LABELS_STATES: readonly ReviewConsumerState[] = ['starting', 'running', 'stopping', 'stopped', 'failed'];
const LABELED_SET_COUNTS = ['labeled', 'negative_without_label', 'pending', 'retracted', 'unknown_label', 'unresolved', 'conflicts', 'duplicates', 'decisions'] as const;

/** The review-decisions consumer (npm run labels:consume) runs in its own process, with its own registry. */
export function createLabelsMetrics(consumer: ReviewDecisionConsumer): client.Registry {
  const { registry, m } = processRegistry();
  const messages = new client.Counter({ name: m('labels_messages_total'), help: 'Review-decision messages by outcome (appended, duplicate, invalid).', labelNames: ['outcome'], registers: [registry] });
  const set = new client.Gauge({ name: m('labels_set'), help: 'The labelled set at its last compile: labels.csv rows (labeled) and the other outcomes, conflicts, duplicates, decisions.', labelNames: ['count'], registers: [registry] });
  const compiled = new client.Gauge({ name: m('labels_last_compile_timestamp_seconds'), help: 'When labels.csv was last compiled.', registers: [registry] });
  const clientErrors = new client.Counter({ name: m('labels_client_errors_total'), help: 'Consumer errors by kind.', labelNames: ['kind'], registers: [registry] });
  stateGauge(registry, m('labels_consumer_state'), 'Review-decision consumer state (1 for the current one).', LABELS_STATES, consumer);
  for (const outcome of ['appended', 'duplicate', 'invalid']) messages.inc({ outcome }, 0);
  consumer.on('appended', ({ duplicate }) => messages.inc({ outcome: duplicate ? 'duplicate' : 'appended' }));
  consumer.on('invalid', () => messages.inc({ outcome: 'invalid' }));
  consumer.on('clientError', ({ kind }) => clientErrors.inc({ kind }));
  consumer.on('compiled', ({ report }) => {
    const counts = (report as { counts?: Record<string, number> }).counts ?? {};
    for (const count of LABELED_SET_COUNTS) if (typeof counts[count] === 'number') set.set({ count }, counts[count]!);
    compiled.set(Date.now() / 1000);
  });
  return registry;
}
