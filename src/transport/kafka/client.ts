/**
 * The one way the long-running Kafka components (the screening pipeline, the review-decisions
 * consumer) build their clients, so retry policy, logging and delivery settings cannot drift apart.
 */
import { Kafka, logLevel, Partitioners, type Consumer, type Producer } from 'kafkajs';
import type { Logger } from 'pino';

export function createKafkaClient(options: { clientId: string; brokers: readonly string[]; log: Logger }): Kafka {
  const { log } = options;
  return new Kafka({
    clientId: options.clientId,
    brokers: [...options.brokers],
    retry: { retries: 8, initialRetryTime: 200, maxRetryTime: 5000 },
    logLevel: logLevel.WARN,
    logCreator: () => ({ level, log: entry }) => {
      const { message, ...rest } = entry;
      // Bounded producer retries are deliberate: a batch that cannot be produced fails, its
      // offsets stay uncommitted and it is redelivered (at-least-once), rather than blocking.
      if (message.startsWith('Limiting retries for the idempotent producer')) return;
      if (level <= logLevel.ERROR) log.error(rest, message);
      else log.warn(rest, message);
    },
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
