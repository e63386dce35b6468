/**
 * Assembles the review console: database, store, sign-in, photos, the Kafka feed (when brokers are
 * configured), metrics and the HTTP app. `npm run review` and the end-to-end tests both start it here.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { AppConfig } from '../config.js';
import { createReviewMetrics } from './metrics.js';
import { createFetcher } from '../net/fetcher.js';
import { createReviewFeed, type ReviewFeed } from './feed.js';
import express from 'express';
import { createReviewApp, metricsHandler } from './app.js';
import { createReviewAuth } from './auth.js';
import { openReviewDb, type ReviewDb } from './db.js';
import { createPhotoKeeper } from './photos.js';
import { createReviewStore, type ReviewStore } from './store.js';

export interface ReviewConsole {
  url: string;
  metricsUrl: string;
  db: ReviewDb;
  store: ReviewStore;
  feed: ReviewFeed | null;
  /** Stops taking requests, stops the feed (committing and publishing what it can), closes the database. */
  close(): Promise<void>;
}

/** Photos that failed are retried this often (and whenever new items arrive). */
const PHOTO_RETRY_MS = 60_000;
const SESSION_PURGE_MS = 3_600_000;
const FEED_RETRY_MS = 5_000;
const FEED_RETRY_MAX_MS = 60_000;

export async function startReviewConsole(config: Readonly<AppConfig>, options: { logger: Logger }): Promise<ReviewConsole> {
  const { logger } = options;
  const rc = config.review;
  const db = openReviewDb(rc.database);
  const store = createReviewStore(db, { undoWindowSeconds: rc.undoWindowSeconds });
  const auth = createReviewAuth(db, rc, { logger });
  const fetcher = rc.photos.fetch
    ? createFetcher({ timeoutMs: config.fetch.timeoutMs, maxBytes: config.fetch.maxBytes, maxRedirects: config.fetch.maxRedirects, allowlist: [...config.fetch.allowlist], userAgent: 'wildlife-trade-review-console/0.1' })
    : null;
  const photos = createPhotoKeeper({ db, fetcher, concurrency: rc.photos.concurrency, maxAttempts: rc.photos.maxAttempts });
  photos.on('failed', (e) => logger.warn(e, 'could not keep a flagged photo'));
  store.on('ingested', ({ outcome }) => {
    if (outcome === 'added') photos.poke();
  });

  const feed = config.kafka.brokers.length
    ? createReviewFeed({
      brokers: config.kafka.brokers, logger, store, flaggedTopic: config.kafka.topics.review, decisionsTopic: rc.decisionsTopic, groupId: rc.groupId,
      dlqTopic: config.kafka.topics.dlq, createTopics: { partitions: config.kafka.partitions, replicationFactor: config.kafka.replicationFactor },
      publishIntervalMs: rc.publishIntervalMs, shutdownTimeoutMs: config.kafka.shutdownTimeoutMs,
    })
    : null;
  const metrics = createReviewMetrics(store, feed);
  const app = createReviewApp({ config: rc, db, store, auth, photos, metrics: rc.metricsPort === null ? metrics : null, feedReady: () => feed?.ready() ?? true, logger });

  const timers = [setInterval(() => photos.poke(), PHOTO_RETRY_MS), setInterval(() => auth.purgeExpired(), SESSION_PURGE_MS)];
  for (const t of timers) t.unref();

  const listen = (handler: express.Express, port: number) => new Promise<Server>((resolve, reject) => {
    const s = handler.listen(port, rc.host, () => resolve(s));
    s.once('error', reject);
  });
  let server: Server | null = null;
  let metricsServer: Server | null = null;
  try {
    server = await listen(app, rc.port);
    if (rc.metricsPort !== null) {
      // Prometheus reaches this port only, so a NetworkPolicy can keep it off the console's pages.
      const ops = express();
      ops.disable('x-powered-by');
      ops.get('/metrics', metricsHandler(metrics));
      metricsServer = await listen(ops, rc.metricsPort);
    }
  } catch (err) {
    server?.close();
    for (const t of timers) clearInterval(t);
    await photos.close();
    db.close();
    throw err;
  }
  photos.poke(); // items ingested by an earlier run whose photos are still missing

  // Analysts can work from the database while Kafka is unreachable, so the console listens first
  // and keeps (re)joining Kafka in the background, whether the first start failed or a running
  // consumer was given up by kafkajs later.
  let closed = false;
  let retry: NodeJS.Timeout | null = null;
  let delayMs = FEED_RETRY_MS;
  const attempt = () => {
    retry = null;
    if (closed || !feed) return;
    feed.start().then(() => {
      delayMs = FEED_RETRY_MS;
    }, () => undefined); // the 'failed' state below schedules the next attempt
  };
  feed?.on('state', ({ state }) => {
    if (state !== 'failed' || closed || retry) return;
    logger.error({ retryInMs: delayMs }, 'the Kafka feed is down; the console serves its database meanwhile');
    retry = setTimeout(attempt, delayMs);
    delayMs = Math.min(delayMs * 2, FEED_RETRY_MAX_MS);
  });
  attempt();

  const { port } = server.address() as AddressInfo;
  const host = rc.host.includes(':') ? `[${rc.host}]` : rc.host === '0.0.0.0' ? '127.0.0.1' : rc.host;

  let closing: Promise<void> | null = null;
  const close = () => (closing ??= (async () => {
    closed = true;
    if (retry) clearTimeout(retry);
    for (const t of timers) clearInterval(t);
    await Promise.all([server, metricsServer].map((s) => s && new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeIdleConnections();
    })));
    try {
      await feed?.stop();
    } finally {
      await photos.close();
      db.close();
    }
  })());
  const metricsUrl = metricsServer ? `http://${host}:${(metricsServer.address() as AddressInfo).port}/metrics` : `http://${host}:${port}/metrics`;
  return { url: `http://${host}:${port}`, metricsUrl, db, store, feed, close };
}
