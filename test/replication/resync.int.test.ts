import { openSync, writeSync, closeSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Resource } from '../../src/replication/resource.js';
import { resourceStatus } from '../../src/replication/status.js';
import {
  backstoreOf,
  type ClusterOpts,
  clusterConfig,
  MiB,
  randomWrites,
  sha256File,
  startCluster,
  testScope,
} from './helpers.js';

/** MiB changed while the secondary is away (the issue asks for 64; CI default 16). */
const CHANGE_MIB = Number(process.env['LUNAR_REPL_CHANGE_MIB'] ?? 16);

const scope = testScope('lunar-repl-rs-');

async function freshPair(dir: string, port: number, extra: Omit<ClusterOpts, 'basePort'>) {
  const cfg = clusterConfig(dir, { ...extra, basePort: port });
  scope.running = await startCluster(cfg);
  const [a, b] = scope.running as [Resource, Resource];
  await a.waitConnect(5000);
  await b.waitConnect(5000);
  // New zeroed volumes: skip the initial sync.
  await a.newCurrentUuidClearBitmap();
  await a.primary();
  await a.waitSync(5000);
  await b.waitSync(5000);
  return { cfg, a, b };
}

describe('resync', () => {
  it(`secondary away while ${CHANGE_MIB} MiB change: resync moves about that much`, async () => {
    const size = Math.max(64, CHANGE_MIB * 4) * MiB;
    const { cfg, a, b } = await freshPair(scope.sub(), 7830, { size });
    b.disconnect();
    const bs = backstoreOf(a);
    const chunk = Buffer.alloc(64 * 1024);
    for (let off = 0; off < CHANGE_MIB * MiB; off += chunk.length) {
      chunk.fill(off & 0xff);
      await bs.write(off / bs.blockSize, chunk);
    }
    expect(resourceStatus(a).peers[0]?.outOfSyncKiB).toBe(CHANGE_MIB * 1024);
    const before = resourceStatus(a).peers[0]!.wireBytesSent;
    b.connect();
    await b.waitSync(30000);
    await a.waitSync(30000);
    const st = resourceStatus(a).peers[0]!;
    expect(st.lastSync?.dataBytes).toBe(CHANGE_MIB * MiB);
    const wire = st.wireBytesSent - before;
    expect(wire).toBeGreaterThanOrEqual(CHANGE_MIB * MiB);
    expect(wire).toBeLessThan(CHANGE_MIB * MiB * 1.02 + 64 * 1024);
    console.log(
      `resync after ${CHANGE_MIB} MiB change on a ${size / MiB} MiB device: data ${st.lastSync?.dataBytes} B, wire ${wire} B, ${st.lastSync?.elapsedSec} s`,
    );
    expect(await a.verify()).toBe(0);
    await scope.stop();
    expect(sha256File(cfg.nodes[0]!.disk)).toBe(sha256File(cfg.nodes[1]!.disk));
  });

  it('checksum-based resync of a mostly identical device moves mostly digests; verify finds the differences', async () => {
    const dir = scope.sub();
    const size = 64 * MiB;
    const { cfg, a, b } = await freshPair(dir, 7832, { size, net: { csums: true } });
    await randomWrites(backstoreOf(a), 200, 7, { qd: 8 });
    await a.flush();
    // Corrupt 8 scattered blocks of the secondary's backing file behind its back.
    await b.down();
    const fd = openSync(cfg.nodes[1]!.disk, 'r+');
    for (let i = 0; i < 8; i++) writeSync(fd, Buffer.alloc(4096, 0xee), 0, 4096, (i * 997 + 13) * 4096);
    closeSync(fd);
    await b.up();
    await b.waitSync(10000);
    expect(await a.verify()).toBe(8);
    expect(resourceStatus(a).peers[0]!.outOfSyncKiB).toBe(32);
    // Full checksum resync: every block's digest travels, data only for the 8 that differ.
    const before = resourceStatus(a).peers[0]!.wireBytesSent;
    b.invalidate();
    await b.waitSync(30000);
    await a.waitSync(30000);
    const st = resourceStatus(a).peers[0]!;
    const wire = st.wireBytesSent - before;
    expect(st.lastSync?.dataBytes).toBe(8 * 4096);
    expect(st.lastSync?.equalBlocks).toBe(size / 4096 - 8);
    expect(wire).toBeLessThan(size / 50);
    console.log(
      `checksum resync of ${size / MiB} MiB, 8 blocks differ: data ${st.lastSync?.dataBytes} B, digests ${st.lastSync?.digestBytes} B, wire sent ${wire} B`,
    );
    expect(await a.verify()).toBe(0);
    await scope.stop();
    expect(sha256File(cfg.nodes[0]!.disk)).toBe(sha256File(cfg.nodes[1]!.disk));
  });

  it('is rate limited and can be paused and resumed', async () => {
    const { a, b } = await freshPair(scope.sub(), 7834, { size: 16 * MiB, disk: { resyncRateKiB: 8192 } });
    const t0 = Date.now();
    a.invalidateRemote();
    await new Promise((r) => setTimeout(r, 300));
    a.pauseSync();
    await new Promise((r) => setTimeout(r, 50));
    expect(resourceStatus(a).peers[0]!.replication).toBe('PausedSyncS');
    expect(resourceStatus(b).peers[0]!.replication).toBe('PausedSyncT');
    const p1 = resourceStatus(a).peers[0]!.sync!.percent;
    await new Promise((r) => setTimeout(r, 400));
    expect(resourceStatus(a).peers[0]!.sync!.percent).toBe(p1);
    expect(p1).toBeLessThan(100);
    a.resumeSync();
    await a.waitSync(20000);
    await b.waitSync(20000);
    const elapsed = (Date.now() - t0) / 1000;
    // 16 MiB at 8 MiB/s ≈ 2 s of transfer, plus the pause.
    expect(elapsed).toBeGreaterThan(1.8);
    expect(await a.verify()).toBe(0);
  });
});
