/**
 * Issue 12, defects 1, 4 and 5: inputs that once stopped the pipeline (or silently lost a flag) on
 * a real broker. Each must end as a decision or a dead letter while the messages after it are
 * decided and /readyz stays 200. Only JSON.parse and the Kafka tools are used to read the outputs,
 * so the test says the same thing about any version of the pipeline.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../../src/screening/server.js';
import { collect, createTopics, publish, type TopicCollector } from '../../../src/kafka/tools.js';
import { pngOf } from '../../helpers/images.js';
import { kafkaBrokers, uniqueTopics } from '../../helpers/kafka.js';
import { startKafkaTestServer } from '../../helpers/server.js';

const crawled = (id: string, imageBase64: string, extra: Record<string, unknown> = {}) => ({
  schema: 'images.crawled/v1', id, imageBase64,
  listing: { url: `https://market.example/item/${id}`, platform: 'example-market', title: `item ${id}` },
  crawledAt: new Date().toISOString(), ...extra,
});

/** A valid crawled message of about `total` bytes: a small inline PNG and listing context to fill it. */
function nearLimit(id: string, photo: string, total: number): string {
  const base = JSON.stringify(crawled(id, photo, { meta: { description: '' } }));
  return JSON.stringify(crawled(id, photo, { meta: { description: 'x'.repeat(total - base.length) } }));
}

/** meta nested `depth` objects deep, written as text (building it as an object would need the same recursion). */
const deeplyNested = (id: string, photo: string, depth: number) =>
  JSON.stringify(crawled(id, photo)).replace(/}$/, `,"meta":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`);

type Json = Record<string, any>;

async function readyz(server: RunningServer): Promise<number> {
  return (await fetch(`${server.url}/readyz`)).status;
}

describe('no single Kafka message stops the pipeline (real broker)', () => {
  let brokers: string[];
  let server: RunningServer;
  let outputs: TopicCollector;
  let photo: string;
  const names = uniqueTopics('oversized');

  before(async () => {
    brokers = await kafkaBrokers();
    photo = (await pngOf(64, 64)).toString('base64');
    server = await startKafkaTestServer({ kafka: { brokers, ...names, partitions: 1, maxAttempts: 3, retryBackoffMs: 50 } });
    outputs = await collect(brokers, [names.topics.results, names.topics.review, names.topics.dlq]);
  });
  after(async () => {
    await outputs?.close();
    await server?.close();
  });

  test('a message just under 1 MiB is decided without its listing metadata, says so, and the next message is decided too', async () => {
    const big = nearLimit('big', photo, 1_040_000);
    assert.ok(Buffer.byteLength(big) > 1_000_000 && Buffer.byteLength(big) < 1_048_576);
    await publish(brokers, names.topics.input, [{ key: 'big', value: big }, { key: 'after-big', value: JSON.stringify(crawled('after-big', photo)) }]);
    const records = await outputs.waitFor((r) => r.some((x) => x.key === 'after-big' && x.topic === names.topics.results), 60_000);
    const decision = records.find((x) => x.key === 'big' && x.topic === names.topics.results);
    assert.ok(decision, 'the big message has a decision');
    const d = JSON.parse(decision.value) as Json;
    assert.equal(d.meta, undefined, 'the oversized metadata is left out');
    assert.equal(d.omitted?.[0]?.field, 'meta');
    assert.ok(d.omitted[0].bytes > 1_000_000);
    assert.ok(Buffer.byteLength(decision.value) <= 1_000_000);
    assert.equal(server.kafka?.state(), 'running');
    assert.equal(await readyz(server), 200);
  });

  test('invalid UTF-8, nesting 10,000 deep and an impossible crawledAt are dead-lettered at once, each with its reason', async () => {
    const invalidUtf8 = Buffer.concat([Buffer.from(JSON.stringify(crawled('bad-utf8', photo, { meta: { note: '' } })).replace('"note":""', '"note":"')), Buffer.alloc(420 * 1024, 0xff), Buffer.from('"}}')]);
    await publish(brokers, names.topics.input, [
      { key: 'bad-utf8', value: invalidUtf8 },
      { key: 'deep', value: deeplyNested('deep', photo, 10_000) },
      { key: 'bad-date', value: JSON.stringify(crawled('bad-date', photo, { crawledAt: '2025-13-45T99:99:99Z' })) },
      { key: 'after-bad', value: JSON.stringify(crawled('after-bad', photo)) },
    ]);
    const records = await outputs.waitFor((r) => r.some((x) => x.key === 'after-bad' && x.topic === names.topics.results) && ['bad-utf8', 'deep', 'bad-date'].every((k) => r.some((x) => x.key === k && x.topic === names.topics.dlq)), 60_000);
    const letter = (key: string) => JSON.parse(records.find((x) => x.key === key && x.topic === names.topics.dlq)!.value) as Json;
    assert.equal(letter('bad-utf8').code, 'MESSAGE_INVALID');
    assert.match(letter('bad-utf8').reason, /^not UTF-8/);
    assert.ok(Buffer.byteLength(records.find((x) => x.key === 'bad-utf8' && x.topic === names.topics.dlq)!.value) <= 1_000_000);
    assert.equal(letter('deep').code, 'MESSAGE_INVALID');
    assert.equal(letter('deep').attempts, 1, 'dead-lettered at once, not retried');
    assert.match(letter('deep').reason, /nested deeper than/);
    assert.equal(letter('bad-date').code, 'MESSAGE_INVALID');
    assert.match(letter('bad-date').reason, /crawledAt/);
    for (const key of ['bad-utf8', 'deep', 'bad-date']) {
      assert.ok(!records.some((x) => x.key === key && x.topic !== names.topics.dlq), `${key} has no decision`);
    }
    assert.equal(server.kafka?.state(), 'running');
    assert.equal(await readyz(server), 200);
  });
});

describe('records the broker refuses although they fit kafka.maxRecordBytes (real broker, topic limits below the budget)', () => {
  test('a decision too big for its topic goes without its listing metadata, on every partition at once, and the pipeline keeps running', async () => {
    const brokers = await kafkaBrokers();
    const names = uniqueTopics('refused');
    // The results topic takes 64 KiB records at most, as a cluster with a stricter topic setting would.
    await createTopics(brokers, [names.topics.results], 1, { 'max.message.bytes': String(64 * 1024) });
    // Three input partitions consumed at once: a refusal on one must not break the others' sends.
    const server = await startKafkaTestServer({ kafka: { brokers, ...names, partitions: 3, partitionsConsumedConcurrently: 3, concurrency: 2 } });
    const outputs = await collect(brokers, [names.topics.results, names.topics.dlq]);
    try {
      const photo = (await pngOf(64, 64, { r: 30, g: 160, b: 90 })).toString('base64');
      const padded = Array.from({ length: 6 }, (_, i) => ({ key: `padded-${i}`, value: nearLimit(`padded-${i}`, photo, 200_000) }));
      const small = Array.from({ length: 30 }, (_, i) => ({ key: `small-${i}`, value: JSON.stringify(crawled(`small-${i}`, photo)) }));
      await publish(brokers, names.topics.input, [...padded, ...small]);
      const keys = [...padded, ...small].map((m) => m.key);
      const records = await outputs.waitFor((r) => keys.every((k) => r.some((x) => x.key === k && x.topic === names.topics.results)), 90_000);
      for (const { key } of padded) {
        const d = JSON.parse(records.find((x) => x.key === key && x.topic === names.topics.results)!.value) as Json;
        assert.equal(d.meta, undefined, key);
        assert.equal(d.omitted?.[0]?.field, 'meta', key);
      }
      assert.ok(!records.some((x) => x.topic === names.topics.dlq), 'nothing dead-lettered');
      assert.equal(server.kafka?.state(), 'running');
      assert.equal(await readyz(server), 200);
    } finally {
      await outputs.close();
      await server.close();
    }
  });

  test('what cannot fit at all is dead-lettered (RECORD_TOO_LARGE with the broker\'s reason; a refused dead letter goes smaller, keeping its own reason)', async () => {
    const brokers = await kafkaBrokers();
    const names = uniqueTopics('refused-dlq');
    // No decision fits 512 bytes; dead letters get 64 KiB.
    await createTopics(brokers, [names.topics.results], 1, { 'max.message.bytes': '512' });
    await createTopics(brokers, [names.topics.dlq], 1, { 'max.message.bytes': String(64 * 1024) });
    const server = await startKafkaTestServer({ kafka: { brokers, ...names, partitions: 1 } });
    const outputs = await collect(brokers, [names.topics.dlq]);
    try {
      const photo = (await pngOf(64, 64)).toString('base64');
      await publish(brokers, names.topics.input, [
        { key: 'nothing-fits', value: JSON.stringify(crawled('nothing-fits', photo)) },
        // Invalid (no listing) and 300 KB: its first dead letter carries 256 KiB of it, over the DLQ's limit.
        { key: 'invalid-and-big', value: JSON.stringify({ id: 'invalid-and-big', imageBase64: photo, crawledAt: new Date().toISOString(), meta: { pad: 'y'.repeat(300_000) } }) },
      ]);
      const records = await outputs.waitFor((r) => ['nothing-fits', 'invalid-and-big'].every((k) => r.some((x) => x.key === k)), 60_000);
      const letter = (key: string) => JSON.parse(records.find((x) => x.key === key)!.value) as Json;
      assert.equal(letter('nothing-fits').code, 'RECORD_TOO_LARGE');
      assert.equal(letter('nothing-fits').retriable, false);
      assert.match(letter('nothing-fits').reason, /larger than the max message size/);
      assert.equal(letter('invalid-and-big').code, 'MESSAGE_INVALID', 'a smaller copy of a dead letter keeps its reason');
      assert.match(letter('invalid-and-big').reason, /listing/);
      assert.equal(letter('invalid-and-big').original.truncated, true);
      assert.equal(server.kafka?.state(), 'running');
      assert.equal(await readyz(server), 200);
    } finally {
      await outputs.close();
      await server.close();
    }
  });
});
