/**
 * The lifecycle the long-running Kafka components share (the screening pipeline, the review
 * console's feed, the labels consumer), so that how they start, fail, recover and stop cannot drift
 * apart: one consumer group read with explicit commits, an optional producer, an admin client.
 *
 *   stopped ─start()→ starting ─→ running ─stop()→ stopping ─→ stopped
 *                        │           └─ a crash kafkajs does not restart → failed
 *                        └─ any step fails → failed (nothing left connected; start() may be called again)
 *
 * A subclass brings its batches (eachBatch) and may hook in: onClients (listen to a run's clients),
 * beforeConnect (work that must succeed before Kafka is joined), onRunning (timers, listeners),
 * onHalt (undo onRunning), beforeDisconnect (last sends once the consumer has stopped, within the
 * deadline), afterStop (after every connection is closed, whatever happened).
 *
 * Every start builds its clients afresh. A kafkajs client is not reconnected: the socket of its
 * last connection reports its end after disconnect() has returned, and then closes the new
 * connection's requests too ("Closed connection" at the next start); and a stop cut short by its
 * deadline leaves a consumer that lets go only once its batch returns.
 */
import { EventEmitter } from 'node:events';
import type { Admin, Consumer, EachBatchPayload, Kafka, Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { createKafkaClient, durableConsumer, idempotentProducer } from './client.js';

export type LifecycleState = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export type KafkaClientName = 'admin' | 'producer' | 'consumer';

export interface KafkaComponentSettings {
  clientId: string;
  brokers: readonly string[];
  groupId: string;
  log: Logger;
  /** Read from the beginning when the group has no committed offset yet. Read at each start. */
  subscribe: readonly string[];
  /** Topics created when missing (empty names are left out); null leaves topics to the operator. */
  createTopics: { topics: ReadonlyArray<string | null | undefined>; partitions: number; replicationFactor: number } | null;
  /** Whether the component writes to Kafka (an idempotent producer, see client.ts). */
  producer: boolean;
  partitionsConsumedConcurrently?: number;
  /**
   * stop() rejects with `shutdownTimeoutMessage` when draining takes longer, having cut every
   * connection; a stop that gives up on a start still connecting resolves (nothing was consumed).
   */
  shutdownTimeoutMs: number;
  shutdownTimeoutMessage: string;
}

/** Rejects with `message` when `work` has not settled by `deadline` (epoch ms). */
export async function withinDeadline<T>(deadline: number, work: Promise<T>, message: string): Promise<T> {
  work.catch(() => undefined); // past the deadline, its late failure is expected and not news
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** The clients of one run (one start() until its stop or failure). */
export interface KafkaClients {
  consumer: Consumer;
  producer: Producer | null;
  admin: Admin;
}

interface Run extends KafkaClients {
  kafka: Kafka;
}

/**
 * `Extra` names states a component adds while it runs (the pipeline's 'paused'); a crash fails the
 * component in those as in 'running'. Events: 'state' { state } on every change, 'clientError'
 * { kind: 'consumer_crash', error } on every crash of the running consumer, restarted by kafkajs or not.
 */
export abstract class KafkaComponent<Extra extends string = never> extends EventEmitter {
  protected readonly log: Logger;
  private current: LifecycleState | Extra = 'stopped';
  /** The latest start's clients; null before the first start. */
  private run: Run | null = null;
  private starting: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private readonly connected = new WeakSet<object>();
  private readonly disconnecting = new Map<object, Promise<void>>();

  constructor(private readonly spec: KafkaComponentSettings) {
    super();
    this.log = spec.log;
  }

  /** Handles one fetched batch; offsets are resolved and committed by the subclass (autoCommit is off). */
  protected abstract eachBatch(payload: EachBatchPayload): Promise<void>;
  /** A run's clients before they connect, and a replacement producer (replaceProducer): for the subclass's listeners. */
  protected onClients(_clients: Partial<KafkaClients>): void {}
  protected async beforeConnect(): Promise<void> {}
  protected onRunning(): void {}
  /** Undoes onRunning, and may run more than once: on stop, and when a crash fails the component. */
  protected onHalt(): void {}
  /** The consumer has stopped (what it handled is committed); `deadline` bounds the whole stop. */
  protected async beforeDisconnect(_deadline: number): Promise<void> {}
  /** Must not throw: the component is stopped whatever it does. */
  protected async afterStop(): Promise<void> {}

  /** The current run's clients: only used while a run exists (batches, timers, sends). */
  protected get consumer(): Consumer {
    return this.clients().consumer;
  }

  protected get producer(): Producer | null {
    return this.clients().producer;
  }

  protected get admin(): Admin {
    return this.clients().admin;
  }

  private clients(): Run {
    if (!this.run) throw new Error(`${this.spec.clientId}: the Kafka clients exist once start() is called`);
    return this.run;
  }

  /**
   * A new producer for the current run, connected, the old one let go: after a refused record,
   * kafkajs's idempotent sequence numbers no longer match the broker's (see the pipeline).
   */
  protected async replaceProducer(): Promise<void> {
    const run = this.clients();
    const old = run.producer;
    run.producer = this.newProducer(run.kafka);
    this.onClients({ producer: run.producer });
    if (old) await this.disconnect(old).catch(() => undefined);
    await run.producer.connect();
  }

  state(): LifecycleState | Extra {
    return this.current;
  }

  /** The current run's clients that are connected, as their CONNECT and DISCONNECT events tell. */
  connectedClients(): KafkaClientName[] {
    const run = this.run;
    return (['admin', 'producer', 'consumer'] as const).filter((name) => {
      const client = run?.[name];
      return !!client && this.connected.has(client);
    });
  }

  protected setState(state: LifecycleState | Extra): void {
    if (this.current === state) return;
    this.current = state;
    this.emit('state', { state });
  }

  private newRun(): Run {
    const kafka = createKafkaClient({ clientId: this.spec.clientId, brokers: this.spec.brokers, log: this.log });
    const consumer = durableConsumer(kafka, this.spec.groupId);
    const admin = kafka.admin();
    const { CONNECT, DISCONNECT, CRASH } = consumer.events;
    // kafkajs's consumer also says CONNECT when run() joins its group, and after it restarts itself.
    consumer.on(CONNECT, () => this.connected.add(consumer));
    consumer.on(DISCONNECT, () => this.connected.delete(consumer));
    admin.on(admin.events.CONNECT, () => this.connected.add(admin));
    admin.on(admin.events.DISCONNECT, () => this.connected.delete(admin));
    consumer.on(CRASH, ({ payload }) => {
      if (consumer !== this.run?.consumer) return; // a stopped run's consumer, finishing its batch
      this.emit('clientError', { kind: 'consumer_crash', error: payload.error });
      // kafkajs restarts the consumer itself after retriable crashes; any other crash is final.
      if (!payload.restart) void this.failAfterCrash();
    });
    return { kafka, consumer, admin, producer: this.spec.producer ? this.newProducer(kafka) : null };
  }

  private newProducer(kafka: Kafka): Producer {
    const producer = idempotentProducer(kafka);
    producer.on(producer.events.CONNECT, () => this.connected.add(producer));
    producer.on(producer.events.DISCONNECT, () => this.connected.delete(producer));
    return producer;
  }

  /** Once running, a second call resolves at once; during a stop, it starts again after it. */
  start(): Promise<void> {
    if (this.stopping) return this.stopping.catch(() => undefined).then(() => this.start());
    this.starting ??= this.startNow();
    return this.starting;
  }

  private async startNow(): Promise<void> {
    const run = (this.run = this.newRun());
    this.onClients(run);
    this.setState('starting');
    const steps: Array<() => Promise<unknown>> = [
      () => this.beforeConnect(),
      () => run.admin.connect(),
      async () => this.spec.createTopics && this.createMissingTopics(run.admin, this.spec.createTopics),
      async () => run.producer?.connect(),
      () => run.consumer.connect(),
      () => run.consumer.subscribe({ topics: [...this.spec.subscribe], fromBeginning: true }),
      () => run.consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: this.spec.partitionsConsumedConcurrently ?? 1,
        eachBatch: (payload) => this.eachBatch(payload),
      }),
    ];
    const mine = () => this.run === run && this.current === 'starting';
    try {
      // After a stop() meanwhile, no further step: the stop undoes what the steps so far connected.
      for (const step of steps) if (mine()) await step();
    } catch (err) {
      // Leave nothing half-connected, so that a later start() begins afresh (the service and the
      // console retry while Kafka is unreachable).
      await this.disconnectAll(run);
      if (mine()) {
        this.starting = null;
        this.setState('failed');
      }
      throw err;
    }
    if (mine()) {
      this.onRunning();
      this.setState('running');
    } else if (this.run !== run || this.current === 'stopped') {
      await this.disconnectAll(run); // the stop gave up waiting for this step: its clients are this start's to let go
    }
  }

  private async createMissingTopics(admin: Admin, { topics, partitions, replicationFactor }: NonNullable<KafkaComponentSettings['createTopics']>): Promise<void> {
    const existing = new Set(await admin.listTopics());
    const missing = [...new Set(topics)].filter((t): t is string => !!t && !existing.has(t));
    if (!missing.length) return;
    await admin.createTopics({ waitForLeaders: true, topics: missing.map((topic) => ({ topic, numPartitions: partitions, replicationFactor })) });
    this.log.info({ topics: missing }, 'created Kafka topics');
  }

  /** Stops fetching, lets the batch in hand finish and commit, disconnects: within shutdownTimeoutMs. */
  stop(): Promise<void> {
    if (this.current === 'stopped') return Promise.resolve();
    this.stopping ??= this.stopNow().finally(() => {
      this.stopping = null;
    });
    return this.stopping;
  }

  private async stopNow(): Promise<void> {
    const deadline = Date.now() + this.spec.shutdownTimeoutMs;
    const within = <T>(work: Promise<T>) => withinDeadline(deadline, work, this.spec.shutdownTimeoutMessage);
    const run = this.clients();
    const starting = this.current === 'starting' ? this.starting : null;
    this.setState('stopping');
    let failure: unknown = null;
    try {
      // A start in progress ends the step it is in, and is undone below. A connect can take
      // kafkajs's whole retry budget while the broker is down, hence the deadline; giving up on it
      // is not a failed stop (nothing was consumed yet), and startNow undoes the step when it ends.
      if (starting) {
        const abandoned = await within(starting.catch(() => undefined)).then(() => false, () => true);
        if (abandoned) {
          this.log.warn({ clientId: this.spec.clientId }, 'stopped while still connecting to Kafka; the connection attempt is dropped when it ends');
          return;
        }
      }
      this.onHalt();
      // consumer.stop() waits for the running eachBatch, which commits what it finished.
      await within((async () => {
        await run.consumer.stop();
        await this.disconnect(run.consumer);
      })());
      await this.beforeDisconnect(deadline);
      await within((async () => {
        await this.disconnect(run.producer);
        await this.disconnect(run.admin);
      })());
    } catch (err) {
      failure = err;
    } finally {
      // Past the deadline too: cut the connections rather than leave clients reconnecting forever;
      // then the consumer's disconnect, which waits for a batch still in hand, is not waited for.
      await this.disconnectAll(run, !failure);
      await this.afterStop();
      this.starting = null;
      this.setState('stopped');
    }
    if (failure) throw failure;
  }

  /** kafkajs gave up on the consumer: release everything, so that a later start() begins afresh. */
  private async failAfterCrash(): Promise<void> {
    const state = this.current;
    const run = this.clients();
    if (state === 'starting' || state === 'stopping' || state === 'stopped' || state === 'failed') return;
    this.onHalt();
    await this.disconnectAll(run);
    if (this.current !== state || this.run !== run) return; // stop() came meanwhile and owns the state now
    this.starting = null;
    this.setState('failed');
  }

  private async disconnectAll(run: Run, waitForConsumer = true): Promise<void> {
    const consumer = this.disconnect(run.consumer).catch(() => undefined);
    await Promise.allSettled([this.disconnect(run.producer), this.disconnect(run.admin), waitForConsumer ? consumer : null]);
  }

  /**
   * One disconnect of a client at a time: the stop's (cut short by its deadline) and the cleanup's
   * must not overlap, kafkajs's connections do not survive that.
   */
  private disconnect(client: Consumer | Producer | Admin | null): Promise<void> {
    if (!client) return Promise.resolve();
    let running = this.disconnecting.get(client);
    if (!running) {
      running = client.disconnect().finally(() => this.disconnecting.delete(client));
      this.disconnecting.set(client, running);
    }
    return running;
  }
}
