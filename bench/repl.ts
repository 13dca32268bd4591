/**
 * `npm run bench -- repl [options]` (also `lunar bench repl` = the same script): replication cost.
 *
 * Two node PROCESSES (src/replication/node-main.ts) on loopback with file backstores (O_DIRECT)
 * on the real disk. The load runs inside the Primary's process (control command `bench`,
 * src/replication/control.ts) so the figures are the replication write path, not a client's.
 *
 *   local-only    writes to the Primary's backing file directly (no replication, no AL)
 *   A / B / C     the replicated write path with that protocol (switched live with `adjust`)
 *
 * Prints 4K QD1 latency p50/p99, 4K QD32 random write IOPS, 1 MiB sequential write MiB/s (QD4),
 * each with its ratio to local-only; full resync throughput vs fio's direct write rate of the same
 * disk with the resync's I/O shape; a TCP ping-pong loopback round trip; the goals as PASS/FAIL;
 * and writes an SVG chart of the QD1 latency distributions.
 *
 * Options: --dir DIR (default: a temp dir on the disk of ./, not tmpfs) --size 256M --seconds 4
 *          --peer-dir DIR (node 1's backing file in a temp dir under DIR instead of next to node
 *          0's: by default both replicas share one disk, so every replicated write costs that disk
 *          two writes; local-only always writes node 0's file in --dir)
 *          --svg FILE (default bench-repl-latency.svg) --keep (keep the files) --json FILE
 *          --resyncs N (full resyncs in a row, default 3, the median counts) --resync-only (no write
 *          benchmarks: N resyncs, a verify and fio; for profiling the resync with LUNAR_BENCH_PROF)
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type BenchResult, controlRequest } from '../src/replication/control.js';
import type { ResourceStatus } from '../src/replication/status.js';
import { fmt, have, isTmpfs, parseSize, table } from './common.js';

const MAIN = resolve(import.meta.dirname, '../src/replication/node-main.js');
const PORT0 = 7960;

interface Ctx {
  readonly dir: string;
  /** Where node 1's backing file lives (= dir unless --peer-dir). */
  readonly peerDir: string;
  readonly cfgPath: string;
  readonly ctl: [string, string];
  readonly size: number;
}

let resyncChunk = 1048576;

function resourceYaml(c: { dir: string; peerDir: string; size: number; protocol: string }): string {
  return `name: bench
secret: bench-secret
size: ${c.size}
nodes:
  - { id: 0, name: n0, address: 127.0.0.1:${PORT0}, disk: ${join(c.dir, 'n0.img')}, control: ${join(c.dir, 'n0.ctl')} }
  - { id: 1, name: n1, address: 127.0.0.1:${PORT0 + 1}, disk: ${join(c.peerDir, 'n1.img')}, control: ${join(c.dir, 'n1.ctl')} }
net: { protocol: ${c.protocol}, pingIntMs: 2000, pingTimeoutMs: 2000, connectIntMs: 100 }
disk: { direct: true, alExtents: 1020, resyncChunk: ${resyncChunk} }
`;
}

/**
 * Fills a file with zeros (allocated, written: no unwritten-extent conversion during the bench),
 * then fsyncs it: otherwise the kernel writes these dirty pages back during the first
 * measurements (local-only) and the disk is shared with that writeback.
 */
function zeroFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
  const buf = Buffer.alloc(4 * 1024 * 1024);
  for (let at = 0; at < size; at += buf.length) writeSync(fd, buf, 0, Math.min(buf.length, size - at));
  fsyncSync(fd);
  closeSync(fd);
}

function startNode(cfgPath: string, id: number): Promise<ChildProcess> {
  const prof = process.env['LUNAR_BENCH_PROF'];
  const p = spawn(
    process.execPath,
    [
      ...(prof !== undefined
        ? ['--cpu-prof', '--cpu-prof-dir', prof, `--cpu-prof-name=node${id}.cpuprofile`]
        : []),
      MAIN,
      'serve',
      '--config',
      cfgPath,
      '--node',
      String(id),
      '--log-level',
      'warn',
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((res, rej) => {
    let out = '';
    p.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('READY')) res(p);
    });
    p.once('exit', (code) => rej(new Error(`node ${id} exited with ${code}`)));
  });
}

async function req<T>(ctx: Ctx, node: 0 | 1, r: Record<string, unknown> & { cmd: string }): Promise<T> {
  return (await controlRequest(ctx.ctl[node], r, 600_000)) as T;
}

function pctile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** TCP ping-pong (64 bytes, Nagle off) against an echo server in another process: the RTT in µs. */
async function loopbackRtt(): Promise<{ p50: number; p99: number }> {
  const port = PORT0 + 9;
  const echo = spawn(
    process.execPath,
    [
      '-e',
      `require('net').createServer(s=>{s.setNoDelay(true);s.on('data',d=>s.write(d))}).listen(${port},'127.0.0.1',()=>console.log('up'))`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((r) => echo.stdout?.once('data', () => r()));
  try {
    const sock = tcpConnect({ port, host: '127.0.0.1' });
    sock.setNoDelay(true);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const msg = Buffer.alloc(64, 1);
    const samples: number[] = [];
    for (let i = 0; i < 3000; i++) {
      const t0 = performance.now();
      await new Promise<void>((r) => {
        let got = 0;
        const on = (d: Buffer): void => {
          got += d.length;
          if (got >= 64) {
            sock.off('data', on);
            r();
          }
        };
        sock.on('data', on);
        sock.write(msg);
      });
      if (i >= 500) samples.push((performance.now() - t0) * 1000);
    }
    sock.destroy();
    samples.sort((a, b) => a - b);
    return { p50: pctile(samples, 50), p99: pctile(samples, 99) };
  } finally {
    echo.kill('SIGKILL');
  }
}

/** fio sequential direct writes with the resync's shape (chunk, 8 in flight): MiB/s. */
function fioWrite(dir: string, size: number, bs: number): number | null {
  if (!have('fio')) return null;
  const file = join(dir, 'fio.img');
  const r = spawnSync(
    'fio',
    [
      '--name=resync-shape',
      `--filename=${file}`,
      '--rw=write',
      `--bs=${bs}`,
      '--direct=1',
      '--ioengine=libaio',
      '--iodepth=8',
      `--size=${size}`,
      '--end_fsync=1',
      '--output-format=json',
    ],
    { encoding: 'utf8' },
  );
  rmSync(file, { force: true });
  if (r.status !== 0) return null;
  const j = JSON.parse(r.stdout) as { jobs: { write: { bw_bytes: number } }[] };
  return (j.jobs[0]?.write.bw_bytes ?? 0) / 1048576;
}

/**
 * fio's write rate of both directories. The resync goal uses the slower disk (it reads one and
 * writes the other); a tmpfs directory is not a disk and does not count (fio's libaio writes to a
 * fresh tmpfs file measured anything from 370 to 4,600 MiB/s here), unless both are tmpfs.
 */
function diskRates(
  dir: string,
  peerDir: string,
  size: number,
): { disk0: number | null; disk1: number | null; disk: number | null } {
  const fioSize = Math.min(size, 512 * 1048576);
  const disk0 = fioWrite(dir, fioSize, 262144);
  const disk1 = peerDir === dir ? disk0 : fioWrite(peerDir, fioSize, 262144);
  const disks = [
    { rate: disk0, tmpfs: isTmpfs(dir) },
    { rate: disk1, tmpfs: isTmpfs(peerDir) },
  ];
  const counted = disks.some((d) => !d.tmpfs) ? disks.filter((d) => !d.tmpfs) : disks;
  const disk = counted.some((d) => d.rate === null)
    ? null
    : Math.min(...counted.map((d) => d.rate as number));
  return { disk0, disk1, disk };
}

/** One full resync node 0 → node 1 (invalidate-remote): MiB/s as node 0's status reports it. */
async function fullResync(
  ctx: Ctx,
): Promise<{ mibps: number; ls: ResourceStatus['peers'][number]['lastSync'] }> {
  await req(ctx, 0, { cmd: 'invalidate-remote' });
  await req(ctx, 0, { cmd: 'wait-sync', timeoutMs: 600_000 });
  const st = await req<ResourceStatus>(ctx, 0, { cmd: 'status' });
  const ls = st.peers[0]?.lastSync ?? null;
  return { mibps: ls === null ? 0 : ls.totalKiB / 1024 / Math.max(0.001, ls.elapsedSec), ls };
}

/** CPU time (user + system, every thread incl. io_uring workers) of a process so far, in ms. */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime in USER_HZ (100)
  } catch {
    return 0;
  }
}

/** --resync-only: N full resyncs (no write benchmarks), a verify, and fio's rate. */
async function resyncOnly(
  ctx: Ctx,
  pids: readonly (number | undefined)[],
  dir: string,
  peerDir: string,
  size: number,
  n: number,
): Promise<void> {
  // Different data on the two sides, so the verify after the resyncs means something.
  await req(ctx, 0, { cmd: 'bench', raw: false, size: 1048576, qd: 4, seconds: 1, pattern: 'seq' });
  await req(ctx, 0, { cmd: 'bench', raw: true, size: 1048576, qd: 4, seconds: 1, pattern: 'seq' });
  const runs: number[] = [];
  for (let i = 0; i < Math.max(1, n); i++) {
    const c0 = pids.map(cpuMs);
    const r = await fullResync(ctx);
    const gib = (r.ls?.totalKiB ?? 0) / 1048576;
    const cpu = pids.map((p, k) => (cpuMs(p) - (c0[k] ?? 0)) / Math.max(gib, 1e-9));
    runs.push(r.mibps);
    console.log(
      `  full resync ${i + 1}: ${fmt(r.ls?.totalKiB ?? 0)} KiB in ${r.ls?.elapsedSec ?? '?'} s = ${fmt(r.mibps, 1)} MiB/s; CPU ms per GiB: node 0 ${fmt(cpu[0] ?? 0)}, node 1 ${fmt(cpu[1] ?? 0)}`,
    );
  }
  const verify = await req<{ outOfSyncBlocks: number }>(ctx, 0, { cmd: 'verify' });
  const sorted = [...runs].sort((a, b) => a - b);
  const med = sorted[Math.floor(sorted.length / 2)] ?? 0;
  const { disk0, disk1, disk } = diskRates(dir, peerDir, size);
  const mibs = (v: number | null): string => (v === null ? 'fio unavailable' : `${fmt(v, 1)} MiB/s`);
  console.log(
    `full resync median ${fmt(med, 1)} MiB/s; verify after: ${verify.outOfSyncBlocks} out-of-sync; fio write: node 0's dir ${mibs(disk0)}, node 1's dir ${mibs(disk1)}; resync / slower disk (tmpfs not counted) = ${disk === null ? '?' : (med / disk).toFixed(2)}×`,
  );
}

function svgChart(series: { name: string; cdf: readonly number[]; color: string }[], title: string): string {
  const W = 760;
  const H = 420;
  const L = 70;
  const R = 150;
  const T = 40;
  const B = 50;
  const all = series.flatMap((s) => s.cdf.slice(0, 100)).filter((v) => v > 0);
  const lo = Math.max(1, Math.min(...all) * 0.8);
  const hi = Math.max(...all) * 1.2;
  const lx = (v: number): number =>
    L + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (W - L - R);
  const ly = (p: number): number => T + (1 - p / 100) * (H - T - B);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${title}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
  ];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v < lo || v > hi) continue;
      const x = lx(v);
      out.push(`<line x1="${x}" y1="${T}" x2="${x}" y2="${H - B}" stroke="#ddd"/>`);
      out.push(
        `<text x="${x}" y="${H - B + 16}" text-anchor="middle">${v >= 1000 ? `${v / 1000} ms` : `${v} µs`}</text>`,
      );
    }
  }
  for (const p of [0, 25, 50, 75, 90, 99, 100]) {
    out.push(`<line x1="${L}" y1="${ly(p)}" x2="${W - R}" y2="${ly(p)}" stroke="#eee"/>`);
    out.push(`<text x="${L - 6}" y="${ly(p) + 4}" text-anchor="end">${p}%</text>`);
  }
  out.push(
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">write latency (log scale)</text>`,
  );
  out.push(
    `<text x="16" y="${(T + H - B) / 2}" transform="rotate(-90 16 ${(T + H - B) / 2})" text-anchor="middle">percentile</text>`,
  );
  series.forEach((s, i) => {
    const pts = s.cdf.map((v, p) => `${lx(v).toFixed(1)},${ly(p).toFixed(1)}`).join(' ');
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts}"/>`);
    const y = T + 10 + i * 20;
    out.push(
      `<line x1="${W - R + 15}" y1="${y}" x2="${W - R + 40}" y2="${y}" stroke="${s.color}" stroke-width="3"/>`,
    );
    out.push(`<text x="${W - R + 46}" y="${y + 4}">${s.name} (p50 ${fmt(s.cdf[50] ?? 0)} µs)</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

export async function runReplBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string' },
      'peer-dir': { type: 'string' },
      size: { type: 'string', default: '256M' },
      seconds: { type: 'string', default: '4' },
      svg: { type: 'string', default: 'bench-repl-latency.svg' },
      json: { type: 'string' },
      keep: { type: 'boolean', default: false },
      modes: { type: 'string', default: 'local,A,B,C' },
      'resync-chunk': { type: 'string', default: '1M' },
      resyncs: { type: 'string', default: '3' },
      'resync-only': { type: 'boolean', default: false },
    },
  });
  const size = parseSize(values.size);
  const seconds = Number(values.seconds);
  resyncChunk = parseSize(values['resync-chunk']);
  let base = values.dir;
  if (base === undefined) base = isTmpfs(tmpdir()) ? resolve('.') : tmpdir();
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(join(base, 'lunar-bench-repl-'));
  let peerDir = dir;
  if (values['peer-dir'] !== undefined) {
    mkdirSync(values['peer-dir'], { recursive: true });
    peerDir = mkdtempSync(join(resolve(values['peer-dir']), 'lunar-bench-repl-peer-'));
  }
  const cfgPath = join(dir, 'bench.yaml');
  const ctx: Ctx = { dir, peerDir, cfgPath, ctl: [join(dir, 'n0.ctl'), join(dir, 'n1.ctl')], size };
  const kind = (d: string): string => (isTmpfs(d) ? 'tmpfs!' : 'disk');
  console.log(
    peerDir === dir
      ? `lunar bench repl: 2 node processes on loopback, both backing files in ${dir} (${kind(dir)}: one disk shared by both replicas), O_DIRECT, device ${values.size}`
      : `lunar bench repl: 2 node processes on loopback, node 0 (primary, local-only) in ${dir} (${kind(dir)}), node 1 in ${peerDir} (${kind(peerDir)}), O_DIRECT, device ${values.size}`,
  );
  const procs: ChildProcess[] = [];
  try {
    zeroFile(join(dir, 'n0.img'), size);
    zeroFile(join(peerDir, 'n1.img'), size);
    writeFileSync(cfgPath, resourceYaml({ dir, peerDir, size, protocol: 'C' }));
    procs.push(await startNode(cfgPath, 0), await startNode(cfgPath, 1));
    await req(ctx, 0, { cmd: 'wait-connect', timeoutMs: 10_000 });
    await req(ctx, 0, { cmd: 'new-current-uuid', clearBitmap: true });
    await req(ctx, 0, { cmd: 'primary' });
    await req(ctx, 1, { cmd: 'wait-sync', timeoutMs: 10_000 });

    if (values['resync-only']) {
      await resyncOnly(
        ctx,
        procs.map((p) => p.pid),
        dir,
        peerDir,
        size,
        Number(values.resyncs),
      );
      return;
    }
    const rtt = await loopbackRtt();
    const modes = ['local', 'A', 'B', 'C'].filter((m) => values.modes.split(',').includes(m)) as (
      'local' | 'A' | 'B' | 'C'
    )[];
    if (!modes.includes('local') || !modes.includes('C')) throw new Error('--modes must include local and C');
    const res: Record<string, { qd1: BenchResult; qd32: BenchResult; seq: BenchResult }> = {};
    for (const m of modes) {
      if (m !== 'local') {
        writeFileSync(cfgPath, resourceYaml({ dir, peerDir, size, protocol: m }));
        await req(ctx, 0, { cmd: 'adjust' });
        await req(ctx, 1, { cmd: 'adjust' });
        const st = await req<ResourceStatus>(ctx, 0, { cmd: 'status' });
        if (st.protocol !== m || st.peers[0]?.connection !== 'Connected')
          throw new Error(
            `protocol ${m}: node 0 reports protocol ${st.protocol}, ${st.peers[0]?.connection}`,
          );
      }
      const raw = m === 'local';
      const qd1 = await req<BenchResult>(ctx, 0, {
        cmd: 'bench',
        raw,
        size: 4096,
        qd: 1,
        seconds,
        pattern: 'rand',
      });
      const qd32 = await req<BenchResult>(ctx, 0, {
        cmd: 'bench',
        raw,
        size: 4096,
        qd: 32,
        seconds,
        pattern: 'rand',
      });
      const seq = await req<BenchResult>(ctx, 0, {
        cmd: 'bench',
        raw,
        size: 1048576,
        qd: 4,
        seconds,
        pattern: 'seq',
      });
      res[m] = { qd1, qd32, seq };
      console.log(
        `  ${m.padEnd(5)} QD1 p50 ${fmt(qd1.p50Us)} µs p99 ${fmt(qd1.p99Us)} µs | QD32 ${fmt(qd32.iops)} IOPS | seq ${fmt(seq.mibps, 1)} MiB/s`,
      );
    }
    // Full resync of the whole device to the peer (writes above made the replicas differ anyway).
    writeFileSync(cfgPath, resourceYaml({ dir, peerDir, size, protocol: 'C' }));
    await req(ctx, 0, { cmd: 'adjust' });
    await req(ctx, 1, { cmd: 'adjust' });
    const runs: number[] = [];
    let ls: ResourceStatus['peers'][number]['lastSync'] = null;
    for (let i = 0; i < Math.max(1, Number(values.resyncs)); i++) {
      const r = await fullResync(ctx);
      ls = r.ls;
      runs.push(r.mibps);
    }
    runs.sort((a, b) => a - b);
    const resyncMiBps = runs[Math.floor(runs.length / 2)] ?? 0;
    const verify = await req<{ outOfSyncBlocks: number }>(ctx, 0, { cmd: 'verify' });
    const { disk0, disk1, disk } = diskRates(dir, peerDir, size);

    const L = res['local'] as (typeof res)[string];
    const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
    const rows: string[][] = [
      ['mode', 'QD1 p50 µs', 'QD1 p99 µs', 'QD32 IOPS', 'vs local', 'seq MiB/s', 'vs local'],
    ];
    for (const m of modes) {
      const r = res[m] as (typeof res)[string];
      rows.push([
        m === 'local' ? 'local-only' : `protocol ${m}`,
        fmt(r.qd1.p50Us),
        fmt(r.qd1.p99Us),
        fmt(r.qd32.iops),
        ratio(r.qd32.iops, L.qd32.iops),
        fmt(r.seq.mibps, 1),
        ratio(r.seq.mibps, L.seq.mibps),
      ]);
    }
    console.log(`\n${table(rows)}`);
    console.log(
      `\nloopback TCP round trip (64 B ping-pong, other process): p50 ${fmt(rtt.p50, 1)} µs, p99 ${fmt(rtt.p99, 1)} µs`,
    );
    console.log(
      `full resync: ${fmt(ls?.totalKiB ?? 0)} KiB in ${ls?.elapsedSec ?? '?'} s, ${runs.length > 1 ? `median of [${runs.map((v) => fmt(v, 1)).join(', ')}] = ` : ''}${fmt(resyncMiBps, 1)} MiB/s; verify after: ${verify.outOfSyncBlocks} out-of-sync`,
    );
    const mibs = (v: number | null): string => (v === null ? 'fio unavailable' : `${fmt(v, 1)} MiB/s`);
    console.log(
      peerDir === dir
        ? `disk write rate (fio --direct=1 --rw=write --bs=256k --iodepth=8, same dir): ${mibs(disk)}`
        : `disk write rate (fio --direct=1 --rw=write --bs=256k --iodepth=8): node 0's dir ${mibs(disk0)}, node 1's dir ${mibs(disk1)}; the resync goal uses the slower disk (a tmpfs dir is not counted)`,
    );
    const C = res['C'] as (typeof res)[string];
    const goals: [string, boolean, string][] = [
      [
        'protocol C QD1 p50 ≤ local p50 + loopback RTT + 60 µs',
        C.qd1.p50Us <= L.qd1.p50Us + rtt.p50 + 60,
        `${fmt(C.qd1.p50Us)} ≤ ${fmt(L.qd1.p50Us)} + ${fmt(rtt.p50)} + 60 = ${fmt(L.qd1.p50Us + rtt.p50 + 60)} µs`,
      ],
      [
        'protocol C QD32 IOPS ≥ 0.7× local',
        C.qd32.iops >= 0.7 * L.qd32.iops,
        ratio(C.qd32.iops, L.qd32.iops),
      ],
      [
        'protocol C sequential ≥ 0.8× local',
        C.seq.mibps >= 0.8 * L.seq.mibps,
        ratio(C.seq.mibps, L.seq.mibps),
      ],
      [
        'resync ≥ 0.8× disk write rate',
        disk !== null && resyncMiBps >= 0.8 * disk,
        disk === null ? 'no fio' : `${fmt(resyncMiBps, 1)} / ${fmt(disk, 1)} = ${ratio(resyncMiBps, disk)}`,
      ],
    ];
    console.log('\ngoals:');
    for (const [g, pass, why] of goals) console.log(`  ${pass ? 'PASS' : 'FAIL'}  ${g}  (${why})`);
    const svg = resolve(values.svg);
    writeFileSync(
      svg,
      svgChart(
        [
          { name: 'local-only', cdf: L.qd1.cdfUs, color: '#444' },
          ...(['A', 'B', 'C'] as const)
            .filter((m) => res[m] !== undefined)
            .map((m) => ({
              name: `protocol ${m}`,
              cdf: (res[m] as (typeof res)[string]).qd1.cdfUs,
              color: { A: '#1f77b4', B: '#2ca02c', C: '#d62728' }[m],
            })),
        ],
        `lunar replication: 4 KiB QD1 random write latency (O_DIRECT, loopback, ${values.size})`,
      ),
    );
    console.log(`\nlatency distributions chart: ${svg}`);
    if (values.json !== undefined) {
      writeFileSync(
        values.json,
        `${JSON.stringify({ dir, peerDir, rtt, res, resyncMiBps, disk0, disk1, goals }, null, 2)}\n`,
      );
    }
  } finally {
    // orderly shutdown (a --cpu-prof profile is written at exit), then SIGKILL what is left
    await Promise.allSettled(ctx.ctl.map((c) => controlRequest(c, { cmd: 'shutdown' }, 5000)));
    await Promise.all(
      procs.map((p) =>
        p.exitCode !== null
          ? undefined
          : Promise.race([new Promise((r) => p.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]),
      ),
    );
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    if (!values.keep) {
      rmSync(dir, { recursive: true, force: true });
      if (peerDir !== dir) rmSync(peerDir, { recursive: true, force: true });
    }
  }
}
