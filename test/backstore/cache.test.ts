import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Backstore,
  CachedBackstore,
  MemoryBackstore,
  NullBackstore,
  PAGE_SIZE,
  PageCache,
  type WriteOptions,
} from '../../src/backstore/index.js';
import { patternBytes } from '../native/helpers.js';
import { backstoreConformance } from './conformance.js';

// The wrapper must behave like any backstore (errors, bounds, resize, close …).
backstoreConformance('memory', {
  stores: true,
  open: async (blockSize) =>
    new CachedBackstore(
      new MemoryBackstore({ blockSize, blockCount: 8192 }),
      new PageCache({ bytes: 64 * PAGE_SIZE, arenaBytes: 16 * PAGE_SIZE }),
    ),
});

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}
function deferred(): Deferred {
  let resolve = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/**
 * A memory backstore that counts reads and can hold them: a held read takes its data at call
 * time (as a disk that already read the sectors) and delivers it only when released; a held
 * mutation waits before it changes anything.
 */
class Probe implements Backstore {
  readonly mem: MemoryBackstore;
  doneWithWriteData = true;
  reads = 0;
  readBytes = 0;
  released: Buffer[] = [];
  holdReads = false;
  holdMutations = false;
  readonly pendingReads: Deferred[] = [];
  readonly pendingMutations: Deferred[] = [];
  constructor(blockSize: number, blockCount: number) {
    this.mem = new MemoryBackstore({ blockSize, blockCount });
  }
  get kind() {
    return this.mem.kind;
  }
  get description() {
    return this.mem.description;
  }
  get blockSize() {
    return this.mem.blockSize;
  }
  get blockCount() {
    return this.mem.blockCount;
  }
  get capabilities() {
    return this.mem.capabilities;
  }
  async read(lba: number, blocks: number): Promise<Buffer> {
    this.reads++;
    this.readBytes += blocks * this.blockSize;
    const data = await this.mem.read(lba, blocks);
    if (this.holdReads) {
      const d = deferred();
      this.pendingReads.push(d);
      await d.promise;
    }
    return data;
  }
  release(buffer: Buffer): void {
    this.released.push(buffer);
  }
  async #held(): Promise<void> {
    if (!this.holdMutations) return;
    const d = deferred();
    this.pendingMutations.push(d);
    await d.promise;
  }
  failWrites = false;
  async write(lba: number, data: Buffer, opts?: WriteOptions) {
    await this.#held();
    if (this.failWrites) throw new Error('injected write failure');
    return this.mem.write(lba, data, opts);
  }
  flush() {
    return this.mem.flush();
  }
  async unmap(lba: number, blocks: number) {
    await this.#held();
    return this.mem.unmap(lba, blocks);
  }
  async writeSame(lba: number, blocks: number, pattern: Buffer | null, opts?: WriteOptions) {
    await this.#held();
    return this.mem.writeSame(lba, blocks, pattern, opts);
  }
  isMapped(lba: number) {
    return this.mem.isMapped(lba);
  }
  async resize(blocks: number) {
    await this.#held();
    return this.mem.resize(blocks);
  }
  close() {
    return this.mem.close();
  }
}

/** Buffer equality without vitest's element-by-element deep equality (slow on large buffers). */
function same(actual: Buffer | undefined, expected: Buffer): void {
  expect(actual?.length).toBe(expected.length);
  if (actual === undefined || !actual.equals(expected)) {
    const at = actual === undefined ? 0 : actual.findIndex((v, i) => v !== expected[i]);
    expect.fail(`buffers differ from byte ${at} (block of 512: ${Math.floor(at / 512)})`);
  }
}

/** Lets pending promise callbacks run (the held operation reach its wait point). */
const settle = () => new Promise<void>((r) => setImmediate(r));

function setup(opts: { blockSize?: number; blocks?: number; pages?: number } = {}) {
  const blockSize = opts.blockSize ?? 4096;
  const probe = new Probe(blockSize, opts.blocks ?? 1024);
  const cache = new PageCache({ bytes: (opts.pages ?? 64) * PAGE_SIZE, arenaBytes: 16 * PAGE_SIZE });
  const b = new CachedBackstore(probe, cache);
  return { probe, cache, b, blockSize };
}

describe('CachedBackstore', () => {
  it('serves a repeated read from the cache without touching the inner store', async () => {
    const { probe, b, cache } = setup();
    const data = patternBytes(4 * 4096, 1);
    await probe.write(10, data); // behind the cache: the first read misses
    expect(await b.read(10, 4)).toEqual(data);
    expect(probe.reads).toBe(1);
    const again = await b.read(10, 4);
    expect(again).toEqual(data);
    expect(await b.read(11, 2)).toEqual(data.subarray(4096, 3 * 4096));
    expect(probe.reads).toBe(1);
    // A fresh buffer, not a view of the arena: scribbling on it does not reach the cache.
    again.fill(0xee);
    expect(await b.read(10, 4)).toEqual(data);
    expect(cache.stats()).toMatchObject({ hits: 3, misses: 1, pages: 4, bytes: 4 * 4096 });
    expect(b.stats()).toEqual({ hits: 3, misses: 1, pages: 4 });
  });

  it('a write replaces the whole pages it wrote (write-through) and drops a partly written page', async () => {
    const { probe, b } = setup({ blockSize: 512, blocks: 128 });
    await probe.write(0, patternBytes(64 * 512, 2));
    await b.read(0, 64); // pages 0..7 cached
    expect(probe.reads).toBe(1);
    const fresh = patternBytes(20 * 512, 3); // bytes 4096..14336: pages 1, 2 whole, page 3 in part
    await b.write(8, fresh);
    expect(await b.read(8, 16)).toEqual(fresh.subarray(0, 16 * 512)); // from the cache
    expect(probe.reads).toBe(1);
    expect(await b.read(24, 4)).toEqual(fresh.subarray(16 * 512)); // page 3: dropped, read again
    expect(probe.reads).toBe(2);
    await b.read(0, 8); // untouched pages are still cached
    await b.read(32, 32);
    expect(probe.reads).toBe(2);
    // A failed write stores nothing (and still drops what it touched).
    probe.failWrites = true;
    await expect(b.write(0, patternBytes(8 * 512, 9))).rejects.toThrow();
    probe.failWrites = false;
    expect(await b.read(0, 8)).toEqual(patternBytes(64 * 512, 2).subarray(0, 8 * 512));
    expect(probe.reads).toBe(3);
  });

  it('unmap, writeSame and resize invalidate', async () => {
    const { probe, b } = setup({ blocks: 64 });
    await b.write(0, patternBytes(64 * 4096, 4));
    await b.read(0, 64);
    await b.unmap(4, 4);
    expect(await b.read(4, 4)).toEqual(Buffer.alloc(4 * 4096));
    const block = patternBytes(4096, 5);
    await b.writeSame(20, 3, block);
    expect(await b.read(20, 3)).toEqual(Buffer.concat([block, block, block]));
    await b.writeSame(30, 2, null);
    expect(await b.read(30, 2)).toEqual(Buffer.alloc(2 * 4096));
    // Shrink then grow: the region read back is zeros, not the cached old data.
    await b.read(56, 8);
    const before = probe.reads;
    await b.resize(60);
    await b.resize(64);
    expect(await b.read(56, 8)).toEqual(Buffer.concat([await probe.mem.read(56, 4), Buffer.alloc(4 * 4096)]));
    expect(probe.reads).toBeGreaterThan(before);
    expect(b.blockCount).toBe(64);
  });

  it('evicts the least recently used pages when the budget is full', async () => {
    const { probe, b, cache } = setup({ pages: 8 });
    await probe.write(0, patternBytes(16 * 4096, 6));
    for (let i = 0; i < 8; i++) await b.read(i, 1);
    await b.read(0, 1); // page 0 is now the most recently used
    for (let i = 8; i < 15; i++) await b.read(i, 1); // pushes out 1..7
    expect(cache.stats()).toMatchObject({ pages: 8, evictions: 7, capacityBytes: 8 * 4096 });
    const reads = probe.reads;
    expect(await b.read(0, 1)).toEqual(patternBytes(16 * 4096, 6).subarray(0, 4096));
    expect(probe.reads).toBe(reads);
    await b.read(1, 1);
    expect(probe.reads).toBe(reads + 1);
    // Arenas are allocated as the cache fills, never beyond the budget.
    expect(cache.stats().arenaBytes).toBe(8 * 4096);
  });

  it('a read larger than the cache still returns the right data and keeps the cache consistent', async () => {
    const { b, cache } = setup({ pages: 4 });
    const data = patternBytes(32 * 4096, 7);
    await b.write(0, data);
    expect(await b.read(0, 32)).toEqual(data);
    expect(cache.stats().pages).toBe(4);
    expect(await b.read(28, 4)).toEqual(data.subarray(28 * 4096));
    expect(cache.stats().hits).toBe(1);
  });

  it('a read in flight across a whole write does not cache the old data', async () => {
    const { probe, b } = setup();
    const old = patternBytes(4 * 4096, 8);
    await b.write(0, old);
    probe.holdReads = true;
    const reading = b.read(0, 4); // the disk has the old data in hand
    await settle();
    const fresh = patternBytes(4 * 4096, 9);
    await b.write(0, fresh); // starts and finishes while the read is in flight
    probe.pendingReads.shift()?.resolve();
    expect(await reading).toEqual(old); // either order is fine for the caller …
    probe.holdReads = false;
    expect(await b.read(0, 4)).toEqual(fresh); // … but the cache must not keep the old data
    expect(await b.read(0, 4)).toEqual(fresh);
  });

  it('a read that starts while an overlapping write is in flight does not fill the cache', async () => {
    const { probe, b } = setup();
    const old = patternBytes(4 * 4096, 10);
    await b.write(0, old);
    probe.holdMutations = true;
    const fresh = patternBytes(4 * 4096, 11);
    const writing = b.write(1, fresh.subarray(0, 4096));
    await settle();
    expect(await b.read(0, 4)).toEqual(old); // the write has not landed yet
    probe.pendingMutations.shift()?.resolve();
    await writing;
    probe.holdMutations = false;
    const now = await b.read(0, 4);
    expect(now.subarray(4096, 8192)).toEqual(fresh.subarray(0, 4096));
    expect(now.subarray(0, 4096)).toEqual(old.subarray(0, 4096));
  });

  it('two overlapping writes in flight store neither (which one the disk kept is unknown); a lone write stores', async () => {
    const { probe, b } = setup();
    probe.holdMutations = true;
    const first = patternBytes(2 * 4096, 20);
    const second = patternBytes(2 * 4096, 21);
    const w1 = b.write(0, first);
    await settle();
    const w2 = b.write(1, second);
    await settle();
    // The store applies them in the opposite order of their starts.
    probe.pendingMutations[1]?.resolve();
    await settle();
    probe.pendingMutations[0]?.resolve();
    await Promise.all([w1, w2]);
    probe.holdMutations = false;
    const reads = probe.reads;
    expect(await b.read(0, 3)).toEqual(await probe.mem.read(0, 3)); // what the store holds
    expect(probe.reads).toBe(reads + 1); // from the store: nothing was stored by either write
    await b.write(8, second);
    expect(await b.read(8, 2)).toEqual(second);
    expect(probe.reads).toBe(reads + 1); // a lone write is read back from the cache
  });

  it('a write overwrites cached pages in their slots: reads meanwhile get the old data from memory', async () => {
    const { probe, cache, b } = setup();
    const old = patternBytes(4 * 4096, 30);
    await b.write(0, old); // pages 0..3 stored
    const before = cache.stats();
    probe.holdMutations = true;
    const fresh = patternBytes(4 * 4096, 31);
    const writing = b.write(0, fresh);
    await settle();
    const reads = probe.reads;
    same(await b.read(0, 4), old); // concurrent with the write: the old data, from the cache
    expect(probe.reads).toBe(reads);
    probe.pendingMutations.shift()?.resolve();
    await writing;
    probe.holdMutations = false;
    same(await b.read(0, 4), fresh); // acknowledged: the new data, from the cache
    expect(probe.reads).toBe(reads);
    const after = cache.stats();
    expect(after.insertions).toBe(before.insertions); // same slots, nothing dropped or added
    expect(after.invalidations).toBe(before.invalidations);
  });

  it('overlapping writes over cached pages: once the first is acknowledged no read sees what was before it', async () => {
    const { probe, b } = setup();
    const old = patternBytes(4 * 4096, 40);
    await b.write(0, old);
    probe.holdMutations = true;
    const first = patternBytes(4 * 4096, 41);
    const second = patternBytes(2 * 4096, 42);
    const w1 = b.write(0, first);
    await settle();
    const w2 = b.write(2, second);
    await settle();
    probe.pendingMutations.shift()?.resolve();
    await w1; // acknowledged while the second is still in flight
    probe.holdMutations = false;
    const mid = await b.read(0, 4);
    same(mid.subarray(0, 2 * 4096), first.subarray(0, 2 * 4096)); // pages only the first wrote
    // Pages both write: the first's data or the second's, never the old.
    const overlap = mid.subarray(2 * 4096);
    expect(overlap.equals(first.subarray(2 * 4096)) || overlap.equals(second)).toBe(true);
    probe.pendingMutations.shift()?.resolve();
    await w2;
    same(await b.read(0, 4), await probe.mem.read(0, 4));
    same(await b.read(0, 4), Buffer.concat([first.subarray(0, 2 * 4096), second]));
  });

  it('a read that finishes while an overlapping unmap is in flight does not fill the cache', async () => {
    const { probe, b } = setup();
    await b.write(0, patternBytes(4 * 4096, 12));
    probe.holdReads = true;
    const reading = b.read(0, 4);
    await settle();
    probe.holdMutations = true;
    const unmapping = b.unmap(2, 1);
    await settle();
    probe.pendingReads.shift()?.resolve();
    await reading;
    probe.pendingMutations.shift()?.resolve();
    await unmapping;
    probe.holdReads = false;
    probe.holdMutations = false;
    expect((await b.read(2, 1)).equals(Buffer.alloc(4096))).toBe(true);
  });

  it('a mutation of another range does not stop a read from filling the cache', async () => {
    const { probe, b } = setup();
    await b.write(0, patternBytes(16 * 4096, 13));
    probe.holdReads = true;
    const reading = b.read(0, 4);
    await settle();
    await b.write(8, patternBytes(4096, 14));
    probe.pendingReads.shift()?.resolve();
    await reading;
    probe.holdReads = false;
    const reads = probe.reads;
    await b.read(0, 4);
    expect(probe.reads).toBe(reads);
  });

  it('a resize in flight stops reads from filling the cache', async () => {
    const { probe, b } = setup({ blocks: 64 });
    await b.write(56, patternBytes(8 * 4096, 15));
    probe.holdReads = true;
    const reading = b.read(56, 8);
    await settle();
    await b.resize(60);
    await b.resize(64);
    probe.pendingReads.shift()?.resolve();
    await reading;
    probe.holdReads = false;
    expect((await b.read(60, 4)).equals(Buffer.alloc(4 * 4096))).toBe(true);
  });

  it('unmapping a huge range walks the cache, not the range', async () => {
    const cache = new PageCache({ bytes: 256 * PAGE_SIZE, arenaBytes: 64 * PAGE_SIZE });
    const inner = new NullBackstore({ blockSize: 4096, blockCount: 2 ** 34 }); // 64 TiB
    const b = new CachedBackstore(inner, cache);
    const other = new CachedBackstore(new NullBackstore({ blockSize: 4096, blockCount: 1024 }), cache);
    for (let i = 0; i < 100; i++) await b.read(i * 1_000_003, 1);
    await other.read(0, 16);
    expect(cache.stats().pages).toBe(116);
    const t0 = performance.now();
    await b.unmap(0, 2 ** 34);
    await b.writeSame(0, 2 ** 34, null);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(b.stats().pages).toBe(0);
    expect(other.stats().pages).toBe(16);
    expect(cache.stats().invalidations).toBe(100);
  });

  it('512-byte blocks: unaligned reads are widened to pages and served from them', async () => {
    const { probe, b, cache } = setup({ blockSize: 512, blocks: 8 * 16 + 3 }); // a partial last page
    const data = patternBytes((8 * 16 + 3) * 512, 16);
    await probe.write(0, data);
    expect(await b.read(3, 7)).toEqual(data.subarray(3 * 512, 10 * 512)); // pages 0 and 1
    expect(probe.reads).toBe(1);
    expect(probe.readBytes).toBe(2 * 4096);
    expect(cache.stats().pages).toBe(2);
    expect(await b.read(0, 16)).toEqual(data.subarray(0, 16 * 512));
    expect(await b.read(9, 1)).toEqual(data.subarray(9 * 512, 10 * 512));
    expect(probe.reads).toBe(1);
    // A 512-byte write inside a cached page drops the whole page.
    const block = patternBytes(512, 17);
    await b.write(12, block);
    expect(await b.read(12, 1)).toEqual(block);
    expect(probe.reads).toBe(2);
    // The partial page at the end is read from the store every time, never cached.
    const last = 8 * 16;
    expect(await b.read(last, 3)).toEqual(data.subarray(last * 512));
    expect(await b.read(last + 1, 2)).toEqual(data.subarray((last + 1) * 512));
    expect(probe.reads).toBe(4);
  });

  it('hands buffers it got from the inner store back to it, widened ones too', async () => {
    const { probe, b } = setup({ blockSize: 512 });
    const r1 = await b.read(1, 2);
    b.release(r1);
    expect(probe.released).toHaveLength(1);
    expect(probe.released[0]?.buffer).toBe(r1.buffer);
    const hit = await b.read(0, 8);
    b.release(hit); // assembled by the cache: the inner store ignores it
    expect(probe.released).toHaveLength(2);
  });

  it('a large hit is assembled in a pooled buffer that release() takes back for the next hit', async () => {
    const { probe, b } = setup({ blockSize: 512 });
    const data = patternBytes(128 * 512, 5);
    await b.write(0, data);
    b.release(await b.read(0, 128)); // miss: fills the cache; its buffer goes to the inner store
    const hit = await b.read(0, 128);
    expect(hit).toEqual(data);
    const memory = hit.buffer;
    b.release(hit);
    expect(probe.released.some((r) => r.buffer === memory)).toBe(false); // ours, not the store's
    const again = await b.read(0, 128);
    expect(again.buffer).toBe(memory);
    expect(again).toEqual(data);
    const other = await b.read(0, 128); // `again` is still lent: a different buffer
    expect(other.buffer).not.toBe(memory);
    expect(again).toEqual(data);
  });

  it('validates like the inner store and reports what it does', async () => {
    const { b, probe } = setup({ blocks: 16 });
    await expect(b.read(15, 2)).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
    await expect(b.read(-1, 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(b.write(0, Buffer.alloc(100))).rejects.toMatchObject({ code: 'MISALIGNED' });
    expect(b.description).toMatch(/block cache on/);
    expect(b.kind).toBe('memory');
    expect(b.doneWithWriteData).toBe(true); // whatever the inner store says
    probe.doneWithWriteData = false;
    expect(b.doneWithWriteData).toBe(false);
  });

  it('close drops the LUN’s pages and frees its number for the next LUN', async () => {
    const cache = new PageCache({ bytes: 16 * PAGE_SIZE });
    const a = new CachedBackstore(new MemoryBackstore({ blockSize: 4096, blockCount: 16 }), cache);
    await a.write(0, patternBytes(4096 * 4, 18));
    await a.read(0, 4);
    expect(cache.stats()).toMatchObject({ pages: 4, luns: 1 });
    await a.close();
    expect(cache.stats()).toMatchObject({ pages: 0, luns: 0 });
    await expect(a.read(0, 1)).rejects.toMatchObject({ code: 'CLOSED' });
    const b = new CachedBackstore(new MemoryBackstore({ blockSize: 4096, blockCount: 16 }), cache);
    expect(await b.read(0, 4)).toEqual(Buffer.alloc(4 * 4096)); // not a's pages
  });

  it('refuses a budget below one page', () => {
    expect(() => new PageCache({ bytes: 4095 })).toThrow(/less than one 4096-byte page/);
  });
});

/** A random operation on a small LUN (block numbers; sizes kept small so ranges collide). */
type Op =
  | { t: 'read'; lba: number; n: number }
  | { t: 'write'; lba: number; n: number; seed: number }
  | { t: 'unmap'; lba: number; n: number }
  | { t: 'same'; lba: number; n: number; seed: number };

/** LUN size in blocks: 24 pages either way (the caches below hold 12 or 16), so ranges collide. */
const blocksOf = (blockSize: number): number => (24 * PAGE_SIZE) / blockSize;
const opArb = (blockSize: number): fc.Arbitrary<Op> => {
  const BLOCKS = blocksOf(blockSize);
  const range = fc
    .tuple(fc.integer({ min: 0, max: BLOCKS - 1 }), fc.integer({ min: 1, max: blockSize === 512 ? 24 : 6 }))
    .map(([lba, n]) => ({ lba, n: Math.min(n, BLOCKS - lba) }));
  return fc.oneof(
    { weight: 4, arbitrary: range.map((r): Op => ({ t: 'read', ...r })) },
    { weight: 2, arbitrary: fc.tuple(range, fc.nat()).map(([r, seed]): Op => ({ t: 'write', ...r, seed })) },
    { weight: 1, arbitrary: range.map((r): Op => ({ t: 'unmap', ...r })) },
    { weight: 1, arbitrary: fc.tuple(range, fc.nat()).map(([r, seed]): Op => ({ t: 'same', ...r, seed })) },
  );
};

async function apply(b: Backstore, op: Op): Promise<Buffer | undefined> {
  const bs = b.blockSize;
  switch (op.t) {
    case 'read':
      return b.read(op.lba, op.n);
    case 'write':
      return b.write(op.lba, patternBytes(op.n * bs, op.seed)).then(() => undefined);
    case 'unmap':
      return b.unmap(op.lba, op.n).then(() => undefined);
    case 'same':
      return b.writeSame(op.lba, op.n, patternBytes(bs, op.seed)).then(() => undefined);
  }
}

describe('CachedBackstore properties', () => {
  for (const blockSize of [512, 4096] as const) {
    const BLOCKS = blocksOf(blockSize);
    it(`reads what a plain store reads, in any sequence (blockSize ${blockSize})`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb(blockSize), { maxLength: 60, size: 'medium' }), async (ops) => {
          const plain = new MemoryBackstore({ blockSize, blockCount: BLOCKS });
          const cached = new CachedBackstore(
            new MemoryBackstore({ blockSize, blockCount: BLOCKS }),
            new PageCache({ bytes: 12 * PAGE_SIZE, arenaBytes: 4 * PAGE_SIZE }),
          );
          for (const op of ops) {
            const [a, b] = [await apply(plain, op), await apply(cached, op)];
            if (a === undefined) expect(b).toBeUndefined();
            else same(b, a);
          }
          same(await cached.read(0, BLOCKS), await plain.read(0, BLOCKS));
        }),
        { numRuns: 100 },
      );
    }, 60_000);

    it(`stays coherent with the store under any interleaving of concurrent requests (blockSize ${blockSize})`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.scheduler(),
          fc.array(fc.array(opArb(blockSize), { minLength: 1, maxLength: 8 }), { maxLength: 6 }),
          async (s, batches) => {
            const mem = new MemoryBackstore({ blockSize, blockCount: BLOCKS });
            // Every request of the inner store does its work at a scheduled moment and completes at
            // another one: a read takes the data at the first, delivers it at the second.
            let quiet = false; // checks between batches: nothing in flight, no scheduling needed
            const later = <T>(fn: () => Promise<T>): Promise<T> =>
              quiet
                ? fn()
                : s
                    .schedule(Promise.resolve())
                    .then(fn)
                    .then((v) => s.schedule(Promise.resolve(v)));
            const inner: Backstore = {
              kind: 'memory',
              description: 'scheduled memory',
              blockSize,
              get blockCount() {
                return mem.blockCount;
              },
              capabilities: mem.capabilities,
              read: (lba, n) => later(() => mem.read(lba, n)),
              write: (lba, d, o) => later(() => mem.write(lba, d, o)),
              flush: () => mem.flush(),
              unmap: (lba, n) => later(() => mem.unmap(lba, n)),
              writeSame: (lba, n, p, o) => later(() => mem.writeSame(lba, n, p, o)),
              isMapped: (lba) => mem.isMapped(lba),
              resize: (n) => later(() => mem.resize(n)),
              close: () => mem.close(),
            };
            const cached = new CachedBackstore(
              inner,
              new PageCache({ bytes: 16 * PAGE_SIZE, arenaBytes: 4 * PAGE_SIZE }),
            );
            for (const batch of batches) {
              await s.waitFor(Promise.all(batch.map((op) => apply(cached, op))));
              quiet = true;
              // Once everything settled, every page read through the cache (hit or not) is what
              // the store holds; then the whole LUN at once.
              for (let lba = 0; lba < BLOCKS; lba += PAGE_SIZE / blockSize) {
                const one = await cached.read(lba, 1);
                same(one, await mem.read(lba, 1));
              }
              same(await cached.read(0, BLOCKS), await mem.read(0, BLOCKS));
              quiet = false;
            }
          },
        ),
        { numRuns: 100 },
      );
    }, 60_000);
  }
});
