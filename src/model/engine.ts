/**
 * The ONNX Runtime engine: one classifier per model directory. The class stays private; callers get
 * the Classifier interface from loadClassifier(), already warmed up, and dispose() it when done.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { AppError } from '../errors.js';
import { fileSha256, ONNX_FILE, readManifest, type ModelManifest } from './manifest.js';
import { workerSession, type SessionLike } from './worker-session.js';

// ONNX Runtime ≥ 1.29 starts a telemetry client on Linux when its environment is created (at the
// first session), and that client runs libstdc++ std::regex over /proc/self/cmdline. The regex
// engine recurses once per character, so a long command line (`npm run screen -- dir/*.jpg` with a
// few hundred files: ~29 000 characters on an 8 MiB stack) overflows the main thread's stack and the
// process dies with SIGSEGV before any model is loaded. The variable is read only then, so setting it
// here is early enough. A screening service has no business uploading usage data anyway; an operator
// who sets the variable explicitly keeps their value.
process.env.ORT_DISABLE_TELEMETRY ??= '1';

export type ExecutionProvider = 'cpu' | 'cuda' | 'tensorrt';

export interface EngineOptions {
  executionProvider?: ExecutionProvider;
  /** Threads inside one operator; 0 lets ONNX Runtime choose (all cores). */
  intraOpThreads?: number;
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Skip the sha256 check of model.onnx (only for tools that just wrote the file). */
  skipChecksum?: boolean;
  /**
   * 'worker' keeps the session in a worker thread: onnxruntime-node runs inference synchronously
   * on the calling thread, which in a server is the event loop (docs/BENCHMARKS.md, "Where the rest
   * goes"). 'main' (the default) suits tools that do nothing else meanwhile.
   */
  inferenceThread?: 'main' | 'worker';
  /**
   * Whether ONNX Runtime's intra-op threads busy-wait between operators (its default, true). Off,
   * they sleep: a little slower on an idle machine, much faster when other threads need the cores.
   */
  threadSpinning?: boolean;
}

export interface ClassifierOutput {
  logits: Float32Array;
  probabilities: Float32Array;
}

export interface Classifier {
  readonly manifest: ModelManifest;
  readonly directory: string;
  /** Floats per image in the input batch (3 × size × size). */
  readonly inputLength: number;
  /** Classifies `count` images laid out back to back in `batch` (NCHW float32). */
  classify(batch: Float32Array, count: number): Promise<ClassifierOutput[]>;
  dispose(): Promise<void>;
}

let openSessions = 0;
/** For leak tests: sessions created and not yet disposed, in this process. */
export function openSessionCount(): number {
  return openSessions;
}

function providers(ep: ExecutionProvider): string[] {
  // Fall back to CPU so a GPU node with a broken driver still serves, only slower.
  if (ep === 'tensorrt') return ['tensorrt', 'cuda', 'cpu'];
  if (ep === 'cuda') return ['cuda', 'cpu'];
  return ['cpu'];
}

export function softmax(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const out = new Float32Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    out[i] = Math.exp(logits[i]! - max);
    sum += out[i]!;
  }
  for (let i = 0; i < out.length; i++) out[i]! /= sum;
  return out;
}

class OnnxClassifier implements Classifier {
  readonly inputLength: number;
  private disposed = false;

  constructor(
    readonly manifest: ModelManifest,
    readonly directory: string,
    private readonly session: SessionLike,
  ) {
    this.inputLength = 3 * manifest.input.size * manifest.input.size;
  }

  async classify(batch: Float32Array, count: number): Promise<ClassifierOutput[]> {
    if (this.disposed) throw new AppError('INFERENCE_FAILED', `${this.manifest.name} was disposed`);
    if (count < 1 || batch.length < count * this.inputLength) {
      throw new AppError('INFERENCE_FAILED', `batch holds ${batch.length} floats, ${count} images need ${count * this.inputLength}`);
    }
    const { size, name } = this.manifest.input;
    const data = batch.length === count * this.inputLength ? batch : batch.subarray(0, count * this.inputLength);
    let result: Awaited<ReturnType<SessionLike['run']>>;
    try {
      result = await this.session.run(name, data, [count, 3, size, size]);
    } catch (cause) {
      throw new AppError('INFERENCE_FAILED', `${this.manifest.name}: ${(cause as Error).message}`, { cause });
    }
    const output = result[this.manifest.output.name];
    const classes = this.manifest.labels.length;
    if (!output || output.dims.length !== 2 || output.dims[0] !== count || output.dims[1] !== classes) {
      throw new AppError('MODEL_SHAPE_MISMATCH', `${this.manifest.name}: expected output [${count}, ${classes}], got [${output?.dims.join(', ')}]`);
    }
    const all = output.data;
    const outputs: ClassifierOutput[] = [];
    for (let i = 0; i < count; i++) {
      const logits = all.slice(i * classes, (i + 1) * classes);
      outputs.push({ logits, probabilities: softmax(logits) });
    }
    return outputs;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    openSessions--;
    await this.session.release();
  }
}

function mainThreadSession(session: ort.InferenceSession): SessionLike {
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(inputName, input, dims) {
      const result = await session.run({ [inputName]: new ort.Tensor('float32', input, dims) });
      return Object.fromEntries(Object.entries(result).map(([k, t]) => [k, { data: t.data as Float32Array, dims: t.dims }]));
    },
    release: () => session.release(),
  };
}

/** Loads, verifies and warms up one model directory (model.onnx + model.json). */
/** The ONNX Runtime session options a model is loaded with, from the engine options and its manifest. */
export function sessionOptionsOf(manifest: Pick<ModelManifest, 'quantization'>, options: EngineOptions): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: providers(options.executionProvider ?? 'cpu'),
    intraOpNumThreads: options.intraOpThreads ?? 0,
    interOpNumThreads: 1,
    graphOptimizationLevel: options.graphOptimization ?? 'all',
    // Weight-only INT8: let constant folding turn the DequantizeLinear nodes into FP32 weights at
    // load (measured: 92 vs 65 images/s on ResNet50_vd), instead of dequantizing every run.
    extra: {
      session: {
        ...(manifest.quantization?.method === 'weights' ? { disable_quant_qdq: '1' } : {}),
        ...(options.threadSpinning === false ? { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } : {}),
      },
    },
  };
}

export async function loadClassifier(directory: string, options: EngineOptions = {}): Promise<Classifier> {
  const manifest = await readManifest(directory);
  const onnxPath = path.join(directory, ONNX_FILE);
  try {
    await access(onnxPath);
  } catch (cause) {
    throw new AppError('MODEL_FILE_MISSING', onnxPath, { cause });
  }
  if (!options.skipChecksum) {
    const actual = await fileSha256(onnxPath);
    if (actual !== manifest.sha256) {
      throw new AppError('MODEL_CHECKSUM_MISMATCH', `${onnxPath}: sha256 ${actual}, model.json says ${manifest.sha256}`);
    }
  }
  const sessionOptions = sessionOptionsOf(manifest, options);
  let session: SessionLike;
  try {
    session = options.inferenceThread === 'worker' ? await workerSession(onnxPath, sessionOptions) : mainThreadSession(await ort.InferenceSession.create(onnxPath, sessionOptions));
  } catch (cause) {
    throw new AppError('MODEL_LOAD_FAILED', `${onnxPath}: ${(cause as Error).message}`, { cause });
  }
  openSessions++;
  const classifier = new OnnxClassifier(manifest, directory, session);
  try {
    if (!session.inputNames.includes(manifest.input.name) || !session.outputNames.includes(manifest.output.name)) {
      throw new AppError('MODEL_SHAPE_MISMATCH',
        `${onnxPath}: inputs [${session.inputNames.join(', ')}], outputs [${session.outputNames.join(', ')}]; model.json names ${manifest.input.name} -> ${manifest.output.name}`);
    }
    // Warm-up: the first run allocates and plans; do it before the model takes traffic.
    await classifier.classify(new Float32Array(classifier.inputLength), 1);
  } catch (err) {
    await classifier.dispose();
    throw err;
  }
  return classifier;
}
