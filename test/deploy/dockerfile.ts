/**
 * Shared by the Dockerfile and training tests: a small Dockerfile parser (stages, the stages a
 * target is built from, what its COPY instructions take from the build context), .dockerignore
 * matching, and the local import graph of an entry file.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../src/config.js';

export interface Instruction { op: string; args: string }
export interface Stage { name: string; from: string; instructions: Instruction[] }

/** Dockerfile → stages (line continuations joined, comments dropped, global ARG defaults substituted in FROM). */
export function parseDockerfile(text: string): Stage[] {
  const lines = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const upper = op.toUpperCase();
    if (upper === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      assert.ok(m, `cannot parse FROM ${args}`);
      const from = (m[1] as string).replace(/\$\{?(\w+)\}?/g, (_, v: string) => globalArgs[v] ?? '');
      stages.push({ name: m[2] ?? String(stages.length), from, instructions: [] });
    } else if (stages.length === 0) {
      if (upper === 'ARG') {
        const [k, v = ''] = args.split('=', 2);
        globalArgs[k as string] = v;
      }
    } else {
      (stages.at(-1) as Stage).instructions.push({ op: upper, args });
    }
  }
  return stages;
}

/** The stage and every stage it copies from or builds on, transitively. */
export function lineage(stages: Stage[], name: string): Stage[] {
  const out: Stage[] = [];
  const visit = (n: string) => {
    const s = stages.find((x) => x.name === n);
    if (!s || out.includes(s)) return;
    out.push(s);
    visit(s.from);
    for (const i of s.instructions) {
      const m = /--from=(\S+)/.exec(i.args);
      if (i.op === 'COPY' && m) visit(m[1] as string);
    }
  };
  visit(name);
  return out;
}

/** Build-context sources of the COPY instructions (without --from) of these stages. */
export function copySources(stages: Stage[]): string[] {
  return stages.flatMap((s) => s.instructions.filter((i) => i.op === 'COPY' && !i.args.includes('--from='))
    .flatMap((i) => i.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1)));
}

export const globToRegExp = (glob: string) => new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*\//g, '(?:.*/)?').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);

export function copied(file: string, sources: string[]): boolean {
  return sources.some((src) => {
    const s = src.replace(/^\.\//, '').replace(/\/$/, '');
    return s === '.' || file === s || file.startsWith(`${s}/`) || globToRegExp(s).test(file);
  });
}

/** .dockerignore semantics for the patterns used here: globs, directory prefixes, ** and ! exceptions. */
export function dockerignored(file: string, patterns: string[]): boolean {
  let ignored = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const p = (negate ? raw.slice(1) : raw).replace(/^\//, '').replace(/\/$/, '');
    const re = globToRegExp(p);
    const parts = file.split('/');
    const hit = parts.some((_, i) => re.test(parts.slice(0, i + 1).join('/')));
    if (hit) ignored = !negate;
  }
  return ignored;
}

/**
 * An entry file (e.g. src/main.ts) and every local module it imports, transitively (.js specifiers →
 * .ts files). `import type …` / `export type … from` statements are left out: tsx erases them, so
 * their modules are not loaded at run time.
 */
export function importGraph(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (rel: string) => {
    if (seen.has(rel)) return;
    seen.add(rel);
    const text = readFileSync(path.join(REPO_ROOT, rel), 'utf8').replace(/^\s*(?:import|export)\s+type\s[^;'"]*?from\s*['"][^'"]+['"];?/gm, '');
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g)) {
      let target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), m[1] as string));
      if (target.endsWith('.js')) target = `${target.slice(0, -3)}.ts`;
      if (!target.endsWith('.ts') && !target.endsWith('.json')) continue;
      assert.ok(existsSync(path.join(REPO_ROOT, target)), `${rel} imports ${m[1]} which does not exist`);
      visit(target);
    }
  };
  visit(entry);
  return [...seen];
}

export const DOCKERFILE = readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
export const STAGES = parseDockerfile(DOCKERFILE);
export const IGNORE_PATTERNS = readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));

/** Image name:tag → Dockerfile target, from the build commands in the Dockerfile's header comment. */
export function imageTargets(text = DOCKERFILE): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^#\s+docker build --target (\S+)\b.*?\s-t (\S+)/gm)) {
    const image = m[2] as string;
    if (!out.has(image)) out.set(image, m[1] as string);
  }
  return out;
}

/** The working directory a target's processes start in (its last WORKDIR, inherited through FROM). */
export function workdirOf(stages: Stage[], target: string): string {
  let stage = stages.find((s) => s.name === target);
  while (stage) {
    const dir = stage.instructions.filter((i) => i.op === 'WORKDIR').at(-1)?.args;
    if (dir) return dir;
    stage = stages.find((s) => s.name === stage!.from);
  }
  return '/';
}

/** A target's ENTRYPOINT (exec form), inherited through FROM; [] when it has none. */
export function entrypointOf(stages: Stage[], target: string): string[] {
  let stage = stages.find((s) => s.name === target);
  while (stage) {
    const entry = stage.instructions.filter((i) => i.op === 'ENTRYPOINT').at(-1)?.args;
    if (entry) return JSON.parse(entry) as string[];
    stage = stages.find((s) => s.name === stage!.from);
  }
  return [];
}
