/** Minimal .npy (v1.0, little-endian float32, C order) reader/writer for parity tests with Paddle. */
import { readFile, writeFile } from 'node:fs/promises';

export async function writeNpy(file: string, data: Float32Array, shape: number[]): Promise<void> {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const prefix = Buffer.alloc(10);
  prefix.write('\x93NUMPY', 0, 'latin1');
  prefix[6] = 1;
  prefix[7] = 0;
  prefix.writeUInt16LE(header.length, 8);
  await writeFile(file, Buffer.concat([prefix, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

export async function readNpy(file: string): Promise<{ data: Float32Array; shape: number[] }> {
  const buf = await readFile(file);
  const headerLength = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + headerLength).toString('latin1');
  if (!header.includes("'<f4'")) throw new Error(`unsupported dtype in ${file}: ${header}`);
  const shape = [...(header.match(/\(([^)]*)\)/)?.[1] ?? '').matchAll(/\d+/g)].map((m) => Number(m[0]));
  const body = buf.subarray(10 + headerLength);
  const data = new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
  return { data, shape };
}
