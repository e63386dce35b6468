/**
 * Prometheus plumbing shared by the three processes (the screening service, the review console, the
 * labels consumer). Each application builds its own registry from its components' events in its
 * own room (src/screening/metrics.ts, src/review/metrics.ts, src/training/metrics.ts): business
 * code never touches prom-client, and no process exports another's series.
 */
import client from 'prom-client';

export const METRIC_PREFIX = 'wildlife_';

export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** A registry with the process's default metrics, and the prefixer every series name goes through. */
export function processRegistry(): { registry: client.Registry; m: (name: string) => string } {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
  return { registry, m: (name: string) => `${METRIC_PREFIX}${name}` };
}

/** One series per state, 1 for the current one: set at once and on every `state` event. */
export function stateGauge(registry: client.Registry, name: string, help: string, states: readonly string[], component: { state(): string; on(event: 'state', listener: (e: { state: string }) => void): unknown }): void {
  const gauge = new client.Gauge({ name, help, labelNames: ['state'], registers: [registry] });
  const show = (current: string) => states.forEach((x) => gauge.set({ state: x }, x === current ? 1 : 0));
  show(component.state());
  component.on('state', (e) => show(e.state));
}
