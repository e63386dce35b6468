import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { COORDINATOR_LOADING, createKafkaClient } from '../../src/kafka/client.js';

/** A client built as the pipeline, the feed and the labels consumer build theirs, logging into an array. */
function clientWithLogs() {
  const logs: Array<{ level: number; msg: string; error?: string; namespace?: string }> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  // No broker is contacted: kafkajs connects lazily, and its logger is what its connections log through.
  const kafka = createKafkaClient({ clientId: 'bridge-test', brokers: ['127.0.0.1:1'], log });
  return { logs, connection: kafka.logger().namespace('Connection') };
}

describe('the kafkajs log bridge', () => {
  test("a response refused because the group coordinator is loading (retried by kafkajs) is logged at debug, not error", () => {
    const { logs, connection } = clientWithLogs();
    // What kafkajs's Connection logs when a broker answers error 14, as at every fresh start.
    connection.error('Response GroupCoordinator(key: 10, version: 2)', { broker: '127.0.0.1:9092', clientId: 'bridge-test', error: COORDINATOR_LOADING, correlationId: 3, size: 102 });
    assert.equal(logs.length, 1);
    assert.equal(logs[0]!.level, 20, 'pino debug');
    assert.equal(logs[0]!.msg, 'Response GroupCoordinator(key: 10, version: 2)');
    assert.equal(logs[0]!.error, COORDINATOR_LOADING);
    assert.equal(logs[0]!.namespace, 'Connection');
  });

  test('every other failed response stays at error level', () => {
    const { logs, connection } = clientWithLogs();
    connection.error('Response Produce(key: 0, version: 7)', { broker: '127.0.0.1:9092', error: 'The server experienced an unexpected error when processing the request' });
    connection.error('Response FindCoordinator(key: 10, version: 2)', { error: 'The coordinator is not available' });
    // The same text outside a response (e.g. a crash report quoting it) is not demoted either.
    connection.error(`Crash: KafkaJSProtocolError: ${COORDINATOR_LOADING}`, { error: COORDINATOR_LOADING });
    assert.deepEqual(logs.map((l) => l.level), [50, 50, 50]);
  });

  test('warnings stay warnings', () => {
    const { logs, connection } = clientWithLogs();
    connection.warn('The group is rebalancing, re-joining', { error: 'The group is rebalancing, so a rejoin is needed' });
    assert.deepEqual(logs.map((l) => l.level), [40]);
  });

  test("the matched text is kafkajs's own for protocol error 14 (COORDINATOR_LOAD_IN_PROGRESS)", () => {
    // A kafkajs upgrade that rewords it would otherwise bring the error-level line back silently.
    const { errorCodes } = createRequire(import.meta.url)('kafkajs/src/protocol/error.js') as { errorCodes: Array<{ type: string; code: number; retriable: boolean; message: string }> };
    const entry = errorCodes.find((e) => e.code === 14);
    assert.equal(entry?.message, COORDINATOR_LOADING);
    assert.equal(entry?.retriable, true);
  });
});
