/**
 * Figures (printed, loosely asserted): 4 KiB QD1 write latency local-only vs protocol A/B/C over
 * loopback, QD32 IOPS, and resync throughput. `lunar bench repl` (bench/) is the real benchmark.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openBackstore } from '../../src/backstore/index.js';
import type { Backstore } from '../../src/backstore/types.js';
import type { Resource } from '../../src/replication/resource.js';
import { resourceStatus } from '../../src/replication/status.js';
import { backstoreOf, clusterConfig, MiB, startCluster, stopAll, tempDir } from './helpers.js';

const t = tempDir('lunar-repl-lat-');
afterAll(() => t.cleanup());
let running: Resource[] = [];
afterEach(async () => {
  await stopAll(running);
  running = [];
});

const N = 500;
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};

async function qd1(bs: Backstore): Promise<number[]> {
  const buf = Buffer.alloc(4096, 1);
  const lat: number[] = [];
  const per = 4096 / bs.blockSize;
  for (let i = 0; i < N; i++) {
    const t0 = process.hrtime.bigint();
    await bs.write(((i * 7919) % 4096) * per, buf, { fua: true });
    lat.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return lat;
}

async function qd32(bs: Backstore): Promise<number> {
  const buf = Buffer.alloc(4096, 2);
  const per = 4096 / bs.blockSize;
  let i = 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (i < 4000) {
        const k = i++;
        await bs.write(((k * 104729) % 4096) * per, buf);
      }
    }),
  );
  return 4000 / ((Date.now() - t0) / 1000);
}

describe('figures', () => {
  it('4K write latency and IOPS: local-only vs protocols A, B, C; resync throughput', async () => {
    const lines: string[] = [];
    const dir0 = join(t.dir, 'local');
    mkdirSync(dir0);
    const local = await openBackstore({
      kind: 'file',
      path: join(dir0, 'l.img'),
      size: 16 * MiB,
      blockSize: 4096,
      create: true,
      direct: false,
    });
    const l = await qd1(local);
    const liops = await qd32(local);
    await local.close();
    lines.push(
      `local-only   QD1 FUA p50 ${pct(l, 50).toFixed(0)} µs p99 ${pct(l, 99).toFixed(0)} µs; QD32 ${liops.toFixed(0)} IOPS`,
    );
    let port = 7892;
    for (const proto of ['A', 'B', 'C'] as const) {
      const dir = join(t.dir, proto);
      mkdirSync(dir);
      const cfg = clusterConfig(dir, { basePort: port, size: 16 * MiB, net: { protocol: proto } });
      port += 2;
      running = await startCluster(cfg);
      const [a, b] = running as [Resource, Resource];
      await a.waitConnect(5000);
      await a.newCurrentUuidClearBitmap();
      await a.primary();
      await b.waitSync(5000);
      const bs = backstoreOf(a);
      const lat = await qd1(bs);
      const iops = await qd32(bs);
      lines.push(
        `protocol ${proto}   QD1 FUA p50 ${pct(lat, 50).toFixed(0)} µs p99 ${pct(lat, 99).toFixed(0)} µs; QD32 ${iops.toFixed(0)} IOPS (${(iops / liops).toFixed(2)}× local)`,
      );
      if (proto === 'C') {
        a.invalidateRemote();
        await a.waitSync(30000);
        await b.waitSync(30000);
        const s = resourceStatus(a).peers[0]?.lastSync;
        lines.push(
          `full resync 16 MiB: ${s?.elapsedSec} s, ${((s?.dataBytes ?? 0) / MiB / (s?.elapsedSec ?? 1)).toFixed(0)} MiB/s`,
        );
      }
      await stopAll(running);
      running = [];
      expect(pct(lat, 50)).toBeLessThan(50_000);
    }
    console.log(lines.join('\n'));
  });
});
