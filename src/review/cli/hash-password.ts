/**
 * npm run review:hash-password — prints a review.auth.accounts[].passwordHash for a password.
 *
 * The password is read from stdin, never from arguments, which other users can see in `ps` and
 * shells keep in history. At a terminal it is typed twice without echo; piped, all of stdin is the
 * password minus one trailing newline (so `echo` and here-strings work).
 */
import { hashPassword } from '../auth.js';

const MIN_LENGTH = 10;
const EXIT_USAGE = 2;

class Cancelled extends Error {}

async function readPiped(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Reads one line from a raw-mode terminal, echoing nothing. */
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let typed = '';
    const finish = (err: Error | null) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(typed);
    };
    const onData = (data: Buffer) => {
      for (const ch of data.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish(null);
        if (ch === '\u0003' || ch === '\u0004') return finish(new Cancelled()); // Ctrl-C, Ctrl-D
        if (ch === '\u007f' || ch === '\b') typed = [...typed].slice(0, -1).join('');
        else if (ch >= ' ') typed += ch;
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}

async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) return readPiped();
  const first = await promptHidden('Password: ');
  if ([...first].length < MIN_LENGTH) return first; // refused below; no point asking twice
  const second = await promptHidden('Again: ');
  if (first !== second) {
    process.stderr.write('The two passwords differ; nothing was hashed.\n');
    process.exit(EXIT_USAGE);
  }
  return first;
}

async function main(): Promise<void> {
  let password: string;
  try {
    password = await readPassword();
  } catch (err) {
    if (err instanceof Cancelled) process.exit(130);
    throw err;
  }
  if ([...password].length < MIN_LENGTH) {
    process.stderr.write(`The password is too short: use at least ${MIN_LENGTH} characters.\n`);
    process.exit(EXIT_USAGE);
  }
  process.stdout.write(`${await hashPassword(password)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`hash-password failed: ${(err as Error).message}\n`);
  process.exit(1);
});
