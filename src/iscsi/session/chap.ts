/** CHAP (RFC 1994 as used by RFC 7143 §12.1.3) with open-iscsi's CHAP_A numbering. */
import { createHash, timingSafeEqual } from 'node:crypto';

export const ChapAlgorithm = {
  MD5: 5,
  SHA1: 6,
  SHA256: 7,
  SHA3_256: 8,
} as const;
export type ChapAlgorithm = (typeof ChapAlgorithm)[keyof typeof ChapAlgorithm];

/** CHAP_A → node:crypto hash name and digest length. */
export const CHAP_HASHES: Readonly<Record<number, { readonly hash: string; readonly length: number }>> = {
  5: { hash: 'md5', length: 16 },
  6: { hash: 'sha1', length: 20 },
  7: { hash: 'sha256', length: 32 },
  8: { hash: 'sha3-256', length: 32 },
};

/** Target's preference when the initiator offers several (strongest first). */
export const DEFAULT_CHAP_PREFERENCE: readonly number[] = [8, 7, 6, 5];

/** CHAP response: H(id ‖ secret ‖ challenge). */
export function chapResponse(alg: number, id: number, secret: string, challenge: Buffer): Buffer {
  const h = CHAP_HASHES[alg];
  if (!h) throw new RangeError(`unsupported CHAP_A ${alg}`);
  return createHash(h.hash)
    .update(Buffer.from([id & 0xff]))
    .update(Buffer.from(secret, 'utf8'))
    .update(challenge)
    .digest();
}

export function chapVerify(
  alg: number,
  id: number,
  secret: string,
  challenge: Buffer,
  response: Buffer,
): boolean {
  const want = chapResponse(alg, id, secret, challenge);
  return want.length === response.length && timingSafeEqual(want, response);
}

/** Decode a binary key value: 0x… (hex) or 0b… (base64). `undefined` when malformed. */
export function decodeBinaryValue(v: string): Buffer | undefined {
  if (v.length < 3) return undefined;
  const prefix = v.slice(0, 2).toLowerCase();
  const body = v.slice(2);
  if (prefix === '0x') {
    if (!/^[0-9a-fA-F]+$/.test(body)) return undefined;
    return Buffer.from(body.length % 2 ? `0${body}` : body, 'hex');
  }
  if (prefix === '0b') {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) return undefined;
    return Buffer.from(body, 'base64');
  }
  return undefined;
}

export function encodeHexValue(b: Buffer): string {
  return `0x${b.toString('hex')}`;
}

/** Decode a numeric CHAP_I / CHAP_A value (decimal or 0x hex). */
export function decodeNumber(v: string): number | undefined {
  if (/^[0-9]+$/.test(v)) return Number(v);
  if (/^0[xX][0-9a-fA-F]+$/.test(v)) return Number.parseInt(v.slice(2), 16);
  return undefined;
}
