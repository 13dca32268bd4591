/** Per-block digests for checksum-based resync and online verify. */
import { createHash } from 'node:crypto';
import { crc32c } from '../native/index.js';
import type { VerifyAlg } from './config.js';

export function digestLength(alg: VerifyAlg): number {
  return alg === 'crc32c' ? 4 : 16;
}

/** Concatenated digests of each `blockBytes` block of `data` (cryptographic ones truncated to 16 bytes). */
export function blockDigests(data: Uint8Array, blockBytes: number, alg: VerifyAlg): Buffer {
  const n = Math.ceil(data.length / blockBytes);
  const dl = digestLength(alg);
  const out = Buffer.allocUnsafe(n * dl);
  for (let i = 0; i < n; i++) {
    const blk = data.subarray(i * blockBytes, Math.min(data.length, (i + 1) * blockBytes));
    if (alg === 'crc32c') out.writeUInt32BE(crc32c(blk), i * 4);
    else
      createHash(alg)
        .update(blk)
        .digest()
        .copy(out, i * dl, 0, dl);
  }
  return out;
}

/** Bitmask (bit i = block i differs) comparing two digest lists. */
export function diffMask(a: Uint8Array, b: Uint8Array, dl: number): { mask: Buffer; differing: number } {
  const n = Math.floor(Math.min(a.length, b.length) / dl);
  const mask = Buffer.alloc(Math.ceil(n / 8));
  let differing = 0;
  for (let i = 0; i < n; i++) {
    const x = Buffer.from(a.buffer, a.byteOffset + i * dl, dl);
    const y = Buffer.from(b.buffer, b.byteOffset + i * dl, dl);
    if (!x.equals(y)) {
      mask[i >>> 3] = (mask[i >>> 3] as number) | (1 << (i & 7));
      differing++;
    }
  }
  return { mask, differing };
}

export function maskBit(mask: Uint8Array, i: number): boolean {
  return ((mask[i >>> 3] ?? 0) & (1 << (i & 7))) !== 0;
}
