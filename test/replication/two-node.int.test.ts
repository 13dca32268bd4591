import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Resource } from '../../src/replication/resource.js';
import { procText, resourceStatus } from '../../src/replication/status.js';
import {
  backstoreOf,
  clusterConfig,
  MiB,
  randomWrites,
  sha256File,
  startCluster,
  stopAll,
  tempDir,
} from './helpers.js';

const t = tempDir('lunar-repl-2n-');
afterAll(() => t.cleanup());
let running: Resource[] = [];
afterEach(async () => {
  await stopAll(running);
  running = [];
});

describe('two nodes, protocol C', () => {
  it('initial full sync, random writes, verify 0 out-of-sync, equal sha256', async () => {
    const cfg = clusterConfig(`${t.dir}`, { basePort: 7800, size: 32 * MiB });
    running = await startCluster(cfg);
    const [a, b] = running as [Resource, Resource];
    await a.waitConnect(5000);
    await b.waitConnect(5000);
    await a.primary(true);
    await a.waitSync(20000);
    await b.waitSync(20000);
    expect(b.disk).toBe('UpToDate');
    const bs = backstoreOf(a);
    const written = await randomWrites(bs, 400, 1, { qd: 16 });
    await bs.flush();
    expect(written).toBeGreaterThan(0);
    const oos = await a.verify();
    expect(oos).toBe(0);
    const st = resourceStatus(a);
    expect(st.peers[0]?.connection).toBe('Connected');
    expect(procText(a)).toMatch(/cs:Connected ro:Primary\/Secondary ds:UpToDate\/UpToDate C/);
    await stopAll(running);
    running = [];
    expect(sha256File(cfg.nodes[0]!.disk)).toBe(sha256File(cfg.nodes[1]!.disk));
  });
});
