import { describe, expect, it } from 'vitest';
import { AlignedPool } from '../../src/native/aligned-pool.js';
import { ALIGNMENT, isAligned } from '../../src/native/index.js';

describe('AlignedPool', () => {
  it('hands out the power-of-two class of a length, at least one alignment unit', () => {
    const pool = new AlignedPool(1 << 20);
    const sizes: [number, number][] = [
      [0, ALIGNMENT],
      [1, ALIGNMENT],
      [ALIGNMENT, ALIGNMENT],
      [ALIGNMENT + 1, 2 * ALIGNMENT],
      [12_288, 16_384],
      [65_536, 65_536],
      [65_537, 131_072],
      [(1 << 20) - 1, 1 << 20],
      [(8 << 20) + 1, (8 << 20) + 1], // beyond the largest class: exact
    ];
    for (const [length, size] of sizes) {
      const b = pool.take(length);
      expect([length, b.length]).toEqual([length, size]);
      expect(isAligned(b, ALIGNMENT)).toBe(true);
    }
  });

  it('reuses a buffer given back, within its cap, and lends views that come back once', () => {
    const pool = new AlignedPool(3 * ALIGNMENT);
    const a = pool.take(100);
    pool.give(a);
    expect(pool.idleBytes).toBe(ALIGNMENT);
    expect(pool.take(ALIGNMENT)).toBe(a);
    expect(pool.idleBytes).toBe(0);
    const big = pool.take(2 * ALIGNMENT + 1); // 16 KiB class: over the 12 KiB cap
    pool.give(big);
    expect(pool.idleBytes).toBe(0);
    const view = pool.lend(10);
    expect(view.length).toBe(10);
    expect(pool.takeBack(view)).toBe(true);
    expect(pool.takeBack(view)).toBe(false);
    expect(pool.idleBytes).toBe(ALIGNMENT);
    expect(pool.takeBack(Buffer.alloc(10))).toBe(false);
  });
});
