/** Tiny flag parser for the toolchain CLIs: `--key value`, `--flag`; unknown flags are errors. */
import { AppError } from '../../errors.js';

export interface FlagSpec {
  [name: string]: { type: 'string' | 'boolean'; required?: boolean; help: string };
}

export function parseFlags(argv: string[], spec: FlagSpec, usage: string): Record<string, string | boolean | undefined> {
  const out: Record<string, string | boolean | undefined> = {};
  const problems: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${usage}\n\n${Object.entries(spec).map(([k, v]) => `  --${k}${v.type === 'string' ? ' VALUE' : ''}${v.required ? ' (required)' : ''}  ${v.help}`).join('\n')}\n`);
      process.exit(0);
    }
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    const entry = name ? spec[name] : undefined;
    if (!name || !entry) {
      problems.push(`unknown argument ${arg}`);
      continue;
    }
    if (entry.type === 'boolean') out[name] = true;
    else if (i + 1 >= argv.length || argv[i + 1]!.startsWith('--')) problems.push(`--${name} needs a value`);
    else out[name] = argv[++i];
  }
  for (const [name, entry] of Object.entries(spec)) if (entry.required && out[name] === undefined) problems.push(`--${name} is required`);
  if (problems.length) throw new AppError('CLI_USAGE', `${problems.join('; ')}.\n${usage} (--help lists the options)`);
  return out;
}

/** Runs a CLI body: AppErrors print as `CODE: message` and exit non-zero, without a stack. */
export function runCli(main: () => Promise<number | void>): void {
  main().then(
    (code) => process.exit(code ?? 0),
    (err: unknown) => {
      const e = err as { code?: string; message?: string; stack?: string };
      if (e && typeof e.code === 'string' && /^[A-Z_]+$/.test(e.code)) {
        process.stderr.write(`error ${e.code}: ${e.message}\n`);
        process.exit(e.code === 'TRAIN_INTERRUPTED' ? 130 : e.code === 'CLI_USAGE' ? 2 : 1);
      }
      process.stderr.write(`${e?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
