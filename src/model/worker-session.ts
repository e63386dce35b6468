/**
 * The main-thread side of a session kept in a worker thread (session-worker.mjs): the same run /
 * release surface the engine uses, answered by messages. Inputs are copied once into a buffer that
 * is handed over, outputs come back the same way.
 */
import { Worker } from 'node:worker_threads';
import type ort from 'onnxruntime-node';

export interface SessionLike {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(inputName: string, input: Float32Array, dims: number[]): Promise<Record<string, { data: Float32Array; dims: readonly number[] }>>;
  release(): Promise<void>;
}

type Reply = { type: 'result'; id: number; outputs?: Record<string, { data: Float32Array; dims: readonly number[] }>; error?: string };

export async function workerSession(path: string, options: ort.InferenceSession.SessionOptions): Promise<SessionLike> {
  const worker = new Worker(new URL('./session-worker.mjs', import.meta.url), { workerData: { path, options } });
  const pending = new Map<number, { resolve: (v: NonNullable<Reply['outputs']>) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  let broken: Error | null = null;
  const fail = (error: Error) => {
    broken ??= error;
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  };
  const names = await new Promise<{ inputNames: string[]; outputNames: string[] }>((resolve, reject) => {
    worker.once('message', (m: { type: string; inputNames?: string[]; outputNames?: string[]; error?: string }) => {
      if (m.type === 'ready') resolve({ inputNames: m.inputNames!, outputNames: m.outputNames! });
      else reject(new Error(m.error ?? 'the session worker did not start'));
    });
    worker.once('error', reject);
  }).catch(async (error: Error) => {
    await worker.terminate();
    throw error;
  });
  worker.on('message', (m: Reply) => {
    if (m.type !== 'result') return;
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.error !== undefined) p?.reject(new Error(m.error));
    else p?.resolve(m.outputs!);
  });
  worker.on('error', (error) => fail(error));
  worker.on('exit', () => fail(new Error('the session worker exited')));
  return {
    ...names,
    run(inputName, input, dims) {
      if (broken) return Promise.reject(broken);
      const id = nextId++;
      // A copy the worker may own: the caller's batch buffer may be reused or be a view of a larger one.
      const copy = input.slice();
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ type: 'run', id, input: copy, dims, inputName }, [copy.buffer as ArrayBuffer]);
      });
    },
    async release() {
      if (broken) return;
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.postMessage({ type: 'release' });
      await exited;
    },
  };
}
