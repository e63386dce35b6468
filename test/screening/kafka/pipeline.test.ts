import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { REPO_ROOT } from '../../../src/config.js';
import { readPool } from '../../../src/screening/pool.js';
import type { RunningServer } from '../../../src/screening/server.js';
import { collect, publish, type TopicCollector } from '../../../src/kafka/tools.js';
import { parseDeadLetter, parseFlagged, parseScreened } from '../../../src/contracts/index.js';
import { jpegOf } from '../../helpers/images.js';
import { kafkaBrokers, uniqueTopics } from '../../helpers/kafka.js';
import { startKafkaTestServer, startTestServer } from '../../helpers/server.js';

const listing = (i: number | string) => ({ url: `https://market.example/item/${i}`, platform: 'example-market', title: `carving ${i}`, seller: 's1' });
const crawled = (id: string, image: { url?: string; imageBase64?: string }) => JSON.stringify({ schema: 'images.crawled/v1', id, ...image, listing: listing(id), crawledAt: new Date().toISOString() });

describe('the Kafka pipeline on a real broker', () => {
  let brokers: string[];
  let server: RunningServer;
  let images: Server;
  let imagesUrl: string;
  let outputs: TopicCollector;
  let flakyHits = 0;
  let poolDir: string;
  const names = uniqueTopics('pipeline');

  before(async () => {
    brokers = await kafkaBrokers();
    const photo = await jpegOf('striped_skin', 140, 110, 8);
    images = createServer((req, res) => {
      if (req.url === '/ok.jpg') {
        res.writeHead(200, { 'content-type': 'image/jpeg' }).end(photo);
      } else if (req.url === '/flaky.jpg') {
        // Fails once, then works: a transient error the pipeline must retry, not dead-letter.
        if (flakyHits++ === 0) res.writeHead(503).end();
        else res.writeHead(200, { 'content-type': 'image/jpeg' }).end(photo);
      } // '/slow.jpg' never answers
    });
    await new Promise<void>((resolve) => images.listen(0, '127.0.0.1', resolve));
    imagesUrl = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
    poolDir = await mkdtemp(path.join(os.tmpdir(), 'wildlife-kafka-pool-'));
    server = await startKafkaTestServer({
      fetch: { allowlist: ['127.0.0.1'], timeoutMs: 400 },
      kafka: { brokers, ...names, partitions: 2, maxAttempts: 3, retryBackoffMs: 50, lagIntervalMs: 300 },
      pool: { enabled: true, directory: poolDir, sampleRate: 1, sources: ['kafka'] },
    });
    outputs = await collect(brokers, [names.topics.results, names.topics.review, names.topics.dlq]);
  });
  after(async () => {
    await outputs?.close();
    await server?.close();
    images?.closeAllConnections();
    await new Promise((resolve) => images?.close(resolve));
    await rm(poolDir, { recursive: true, force: true });
  });

  test('every valid message gets a decision, flagged ones reach the review topic, bad ones the DLQ with their reason', async () => {
    const messages: Array<{ key: string; value: string | Buffer }> = [
      // Poison first: it must not stall what follows in its partition.
      { key: 'p-notjson', value: '{"id": "p-notjson", ' },
      { key: 'p-schema', value: JSON.stringify({ id: 'p-schema', listing: listing('x') }) },
      { key: 'p-notimage', value: crawled('p-notimage', { imageBase64: Buffer.from('<html>not an image</html>').toString('base64') }) },
      { key: 'p-slow', value: crawled('p-slow', { url: `${imagesUrl}/slow.jpg` }) },
    ];
    for (let i = 0; i < 10; i++) {
      const bytes = await jpegOf(i % 2 ? 'spotted_skin' : 'plain_ceramic', 100 + i, 90, 200 + i);
      messages.push({ key: `v${i}`, value: crawled(`v${i}`, { imageBase64: bytes.toString('base64') }) });
    }
    messages.push({ key: 'u-ok', value: crawled('u-ok', { url: `${imagesUrl}/ok.jpg` }) });
    messages.push({ key: 'u-flaky', value: crawled('u-flaky', { url: `${imagesUrl}/flaky.jpg` }) });
    await publish(brokers, names.topics.input, messages);

    const validIds = messages.map((m) => m.key).filter((k) => !k.startsWith('p-'));
    const records = await outputs.waitFor((r) => {
      const results = new Set(r.filter((x) => x.topic === names.topics.results).map((x) => x.key));
      const dlq = new Set(r.filter((x) => x.topic === names.topics.dlq).map((x) => x.key));
      const flagged = r.filter((x) => x.topic === names.topics.results && (JSON.parse(x.value) as { flagged: boolean }).flagged).map((x) => x.key);
      const reviewed = new Set(r.filter((x) => x.topic === names.topics.review).map((x) => x.key));
      return validIds.every((id) => results.has(id)) && dlq.size >= 4 && flagged.every((id) => reviewed.has(id));
    }, 60_000);

    // Each record is read back with the very parser its consumer runs (the review console's for flags).
    const parserOf = { [names.topics.results]: parseScreened, [names.topics.review]: parseFlagged, [names.topics.dlq]: parseDeadLetter };
    for (const r of records) {
      const parsed = parserOf[r.topic]!(Buffer.from(r.value));
      assert.ok(parsed.ok, `${r.topic} ${r.key}: ${parsed.ok ? '' : parsed.reason}`);
    }
    const results = records.filter((r) => r.topic === names.topics.results).map((r) => JSON.parse(r.value) as Record<string, any>);
    const review = records.filter((r) => r.topic === names.topics.review).map((r) => JSON.parse(r.value) as Record<string, any>);
    const dlq = new Map(records.filter((r) => r.topic === names.topics.dlq).map((r) => [r.key, JSON.parse(r.value) as Record<string, any>]));

    assert.deepEqual([...new Set(results.map((d) => d.inputId))].sort(), validIds.sort());
    for (const d of results) {
      assert.equal(d.schema, 'images.screened/v1');
      assert.match(d.image.sha256, /^[0-9a-f]{64}$/);
      assert.equal(d.listing.platform, 'example-market');
      assert.ok(d.classifiers[0].name && d.classifiers[0].version);
      assert.ok(d.timings.crawlToDecisionMs >= 0);
    }
    const flaggedIds = results.filter((d) => d.flagged).map((d) => d.inputId).sort();
    assert.deepEqual([...new Set(review.map((d) => d.inputId))].sort(), [...new Set(flaggedIds)].sort());
    const sent = new Map(messages.filter((m) => !m.key.startsWith('p-')).map((m) => [m.key, JSON.parse(m.value as string) as { imageBase64?: string }]));
    for (const d of review) {
      assert.equal(d.schema, 'images.flagged/v1');
      assert.ok(d.reasons.length > 0 && d.reasons.every((r: any) => r.score >= r.threshold));
      // A photo that came inline exists nowhere else, so the flag carries it to the review console.
      assert.equal(d.image.base64, sent.get(d.inputId)?.imageBase64, `${d.inputId}: inline bytes ride with the flag, URL photos do not`);
      assert.equal(parseFlagged(Buffer.from(JSON.stringify(d))).ok, true, 'the console accepts what the pipeline flags');
    }
    assert.ok(review.some((d) => d.image.base64), 'some inline photo was flagged');

    assert.equal(dlq.get('p-notjson')?.code, 'MESSAGE_INVALID');
    assert.match(dlq.get('p-notjson')?.reason, /not JSON/);
    assert.equal(dlq.get('p-notjson')?.original.value, '{"id": "p-notjson", ');
    assert.equal(dlq.get('p-schema')?.code, 'MESSAGE_INVALID');
    assert.match(dlq.get('p-schema')?.reason, /crawledAt/);
    assert.equal(dlq.get('p-notimage')?.code, 'IMAGE_UNSUPPORTED_FORMAT');
    assert.equal(dlq.get('p-notimage')?.attempts, 1);
    assert.equal(dlq.get('p-slow')?.code, 'FETCH_TIMEOUT');
    assert.equal(dlq.get('p-slow')?.attempts, 3, 'a transient failure is retried before the DLQ');
    assert.ok(!dlq.has('u-flaky'), 'one 503 then success is not dead-lettered');
    assert.equal(dlq.get('p-slow')?.source.topic, names.topics.input);
  });

  test('photos sampled into the unlabeled pool keep their listing context', async () => {
    await server.service.settle();
    const entries = await readPool(poolDir);
    assert.ok(entries.length >= 10, `${entries.length} pool entries`);
    for (const e of entries) {
      assert.equal(e.source, 'kafka');
      assert.equal(e.meta.platform, 'example-market');
      assert.match(e.meta.listingId ?? '', /^(v\d|u-ok|u-flaky)/);
    }
    // u-ok and u-flaky serve the same bytes: the pool keeps whichever came first, once.
    const fromUrl = entries.filter((e) => e.meta.listingId?.startsWith('u-'));
    assert.equal(fromUrl.length, 1);
    assert.equal(fromUrl[0]!.meta.imageUrl, `${imagesUrl}/${fromUrl[0]!.meta.listingId === 'u-ok' ? 'ok' : 'flaky'}.jpg`);
  });

  test('/readyz and /metrics report the pipeline', async () => {
    const ready = (await (await fetch(`${server.url}/readyz`)).json()) as { components: Record<string, string> };
    assert.equal(ready.components.kafka, 'running');
    const text = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(text, /wildlife_kafka_messages_total\{outcome="dead_lettered",code="MESSAGE_INVALID"\} 2/);
    // p-slow is retried twice; on a loaded machine another fetch may also hit the 400 ms timeout once.
    assert.match(text, /wildlife_kafka_messages_total\{outcome="retried",code="FETCH_TIMEOUT"\} ([2-9]|\d{2,})\n/);
    assert.match(text, /wildlife_kafka_pipeline_state\{state="running"\} 1/);
    assert.match(text, /wildlife_kafka_crawl_to_decision_seconds_count [1-9]/);
    assert.match(text, new RegExp(`wildlife_kafka_consumer_lag\\{topic="${names.topics.input.replaceAll('.', '\\.')}",partition="[01]"\\} 0`));
    assert.match(text, /wildlife_images_screened_total\{source="kafka",flagged="(true|false)"\} \d+/);
  });

  test('a repost of a crawled photo at half size is decided as a near-duplicate, and its decision names the photo screened', async () => {
    const original = await readFile(path.join(REPO_ROOT, 'test/fixtures/met/ivory_209842.jpg'));
    const repost = await sharp(original).resize(98).jpeg({ quality: 75 }).toBuffer();
    const decided = async (id: string, bytes: Buffer) => {
      await publish(brokers, names.topics.input, [{ key: id, value: crawled(id, { imageBase64: bytes.toString('base64') }) }]);
      const records = await outputs.waitFor((r) => r.some((x) => x.topic === names.topics.results && x.key === id), 30_000);
      const record = records.find((x) => x.topic === names.topics.results && x.key === id)!;
      const parsed = parseScreened(Buffer.from(record.value));
      assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
      return parsed.message;
    };
    const first = await decided('near-original', original);
    const second = await decided('near-repost', repost);
    assert.equal(first.near, undefined);
    assert.equal(second.image.sha256, createHash('sha256').update(repost).digest('hex'), 'the photo under image is the one crawled');
    assert.equal(second.near?.sha256, first.image.sha256);
    assert.ok(Number.isInteger(second.near?.distance));
    assert.deepEqual([second.flagged, second.reasons], [first.flagged, first.reasons]);
  });
});

describe('Kafka backpressure', () => {
  test('the input pauses while the bulk queue is above the high-water mark and resumes below the low one', async () => {
    const brokers = await kafkaBrokers();
    const names = uniqueTopics('pressure');
    const server = await startTestServer({
      batching: { maxBatchSize: 2, preferredBatchSizes: [2] },
      kafka: { brokers, ...names, partitions: 1, partitionsConsumedConcurrently: 1, concurrency: 16, highWater: 3, lowWater: 1 },
    });
    const states: string[] = [];
    server.kafka!.on('state', (e) => states.push(e.state));
    const outputs = await collect(brokers, [names.topics.results]);
    try {
      const input = await Promise.all(Array.from({ length: 48 }, async (_, i) => ({
        key: `b${i}`,
        value: crawled(`b${i}`, { imageBase64: (await jpegOf('spotted_skin', 96, 96, 500 + i)).toString('base64') }),
      })));
      await publish(brokers, names.topics.input, input);
      await outputs.waitFor((r) => new Set(r.map((x) => x.key)).size === 48, 90_000);
      assert.ok(states.includes('paused'), `states seen: ${states.join(' → ')}`);
      assert.equal(states.at(-1), 'running');
    } finally {
      await outputs.close();
      await server.close();
    }
  });
});
