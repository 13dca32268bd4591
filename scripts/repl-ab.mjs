#!/usr/bin/env node
/**
 * A/B harness for the replication write path (the figures in docs/replication.md, "Per-write cost
 * cut"): starts two node-main processes of the build in ROOT (a directory with dist/ and
 * build/Release/, e.g. a copy of an older build, so two builds can be alternated), node 1's
 * backing file on /dev/shm, and runs the bench load phases given, printing one JSON line per
 * phase with IOPS, MiB/s, p50 and the CPU per I/O (µs) of each node's main thread, its other
 * threads and its io_uring workers.
 *
 *   node scripts/repl-ab.mjs ROOT LABEL [PHASES]      (run under flock /tmp/lunar-bench.lock)
 *
 * PHASES (comma-separated, default l32,c32,lseq,cseq,c1): l32 / c32 = 4 KiB random writes at
 * QD32, local-only / protocol C (any depth: l8, c128…); lseq / cseq = 1 MiB sequential at QD4;
 * rs = one full resync. Environment: SECS (seconds per phase, default 3), PROF=DIR (--cpu-prof
 * of both nodes), PERF=PREFIX (perf record -a -g during each write phase), NODEFLAGS (extra node
 * options, e.g. --perf-basic-prof); anything else (LUNAR_MEMFILE_INLINE_MAX,
 * LUNAR_REPL_FRAME_GROUP…) reaches the nodes. Ports 7980–7981.
 */
import { spawn } from 'node:child_process';
import {
  closeSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const [rootArg, label = 'run', phasesArg = 'l32,c32,lseq,cseq,c1'] = process.argv.slice(2);
if (rootArg === undefined) {
  console.error('usage: node scripts/repl-ab.mjs ROOT LABEL [PHASES]');
  process.exit(2);
}
const root = resolve(rootArg);
const { controlRequest } = await import(join(root, 'dist/src/replication/control.js'));
const MAIN = join(root, 'dist/src/replication/node-main.js');
const SIZE = 256 * 1048576;
const PORT = 7980;
const secs = Number(process.env.SECS ?? 3);
const dir = mkdtempSync('/tmp/lunar-repl-ab-');
const peerDir = mkdtempSync('/dev/shm/lunar-repl-ab-');
const cfg = join(dir, 'ab.yaml');
const ctl = [join(dir, 'n0.ctl'), join(dir, 'n1.ctl')];

writeFileSync(
  cfg,
  `name: ab
secret: ab-secret
size: ${SIZE}
nodes:
  - { id: 0, name: n0, address: 127.0.0.1:${PORT}, disk: ${join(dir, 'n0.img')}, control: ${ctl[0]} }
  - { id: 1, name: n1, address: 127.0.0.1:${PORT + 1}, disk: ${join(peerDir, 'n1.img')}, control: ${ctl[1]} }
net: { protocol: C, pingIntMs: 2000, pingTimeoutMs: 2000, connectIntMs: 100 }
disk: { direct: true, alExtents: 1020, resyncChunk: 1048576 }
`,
);

/** Written and synced zeros, as bench/repl.ts does (no writeback during the measurements). */
function zeroFile(path) {
  const fd = openSync(path, 'w');
  const buf = Buffer.alloc(4 << 20);
  for (let at = 0; at < SIZE; at += buf.length) writeSync(fd, buf);
  fsyncSync(fd);
  closeSync(fd);
}

function startNode(id) {
  const extra = process.env.NODEFLAGS ? process.env.NODEFLAGS.split(' ') : [];
  if (process.env.PROF)
    extra.push(
      '--cpu-prof',
      '--cpu-prof-dir',
      process.env.PROF,
      `--cpu-prof-name=${label}-node${id}.cpuprofile`,
    );
  const p = spawn(
    process.execPath,
    [...extra, MAIN, 'serve', '--config', cfg, '--node', String(id), '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return new Promise((res, rej) => {
    let out = '';
    p.stdout.on('data', (c) => {
      out += c;
      if (out.includes('READY')) res(p);
    });
    p.once('exit', (code) => rej(new Error(`node ${id} exited with ${code}`)));
  });
}

const req = (n, r) => controlRequest(ctl[n], r, 600_000);

/** CPU ms so far of a process's threads: main, io_uring workers, other. */
function cpu(pid) {
  const out = { main: 0, other: 0, 'iou-wrk': 0 };
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const name = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      const k = t === String(pid) ? 'main' : name.startsWith('iou-wrk') ? 'iou-wrk' : 'other';
      out[k] += (Number(f[11]) + Number(f[12])) * 10;
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

const procs = [];
try {
  zeroFile(join(dir, 'n0.img'));
  zeroFile(join(peerDir, 'n1.img'));
  procs.push(await startNode(0), await startNode(1));
  await req(0, { cmd: 'wait-connect', timeoutMs: 10_000 });
  await req(0, { cmd: 'new-current-uuid', clearBitmap: true });
  await req(0, { cmd: 'primary' });
  await req(1, { cmd: 'wait-sync', timeoutMs: 10_000 });
  for (const ph of phasesArg.split(',')) {
    const c0 = procs.map((p) => cpu(p.pid));
    let r;
    if (ph === 'rs') {
      await req(0, { cmd: 'invalidate-remote' });
      await req(0, { cmd: 'wait-sync', timeoutMs: 600_000 });
      const ls = (await req(0, { cmd: 'status' })).peers[0].lastSync;
      r = { iops: 0, mibps: ls.totalKiB / 1024 / ls.elapsedSec, p50Us: 0, ios: ls.totalKiB / 1024 };
    } else {
      if (process.env.PERF) {
        void sleep(1300).then(() =>
          spawn(
            'perf',
            [
              'record',
              '-a',
              '-g',
              '-o',
              `${process.env.PERF}-${ph}.perf`,
              '--',
              'sleep',
              String(Math.max(1, secs - 2)),
            ],
            {
              stdio: 'ignore',
            },
          ),
        );
      }
      const seq = ph.endsWith('seq');
      r = await req(0, {
        cmd: 'bench',
        raw: ph.startsWith('l'),
        size: seq ? 1048576 : 4096,
        qd: seq ? 4 : Number(ph.slice(1)),
        seconds: secs,
        pattern: seq ? 'seq' : 'rand',
      });
    }
    const perIo = procs.map((p, i) => {
      const c1 = cpu(p.pid);
      return Object.fromEntries(
        Object.keys(c1).map((k) => [k, Math.round(((c1[k] - c0[i][k]) * 10000) / r.ios) / 10]),
      );
    });
    console.log(
      JSON.stringify({
        label,
        ph,
        iops: Math.round(r.iops),
        mibps: Math.round(r.mibps),
        p50: Math.round(r.p50Us),
        cpuUsPerIo: perIo,
      }),
    );
  }
} finally {
  await Promise.allSettled(ctl.map((c) => controlRequest(c, { cmd: 'shutdown' }, 5000)));
  await Promise.all(
    procs.map((p) =>
      p.exitCode !== null ? undefined : Promise.race([new Promise((r) => p.once('exit', r)), sleep(5000)]),
    ),
  );
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  rmSync(peerDir, { recursive: true, force: true });
}
