import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReplicatedBackstore } from '../../src/replication/backstore.js';
import { parseResourceConfig, type ResourceConfig } from '../../src/replication/config.js';
import { Resource } from '../../src/replication/resource.js';
import { afterAll, afterEach } from 'vitest';
import { createLogger } from '../../src/util/log.js';
import { xorshift32 } from '../../src/util/xorshift.js';

export const MiB = 1024 * 1024;

export interface ClusterOpts {
  readonly nodes?: number;
  readonly basePort: number;
  readonly size?: number;
  readonly net?: Record<string, unknown>;
  readonly disk?: Record<string, unknown>;
  readonly extra?: Record<string, unknown>;
  /** Node ids that are diskless. */
  readonly diskless?: readonly number[];
}

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function clusterConfig(dir: string, o: ClusterOpts): ResourceConfig {
  const n = o.nodes ?? 2;
  return parseResourceConfig({
    name: 'r0',
    cluster: 'test',
    secret: 'hunter2',
    size: o.size ?? 32 * MiB,
    nodes: Array.from({ length: n }, (_, i) => ({
      id: i,
      name: `n${i}`,
      address: `127.0.0.1:${o.basePort + i}`,
      disk: o.diskless?.includes(i) === true ? 'none' : join(dir, `n${i}.img`),
      control: join(dir, `n${i}.ctl`),
    })),
    net: { pingIntMs: 500, pingTimeoutMs: 1000, timeoutMs: 1000, koCount: 3, connectIntMs: 100, ...o.net },
    disk: { ...o.disk },
    ...o.extra,
  });
}

export async function startCluster(cfg: ResourceConfig): Promise<Resource[]> {
  const logger = process.env['DBG'] === undefined ? undefined : createLogger({ level: 'trace' });
  const rs = cfg.nodes.map(
    (n) => new Resource({ config: cfg, nodeId: n.id, ...(logger === undefined ? {} : { logger }) }),
  );
  for (const r of rs) await r.up();
  return rs;
}

export async function stopAll(rs: readonly Resource[]): Promise<void> {
  for (const r of rs) await r.down().catch(() => {});
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export function backstoreOf(r: Resource): ReplicatedBackstore {
  return new ReplicatedBackstore(r);
}

/** Deterministic pseudo-random generator (the product's xorshift32). */
export const rng = xorshift32;

/** Random 4 KiB-aligned writes of 4–64 KiB through the backstore; returns bytes written. */
export async function randomWrites(
  bs: ReplicatedBackstore,
  count: number,
  seed: number,
  opts: { qd?: number; within?: [number, number]; maxBlocks4k?: number } = {},
): Promise<number> {
  const next = rng(seed);
  const qd = opts.qd ?? 16;
  const [lo, hi] = opts.within ?? [0, bs.blockCount * bs.blockSize];
  const maxB = opts.maxBlocks4k ?? 16;
  let written = 0;
  let issued = 0;
  const worker = async (): Promise<void> => {
    while (issued < count) {
      issued++;
      const blocks4k = 1 + Math.floor(next() * maxB);
      const span = (hi - lo) / 4096 - blocks4k;
      const at = lo + Math.floor(next() * span) * 4096;
      const buf = Buffer.allocUnsafe(blocks4k * 4096);
      for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((next() * 0xffffffff) >>> 0, i);
      await bs.write(at / bs.blockSize, buf);
      written += buf.length;
    }
  };
  await Promise.all(Array.from({ length: qd }, worker));
  return written;
}

/**
 * A test file's workspace: a temp directory removed after all tests, fresh sub-directories, and
 * the resources the current test runs (`running`), stopped after each test.
 */
export function testScope(prefix: string): { running: Resource[]; sub(): string; stop(): Promise<void> } {
  const t = tempDir(prefix);
  let n = 0;
  const scope = {
    running: [] as Resource[],
    sub(): string {
      const d = `${t.dir}/c${n++}`;
      mkdirSync(d);
      return d;
    },
    async stop(): Promise<void> {
      await stopAll(scope.running);
      scope.running = [];
    },
  };
  afterEach(() => scope.stop());
  afterAll(() => t.cleanup());
  return scope;
}
