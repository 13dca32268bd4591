import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ActivityLog, ActivityLogCore, extentsOf } from '../../src/replication/activity-log.js';
import { Bitmap } from '../../src/replication/bitmap.js';
import { Metadata } from '../../src/replication/metadata.js';
import { hasQuorum, promoteRefusal } from '../../src/replication/states.js';

const MiB = 1024 * 1024;

describe('Bitmap', () => {
  it('sets, clears, counts, finds', () => {
    const bm = new Bitmap(64 * MiB);
    expect(bm.bits).toBe(16384);
    expect(bm.setRange(4096, 8192)).toBe(2);
    expect(bm.setRange(4096, 1)).toBe(0);
    expect(bm.setRange(1000, 10)).toBe(1); // partial block → whole bit
    expect(bm.count).toBe(3);
    expect(bm.nextSet(0)).toBe(0);
    expect(bm.nextSet(3)).toBe(-1);
    expect(bm.clearRange(0, 2048)).toBe(0); // partial blocks are not cleared
    expect(bm.clearRange(0, 4096)).toBe(1);
    expect(bm.runLength(1, 100)).toBe(2);
    bm.setAll();
    expect(bm.count).toBe(16384);
    bm.clearBits(8, 16);
    expect(bm.count).toBe(16376);
    expect(bm.dirtyPages).toEqual([0]);
  });

  it('handles sizes that are not a multiple of 8 blocks and OR merges', () => {
    const a = new Bitmap(5 * 4096 + 100);
    expect(a.bits).toBe(6);
    a.setAll();
    expect(a.count).toBe(6);
    const b = new Bitmap(5 * 4096 + 100);
    b.setBits(1, 2);
    const c = new Bitmap(5 * 4096 + 100);
    c.setBits(4, 5);
    b.or(c.bytes);
    expect(b.count).toBe(2);
    b.or(new Uint8Array(4096).fill(0xff));
    expect(b.count).toBe(6); // tail bits beyond the device are masked
  });
});

describe('ActivityLogCore', () => {
  it('fast path, planning, LRU eviction of idle extents only', () => {
    const al = new ActivityLogCore(3);
    expect(extentsOf(4 * MiB - 1, 2)).toEqual([0, 1]);
    expect(al.tryFastPath([0])).toBe(false);
    let p = al.plan([0, 1]);
    expect(p).toEqual({ add: [0, 1], evict: [] });
    al.commit(p!, [0, 1]);
    expect(al.refs(0)).toBe(1);
    p = al.plan([2]);
    al.commit(p!, [2]);
    // Full and all busy: no plan.
    expect(al.plan([3])).toBeNull();
    al.release([0, 1]);
    p = al.plan([3]);
    expect(p?.evict).toEqual([0]);
    expect(al.after(p!).sort()).toEqual([1, 2, 3]);
    al.commit(p!, [3]);
    expect(al.tryFastPath([1])).toBe(true);
    expect(al.active).toEqual([2, 3, 1]); // LRU order refreshed
  });

  it('ActivityLog writes one transaction per miss and waits for idle victims', async () => {
    const tx: number[][] = [];
    const al = new ActivityLog(2, {
      async transaction(active) {
        tx.push([...active]);
      },
    });
    const a = await al.acquire(0, 4096);
    const b = await al.acquire(4 * MiB, 4096);
    await al.acquire(0, 512); // hit
    expect(tx.length).toBe(2);
    let done = false;
    const c = al.acquire(8 * MiB, 4096).then((x) => {
      done = true;
      return x;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    al.release(a);
    al.release(a);
    await c;
    expect(tx.at(-1)?.sort()).toEqual([1, 2]);
    al.release(b);
    expect(al.transactions).toBe(3);
  });

  it('ActivityLog.tryAcquire takes active extents at once and leaves misses to acquire()', async () => {
    const tx: number[][] = [];
    const al = new ActivityLog(2, {
      async transaction(active) {
        tx.push([...active]);
      },
    });
    expect(al.tryAcquire(0, 4096)).toBeNull(); // not active: no reference taken, no transaction
    expect(tx.length).toBe(0);
    const a = await al.acquire(0, 4096);
    const b = al.tryAcquire(4096, 4096); // same extent, active now
    expect(b).toEqual(a);
    expect(tx.length).toBe(1);
    // Both references must go before extent 0 can be evicted for two new ones.
    al.release(a);
    let done = false;
    const c = al.acquire(4 * MiB, 8 * MiB).then((x) => {
      done = true;
      return x;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    al.release(b as number[]);
    expect((await c).sort()).toEqual([1, 2]);
    expect(tx.at(-1)?.sort()).toEqual([1, 2]); // extent 0 evicted
  });
});

describe('ActivityLog range fast path (no extents array)', () => {
  it('takes references on every extent of a range only when all are active; LRU order as tryFastPath', () => {
    const al = new ActivityLogCore(4, [0, 1, 2]);
    const shift = 22;
    // Extents 2 and 3: 3 is not active, so nothing is taken.
    expect(al.tryFastPathRange(2 * 4 * MiB + 4096, 4 * MiB, shift)).toBe(false);
    expect([al.refs(2), al.refs(3)]).toEqual([0, 0]);
    // Extents 0 and 1 (a range across the boundary): both referenced, and now most recently used.
    expect(al.tryFastPathRange(4 * MiB - 4096, 8192, shift)).toBe(true);
    expect([al.refs(0), al.refs(1), al.refs(2)]).toEqual([1, 1, 0]);
    expect(al.active).toEqual([2, 0, 1]);
    expect(al.tryFastPathRange(0, 4096, shift)).toBe(true);
    expect(al.refs(0)).toBe(2);
    expect(al.active).toEqual([2, 1, 0]);
    // An empty range takes nothing and needs nothing.
    expect(al.tryFastPathRange(20 * MiB, 0, shift)).toBe(true);
    // Extent 2 is the idle LRU victim; 0 and 1 are busy.
    expect(al.plan([3, 4])?.evict).toEqual([2]);
    al.releaseRange(4 * MiB - 4096, 8192, shift);
    expect([al.refs(0), al.refs(1)]).toEqual([1, 0]);
    al.releaseRange(4 * MiB - 4096, 8192, shift); // extent 1 has none left: stays at 0
    expect([al.refs(0), al.refs(1)]).toEqual([0, 0]);
    expect(al.plan([3, 4, 5])?.evict).toEqual([2, 1]);
  });

  it('ActivityLog: tryAcquireRange misses leave the work to acquire(); releaseRange wakes a waiting acquire', async () => {
    const tx: number[][] = [];
    const al = new ActivityLog(2, {
      async transaction(active) {
        tx.push([...active]);
      },
    });
    expect(al.tryAcquireRange(0, 4096)).toBe(false);
    expect(al.core.refs(0)).toBe(0);
    await al.acquire(0, 4096);
    expect(al.tryAcquireRange(8192, 4096)).toBe(true); // extent 0, active now
    expect(al.core.refs(0)).toBe(2);
    expect(al.tryAcquireRange(4 * MiB, 4096)).toBe(false);
    await al.acquire(4 * MiB, 4096);
    expect(tx.length).toBe(2);
    let done = false;
    const c = al.acquire(8 * MiB, 4096).then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    al.releaseRange(0, 4096);
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false); // extent 0 still has one reference
    al.releaseRange(8192, 4096);
    await c;
    expect(tx.at(-1)?.sort()).toEqual([1, 2]); // extent 0 evicted
  });
});

describe('Metadata', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lunar-md-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('persists superblock, AL and bitmaps; survives a torn slot; replays the AL after a crash', async () => {
    const path = join(dir, 'a.md');
    const md = await Metadata.open(path, { nodeId: 0, sizeBytes: 64 * MiB });
    expect(md.sb.current).toBe('0000000000000004');
    expect(md.sb.disk).toBe('Inconsistent');
    md.sb.current = '00000000000000a0';
    md.sb.disk = 'UpToDate';
    md.sb.primary = true;
    await md.writeSuperblock();
    md.bitmaps[1]?.setRange(0, 3 * 4096);
    await md.flushBitmaps();
    await md.writeAl([2, 5]);
    // "Crash": close without marking clean.
    await md.close(false);

    const md2 = await Metadata.open(path, { nodeId: 0, sizeBytes: 64 * MiB });
    expect(md2.recoveredFromCrash).toBe(true);
    expect(md2.crashedPrimary).toBe(true);
    expect(md2.sb.current).toBe('00000000000000a0');
    expect(md2.alExtents).toEqual([2, 5]);
    // 3 bits + 2 extents × 1024 bits, towards every peer slot but our own.
    expect(md2.bitmaps[1]?.count).toBe(3 + 2048);
    expect(md2.bitmaps[2]?.count).toBe(2048);
    expect(md2.bitmaps[0]?.count).toBe(0);
    await md2.close();

    const md3 = await Metadata.open(path, { nodeId: 0, sizeBytes: 64 * MiB });
    expect(md3.recoveredFromCrash).toBe(false);
    const seq = md3.sb.seq;
    await md3.close();
    // Tear the newest superblock slot: the older one is used.
    const { open } = await import('node:fs/promises');
    const fh = await open(path, 'r+');
    await fh.write(Buffer.alloc(100, 0x55), 0, 100, ((seq + 1) % 2) * 4096 + 20);
    await fh.close();
    const md4 = await Metadata.open(path, { nodeId: 0, sizeBytes: 64 * MiB });
    expect(md4.sb.current).toBe('00000000000000a0');
    await md4.close();
    await expect(Metadata.open(path, { nodeId: 1, sizeBytes: 64 * MiB })).rejects.toThrow(
      /belongs to node 0/,
    );
  });
});

describe('quorum and promotion rules', () => {
  it('majority', () => {
    expect(hasQuorum({ setting: 'majority', nodes: 3, connectedPeers: 1 })).toBe(true);
    expect(hasQuorum({ setting: 'majority', nodes: 3, connectedPeers: 0 })).toBe(false);
    expect(hasQuorum({ setting: 'majority', nodes: 2, connectedPeers: 0 })).toBe(false);
    expect(hasQuorum({ setting: 'off', nodes: 3, connectedPeers: 0 })).toBe(true);
  });
  it('promotion refusals', () => {
    const ok = {
      role: 'Secondary',
      disk: 'UpToDate',
      force: false,
      quorum: true,
      peerPrimary: false,
      peerUpToDate: true,
      syncTarget: false,
    } as const;
    expect(promoteRefusal(ok)).toBeNull();
    expect(promoteRefusal({ ...ok, quorum: false })).toMatch(/quorum/);
    expect(promoteRefusal({ ...ok, peerPrimary: true })).toMatch(/Primary/);
    expect(promoteRefusal({ ...ok, disk: 'Inconsistent' })).toMatch(/--force/);
    expect(promoteRefusal({ ...ok, disk: 'Inconsistent', force: true, peerUpToDate: false })).toBeNull();
    expect(promoteRefusal({ ...ok, disk: 'Inconsistent', force: true })).toMatch(/peer is UpToDate/);
    expect(promoteRefusal({ ...ok, disk: 'Diskless' })).toMatch(/diskless/);
    expect(promoteRefusal({ ...ok, disk: 'Outdated', peerUpToDate: false })).toMatch(/Outdated/);
  });
});
