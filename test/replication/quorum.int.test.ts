import { mkdirSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Resource } from '../../src/replication/resource.js';
import { resourceStatus } from '../../src/replication/status.js';
import { backstoreOf, clusterConfig, MiB, sha256File, startCluster, stopAll, tempDir } from './helpers.js';

const t = tempDir('lunar-repl-q-');
afterAll(() => t.cleanup());
let running: Resource[] = [];
afterEach(async () => {
  await stopAll(running);
  running = [];
});
let n = 0;

async function three(port: number, onNoQuorum: 'io-error' | 'suspend-io', diskless = true) {
  const dir = `${t.dir}/c${n++}`;
  mkdirSync(dir);
  const cfg = clusterConfig(dir, {
    nodes: 3,
    basePort: port,
    size: 8 * MiB,
    diskless: diskless ? [2] : [],
    extra: { quorum: 'majority', onNoQuorum },
  });
  running = await startCluster(cfg);
  const rs = running as [Resource, Resource, Resource];
  for (const r of rs) await r.waitConnect(5000);
  await rs[0].newCurrentUuidClearBitmap();
  await rs[0].primary();
  await rs[0].waitSync(5000);
  await rs[1].waitSync(5000);
  return rs;
}

const settle = () => new Promise((r) => setTimeout(r, 150));

describe('3 nodes with majority quorum (diskless tiebreaker)', () => {
  it('an isolated node cannot be promoted; the majority keeps writing', async () => {
    const [a, b, c] = await three(7840, 'io-error');
    expect(c.disk).toBe('Diskless');
    b.disconnect(); // b is cut off from everyone
    await settle();
    expect(b.hasQuorum()).toBe(false);
    await expect(b.primary()).rejects.toThrow(/quorum/);
    expect(a.hasQuorum()).toBe(true);
    await backstoreOf(a).write(0, Buffer.alloc(4096, 1));
    // The tiebreaker cannot be promoted either (no disk).
    await expect(c.primary()).rejects.toThrow(/diskless|Primary/);
  });

  it('no two primaries with quorum: a cut link between the diskful nodes does not allow a second primary', async () => {
    const [a, b] = await three(7843, 'io-error');
    a.disconnect(1);
    b.disconnect(0);
    await settle();
    expect(b.hasQuorum()).toBe(true); // b still reaches the tiebreaker …
    await expect(b.primary()).rejects.toThrow(/Primary/); // … which reports a's role
    expect(resourceStatus(b).role).toBe('Secondary');
  });

  it('on-no-quorum io-error: a Primary that loses quorum fails writes', async () => {
    const [a] = await three(7846, 'io-error');
    a.disconnect();
    await settle();
    await expect(backstoreOf(a).write(0, Buffer.alloc(4096, 2))).rejects.toMatchObject({ code: 'IO' });
  });

  it('on-no-quorum suspend-io: writes freeze and resume when quorum returns', async () => {
    const [a] = await three(7849, 'suspend-io');
    a.disconnect();
    await settle();
    let done = false;
    const w = backstoreOf(a)
      .write(0, Buffer.alloc(4096, 3))
      .then(() => {
        done = true;
      });
    await new Promise((r) => setTimeout(r, 300));
    expect(done).toBe(false);
    expect(resourceStatus(a).suspended).toContain('quorum');
    a.connect();
    await w;
    expect(done).toBe(true);
    await a.waitSync(5000);
  });
});

/** 3 diskful nodes with majority quorum, node 0 Primary after a full initial sync to both. */
async function threeDiskful(port: number, size: number) {
  const dir = `${t.dir}/c${n++}`;
  mkdirSync(dir);
  const cfg = clusterConfig(dir, { nodes: 3, basePort: port, size, extra: { quorum: 'majority' } });
  running = await startCluster(cfg);
  const [a, b, c] = running as [Resource, Resource, Resource];
  for (const r of running) await r.waitConnect(5000);
  await a.primary(true);
  for (const r of running) await r.waitSync(20000);
  return { cfg, a, b, c };
}

describe('3 diskful nodes', () => {
  it('a returning secondary resyncs from the Primary; all three replicas end identical', async () => {
    const { cfg, a, b, c } = await threeDiskful(7852, 16 * MiB);
    c.disconnect();
    await settle();
    const bs = backstoreOf(a);
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    for (let off = 0; off < 4 * MiB; off += chunk.length) await bs.write(off / bs.blockSize, chunk);
    expect(resourceStatus(a).peers.find((p) => p.nodeId === 2)?.outOfSyncKiB).toBe(4096);
    c.connect();
    await c.waitSync(20000);
    await a.waitSync(20000);
    await b.waitSync(20000);
    expect(await a.verify()).toBe(0);
    const fromA = resourceStatus(c).peers.find((p) => p.nodeId === 0);
    expect(fromA?.lastSync?.dataBytes).toBe(4 * MiB);
    await stopAll(running);
    running = [];
    const h = cfg.nodes.map((nd) => sha256File(nd.disk));
    expect(new Set(h).size).toBe(1);
  });
});

describe('3 diskful nodes, the Primary loses a node first', () => {
  // The Primary starts a new data generation when it loses node 2 and tells node 1, which may
  // still have its own connection to node 2 (it notices the loss up to a ping timeout later, or
  // not at all when only the link between 0 and 2 is down). Node 1 must record the old
  // generation as its bitmap UUID towards node 2; without it node 1 and node 2 had no common
  // generation and refused each other for good ("unrelated data") once their link was renewed.
  it('the other Secondary keeps a common generation with the lost node; all three reconnect', async () => {
    const { cfg, a, b, c } = await threeDiskful(7855, 8 * MiB);
    // Only the link 0–2 goes down: b adopts a's new generation while still connected to c.
    a.disconnect(2);
    await settle();
    expect(resourceStatus(b).peers.find((p) => p.nodeId === 2)?.connection).toBe('Connected');
    const bs = backstoreOf(a);
    const chunk = Buffer.alloc(64 * 1024, 0x3c);
    for (let off = 0; off < MiB; off += chunk.length) await bs.write(off / bs.blockSize, chunk);
    // b tracked the writes c missed although its own link to c stayed up.
    expect(resourceStatus(b).peers.find((p) => p.nodeId === 2)?.outOfSyncKiB).toBe(1024);
    // The link 1–2 is renewed: b and c still have a common generation, and c gets the missed writes.
    b.disconnect(2);
    await settle();
    b.connect({ peer: 2 });
    c.connect({ peer: 1 });
    await c.waitSync(5000, 1);
    expect(resourceStatus(c).peers.find((p) => p.nodeId === 1)?.lastSync?.dataBytes).toBe(MiB);
    a.connect({ peer: 2 });
    c.connect({ peer: 0 });
    for (const r of running) await r.waitConnect(5000);
    for (const r of running) await r.waitSync(20000);
    expect(await a.verify()).toBe(0);
    await stopAll(running);
    running = [];
    expect(new Set(cfg.nodes.map((nd) => sha256File(nd.disk))).size).toBe(1);
  });
});
