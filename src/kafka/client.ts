/**
 * The one way the long-running Kafka components (the screening pipeline, the review-decisions
 * consumer, the review console's feed) build their clients and consume, so retry policy, logging
 * and delivery settings cannot drift apart.
 */
import { Kafka, logLevel, Partitioners, type Consumer, type EachBatchPayload, type LogEntry, type Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { deadLetterKey, deadLetterOf, DEFAULT_MAX_RECORD_BYTES, serializedBytes } from '../contracts/index.js';

// The components outside this folder name kafkajs's types through here: kafkajs stays confined to
// src/kafka (test/kafka/confined.test.ts), so a client upgrade or swap is one folder's change.
export type { EachBatchPayload, KafkaMessage, Producer } from 'kafkajs';

/**
 * kafkajs's text for protocol error 14 (COORDINATOR_LOAD_IN_PROGRESS; kafkajs's type
 * GROUP_LOAD_IN_PROGRESS). kafkajs logs a failed response at error level with only this text, no
 * code, before it retries the request.
 */
export const COORDINATOR_LOADING = "The coordinator is loading and hence can't process requests for this group";

/**
 * Where kafkajs's log entries go in ours. A broker that has just started, or a consumer group
 * that has just moved, answers "coordinator loading" to every consumer's first requests, and
 * kafkajs retries them until it is loaded: at error level that was an alarming line at every start
 * of the service and the console. It goes to debug; a load that never ends still surfaces, as the
 * consumer's crash once the retries run out.
 */
export function kafkaLogBridge(log: Logger): (entry: LogEntry) => void {
  return ({ level, namespace, log: entry }) => {
    const { message, ...rest } = entry;
    // Bounded producer retries are deliberate: a batch that cannot be produced fails, its
    // offsets stay uncommitted and it is redelivered (at-least-once), rather than blocking.
    if (message.startsWith('Limiting retries for the idempotent producer')) return;
    if (message.startsWith('Response ') && rest.error === COORDINATOR_LOADING) log.debug({ ...rest, namespace, retried: true }, message);
    else if (level <= logLevel.ERROR) log.error(rest, message);
    else log.warn(rest, message);
  };
}

export function createKafkaClient(options: { clientId: string; brokers: readonly string[]; log: Logger }): Kafka {
  return new Kafka({
    clientId: options.clientId,
    brokers: [...options.brokers],
    retry: { retries: 8, initialRetryTime: 200, maxRetryTime: 5000 },
    logLevel: logLevel.WARN,
    logCreator: () => kafkaLogBridge(options.log),
  });
}

/** A consumer that outlives broker outages: it keeps retrying instead of crashing the process. */
export function durableConsumer(kafka: Kafka, groupId: string): Consumer {
  return kafka.consumer({ groupId, sessionTimeout: 30_000, heartbeatInterval: 3_000, retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 5000 } });
}

/** Idempotent, acks=all, one request in flight: no duplicates or reordering from producer retries. */
export function idempotentProducer(kafka: Kafka): Producer {
  return kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
}

export interface OutgoingRecord { topic: string; key: string; value: string }

/**
 * Sends records in order, packed into requests of at most `maxBytes`. The broker's limit
 * (message.max.bytes) applies to the record batch kafkajs builds per partition and request, not
 * to one record: two 600 KB flags for one partition in one request are refused together.
 */
/** What a record adds to a batch beyond its key and value (length varints, timestamp and offset deltas, headers count), rounded up. */
const RECORD_FRAMING_BYTES = 32;

export async function sendBounded(producer: Producer, records: readonly OutgoingRecord[], maxBytes: number): Promise<void> {
  let pending: OutgoingRecord[] = [];
  let bytes = 0;
  const flush = async () => {
    if (!pending.length) return;
    const byTopic = new Map<string, Array<{ key: string; value: string }>>();
    for (const r of pending) {
      if (!byTopic.has(r.topic)) byTopic.set(r.topic, []);
      byTopic.get(r.topic)!.push({ key: r.key, value: r.value });
    }
    pending = [];
    bytes = 0;
    await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
  };
  for (const record of records) {
    const size = serializedBytes(record.key) + serializedBytes(record.value) + RECORD_FRAMING_BYTES;
    if (pending.length && bytes + size > maxBytes) await flush();
    pending.push(record);
    bytes += size;
  }
  await flush();
}

/** The broker refused a record for what it is (too large, invalid), not for a passing condition: resending it cannot help. */
export function isRecordRefused(err: unknown): boolean {
  for (let e = err as { type?: string; cause?: unknown } | undefined, depth = 0; e && depth < 8; e = e.cause as typeof e, depth++) {
    if (e.type === 'MESSAGE_TOO_LARGE' || e.type === 'RECORD_LIST_TOO_LARGE' || e.type === 'INVALID_RECORD') return true;
  }
  return false;
}

export interface MessagePosition { topic: string; partition: number; offset: string }

export interface DurableBatchOptions<T> {
  consumer: Consumer;
  /** Sends dead letters; null: invalid messages are only reported. */
  deadLetters: { producer: Producer; topic: string } | null;
  parse(value: Buffer | null): { ok: true; message: T } | { ok: false; reason: string };
  /** Makes one valid message durable. Throwing leaves its offset uncommitted: kafkajs fetches it again. */
  keep(message: T, at: MessagePosition): unknown;
  /** An invalid message, skipped (and queued for the DLQ when `deadLettered`). */
  skip(at: MessagePosition & { reason: string; deadLettered: boolean }): void;
  /** Dead letters the DLQ acknowledged; counted here, not in skip(), so a redelivery after a failed send does not count twice. */
  deadLettered?(count: number): void;
  /** Commit at least this often within one fetched batch. */
  commitEvery: number;
}

/**
 * One kafkajs batch, at-least-once: each message is parsed and kept (durable when `keep` returns)
 * or skipped with its reason, and only then is its offset committed, explicitly. Dead letters are
 * acknowledged before the offsets that skipped them. The consumers of the flagged and the
 * review-decision topics share it, so their delivery rules cannot drift apart.
 */
export async function consumeDurably<T>({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload, o: DurableBatchOptions<T>): Promise<void> {
  const { topic, partition } = batch;
  let done: string | null = null; // the last offset kept or skipped
  let uncommitted = 0;
  const letters: OutgoingRecord[] = [];
  const commit = async () => {
    if (done === null || uncommitted === 0) return;
    if (letters.length) {
      const sent = letters.splice(0);
      await sendBounded(o.deadLetters!.producer, sent, DEFAULT_MAX_RECORD_BYTES);
      o.deadLettered?.(sent.length);
    }
    resolveOffset(done);
    // The committed offset is the next one to read.
    await o.consumer.commitOffsets([{ topic, partition, offset: (BigInt(done) + 1n).toString() }]);
    uncommitted = 0;
  };
  try {
    for (const message of batch.messages) {
      // Stopping or rebalanced: what is not done is fetched again (by us or the new owner).
      if (!isRunning() || isStale()) break;
      const at = { topic, partition, offset: message.offset };
      const parsed = o.parse(message.value);
      if (parsed.ok) {
        await o.keep(parsed.message, at);
      } else {
        if (o.deadLetters) {
          letters.push({
            topic: o.deadLetters.topic,
            key: deadLetterKey(message.key, at),
            value: JSON.stringify(deadLetterOf({ code: 'MESSAGE_INVALID', reason: parsed.reason, retriable: false, attempts: 1, topic, partition, offset: message.offset, key: message.key, timestamp: message.timestamp, value: message.value })),
          });
        }
        o.skip({ ...at, reason: parsed.reason, deadLettered: !!o.deadLetters });
      }
      done = message.offset;
      uncommitted++;
      if (uncommitted >= o.commitEvery) await commit();
      await heartbeat();
    }
  } finally {
    // Commit what is durable even when the loop was cut short (a stop, or `keep` failing on a later
    // message); not after a rebalance: the partition is someone else's now, and keeping dedupes.
    if (!isStale()) await commit();
  }
}
