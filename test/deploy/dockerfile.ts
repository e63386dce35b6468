/**
 * Shared by the Dockerfile and training tests: the Dockerfile read with a real parser
 * (dockerfile-ast, the parser of the Dockerfile language server) into stages, the stage graph and
 * base-image checks no Docker engine is needed for, the linter's diagnostics (dockerfile-utils),
 * what COPY instructions take from the build context, .dockerignore matching, and the local import
 * graph of an entry file.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { DockerfileParser, From, ModifiableInstruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { REPO_ROOT } from '../../src/config.js';

/** refs: the stages or images this instruction reads from (COPY --from=…, RUN --mount=…,from=…). */
export interface Instruction { op: string; args: string; line: number; refs: string[] }
export interface Stage { name: string; from: string; line: number; instructions: Instruction[] }

const flagRefs = (i: unknown): string[] => (i instanceof ModifiableInstruction ? i.getFlags() : []).flatMap((f) => {
  if (f.getName() === 'from') return [f.getValue() ?? ''];
  const from = f.getName() === 'mount' ? f.getOption('from')?.getValue() : undefined;
  return from ? [from] : [];
});

/** Dockerfile → stages (1-based lines; global ARG defaults substituted in FROM, as the builder does). */
export function parseDockerfile(text: string): Stage[] {
  const dockerfile = DockerfileParser.parse(text);
  const globalArgs = new Map(dockerfile.getInitialARGs().flatMap((a) => {
    const p = a.getProperty();
    return p ? [[p.getName(), p.getValue() ?? ''] as const] : [];
  }));
  const stages: Stage[] = [];
  for (const i of dockerfile.getInstructions()) {
    const op = i.getKeyword().toUpperCase();
    const line = i.getRange().start.line + 1;
    if (i instanceof From) {
      const from = (i.getImage() ?? '').replace(/\$\{?(\w+)\}?/g, (_, v: string) => globalArgs.get(v) ?? '');
      stages.push({ name: i.getBuildStage()?.toLowerCase() ?? String(stages.length), from, line, instructions: [] });
    } else if (stages.length > 0) {
      (stages.at(-1) as Stage).instructions.push({ op, args: i.getArgumentsContent() ?? '', line, refs: flagRefs(i) });
    }
  }
  return stages;
}

/** An image a builder can pull as written: name[:tag][@digest] with a tag or a digest, not a bare name. */
export function isFullImageReference(ref: string): boolean {
  const m = /^((?:[a-z0-9.-]+(?::\d+)?\/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$/.exec(ref);
  return Boolean(m && (m[2] || m[3]));
}

const stageIndex = (stages: Stage[], ref: string) => (/^\d+$/.test(ref) ? Number(ref) : stages.findIndex((s) => s.name === ref.toLowerCase()));

/**
 * Every FROM and --from must name a stage defined above it or a full image reference: a builder
 * resolves names against the stages read so far, so a later stage's name is pulled as an image
 * (moby/buildkit#4155) and the build fails, or worse, builds on whatever that name is.
 */
export function stageReferenceProblems(stages: Stage[]): string[] {
  const problems: string[] = [];
  stages.forEach((stage, index) => {
    const refs = [{ ref: stage.from, what: `FROM ${stage.from || '(empty)'}`, line: stage.line },
      ...stage.instructions.flatMap((i) => i.refs.map((ref) => ({ ref, what: `${i.op} --from=${ref}`, line: i.line })))];
    for (const { ref, what, line } of refs) {
      const at = stageIndex(stages, ref);
      const target = stages[at];
      if (at >= index) problems.push(`line ${line}: ${what} names ${target ? `stage ${target.name} of line ${target.line}` : `stage #${at}`}, which is not defined above it`);
      else if (at < 0 && ref !== 'scratch' && !isFullImageReference(ref)) problems.push(`line ${line}: ${what} names no stage defined above it and is no full image reference (name:tag or name@digest)`);
    }
  });
  return problems;
}

/** A COPY's sources and destination, without its flags. */
const copyOperands = (i: Instruction) => i.args.split(/\s+/).filter((a) => a && !a.startsWith('--'));

/** The image a stage is ultimately built on, following FROM through earlier stages. */
export function baseImageOf(stages: Stage[], name: string): string {
  let stage = stages.find((s) => s.name === name);
  const seen = new Set<Stage>();
  while (stage && !seen.has(stage)) {
    seen.add(stage);
    const parent = stages[stageIndex(stages, stage.from)];
    if (!parent || stages.indexOf(parent) >= stages.indexOf(stage)) return stage.from;
    stage = parent;
  }
  return name;
}

/**
 * Native addons (better-sqlite3, onnxruntime-node, sharp) are compiled or picked for the libc of the
 * system npm ci ran on: every stage that copies node_modules from another stage must be built on the
 * same base image as that stage.
 */
export function nativeModuleProblems(stages: Stage[]): string[] {
  return stages.flatMap((stage) => stage.instructions
    .filter((i) => i.op === 'COPY' && i.refs.length > 0 && copyOperands(i).slice(0, -1).some((src) => /(^|\/)node_modules\/?$/.test(src)))
    .flatMap((i) => {
      const from = i.refs[0] as string;
      const [runs, built] = [baseImageOf(stages, stage.name), baseImageOf(stages, from)];
      return runs === built ? [] : [`line ${i.line}: ${stage.name} runs on ${runs} but takes node_modules from ${from}, installed on ${built}`];
    }));
}

/** dockerfile-utils' diagnostics (unknown instructions or flags, bad ports or durations, duplicate stage names …). */
export function lintProblems(text: string): string[] {
  return validate(text).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
}

/** The stage and every stage it copies from or builds on, transitively. */
export function lineage(stages: Stage[], name: string): Stage[] {
  const out: Stage[] = [];
  const visit = (n: string) => {
    const s = stages.find((x) => x.name === n);
    if (!s || out.includes(s)) return;
    out.push(s);
    visit(s.from);
    for (const i of s.instructions) for (const ref of i.refs) visit(ref);
  };
  visit(name);
  return out;
}

/** Build-context sources of the COPY instructions (without --from) of these stages. */
export function copySources(stages: Stage[]): string[] {
  return stages.flatMap((s) => s.instructions.filter((i) => i.op === 'COPY' && i.refs.length === 0)
    .flatMap((i) => copyOperands(i).slice(0, -1)));
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
