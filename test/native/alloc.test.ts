import { describe, expect, it } from 'vitest';
import {
  ALIGNMENT,
  alignedAllocation,
  alignedPoolStats,
  allocAligned,
  fallback,
  isAligned,
  nativeLoadError,
  nativeLoaded,
} from '../../src/native/index.js';

describe('allocAligned', () => {
  it('says whether the addon is loaded, and why not', () => {
    expect(alignedAllocation).toBe(nativeLoaded);
    if (!nativeLoaded) expect(nativeLoadError).toMatch(/./);
    else expect(nativeLoadError).toBeNull();
  });

  it('returns zero-filled Buffers of the exact size', () => {
    for (const size of [0, 1, 511, 4096, 5000, 65_536, 1 << 20, (16 << 20) + 1]) {
      const b = allocAligned(size);
      expect(Buffer.isBuffer(b)).toBe(true);
      expect(b.length).toBe(size);
      expect(b.every((x) => x === 0)).toBe(true);
    }
  });

  it.runIf(nativeLoaded)('memory is 4096-byte aligned', () => {
    for (const size of [1, 4096, 12_288, 100_000, 1 << 20, (16 << 20) + 1]) {
      const b = allocAligned(size, { zero: false });
      expect(isAligned(b, ALIGNMENT)).toBe(true);
      if (size > 512) {
        expect(isAligned(b.subarray(512), 4096)).toBe(false);
        expect(isAligned(b.subarray(512), 512)).toBe(true);
      }
    }
  });

  it.runIf(nativeLoaded)('reuses pooled blocks and reports live bytes', async () => {
    const before = alignedPoolStats();
    expect(before).not.toBeNull();
    let bufs: Buffer[] | null = Array.from({ length: 32 }, () => allocAligned(65_536));
    const during = alignedPoolStats()!;
    expect(during.liveBytes - before!.liveBytes).toBeGreaterThanOrEqual(32 * 65_536);
    expect(bufs.length).toBe(32);
    bufs = null;
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) {
      gc();
      await new Promise((r) => setTimeout(r, 50));
      const after = alignedPoolStats()!;
      expect(after.liveBytes).toBeLessThan(during.liveBytes);
    }
  });

  it('bad sizes are coded errors, never crashes', () => {
    const bad = allocAligned as unknown as (s: unknown, o?: unknown) => Buffer;
    for (const [v, code] of [
      [-1, 'ERR_OUT_OF_RANGE'],
      [1.5, 'ERR_OUT_OF_RANGE'],
      [Number.NaN, 'ERR_OUT_OF_RANGE'],
      [2 ** 40, 'ERR_OUT_OF_RANGE'],
      ['12', 'ERR_INVALID_ARG_TYPE'],
      [undefined, 'ERR_INVALID_ARG_TYPE'],
    ] as const) {
      expect(() => bad(v), String(v)).toThrow(expect.objectContaining({ code }));
      expect(() => fallback.allocAligned(v as number), String(v)).toThrow(expect.objectContaining({ code }));
    }
  });

  it('isAligned rejects a non-power-of-two alignment and non-bytes', () => {
    if (!nativeLoaded) return;
    const bad = isAligned as unknown as (b: unknown, a: unknown) => boolean;
    expect(() => bad(Buffer.alloc(8), 3)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => bad('x', 4096)).toThrow(TypeError);
  });
});
