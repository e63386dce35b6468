/** Wires config, screening service, metrics and the HTTP app into a running server. */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { REPO_ROOT, type AppConfig } from '../config.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createScreeningService, type ScreeningService } from './service.js';
import { createApp } from './http/app.js';
import { createKafkaPipeline, type KafkaPipeline } from './kafka/pipeline.js';

export interface RunningServer {
  url: string;
  service: ScreeningService;
  metrics: Metrics;
  logger: Logger;
  /** Present when KAFKA_BROKERS (kafka.brokers) is set. */
  kafka: KafkaPipeline | null;
  /** Stop accepting, let in-flight requests finish (up to shutdownGraceMs), release the models. */
  close(): Promise<void>;
}

export function createLogger(config: Readonly<AppConfig>): Logger {
  return pino({ level: config.logging.level, base: { service: 'wildlife-screening' }, redact: ['req.headers.authorization', 'req.headers["x-api-key"]'] });
}

export async function startServer(config: Readonly<AppConfig>, options: { logger?: Logger; modelsRoot?: string } = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config);
  const service = await createScreeningService(config, options.modelsRoot ?? path.join(REPO_ROOT, 'models'));
  service.on('modelLoaded', (e) => logger.info(e, 'model loaded and warmed up'));
  service.on('reloadFailed', ({ error }) => logger.error({ err: error }, 'model reload failed; previous models keep serving'));
  service.on('shadowCandidate', ({ candidate, previous, reason }) => {
    const name = (c: typeof candidate) => (c ? `${c.name}@${c.version}` : null);
    const message = reason === 'promoted' ? 'shadow candidate now serves as a primary model; shadow cleared' : `shadow candidate ${reason}`;
    logger.info({ candidate: name(candidate), previous: name(previous), sha256: (candidate ?? previous)?.sha256, directory: candidate?.directory }, message);
  });
  service.on('shadowFailed', ({ candidate, during, error }) => {
    // A comparison failure is one photo (counted in metrics); a load failure needs a human.
    if (during === 'compare') logger.warn({ candidate, err: error }, 'shadow comparison failed');
    else logger.error({ candidate, during, err: error }, 'shadow candidate could not be loaded; the previous one, if any, stays');
  });
  service.on('shadowComparison', (e) => {
    // For analysts to label a sample of the disagreements; the sha256 also finds the photo in the pool.
    if (e.flag === 'primary_only' || e.flag === 'candidate_only' || e.top1 === 'disagree') logger.debug(e, 'shadow disagreement');
  });
  service.on('poolFailed', ({ sha256, error }) => logger.warn({ sha256, err: error }, 'pool write failed; the sample is skipped'));
  const shadow = service.shadowStatus();
  if (config.shadow.modelDir && !shadow.candidate) logger.error({ directory: config.shadow.modelDir, error: shadow.lastError }, 'shadow candidate could not be loaded; running without one');
  const metrics = createMetrics(service);
  const kafka = config.kafka.brokers.length ? createKafkaPipeline(service, config.kafka, logger) : null;
  if (kafka) {
    metrics.attachKafka(kafka);
    kafka.on('state', ({ state }) => logger.info({ state }, 'kafka pipeline'));
    kafka.on('omitted', (e) => logger.warn(e, 'output record over kafka.maxRecordBytes: pass-through fields left out'));
  }
  const readiness = kafka ? () => ({ kafka: { ready: kafka.state() === 'running' || kafka.state() === 'paused', state: kafka.state() } }) : undefined;
  const app = createApp({ service, config, metrics, logger, readiness });
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.server.port, config.server.host, () => resolve(s));
    s.once('error', reject);
  });
  server.requestTimeout = config.server.requestTimeoutMs;
  server.headersTimeout = Math.min(config.server.requestTimeoutMs, 60_000);
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  const candidate = service.shadowStatus().candidate;
  logger.info({
    url, models: service.models().map((m) => `${m.name}@${m.version}`), auth: config.auth.apiKeys.length > 0,
    shadow: candidate ? `${candidate.name}@${candidate.version}` : null, pool: service.poolStatus()?.directory ?? null,
  }, 'listening');
  let closing: Promise<void> | null = null;
  if (kafka) {
    // The HTTP side serves while the consumer joins its group; /readyz says when both are up. A
    // broker that is down at boot is retried until it answers or the service stops.
    void (async () => {
      for (let attempt = 1; !closing; attempt++) {
        try {
          await kafka.start();
          return;
        } catch (err) {
          logger.error({ err, attempt }, 'kafka pipeline failed to start; retrying');
          await new Promise((resolve) => setTimeout(resolve, Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5))).unref());
        }
      }
    })();
  }

  const close = () => (closing ??= (async () => {
    // Kafka first: stop fetching and commit what is in flight while the models are still there.
    await kafka?.stop().catch((err: unknown) => logger.error({ err }, 'kafka shutdown'));
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const grace = new Promise<void>((resolve) => setTimeout(resolve, config.server.shutdownGraceMs).unref());
    await Promise.race([closed, grace]);
    server.closeAllConnections();
    await service.close();
  })());
  return { url, service, metrics, logger, kafka, close };
}
