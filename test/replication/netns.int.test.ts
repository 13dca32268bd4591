/**
 * 3 nodes in network namespaces with a real partition (a switch namespace with a bridge, one veth
 * pair per node; the partition takes a node's switch port down). Node processes run with
 * `ip netns exec`; the test drives them through their unix control sockets (filesystem paths
 * work across network namespaces). Skips with a message where namespaces cannot be created.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/replication/control.js';
import type { ResourceStatus } from '../../src/replication/status.js';
import { MiB, tempDir } from './helpers.js';

const MAIN = resolve('dist/src/replication/node-main.js');
const TAG = `lunar-t${process.pid % 10000}`;
const SW = `${TAG}-sw`;
const NS = [0, 1, 2].map((i) => `${TAG}-n${i}`);
const ADDR = [0, 1, 2].map((i) => `10.77.${process.pid % 200}.${i + 1}`);

function ip(...args: string[]): boolean {
  return spawnSync('ip', args, { stdio: 'ignore' }).status === 0;
}

function must(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

const canNetns = ((): boolean => {
  const probe = `${TAG}-probe`;
  if (!ip('netns', 'add', probe)) return false;
  ip('netns', 'del', probe);
  return true;
})();
if (!canNetns)
  console.log('netns test skipped: `ip netns add` is not permitted here (needs root / CAP_SYS_ADMIN)');

let t: ReturnType<typeof tempDir>;
const procs: ChildProcess[] = [];
let ctl: string[] = [];

function writeConfig(dir: string, onNoQuorum: string): string {
  const path = join(dir, `r-${onNoQuorum}.yaml`);
  writeFileSync(
    path,
    `name: rq
secret: netns-test
size: ${16 * MiB}
quorum: majority
onNoQuorum: ${onNoQuorum}
nodes:
${[0, 1, 2].map((i) => `  - { id: ${i}, name: n${i}, address: "${ADDR[i]}:7990", disk: ${join(dir, `${onNoQuorum}-n${i}.img`)}, control: ${join(dir, `${onNoQuorum}-n${i}.ctl`)} }`).join('\n')}
net: { pingIntMs: 300, pingTimeoutMs: 600, timeoutMs: 600, koCount: 2, connectIntMs: 100 }
`,
  );
  ctl = [0, 1, 2].map((i) => join(dir, `${onNoQuorum}-n${i}.ctl`));
  return path;
}

function startNode(cfg: string, i: number): Promise<ChildProcess> {
  const p = spawn(
    'ip',
    [
      'netns',
      'exec',
      NS[i] as string,
      process.execPath,
      MAIN,
      'serve',
      '--config',
      cfg,
      '--node',
      String(i),
      '--log-level',
      'warn',
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  procs.push(p);
  return new Promise((res, rej) => {
    p.stdout?.on('data', (c: Buffer) => {
      if (c.toString().includes('READY')) res(p);
    });
    p.once('exit', (code) => rej(new Error(`node ${i} exited ${code}`)));
  });
}

async function stopNodes(): Promise<void> {
  for (const p of procs.splice(0)) {
    if (p.exitCode !== null || p.pid === undefined) continue;
    const gone = new Promise((r) => p.once('exit', r));
    process.kill(p.pid, 'SIGKILL');
    await gone;
  }
}

const req = (i: number, r: Record<string, unknown> & { cmd: string }, timeoutMs = 30_000) =>
  controlRequest(ctl[i] as string, r, timeoutMs);
const status = async (i: number) => (await req(i, { cmd: 'status' })) as ResourceStatus;
const cut = (i: number) => must('-n', SW, 'link', 'set', `sw${i}`, 'down');
const heal = (i: number) => must('-n', SW, 'link', 'set', `sw${i}`, 'up');

async function until(what: string, cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function bringUp(onNoQuorum: string): Promise<void> {
  await stopNodes();
  for (const i of [0, 1, 2]) heal(i);
  const cfg = writeConfig(t.dir, onNoQuorum);
  await Promise.all([0, 1, 2].map((i) => startNode(cfg, i)));
  await req(0, { cmd: 'wait-connect', timeoutMs: 20_000 });
  await req(1, { cmd: 'wait-connect', timeoutMs: 20_000 });
  await req(0, { cmd: 'new-current-uuid', clearBitmap: true });
  await req(0, { cmd: 'primary' });
  await req(2, { cmd: 'wait-sync', timeoutMs: 10_000 });
}

describe.skipIf(!canNetns)('3 nodes, majority quorum, real partition (network namespaces)', () => {
  beforeAll(() => {
    t = tempDir('lunar-repl-netns-');
    must('netns', 'add', SW);
    must('-n', SW, 'link', 'add', 'br0', 'type', 'bridge');
    must('-n', SW, 'link', 'set', 'br0', 'up');
    for (const i of [0, 1, 2]) {
      const ns = NS[i] as string;
      must('netns', 'add', ns);
      must('link', 'add', `${TAG}v${i}`, 'type', 'veth', 'peer', 'name', `${TAG}s${i}`);
      must('link', 'set', `${TAG}v${i}`, 'netns', ns, 'name', 'eth0');
      must('link', 'set', `${TAG}s${i}`, 'netns', SW, 'name', `sw${i}`);
      must('-n', SW, 'link', 'set', `sw${i}`, 'master', 'br0', 'up');
      must('-n', ns, 'addr', 'add', `${ADDR[i]}/24`, 'dev', 'eth0');
      must('-n', ns, 'link', 'set', 'eth0', 'up');
      must('-n', ns, 'link', 'set', 'lo', 'up');
    }
  });

  afterAll(async () => {
    await stopNodes();
    for (const ns of [...NS, SW]) ip('netns', 'del', ns);
    t?.cleanup();
  });

  it('suspend-io: the isolated Primary freezes; the minority cannot be promoted; the majority can', async () => {
    await bringUp('suspend-io');
    // Node 2 alone: no quorum, so no promotion (and it cannot see that node 0 is Primary).
    cut(2);
    await until('node 2 to lose quorum', async () => !(await status(2)).quorum);
    await expect(req(2, { cmd: 'primary' })).rejects.toThrow(/quorum/);
    heal(2);
    await req(2, { cmd: 'wait-connect', timeoutMs: 10_000 });
    await req(2, { cmd: 'wait-sync', timeoutMs: 10_000 });
    // The Primary alone: its I/O freezes (suspend-io) instead of diverging.
    cut(0);
    await until('node 0 to lose quorum', async () => !(await status(0)).quorum);
    await expect(req(0, { cmd: 'load', count: 4, blocks: 16, qd: 1 }, 2000)).rejects.toThrow(/timed out/);
    const st0 = await status(0);
    expect(st0.role).toBe('Primary');
    expect(st0.suspended).toContain('quorum');
    // The majority side promotes node 1: at most one Primary has quorum.
    await until('node 1 to see node 0 gone', async () =>
      (await status(1)).peers.every((p) => p.role !== 'Primary'),
    );
    await req(1, { cmd: 'primary' });
    const [s0, s1] = [await status(0), await status(1)];
    expect([s0, s1].filter((s) => s.role === 'Primary' && s.quorum).length).toBe(1);
    await stopNodes();
  });

  it('io-error: the isolated Primary fails writes', async () => {
    await bringUp('io-error');
    cut(0);
    await until('node 0 to lose quorum', async () => !(await status(0)).quorum);
    await expect(req(0, { cmd: 'load', count: 4, blocks: 16, qd: 1 }, 5000)).rejects.toThrow();
    const st = await status(0);
    expect(st.quorum).toBe(false);
    await until('node 2 to see node 0 gone', async () =>
      (await status(2)).peers.every((p) => p.role !== 'Primary'),
    );
    await expect(req(2, { cmd: 'primary' })).resolves.toBeNull();
    heal(0);
    await stopNodes();
  });
});
