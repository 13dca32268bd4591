import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { AfterSb0pri, AfterSb1pri } from '../../src/replication/uuid.js';
import type { Resource } from '../../src/replication/resource.js';
import { resourceStatus } from '../../src/replication/status.js';
import { backstoreOf, clusterConfig, MiB, sha256File, startCluster, stopAll, tempDir } from './helpers.js';

const t = tempDir('lunar-repl-sb-');
afterAll(() => t.cleanup());
let running: Resource[] = [];
afterEach(async () => {
  await stopAll(running);
  running = [];
});

let port = 7810;
let run = 0;

interface Scenario {
  afterSb0pri?: AfterSb0pri;
  afterSb1pri?: AfterSb1pri;
  /** 4 KiB blocks written on A (node 0, Primary before the split) and on B while split. */
  writesA: number;
  writesB: number;
  /** Roles when they reconnect. */
  aPrimary: boolean;
  bPrimary: boolean;
}

const stamp = (tag: number) => Buffer.alloc(4096, tag);

async function splitBrain(s: Scenario): Promise<{ a: Resource; b: Resource; files: [string, string] }> {
  const dir = `${t.dir}/run${run++}`;
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir);
  const cfg = clusterConfig(dir, {
    basePort: port,
    size: 16 * MiB,
    net: { afterSb0pri: s.afterSb0pri ?? 'disconnect', afterSb1pri: s.afterSb1pri ?? 'disconnect' },
  });
  port += 2;
  running = await startCluster(cfg);
  const [a, b] = running as [Resource, Resource];
  await a.waitConnect(5000);
  await a.primary(true);
  await a.waitSync(10000);
  await b.waitSync(10000);
  // Cut the link; B is promoted on its own ("both primary while cut off").
  a.disconnect();
  b.disconnect();
  await b.primary();
  const ba = backstoreOf(a);
  const bb = backstoreOf(b);
  for (let i = 0; i < s.writesA; i++) await ba.write((i * 3 * 4096) / ba.blockSize, stamp(0xa0));
  for (let i = 0; i < s.writesB; i++) await bb.write(((i * 3 + 1) * 4096) / bb.blockSize, stamp(0xb0));
  if (!s.aPrimary) await a.secondary();
  if (!s.bPrimary) await b.secondary();
  a.connect();
  b.connect();
  // Wait until the handshake decided (both StandAlone again, or a sync finished).
  const end = Date.now() + 15000;
  for (;;) {
    const sa = resourceStatus(a).peers[0]!;
    const sb = resourceStatus(b).peers[0]!;
    const settled =
      (sa.connection === 'StandAlone' && sb.connection === 'StandAlone' && sa.lastDecision !== '') ||
      (sa.replication === 'Established' &&
        sb.replication === 'Established' &&
        sa.sync === null &&
        sb.sync === null &&
        a.disk === 'UpToDate' &&
        b.disk === 'UpToDate' &&
        sa.lastDecision !== '');
    if (settled) break;
    if (Date.now() > end) throw new Error(`not settled: ${JSON.stringify([sa, sb])}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { a, b, files: [cfg.nodes[0]!.disk, cfg.nodes[1]!.disk] };
}

async function finish(rs: Resource[]): Promise<void> {
  await stopAll(rs);
  running = [];
}

describe('split brain', () => {
  it('is detected on reconnect; under disconnect nothing is discarded; manual recovery works', async () => {
    const { a, b, files } = await splitBrain({ writesA: 5, writesB: 3, aPrimary: false, bPrimary: false });
    const sa = resourceStatus(a).peers[0]!;
    expect(sa.connection).toBe('StandAlone');
    expect(sa.lastError).toMatch(/split brain/);
    expect(resourceStatus(b).peers[0]!.lastError).toMatch(/split brain/);
    // Manual recovery: B is the victim.
    b.connect({ discardMyData: true });
    a.connect();
    await a.waitSync(10000);
    await b.waitSync(10000);
    await a.primary();
    const data = await backstoreOf(a).read(4096 / 4096, 1);
    expect(data.equals(Buffer.alloc(4096, 0xb0))).toBe(false); // B's block 1 was discarded
    await finish([a, b]);
    expect(sha256File(files[0])).toBe(sha256File(files[1]));
  });

  const auto: [string, Partial<Scenario>, 'A' | 'B'][] = [
    ['discard-zero-changes', { afterSb0pri: 'discard-zero-changes', writesA: 4, writesB: 0 }, 'A'],
    [
      'discard-zero-changes (A unchanged)',
      { afterSb0pri: 'discard-zero-changes', writesA: 0, writesB: 4 },
      'B',
    ],
    ['discard-least-changes', { afterSb0pri: 'discard-least-changes', writesA: 2, writesB: 6 }, 'B'],
    ['discard-younger-primary', { afterSb0pri: 'discard-younger-primary', writesA: 2, writesB: 6 }, 'A'],
    ['discard-older-primary', { afterSb0pri: 'discard-older-primary', writesA: 6, writesB: 2 }, 'B'],
    [
      'after-sb-1pri discard-secondary',
      { afterSb1pri: 'discard-secondary', writesA: 6, writesB: 2, bPrimary: true },
      'B',
    ],
    [
      'after-sb-1pri consensus',
      {
        afterSb0pri: 'discard-least-changes',
        afterSb1pri: 'consensus',
        writesA: 6,
        writesB: 2,
        aPrimary: true,
      },
      'A',
    ],
  ];
  for (const [name, sc, winner] of auto) {
    it(`automatic policy ${name}: ${winner} wins`, async () => {
      const { a, b, files } = await splitBrain({
        writesA: 0,
        writesB: 0,
        aPrimary: false,
        bPrimary: false,
        ...sc,
      });
      const st = resourceStatus(winner === 'A' ? a : b).peers[0]!;
      expect(st.lastDecision).toMatch(/split brain, automatically resolved/);
      const w = winner === 'A' ? a : b;
      if (w.role !== 'Primary') await w.primary();
      const bs = backstoreOf(w);
      const blockA = await bs.read(0, 1);
      const blockB = await bs.read(4096 / bs.blockSize, 1);
      if (winner === 'A' && (sc.writesA ?? 0) > 0) expect(blockA.equals(stamp(0xa0))).toBe(true);
      if (winner === 'A') expect(blockB.equals(stamp(0xb0))).toBe(false);
      if (winner === 'B' && (sc.writesB ?? 0) > 0) expect(blockB.equals(stamp(0xb0))).toBe(true);
      if (winner === 'B') expect(blockA.equals(stamp(0xa0))).toBe(false);
      await finish([a, b]);
      expect(sha256File(files[0])).toBe(sha256File(files[1]));
    });
  }

  it('after-sb-2pri disconnect: two primaries never resync', async () => {
    const { a, b } = await splitBrain({
      afterSb0pri: 'discard-least-changes',
      afterSb1pri: 'discard-secondary',
      writesA: 1,
      writesB: 1,
      aPrimary: true,
      bPrimary: true,
    });
    expect(resourceStatus(a).peers[0]!.connection).toBe('StandAlone');
    expect(resourceStatus(b).peers[0]!.lastError).toMatch(/split brain/);
  });
});
