/**
 * npm run kafka:produce -- photo.jpg|URL [--listing URL] [--platform NAME] [--id ID]
 *                          [--brokers host:port[,…]] [--topic T]
 * Sends one images.crawled/v1 message, as a crawler would: a local file inline (imageBase64), a URL
 * as `url`. The message is checked with the pipeline's own parser and a file with the service's
 * image header checks before anything is sent, so what would only be dead-lettered is refused
 * here, with its code. Prints one JSON line: {"id","key","topic","partition","offset","bytes"}.
 * Brokers and topic default to the service's (KAFKA_BROKERS, CONFIG_FILE); a missing topic is
 * created as the service would create it.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../../config.js';
import { CRAWLED_SCHEMA, parseCrawled, serializedBytes, type CrawledImage } from '../../contracts/index.js';
import { isAppError, AppError } from '../../errors.js';
import { inspectImage } from '../../preprocess/index.js';
import { sendOne } from '../../kafka/tools.js';

const USAGE = 'usage: npm run kafka:produce -- photo.jpg|URL [--listing URL] [--platform NAME] [--id ID] [--brokers host:port[,…]] [--topic T]';
const EXIT_USAGE = 2;
/** As the service: EX_CONFIG. */
const EXIT_CONFIG = 78;
/** Enough for a broker that is starting; an unreachable one fails in seconds, not minutes. */
const RETRIES = 3;

const isUrl = (input: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(input);

async function imageOf(input: string, limits: { maxBytes: number; maxPixels: number; minSide: number }): Promise<Pick<CrawledImage, 'url' | 'imageBase64'>> {
  if (isUrl(input)) {
    let url: URL;
    try {
      url = new URL(input);
    } catch {
      throw new AppError('URL_INVALID', input);
    }
    // The service would fetch nothing else and dead-letter the message.
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new AppError('URL_SCHEME_NOT_ALLOWED', `Got ${url.protocol.replace(/:$/, '')}.`);
    return { url: input };
  }
  const bytes = await readFile(input).catch((cause: unknown) => {
    throw new AppError('INPUT_NOT_READABLE', `${input}: ${(cause as Error).message}`, { cause });
  });
  try {
    await inspectImage(bytes, limits);
  } catch (err) {
    if (isAppError(err)) throw new AppError(err.code, `File: ${input}${err.details ? ` (${err.details})` : ''}.`, { cause: err });
    throw err;
  }
  return { imageBase64: bytes.toString('base64') };
}

/** The listing a message names: the given URL, else the image's own address. */
function listingOf(input: string, given: string | undefined, platform: string | undefined): CrawledImage['listing'] {
  const url = given ?? (isUrl(input) ? input : pathToFileURL(path.resolve(input)).href);
  let host = '';
  try {
    host = new URL(url).hostname;
  } catch {
    // Not a URL: the contract only asks for a string; the platform then says "local".
  }
  return { url, platform: platform ?? (host || 'local'), ...(isUrl(input) ? {} : { title: path.basename(input) }) };
}

async function main(argv: string[]): Promise<number> {
  const { values: flags, positionals } = (() => {
    try {
      return parseArgs({
        args: argv,
        allowPositionals: true,
        options: { listing: { type: 'string' }, platform: { type: 'string' }, id: { type: 'string' }, brokers: { type: 'string' }, topic: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      });
    } catch (err) {
      throw new AppError('CLI_USAGE', `${(err as Error).message}\n${USAGE}`);
    }
  })();
  if (flags.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new AppError('CLI_USAGE', `give one photo file or URL, got ${positionals.length}.\n${USAGE}`);
  const input = positionals[0]!;
  // The service's settings (KAFKA_BROKERS, CONFIG_FILE); its production rule on API keys does not concern this tool.
  const config = loadConfig({ ...process.env, NODE_ENV: undefined });

  const message: CrawledImage = {
    schema: CRAWLED_SCHEMA,
    id: flags.id ?? randomUUID(),
    ...(await imageOf(input, config.images)),
    listing: listingOf(input, flags.listing, flags.platform),
    crawledAt: new Date().toISOString(),
    meta: { producer: 'npm run kafka:produce' },
  };
  const value = JSON.stringify(message);
  const parsed = parseCrawled(Buffer.from(value));
  if (!parsed.ok) throw new AppError('MESSAGE_INVALID', parsed.reason);
  const bytes = serializedBytes(message.id) + serializedBytes(value);
  if (bytes > config.kafka.maxRecordBytes) {
    throw new AppError('IMAGE_TOO_LARGE', `inline, the message is ${bytes} bytes, over the ${config.kafka.maxRecordBytes}-byte record budget (kafka.maxRecordBytes); publish the photo's URL instead.`);
  }

  const brokers = flags.brokers ? flags.brokers.split(',').map((b) => b.trim()).filter(Boolean) : [...config.kafka.brokers];
  if (brokers.length === 0) throw new AppError('CLI_USAGE', `no brokers: pass --brokers host:port or set KAFKA_BROKERS (npm run kafka:start prints it).\n${USAGE}`);
  const topic = flags.topic ?? config.kafka.topics.input;
  let sent: Awaited<ReturnType<typeof sendOne>>;
  try {
    sent = await sendOne(brokers, topic, { key: message.id, value }, { retries: RETRIES, createTopic: { partitions: config.kafka.partitions, replicationFactor: config.kafka.replicationFactor } });
  } catch (cause) {
    throw new AppError('KAFKA_UNAVAILABLE', `${brokers.join(',')} topic ${topic}: ${(cause as Error).message}`, { cause });
  }
  if (sent.createdTopic) process.stderr.write(`created topic ${topic} (${config.kafka.partitions} partitions)\n`);
  process.stdout.write(`${JSON.stringify({ id: message.id, key: message.id, topic, partition: sent.partition, offset: sent.offset, bytes })}\n`);
  return 0;
}

// exitCode, not process.exit(): exit() can cut off stdout still buffered for a pipe.
main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
}, (err: unknown) => {
  if (isAppError(err)) {
    process.stderr.write(`error ${err.code}: ${err.message}\n`);
    process.exitCode = err.code === 'CLI_USAGE' ? EXIT_USAGE : 1;
  } else if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exitCode = EXIT_CONFIG;
  } else {
    process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  }
});
