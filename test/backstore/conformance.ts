/**
 * Backstore conformance suite, run against every kind (memory and null in unit tests, file in
 * integration tests). `stores` is false for the null backstore (writes are discarded).
 */
import { describe, expect, it } from 'vitest';
import { type Backstore, BackstoreError } from '../../src/backstore/types.js';
import { patternBytes, rejection } from '../native/helpers.js';

export interface ConformanceTarget {
  /** A fresh backstore of at least 4096 blocks. */
  open(blockSize: 512 | 4096): Promise<Backstore>;
  readonly stores: boolean;
  readonly cleanup?: () => Promise<void>;
}

/** A Buffer view that starts at an odd address inside its ArrayBuffer (never O_DIRECT-aligned). */
function unaligned(data: Buffer): Buffer {
  const big = Buffer.alloc(data.length + 3);
  data.copy(big, 3);
  return big.subarray(3);
}

async function expectCode(
  p: Promise<unknown> | (() => Promise<unknown>),
  code: string,
): Promise<BackstoreError> {
  const e = await rejection(p);
  expect(e).toBeInstanceOf(BackstoreError);
  expect(e.code).toBe(code);
  return e as BackstoreError;
}

export function backstoreConformance(kind: string, target: ConformanceTarget): void {
  for (const bsz of [512, 4096] as const) {
    describe(`${kind} backstore conformance (blockSize ${bsz})`, () => {
      const withStore = async (fn: (b: Backstore) => Promise<void>) => {
        const b = await target.open(bsz);
        try {
          await fn(b);
        } finally {
          await b.close();
        }
      };

      it('describes itself', () =>
        withStore(async (b) => {
          expect(b.kind).toBe(kind);
          expect(b.blockSize).toBe(bsz);
          expect(b.blockCount).toBeGreaterThanOrEqual(4096);
          expect(b.description.length).toBeGreaterThan(0);
          const c = b.capabilities;
          for (const k of ['directIo', 'thin', 'readOnly', 'persistent', 'volatileCache'] as const) {
            expect(typeof c[k]).toBe('boolean');
          }
        }));

      it('reads zeros where nothing was written', () =>
        withStore(async (b) => {
          const r = await b.read(100, 8);
          expect(r.length).toBe(8 * bsz);
          expect(r.every((x) => x === 0)).toBe(true);
          expect((await b.read(b.blockCount - 1, 1)).length).toBe(bsz);
          expect((await b.read(0, 0)).length).toBe(0);
        }));

      it('reads back what was written (aligned and unaligned caller buffers)', () =>
        withStore(async (b) => {
          const data = patternBytes(16 * bsz, bsz);
          await b.write(10, data);
          await b.write(40, unaligned(data.subarray(0, 3 * bsz)));
          const r = await b.read(10, 16);
          const r2 = await b.read(40, 3);
          if (target.stores) {
            expect(r.equals(data)).toBe(true);
            expect(r2.equals(data.subarray(0, 3 * bsz))).toBe(true);
            // The blocks around are untouched.
            expect((await b.read(9, 1)).every((x) => x === 0)).toBe(true);
            expect((await b.read(26, 1)).every((x) => x === 0)).toBe(true);
          } else {
            expect(r.every((x) => x === 0)).toBe(true);
          }
          // The returned buffer belongs to the caller: changing it changes nothing stored.
          r.fill(0x55);
          if (target.stores) expect((await b.read(10, 16)).equals(data)).toBe(true);
        }));

      it('writes the last block and a large multi-chunk range', () =>
        withStore(async (b) => {
          const last = patternBytes(bsz, 3);
          await b.write(b.blockCount - 1, last);
          const big = patternBytes(1024 * 1024 + 5 * bsz, 4).subarray(
            0,
            Math.floor((1024 * 1024 + 5 * bsz) / bsz) * bsz,
          );
          await b.write(1, big);
          if (target.stores) {
            expect((await b.read(b.blockCount - 1, 1)).equals(last)).toBe(true);
            expect((await b.read(1, big.length / bsz)).equals(big)).toBe(true);
          }
        }));

      it('unmap makes blocks read as zeros', () =>
        withStore(async (b) => {
          await b.write(0, patternBytes(64 * bsz, 5));
          await b.unmap(8, 16);
          const r = await b.read(0, 64);
          expect(r.subarray(8 * bsz, 24 * bsz).every((x) => x === 0)).toBe(true);
          if (target.stores) {
            expect(r.subarray(0, 8 * bsz).equals(patternBytes(64 * bsz, 5).subarray(0, 8 * bsz))).toBe(true);
            expect(r.subarray(24 * bsz).equals(patternBytes(64 * bsz, 5).subarray(24 * bsz))).toBe(true);
          }
          await b.unmap(0, 0);
        }));

      it('isMapped follows writes and unmaps on thin stores', () =>
        withStore(async (b) => {
          const lba = 2048;
          await b.write(lba, patternBytes(bsz * 256, 6));
          if (target.stores) expect(await b.isMapped(lba)).toBe(true);
          if (b.capabilities.thin) {
            await b.unmap(lba, 256);
            expect(await b.isMapped(lba + 128)).toBe(false);
          }
        }));

      it('writeSame repeats one block; null pattern zeros the range', () =>
        withStore(async (b) => {
          const pat = patternBytes(bsz, 7);
          await b.writeSame(100, 300, pat);
          await b.writeSame(500, 3, unaligned(pat), { fua: true });
          const r = await b.read(99, 302);
          if (target.stores) {
            expect(r.subarray(0, bsz).every((x) => x === 0)).toBe(true);
            for (let i = 1; i <= 300; i++)
              expect(r.subarray(i * bsz, (i + 1) * bsz).equals(pat), `block ${i}`).toBe(true);
            expect(r.subarray(301 * bsz).every((x) => x === 0)).toBe(true);
            expect((await b.read(502, 1)).equals(pat)).toBe(true);
          }
          await b.writeSame(150, 100, null);
          const z = await b.read(150, 100);
          expect(z.every((x) => x === 0)).toBe(true);
          if (target.stores) expect((await b.read(250, 1)).equals(pat)).toBe(true);
          // A zero pattern writes zeros too.
          await b.writeSame(250, 10, Buffer.alloc(bsz));
          expect((await b.read(250, 10)).every((x) => x === 0)).toBe(true);
          await b.writeSame(0, 0, pat);
        }));

      it('FUA writes and flush resolve', () =>
        withStore(async (b) => {
          await b.write(3, patternBytes(2 * bsz, 8), { fua: true });
          await b.flush();
          await b.write(5, patternBytes(bsz, 9), { fua: false });
          await b.flush();
          if (target.stores) expect((await b.read(3, 2)).equals(patternBytes(2 * bsz, 8))).toBe(true);
        }));

      it('64 requests in flight at once', () =>
        withStore(async (b) => {
          const n = 64;
          const chunk = 8;
          await Promise.all(
            Array.from({ length: n }, (_, i) =>
              b.write(i * chunk, patternBytes(chunk * bsz, 1000 + i), { fua: i % 7 === 0 }),
            ),
          );
          const reads = await Promise.all(Array.from({ length: n }, (_, i) => b.read(i * chunk, chunk)));
          if (target.stores) {
            for (const [i, r] of reads.entries()) {
              expect(r.equals(patternBytes(chunk * bsz, 1000 + i)), `request ${i}`).toBe(true);
            }
          }
          // Mixed kinds concurrently.
          await Promise.all([
            ...Array.from({ length: 16 }, (_, i) => b.read(i * 3, 3)),
            ...Array.from({ length: 16 }, (_, i) => b.write(1024 + i * 2, patternBytes(2 * bsz, i))),
            b.flush(),
            b.unmap(2000, 16),
            b.writeSame(3000, 64, patternBytes(bsz, 1)),
            b.isMapped(0),
          ]);
        }));

      it('bounds, lengths and arguments are checked', () =>
        withStore(async (b) => {
          const n = b.blockCount;
          const one = Buffer.alloc(bsz);
          await expectCode(b.read(n, 1), 'OUT_OF_RANGE');
          await expectCode(b.read(n - 1, 2), 'OUT_OF_RANGE');
          await expectCode(b.write(n, one), 'OUT_OF_RANGE');
          await expectCode(b.write(n - 1, Buffer.alloc(2 * bsz)), 'OUT_OF_RANGE');
          await expectCode(b.unmap(n - 4, 5), 'OUT_OF_RANGE');
          await expectCode(b.writeSame(n - 4, 5, one), 'OUT_OF_RANGE');
          await expectCode(b.isMapped(n), 'OUT_OF_RANGE');
          const e = await expectCode(b.read(n + 10, 1), 'OUT_OF_RANGE');
          expect(e.message).toMatch(String(n));
          await expectCode(b.write(0, Buffer.alloc(bsz + 1)), 'MISALIGNED');
          await expectCode(b.write(0, Buffer.alloc(bsz - 1)), 'MISALIGNED');
          await expectCode(b.writeSame(0, 1, Buffer.alloc(bsz * 2)), 'MISALIGNED');
          await expectCode(b.read(-1, 1), 'INVALID_ARGUMENT');
          await expectCode(b.read(0, 1.5), 'INVALID_ARGUMENT');
          await expectCode(b.read(Number.NaN, 1), 'INVALID_ARGUMENT');
          await expectCode(b.write(0, 'abc' as unknown as Buffer), 'INVALID_ARGUMENT');
          await expectCode(b.writeSame(0, 1, 'x' as unknown as Buffer), 'INVALID_ARGUMENT');
          // Nothing throws synchronously.
          const p = b.read(-5, 1);
          expect(p).toBeInstanceOf(Promise);
          await p.catch(() => undefined);
        }));

      it('resize grows and shrinks', () =>
        withStore(async (b) => {
          if (b.capabilities.readOnly) return;
          const n = b.blockCount;
          await b.write(n - 1, patternBytes(bsz, 11));
          await b.resize(n + 100);
          expect(b.blockCount).toBe(n + 100);
          expect((await b.read(n + 99, 1)).every((x) => x === 0)).toBe(true);
          await b.resize(n - 10);
          expect(b.blockCount).toBe(n - 10);
          await expectCode(b.read(n - 10, 1), 'OUT_OF_RANGE');
          await b.resize(n);
          expect((await b.read(n - 1, 1)).every((x) => x === 0)).toBe(true);
          await expectCode(b.resize(-1), 'INVALID_ARGUMENT');
        }));

      it('after close: CLOSED for everything; close twice is fine', async () => {
        const b = await target.open(bsz);
        await b.close();
        await b.close();
        const one = Buffer.alloc(bsz);
        await expectCode(b.read(0, 1), 'CLOSED');
        await expectCode(b.write(0, one), 'CLOSED');
        await expectCode(b.flush(), 'CLOSED');
        await expectCode(b.unmap(0, 1), 'CLOSED');
        await expectCode(b.writeSame(0, 1, one), 'CLOSED');
        await expectCode(b.isMapped(0), 'CLOSED');
        await expectCode(b.resize(10), 'CLOSED');
      });
    });
  }
}
