/**
 * File backstore vs fio on the same file, same patterns, same queue depths (O_DIRECT both):
 *
 *   npm run bench -- backstore [--file PATH] [--seconds N] [--size 1G] [--repeat 3]
 *                              [--engine io_uring|libaio] [--lunar-engine auto|io_uring|threadpool]
 *   npm run bench -- backstore-mem [--file PATH] [--seconds 60] [--size 1G] [--every 5]
 *
 * The file is written out in full first (fio sequential write, so reads hit real blocks rather
 * than unwritten extents) unless --file names an existing file of at least --size bytes. A file the
 * bench created is removed at the end.
 *
 * The machine (and its disk) may be shared, so fio and lunar alternate: for each pattern, --repeat
 * rounds of (fio for --seconds, then lunar for --seconds); the table shows medians and the median
 * of the per-round ratios lunar/fio (a round's ratio compares runs seconds apart).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type Backstore, openBackstore } from '../src/backstore/index.js';
import { alignedPoolStats, allocAligned, nativeLoadError, nativeLoaded } from '../src/native/index.js';
import { fmt, have, isTmpfs, mib, parseSize, table } from './common.js';

type Rw = 'randread' | 'randwrite' | 'read' | 'write';

interface Pattern {
  name: string;
  rw: Rw;
  bs: number;
  qd: number;
  /** lunar only: write from unaligned caller buffers (the iSCSI receive path: bounce copy). */
  unaligned?: boolean;
}

const PATTERNS: Pattern[] = [
  { name: '4K random read QD32', rw: 'randread', bs: 4096, qd: 32 },
  { name: '4K random write QD32', rw: 'randwrite', bs: 4096, qd: 32 },
  { name: '1M sequential read QD8', rw: 'read', bs: 1 << 20, qd: 8 },
  { name: '1M sequential write QD8', rw: 'write', bs: 1 << 20, qd: 8 },
];

interface Result {
  iops: number;
  mibps: number;
  latUs: number;
  cpuPct: number;
}

function fio(file: string, p: Pattern, seconds: number, size: number, engine: string): Result {
  const args = [
    '--name=lunar-bench',
    `--filename=${file}`,
    '--direct=1',
    `--ioengine=${engine}`,
    `--iodepth=${p.qd}`,
    `--rw=${p.rw}`,
    `--bs=${p.bs}`,
    `--size=${size}`,
    '--time_based',
    `--runtime=${seconds}`,
    '--ramp_time=1',
    '--norandommap',
    '--randrepeat=0',
    '--output-format=json',
  ];
  const r = spawnSync('fio', args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`fio failed: ${r.stderr || r.stdout}`);
  const job = (JSON.parse(r.stdout) as { jobs: FioJob[] }).jobs[0]!;
  const d = p.rw.includes('read') ? job.read : job.write;
  return {
    iops: d.iops,
    mibps: d.bw / 1024,
    latUs: d.clat_ns.mean / 1000,
    cpuPct: job.usr_cpu + job.sys_cpu,
  };
}

interface FioJob {
  read: FioDir;
  write: FioDir;
  usr_cpu: number;
  sys_cpu: number;
}
interface FioDir {
  iops: number;
  bw: number;
  clat_ns: { mean: number };
}

/** Runs `p` against the backstore for `seconds` (after a 1 s ramp). */
async function lunar(b: Backstore, p: Pattern, seconds: number): Promise<Result> {
  const ioBlocks = p.bs / b.blockSize;
  const slots = Math.floor(b.blockCount / ioBlocks);
  let cursor = 0;
  const nextLba = (): number => {
    if (p.rw === 'randread' || p.rw === 'randwrite') return Math.floor(Math.random() * slots) * ioBlocks;
    const lba = cursor * ioBlocks;
    cursor = (cursor + 1) % slots;
    return lba;
  };
  const rampEnd = performance.now() + 1000;
  const end = rampEnd + seconds * 1000;
  let ops = 0;
  let latSum = 0;
  let cpuStart: NodeJS.CpuUsage | null = null;
  let measureStart = 0;
  const worker = async (): Promise<void> => {
    const data = allocAligned(p.bs + 8);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const src = p.unaligned === true ? data.subarray(3, 3 + p.bs) : data.subarray(0, p.bs);
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) return;
      const lba = nextLba();
      if (p.rw === 'randread' || p.rw === 'read')
        b.release?.(await b.read(lba, ioBlocks)); // as the iSCSI path does
      else await b.write(lba, src);
      const t1 = performance.now();
      if (t0 >= rampEnd) {
        if (cpuStart === null) {
          cpuStart = process.cpuUsage();
          measureStart = t0;
        }
        ops++;
        latSum += t1 - t0;
      }
    }
  };
  await Promise.all(Array.from({ length: p.qd }, worker));
  const elapsed = (performance.now() - measureStart) / 1000;
  const cpu = process.cpuUsage(cpuStart ?? undefined);
  return {
    iops: ops / elapsed,
    mibps: (ops * p.bs) / elapsed / 2 ** 20,
    latUs: (latSum / Math.max(1, ops)) * 1000,
    cpuPct: ((cpu.user + cpu.system) / 1e6 / elapsed) * 100,
  };
}

interface Prepared {
  file: string;
  created: boolean;
}

async function prepareFile(fileArg: string | undefined, size: number, useFio: boolean): Promise<Prepared> {
  const file = resolve(fileArg ?? '.bench-out/lunar-backstore-bench.img');
  mkdirSync(dirname(file), { recursive: true });
  if (isTmpfs(dirname(file)))
    console.warn(`warning: ${dirname(file)} is tmpfs: O_DIRECT is not in use there`);
  let existing = -1;
  try {
    existing = statSync(file).size;
  } catch {
    existing = -1;
  }
  if (existing >= size && fileArg !== undefined) return { file, created: false };
  const t0 = performance.now();
  process.stdout.write(`laying out ${mib(size)} at ${file} … `);
  if (useFio) {
    const r = spawnSync(
      'fio',
      [
        '--name=layout',
        `--filename=${file}`,
        '--rw=write',
        '--bs=1M',
        '--direct=1',
        '--ioengine=psync',
        `--size=${size}`,
        '--output-format=terse',
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`fio layout failed: ${r.stderr}`);
  } else {
    const b = await openBackstore({ kind: 'file', path: file, size, create: true, blockSize: 4096 });
    const chunk = allocAligned(1 << 20);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131) & 0xff;
    const per = chunk.length / b.blockSize;
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < b.blockCount) {
          const lba = next;
          next += per;
          await b.write(
            lba,
            lba + per <= b.blockCount ? chunk : chunk.subarray(0, (b.blockCount - lba) * b.blockSize),
          );
        }
      }),
    );
    await b.flush();
    await b.close();
  }
  console.log(`${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { file, created: existing < 0 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export async function runBackstoreBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      file: { type: 'string' },
      seconds: { type: 'string', default: '3' },
      size: { type: 'string', default: '1G' },
      repeat: { type: 'string', default: '5' },
      engine: { type: 'string', default: 'io_uring' },
      'lunar-engine': { type: 'string', default: 'auto' },
      'block-size': { type: 'string', default: '512' },
    },
  });
  const seconds = Number(values.seconds);
  const repeat = Math.max(1, Number(values.repeat));
  const lunarEngine = values['lunar-engine'];
  if (lunarEngine !== 'auto' && lunarEngine !== 'io_uring' && lunarEngine !== 'threadpool') {
    throw new Error(`--lunar-engine must be auto, io_uring or threadpool (got ${lunarEngine})`);
  }
  const size = parseSize(values.size);
  const engine = values.engine;
  const blockSize = Number(values['block-size']);
  if (!nativeLoaded)
    console.warn(`warning: native addon not loaded (${nativeLoadError}): lunar runs buffered`);
  const useFio = have('fio');
  if (!useFio) console.warn('warning: fio not found: lunar figures only');
  console.log(`threadpool: UV_THREADPOOL_SIZE=${process.env['UV_THREADPOOL_SIZE'] ?? '(default 4)'}`);
  const prep = await prepareFile(values.file, size, useFio);
  try {
    const b = await openBackstore({
      kind: 'file',
      path: prep.file,
      blockSize,
      direct: true,
      engine: lunarEngine,
    });
    console.log(`lunar: ${b.description}, ${b.blockCount} blocks of ${b.blockSize}`);
    console.log(
      `fio: --ioengine=${engine} --direct=1; ${repeat} alternating rounds of ${seconds} s (+1 s ramp) per tool and pattern`,
    );
    console.log(
      `load average at start: ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')} on ${cpus().length} CPUs\n`,
    );
    const rows: string[][] = [
      [
        'pattern',
        'fio IOPS',
        'fio MiB/s',
        'lunar IOPS',
        'lunar MiB/s',
        'lunar/fio',
        'fio lat µs',
        'lunar lat µs',
        'lunar CPU%',
      ],
    ];
    const patterns: Pattern[] = [
      ...PATTERNS,
      { name: '4K random write QD32 (unaligned src)', rw: 'randwrite', bs: 4096, qd: 32, unaligned: true },
    ];
    for (const p of patterns) {
      const fs: Result[] = [];
      const ls: Result[] = [];
      for (let r = 0; r < repeat; r++) {
        if (useFio && p.unaligned !== true) fs.push(fio(prep.file, p, seconds, size, engine));
        ls.push(await lunar(b, p, seconds));
      }
      const med = (xs: Result[], k: keyof Result): number => median(xs.map((x) => x[k]));
      const f: Result | null =
        fs.length > 0
          ? {
              iops: med(fs, 'iops'),
              mibps: med(fs, 'mibps'),
              latUs: med(fs, 'latUs'),
              cpuPct: med(fs, 'cpuPct'),
            }
          : null;
      const l: Result = {
        iops: med(ls, 'iops'),
        mibps: med(ls, 'mibps'),
        latUs: med(ls, 'latUs'),
        cpuPct: med(ls, 'cpuPct'),
      };
      const ratio = fs.length > 0 ? median(ls.map((x, i) => x.iops / fs[i]!.iops)) : null;
      rows.push([
        p.name,
        f ? fmt(f.iops) : '-',
        f ? fmt(f.mibps, 1) : '-',
        fmt(l.iops),
        fmt(l.mibps, 1),
        ratio !== null ? ratio.toFixed(2) : '-',
        f ? fmt(f.latUs) : '-',
        fmt(l.latUs),
        fmt(l.cpuPct),
      ]);
      console.log(table(rows.slice(-1)));
    }
    await b.close();
    console.log(`\n${table(rows)}`);
    console.log(
      '(unaligned src: lunar copies each write into a pooled aligned bounce buffer, as for iSCSI data)',
    );
  } finally {
    if (prep.created) rmSync(prep.file, { force: true });
  }
}

interface MemSample {
  t: number;
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  poolLive: number;
  poolIdle: number;
  iops: number;
}

export async function runBackstoreMemBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      file: { type: 'string' },
      seconds: { type: 'string', default: '60' },
      size: { type: 'string', default: '1G' },
      every: { type: 'string', default: '5' },
    },
  });
  const seconds = Number(values.seconds);
  const every = Number(values.every);
  const size = parseSize(values.size);
  const prep = await prepareFile(values.file, size, have('fio'));
  try {
    const b = await openBackstore({ kind: 'file', path: prep.file, blockSize: 512, direct: true });
    console.log(`lunar: ${b.description}; QD32 4K random, 50% reads, 50% writes from unaligned buffers`);
    const blocks4k = Math.floor(b.blockCount / 8);
    const end = performance.now() + seconds * 1000;
    let ops = 0;
    const worker = async (w: number): Promise<void> => {
      const src = Buffer.alloc(4096 + 1, w).subarray(1);
      while (performance.now() < end) {
        const lba = Math.floor(Math.random() * blocks4k) * 8;
        if (Math.random() < 0.5)
          b.release?.(await b.read(lba, 8)); // as the iSCSI path does
        else await b.write(lba, src);
        ops++;
      }
    };
    const samples: MemSample[] = [];
    const t0 = performance.now();
    let lastOps = 0;
    let lastT = t0;
    const sample = (): void => {
      const m = process.memoryUsage();
      const pool = alignedPoolStats();
      const now = performance.now();
      samples.push({
        t: (now - t0) / 1000,
        rss: m.rss,
        heapUsed: m.heapUsed,
        external: m.external,
        arrayBuffers: m.arrayBuffers,
        poolLive: pool?.liveBytes ?? 0,
        poolIdle: pool?.idleBytes ?? 0,
        iops: (ops - lastOps) / Math.max(1e-3, (now - lastT) / 1000),
      });
      lastOps = ops;
      lastT = now;
      const s = samples.at(-1)!;
      console.log(
        `t=${s.t.toFixed(0).padStart(3)}s  rss ${mib(s.rss).padStart(10)}  heap ${mib(s.heapUsed).padStart(9)}  external ${mib(s.external).padStart(9)}  arrayBuffers ${mib(s.arrayBuffers).padStart(9)}  pool live/idle ${mib(s.poolLive)}/${mib(s.poolIdle)}  ${fmt(s.iops)} IOPS`,
      );
    };
    sample();
    const timer = setInterval(sample, every * 1000);
    await Promise.all(Array.from({ length: 32 }, (_, i) => worker(i)));
    clearInterval(timer);
    sample();
    await b.close();

    // Verdict: did it keep growing? Compare the last third of the run with the sample where the last
    // third starts (a bounded pool fills up early and then stays flat).
    const third = samples[Math.floor((samples.length * 2) / 3)]!;
    const verdict = (k: 'rss' | 'heapUsed' | 'external'): string => {
      const start = samples[0]![k];
      const endV = samples.at(-1)![k];
      const max = Math.max(...samples.map((s) => s[k]));
      const lastThirdMax = Math.max(...samples.slice(Math.floor((samples.length * 2) / 3)).map((s) => s[k]));
      const growing = endV > third[k] * 1.1 && endV - third[k] > 8 * 2 ** 20;
      const v = growing
        ? 'STILL GROWING in the last third'
        : `flat in the last third (max there ${mib(lastThirdMax)})`;
      return `${k.padEnd(9)} start ${mib(start).padStart(10)}  end ${mib(endV).padStart(10)}  max ${mib(max).padStart(10)}  → ${v}`;
    };
    console.log(`\n${fmt(ops)} requests in ${seconds} s (${fmt(ops / seconds)} IOPS)`);
    for (const k of ['rss', 'heapUsed', 'external'] as const) console.log(verdict(k));
  } finally {
    if (prep.created) rmSync(prep.file, { force: true });
  }
}
