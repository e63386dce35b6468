/**
 * npm run model:promote -- --candidate DIR --target models/<name> [--version X] [--reload URL] [--force]
 * Makes a candidate (e.g. an SSLD student) the next version of a served model, keeps the replaced
 * version under runs/model-history/, and hot-reloads a running service. Refuses a candidate whose
 * recorded comparison against the current version is not "better" unless --force.
 */
import { promoteModel } from '../promote.js';
import { parseFlags, runCli } from './args.js';

runCli(async () => {
  const flags = parseFlags(process.argv.slice(2), {
    candidate: { type: 'string', required: true, help: 'candidate model directory' },
    target: { type: 'string', required: true, help: 'served model directory to replace, e.g. models/wildlife-resnet50vd' },
    version: { type: 'string', help: 'new version (default: current with the minor part bumped)' },
    reload: { type: 'string', help: 'base URL of a running service to hot-reload, e.g. http://127.0.0.1:8080' },
    'api-key': { type: 'string', help: 'API key for the reload (or set PROMOTE_API_KEY)' },
    history: { type: 'string', help: 'where replaced versions go (default runs/model-history)' },
    force: { type: 'boolean', help: 'promote without a winning comparison, or with different labels' },
  }, 'usage: npm run model:promote -- --candidate DIR --target models/<name> [--version X] [--reload URL] [--force]');
  const result = await promoteModel({
    candidate: String(flags.candidate),
    target: String(flags.target),
    version: flags.version as string | undefined,
    force: Boolean(flags.force),
    historyDir: flags.history as string | undefined,
    reloadUrl: flags.reload as string | undefined,
    apiKey: (flags['api-key'] as string | undefined) ?? process.env.PROMOTE_API_KEY,
  });
  for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
  process.stderr.write(`promoted ${result.manifest.name} ${result.manifest.version} into ${String(flags.target)}${result.previous ? ` (was ${result.previous.version}, kept in ${result.previous.history})` : ''}${result.reloaded ? `; service now serves ${result.reloaded.map((m) => `${m.name}@${m.version}`).join(', ')}` : ''}\n`);
  process.stdout.write(`${JSON.stringify({ name: result.manifest.name, version: result.manifest.version, sha256: result.manifest.sha256, previous: result.previous, reloaded: result.reloaded })}\n`);
});
