/** `npm start`: the screening service on the default model(s) under models/. */
import { ConfigError, loadConfig } from './config.js';
import { startServer } from './screening/server.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  const server = await startServer(config);
  process.on('SIGHUP', () => {
    server.logger.info('SIGHUP: reloading models');
    server.service.reload().then(
      () => {
        const candidate = server.service.shadowStatus().candidate;
        server.logger.info({ models: server.service.models().map((m) => `${m.name}@${m.version}`), shadow: candidate ? `${candidate.name}@${candidate.version}` : null }, 'models reloaded');
      },
      () => undefined, // logged by the reloadFailed listener
    );
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    server.logger.info({ signal }, 'draining and shutting down');
    server.close().then(() => process.exit(0), (err: unknown) => {
      server.logger.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  const e = err as { code?: string; message?: string; stack?: string };
  process.stderr.write(`failed to start: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
  process.exit(1);
});
