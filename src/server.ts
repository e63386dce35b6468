/** Wires config, screening service, metrics and the HTTP app into a running server. */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { REPO_ROOT, type ServiceConfig } from './config.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createScreeningService, type ScreeningService } from './screening/service.js';
import { createApp } from './transport/http/app.js';

export interface RunningServer {
  url: string;
  service: ScreeningService;
  metrics: Metrics;
  logger: Logger;
  /** Stop accepting, let in-flight requests finish (up to shutdownGraceMs), release the models. */
  close(): Promise<void>;
}

export function createLogger(config: Readonly<ServiceConfig>): Logger {
  return pino({ level: config.logging.level, base: { service: 'wildlife-screening' }, redact: ['req.headers.authorization', 'req.headers["x-api-key"]'] });
}

export async function startServer(config: Readonly<ServiceConfig>, options: { logger?: Logger; modelsRoot?: string } = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config);
  const service = await createScreeningService(config, options.modelsRoot ?? path.join(REPO_ROOT, 'models'));
  service.on('modelLoaded', (e) => logger.info(e, 'model loaded and warmed up'));
  service.on('reloadFailed', ({ error }) => logger.error({ err: error }, 'model reload failed; previous models keep serving'));
  const metrics = createMetrics(service);
  const app = createApp({ service, config, metrics, logger });
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(config.server.port, config.server.host, () => resolve(s));
    s.once('error', reject);
  });
  server.requestTimeout = config.server.requestTimeoutMs;
  server.headersTimeout = Math.min(config.server.requestTimeoutMs, 60_000);
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url, models: service.models().map((m) => `${m.name}@${m.version}`), auth: config.auth.apiKeys.length > 0 }, 'listening');

  let closing: Promise<void> | null = null;
  const close = () => (closing ??= (async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const grace = new Promise<void>((resolve) => setTimeout(resolve, config.server.shutdownGraceMs).unref());
    await Promise.race([closed, grace]);
    server.closeAllConnections();
    await service.close();
  })());
  return { url, service, metrics, logger, close };
}
