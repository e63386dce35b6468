/**
 * npm run loadtest:kafka [-- --model DIR] [--messages N] [--seconds S]
 * In one run: the HTTP path's images/s (concurrency 8, S seconds), then N crawled-image messages
 * (inline Met photos) through the real broker, reporting sustained decisions/s, peak consumer lag
 * and the ratio Kafka ÷ HTTP. Starts the broker with scripts/kafka.sh unless KAFKA_BROKERS is set.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../src/config.js';
import { discoverModelDirectories } from '../src/model/registry.js';
import { collect, createTopics, publish } from '../src/kafka/tools.js';
import { fixturePhotos, httpLoad, startService } from './lib.js';

const args = process.argv.slice(2);
const flag = (name: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined; };

async function main() {
  const modelDir = flag('model') ?? (await discoverModelDirectories(path.join(REPO_ROOT, 'models')))[0]!;
  const count = Number(flag('messages') ?? 400);
  const seconds = Number(flag('seconds') ?? 10);
  const brokers = process.env.KAFKA_BROKERS ?? /KAFKA_BROKERS=(\S+)/.exec(execFileSync('bash', [path.join(REPO_ROOT, 'scripts/kafka.sh'), 'start'], { encoding: 'utf8' }))![1]!;
  const suffix = `load.${Date.now().toString(36)}`;
  const topics = { input: `crawled.${suffix}`, results: `screened.${suffix}`, review: `flagged.${suffix}`, dlq: `dlq.${suffix}` };
  const configFile = path.join(await mkdtemp(path.join(os.tmpdir(), 'wildlife-load-')), 'config.yaml');
  // Same settings as the HTTP benchmark (cache off), plus the Kafka topics of this run.
  await writeFile(configFile, JSON.stringify({ server: { requestTimeoutMs: 60000 }, batching: { defaultTimeoutMs: 60000 }, cache: { maxEntries: 0 }, kafka: { groupId: `load-${suffix}`, topics, partitions: 3 } }));
  await createTopics([brokers], Object.values(topics));
  const { url, child } = await startService(modelDir, true, { KAFKA_BROKERS: brokers, CONFIG_FILE: configFile });
  try {
    const photos = await fixturePhotos();
    await httpLoad(url, photos, 2, 2);
    const http = await httpLoad(url, photos, 8, seconds);
    const results = await collect([brokers], [topics.results, topics.dlq]);
    const messages = Array.from({ length: count }, (_, i) => ({
      key: `m${i}`,
      value: JSON.stringify({ id: `m${i}`, imageBase64: photos[i % photos.length]!.toString('base64'), listing: { url: `https://market.example/${i}`, platform: 'loadtest' }, crawledAt: new Date().toISOString() }),
    }));
    const started = performance.now();
    await publish([brokers], topics.input, messages);
    let peakLag = 0;
    const sampler = setInterval(async () => {
      const text = await (await fetch(`${url}/metrics`)).text().catch(() => '');
      const lag = [...text.matchAll(/^wildlife_kafka_consumer_lag\{[^}]*\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
      peakLag = Math.max(peakLag, lag);
    }, 1000);
    await results.waitFor((r) => new Set(r.map((x) => x.key)).size >= count, 30 * 60_000);
    const elapsed = (performance.now() - started) / 1000;
    clearInterval(sampler);
    await results.close();
    const kafkaRate = count / elapsed;
    process.stdout.write([
      `model ${path.basename(modelDir)}, ${count} messages, broker ${brokers}`,
      `HTTP path (concurrency 8, ${seconds} s): ${http.imagesPerSecond.toFixed(1)} images/s, p99 ${http.p99.toFixed(0)} ms`,
      `Kafka path: ${count} decisions in ${elapsed.toFixed(1)} s = ${kafkaRate.toFixed(1)} decisions/s (publish to last decision), peak lag ${peakLag}`,
      `Kafka ÷ HTTP: ${(kafkaRate / http.imagesPerSecond).toFixed(2)}`,
    ].join('\n') + '\n');
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
