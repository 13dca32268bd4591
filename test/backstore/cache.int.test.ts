/**
 * The block cache over a real O_DIRECT file backstore: the conformance suite, and pooled read
 * buffers handed back with release() (the inner store reuses them at once) never corrupt pages.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CachedBackstore, openBackstore, PAGE_SIZE, PageCache } from '../../src/backstore/index.js';
import { diskScratch, patternBytes } from '../native/helpers.js';
import { backstoreConformance } from './conformance.js';

let dir = '';
let cleanup: () => Promise<void> = async () => {};
let counter = 0;
const fresh = (name: string) => join(dir, `${name}-${++counter}.img`);

beforeAll(async () => {
  ({ dir, cleanup } = await diskScratch('cache'));
});
afterAll(async () => {
  await cleanup();
});

const cache = new PageCache({ bytes: 4 * 1024 * 1024, arenaBytes: 1024 * 1024 });

backstoreConformance('file', {
  stores: true,
  open: async (blockSize) =>
    new CachedBackstore(
      await openBackstore({
        kind: 'file',
        path: fresh('conf'),
        size: 8192 * blockSize,
        blockSize,
        create: true,
      }),
      cache,
    ),
});

describe('block cache over a file backstore', () => {
  for (const blockSize of [512, 4096] as const) {
    it(`released pooled read buffers are reused by the file store without touching cached pages (blockSize ${blockSize})`, async () => {
      const inner = await openBackstore({
        kind: 'file',
        path: fresh('pool'),
        size: 4096 * blockSize,
        blockSize,
        create: true,
      });
      const b = new CachedBackstore(inner, new PageCache({ bytes: 2 * 1024 * 1024 }));
      try {
        const blocks = (256 * 1024) / blockSize; // above the file store's slab limit: pooled buffers
        const a = patternBytes(256 * 1024, 1);
        const c = patternBytes(256 * 1024, 2);
        await inner.write(0, a); // behind the cache: the first reads miss
        await inner.write(blocks, c);
        const first = await b.read(0, blocks); // miss: the file store's pooled buffer
        expect(first.equals(a)).toBe(true);
        b.release(first);
        const second = await b.read(blocks, blocks); // likely the same pooled buffer, refilled
        expect(second.equals(c)).toBe(true);
        b.release(second);
        expect((await b.read(0, blocks)).equals(a)).toBe(true); // a hit: the pages were copied
        expect(b.stats()).toMatchObject({ hits: 1, misses: 2, pages: (2 * 256 * 1024) / PAGE_SIZE });
        // Unaligned 512-byte reads are widened; the view handed out is released to the store too.
        if (blockSize === 512) {
          const view = await b.read(2 * blocks + 3, 5);
          expect(view.equals(Buffer.alloc(5 * 512))).toBe(true);
          b.release(view);
          expect((await b.read(2 * blocks, 8)).equals(Buffer.alloc(4096))).toBe(true);
          expect(b.stats().hits).toBe(2);
        }
      } finally {
        await b.close();
      }
    });
  }
});
