import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c, crc32cHardware, fallback, nativeLoaded } from '../../src/native/index.js';

/** Independent reference: bit-at-a-time CRC32C, straight from the definition. */
function crc32cBitwise(data: Uint8Array, seed = 0): number {
  let crc = ~seed >>> 0;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

const impls = [
  ['facade', crc32c],
  ['fallback', fallback.crc32c],
  ['bitwise', crc32cBitwise],
] as const;

// RFC 3720 appendix B.4 (CRC examples), results as the 32-bit value.
const vectors: Array<[string, Uint8Array, number]> = [
  ['32 bytes of zeros', new Uint8Array(32), 0x8a9136aa],
  ['32 bytes of 0xFF', new Uint8Array(32).fill(0xff), 0x62a8ab43],
  ['32 incrementing bytes 00..1F', Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e],
  ['32 decrementing bytes 1F..00', Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
  ['"123456789" (check value)', new TextEncoder().encode('123456789'), 0xe3069283],
];

describe('crc32c', () => {
  it('reports which implementation is in use', () => {
    expect(typeof nativeLoaded).toBe('boolean');
    if (nativeLoaded) expect(typeof crc32cHardware).toBe('boolean');
  });

  for (const [name, fn] of impls) {
    it(`${name}: RFC 3720 B.4 vectors`, () => {
      for (const [, data, want] of vectors) expect(fn(data)).toBe(want);
    });
    it(`${name}: empty input is the seed`, () => {
      expect(fn(new Uint8Array(0))).toBe(0);
      expect(fn(new Uint8Array(0), 0xdeadbeef)).toBe(0xdeadbeef);
    });
  }

  it('returns an unsigned 32-bit number', () => {
    const r = crc32c(new Uint8Array(32)); // 0x8A9136AA has the top bit set
    expect(r).toBeGreaterThan(0x7fffffff);
    expect(Number.isInteger(r)).toBe(true);
  });

  it('an iSCSI header digest over a real BHS matches the bitwise reference', () => {
    const bhs = new Uint8Array(48);
    bhs[0] = 0x01;
    bhs[1] = 0x80;
    for (let i = 16; i < 48; i++) bhs[i] = i * 3;
    expect(crc32c(bhs)).toBe(crc32cBitwise(bhs));
  });

  it('chains: crc32c(b, crc32c(a)) === crc32c(a ++ b)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.uint8Array({ maxLength: 3000 }), (a, b) => {
        const ab = new Uint8Array(a.length + b.length);
        ab.set(a);
        ab.set(b, a.length);
        expect(crc32c(b, crc32c(a))).toBe(crc32c(ab));
        expect(fallback.crc32c(b, fallback.crc32c(a))).toBe(fallback.crc32c(ab));
      }),
      { numRuns: 200 },
    );
  });

  it('native == fallback on random lengths 0..1 MiB, random seeds, unaligned views', () => {
    const big = new Uint8Array((1 << 20) + 64);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1 << 20 }),
        fc.integer({ min: 0, max: 63 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (len, start, seed) => {
          const view = big.subarray(start, start + len);
          expect(crc32c(view, seed)).toBe(fallback.crc32c(view, seed));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('native == bitwise reference around the interleave boundaries', () => {
    const data = new Uint8Array(80_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + (i >> 7)) & 0xff;
    for (const len of [
      0, 1, 7, 8, 9, 383, 384, 385, 3071, 3072, 3073, 24_575, 24_576, 24_577, 28_000, 65_536, 80_000,
    ]) {
      for (const start of [0, 1, 5]) {
        const v = data.subarray(start, Math.min(data.length, start + len));
        expect(crc32c(v, 0x12345678), `len ${len} start ${start}`).toBe(crc32cBitwise(v, 0x12345678));
      }
    }
  });

  it('accepts Buffers and subarray views of Buffers', () => {
    const b = Buffer.from('xx123456789yy');
    expect(crc32c(b.subarray(2, 11))).toBe(0xe3069283);
  });

  it('a seed outside 32 bits is taken modulo 2^32, like the table path', () => {
    const d = new Uint8Array([1, 2, 3]);
    expect(crc32c(d, 2 ** 32 + 5)).toBe(fallback.crc32c(d, 5));
    expect(crc32c(d, -1)).toBe(fallback.crc32c(d, 0xffffffff));
  });

  it('rejects non-bytes with a TypeError (never a crash)', () => {
    const bad = crc32c as unknown as (d: unknown, s?: unknown) => number;
    if (nativeLoaded) {
      for (const v of [
        undefined,
        null,
        42,
        'abc',
        {},
        new Uint16Array(4),
        new DataView(new ArrayBuffer(4)),
      ]) {
        expect(() => bad(v)).toThrow(TypeError);
      }
    }
  });
});
