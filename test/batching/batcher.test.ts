import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import {
  createBatcher,
  type BatchEvent,
  type BatcherOptions,
  type ExpiredEvent,
  type Lane,
  type RejectedEvent,
} from '../../src/batching/index.js';
import { AppError } from '../../src/errors.js';

/** Lets every pending promise callback run; setImmediate is never faked below. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Fakes setTimeout and the clock the batcher reads, so delays and deadlines are driven by tick()
 * instead of wall-clock time. Restored automatically when the test ends.
 */
function useFakeClock(t: TestContext): (ms: number) => void {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  t.mock.method(performance, 'now', () => Date.now());
  return (ms) => t.mock.timers.tick(ms);
}

interface Call {
  items: string[];
  lanes: Lane[];
  succeed(): void;
  fail(error: unknown): void;
}

/** An execute whose batches stay in flight until the test settles them. */
function gatedExecutor() {
  const calls: Call[] = [];
  let active = 0;
  let maxActive = 0;
  const execute = (items: string[], info: { lanes: Lane[] }) =>
    new Promise<string[]>((resolve, reject) => {
      maxActive = Math.max(maxActive, ++active);
      calls.push({
        items,
        lanes: info.lanes,
        succeed: () => (active--, resolve(items.map((i) => `out:${i}`))),
        fail: (error) => (active--, reject(error)),
      });
    });
  return { calls, execute, maxActive: () => maxActive };
}

function track<T>(promise: Promise<T>) {
  const s: { state: 'pending' | 'fulfilled' | 'rejected'; value?: T; error?: unknown } = { state: 'pending' };
  promise.then(
    (value) => Object.assign(s, { state: 'fulfilled', value }),
    (error: unknown) => Object.assign(s, { state: 'rejected', error }),
  );
  return s;
}

type Overrides = Partial<BatcherOptions<string, string>> & Pick<BatcherOptions<string, string>, 'execute'>;

function makeBatcher(overrides: Overrides) {
  const batcher = createBatcher<string, string>({
    maxBatchSize: 4,
    maxQueueDelayMs: 1000,
    maxQueueSize: 100,
    defaultTimeoutMs: 60_000,
    ...overrides,
  });
  const batches: BatchEvent[] = [];
  batcher.on('batch', (e) => batches.push(e));
  return { batcher, batches };
}

const isCode = (code: string) => (err: unknown) => err instanceof AppError && err.code === code;
const retryAfter = (err: unknown) => (err as { retryAfterSeconds?: unknown }).retryAfterSeconds;

describe('forming batches', () => {
  test('never puts more than maxBatchSize requests in one batch', async (t) => {
    const tick = useFakeClock(t);
    const ex = gatedExecutor();
    const { batcher, batches } = makeBatcher({ execute: ex.execute, maxBatchSize: 4 });
    const results = Array.from({ length: 10 }, (_, i) => batcher.submit(`r${i}`));
    assert.deepEqual(ex.calls.map((c) => c.items), [['r0', 'r1', 'r2', 'r3']]);
    ex.calls[0]!.succeed();
    await flush();
    assert.deepEqual(ex.calls[1]?.items, ['r4', 'r5', 'r6', 'r7']);
    ex.calls[1]!.succeed();
    await flush();
    assert.equal(ex.calls.length, 2, 'two leftovers wait for the delay');
    tick(1000);
    assert.deepEqual(ex.calls[2]?.items, ['r8', 'r9']);
    ex.calls[2]!.succeed();
    assert.deepEqual(await Promise.all(results), Array.from({ length: 10 }, (_, i) => `out:r${i}`));
    assert.deepEqual(batches.map((b) => b.size), [4, 4, 2]);
  });

  test('dispatches as soon as the queue reaches a preferred size', (t) => {
    useFakeClock(t);
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxBatchSize: 8, preferredBatchSizes: [3] });
    void batcher.submit('a');
    void batcher.submit('b');
    assert.equal(ex.calls.length, 0);
    void batcher.submit('c');
    assert.deepEqual(ex.calls.map((c) => c.items), [['a', 'b', 'c']]);
  });

  test('takes the largest preferred size that fits when more requests are waiting', async (t) => {
    const tick = useFakeClock(t);
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxBatchSize: 8, preferredBatchSizes: [2, 4] });
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) void batcher.submit(id);
    assert.deepEqual(ex.calls.map((c) => c.items), [['a', 'b']]);
    ex.calls[0]!.succeed();
    await flush();
    assert.deepEqual(ex.calls[1]?.items, ['c', 'd', 'e', 'f']);
    ex.calls[1]!.succeed();
    await flush();
    assert.equal(ex.calls.length, 2, 'a single request matches no preferred size');
    tick(1000);
    assert.deepEqual(ex.calls[2]?.items, ['g']);
  });

  test('measures the queue delay from the oldest waiting request', (t) => {
    const tick = useFakeClock(t);
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxBatchSize: 8, maxQueueDelayMs: 50, maxConcurrentBatches: 2 });
    void batcher.submit('at0');
    tick(30);
    void batcher.submit('at30');
    tick(19);
    assert.equal(ex.calls.length, 0);
    tick(1); // t = 50: the oldest has waited 50 ms, the newer one only 20
    assert.deepEqual(ex.calls.map((c) => c.items), [['at0', 'at30']]);
    tick(10);
    void batcher.submit('at60');
    tick(49);
    assert.equal(ex.calls.length, 1);
    tick(1);
    assert.deepEqual(ex.calls[1]?.items, ['at60']);
  });

  test('starts the delay clock at the oldest request in either lane', (t) => {
    const tick = useFakeClock(t);
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxBatchSize: 8, maxQueueDelayMs: 50 });
    void batcher.submit('bulk0', { lane: 'bulk' });
    tick(30);
    void batcher.submit('int30');
    tick(20);
    assert.deepEqual(ex.calls.map((c) => c.items), [['int30', 'bulk0']]);
  });

  test('takes interactive requests ahead of bulk ones, each lane in arrival order', async () => {
    const ex = gatedExecutor();
    const { batcher, batches } = makeBatcher({ execute: ex.execute, maxBatchSize: 3, maxQueueDelayMs: 0 });
    void batcher.submit('blocker');
    void batcher.submit('b1', { lane: 'bulk' });
    void batcher.submit('b2', { lane: 'bulk' });
    void batcher.submit('i1');
    void batcher.submit('b3', { lane: 'bulk' });
    void batcher.submit('i2', { lane: 'interactive' });
    assert.deepEqual(batcher.stats().queuedByLane, { interactive: 2, bulk: 3 });
    ex.calls[0]!.succeed();
    await flush();
    assert.deepEqual(ex.calls[1]?.items, ['i1', 'i2', 'b1']);
    assert.deepEqual(ex.calls[1]?.lanes, ['interactive', 'interactive', 'bulk']);
    ex.calls[1]!.succeed();
    await flush();
    assert.deepEqual(ex.calls[2]?.items, ['b2', 'b3']);
    assert.deepEqual(batches[1]?.lanes, ['interactive', 'interactive', 'bulk']);
  });

  test('dispatches overdue work immediately when a running batch frees its slot', async (t) => {
    const tick = useFakeClock(t);
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxBatchSize: 2, maxQueueDelayMs: 50 });
    void batcher.submit('a');
    void batcher.submit('b');
    void batcher.submit('late');
    tick(100);
    assert.equal(ex.calls.length, 1, 'the only slot is busy');
    ex.calls[0]!.succeed();
    await flush();
    assert.deepEqual(ex.calls[1]?.items, ['late']);
  });
});

describe('capacity and deadlines', () => {
  test('rejects with QUEUE_FULL and a retryAfterSeconds estimate once the queue is full', async (t) => {
    const tick = useFakeClock(t);
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxBatchSize: 1, maxQueueSize: 2, maxQueueDelayMs: 0 });
    const rejected: RejectedEvent[] = [];
    batcher.on('rejected', (e) => rejected.push(e));
    void batcher.submit('w');
    void batcher.submit('x');
    void batcher.submit('y');
    const first = track(batcher.submit('z'));
    await flush();
    assert.ok(isCode('QUEUE_FULL')(first.error));
    assert.equal(retryAfter(first.error), 1, 'no history yet');

    tick(3000);
    ex.calls[0]!.succeed(); // one 3 s batch of history; 'x' starts, 'y' still waits
    await flush();
    void batcher.submit('y2');
    const second = track(batcher.submit('z2'));
    await flush();
    assert.ok(isCode('QUEUE_FULL')(second.error));
    // Two queued batches plus the one in flight, 3 s each, on one slot.
    assert.equal(retryAfter(second.error), 9);
    assert.deepEqual(rejected.map((e) => [e.code, e.retryAfterSeconds]), [['QUEUE_FULL', 1], ['QUEUE_FULL', 9]]);
    assert.equal(batcher.stats().queued, 2);
  });

  test('rejects a request whose deadline passes while it is still queued', async (t) => {
    const tick = useFakeClock(t);
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxQueueDelayMs: 0, defaultTimeoutMs: 100 });
    const expired: ExpiredEvent[] = [];
    batcher.on('expired', (e) => expired.push(e));
    void batcher.submit('blocker');
    const waiting = track(batcher.submit('waiting', { lane: 'bulk' }));
    tick(99);
    await flush();
    assert.equal(waiting.state, 'pending');
    tick(1);
    await flush();
    assert.equal(waiting.state, 'rejected');
    assert.ok(isCode('DEADLINE_EXCEEDED')(waiting.error));
    assert.deepEqual(expired, [{ lane: 'bulk', reason: 'deadline', queueWaitMs: 100 }]);
    assert.equal(batcher.stats().queued, 0);
    ex.calls[0]!.succeed();
    await flush();
    assert.equal(ex.calls.length, 1, 'the expired request is never executed');
  });

  test('lets a request that is already executing finish after its deadline', async (t) => {
    const tick = useFakeClock(t);
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxQueueDelayMs: 0, defaultTimeoutMs: 100 });
    const running = track(batcher.submit('running'));
    tick(500);
    ex.calls[0]!.succeed();
    await flush();
    assert.deepEqual(running, { state: 'fulfilled', value: 'out:running' });
  });

  test('lets a per-request timeout shorten the default deadline but never extend it', async (t) => {
    const tick = useFakeClock(t);
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxQueueDelayMs: 0, defaultTimeoutMs: 100 });
    void batcher.submit('blocker');
    const short = track(batcher.submit('short', { timeoutMs: 40 }));
    const long = track(batcher.submit('long', { timeoutMs: 500 }));
    tick(40);
    await flush();
    assert.equal(short.state, 'rejected');
    assert.equal(long.state, 'pending');
    tick(60);
    await flush();
    assert.equal(long.state, 'rejected', 'capped at defaultTimeoutMs');
    assert.ok(isCode('DEADLINE_EXCEEDED')(long.error));
  });

  test('removes a queued request whose signal aborts, keeping the reason as the cause', async () => {
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxQueueDelayMs: 0 });
    void batcher.submit('blocker');
    const controller = new AbortController();
    const cancelled = track(batcher.submit('cancelled', { signal: controller.signal }));
    const reason = new Error('client went away');
    controller.abort(reason);
    await flush();
    assert.equal(cancelled.state, 'rejected');
    assert.ok(isCode('DEADLINE_EXCEEDED')(cancelled.error));
    assert.equal((cancelled.error as Error).cause, reason);
    assert.equal(batcher.stats().queued, 0);
    await assert.rejects(batcher.submit('pre-aborted', { signal: AbortSignal.abort() }), isCode('DEADLINE_EXCEEDED'));
  });
});

describe('execution', () => {
  test('rejects every request of a failed batch with the execute error and still serves the next batch', async () => {
    const ex = gatedExecutor();
    const { batcher, batches } = makeBatcher({ execute: ex.execute, maxBatchSize: 2 });
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((id) => track(batcher.submit(id)));
    const boom = new Error('onnx exploded');
    ex.calls[0]!.fail(boom);
    await flush();
    for (const failed of [a, b]) {
      assert.equal(failed?.state, 'rejected');
      assert.ok(isCode('INFERENCE_FAILED')(failed?.error));
      assert.equal((failed?.error as Error).cause, boom);
    }
    assert.equal(c?.state, 'pending');
    assert.deepEqual(ex.calls[1]?.items, ['c', 'd']);
    ex.calls[1]!.succeed();
    await flush();
    assert.deepEqual([c?.value, d?.value], ['out:c', 'out:d']);
    assert.deepEqual(batches.map((e) => [e.ok, e.errorCode]), [[false, 'INFERENCE_FAILED'], [true, undefined]]);
  });

  test('passes a AppError thrown by execute through unchanged', async () => {
    const thrown = new AppError('MODEL_SHAPE_MISMATCH', 'bad output');
    const { batcher } = makeBatcher({ maxQueueDelayMs: 0, execute: () => Promise.reject(thrown) });
    await assert.rejects(batcher.submit('x'), (err) => err === thrown);
  });

  test('never runs more than maxConcurrentBatches batches at once', async () => {
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxBatchSize: 1, maxQueueDelayMs: 0, maxConcurrentBatches: 2 });
    const results = ['a', 'b', 'c', 'd', 'e'].map((id) => batcher.submit(id));
    assert.equal(ex.calls.length, 2);
    assert.deepEqual([batcher.stats().inFlightBatches, batcher.stats().queued], [2, 3]);
    for (let i = 0; i < 5; i++) {
      ex.calls[i]!.succeed();
      await flush();
    }
    assert.deepEqual(await Promise.all(results), ['out:a', 'out:b', 'out:c', 'out:d', 'out:e']);
    assert.equal(ex.maxActive(), 2);
  });
});

describe('lifecycle', () => {
  test('drain() finishes queued and in-flight work, then refuses new requests with SHUTTING_DOWN', async (t) => {
    useFakeClock(t);
    const ex = gatedExecutor();
    const { batcher } = makeBatcher({ execute: ex.execute, maxBatchSize: 2 });
    const results = ['a', 'b', 'c'].map((id) => track(batcher.submit(id)));
    const drained = track(batcher.drain());
    const late = track(batcher.submit('late'));
    await flush();
    assert.ok(isCode('SHUTTING_DOWN')(late.error));
    assert.equal(batcher.stats().closed, true);
    ex.calls[0]!.succeed();
    await flush();
    assert.deepEqual(ex.calls[1]?.items, ['c'], 'queued work goes out without waiting for the delay');
    assert.equal(drained.state, 'pending');
    ex.calls[1]!.succeed();
    await flush();
    assert.equal(drained.state, 'fulfilled');
    assert.deepEqual(results.map((r) => r.value), ['out:a', 'out:b', 'out:c']);
  });

  test('leaves no timers running when idle or after drain()', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const batcher = createBatcher<string, string>({
      maxBatchSize: 4,
      maxQueueDelayMs: 5_000,
      maxQueueSize: 10,
      defaultTimeoutMs: 60_000,
      execute: async (items) => items,
    });
    const first = batcher.submit('a');
    assert.equal(timers(), before + 1, 'a waiting request arms one timer');
    void batcher.submit('b', { lane: 'bulk', timeoutMs: 30_000 });
    assert.equal(timers(), before + 1, 'still one timer, not one per request');
    await batcher.drain();
    assert.equal(await first, 'a');
    assert.equal(timers(), before);
  });

  test('validates every option at creation and lists every problem in one TypeError', () => {
    const bad = {
      maxBatchSize: 0,
      maxQueueDelayMs: -1,
      maxQueueSize: 1.5,
      defaultTimeoutMs: Number.NaN,
      maxConcurrentBatches: 0,
      execute: 'nope',
    } as unknown as BatcherOptions<string, string>;
    assert.throws(
      () => createBatcher(bad),
      (err: unknown) => {
        assert.ok(err instanceof TypeError && !(err instanceof AppError));
        for (const name of ['maxBatchSize', 'maxQueueDelayMs', 'maxQueueSize', 'defaultTimeoutMs', 'maxConcurrentBatches', 'execute']) {
          assert.match(err.message, new RegExp(`${name} must`));
        }
        return true;
      },
    );
    const inconsistent: BatcherOptions<string, string> = {
      maxBatchSize: 4,
      preferredBatchSizes: [0, 8, 2, 2],
      maxQueueDelayMs: 100,
      maxQueueSize: 3,
      defaultTimeoutMs: 100,
      execute: async (items) => items,
    };
    assert.throws(
      () => createBatcher(inconsistent),
      (err: unknown) => {
        assert.ok(err instanceof TypeError);
        assert.match(err.message, /entries must be positive integers \(got 0\)/);
        assert.match(err.message, /entry 8 exceeds maxBatchSize/);
        assert.match(err.message, /lists 2 more than once/);
        assert.match(err.message, /maxQueueSize \(3\) must be at least maxBatchSize/);
        assert.match(err.message, /defaultTimeoutMs \(100\) must be greater than maxQueueDelayMs/);
        return true;
      },
    );
  });
});
