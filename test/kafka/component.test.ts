/**
 * The shared lifecycle's own contract (src/kafka/component.ts), on a real broker: a small component
 * that keeps what it reads, and records its states, hooks and client connections in one trace.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { consumeDurably, type EachBatchPayload } from '../../src/kafka/client.js';
import { KafkaComponent, type KafkaClients, type KafkaComponentSettings } from '../../src/kafka/component.js';
import { createTopics, publish } from '../../src/kafka/tools.js';
import { kafkaBrokers, uniqueTopics } from '../helpers/kafka.js';
import { freePort } from '../helpers/ports.js';
import { until } from '../helpers/wait.js';

const SHUTDOWN_MESSAGE = 'the probe shutdown exceeded its deadline';

class Probe extends KafkaComponent {
  readonly trace: string[] = [];
  readonly kept: string[] = [];
  /** Called with each trace entry as it happens, to act at a given point of a start. */
  onTrace: (entry: string) => void = () => undefined;
  /** While set, every message waits for it: a batch in hand that stop() must wait for. */
  private hold: Promise<void> | null = null;
  private releaseHold = () => undefined as void;
  inHand = false;
  /** While set, beforeConnect waits for it: a start slow in its first step. */
  slowStart: Promise<void> | null = null;
  /** Thrown from the batch: kafkajs restarts the consumer after a retriable error only. */
  crashWith: Error | null = null;

  constructor(settings: Partial<KafkaComponentSettings> & Pick<KafkaComponentSettings, 'brokers' | 'groupId' | 'subscribe'>) {
    super({ clientId: 'component-test', log: pino({ level: 'silent' }), createTopics: null, producer: true, shutdownTimeoutMs: 15_000, shutdownTimeoutMessage: SHUTDOWN_MESSAGE, ...settings });
    this.on('state', ({ state }: { state: string }) => this.record(`state:${state}`));
  }

  protected override onClients({ admin, producer, consumer }: Partial<KafkaClients>): void {
    admin?.on(admin.events.CONNECT, () => this.record('admin:connect'));
    producer?.on(producer.events.CONNECT, () => this.record('producer:connect'));
    consumer?.on(consumer.events.CONNECT, () => this.record('consumer:connect'));
  }

  holdBatches(): void {
    this.hold = new Promise((resolve) => { this.releaseHold = resolve; });
  }

  release(): void {
    this.releaseHold();
    this.hold = null;
  }

  private record(entry: string): void {
    this.trace.push(entry);
    this.onTrace(entry);
  }

  protected override async beforeConnect(): Promise<void> {
    this.record('beforeConnect');
    await this.slowStart;
  }
  protected override onRunning(): void { this.record('onRunning'); }
  protected override onHalt(): void { this.record('onHalt'); }
  protected override async beforeDisconnect(): Promise<void> { this.record(`beforeDisconnect connected=${this.connectedClients().join(',')}`); }
  protected override async afterStop(): Promise<void> { this.record(`afterStop connected=${this.connectedClients().join(',')}`); }

  protected override eachBatch(payload: EachBatchPayload): Promise<void> {
    return consumeDurably(payload, {
      consumer: this.consumer,
      deadLetters: null,
      parse: (value) => ({ ok: true, message: value?.toString('utf8') ?? '' }),
      keep: async (message) => {
        if (this.crashWith) throw this.crashWith;
        this.inHand = true;
        await this.hold;
        this.kept.push(message);
      },
      skip: () => undefined,
      commitEvery: 1,
    });
  }
}

/**
 * The trace of a start that joins, and of a stop with nothing in hand, in the order they must
 * happen. kafkajs's consumer says CONNECT on connect() and again when run() joins its group.
 */
const START = ['state:starting', 'beforeConnect', 'admin:connect', 'producer:connect', 'consumer:connect', 'consumer:connect', 'onRunning', 'state:running'];
const STOP = ['state:stopping', 'onHalt', 'beforeDisconnect connected=admin,producer', 'afterStop connected=', 'state:stopped'];

describe('the shared Kafka component lifecycle on a real broker', () => {
  let brokers: string[];
  const probes: Probe[] = [];
  before(async () => {
    brokers = await kafkaBrokers();
  });
  after(async () => {
    for (const p of probes) p.release();
    await Promise.allSettled(probes.map((p) => p.stop()));
  });

  function probe(label: string, settings: Partial<KafkaComponentSettings> = {}) {
    const { groupId, topics } = uniqueTopics(label);
    const p = new Probe({ brokers, groupId, subscribe: [topics.input], ...settings });
    probes.push(p);
    return { p, topic: topics.input };
  }

  test('a start creates the missing topics and joins; a stop runs its hooks in order and leaves nothing connected', async () => {
    const { topics } = uniqueTopics('component-order');
    const { p } = probe('component-order', { subscribe: [topics.input], createTopics: { topics: [topics.input, topics.dlq, null], partitions: 1, replicationFactor: 1 } });
    await p.start();
    await p.start(); // once running, a second start changes nothing
    assert.deepEqual(p.connectedClients(), ['admin', 'producer', 'consumer']);
    await publish(brokers, topics.input, [{ key: 'a', value: 'first' }, { key: 'a', value: 'second' }]);
    await until('both messages kept', () => p.kept.length === 2);
    await p.stop();
    await p.stop(); // stopped: nothing more happens
    assert.deepEqual(p.trace, [...START, ...STOP]);
    assert.deepEqual(p.kept, ['first', 'second']);
    assert.deepEqual(p.connectedClients(), []);
  });

  test('a start that fails after connecting leaves nothing connected, and a second start() works', async () => {
    // Topics left to the operator, who has not created this one yet: the subscribe step fails.
    const { p, topic } = probe('component-retry');
    await assert.rejects(p.start(), /does not host this topic-partition/);
    assert.equal(p.state(), 'failed');
    assert.deepEqual(p.trace, ['state:starting', 'beforeConnect', 'admin:connect', 'producer:connect', 'consumer:connect', 'state:failed']);
    assert.deepEqual(p.connectedClients(), []);

    await createTopics(brokers, [topic], 1);
    p.trace.length = 0;
    await p.start();
    assert.deepEqual(p.trace, START);
    await publish(brokers, topic, [{ key: 'k', value: 'after the retry' }]);
    await until('the message kept', () => p.kept.length === 1);
    await p.stop();
    assert.deepEqual(p.connectedClients(), []);
  });

  test('stop() during a start lets the step in hand finish, takes no further step, undoes it, and a later start() works', async () => {
    const { p, topic } = probe('component-stop-starting');
    await createTopics(brokers, [topic], 1);
    let stopped: Promise<void> | null = null;
    p.onTrace = (entry) => {
      if (entry === 'admin:connect') stopped ??= p.stop();
    };
    await p.start(); // resolves: the stop took over
    await stopped;
    assert.equal(p.state(), 'stopped');
    assert.deepEqual(p.trace, ['state:starting', 'beforeConnect', 'admin:connect', 'state:stopping', 'onHalt', 'beforeDisconnect connected=admin', 'afterStop connected=', 'state:stopped']);
    assert.deepEqual(p.connectedClients(), []);

    p.onTrace = () => undefined;
    p.trace.length = 0;
    await p.start();
    assert.deepEqual(p.trace, START);
    await p.stop();
  });

  test('a stop that gives up waiting for a slow start step resolves (nothing was consumed), ends stopped, that start takes no further step, and a new start() runs', async () => {
    // Long enough for the ordinary stop at the end (kafkajs's 5 s fetch wait).
    const { p, topic } = probe('component-abandon', { shutdownTimeoutMs: 8000 });
    await createTopics(brokers, [topic], 1);
    let release!: () => void;
    p.slowStart = new Promise((resolve) => { release = resolve; });
    const first = p.start();
    await p.stop();
    assert.equal(p.state(), 'stopped');
    p.slowStart = null;
    const second = p.start();
    release();
    await first;
    await second;
    assert.deepEqual(p.trace, ['state:starting', 'beforeConnect', 'state:stopping', 'afterStop connected=', 'state:stopped', ...START]);
    await p.stop();
    assert.deepEqual(p.connectedClients(), []);
  });

  test('with the broker unreachable, a stop during the start resolves, ends stopped and leaves nothing connected', async () => {
    const unreachable = new Probe({ brokers: [`127.0.0.1:${await freePort()}`], groupId: 'component-unreachable', subscribe: ['component-unreachable'], shutdownTimeoutMs: 1500 });
    const starting = unreachable.start();
    starting.catch(() => undefined); // kafkajs gives up on the connect after its retries, long after this test
    await until('the start is connecting', () => unreachable.trace.includes('beforeConnect'));
    await unreachable.stop();
    assert.equal(unreachable.state(), 'stopped');
    assert.deepEqual(unreachable.connectedClients(), []);
    assert.deepEqual(unreachable.trace, ['state:starting', 'beforeConnect', 'state:stopping', 'afterStop connected=', 'state:stopped']);
  });

  // The timeout: a stop that waits for the batch in hand would wait for ever (the test releases it later).
  test('a stop past its deadline rejects at the deadline, ends stopped, and the consumer lets go once its batch returns', { timeout: 90_000 }, async (t) => {
    // Above kafkajs's 5 s fetch wait, which an ordinary stop may wait out; the batch in hand holds this one.
    const { p, topic } = probe('component-deadline', { shutdownTimeoutMs: 8000 });
    await createTopics(brokers, [topic], 1);
    p.holdBatches();
    await p.start();
    await publish(brokers, topic, [{ key: 'k', value: 'slow' }]);
    await until('a message in hand', () => p.inHand);
    const began = Date.now();
    await assert.rejects(p.stop(), { message: SHUTDOWN_MESSAGE });
    const took = Date.now() - began;
    assert.ok(took >= 7900 && took < 11_000, `stop() took ${took} ms for an 8000 ms deadline`);
    assert.equal(p.state(), 'stopped');
    assert.deepEqual(p.trace.slice(START.length), ['state:stopping', 'onHalt', 'afterStop connected=consumer', 'state:stopped']);
    assert.deepEqual(p.connectedClients(), ['consumer'], 'the producer and admin are cut; kafkajs lets the consumer go after its batch');

    p.trace.length = 0;
    const restarted = p.start(); // on fresh clients; it joins the group once the stuck consumer has left it
    p.release();
    await restarted;
    assert.deepEqual(p.trace, START);
    await publish(brokers, topic, [{ key: 'k', value: 'next' }]);
    await until('the next message kept', () => p.kept.includes('next'));
    const stopping = Date.now();
    await p.stop();
    t.diagnostic(`an ordinary stop took ${Date.now() - stopping} ms`);
  });

  test('a crash kafkajs does not restart fails the component and releases every client; start() works again', async () => {
    const { p, topic } = probe('component-crash');
    await createTopics(brokers, [topic], 1);
    const crashes: string[] = [];
    p.on('clientError', ({ kind }: { kind: string }) => crashes.push(kind));
    p.crashWith = Object.assign(new Error('this batch can never succeed'), { retriable: false });
    await p.start();
    await publish(brokers, topic, [{ key: 'k', value: 'poison' }]);
    await until('the component failed', () => p.state() === 'failed', { timeoutMs: 30_000 });
    assert.deepEqual(p.trace, [...START, 'onHalt', 'state:failed']);
    assert.deepEqual(crashes, ['consumer_crash']);
    assert.deepEqual(p.connectedClients(), []);

    p.crashWith = null;
    p.trace.length = 0;
    await p.start();
    assert.deepEqual(p.trace, START);
    await until('the message kept on the second run', () => p.kept.includes('poison'));
    await p.stop();
  });
});
