/**
 * Small Kafka utilities for tests, the load generator and operators, so that kafkajs stays confined
 * to this folder: publish messages, and collect what arrives on topics.
 */
import { Kafka, logLevel, Partitioners, type Consumer } from 'kafkajs';

export interface TopicRecord { topic: string; partition: number; offset: string; key: string | null; value: string; headers: Record<string, string> }

function client(brokers: readonly string[], clientId: string, retries = 10): Kafka {
  return new Kafka({ clientId, brokers: [...brokers], logLevel: logLevel.NOTHING, retry: { retries, initialRetryTime: 200 } });
}

/** Creates the missing topics; `config` sets topic configs such as max.message.bytes. */
export async function createTopics(brokers: readonly string[], topics: string[], partitions = 3, config: Record<string, string> = {}): Promise<void> {
  const admin = client(brokers, 'wildlife-tools').admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t));
    if (missing.length) await admin.createTopics({ waitForLeaders: true, topics: missing.map((topic) => ({ topic, numPartitions: partitions, replicationFactor: 1, configEntries: Object.entries(config).map(([name, value]) => ({ name, value })) })) });
  } finally {
    await admin.disconnect();
  }
}

/** Per partition of `topic`: the end offset (the next to be written) and what `groupId` committed ('-1': nothing). */
export async function committedOffsets(brokers: readonly string[], groupId: string, topic: string): Promise<Array<{ partition: number; end: string; committed: string }>> {
  const admin = client(brokers, 'wildlife-tools').admin();
  await admin.connect();
  try {
    const ends = await admin.fetchTopicOffsets(topic);
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const byPartition = new Map((committed?.partitions ?? []).map((p) => [p.partition, p.offset]));
    return ends.map((p) => ({ partition: p.partition, end: p.offset, committed: byPartition.get(p.partition) ?? '-1' }));
  } finally {
    await admin.disconnect();
  }
}

/** Stays under the broker's default 1 MiB record-batch limit. */
const MAX_REQUEST_BYTES = 768 * 1024;

/** Publishes messages (acks=all, idempotent) in size-bounded requests; returns how many were sent. */
export async function publish(brokers: readonly string[], topic: string, messages: Array<{ key: string; value: string | Buffer }>): Promise<number> {
  const producer = client(brokers, 'wildlife-publisher').producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    let pending: typeof messages = [];
    let bytes = 0;
    for (const message of [...messages, null]) {
      const size = message ? message.key.length + message.value.length : 0;
      if (pending.length && (!message || bytes + size > MAX_REQUEST_BYTES)) {
        await producer.send({ topic, acks: -1, messages: pending });
        pending = [];
        bytes = 0;
      }
      if (message) {
        pending.push(message);
        bytes += size;
      }
    }
    return messages.length;
  } finally {
    await producer.disconnect();
  }
}

export interface SendOneOptions {
  /** Create the topic when it is missing, as the service would (its kafka.partitions and replicationFactor). */
  createTopic?: { partitions: number; replicationFactor: number };
  /** kafkajs retries per request; few, for a person waiting at a terminal. */
  retries?: number;
}

/** Sends one record (acks=all, idempotent) and says where it landed, and whether its topic was created first. */
export async function sendOne(brokers: readonly string[], topic: string, message: { key: string; value: string }, options: SendOneOptions = {}): Promise<{ partition: number; offset: string; createdTopic: boolean }> {
  const kafka = client(brokers, 'wildlife-produce', options.retries);
  let createdTopic = false;
  if (options.createTopic) {
    const admin = kafka.admin();
    await admin.connect();
    try {
      if (!(await admin.listTopics()).includes(topic)) {
        createdTopic = await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: options.createTopic.partitions, replicationFactor: options.createTopic.replicationFactor }] });
      }
    } finally {
      await admin.disconnect();
    }
  }
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    const [meta] = await producer.send({ topic, acks: -1, messages: [message] });
    return { partition: meta!.partition, offset: meta!.baseOffset ?? meta!.offset ?? '', createdTopic };
  } finally {
    await producer.disconnect();
  }
}

export interface TopicCollector {
  records: TopicRecord[];
  /** Resolves when `predicate` holds for the records so far, or rejects after timeoutMs. */
  waitFor(predicate: (records: TopicRecord[]) => boolean, timeoutMs: number): Promise<TopicRecord[]>;
  close(): Promise<void>;
}

/**
 * Reads topics from the beginning with a throwaway consumer group and keeps every record. Missing
 * topics are created first (auto-creation is off on our brokers), so a reader can start before
 * the service that writes to them.
 */
export async function collect(brokers: readonly string[], topics: string[]): Promise<TopicCollector> {
  await createTopics(brokers, topics);
  const kafka = client(brokers, 'wildlife-collector');
  const consumer: Consumer = kafka.consumer({ groupId: `collector-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}` });
  const records: TopicRecord[] = [];
  const waiters = new Set<() => void>();
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      const headers = Object.fromEntries(Object.entries(message.headers ?? {}).flatMap(([name, value]) => (value === undefined ? [] : [[name, value.toString()]])));
      records.push({ topic, partition, offset: message.offset, key: message.key?.toString('utf8') ?? null, value: message.value?.toString('utf8') ?? '', headers });
      for (const wake of waiters) wake();
    },
  });
  return {
    records,
    waitFor(predicate, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (predicate(records)) {
            cleanup();
            resolve(records);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out after ${timeoutMs} ms with ${records.length} records`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async close() {
      await consumer.disconnect();
    },
  };
}
