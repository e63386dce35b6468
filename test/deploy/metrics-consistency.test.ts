/**
 * The Grafana dashboard and the PrometheusRule only query metrics and labels the service really
 * exposes, and every alert carries a severity and a runbook link to a section that exists.
 *
 * The exposition comes from the real service (real model, real HTTP /metrics). Kafka metrics are
 * registered only when Kafka is on, so their families are registered here on a second registry by
 * attaching a tiny event emitter that has the KafkaPipeline shape: it is not a Kafka stand-in, it
 * only lets the metric families exist so their names and labels can be checked. The review console's
 * registry (createReviewMetrics) is built the same way, over shapes of its store and feed, for its
 * own rules (k8s/review/prometheusrule.yaml).
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT } from '../../src/config.js';
import { createMetrics, type Metrics } from '../../src/screening/metrics.js';
import { createReviewMetrics } from '../../src/review/metrics.js';
import { readManifest } from '../../src/model/manifest.js';
import type { RunningServer } from '../../src/screening/server.js';
import type { KafkaEvents, KafkaPipeline, PipelineState } from '../../src/screening/kafka/pipeline.js';
import type { ReviewFeed } from '../../src/review/feed.js';
import { startTestServer, TEST_MODEL_DIRS } from '../helpers/server.js';
import { extractSelectors, githubSlug } from './promql.js';

const DASHBOARD_FILE = path.join(REPO_ROOT, 'k8s', 'dashboards', 'wildlife-screening.json');
const RULES_FILES = [path.join(REPO_ROOT, 'k8s', 'base', 'prometheusrule.yaml'), path.join(REPO_ROOT, 'k8s', 'review', 'prometheusrule.yaml')];
const OPERATIONS_FILE = path.join(REPO_ROOT, 'docs', 'OPERATIONS.md');

/** Labels Prometheus (via the ServiceMonitor) attaches to every scraped series. */
const TARGET_LABELS = new Set(['namespace', 'pod', 'job', 'instance', 'service', 'container', 'endpoint']);
/** Series Prometheus synthesises per target rather than reading from /metrics. */
const SYNTHETIC_METRICS = new Map<string, string[]>([['up', []]]);
/** Labels whose values form a fixed set the service emits: equality matchers on them must use one of those values. */
const ENUMERATED_LABELS = new Set(['stage', 'lane', 'outcome', 'state', 'result', 'source', 'flagged']);

interface Family { type: string; labels: Set<string>; values: Map<string, Set<string>> }
interface Use { where: string; expr: string }

/** `# TYPE` lines plus the label names and values of every sample line. */
function parseExposition(text: string, families: Map<string, Family>): void {
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      if (!families.has(type[1]!)) families.set(type[1]!, { type: type[2]!, labels: new Set(), values: new Map() });
      continue;
    }
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? /.exec(line);
    if (!sample) continue;
    const family = familyOf(sample[1]!, families);
    if (!family) continue;
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
      family.labels.add(m[1]!);
      if (!family.values.has(m[1]!)) family.values.set(m[1]!, new Set());
      family.values.get(m[1]!)!.add(m[2]!);
    }
  }
}

/** The family a series name belongs to: itself, or a histogram/summary family for _bucket/_sum/_count. */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const own = families.get(name);
  if (own && own.type !== 'histogram' && own.type !== 'summary') return own;
  const suffix = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (!suffix) return undefined;
  const base = families.get(suffix[1]!);
  if (!base) return undefined;
  if (suffix[2] === 'bucket' && base.type !== 'histogram') return undefined;
  return base;
}

function labelNamesOf(name: string, family: Family): Set<string> {
  const labels = new Set(family.labels);
  if (name.endsWith('_bucket')) labels.add('le');
  if (family.type === 'summary' && !/_(sum|count)$/.test(name)) labels.add('quantile');
  return labels;
}

/** A KafkaPipeline-shaped event emitter: lets attachKafka register its metric families. */
class PipelineShape extends EventEmitter implements KafkaPipeline {
  current: PipelineState = 'running';
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  state(): PipelineState {
    return this.current;
  }
  emitEvent<K extends keyof KafkaEvents>(event: K, payload: KafkaEvents[K]): void {
    this.emit(event, payload);
  }
}

function dashboardExpressions(dashboard: { panels?: unknown[] }): Use[] {
  const uses: Use[] = [];
  const visit = (panel: Record<string, unknown>) => {
    for (const t of (panel.targets as Array<{ expr?: string }> | undefined) ?? []) {
      if (t.expr) uses.push({ where: `dashboard panel "${String(panel.title)}"`, expr: t.expr });
    }
    for (const child of (panel.panels as Array<Record<string, unknown>> | undefined) ?? []) visit(child);
  };
  for (const panel of (dashboard.panels ?? []) as Array<Record<string, unknown>>) visit(panel);
  return uses;
}

interface Rule { alert?: string; record?: string; expr: string; labels?: Record<string, string>; annotations?: Record<string, string> }

describe('the dashboard and alert rules against the real /metrics', () => {
  let server: RunningServer;
  let kafkaMetrics: Metrics;
  const families = new Map<string, Family>();
  const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Record<string, unknown> & { panels?: unknown[] };
  const ruleFiles = RULES_FILES.map((f) => parseYaml(readFileSync(f, 'utf8')) as { kind: string; spec: { groups: Array<{ name: string; rules: Rule[] }> } });
  const allRules = ruleFiles.flatMap((rules) => rules.spec.groups.flatMap((g) => g.rules));
  const uses: Use[] = [
    ...dashboardExpressions(dashboard),
    ...allRules.map((r) => ({ where: `rule ${r.alert ?? r.record}`, expr: r.expr })),
  ];

  before(async () => {
    // A two-stage cascade whose band covers every score, so a photo yields both stage outcomes.
    const stages = [path.join(REPO_ROOT, 'models', 'wildlife-efficientnet-lite0'), TEST_MODEL_DIRS[0]!];
    const names = await Promise.all(stages.map(async (dir) => (await readManifest(dir)).name));
    server = await startTestServer({
      cache: { maxEntries: 100 },
      models: { directories: stages },
      cascade: { mode: 'on', stages: [{ model: names[0]!, escalate: { from: 0, below: 1 } }, { model: names[1]! }] },
    });
    const photo = readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'met', 'ivory_110245.jpg'));
    // The second look-up is a cache hit, the third (the same photo at half size) a near one.
    for (const body of [photo, photo, await sharp(photo).resize(226).jpeg({ quality: 80 }).toBuffer()]) {
      const res = await fetch(`${server.url}/v1/screen`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(body) });
      assert.equal(res.status, 200, await res.text());
    }
    const bad = await fetch(`${server.url}/v1/screen`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'not a photo' });
    assert.equal(bad.status, 415);
    await bad.arrayBuffer();
    const exposition = await (await fetch(`${server.url}/metrics`)).text();
    parseExposition(exposition, families);

    kafkaMetrics = createMetrics(server.service);
    const pipeline = new PipelineShape();
    kafkaMetrics.attachKafka(pipeline);
    for (const outcome of ['screened', 'flagged', 'dead_lettered', 'retried'] as const) pipeline.emitEvent('message', { outcome, code: outcome === 'dead_lettered' ? 'MESSAGE_INVALID' : undefined });
    pipeline.emitEvent('lag', { topic: 'images.crawled', partition: 0, lag: 3 });
    pipeline.emitEvent('decision', { crawlToDecisionMs: 1200 });
    pipeline.emitEvent('clientError', { kind: 'lag', error: new Error('example') });
    pipeline.emitEvent('state', { state: 'paused' });
    parseExposition(await kafkaMetrics.registry.metrics(), families);
    // The review console's registry: its gauges read the store at scrape time, the feed's state is
    // set for every state at once.
    const reviewStore = Object.assign(new EventEmitter(), { backlog: () => ({ pending: 2, escalated: 1, oldestPendingAt: new Date(Date.now() - 60_000).toISOString() }), outboxSize: () => 0 });
    const reviewFeed = Object.assign(new EventEmitter(), { state: () => 'running' }) as unknown as ReviewFeed;
    const reviewRegistry = createReviewMetrics(reviewStore as never, reviewFeed);
    parseExposition(await reviewRegistry.metrics(), families);
    // Label names straight from the registered metrics (covers label sets with no series yet).
    for (const registry of [server.metrics.registry, kafkaMetrics.registry, reviewRegistry]) {
      for (const metric of registry.getMetricsAsArray()) {
        const family = families.get((metric as unknown as { name: string }).name);
        for (const label of (metric as unknown as { labelNames?: readonly string[] }).labelNames ?? []) family?.labels.add(label);
      }
    }
  });
  after(async () => {
    await server?.close();
  });

  test('the exposition holds the service, Kafka, review console and process metric families the checks rely on', () => {
    for (const name of ['wildlife_screening_stage_duration_seconds', 'wildlife_queue_depth', 'wildlife_model_info', 'wildlife_kafka_consumer_lag', 'wildlife_kafka_pipeline_state', 'wildlife_review_oldest_pending_age_seconds', 'wildlife_review_outbox_size', 'wildlife_review_feed_state', 'wildlife_process_cpu_seconds_total']) {
      assert.ok(families.has(name), `${name} missing from the exposition`);
    }
    assert.equal(families.get('wildlife_screening_stage_duration_seconds')!.type, 'histogram');
  });

  test('the PromQL parser finds metric names and selectors and ignores functions, keywords and grouping labels', () => {
    const found = extractSelectors('histogram_quantile(0.99, sum by (le, stage) (rate(a_seconds_bucket{stage="total", pod=~"$pod"}[$__rate_interval]))) > 1 and on (namespace) b_total or vector(0) unless absent(c)');
    assert.deepEqual(found.map((s) => s.metric), ['a_seconds_bucket', 'b_total', 'c']);
    assert.deepEqual(found[0]!.matchers.map((m) => `${m.label}${m.op}${m.value}`), ['stage=total', 'pod=~$pod']);
    assert.deepEqual(extractSelectors('deriv(x[15m:1m]) * 0.8 * 512').map((s) => s.metric), ['x']);
  });

  test('every expression of the dashboard and the rules names at least one metric', () => {
    assert.ok(uses.length >= 20, `only ${uses.length} expressions found`);
    for (const use of uses) assert.ok(extractSelectors(use.expr).length > 0, `${use.where}: no metric in ${use.expr}`);
  });

  test('every metric the dashboard and the rules query exists in the exposition', () => {
    const problems: string[] = [];
    for (const use of uses) {
      for (const { metric } of extractSelectors(use.expr)) {
        if (SYNTHETIC_METRICS.has(metric)) continue;
        const own = families.get(metric);
        if (own && (own.type === 'histogram' || own.type === 'summary')) problems.push(`${use.where}: ${metric} is a ${own.type}; query its _bucket, _sum or _count series`);
        else if (!familyOf(metric, families)) problems.push(`${use.where}: no metric ${metric} in /metrics`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test('every label a selector matches on exists on that metric, and fixed-set label values are ones the service emits', () => {
    const problems: string[] = [];
    for (const use of uses) {
      for (const { metric, matchers } of extractSelectors(use.expr)) {
        const family = familyOf(metric, families);
        const labels = SYNTHETIC_METRICS.has(metric) ? new Set(SYNTHETIC_METRICS.get(metric)) : family ? labelNamesOf(metric, family) : undefined;
        if (!labels) continue; // reported by the previous test
        for (const m of matchers) {
          if (TARGET_LABELS.has(m.label)) continue;
          if (!labels.has(m.label)) {
            problems.push(`${use.where}: ${metric} has no label ${m.label} (it has ${[...labels].join(', ') || 'none'})`);
            continue;
          }
          if (family && ENUMERATED_LABELS.has(m.label) && (m.op === '=' || m.op === '!=')) {
            const seen = family.values.get(m.label) ?? new Set();
            if (!seen.has(m.value)) problems.push(`${use.where}: ${metric}{${m.label}="${m.value}"} never occurs (seen: ${[...seen].join(', ')})`);
          }
          if (family && ENUMERATED_LABELS.has(m.label) && m.op === '=~') {
            const seen = family.values.get(m.label) ?? new Set();
            for (const alternative of m.value.split('|')) {
              if (/^[\w]+$/.test(alternative) && !seen.has(alternative) && !(m.label === 'state' && ['starting', 'running', 'paused', 'stopping', 'stopped', 'failed'].includes(alternative))) {
                problems.push(`${use.where}: ${metric}{${m.label}=~"…${alternative}…"} never occurs (seen: ${[...seen].join(', ')})`);
              }
            }
          }
        }
      }
    }
    assert.deepEqual(problems, []);
  });

  test('every alert has a severity label, a summary, a description and a runbook link to a heading of docs/OPERATIONS.md', () => {
    for (const rules of ruleFiles) assert.equal(rules.kind, 'PrometheusRule');
    const headings = new Set(readFileSync(OPERATIONS_FILE, 'utf8').split('\n').filter((l) => /^#{1,6} /.test(l)).map((l) => githubSlug(l.replace(/^#+ /, ''))));
    const alerts = allRules.filter((r) => r.alert);
    assert.ok(alerts.length >= 9, `only ${alerts.length} alerts`);
    const problems: string[] = [];
    for (const rule of alerts) {
      if (!['critical', 'warning', 'info'].includes(rule.labels?.severity ?? '')) problems.push(`${rule.alert}: severity ${rule.labels?.severity}`);
      if (!rule.annotations?.summary) problems.push(`${rule.alert}: no summary`);
      if (!rule.annotations?.description) problems.push(`${rule.alert}: no description`);
      const url = rule.annotations?.runbook_url ?? '';
      const [file, anchor] = url.split('#');
      if (!file?.endsWith('docs/OPERATIONS.md') || !anchor) problems.push(`${rule.alert}: runbook_url ${url} is not docs/OPERATIONS.md#<anchor>`);
      else if (!headings.has(anchor)) problems.push(`${rule.alert}: docs/OPERATIONS.md has no heading with anchor #${anchor}`);
    }
    const names = alerts.map((r) => r.alert);
    assert.equal(new Set(names).size, names.length, 'duplicate alert names');
    assert.deepEqual(problems, []);
  });

  test('the dashboard is a current Grafana schema that takes its Prometheus data source from a variable', () => {
    assert.ok(Number(dashboard.schemaVersion) >= 36, `schemaVersion ${String(dashboard.schemaVersion)}`);
    const variables = (dashboard.templating as { list: Array<{ name: string; type: string; query: unknown }> }).list;
    const source = variables.find((v) => v.name === 'datasource');
    assert.ok(source && source.type === 'datasource' && source.query === 'prometheus', 'no datasource variable of plugin type prometheus');
    const uids = [...JSON.stringify(dashboard).matchAll(/"uid":\s*"([^"]*)"/g)].map((m) => m[1]).filter((uid) => uid !== 'wildlife-screening');
    assert.ok(uids.length > 0);
    assert.deepEqual([...new Set(uids)], ['${datasource}'], 'a data source UID is hard-coded');
  });
});
