/** Writes model directories (model.onnx + model.json) from what the Paddle side produced. */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileSha256, MANIFEST_VERSION, ONNX_FILE, writeManifest, type LabelSpec, type ModelManifest } from '../model/manifest.js';

/** Until `npm run eval -- --calibrate` sets real ones, a trade-relevant label flags at this score. */
export const DEFAULT_THRESHOLD = 0.5;

export function defaultLabels(classes: readonly string[], tradeRelevant: Readonly<Record<string, boolean | null | undefined>>): LabelSpec[] {
  return classes.map((name) => {
    const relevant = tradeRelevant[name] === true;
    return { name, trade_relevant: relevant, threshold: relevant ? DEFAULT_THRESHOLD : null };
  });
}

export interface ModelDirInput {
  dir: string;
  /** An ONNX file to copy in; omit when it is already at dir/model.onnx. */
  onnxSource?: string;
  manifest: Omit<ModelManifest, 'sha256' | 'created' | 'schema_version'>;
}

export async function writeModelDir({ dir, onnxSource, manifest }: ModelDirInput): Promise<ModelManifest> {
  await mkdir(dir, { recursive: true });
  const onnxPath = path.join(dir, ONNX_FILE);
  if (onnxSource && path.resolve(onnxSource) !== path.resolve(onnxPath)) await copyFile(onnxSource, onnxPath);
  const full: ModelManifest = {
    schema_version: MANIFEST_VERSION,
    ...manifest,
    sha256: await fileSha256(onnxPath),
    created: new Date().toISOString(),
  };
  await writeManifest(dir, full);
  return full;
}
