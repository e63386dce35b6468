/**
 * The review console's Kafka side: flagged decisions (images.flagged/v1) in, analysts' decisions
 * (images.review-decisions/v1) out.
 *
 * In, at-least-once: each message is validated and ingested into SQLite, which is synchronous and
 * durable when ingest() returns; the partition's offset is committed after that, explicitly and in
 * batches. The store dedupes by decisionId, so a redelivery never makes a second item. Invalid
 * messages are logged, counted and, with a DLQ topic, dead-lettered; they never block the partition.
 * When ingest() throws (disk full, a broken database) the batch fails before that message's offset
 * is committed, so kafkajs fetches it again after a back-off; the error is reported as clientError.
 *
 * Out, a transactional outbox: the store writes each decision's message in the same transaction as
 * the item's new status. The publisher sends unpublished rows in order, acks=all, keyed by the
 * flagged decisionId (one item's decisions stay ordered on one partition), then stamps them. A crash
 * between send and stamp sends them again; consumers dedupe by reviewId. While Kafka cannot be
 * written, decisions wait in SQLite and the publisher tries again every publishIntervalMs.
 */
import type { Logger } from 'pino';
import type { OutboxEntry, ReviewStore } from './store.js';
import { consumeDurably, type EachBatchPayload } from '../kafka/client.js';
import { KafkaComponent, withinDeadline, type KafkaClients, type LifecycleState } from '../kafka/component.js';
import { parseFlagged } from '../contracts/index.js';

export interface ReviewFeedOptions {
  brokers: readonly string[];
  logger: Logger;
  store: Pick<ReviewStore, 'ingest' | 'unpublished' | 'markPublished' | 'on' | 'off'>;
  /** Where the screening pipeline writes flagged decisions (kafka.topics.review). */
  flaggedTopic: string;
  /** Where analysts' decisions go (review.decisionsTopic). */
  decisionsTopic: string;
  groupId: string;
  /** Default wildlife-review. */
  clientId?: string;
  /** Invalid flagged messages are also sent here (images.dlq/v1); null/undefined: only logged. */
  dlqTopic?: string | null;
  /** Create missing topics (flagged, decisions, DLQ); false leaves topics to the operator. */
  createTopics?: { partitions: number; replicationFactor: number } | false;
  /** Retry unpublished decisions this often (a decision also triggers a publish at once). */
  publishIntervalMs: number;
  /** Outbox rows read per round. Default 100. */
  publishBatch?: number;
  /** Stop: finish the batch in hand, commit, publish once more, disconnect — within this. Default 30 000. */
  shutdownTimeoutMs?: number;
}

export type ReviewFeedState = LifecycleState;

export interface ReviewFeedEvents {
  ingested: { outcome: 'added' | 'duplicate'; itemId: number; decisionId: string; topic: string; partition: number; offset: string };
  invalid: { topic: string; partition: number; offset: string; reason: string };
  published: { count: number };
  publishFailed: { error: Error };
  clientError: { kind: string; error: Error };
  state: { state: ReviewFeedState };
}

export interface ReviewFeedStats {
  /** New items. */
  ingested: number;
  /** Redelivered flagged decisions the store already held. */
  duplicates: number;
  invalid: number;
  deadLettered: number;
  /** Decisions put on the decisions topic (a re-send after a crash counts again). */
  published: number;
  publishFailures: number;
}

export interface ReviewFeed {
  start(): Promise<void>;
  /** Stops fetching, commits what is stored, publishes once more (best effort), disconnects. */
  stop(): Promise<void>;
  state(): ReviewFeedState;
  stats(): ReviewFeedStats;
  /**
   * Sends the outbox now, after any publish in flight; resolves with how many decisions went out.
   * Rejects when a send fails (the decisions stay in the outbox) or the feed is not connected.
   */
  publishNow(): Promise<number>;
  /** The consumer is in its group and the producer connected. */
  ready(): boolean;
  on<K extends keyof ReviewFeedEvents>(event: K, listener: (e: ReviewFeedEvents[K]) => void): this;
  off<K extends keyof ReviewFeedEvents>(event: K, listener: (e: ReviewFeedEvents[K]) => void): this;
}

/** Commit at least this often within one fetched batch. */
const COMMIT_EVERY_MESSAGES = 50;
/** One produce request stays under the broker's default 1 MiB limit, however long the notes are. */
const MAX_REQUEST_BYTES = 768 * 1024;

class Feed extends KafkaComponent implements ReviewFeed {
  private readonly counters: ReviewFeedStats = { ingested: 0, duplicates: 0, invalid: 0, deadLettered: 0, published: 0, publishFailures: 0 };
  /** In its group: what ready() reports, with the producer's connection. */
  private consumerUp = false;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<number> | null = null;
  private queued: Promise<number> | null = null;
  private readonly onDecided = () => void this.publishNow().catch(() => undefined);

  constructor(private readonly options: ReviewFeedOptions) {
    const { flaggedTopic, decisionsTopic, dlqTopic, createTopics } = options;
    const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 30_000;
    super({
      clientId: options.clientId ?? 'wildlife-review', brokers: options.brokers, groupId: options.groupId, log: options.logger.child({ component: 'review-feed' }),
      subscribe: [flaggedTopic], producer: true,
      createTopics: createTopics ? { topics: [flaggedTopic, decisionsTopic, dlqTopic], ...createTopics } : null,
      shutdownTimeoutMs, shutdownTimeoutMessage: 'stopping the review feed consumer exceeded the shutdown deadline',
    });
  }

  protected override onClients({ consumer }: Partial<KafkaClients>): void {
    if (!consumer) return;
    const { GROUP_JOIN, STOP, CRASH } = consumer.events;
    // A stopped run's consumer may still be finishing its batch: only the current one counts.
    consumer.on(GROUP_JOIN, () => { if (consumer === this.consumer) this.consumerUp = true; });
    for (const event of [STOP, CRASH]) consumer.on(event, () => { if (consumer === this.consumer) this.consumerUp = false; });
  }

  stats(): ReviewFeedStats {
    return { ...this.counters };
  }

  ready(): boolean {
    return this.state() === 'running' && this.consumerUp && this.connectedClients().includes('producer');
  }

  protected override onRunning(): void {
    this.consumerUp = true;
    this.options.store.on('decided', this.onDecided);
    this.timer = setInterval(() => {
      // An empty outbox costs one indexed query; a publish in flight (a slow or absent broker) is not doubled.
      if (!this.inFlight) void this.publishNow().catch(() => undefined);
    }, this.options.publishIntervalMs);
    this.timer.unref();
    // Decisions taken while the feed was down (or Kafka unreachable) go out first.
    void this.publishNow().catch(() => undefined);
  }

  protected override onHalt(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.options.store.off('decided', this.onDecided);
  }

  /**
   * Decisions taken just before shutdown need not wait for the next start. Best effort: what is not
   * sent waits in SQLite, so running out of time here is not a failed shutdown.
   */
  protected override async beforeDisconnect(deadline: number): Promise<void> {
    await withinDeadline(deadline, this.publishNow(), 'the final publish exceeded the shutdown deadline').catch((err: Error) => {
      this.log.warn({ err }, 'the final publish did not complete; the decisions wait in the outbox for the next start');
    });
  }

  protected override eachBatch(payload: EachBatchPayload): Promise<void> {
    return consumeDurably(payload, {
      consumer: this.consumer,
      deadLetters: this.options.dlqTopic ? { producer: this.producer!, topic: this.options.dlqTopic } : null,
      parse: parseFlagged,
      commitEvery: COMMIT_EVERY_MESSAGES,
      keep: (message, at) => {
        let result: ReturnType<ReviewFeedOptions['store']['ingest']>;
        try {
          result = this.options.store.ingest(message, at);
        } catch (error) {
          // Thrown on to kafkajs: this offset stays uncommitted, so it is fetched again after the
          // consumer's back-off instead of being skipped.
          this.log.error({ err: error, ...at, decisionId: message.decisionId }, 'storing a flagged decision failed; it will be read again');
          this.emit('clientError', { kind: 'ingest', error: error as Error });
          throw error;
        }
        if (result.outcome === 'added') this.counters.ingested++;
        else this.counters.duplicates++;
        this.emit('ingested', { outcome: result.outcome, itemId: result.itemId, decisionId: message.decisionId, ...at });
      },
      deadLettered: (count) => {
        this.counters.deadLettered += count;
      },
      skip: ({ reason, deadLettered: _queued, ...at }) => {
        this.counters.invalid++;
        this.log.warn({ ...at, reason }, 'invalid flagged decision skipped');
        this.emit('invalid', { ...at, reason });
      },
    });
  }

  publishNow(): Promise<number> {
    if (!this.inFlight) {
      this.inFlight = this.drain().finally(() => { this.inFlight = null; });
      return this.inFlight;
    }
    // Coalesced: however many decisions arrive meanwhile, one more round follows the one in flight
    // (which may have read the outbox before they were written).
    this.queued ??= this.inFlight.catch(() => 0).then(() => {
      this.queued = null;
      return this.publishNow();
    });
    return this.queued;
  }

  private async drain(): Promise<number> {
    if (!this.connectedClients().includes('producer')) throw new Error('the review feed is not connected to Kafka');
    const limit = this.options.publishBatch ?? 100;
    let total = 0;
    for (;;) {
      const entries = this.options.store.unpublished(limit);
      for (const chunk of chunksOf(entries)) {
        try {
          await this.producer!.send({
            topic: this.options.decisionsTopic,
            acks: -1,
            messages: chunk.map((e) => ({ key: e.decisionId, value: e.message, headers: { 'review-id': e.reviewId } })),
          });
          this.options.store.markPublished(chunk.map((e) => e.id));
        } catch (err) {
          const error = err as Error;
          this.counters.publishFailures++;
          this.log.warn({ err: error, decisions: chunk.length }, 'publishing review decisions failed; they stay in the outbox and are retried');
          this.emit('publishFailed', { error });
          throw error;
        }
        total += chunk.length;
        this.counters.published += chunk.length;
        this.emit('published', { count: chunk.length });
      }
      if (entries.length < limit) return total;
    }
  }
}

/** Consecutive entries whose messages fit one produce request (an oversized one goes alone). */
function chunksOf(entries: readonly OutboxEntry[]): OutboxEntry[][] {
  const chunks: OutboxEntry[][] = [];
  let bytes = 0;
  for (const entry of entries) {
    const size = Buffer.byteLength(entry.message) + entry.decisionId.length + entry.reviewId.length + 16;
    const last = chunks.at(-1);
    if (last && bytes + size <= MAX_REQUEST_BYTES) {
      last.push(entry);
      bytes += size;
    } else {
      chunks.push([entry]);
      bytes = size;
    }
  }
  return chunks;
}

export function createReviewFeed(options: ReviewFeedOptions): ReviewFeed {
  return new Feed(options);
}
