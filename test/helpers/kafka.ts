/** The real broker for tests: KAFKA_BROKERS when set (CI starts one), else the project's own script starts it. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../src/config.js';

const run = promisify(execFile);

export async function kafkaBrokers(): Promise<string[]> {
  if (process.env.KAFKA_BROKERS) return process.env.KAFKA_BROKERS.split(',');
  const { stdout } = await run('bash', ['scripts/kafka.sh', 'start'], { cwd: REPO_ROOT, timeout: 300_000 });
  const match = stdout.match(/KAFKA_BROKERS=(\S+)/);
  if (!match) throw new Error(`scripts/kafka.sh start printed no address: ${stdout}`);
  return match[1]!.split(',');
}

export async function kafkaScript(command: 'start' | 'stop' | 'status'): Promise<string> {
  const { stdout } = await run('bash', ['scripts/kafka.sh', command], { cwd: REPO_ROOT, timeout: 300_000 });
  return stdout;
}

/** Fresh topic and group names per test, so runs never see each other's messages. */
export function uniqueTopics(label: string) {
  const suffix = `${label}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  return {
    groupId: `wildlife-test-${suffix}`,
    topics: { input: `crawled.${suffix}`, results: `screened.${suffix}`, review: `flagged.${suffix}`, dlq: `dlq.${suffix}` },
  };
}
