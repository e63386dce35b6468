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
import { isScreeningError } from '../../errors.js';
import type { ScreeningService } from '../../screening/service.js';
import { createKafkaClient, durableConsumer, idempotentProducer } from './client.js';
import { deadLetterOf, decisionOf, FLAGGED_SCHEMA, MAX_FLAGGED_INLINE_BASE64, parseCrawled, type CrawledImage } from './messages.js';

export type KafkaSettings = ServiceConfig['kafka'];
export type PipelineState = 'starting' | 'running' | 'paused' | 'stopping' | 'stopped' | 'failed';
export type Outcome = 'screened' | 'flagged' | 'dead_lettered' | 'retried';

export interface KafkaEvents {
  message: { outcome: Outcome; code?: string };
  decision: { crawlToDecisionMs: number | null };
  lag: { topic: string; partition: number; lag: number };
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

interface Output { topic: string; key: string; value: string }

type Handled = { outputs: Output[]; outcome: Outcome; code?: string; crawlToDecisionMs?: number | null };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

class Pipeline extends EventEmitter implements KafkaPipeline {
  private readonly kafka: Kafka;
  private readonly consumer: Consumer;
  private readonly producer: Producer;
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
    this.producer = idempotentProducer(this.kafka);
    this.admin = this.kafka.admin();
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => {
      this.emit('clientError', { kind: 'consumer_crash', error: payload.error });
      // kafkajs restarts the consumer itself on retriable crashes; a non-restarting crash is fatal.
      if (!payload.restart) this.setState('failed');
    });
    this.producer.on(this.producer.events.REQUEST_TIMEOUT, () => this.emit('clientError', { kind: 'producer_timeout', error: new Error('producer request timeout') }));
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
      const outputs = (handled as Handled[]).flatMap((h) => h.outputs);
      if (outputs.length) await this.produce(outputs);
      for (const h of handled as Handled[]) {
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

  private async produce(outputs: Output[]): Promise<void> {
    const byTopic = new Map<string, Array<{ key: string; value: string }>>();
    for (const o of outputs) {
      if (!byTopic.has(o.topic)) byTopic.set(o.topic, []);
      byTopic.get(o.topic)!.push({ key: o.key, value: o.value });
    }
    await this.producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
  }

  /** Screens one message into its outputs; null means "shutting down, redeliver later". */
  private async handle(topic: string, partition: number, message: KafkaMessage): Promise<Handled | null> {
    const t = this.settings.topics;
    const dead = (code: string, reason: string, retriable: boolean, attempts: number): Handled => ({
      outcome: 'dead_lettered',
      code,
      outputs: [{
        topic: t.dlq,
        key: message.key?.toString('utf8') ?? `${topic}/${partition}/${message.offset}`,
        value: JSON.stringify(deadLetterOf({ code, reason, retriable, attempts, topic, partition, offset: message.offset, key: message.key, timestamp: message.timestamp, value: message.value })),
      }],
    });
    const parsed = parseCrawled(message.value);
    if (!parsed.ok) return dead('MESSAGE_INVALID', parsed.reason, false, 1);
    const input: CrawledImage = parsed.message;
    for (let attempt = 1; ; attempt++) {
      try {
        const bytes = input.imageBase64 !== undefined ? Buffer.from(input.imageBase64, 'base64') : undefined;
        const result = await this.service.screen({
          bytes, url: bytes ? undefined : input.url, source: 'kafka', lane: 'bulk',
          // Kept with the photo if it is sampled into the unlabeled pool (SSLD).
          meta: { listingId: input.id, platform: input.listing.platform, ...(input.url ? { imageUrl: input.url } : {}) },
        });
        const decidedAt = new Date();
        const decision = decisionOf(input, result, decidedAt);
        const outputs: Output[] = [{ topic: t.results, key: input.id, value: JSON.stringify(decision) }];
        if (result.flagged) {
          // An inline photo exists nowhere else: the flag carries it to the analysts' console.
          const inline = input.imageBase64 !== undefined && input.imageBase64.length <= MAX_FLAGGED_INLINE_BASE64 ? { base64: input.imageBase64 } : {};
          outputs.push({ topic: t.review, key: input.id, value: JSON.stringify({ ...decision, schema: FLAGGED_SCHEMA, image: { ...decision.image, ...inline } }) });
        }
        return { outputs, outcome: result.flagged ? 'flagged' : 'screened', crawlToDecisionMs: decision.timings.crawlToDecisionMs };
      } catch (err) {
        if (isScreeningError(err, 'SHUTTING_DOWN') || this.current === 'stopping') return null;
        const code = isScreeningError(err) ? err.code : 'INTERNAL';
        const retriable = isScreeningError(err) ? err.retriable : true;
        if (!retriable || attempt >= this.settings.maxAttempts) return dead(code, (err as Error).message, retriable, attempt);
        this.emit('message', { outcome: 'retried', code });
        await sleep(this.settings.retryBackoffMs * 2 ** (attempt - 1));
      }
    }
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
