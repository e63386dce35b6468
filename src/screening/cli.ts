/**
 * npm run screen -- photo1.jpg photo2.png https://host/photo.jpg
 * Screens images without a server: one JSON line per input on stdout, in input order. Exits 1 if
 * any input failed (its line carries the error code), 2 on usage errors.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig, REPO_ROOT, type AppConfig } from '../config.js';
import { isAppError, AppError } from '../errors.js';
import { createScreeningService, type ScreeningService } from './service.js';

/**
 * Inputs in flight at once. Submitting every input together (a shell glob can name thousands) holds
 * every file and decoded image in memory at once, overflows the batch queue (QUEUE_FULL) and lets
 * the inputs at the back of the queue run past their deadline (DEADLINE_EXCEEDED) on a busy
 * machine: good photos reported as failures. Two batches' worth keeps one batch running while the
 * next is read, decoded and queued; never more than the queue accepts.
 */
function cliConcurrency(batching: AppConfig['batching']): number {
  const batch = batching.enabled ? batching.maxBatchSize : 1;
  return Math.max(1, Math.min(batching.maxQueueSize, 2 * batch));
}

type Line = Record<string, unknown>;

async function screenOne(service: ScreeningService, input: string): Promise<{ line: Line; ok: boolean }> {
  try {
    const isUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(input);
    const bytes = isUrl ? undefined : await readFile(input).catch((cause: unknown) => {
      throw new AppError('INPUT_NOT_READABLE', `${input}: ${(cause as Error).message}`, { cause });
    });
    const result = await service.screen(isUrl ? { url: input, source: 'cli' } : { bytes, source: 'cli' });
    return { line: { input, ...result }, ok: true };
  } catch (err) {
    const code = isAppError(err) ? err.code : 'INTERNAL';
    return { line: { input, error: { code, message: (err as Error).message } }, ok: false };
  }
}

async function main(): Promise<number> {
  const inputs = process.argv.slice(2);
  if (inputs.length === 0 || inputs.includes('--help')) {
    process.stderr.write('usage: npm run screen -- IMAGE_OR_URL [...]\n(models from MODEL_DIRS or models/; config from CONFIG_FILE or configs/default.yaml)\n');
    return inputs.length === 0 ? 2 : 0;
  }
  const config = loadConfig({ ...process.env, LOG_LEVEL: 'silent' });
  const service = await createScreeningService(config, path.join(REPO_ROOT, 'models'));
  let failed = 0;
  try {
    // Lines go out as soon as every earlier input is done, so a long run shows progress and holds
    // only the results that finished ahead of a slower earlier one.
    const done = new Map<number, Line>();
    let printed = 0;
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < inputs.length; i = next++) {
        const { line, ok } = await screenOne(service, inputs[i]!);
        if (!ok) failed++;
        done.set(i, line);
        for (let l = done.get(printed); l; l = done.get(printed)) {
          done.delete(printed++);
          process.stdout.write(`${JSON.stringify(l)}\n`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(inputs.length, cliConcurrency(config.batching)) }, worker));
  } finally {
    // Sessions are released before the process ends, not torn down under a running inference.
    await service.close();
  }
  return failed ? 1 : 0;
}

// exitCode, not process.exit(): exit() can cut off stdout still buffered for a pipe (asynchronous on
// some platforms) and skips the orderly release above.
main().then((code) => {
  process.exitCode = code;
}, (err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = 1;
});
