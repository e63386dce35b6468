/**
 * Analysts' review decisions (images.review-decisions/v1) from Kafka into a labeled set.
 *
 * At-least-once: each message is validated and handed to the sink, whose append() resolves only once
 * the decision is durable (fsynced); the partition's offset is committed after that, explicitly.
 * A crash between the two redelivers decisions the sink already holds — it dedupes them (same
 * reviewId). Invalid messages are logged with their reason, counted and, with a DLQ topic, dead-
 * lettered (acknowledged before their offset is committed); they never block the partition.
 * The sink is compiled every `compileEvery` new decisions, every `compileIntervalMs` while new
 * ones arrived, at start and on stop.
 */
import type { Logger } from 'pino';
import { consumeDurably, type EachBatchPayload } from '../kafka/client.js';
import { KafkaComponent, type LifecycleState } from '../kafka/component.js';
import { parseReviewDecision, REVIEW_DECISIONS_TOPIC, type ReviewDecision } from '../contracts/index.js';

export const DEFAULT_LABELS_GROUP_ID = 'wildlife-labels';

/** What the consumer writes to: the training side's labeled set (src/training/labeled-set.ts) fits. */
export interface DecisionSink {
  /** Must resolve only when the decision is durable: the offset is committed right after. */
  append(decision: ReviewDecision, meta: { topic: string; partition: number; offset: string; receivedAt: Date }): Promise<{ duplicate: boolean } | unknown>;
  compile(): Promise<unknown>;
}

export interface ReviewDecisionConsumerOptions {
  brokers: readonly string[];
  sink: DecisionSink;
  logger: Logger;
  /** Default images.review-decisions. */
  topic?: string;
  /** Default wildlife-labels. */
  groupId?: string;
  clientId?: string;
  /** Invalid messages are also sent here (images.dlq/v1 dead letters); null/undefined: only logged. */
  dlqTopic?: string | null;
  /** Compile after this many appended decisions (duplicates included). Default 100. */
  compileEvery?: number;
  /** …and at least this often while new decisions arrived. Default 60 000. */
  compileIntervalMs?: number;
  /** Create the topic (and the DLQ topic) if missing; false leaves topics to the operator. */
  createTopics?: { partitions: number; replicationFactor: number } | false;
  /** Stop: finish the message in hand, commit, disconnect — within this. Default 30 000. */
  shutdownTimeoutMs?: number;
}

export type ReviewConsumerState = LifecycleState;

export interface ReviewConsumerEvents {
  appended: { topic: string; partition: number; offset: string; decisionId: string; duplicate: boolean };
  invalid: { topic: string; partition: number; offset: string; reason: string };
  compiled: { report: unknown };
  clientError: { kind: string; error: Error };
  state: { state: ReviewConsumerState };
}

export interface ReviewConsumerStats {
  appended: number;
  duplicates: number;
  invalid: number;
  deadLettered: number;
  compiles: number;
}

export interface ReviewDecisionConsumer {
  start(): Promise<void>;
  /** Stops fetching, commits what is durable, disconnects, then compiles once more. */
  stop(): Promise<void>;
  state(): ReviewConsumerState;
  stats(): ReviewConsumerStats;
  /** Compiles now (after any compile in progress); resolves with the sink's report. */
  compile(): Promise<unknown>;
  on<K extends keyof ReviewConsumerEvents>(event: K, listener: (e: ReviewConsumerEvents[K]) => void): void;
}

/** Commit at least this often within one fetched batch. */
const COMMIT_EVERY_MESSAGES = 50;

class ReviewConsumer extends KafkaComponent implements ReviewDecisionConsumer {
  private readonly counters: ReviewConsumerStats = { appended: 0, duplicates: 0, invalid: 0, deadLettered: 0, compiles: 0 };
  private sinceCompile = 0;
  private compiling: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: ReviewDecisionConsumerOptions) {
    const topic = options.topic ?? REVIEW_DECISIONS_TOPIC;
    const limit = options.shutdownTimeoutMs ?? 30_000;
    super({
      clientId: options.clientId ?? 'wildlife-labels', brokers: options.brokers, groupId: options.groupId ?? DEFAULT_LABELS_GROUP_ID,
      log: options.logger.child({ component: 'review-decisions' }),
      // Only dead letters are written: without a DLQ topic, no producer.
      subscribe: [topic], producer: !!options.dlqTopic,
      createTopics: options.createTopics ? { topics: [topic, options.dlqTopic], ...options.createTopics } : null,
      shutdownTimeoutMs: limit, shutdownTimeoutMessage: `review-decision consumer shutdown exceeded ${limit} ms`,
    });
  }

  stats(): ReviewConsumerStats {
    return { ...this.counters };
  }

  /** The labeled set is compiled before joining, so a start reports what is already on disk. */
  protected override async beforeConnect(): Promise<void> {
    await this.compile();
  }

  protected override onRunning(): void {
    this.timer = setInterval(() => {
      if (this.sinceCompile > 0) void this.compile().catch(() => undefined);
    }, this.options.compileIntervalMs ?? 60_000);
    this.timer.unref();
  }

  protected override onHalt(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Whatever happened to the connections, what is on disk gets compiled. */
  protected override async afterStop(): Promise<void> {
    await this.compile().catch(() => undefined);
  }

  compile(): Promise<unknown> {
    this.sinceCompile = 0;
    const run = this.compiling.then(async () => {
      try {
        const report = await this.options.sink.compile();
        this.counters.compiles++;
        this.emit('compiled', { report });
        return report;
      } catch (error) {
        this.log.error({ err: error }, 'compiling the labeled set failed');
        this.emit('clientError', { kind: 'compile', error: error as Error });
        throw error;
      }
    });
    this.compiling = run.catch(() => undefined);
    return run;
  }

  protected override eachBatch(payload: EachBatchPayload): Promise<void> {
    return consumeDurably(payload, {
      consumer: this.consumer,
      deadLetters: this.producer && this.options.dlqTopic ? { producer: this.producer, topic: this.options.dlqTopic } : null,
      parse: parseReviewDecision,
      commitEvery: COMMIT_EVERY_MESSAGES,
      keep: async (decision, at) => {
        const result = await this.options.sink.append(decision, { ...at, receivedAt: new Date() });
        const duplicate = !!(result && typeof result === 'object' && (result as { duplicate?: unknown }).duplicate === true);
        this.counters.appended++;
        if (duplicate) this.counters.duplicates++;
        this.sinceCompile++; // a duplicate changes the report's counts too
        this.emit('appended', { ...at, decisionId: decision.decisionId, duplicate });
        if (this.sinceCompile >= (this.options.compileEvery ?? 100)) void this.compile().catch(() => undefined);
      },
      deadLettered: (count) => {
        this.counters.deadLettered += count;
      },
      skip: ({ reason, deadLettered: _queued, ...at }) => {
        this.counters.invalid++;
        this.log.warn({ ...at, reason }, 'invalid review decision skipped');
        this.emit('invalid', { ...at, reason });
      },
    });
  }
}

export function createReviewDecisionConsumer(options: ReviewDecisionConsumerOptions): ReviewDecisionConsumer {
  return new ReviewConsumer(options);
}
