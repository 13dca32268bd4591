/**
 * Replicated LUNs end to end: two `lunar serve` daemons (separate processes) sharing a resource
 * file, `lunar repl …` from the CLI, iSCSI writes to the Primary with the in-repo test initiator.
 *
 * Sizes (env): LUNAR_REPL_ISCSI_MIB (random writes through iSCSI, default 16; acceptance: 512),
 * LUNAR_REPL_DEV_MIB (device, default 64), LUNAR_REPL_OVERLAP_SEC (QD32 overlapping load, default 8;
 * acceptance: 60).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResourceStatus } from '../../src/replication/status.js';
import { TestInitiator, write10 } from '../iscsi/initiator.js';
import { MiB, rng, sha256File, tempDir } from './helpers.js';

const ISCSI_MIB = Number(process.env['LUNAR_REPL_ISCSI_MIB'] ?? 16);
const DEV_MIB = Number(process.env['LUNAR_REPL_DEV_MIB'] ?? 64);
const OVERLAP_SEC = Number(process.env['LUNAR_REPL_OVERLAP_SEC'] ?? 8);
const LUNAR = resolve('bin/lunar.cjs');
const IQN = 'iqn.2026-11.io.lunar:test.r0';
const PORTALS = [3490, 3491];

let t: ReturnType<typeof tempDir>;
const procs: ChildProcess[] = [];
const dataDirs: string[] = [];
const disks: string[] = [];

function cli(node: number, ...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [LUNAR, 'repl', ...args, '-d', dataDirs[node] as string], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function ok(node: number, ...args: string[]): string {
  const r = cli(node, ...args);
  if (r.code !== 0) throw new Error(`lunar repl ${args.join(' ')} (node ${node}): exit ${r.code}: ${r.err}`);
  return r.out;
}

function status(node: number): ResourceStatus {
  return JSON.parse(ok(node, 'status', 'r0', '--json')) as ResourceStatus;
}

async function startDaemon(node: number): Promise<ChildProcess> {
  const p = spawn(
    process.execPath,
    [LUNAR, 'serve', '-d', dataDirs[node] as string, '--node', String(node)],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  procs.push(p);
  let log = '';
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`daemon ${node} did not start:\n${log}`)), 20_000);
    const on = (c: Buffer): void => {
      log += c.toString();
      if (log.includes('control API on')) {
        clearTimeout(timer);
        res();
      }
    };
    p.stdout?.on('data', on);
    p.stderr?.on('data', on);
    p.once('exit', (code) => rej(new Error(`daemon ${node} exited ${code}:\n${log}`)));
  });
  return p;
}

async function stopDaemon(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.pid === undefined) return;
  const gone = new Promise<void>((r) => p.once('exit', () => r()));
  process.kill(p.pid, 'SIGTERM');
  await Promise.race([gone, new Promise((r) => setTimeout(r, 8000))]);
  if (p.exitCode === null) process.kill(p.pid, 'SIGKILL');
}

async function session(port: number): Promise<TestInitiator> {
  const c = await TestInitiator.connect(port);
  await c.login({
    targetName: IQN,
    initiatorName: `iqn.2026-11.test:init-${randomBytes(3).toString('hex')}`,
  });
  return c;
}

async function loginRefused(port: number): Promise<boolean> {
  const c = await TestInitiator.connect(port);
  try {
    await c.login({ targetName: IQN });
    await c.logout().catch(() => undefined);
    return false;
  } catch {
    return true;
  } finally {
    c.close();
  }
}

async function write(c: TestInitiator, lba: number, data: Buffer): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const r = await c.scsi(write10(lba, data.length / 4096), { dataOut: data, timeoutMs: 30_000 });
    if (r !== undefined && r.status === 0) return;
    const s = r?.sense;
    const key =
      s === undefined || s.length < 3 ? -1 : (s[0] ?? 0) >= 0x72 ? (s[1] ?? 0) & 15 : (s[2] ?? 0) & 15;
    if (key === 6 && attempt < 3) continue; // UNIT ATTENTION (power on / reset): retry
    throw new Error(
      `WRITE(10) lba ${lba} failed: status ${r?.status ?? 'timeout'} sense ${r?.sense.toString('hex') ?? ''}`,
    );
  }
}

beforeAll(async () => {
  t = tempDir('lunar-repl-daemon-');
  const res = join(t.dir, 'r0.yaml');
  for (const n of [0, 1]) {
    dataDirs.push(join(t.dir, `node${n}`));
    disks.push(join(t.dir, `node${n}`, 'r0.img'));
  }
  writeFileSync(
    res,
    `name: r0
secret: daemon-test
size: ${DEV_MIB}M
nodes:
  - { id: 0, name: alpha, address: 127.0.0.1:7950, disk: ${disks[0]} }
  - { id: 1, name: beta, address: 127.0.0.1:7951, disk: ${disks[1]} }
net: { pingIntMs: 1000, pingTimeoutMs: 2000, connectIntMs: 100 }
`,
  );
  for (const n of [0, 1]) {
    spawnSync('mkdir', ['-p', dataDirs[n] as string]);
    writeFileSync(
      join(dataDirs[n] as string, 'lunar.yaml'),
      `portals:
  - listen: 127.0.0.1:${PORTALS[n]}
resources:
  - file: ${res}
targets:
  - name: ${IQN}
    luns:
      - { lun: 0, backstore: replicated, resource: r0 }
`,
    );
  }
  await Promise.all([startDaemon(0), startDaemon(1)]);
  ok(0, 'wait-connect', 'r0', '--timeout', '10');
});

afterAll(async () => {
  for (const p of procs) await stopDaemon(p);
  t?.cleanup();
});

describe('replicated LUN in lunar serve (two daemons)', () => {
  it(
    'is offered only on the Primary; writes through iSCSI replicate; verify 0; equal sha256',
    async () => {
      // Not Primary anywhere yet: the target is not offered.
      expect(await loginRefused(PORTALS[0] as number)).toBe(true);
      ok(0, 'new-current-uuid', 'r0', '--clear-bitmap');
      ok(0, 'primary', 'r0');
      ok(1, 'wait-sync', 'r0', '--timeout', '20');
      expect(await loginRefused(PORTALS[1] as number)).toBe(true);
      // The Secondary cannot be promoted while the Primary is there.
      expect(cli(1, 'primary', 'r0').code).toBe(3);

      const sessions = await Promise.all([0, 1, 2, 3].map(() => session(PORTALS[0] as number)));
      const blocks = (DEV_MIB * MiB) / 4096;
      const total = ISCSI_MIB * MiB;
      let written = 0;
      const t0 = Date.now();
      await Promise.all(
        sessions.map(async (c, i) => {
          const rand = rng(1000 + i);
          while (written < total) {
            const n = 1 + Math.floor(rand() * 16); // 4 KiB … 64 KiB
            const lba = Math.floor(rand() * (blocks - n));
            written += n * 4096;
            await write(c, lba, randomBytes(n * 4096));
          }
        }),
      );
      const secs = (Date.now() - t0) / 1000;
      console.log(
        `iSCSI random writes: ${(written / MiB).toFixed(0)} MiB in ${secs.toFixed(1)} s (${(written / MiB / secs).toFixed(1)} MiB/s) on a ${DEV_MIB} MiB device`,
      );
      // DRBD refuses to demote a device held open; lunar refuses while initiators are logged in.
      const busy = cli(0, 'secondary', 'r0');
      expect(busy.code).toBe(3);
      expect(busy.err).toMatch(/in use by 4 iSCSI session/);
      for (const c of sessions) {
        await c.logout().catch(() => undefined);
        c.close();
      }
      const v = JSON.parse(ok(0, 'verify', 'r0', '--json')) as { outOfSyncBlocks: number }[];
      expect(v[0]?.outOfSyncBlocks).toBe(0);
      const st = status(0);
      expect(st.peers[0]?.outOfSyncKiB).toBe(0);
      expect(sha256File(disks[0] as string)).toBe(sha256File(disks[1] as string));
      expect(ok(0, 'proc')).toMatch(/cs:Connected ro:Primary\/Secondary ds:UpToDate\/UpToDate C/);
    },
    120_000 + ISCSI_MIB * 1000,
  );

  it(
    `QD32 4K random writes with heavy overlap for ${OVERLAP_SEC} s: replicas identical`,
    async () => {
      const sessions = await Promise.all([0, 1, 2, 3].map(() => session(PORTALS[0] as number)));
      const end = Date.now() + OVERLAP_SEC * 1000;
      let n = 0;
      await Promise.all(
        sessions.flatMap((c, i) =>
          Array.from({ length: 8 }, async (_, j) => {
            const rand = rng(77 + i * 8 + j);
            while (Date.now() < end) {
              // 64 blocks (256 KiB) hot region: nearly every write overlaps another one in flight;
              // one in 8 spans two blocks
              const len = rand() < 0.125 ? 2 : 1;
              await write(c, Math.floor(rand() * (64 - len)), randomBytes(len * 4096));
              n++;
            }
          }),
        ),
      );
      console.log(`overlap load: ${n} writes at QD32 in ${OVERLAP_SEC} s`);
      for (const c of sessions) {
        await c.logout().catch(() => undefined);
        c.close();
      }
      const v = JSON.parse(ok(0, 'verify', 'r0', '--json')) as { outOfSyncBlocks: number }[];
      expect(v[0]?.outOfSyncBlocks).toBe(0);
      expect(sha256File(disks[0] as string)).toBe(sha256File(disks[1] as string));
    },
    120_000 + OVERLAP_SEC * 1000,
  );

  it('switchover: demote, promote the peer, the target moves with the Primary', async () => {
    const before = sha256File(disks[0] as string);
    ok(0, 'secondary', 'r0');
    ok(1, 'primary', 'r0');
    expect(await loginRefused(PORTALS[0] as number)).toBe(true);
    const c = await session(PORTALS[1] as number);
    await write(c, 0, Buffer.alloc(4096, 0x5a));
    await c.logout().catch(() => undefined);
    c.close();
    ok(0, 'wait-sync', 'r0', '--timeout', '20');
    expect(sha256File(disks[0] as string)).toBe(sha256File(disks[1] as string));
    expect(sha256File(disks[0] as string)).not.toBe(before);
    const events = spawnSync(
      'timeout',
      ['2', process.execPath, LUNAR, 'repl', 'events', 'r0', '-d', dataDirs[1] as string],
      { encoding: 'utf8' },
    );
    expect(events.stdout).toMatch(/^exists resource name:r0 role:Primary/m);
    expect(events.stdout).toMatch(/^exists -$/m);
  });
});
