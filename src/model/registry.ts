/**
 * The set of classifiers the service runs, as generations. A reload loads and warms up a complete
 * new generation before it takes traffic; the old one keeps serving the requests that hold a lease
 * on it and is disposed only when the last lease is released. Nothing in flight is dropped.
 *
 * `attach` lets the caller hang per-generation machinery (the batchers) on a generation without this
 * room knowing about it; `detach` tears it down before the sessions are released.
 */
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors.js';
import { loadClassifier, type Classifier, type EngineOptions } from './engine.js';
import { MANIFEST_FILE } from './manifest.js';

export interface ModelGeneration<T> {
  readonly id: number;
  readonly classifiers: readonly Classifier[];
  readonly extra: T;
  readonly loadedAt: Date;
}

export interface Lease<T> {
  readonly generation: ModelGeneration<T>;
  release(): void;
}

export interface RegistryOptions<T> {
  /** Model directories; empty means every subdirectory of `modelsRoot` that has a model.json. */
  directories: readonly string[];
  modelsRoot: string;
  engine: EngineOptions;
  /** May throw to refuse the set (the generation is then not used and its sessions are released). */
  attach: (classifiers: readonly Classifier[]) => T;
  detach: (extra: T) => Promise<void>;
}

export interface RegistryEvents {
  loaded: { name: string; version: string; directory: string; ms: number };
  generation: { id: number; models: Array<{ name: string; version: string }> };
  retired: { id: number };
  reloadFailed: { error: Error };
}

export interface ModelRegistry<T> {
  current(): ModelGeneration<T>;
  acquire(): Lease<T>;
  /** Loads every directory anew; on any failure the current generation stays and the error is thrown. */
  reload(): Promise<ModelGeneration<T>>;
  close(): Promise<void>;
  on<K extends keyof RegistryEvents>(event: K, listener: (e: RegistryEvents[K]) => void): void;
}

export async function discoverModelDirectories(modelsRoot: string): Promise<string[]> {
  if (!existsSync(modelsRoot)) return [];
  const entries = await readdir(modelsRoot, { withFileTypes: true });
  return entries
    // Dot-directories are work in progress (a promotion being staged), never a model to serve.
    .filter((e) => e.isDirectory() && !e.name.startsWith('.') && existsSync(path.join(modelsRoot, e.name, MANIFEST_FILE)))
    .map((e) => path.join(modelsRoot, e.name))
    .sort();
}

interface Slot<T> {
  generation: ModelGeneration<T>;
  leases: number;
  retiring: boolean;
  retired?: Promise<void>;
}

class Registry<T> extends EventEmitter implements ModelRegistry<T> {
  private active!: Slot<T>;
  private readonly retiringSlots = new Set<Slot<T>>();
  private nextId = 1;
  private reloading: Promise<ModelGeneration<T>> | null = null;
  private closed = false;

  constructor(private readonly options: RegistryOptions<T>) {
    super();
  }

  async start(): Promise<void> {
    this.active = { generation: await this.loadGeneration(), leases: 0, retiring: false };
    this.announce(this.active.generation);
  }

  current(): ModelGeneration<T> {
    return this.active.generation;
  }

  acquire(): Lease<T> {
    if (this.closed) throw new AppError('SHUTTING_DOWN');
    const slot = this.active;
    slot.leases++;
    let released = false;
    return {
      generation: slot.generation,
      release: () => {
        if (released) return;
        released = true;
        slot.leases--;
        if (slot.retiring && slot.leases === 0) void this.retire(slot);
      },
    };
  }

  reload(): Promise<ModelGeneration<T>> {
    // Concurrent reload requests (SIGHUP + admin call) share one load.
    this.reloading ??= (async () => {
      try {
        const generation = await this.loadGeneration();
        const old = this.active;
        this.active = { generation, leases: 0, retiring: false };
        this.announce(generation);
        old.retiring = true;
        this.retiringSlots.add(old);
        if (old.leases === 0) void this.retire(old);
        return generation;
      } catch (error) {
        this.emit('reloadFailed', { error: error as Error });
        throw error;
      } finally {
        this.reloading = null;
      }
    })();
    return this.reloading;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.reloading?.catch(() => undefined);
    this.active.retiring = true;
    this.retiringSlots.add(this.active);
    // Requests still holding leases finish first; each slot retires when its last lease goes.
    await Promise.all([...this.retiringSlots].map((slot) => (slot.leases === 0 ? this.retire(slot) : new Promise<void>((resolve) => {
      const check = ({ id }: { id: number }) => {
        if (id === slot.generation.id) {
          this.off('retired', check);
          resolve();
        }
      };
      this.on('retired', check);
    }))));
  }

  private retire(slot: Slot<T>): Promise<void> {
    slot.retired ??= (async () => {
      try {
        await this.options.detach(slot.generation.extra);
      } finally {
        await Promise.all(slot.generation.classifiers.map((c) => c.dispose()));
        this.retiringSlots.delete(slot);
        this.emit('retired', { id: slot.generation.id });
      }
    })();
    return slot.retired;
  }

  private announce(generation: ModelGeneration<T>): void {
    this.emit('generation', { id: generation.id, models: generation.classifiers.map((c) => ({ name: c.manifest.name, version: c.manifest.version })) });
  }

  private async loadGeneration(): Promise<ModelGeneration<T>> {
    const dirs = this.options.directories.length ? [...this.options.directories] : await discoverModelDirectories(this.options.modelsRoot);
    if (dirs.length === 0) throw new AppError('MODEL_FILE_MISSING', `no model directories found under ${this.options.modelsRoot}.`);
    const classifiers: Classifier[] = [];
    try {
      // One at a time: warm-ups compete for the same cores, and a failure stops the rest early.
      for (const dir of dirs) {
        const started = performance.now();
        const classifier = await loadClassifier(dir, this.options.engine);
        classifiers.push(classifier);
        this.emit('loaded', { name: classifier.manifest.name, version: classifier.manifest.version, directory: dir, ms: performance.now() - started });
      }
      const names = classifiers.map((c) => c.manifest.name);
      const duplicate = names.find((n, i) => names.indexOf(n) !== i);
      if (duplicate) throw new AppError('MODEL_MANIFEST_INVALID', `two model directories are both named ${duplicate}.`);
      // Inside the try: attach may refuse this set of models (a cascade naming a model that is not
      // there), and then the sessions just loaded must go too.
      return { id: this.nextId++, classifiers, extra: this.options.attach(classifiers), loadedAt: new Date() };
    } catch (err) {
      await Promise.all(classifiers.map((c) => c.dispose()));
      throw err;
    }
  }
}

export async function createModelRegistry<T>(options: RegistryOptions<T>): Promise<ModelRegistry<T>> {
  const registry = new Registry(options);
  await registry.start();
  return registry;
}
