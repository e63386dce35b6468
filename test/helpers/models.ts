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

export interface ThresholdsAtZero {
  /** models.thresholds: every trade-relevant label of each model at 0, so each one is a flag reason. */
  thresholds: Record<string, Record<string, number>>;
  /** Whether the models' own thresholds flag a photo, read off the reasons given under `thresholds`. */
  ownFlag(reasons: ReadonlyArray<{ classifier: string; label: string; score: number }>): boolean;
}

/** An override under which every photo is flagged, with what the models themselves would have said. */
export async function thresholdsAtZero(dirs: readonly string[]): Promise<ThresholdsAtZero> {
  const thresholds: ThresholdsAtZero['thresholds'] = {};
  const own = new Map<string, number>();
  for (const dir of dirs) {
    const manifest = await readManifest(dir);
    thresholds[manifest.name] = {};
    for (const label of manifest.labels) {
      if (!label.trade_relevant) continue;
      thresholds[manifest.name]![label.name] = 0;
      own.set(`${manifest.name}/${label.name}`, label.threshold!);
    }
  }
  return { thresholds, ownFlag: (reasons) => reasons.some((r) => r.score >= own.get(`${r.classifier}/${r.label}`)!) };
}
