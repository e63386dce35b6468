import assert from 'node:assert/strict';
import { freePort } from '../../helpers/ports.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO_ROOT } from '../../../src/config.js';
import type { RunningServer } from '../../../src/screening/server.js';
import { collect, publish, type TopicCollector } from '../../../src/kafka/tools.js';
import { jpegOf } from '../../helpers/images.js';
import { kafkaBrokers, kafkaScript, uniqueTopics } from '../../helpers/kafka.js';
import { startKafkaTestServer, TEST_MODEL_DIRS } from '../../helpers/server.js';

async function messages(prefix: string, count: number) {
  return Promise.all(Array.from({ length: count }, async (_, i) => ({
    key: `${prefix}${i}`,
    value: JSON.stringify({
      id: `${prefix}${i}`,
      imageBase64: (await jpegOf(i % 3 ? 'spotted_skin' : 'plain_ceramic', 90 + (i % 20), 90, 1000 + i)).toString('base64'),
      listing: { url: `https://market.example/${prefix}${i}`, platform: 'example-market' },
      crawledAt: new Date().toISOString(),
    }),
  })));
}

const decidedIds = (collector: TopicCollector, topic: string) => collector.records.filter((r) => r.topic === topic).map((r) => r.key!);


describe('Kafka delivery survives failures', () => {
  let brokers: string[];
  let tmp: string;
  before(async () => {
    brokers = await kafkaBrokers();
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-kafka-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('kill -9 of the service mid-stream loses nothing: after a restart every input has a decision', async (t) => {
    const names = uniqueTopics('kill');
    const configFile = path.join(tmp, 'kill.yaml');
    await writeFile(configFile, JSON.stringify({
      models: { directories: TEST_MODEL_DIRS },
      kafka: { ...names, partitions: 2, concurrency: 4 },
    }));
    const port = await freePort();
    const startService = (): ChildProcess => spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/main.ts')], {
      env: { ...process.env, PORT: String(port), CONFIG_FILE: configFile, KAFKA_BROKERS: brokers.join(','), LOG_LEVEL: 'error' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const waitReady = async () => {
      for (let i = 0; i < 240; i++) {
        try {
          if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return;
        } catch { /* starting */ }
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new Error('service not ready');
    };
    const input = await messages('k', 60);
    const outputs = await collect(brokers, [names.topics.results, names.topics.dlq]);
    let child = startService();
    try {
      await waitReady();
      await publish(brokers, names.topics.input, input);
      await outputs.waitFor((r) => r.filter((x) => x.topic === names.topics.results).length >= 5, 60_000);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const beforeRestart = new Set(decidedIds(outputs, names.topics.results)).size;
      child = startService();
      await waitReady();
      await outputs.waitFor(() => input.every((m) => decidedIds(outputs, names.topics.results).includes(m.key)), 120_000);
      const all = decidedIds(outputs, names.topics.results);
      t.diagnostic(`${beforeRestart} of 60 decided before kill -9; after restart all 60 decided, ${all.length - 60} duplicate decision(s) (at-least-once)`);
      assert.equal(decidedIds(outputs, names.topics.dlq).length, 0);
      // A graceful stop drains and exits cleanly within the shutdown deadline.
      child.kill('SIGTERM');
      const code = await new Promise((r) => child.once('exit', r));
      assert.equal(code, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await outputs.close();
    }
  });

  test('a broker restart mid-stream: the service recovers by itself and every input is decided', async (t) => {
    const status = await kafkaScript('status').catch(() => '');
    if (!status.includes(`KAFKA_BROKERS=${brokers.join(',')}`)) {
      t.skip('the broker was not started by scripts/kafka.sh, so this test cannot restart it');
      return;
    }
    const names = uniqueTopics('restart');
    const server: RunningServer = await startKafkaTestServer({ kafka: { brokers, ...names, partitions: 2, concurrency: 4 } });
    const outputs = await collect(brokers, [names.topics.results]);
    try {
      const input = await messages('r', 40);
      await publish(brokers, names.topics.input, input);
      await outputs.waitFor((r) => r.length >= 3, 60_000);
      await kafkaScript('stop');
      await new Promise((r) => setTimeout(r, 2000));
      await kafkaScript('start');
      await outputs.waitFor(() => input.every((m) => decidedIds(outputs, names.topics.results).includes(m.key)), 180_000);
      t.diagnostic(`all 40 decided across a broker restart (${decidedIds(outputs, names.topics.results).length - 40} duplicates)`);
      assert.ok(['running', 'paused'].includes(server.kafka!.state()));
    } finally {
      await outputs.close().catch(() => undefined);
      await server.close();
    }
  });
});
