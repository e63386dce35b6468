/**
 * npm run screen -- photo1.jpg photo2.png https://host/photo.jpg
 * Screens images without a server: one JSON line per input on stdout, in input order. Exits 1 if
 * any input failed (its line carries the error code), 2 on usage errors.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig, REPO_ROOT } from '../config.js';
import { isScreeningError, ScreeningError } from '../errors.js';
import { createScreeningService } from './service.js';

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
    const results = await Promise.all(inputs.map(async (input) => {
      try {
        const isUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(input);
        const bytes = isUrl ? undefined : await readFile(input).catch((cause: unknown) => {
          throw new ScreeningError('INPUT_NOT_READABLE', `${input}: ${(cause as Error).message}`, { cause });
        });
        const result = await service.screen(isUrl ? { url: input, source: 'cli' } : { bytes, source: 'cli' });
        return { input, ...result };
      } catch (err) {
        failed++;
        const code = isScreeningError(err) ? err.code : 'INTERNAL';
        return { input, error: { code, message: (err as Error).message } };
      }
    }));
    for (const r of results) process.stdout.write(`${JSON.stringify(r)}\n`);
  } finally {
    await service.close();
  }
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
