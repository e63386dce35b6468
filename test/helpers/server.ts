/** Starts the real service (real model, real HTTP) on an ephemeral loopback port for a test file. */
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig, REPO_ROOT, type AppConfig } from '../../src/config.js';
import { startServer, type RunningServer } from '../../src/screening/server.js';
import { until } from './wait.js';

/** The shipped default model; WILDLIFE_TEST_MODELS=dir1,dir2 points tests elsewhere. */
export const TEST_MODEL_DIRS = process.env.WILDLIFE_TEST_MODELS?.split(',') ?? [path.join(REPO_ROOT, 'models', 'wildlife-resnet50vd')];

type Overrides = { [K in keyof AppConfig]?: Partial<AppConfig[K]> };

export async function startTestServer(overrides: Overrides = {}, env: NodeJS.ProcessEnv = {}): Promise<RunningServer> {
  const config = loadConfig({ LOG_LEVEL: 'silent', ...env }, {
    ...overrides,
    server: { port: 0, host: '127.0.0.1', shutdownGraceMs: 2000, ...overrides.server },
    models: { directories: TEST_MODEL_DIRS, intraOpThreads: 2, ...overrides.models },
  } as unknown as Record<string, Record<string, unknown>>);
  return startServer(config, { logger: pino({ level: 'silent' }) });
}

/** The real service with its Kafka pipeline, once the pipeline runs (consuming) on the real broker. */
export async function startKafkaTestServer(overrides: Overrides = {}): Promise<RunningServer> {
  const server = await startTestServer(overrides);
  try {
    await until('the Kafka pipeline to run', () => server.kafka?.state() === 'running', { timeoutMs: 30_000, intervalMs: 250 });
  } catch (err) {
    await server.close();
    throw err;
  }
  return server;
}
