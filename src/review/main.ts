/**
 * `npm run review`: the analysts' review console, a process of its own beside the screening service.
 * It reads the same configuration (configs/default.yaml, CONFIG_FILE, environment) and its `review`
 * section; see README "Review console".
 */
import pino from 'pino';
import { ConfigError, loadConfig } from '../config.js';
import { startReviewConsole } from './console.js';

const logger = pino({ name: 'wildlife-review' });

function fail(message: string, code = 2): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

let config;
try {
  config = loadConfig(process.env, {}, { component: 'review' });
} catch (err) {
  if (err instanceof ConfigError) fail(err.message);
  throw err;
}
logger.level = config.logging.level;
if (config.review.auth.mode === 'accounts' && config.review.auth.accounts.length === 0) {
  fail(`No review accounts are configured, so nobody could sign in. Create one:
  printf '%s' 'a long passphrase' | npm run -s review:hash-password
and put the printed hash into a config file named by CONFIG_FILE:
  review:
    auth:
      accounts:
        - { username: ana, passwordHash: 'scrypt$…', role: lead }
Or sign analysts in through your SSO proxy: review.auth.mode: proxy (README "Review console").`);
}
if (config.kafka.brokers.length === 0) logger.warn('KAFKA_BROKERS is not set: the console shows what its database holds, but receives no new flags and sends no decisions');

const running = await startReviewConsole(config, { logger }).catch((err: Error) => fail(`the review console could not start: ${err.message}`, 1));
logger.info({ url: running.url, database: config.review.database, auth: config.review.auth.mode }, 'review console listening');

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping the review console');
    running.close().then(() => process.exit(0), (err: Error) => {
      logger.error({ err }, 'the review console did not stop cleanly');
      process.exit(1);
    });
  });
}
