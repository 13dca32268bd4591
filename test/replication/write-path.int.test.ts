import { describe, expect, it } from 'vitest';
import { MemoryBackstore } from '../../src/backstore/memory.js';
import type { Backstore, WriteOptions } from '../../src/backstore/types.js';
import type { ResourceConfig } from '../../src/replication/config.js';
import { Resource } from '../../src/replication/resource.js';
import { resourceStatus } from '../../src/replication/status.js';
import {
  backstoreOf,
  clusterConfig,
  MiB,
  randomWrites,
  sha256File,
  startCluster,
  testScope,
} from './helpers.js';

const scope = testScope('lunar-repl-wp-');

describe('protocols A, B and C', () => {
  for (const [proto, port] of [
    ['A', 7860],
    ['B', 7862],
    ['C', 7866],
  ] as const) {
    it(`protocol ${proto}: overlapping random writes leave identical replicas`, async () => {
      const cfg = clusterConfig(scope.sub(), { basePort: port, size: 16 * MiB, net: { protocol: proto } });
      scope.running = await startCluster(cfg);
      const [a, b] = scope.running as [Resource, Resource];
      await a.waitConnect(5000);
      await a.newCurrentUuidClearBitmap();
      await a.primary();
      await b.waitSync(5000);
      // Heavy overlap: 400 writes of 4–32 KiB inside 1 MiB at QD32.
      await randomWrites(backstoreOf(a), 400, 3, { qd: 32, within: [0, MiB], maxBlocks4k: 8 });
      const bs = backstoreOf(a);
      // Unmap and write-same travel too (zeroes without payload, patterns as data).
      await bs.unmap(0, 64);
      await bs.writeSame(128, 64, Buffer.alloc(bs.blockSize, 0x77), { fua: true });
      await bs.flush();
      expect((await bs.read(130, 1)).equals(Buffer.alloc(bs.blockSize, 0x77))).toBe(true);
      expect((await bs.read(3, 1)).equals(Buffer.alloc(bs.blockSize))).toBe(true);
      expect(await a.verify()).toBe(0);
      expect(resourceStatus(a).stats.conflicts).toBeGreaterThan(0);
      await scope.stop();
      expect(sha256File(cfg.nodes[0]!.disk)).toBe(sha256File(cfg.nodes[1]!.disk));
    });
  }
});

/** A memory backstore whose writes can be frozen (a hung disk on the secondary). */
class StallingStore extends MemoryBackstore {
  stalled = false;
  #waiters: (() => void)[] = [];
  override async write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    while (this.stalled) await new Promise<void>((r) => this.#waiters.push(r));
    return super.write(lba, data, opts);
  }
  unstall(): void {
    this.stalled = false;
    for (const w of this.#waiters.splice(0)) w();
  }
}

/** Two nodes of `cfg` on the stores `open` makes, connected, node 0 Primary and in sync. */
async function primaryPair(cfg: ResourceConfig, open: (node: { id: number }) => Promise<Backstore>) {
  scope.running = cfg.nodes.map((nd) => new Resource({ config: cfg, nodeId: nd.id, openBacking: open }));
  const [a, b] = scope.running as [Resource, Resource];
  await a.up();
  await b.up();
  await a.waitConnect(5000);
  await a.newCurrentUuidClearBitmap();
  await a.primary();
  await b.waitSync(5000);
  return { a, b, bs: backstoreOf(a) };
}

/** primaryPair() on StallingStores (each node's store in `stores`). */
async function stallingPair(basePort: number, size: number, net: Record<string, unknown>) {
  const cfg = clusterConfig(scope.sub(), { basePort, size, net });
  const stores = new Map<number, StallingStore>();
  const pair = await primaryPair(cfg, async (node) => {
    const s = new StallingStore({ blockSize: 4096, blockCount: size / 4096 });
    stores.set(node.id, s);
    return s;
  });
  return { ...pair, stores };
}

describe('peer timeouts', () => {
  it('a peer that stops completing writes is dropped after ko-count × timeout; writes go on; resync afterwards', async () => {
    const { a, b, stores, bs } = await stallingPair(7864, 8 * MiB, {
      timeoutMs: 200,
      koCount: 3,
      pingIntMs: 200,
      pingTimeoutMs: 2000,
    });
    stores.get(1)!.stalled = true;
    const t0 = Date.now();
    await bs.write(0, Buffer.alloc(8192, 7));
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(500);
    expect(took).toBeLessThan(3000);
    const st = resourceStatus(a).peers[0]!;
    expect(st.lastError).toMatch(/ko-count/);
    expect(st.outOfSyncKiB).toBeGreaterThanOrEqual(8);
    // More writes while the peer is away complete at local speed.
    await bs.write(16, Buffer.alloc(4096, 8));
    stores.get(1)!.unstall();
    await a.waitSync(10000);
    await b.waitSync(10000);
    expect(await a.verify()).toBe(0);
  });
});

describe('protocol A bound', () => {
  it('once 8 MiB are unacknowledged, a protocol A write waits for its WRITE_ACK', async () => {
    const { a, stores, bs } = await stallingPair(7880, 32 * MiB, {
      protocol: 'A',
      timeoutMs: 10_000,
      koCount: 7,
      pingIntMs: 10_000,
      pingTimeoutMs: 5000,
    });
    stores.get(1)!.stalled = true; // the peer receives everything but completes no write
    // 8 writes of 1 MiB complete as soon as they are in the socket buffer (protocol A)…
    for (let i = 0; i < 8; i++) await bs.write(i * 256, Buffer.alloc(MiB, i + 1));
    expect(a.peers.get(1)?.unackedWriteBytes).toBe(8 * MiB);
    // …the ninth waits for the peer.
    let done = false;
    const ninth = bs.write(8 * 256, Buffer.alloc(MiB, 9)).then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 400));
    const waited = !done;
    stores.get(1)!.unstall(); // before the assertion: a failed test must not leave the peer stalled
    expect(waited).toBe(true);
    await ninth;
    expect(a.peers.get(1)?.cs).toBe('Connected');
    await bs.flush();
    expect(a.peers.get(1)?.unackedWriteBytes).toBe(0);
    expect(await a.verify()).toBe(0);
  });
});

describe('write path mechanics', () => {
  it('DATA frames are handed to the kernel before the local write is submitted', async () => {
    const cfg = clusterConfig(scope.sub(), { basePort: 7874, size: 8 * MiB });
    const seen: { corked: number; buffered: number }[] = [];
    let primary: Resource | null = null;
    /** Node 0's disk: at each write() call, looks at the replication socket to node 1. */
    class ObservingStore extends MemoryBackstore {
      override async write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void> {
        const sock = primary?.role === 'Primary' ? primary.peers.get(1)?.conn?.socket : undefined;
        if (sock !== undefined) {
          const s = sock as unknown as { writableCorked: number; writableLength: number };
          seen.push({ corked: s.writableCorked, buffered: s.writableLength });
        }
        return super.write(lba, data, opts);
      }
    }
    const open = async (node: { id: number }): Promise<Backstore> => {
      const o = { blockSize: 4096, blockCount: (8 * MiB) / 4096 };
      return node.id === 0 ? new ObservingStore(o) : new MemoryBackstore(o);
    };
    const { a, b, bs } = await primaryPair(cfg, open);
    primary = a;
    // QD1 and a burst of 20 at once: the frames of the first 16 leave in one writev and their local
    // writes are submitted at once, while the burst is still being issued (FRAME_GROUP); the
    // other 4 at the end of the tick.
    for (let i = 0; i < 20; i++) await bs.write(i * 2, Buffer.alloc(4096, i));
    const burst: Promise<void>[] = [];
    const before: number[] = [];
    for (let i = 0; i < 20; i++) {
      before.push(seen.length - 20);
      burst.push(bs.write(100 + i, Buffer.alloc(4096, i)));
    }
    const atEnd = seen.length - 20;
    await Promise.all(burst);
    expect(before[16]).toBe(16);
    expect(before.slice(0, 16).every((n) => n === 0)).toBe(true);
    expect(atEnd).toBe(16);
    expect(seen.length).toBe(40);
    // Both ends read into the static buffer (dialer: connect's onread; acceptor: socket taken
    // over), not through 'data' events with a Buffer per read.
    for (const [r, peer] of [
      [a, 1],
      [b, 0],
    ] as const) {
      const sock = r.peers.get(peer)?.conn?.socket;
      expect(sock).toBeDefined();
      expect(sock?.listenerCount('data')).toBe(0);
    }
    // The socket is not corked any more (its frames went to the kernel) when the disk write starts.
    expect(seen.filter((s) => s.corked !== 0)).toEqual([]);
    // 4 KiB payloads come through the static buffer; most of a 1 MiB one is read by the socket
    // straight into its payload buffer (StaticReads targets), on the Secondary's end.
    const reader = b.peers.get(0)?.conn?.reader;
    expect(reader?.bytesInPlace).toBe(0);
    await bs.write(512, Buffer.alloc(1024 * 1024, 7));
    expect(reader?.bytesInPlace).toBeGreaterThan(0);
    // A write of 256 KiB or more is submitted locally first; its frame leaves at the end of the tick.
    expect(seen.length).toBe(41);
    expect(seen[40]?.corked).not.toBe(0);
    expect(await a.verify()).toBe(0);
  });

  it('a failing local write: rejected after the peer answered, range out of sync towards it, nothing left held', async () => {
    const size = 32 * MiB;
    const cfg = clusterConfig(scope.sub(), { basePort: 7878, size, disk: { alExtents: 7 } });
    /** Node 0's disk: writes to `failAt` reject, to `throwAt` throw (instead of rejecting). */
    class FailingStore extends MemoryBackstore {
      readonly failAt = new Set<number>();
      readonly throwAt = new Set<number>();
      override write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void> {
        if (this.throwAt.has(lba)) throw new Error(`thrown at ${lba}`);
        if (this.failAt.has(lba)) return Promise.reject(new Error(`failed at ${lba}`));
        return super.write(lba, data, opts);
      }
    }
    const stores = new Map<number, MemoryBackstore>();
    const { a, b, bs } = await primaryPair(cfg, async (node) => {
      const o = { blockSize: 4096, blockCount: size / 4096 };
      const s = node.id === 0 ? new FailingStore(o) : new MemoryBackstore(o);
      stores.set(node.id, s);
      return s;
    });
    const local = stores.get(0) as FailingStore;
    const bm = a.md?.bitmaps[1];
    expect(bm?.count).toBe(0);
    local.failAt.add(10);
    local.throwAt.add(20);
    const peer = a.peers.get(1);
    const pendingAtReject: number[] = [];
    const settle = (p: Promise<void>): Promise<string> =>
      p.then(
        () => 'ok',
        (e: Error) => {
          pendingAtReject.push(peer?.pending.size ?? -1);
          return e.message;
        },
      );
    const results = await Promise.all([
      settle(bs.write(10, Buffer.alloc(4096, 1))),
      settle(bs.write(20, Buffer.alloc(8192, 2))),
      settle(bs.write(30, Buffer.alloc(4096, 3))),
    ]);
    expect(results).toEqual(['failed at 10', 'thrown at 20', 'ok']);
    // The peers had answered when the failures were reported (the peer has the data, this disk not).
    expect(pendingAtReject).toEqual([0, 0]);
    expect(await stores.get(1)?.read(20, 2)).toEqual(Buffer.alloc(8192, 2));
    expect([bm?.test(10), bm?.test(20), bm?.test(21), bm?.test(30), bm?.count]).toEqual([
      true,
      true,
      true,
      false,
      3,
    ]);
    // An AL that cannot hold the request (8 extents of 4 MiB, al-extents 7): rejected at once.
    await expect(a.write(0, size, null, false)).rejects.toThrow(/more extents than the AL holds/);
    expect([a.appPending, a.localPending, a.lock.held, peer?.pending.size]).toEqual([0, 0, 0, 0]);
    // Nothing was left locked: the same ranges write fine now.
    local.failAt.clear();
    local.throwAt.clear();
    await bs.write(10, Buffer.alloc(4096, 4));
    await bs.write(20, Buffer.alloc(8192, 5));
    expect(await local.read(20, 2)).toEqual(Buffer.alloc(8192, 5));
    expect([a.appPending, a.localPending, a.lock.held]).toEqual([0, 0, 0]);
    expect(b.disk).toBe('UpToDate');
  });

  it('a SyncSource hands every read buffer back to a backstore that recycles them', async () => {
    const cfg = clusterConfig(scope.sub(), { basePort: 7876, size: 8 * MiB, disk: { resyncChunk: 65536 } });
    const lent = new Set<Buffer>();
    let reads = 0;
    let released = 0;
    class RecyclingStore extends MemoryBackstore {
      override async read(lba: number, blocks: number): Promise<Buffer> {
        const b = await super.read(lba, blocks);
        reads++;
        lent.add(b);
        return b;
      }
      release(buffer: Buffer): void {
        if (lent.delete(buffer)) released++;
      }
    }
    const open = async (node: { id: number }): Promise<Backstore> => {
      const o = { blockSize: 4096, blockCount: (8 * MiB) / 4096 };
      return node.id === 0 ? new RecyclingStore(o) : new MemoryBackstore(o);
    };
    scope.running = cfg.nodes.map((nd) => new Resource({ config: cfg, nodeId: nd.id, openBacking: open }));
    const [a, b] = scope.running as [Resource, Resource];
    await a.up();
    await b.up();
    await a.waitConnect(5000);
    await a.primary(true); // full sync of 8 MiB to node 1 in 64 KiB requests
    await b.waitSync(10000);
    await a.waitSync(10000);
    expect(reads).toBeGreaterThanOrEqual(128);
    expect(released).toBe(reads);
    expect(lent.size).toBe(0);
  });
});
