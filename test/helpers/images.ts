/** Image bytes for tests, generated with sharp (no files from ../shared). */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { REPO_ROOT } from '../../src/config.js';
import { drawImage, seededRandom } from './synthetic.js';

export async function jpegOf(kind = 'striped_skin', width = 120, height = 96, seed = 1): Promise<Buffer> {
  return sharp(drawImage(kind, width, height, seededRandom(seed)), { raw: { width, height, channels: 3 } }).jpeg().toBuffer();
}

export async function pngOf(width: number, height: number, colour = { r: 200, g: 40, b: 40 }): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: colour } }).png({ compressionLevel: 9 }).toBuffer();
}

/**
 * A PNG whose header declares width × height but whose data is a few bytes: what a decompression
 * bomb looks like to a decoder that trusts headers. Costs nothing to build or send.
 */
export function pngHeaderOnly(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, no filter, no interlace
  const rows = zlib.deflateSync(Buffer.alloc((width * 3 + 1) * 2));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', rows), chunk('IEND', Buffer.alloc(0))]);
}

/** The Met Museum photos in test/fixtures/met (flagged and unflagged ivory look-alikes), in name order. */
export async function metPhotos(): Promise<Buffer[]> {
  const dir = path.join(REPO_ROOT, 'test', 'fixtures', 'met');
  return Promise.all((await readdir(dir)).filter((f) => f.endsWith('.jpg')).sort().map((f) => readFile(path.join(dir, f))));
}
