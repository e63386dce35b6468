/**
 * The Kafka path: crawled-image messages in, decisions out. kafkajs lives in this folder only.
 *
 * Delivery is at-least-once: a chunk of messages is screened, every output of the chunk is produced
 * (idempotent producer, acks=all), and only then are the chunk's offsets resolved and committed. A
 * message that cannot be screened goes to the dead-letter topic with its reason, so it never blocks
 * its partition; transient failures are retried with backoff first.
 */
import { EventEmitter } from 'node:events';
import { Kafka, type Admin, type Consumer, type EachBatchPayload, type KafkaMessage, type Producer } from 'kafkajs';
import type { Logger } from 'pino';
import type { ServiceConfig } from '../../config.js';
import { deadLetterKey, deadLetterOf, decisionOf, encodeDecision, flaggedOf, parseCrawled, serializedBytes, type CrawledImage, type Omission } from '../../contracts/index.js';
import { isScreeningError, type ErrorCode } from '../../errors.js';
import type { ScreeningService, ScreenResult } from '../../screening/service.js';
import { createKafkaClient, durableConsumer, idempotentProducer, isRecordRefused, sendBounded, type OutgoingRecord } from './client.js';

export type KafkaSettings = ServiceConfig['kafka'];
export type PipelineState = 'starting' | 'running' | 'paused' | 'stopping' | 'stopped' | 'failed';
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

type Handled = { outputs: OutgoingRecord[]; outcome: Outcome; code?: string; crawlToDecisionMs?: number | null };

interface Failure { code: ErrorCode; reason: string; retriable: boolean; attempts: number }

/** Budgets for a dead letter that replaces records the broker refused: its limit is below ours, by how much is unknown. */
const REFUSED_DEAD_LETTER_BUDGETS = [64 * 1024, 16 * 1024];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

class Pipeline extends EventEmitter implements KafkaPipeline {
  private readonly kafka: Kafka;
  private readonly consumer: Consumer;
  private producer: Producer;
  private readonly admin: Admin;
  private current: PipelineState = 'stopped';
  private paused = false;
  private backpressureTimer: NodeJS.Timeout | null = null;
  private lagTimer: NodeJS.Timeout | null = null;

  constructor(private readonly service: ScreeningService, private readonly settings: KafkaSettings, private readonly logger: Logger) {
    super();
    const log = logger.child({ component: 'kafka' });
    this.kafka = createKafkaClient({ clientId: settings.clientId, brokers: settings.brokers, log });
    this.consumer = durableConsumer(this.kafka, settings.groupId);
    this.producer = this.newProducer();
    this.admin = this.kafka.admin();
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => {
      this.emit('clientError', { kind: 'consumer_crash', error: payload.error });
      // kafkajs restarts the consumer itself on retriable crashes; a non-restarting crash is fatal.
      if (!payload.restart) this.setState('failed');
    });
  }

  private newProducer(): Producer {
    const producer = idempotentProducer(this.kafka);
    producer.on(producer.events.REQUEST_TIMEOUT, () => this.emit('clientError', { kind: 'producer_timeout', error: new Error('producer request timeout') }));
    return producer;
  }

  state(): PipelineState {
    return this.current;
  }

  private setState(state: PipelineState): void {
    if (this.current === state) return;
    this.current = state;
    this.emit('state', { state });
  }

  async start(): Promise<void> {
    this.setState('starting');
    try {
      await this.connectAndRun();
    } catch (err) {
      // Leave nothing half-connected, so the caller can simply try again later.
      await Promise.allSettled([this.consumer.disconnect(), this.producer.disconnect(), this.admin.disconnect()]);
      this.setState('failed');
      throw err;
    }
  }

  private async connectAndRun(): Promise<void> {
    const t = this.settings.topics;
    await this.admin.connect();
    const existing = new Set(await this.admin.listTopics());
    const missing = [t.input, t.results, t.review, t.dlq].filter((name) => !existing.has(name));
    if (missing.length) {
      await this.admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((topic) => ({ topic, numPartitions: this.settings.partitions, replicationFactor: this.settings.replicationFactor })),
      });
      this.logger.info({ topics: missing }, 'created Kafka topics');
    }
    await this.producer.connect();
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: [t.input], fromBeginning: true });
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.settings.partitionsConsumedConcurrently,
      eachBatch: (payload) => this.eachBatch(payload),
    });
    this.backpressureTimer = setInterval(() => this.applyBackpressure(), 50);
    this.backpressureTimer.unref();
    this.lagTimer = setInterval(() => void this.measureLag(), this.settings.lagIntervalMs);
    this.lagTimer.unref();
    this.setState('running');
  }

  /** Pause the input while the bulk lane is above the high-water mark; resume below the low one. */
  private applyBackpressure(): void {
    if (this.current !== 'running' && this.current !== 'paused') return;
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

  private async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
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
   * Produces a chunk's outputs. When the broker refuses a record as too large or invalid (its limit
   * can be below kafka.maxRecordBytes, e.g. a topic's max.message.bytes), resending cannot help and
   * must not stop the partition: each message's outputs are sent on their own, and a message whose
   * records are refused is dead-lettered instead, with the broker's reason.
   */
  private async produce(handled: Handled[], chunk: KafkaMessage[], topic: string, partition: number): Promise<void> {
    const budget = this.settings.maxRecordBytes;
    try {
      await sendBounded(this.producer, handled.flatMap((h) => h.outputs), budget);
      return;
    } catch (err) {
      if (!isRecordRefused(err)) throw err;
      await this.renewProducer(err);
    }
    for (const [i, h] of handled.entries()) {
      let refusal: unknown;
      try {
        await sendBounded(this.producer, h.outputs, budget);
        continue;
      } catch (err) {
        if (!isRecordRefused(err)) throw err;
        refusal = err;
        await this.renewProducer(err);
      }
      const failure: Failure = { code: 'RECORD_TOO_LARGE', reason: `the broker refused an output record: ${(refusal as Error).message}`, retriable: false, attempts: 1 };
      for (const [n, maxBytes] of REFUSED_DEAD_LETTER_BUDGETS.entries()) {
        const letter = this.deadLetter(topic, partition, chunk[i]!, failure, maxBytes);
        try {
          await sendBounded(this.producer, letter.outputs, budget);
          handled[i] = letter;
          break;
        } catch (err) {
          // Even a small dead letter refused: the DLQ itself is misconfigured, which no message can fix.
          if (!isRecordRefused(err) || n === REFUSED_DEAD_LETTER_BUDGETS.length - 1) throw err;
          await this.renewProducer(err);
        }
      }
    }
  }

  /**
   * After a refused produce request, kafkajs's idempotent sequence numbers no longer match the
   * broker's (seen on Kafka 4.4: the next send fails with OUT_OF_ORDER_SEQUENCE_NUMBER and the
   * consumer dies), and reconnecting keeps them. A new producer gets a new producer id, and with it
   * fresh sequences; records sent twice are the at-least-once duplicates consumers already handle.
   */
  private async renewProducer(cause: unknown): Promise<void> {
    this.emit('clientError', { kind: 'record_refused', error: cause as Error });
    const old = this.producer;
    this.producer = this.newProducer();
    await old.disconnect().catch(() => undefined);
    await this.producer.connect();
  }

  private deadLetter(topic: string, partition: number, message: KafkaMessage, failure: Failure, maxBytes = this.settings.maxRecordBytes): Handled {
    const at = { topic, partition, offset: message.offset };
    const key = deadLetterKey(message.key, at);
    const letter = deadLetterOf({ ...failure, ...at, key: message.key, timestamp: message.timestamp, value: message.value }, maxBytes - serializedBytes(key));
    return { outcome: 'dead_lettered', code: failure.code, outputs: [{ topic: this.settings.topics.dlq, key, value: JSON.stringify(letter) }] };
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
        if (isScreeningError(err, 'SHUTTING_DOWN') || this.current === 'stopping') return null;
        const code = isScreeningError(err) ? err.code : 'INTERNAL';
        const retriable = isScreeningError(err) ? err.retriable : true;
        if (!retriable || attempt >= this.settings.maxAttempts) return dead({ code, reason: (err as Error).message, retriable, attempts: attempt });
        this.emit('message', { outcome: 'retried', code });
        await sleep(this.settings.retryBackoffMs * 2 ** (attempt - 1));
      }
    }
    // From here on nothing is retried: building records is deterministic and would fail again.
    const t = this.settings.topics;
    const decision = decisionOf(input, result, new Date());
    // An inline photo exists nowhere else: the flag carries it to the analysts' console.
    const records = [{ topic: t.results, decision }, ...(result.flagged ? [{ topic: t.review, decision: flaggedOf(decision, input.imageBase64) }] : [])];
    const outputs: OutgoingRecord[] = [];
    for (const record of records) {
      const encoded = encodeDecision(record.decision, this.settings.maxRecordBytes - serializedBytes(input.id));
      if (!encoded.ok) return dead({ code: encoded.code, reason: encoded.reason, retriable: false, attempts: 1 });
      if (encoded.omitted.length) this.emit('omitted', { inputId: input.id, topic: record.topic, omitted: encoded.omitted });
      outputs.push({ topic: record.topic, key: input.id, value: encoded.value });
    }
    return { outputs, outcome: result.flagged ? 'flagged' : 'screened', crawlToDecisionMs: decision.timings.crawlToDecisionMs };
  }

  async stop(): Promise<void> {
    if (this.current === 'stopped') return;
    this.setState('stopping');
    if (this.backpressureTimer) clearInterval(this.backpressureTimer);
    if (this.lagTimer) clearInterval(this.lagTimer);
    const work = (async () => {
      // consumer.stop() waits for the running eachBatch to finish (and commit) before returning.
      await this.consumer.stop();
      await this.consumer.disconnect();
      await this.producer.disconnect();
      await this.admin.disconnect();
    })();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Kafka shutdown exceeded ${this.settings.shutdownTimeoutMs} ms`)), this.settings.shutdownTimeoutMs);
    });
    try {
      await Promise.race([work, deadline]);
    } catch (err) {
      // Past the deadline: cut the connections rather than leave clients reconnecting forever.
      await Promise.allSettled([this.consumer.disconnect(), this.producer.disconnect(), this.admin.disconnect()]);
      throw err;
    } finally {
      clearTimeout(timer);
      this.setState('stopped');
    }
  }
}

export function createKafkaPipeline(service: ScreeningService, settings: KafkaSettings, logger: Logger): KafkaPipeline {
  return new Pipeline(service, settings, logger);
}
