/**
 * Analysts' review decisions → training labels (docs/REVIEW-DECISIONS.md).
 *
 * npm run labels:consume -- --brokers host:port --out DIR [--topic images.review-decisions]
 *                           [--group wildlife-labels] [--pool DIR] [--model DIR] [--dlq TOPIC|none]
 *                           [--compile-every N] [--compile-interval SECONDS]
 *   Consumes the decisions topic into the labeled set DIR until SIGTERM/SIGINT (drains, compiles,
 *   exits 0). Brokers also from KAFKA_BROKERS; image URLs go through the SSRF-guarded fetcher with
 *   the service's fetch settings (configs/default.yaml, CONFIG_FILE, FETCH_ALLOWLIST).
 *
 * npm run labels:compile -- --dir DIR [--model DIR] [--json]
 *   Compiles DIR/labels.csv and DIR/report.json from DIR/decisions.jsonl and prints a summary.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../config.js';
import { AppError } from '../../errors.js';
import { createFetcher } from '../../net/fetcher.js';
import { REVIEW_DECISIONS_TOPIC } from '../../contracts/index.js';
import { createLabelsMetrics } from '../metrics.js';
import { createReviewDecisionConsumer, DEFAULT_LABELS_GROUP_ID, type ReviewDecisionConsumer } from '../review-decisions.js';
import { LABELS_FILE, openLabeledSet, readKnownClasses, REPORT_FILE, type LabeledSetReport } from '../labeled-set.js';
import { parseFlags, runCli } from './args.js';

const USAGE = 'usage: npm run labels:consume -- --out DIR [--brokers host:port] [--topic T] [--group G] [--pool DIR] [--model DIR]\n'
  + '       npm run labels:compile -- --dir DIR [--model DIR] [--json]';

/** A readable summary of a compiled report. */
function summarise(report: LabeledSetReport, dir: string): string {
  const c = report.counts;
  const short = (sha: string | null) => (sha ? sha.slice(0, 12) : '(no image)');
  const out = [
    `${c.labeled} labels in ${path.join(dir, LABELS_FILE)}${c.labeled ? `: ${Object.entries(report.perClass).map(([k, n]) => `${k} ${n}`).join(', ')}` : ''}`,
    `decisions ${c.decisions} (duplicates ${c.duplicates}, invalid lines ${c.invalid_lines}) on ${c.images} images: labeled ${c.labeled}, `
      + `negative without label ${c.negative_without_label}, pending ${c.pending}, retracted ${c.retracted}, unknown label ${c.unknown_label}, unresolved ${c.unresolved}`,
    `conflicts ${c.conflicts}`,
    ...report.conflicts.map((x) => `  ${short(x.sha256)}: ${x.decisions.map((d) => `${d.analyst} ${d.verdict} ${d.correctLabel ?? d.label} @${d.decidedAt}`).join(' | ')} → ${x.outcome}${x.class ? ` ${x.class}` : ''}`),
    `unresolved ${c.unresolved}`,
    ...report.unresolved.map((x) => `  ${short(x.sha256)} (${x.class}): ${x.reason}`),
    `unknown labels ${c.unknown_label}${report.knownClasses ? '' : ' (no --model: every label accepted)'}`,
    ...report.unknownLabels.map((x) => `  ${short(x.sha256)}: ${x.class} by ${x.analyst}`),
    `report: ${path.join(dir, REPORT_FILE)}`,
  ];
  return `${out.join('\n')}\n`;
}

async function knownClasses(model: string | undefined): Promise<string[] | null> {
  return model ? readKnownClasses(model) : null;
}

async function compileCommand(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    dir: { type: 'string', required: true, help: 'the labeled set directory (holding decisions.jsonl)' },
    model: { type: 'string', help: "model directory: labels outside its model.json's labels are reported, not trained" },
    json: { type: 'boolean', help: 'print the report as one JSON object instead of the summary' },
  }, USAGE);
  const dir = String(flags.dir);
  const set = await openLabeledSet(dir, { knownClasses: await knownClasses(flags.model as string | undefined), create: false });
  try {
    const report = await set.compile();
    process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : summarise(report, dir));
  } finally {
    await set.close();
  }
  return 0;
}

function positiveInt(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new AppError('CLI_USAGE', `--${name} takes a positive integer, got ${String(value)}.`);
  return n;
}

async function consumeCommand(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, {
    out: { type: 'string', required: true, help: 'the labeled set directory (created if missing)' },
    brokers: { type: 'string', help: 'host:port[,…] (default KAFKA_BROKERS)' },
    topic: { type: 'string', help: `decisions topic (default ${REVIEW_DECISIONS_TOPIC})` },
    group: { type: 'string', help: `consumer group id (default ${DEFAULT_LABELS_GROUP_ID})` },
    pool: { type: 'string', help: 'image pool directory with index.jsonl ({"sha256","file"} lines): copied from before fetching' },
    model: { type: 'string', help: "model directory: labels outside its model.json's labels are reported, not trained" },
    dlq: { type: 'string', help: 'dead-letter topic for invalid messages, or "none" (default: the service\'s kafka.topics.dlq)' },
    'compile-every': { type: 'string', help: 'compile labels.csv after this many new decisions (default 100)' },
    'compile-interval': { type: 'string', help: 'and at least every this many seconds while decisions arrive (default 60)' },
    'metrics-port': { type: 'string', help: 'serve /metrics and /healthz on this port (default LABELS_METRICS_PORT; off when unset)' },
  }, USAGE);
  // The service's config gives the fetch (SSRF guard) and Kafka settings; the API-key rule for
  // production servers does not apply to this offline tool.
  const config = loadConfig({ ...process.env, NODE_ENV: undefined });
  const brokers = flags.brokers ? String(flags.brokers).split(',').map((s) => s.trim()).filter(Boolean) : [...config.kafka.brokers];
  if (brokers.length === 0) throw new AppError('CLI_USAGE', `--brokers or KAFKA_BROKERS is required.\n${USAGE}`);
  const compileEvery = positiveInt(flags['compile-every'], 'compile-every', 100);
  const compileIntervalMs = positiveInt(flags['compile-interval'], 'compile-interval', 60) * 1000;
  const dlq = flags.dlq === undefined ? config.kafka.topics.dlq : String(flags.dlq) === 'none' ? null : String(flags.dlq);
  const logger = pino({ level: config.logging.level, base: { service: 'wildlife-labels' } }, pino.destination(2));

  const out = String(flags.out);
  const set = await openLabeledSet(out, {
    pool: flags.pool as string | undefined,
    knownClasses: await knownClasses(flags.model as string | undefined),
    fetcher: createFetcher({ timeoutMs: config.fetch.timeoutMs, maxBytes: config.fetch.maxBytes, maxRedirects: config.fetch.maxRedirects, allowlist: [...config.fetch.allowlist] }),
  });
  const consumer = createReviewDecisionConsumer({
    brokers,
    sink: set,
    logger,
    topic: flags.topic as string | undefined,
    groupId: flags.group as string | undefined,
    clientId: 'wildlife-labels',
    dlqTopic: dlq,
    compileEvery,
    compileIntervalMs,
    createTopics: { partitions: config.kafka.partitions, replicationFactor: config.kafka.replicationFactor },
    shutdownTimeoutMs: Math.max(config.kafka.shutdownTimeoutMs, 10_000),
  });
  consumer.on('compiled', ({ report }) => {
    const c = (report as LabeledSetReport).counts;
    logger.info({ labels: c.labeled, decisions: c.decisions, duplicates: c.duplicates, conflicts: c.conflicts, unresolved: c.unresolved, unknownLabels: c.unknown_label }, 'compiled labels.csv');
  });
  consumer.on('state', ({ state }) => logger.info({ state }, 'review-decision consumer'));
  const metricsPort = flags['metrics-port'] ?? process.env.LABELS_METRICS_PORT;
  const metricsServer = metricsPort === undefined ? null : await serveMetrics(consumer, Number(metricsPort), config.server.host);
  if (metricsServer) logger.info({ port: (metricsServer.address() as AddressInfo).port }, 'metrics on /metrics');
  consumer.on('clientError', ({ kind, error }) => logger.warn({ kind, err: error }, 'review-decision consumer error'));

  let stopping: Promise<number> | null = null;
  const stop = (signal: string): Promise<number> => {
    stopping ??= (async () => {
      logger.info({ signal }, 'draining and shutting down');
      let code = 0;
      try {
        await consumer.stop();
      } catch (err) {
        logger.error({ err }, 'shutdown did not finish cleanly');
        code = 1;
      }
      const report = (await set.compile()) as LabeledSetReport;
      await set.close();
      metricsServer?.close();
      logger.info(consumer.stats(), 'stopped');
      process.stdout.write(summarise(report, out));
      return code;
    })();
    return stopping;
  };
  const done = new Promise<number>((resolve) => {
    process.once('SIGTERM', () => void stop('SIGTERM').then(resolve));
    process.once('SIGINT', () => void stop('SIGINT').then(resolve));
    // kafkajs restarts the consumer after retriable crashes; anything else ends the process, non-zero.
    consumer.on('state', ({ state }) => {
      if (state === 'failed' && !stopping) void stop('consumer failed').then(() => resolve(1));
    });
  });
  await consumer.start();
  logger.info({ brokers, topic: flags.topic ?? REVIEW_DECISIONS_TOPIC, group: flags.group ?? DEFAULT_LABELS_GROUP_ID, out: path.resolve(out), dlq }, 'consuming review decisions');
  return done;
}

/** /metrics for Prometheus and /healthz (200 while consuming) for the orchestrator's probes. */
async function serveMetrics(consumer: ReviewDecisionConsumer, port: number, host: string): Promise<Server> {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new AppError('CLI_USAGE', `--metrics-port takes a port number, got ${port}.`);
  const registry = createLabelsMetrics(consumer);
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      void registry.metrics().then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text));
    } else if (req.method === 'GET' && req.url === '/healthz') {
      const state = consumer.state();
      res.writeHead(state === 'running' || state === 'starting' ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ state }));
    } else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return server;
}

runCli(async () => {
  const [command, ...rest] = process.argv.slice(2);
  if (command === 'compile') return compileCommand(rest);
  if (command === 'consume') return consumeCommand(rest);
  throw new AppError('CLI_USAGE', `unknown command ${command ?? '(none)'}: use "consume" or "compile".\n${USAGE}`);
});
