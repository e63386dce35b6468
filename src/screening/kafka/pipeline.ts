/**
 * The Kafka path: crawled-image messages in, decisions out. Starting, stopping and failing are the
 * shared lifecycle's (src/kafka/component.ts).
 *
 * Delivery is at-least-once: a chunk of messages is screened, every output of the chunk is produced
 * (idempotent producer, acks=all), and only then are the chunk's offsets resolved and committed. A
 * message that cannot be screened goes to the dead-letter topic with its reason, so it never blocks
 * its partition; transient failures are retried with backoff first.
 */
import type { Logger } from 'pino';
import type { AppConfig } from '../../config.js';
import { deadLetterKey, deadLetterOf, decisionOf, encodeDecision, flaggedOf, parseCrawled, serializedBytes, type CrawledImage, type DecisionRecord, type Omission } from '../../contracts/index.js';
import { isAppError, type ErrorCode } from '../../errors.js';
import type { ScreeningService, ScreenResult } from '../service.js';
import { isRecordRefused, sendBounded, type EachBatchPayload, type KafkaMessage, type OutgoingRecord } from '../../kafka/client.js';
import { KafkaComponent, type KafkaClients, type LifecycleState } from '../../kafka/component.js';

export type KafkaSettings = AppConfig['kafka'];
export type PipelineState = LifecycleState | 'paused';
export type Outcome = 'screened' | 'flagged' | 'dead_lettered' | 'retried';

export interface KafkaEvents {
  message: { outcome: Outcome; code?: string };
  decision: { crawlToDecisionMs: number | null };
  lag: { topic: string; partition: number; lag: number };
  /** A pass-through field left out of an output record to keep it under kafka.maxRecordBytes. */
  omitted: { inputId: string; topic: string; omitted: Omission[] };
  clientError: { kind: string; error: Error };
  state: { state: PipelineState };
}

export interface KafkaPipeline {
  start(): Promise<void>;
  /** Stop fetching, finish and commit what is in flight, disconnect — within shutdownTimeoutMs. */
  stop(): Promise<void>;
  state(): PipelineState;
  on<K extends keyof KafkaEvents>(event: K, listener: (e: KafkaEvents[K]) => void): void;
}

interface Failure { code: ErrorCode; reason: string; retriable: boolean; attempts: number }

interface Handled {
  outputs: OutgoingRecord[];
  outcome: Outcome;
  code?: string;
  crawlToDecisionMs?: number | null;
  /** A dead letter's failure, kept so a smaller copy can say the same thing. */
  failure?: Failure;
  /** The same outputs encoded within a smaller budget, or a failure when they cannot be. */
  shrink?(maxBytes: number): OutgoingRecord[] | Failure;
}

/**
 * Budgets to fall back on when the broker refuses a record that fits kafka.maxRecordBytes (its
 * limit is lower, by how much is unknown): decisions first try the larger without their
 * pass-through fields, dead letters with less of the original.
 */
const REFUSAL_BUDGETS = [64 * 1024, 16 * 1024];

/**
 * An error that did not come from Kafka (a TypeError inside the client, say) tells nothing about
 * the messages: marked retriable, kafkajs restarts the consumer and redelivers instead of leaving
 * every partition stopped for good.
 */
function restartable(err: unknown): unknown {
  let origin = err as { name?: string; cause?: unknown } | undefined;
  while (origin?.cause) origin = origin.cause as typeof origin;
  if (!origin || String(origin.name).startsWith('KafkaJS')) return err;
  return Object.assign(new Error(`pipeline batch failed: ${(err as Error).message}`), { name: 'PipelineBatchError', retriable: true, original: err });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The decisions one screened message becomes, in the order they are produced: the decision for the
 * results topic and, when flagged, the flag for the review topic. Exported so the console's tests
 * build their flags with this assembly rather than a copy of it.
 */
export function decisionsOf(input: CrawledImage, result: ScreenResult, topics: Pick<KafkaSettings['topics'], 'results' | 'review'>, decidedAt: Date): Array<{ topic: string; decision: DecisionRecord }> {
  const decision = decisionOf(input, result, decidedAt);
  // An inline photo exists nowhere else: the flag carries it to the analysts' console.
  return [{ topic: topics.results, decision }, ...(result.flagged ? [{ topic: topics.review, decision: flaggedOf(decision, input.imageBase64) }] : [])];
}

class Pipeline extends KafkaComponent<'paused'> implements KafkaPipeline {
  /** The chunk being produced; the next waits for it (see produce()). */
  private producing: Promise<void> = Promise.resolve();
  private paused = false;
  private backpressureTimer: NodeJS.Timeout | null = null;
  private lagTimer: NodeJS.Timeout | null = null;

  constructor(private readonly service: ScreeningService, private readonly settings: KafkaSettings, logger: Logger) {
    const t = settings.topics;
    super({
      clientId: settings.clientId, brokers: settings.brokers, groupId: settings.groupId, log: logger.child({ component: 'kafka' }),
      subscribe: [t.input], producer: true, partitionsConsumedConcurrently: settings.partitionsConsumedConcurrently,
      createTopics: { topics: [t.input, t.results, t.review, t.dlq], partitions: settings.partitions, replicationFactor: settings.replicationFactor },
      shutdownTimeoutMs: settings.shutdownTimeoutMs, shutdownTimeoutMessage: `Kafka shutdown exceeded ${settings.shutdownTimeoutMs} ms`,
    });
  }

  protected override onClients({ producer }: Partial<KafkaClients>): void {
    producer?.on(producer.events.REQUEST_TIMEOUT, () => this.emit('clientError', { kind: 'producer_timeout', error: new Error('producer request timeout') }));
  }

  protected override onRunning(): void {
    this.paused = false; // every run's consumer is new, and fetches until paused
    this.backpressureTimer = setInterval(() => this.applyBackpressure(), 50);
    this.backpressureTimer.unref();
    this.lagTimer = setInterval(() => void this.measureLag(), this.settings.lagIntervalMs);
    this.lagTimer.unref();
  }

  protected override onHalt(): void {
    if (this.backpressureTimer) clearInterval(this.backpressureTimer);
    if (this.lagTimer) clearInterval(this.lagTimer);
  }

  /** Pause the input while the bulk lane is above the high-water mark; resume below the low one. */
  private applyBackpressure(): void {
    if (this.state() !== 'running' && this.state() !== 'paused') return;
    const depth = this.service.queueDepth().bulk;
    const topics = [{ topic: this.settings.topics.input }];
    if (!this.paused && depth >= this.settings.highWater) {
      this.paused = true;
      this.consumer.pause(topics);
      this.setState('paused');
    } else if (this.paused && depth <= this.settings.lowWater) {
      this.paused = false;
      this.consumer.resume(topics);
      this.setState('running');
    }
  }

  private async measureLag(): Promise<void> {
    try {
      const topic = this.settings.topics.input;
      const [ends, committed] = await Promise.all([
        this.admin.fetchTopicOffsets(topic),
        this.admin.fetchOffsets({ groupId: this.settings.groupId, topics: [topic] }),
      ]);
      const done = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
      for (const p of ends) {
        const end = Number(p.high);
        const at = done.get(p.partition) ?? -1;
        const start = Number(p.low);
        this.emit('lag', { topic, partition: p.partition, lag: Math.max(0, end - (at >= 0 ? at : start)) });
      }
    } catch (error) {
      this.emit('clientError', { kind: 'lag', error: error as Error });
    }
  }

  protected override async eachBatch(payload: EachBatchPayload): Promise<void> {
    try {
      await this.consumeBatch(payload);
    } catch (err) {
      throw restartable(err);
    }
  }

  private async consumeBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const size = this.settings.concurrency;
    for (let i = 0; i < batch.messages.length; i += size) {
      // Paused or rebalanced: leave the rest unresolved; it is fetched again later.
      if (!isRunning() || isStale() || this.paused) return;
      const chunk = batch.messages.slice(i, i + size);
      const handled = await Promise.all(chunk.map((m) => this.handle(batch.topic, batch.partition, m)));
      if (handled.some((h) => h === null)) return; // shutting down mid-chunk: nothing of it is committed
      const done = handled as Handled[];
      await this.produce(done, chunk, batch.topic, batch.partition);
      for (const h of done) {
        this.emit('message', { outcome: h.outcome, code: h.code });
        if (h.crawlToDecisionMs !== undefined) this.emit('decision', { crawlToDecisionMs: h.crawlToDecisionMs });
      }
      const last = chunk[chunk.length - 1]!.offset;
      resolveOffset(last);
      // With autoCommit off, kafkajs commits nothing by itself: commit the chunk now that its
      // outputs are acknowledged (the committed offset is the next one to read).
      await this.consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: (BigInt(last) + 1n).toString() }]);
      await heartbeat();
    }
  }

  /**
   * Produces a chunk's outputs, one chunk at a time across partitions: kafkajs's idempotent
   * producer must not be replaced (below) while another partition is sending through it.
   */
  private produce(handled: Handled[], chunk: KafkaMessage[], topic: string, partition: number): Promise<void> {
    const run = this.producing.then(() => this.produceChunk(handled, chunk, topic, partition));
    this.producing = run.catch(() => undefined);
    return run;
  }

  /**
   * When the broker refuses a record as too large or invalid (its limit can be below
   * kafka.maxRecordBytes, e.g. a topic's max.message.bytes), resending cannot help and must not
   * stop the partition: each message's outputs are sent on their own, then smaller (a decision
   * without its pass-through fields, a dead letter with less of the original), and a decision that
   * still does not fit is dead-lettered with the broker's reason.
   */
  private async produceChunk(handled: Handled[], chunk: KafkaMessage[], topic: string, partition: number): Promise<void> {
    if (!(await this.trySend(handled.flatMap((h) => h.outputs)))) return;
    for (const [i, h] of handled.entries()) {
      const refusal = await this.trySend(h.outputs);
      if (refusal) handled[i] = await this.sendSmaller(h, refusal, chunk[i]!, topic, partition);
    }
  }

  private async sendSmaller(h: Handled, refusal: Error, message: KafkaMessage, topic: string, partition: number): Promise<Handled> {
    if (!h.failure && h.shrink) {
      for (const maxBytes of REFUSAL_BUDGETS) {
        const smaller = h.shrink(maxBytes);
        if (!Array.isArray(smaller)) break;
        if (!(await this.trySend(smaller))) return { ...h, outputs: smaller };
      }
    }
    const failure = h.failure ?? { code: 'RECORD_TOO_LARGE', reason: `the broker refused an output record (${refusal.message}), also within ${REFUSAL_BUDGETS.at(-1)} bytes without its pass-through fields`, retriable: false, attempts: 1 };
    for (const maxBytes of REFUSAL_BUDGETS) {
      const letter = this.deadLetter(topic, partition, message, failure, maxBytes);
      if (!(await this.trySend(letter.outputs))) return letter;
    }
    // Even a small dead letter refused: the DLQ topic itself is misconfigured, which no message can fix.
    throw new Error(`the broker refused a ${REFUSAL_BUDGETS.at(-1)}-byte dead letter for ${topic}/${partition}@${message.offset}; check max.message.bytes of ${this.settings.topics.dlq}`);
  }

  /** Sends records: null when sent, the broker's refusal when it refused one for what it is (the producer is renewed then). */
  private async trySend(records: OutgoingRecord[]): Promise<Error | null> {
    try {
      await sendBounded(this.producer!, records, this.settings.maxRecordBytes);
      return null;
    } catch (err) {
      if (!isRecordRefused(err)) throw err;
      await this.renewProducer(err);
      return err as Error;
    }
  }

  /**
   * After a refused produce request, kafkajs's idempotent sequence numbers no longer match the
   * broker's (seen on Kafka 4.4: the next send fails with OUT_OF_ORDER_SEQUENCE_NUMBER and the
   * consumer dies), and reconnecting keeps them. A new producer gets a new producer id, and with it
   * fresh sequences; records sent twice are the at-least-once duplicates consumers already handle.
   * Only called from within produce(), so no other send is using the old producer.
   */
  private async renewProducer(cause: unknown): Promise<void> {
    this.emit('clientError', { kind: 'record_refused', error: cause as Error });
    await this.replaceProducer();
  }

  private deadLetter(topic: string, partition: number, message: KafkaMessage, failure: Failure, maxBytes = this.settings.maxRecordBytes): Handled {
    const at = { topic, partition, offset: message.offset };
    const key = deadLetterKey(message.key, at);
    const letter = deadLetterOf({ ...failure, ...at, key: message.key, timestamp: message.timestamp, value: message.value }, maxBytes - serializedBytes(key));
    return { outcome: 'dead_lettered', code: failure.code, failure, outputs: [{ topic: this.settings.topics.dlq, key, value: JSON.stringify(letter) }] };
  }

  /** Screens one message into its outputs; null means "shutting down, redeliver later". */
  private async handle(topic: string, partition: number, message: KafkaMessage): Promise<Handled | null> {
    const dead = (failure: Failure) => this.deadLetter(topic, partition, message, failure);
    const parsed = parseCrawled(message.value);
    if (!parsed.ok) return dead({ code: 'MESSAGE_INVALID', reason: parsed.reason, retriable: false, attempts: 1 });
    const input: CrawledImage = parsed.message;
    let result: ScreenResult;
    for (let attempt = 1; ; attempt++) {
      try {
        const bytes = input.imageBase64 !== undefined ? Buffer.from(input.imageBase64, 'base64') : undefined;
        result = await this.service.screen({
          bytes, url: bytes ? undefined : input.url, source: 'kafka', lane: 'bulk',
          // Kept with the photo if it is sampled into the unlabeled pool (SSLD).
          meta: { listingId: input.id, platform: input.listing.platform, ...(input.url ? { imageUrl: input.url } : {}) },
        });
        break;
      } catch (err) {
        if (isAppError(err, 'SHUTTING_DOWN') || this.state() === 'stopping') return null;
        const code = isAppError(err) ? err.code : 'INTERNAL';
        const retriable = isAppError(err) ? err.retriable : true;
        if (!retriable || attempt >= this.settings.maxAttempts) return dead({ code, reason: (err as Error).message, retriable, attempts: attempt });
        this.emit('message', { outcome: 'retried', code });
        await sleep(this.settings.retryBackoffMs * 2 ** (attempt - 1));
      }
    }
    // From here on nothing is retried: building records is deterministic and would fail again.
    const records = decisionsOf(input, result, this.settings.topics, new Date());
    const encode = (maxBytes: number): OutgoingRecord[] | Failure => {
      const outputs: OutgoingRecord[] = [];
      for (const record of records) {
        const encoded = encodeDecision(record.decision, maxBytes - serializedBytes(input.id));
        if (!encoded.ok) return { code: encoded.code, reason: encoded.reason, retriable: false, attempts: 1 };
        if (encoded.omitted.length) this.emit('omitted', { inputId: input.id, topic: record.topic, omitted: encoded.omitted });
        outputs.push({ topic: record.topic, key: input.id, value: encoded.value });
      }
      return outputs;
    };
    const outputs = encode(this.settings.maxRecordBytes);
    if (!Array.isArray(outputs)) return dead(outputs);
    return { outputs, shrink: encode, outcome: result.flagged ? 'flagged' : 'screened', crawlToDecisionMs: records[0]!.decision.timings.crawlToDecisionMs };
  }
}

export function createKafkaPipeline(service: ScreeningService, settings: KafkaSettings, logger: Logger): KafkaPipeline {
  return new Pipeline(service, settings, logger);
}
