/** Real model directories for tests: copies of a model with an edited manifest or a new checksum. */
import { appendFile, cp } from 'node:fs/promises';
import path from 'node:path';
import { fileSha256, ONNX_FILE, readManifest, writeManifest } from '../../src/model/manifest.js';

export interface Variant {
  /** Every trade-relevant label's threshold. */
  threshold?: number;
  version?: string;
  /**
   * Appends an ONNX doc_string field to model.onnx and updates model.json's sha256: a model with the
   * same weights and outputs but a checksum of its own, as a retrained one would have.
   */
  docString?: string;
}

export async function copyModel(from: string, to: string, variant: Variant = {}): Promise<string> {
  await cp(from, to, { recursive: true });
  const manifest = await readManifest(to);
  if (variant.docString !== undefined) {
    const text = Buffer.from(variant.docString);
    if (text.length > 127) throw new RangeError('docString: keep it under 128 bytes (one-byte length)');
    // Field 6 (doc_string), wire type 2; protobuf lets a later occurrence of a field win.
    await appendFile(path.join(to, ONNX_FILE), Buffer.concat([Buffer.from([0x32, text.length]), text]));
    manifest.sha256 = await fileSha256(path.join(to, ONNX_FILE));
  }
  if (variant.threshold !== undefined) {
    for (const label of manifest.labels) if (label.trade_relevant) label.threshold = variant.threshold;
  }
  if (variant.version) manifest.version = variant.version;
  await writeManifest(to, manifest);
  return to;
}
