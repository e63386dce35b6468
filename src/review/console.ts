/**
 * Assembles the review console: database, store, sign-in, photos, the Kafka feed (when brokers are
 * configured), metrics and the HTTP app. `npm run review` and the end-to-end tests both start it here.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { ServiceConfig } from '../config.js';
import { createReviewMetrics } from '../metrics.js';
import { createFetcher } from '../transport/fetcher.js';
import { createReviewFeed, type ReviewFeed } from '../transport/kafka/review-feed.js';
import { createReviewApp } from './app.js';
import { createReviewAuth } from './auth.js';
import { openReviewDb, type ReviewDb } from './db.js';
import { createPhotoKeeper } from './photos.js';
import { createReviewStore, type ReviewStore } from './store.js';

export interface ReviewConsole {
  url: string;
  db: ReviewDb;
  store: ReviewStore;
  feed: ReviewFeed | null;
  /** Settles once the feed has joined Kafka (at once without Kafka, or on close). */
  feedStarted: Promise<void>;
  /** Stops taking requests, stops the feed (committing and publishing what it can), closes the database. */
  close(): Promise<void>;
}

/** Photos that failed are retried this often (and whenever new items arrive). */
const PHOTO_RETRY_MS = 60_000;
const SESSION_PURGE_MS = 3_600_000;
const FEED_RETRY_MS = 5_000;
const FEED_RETRY_MAX_MS = 60_000;

export async function startReviewConsole(config: Readonly<ServiceConfig>, options: { logger: Logger }): Promise<ReviewConsole> {
  const { logger } = options;
  const rc = config.review;
  const db = openReviewDb(rc.database);
  const store = createReviewStore(db, { undoWindowSeconds: rc.undoWindowSeconds });
  const auth = createReviewAuth(db, rc);
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
  const app = createReviewApp({ config: rc, db, store, auth, photos, metrics, feedReady: () => feed?.ready() ?? true, logger });

  const timers = [setInterval(() => photos.poke(), PHOTO_RETRY_MS), setInterval(() => auth.purgeExpired(), SESSION_PURGE_MS)];
  for (const t of timers) t.unref();

  let server: Server;
  try {
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(rc.port, rc.host, () => resolve(s));
      s.once('error', reject);
    });
  } catch (err) {
    for (const t of timers) clearInterval(t);
    await photos.close();
    db.close();
    throw err;
  }
  photos.poke(); // items ingested by an earlier run whose photos are still missing

  // Analysts can work from the database while Kafka is unreachable, so the console listens first
  // and keeps trying to join Kafka in the background.
  let closed = false;
  let retry: NodeJS.Timeout | null = null;
  const feedStarted = feed
    ? new Promise<void>((resolve) => {
      const attempt = (delayMs: number) => {
        if (closed) return resolve();
        feed.start().then(resolve, (err: Error) => {
          logger.error({ err, retryInMs: delayMs }, 'could not join Kafka; the console serves its database meanwhile');
          retry = setTimeout(() => attempt(Math.min(delayMs * 2, FEED_RETRY_MAX_MS)), delayMs);
        });
      };
      attempt(FEED_RETRY_MS);
    })
    : Promise.resolve();
  const { port } = server.address() as AddressInfo;
  const host = rc.host.includes(':') ? `[${rc.host}]` : rc.host === '0.0.0.0' ? '127.0.0.1' : rc.host;

  let closing: Promise<void> | null = null;
  const close = () => (closing ??= (async () => {
    closed = true;
    if (retry) clearTimeout(retry);
    for (const t of timers) clearInterval(t);
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
    try {
      await feed?.stop();
    } finally {
      await photos.close();
      db.close();
    }
  })());
  return { url: `http://${host}:${port}`, db, store, feed, feedStarted, close };
}
