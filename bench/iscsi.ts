/**
 * lunar vs tgtd, side by side, through the same libiscsi client.
 *
 *   node dist/bench/iscsi.js [--seconds 5] [--repeat 3] [--size 1G] [--dir DIR] [--json out.json]
 *                            [--pairings direct,default] [--metrics rr4k,rw4k,sr1m,sw1m,lat4k,rr4k-perf]
 *                            [--port 3350] [--busy-poll US] [--lunar-cmd tgtd|"CMD ARGS"]
 *
 * One backing file (written out in full, on a real disk) is served by a private tgtd and by
 * lunar, one after the other, never both at once. Each repetition starts each target afresh
 * (tgtd then lunar, interleaved so drift hits both), drops the file's page cache (direct pairing)
 * or reads it all into the cache (default pairing), and for each
 * metric runs a warm-up (which also calibrates the request count) and then a timed run of about
 * --seconds. The table shows the median of --repeat runs.
 *
 * Client: `qemu-img bench` (libiscsi through qemu's iscsi driver) for everything, because it does
 * reads and writes at a chosen queue depth and request size. It has no random mode: requests go
 * at offset += step (mod image size), so "random" 4K uses a step of 7919 × 4 KiB (a prime number
 * of blocks, coprime with the 2^n-block image: a full permutation that jumps ~31 MiB each time,
 * defeating readahead and merging). `rr4k-perf` cross-checks reads with libiscsi's `iscsi-perf -r`
 * (truly random LBAs, time-bounded; it can only read). Latency is the mean of a QD1 run
 * (qemu-img bench gives only total time; no percentiles available from either tool).
 *
 * Pairings: `direct` = tgtd --bsoflags direct vs lunar direct: true, cache: false (O_DIRECT, no
 * cache on either side); `default` = each one's default (tgtd through the page cache, filled by
 * reading the file first; lunar's default config: O_DIRECT under its read block cache, filled by
 * one sequential read of the LUN).
 */
import { mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { type RunningTarget, run, startLunar, startTgtd } from './iscsi-procs.js';

type MetricId = 'rr4k' | 'rw4k' | 'sr1m' | 'sw1m' | 'lat4k' | 'rr4k-perf';

interface MetricDef {
  id: MetricId;
  title: string;
  unit: string;
  /** true: higher is better (IOPS, MiB/s); false: lower is better (latency). */
  higher: boolean;
}

const METRICS: readonly MetricDef[] = [
  { id: 'rr4k', title: '4K QD32 random read', unit: 'IOPS', higher: true },
  { id: 'rw4k', title: '4K QD32 random write', unit: 'IOPS', higher: true },
  { id: 'sr1m', title: '1M QD8 seq read', unit: 'MiB/s', higher: true },
  { id: 'sw1m', title: '1M QD8 seq write', unit: 'MiB/s', higher: true },
  { id: 'lat4k', title: '4K QD1 read latency (mean)', unit: 'us', higher: false },
  { id: 'rr4k-perf', title: '4K QD32 rand read (iscsi-perf)', unit: 'IOPS', higher: true },
];

const STRIDE = 4096 * 7919;

interface QemuBench {
  size: number;
  depth: number;
  step: number;
  write: boolean;
}

const QB: Record<Exclude<MetricId, 'rr4k-perf'>, QemuBench> = {
  rr4k: { size: 4096, depth: 32, step: STRIDE, write: false },
  rw4k: { size: 4096, depth: 32, step: STRIDE, write: true },
  sr1m: { size: 1 << 20, depth: 8, step: 1 << 20, write: false },
  sw1m: { size: 1 << 20, depth: 8, step: 1 << 20, write: true },
  lat4k: { size: 4096, depth: 1, step: STRIDE, write: false },
};

async function qemuBench(url: string, b: QemuBench, count: number): Promise<number> {
  const args = ['bench', '-f', 'raw', '-t', 'none', '-c', String(count), '-d', String(b.depth)];
  args.push('-s', String(b.size), '-S', String(b.step));
  if (b.write) args.push('-w');
  args.push(url);
  const r = await run('qemu-img', args, { timeoutMs: 300_000 });
  const m = /Run completed in ([\d.]+) seconds/.exec(r.stdout);
  if (!m?.[1]) throw new Error(`qemu-img bench: no result in:\n${r.stdout}\n${r.stderr}`);
  return Math.max(Number(m[1]), 1e-6);
}

/** Metric value of a qemu-img bench run of `count` requests in `secs`. */
function metricValue(id: MetricId, b: QemuBench, count: number, secs: number): number {
  if (id === 'lat4k') return (secs / count) * 1e6;
  if (b.size >= 1 << 20) return (count * b.size) / (1 << 20) / secs;
  return count / secs;
}

async function iscsiPerf(url: string, seconds: number): Promise<number> {
  const r = await run('iscsi-perf', ['-m', '32', '-b', '8', '-r', '-t', String(seconds), url], {
    timeoutMs: (seconds + 60) * 1000,
    allowFail: true,
  });
  const text = (r.stdout + r.stderr).replace(/\r/g, '\n');
  const all = [...text.matchAll(/^iops average (\d+)/gm)];
  const last = all[all.length - 1];
  if (!last?.[1]) throw new Error(`iscsi-perf: no result (exit ${r.code}):\n${text.slice(-2000)}`);
  return Number(last[1]);
}

/** Warm up ~warmSecs (doubling the count until it takes that long), return requests/second. */
async function warmup(url: string, b: QemuBench, warmSecs: number, guess: number): Promise<number> {
  let count = Math.max(guess, 8);
  for (let i = 0; i < 8; i++) {
    const t = await qemuBench(url, b, count);
    const rate = count / t;
    if (t >= warmSecs * 0.7) return rate;
    count = Math.max(count * 2, Math.ceil(rate * warmSecs));
  }
  return count;
}

/** CPU seconds (user + system, all threads) the process has used so far. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 (utime, stime) are at index 11 and 12 after "pid (comm) ".
    return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return Number.NaN;
  }
}

/** The metric's value, and the target's CPU time per request during the timed run (µs). */
async function measure(
  t: RunningTarget,
  id: MetricId,
  seconds: number,
  rateHint: Map<string, number>,
): Promise<{ value: number; cpuUs: number }> {
  if (id === 'rr4k-perf') {
    await iscsiPerf(t.url, 1); // warm-up
    const c0 = cpuSeconds(t.pid);
    const iops = await iscsiPerf(t.url, seconds);
    return { value: iops, cpuUs: ((cpuSeconds(t.pid) - c0) / (iops * seconds)) * 1e6 };
  }
  const b = QB[id];
  const key = `${t.kind}:${id}`;
  const guess = Math.ceil((rateHint.get(key) ?? (b.size >= 1 << 20 ? 100 : 2000)) * 1);
  const rate = await warmup(t.url, b, Math.min(1.5, Math.max(0.5, seconds / 4)), guess);
  rateHint.set(key, rate);
  const count = Math.max(16, Math.ceil(rate * seconds));
  const c0 = cpuSeconds(t.pid);
  const secs = await qemuBench(t.url, b, count);
  return { value: metricValue(id, b, count, secs), cpuUs: ((cpuSeconds(t.pid) - c0) / count) * 1e6 };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return Number.NaN;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

function parseSize(s: string): number {
  const m = /^(\d+)([KMGT]?)(?:i?B)?$/i.exec(s.trim());
  if (!m?.[1]) throw new Error(`bad size ${s}`);
  const mult = { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30, T: 2 ** 40 }[(m[2] ?? '').toUpperCase()] ?? 1;
  return Number(m[1]) * mult;
}

export interface IscsiBenchRow {
  pairing: 'direct' | 'default';
  metric: MetricId;
  title: string;
  unit: string;
  higherIsBetter: boolean;
  lunar: { runs: number[]; median: number; best: number };
  tgtd: { runs: number[]; median: number; best: number };
  /** Of the medians. ≥ 1 means lunar is at least as good: lunar/tgtd for throughput, tgtd/lunar for latency. */
  ratio: number;
  /** Same, of the best runs (max for throughput, min for latency). */
  ratioBest: number;
  /**
   * Median CPU time (user + system, all threads) each target spent per request during the timed
   * runs, in µs (per MiB for the 1M metrics). Much less disturbed by other load than throughput.
   */
  cpuUsPerRequest: { lunar: number; tgtd: number };
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return '-';
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export async function runIscsiBench(argv: string[]): Promise<void> {
  const { values: o } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      seconds: { type: 'string', default: '5' },
      repeat: { type: 'string', default: '3' },
      size: { type: 'string', default: '1G' },
      dir: { type: 'string' },
      json: { type: 'string' },
      pairings: { type: 'string', default: 'direct,default' },
      metrics: { type: 'string', default: METRICS.map((m) => m.id).join(',') },
      port: { type: 'string', default: '3350' },
      'busy-poll': { type: 'string' },
      'lunar-cmd': { type: 'string' },
      'keep-file': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (o.help) {
    process.stdout.write(
      'usage: iscsi bench [--seconds 5] [--repeat 3] [--size 1G] [--dir DIR] [--json out.json]\n' +
        '  [--pairings direct,default] [--metrics rr4k,rw4k,sr1m,sw1m,lat4k,rr4k-perf] [--port 3350]\n' +
        "  [--busy-poll US (lunar's busyPoll; default: its default)]\n" +
        '  [--lunar-cmd tgtd|"CMD ARGS"]  (env LUNAR_BENCH_LUNAR_CMD: same; "tgtd" puts tgtd in both slots)\n',
    );
    return;
  }
  const seconds = Number(o.seconds);
  const repeat = Math.max(1, Number(o.repeat));
  const size = parseSize(o.size);
  if (size % (1 << 20) !== 0) throw new Error('--size must be a whole number of MiB');
  const port = Number(o.port);
  const pairings = o.pairings.split(',').map((p) => p.trim()) as ('direct' | 'default')[];
  for (const p of pairings) if (p !== 'direct' && p !== 'default') throw new Error(`unknown pairing ${p}`);
  const metrics = o.metrics.split(',').map((id) => {
    const m = METRICS.find((x) => x.id === id.trim());
    if (!m) throw new Error(`unknown metric ${id} (known: ${METRICS.map((x) => x.id).join(', ')})`);
    return m;
  });
  const lunarCmd = o['lunar-cmd'] ?? process.env['LUNAR_BENCH_LUNAR_CMD'];
  const lunarIsTgtd = lunarCmd === 'tgtd';
  const busyPoll = o['busy-poll'] === undefined ? undefined : Number(o['busy-poll']);
  if (busyPoll !== undefined && !(Number.isInteger(busyPoll) && busyPoll >= 0))
    throw new Error(`--busy-poll ${o['busy-poll']}: not a whole number of µs`);

  const dir = resolve(o.dir ?? mkdtempSync(join(tmpdir(), 'lunar-bench-')));
  const fsType = statfsSync(dir).type;
  if (fsType === 0x01021994) process.stderr.write(`warning: ${dir} is tmpfs; use --dir on a real disk\n`);
  const file = join(dir, 'backing.img');
  const iqnT = 'iqn.2026-11.io.lunar.bench:tgtd';
  const iqnL = 'iqn.2026-11.io.lunar.bench:lunar';
  const running = new Set<RunningTarget>();
  const cleanup = async () => {
    for (const t of running) await t.stop();
    running.clear();
  };
  const onSig = () => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);

  const rows: IscsiBenchRow[] = [];
  const started = Date.now();
  const loadStart = loadavg()[0] ?? 0;
  try {
    process.stderr.write(`writing ${size >> 20} MiB backing file ${file}\n`);
    await run('dd', [
      'if=/dev/zero',
      `of=${file}`,
      'bs=1M',
      `count=${size >> 20}`,
      'oflag=direct',
      'conv=fsync',
      'status=none',
    ]);
    const dropCache = () =>
      run(
        'dd',
        ['if=/dev/null', `of=${file}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0', 'status=none'],
        {
          allowFail: true,
        },
      );

    const syncFile = () =>
      run('dd', ['if=/dev/null', `of=${file}`, 'conv=notrunc,fdatasync', 'count=0', 'status=none'], {
        allowFail: true,
      });

    for (const pairing of pairings) {
      const direct = pairing === 'direct';
      const res = new Map<string, number[]>();
      const hint = new Map<string, number>();
      for (let rep = 0; rep < repeat; rep++) {
        for (const slot of ['tgtd', 'lunar'] as const) {
          // Same start for both slots: O_DIRECT runs start with the file out of the page cache;
          // page-cache runs with all of it cached (the steady state of a 1 GiB file on this box).
          if (direct) await dropCache();
          else await run('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'status=none']);
          let t: RunningTarget;
          if (slot === 'tgtd' || lunarIsTgtd) {
            const p = slot === 'tgtd' ? port : port + 1;
            t = await startTgtd({ iqn: slot === 'tgtd' ? iqnT : iqnL, port: p, file, direct });
          } else {
            t = await startLunar({
              dir: join(dir, 'lunar'),
              iqn: iqnL,
              ports: [port + 1],
              luns: [
                {
                  lun: 0,
                  backstore: 'file',
                  path: file,
                  size: size,
                  // direct: O_DIRECT and nothing else, as tgtd --bsoflags direct; default: lunar's
                  // defaults, i.e. O_DIRECT under its read block cache.
                  ...(direct ? { direct: true, cache: false } : {}),
                },
              ],
              ...(busyPoll !== undefined ? { busyPoll } : {}),
              ...(lunarCmd && !lunarIsTgtd ? { cmd: lunarCmd.split(/\s+/).filter(Boolean) } : {}),
            });
          }
          running.add(t);
          try {
            // Page-cache runs start with the whole file cached; lunar's counterpart is its block
            // cache, filled the way a first reader fills it: one sequential pass over the LUN.
            if (!direct && slot === 'lunar' && !lunarIsTgtd)
              await qemuBench(t.url, { size: 1 << 20, depth: 8, step: 1 << 20, write: false }, size >> 20);
            for (const m of metrics) {
              const { value: v, cpuUs } = await measure(t, m.id, seconds, hint);
              // Flush what a write metric left dirty (page-cache pairing) so it does not slow the next.
              if (m.id === 'rw4k' || m.id === 'sw1m') await syncFile();
              const key = `${slot}:${m.id}`;
              res.set(key, [...(res.get(key) ?? []), v]);
              res.set(`cpu:${key}`, [...(res.get(`cpu:${key}`) ?? []), cpuUs]);
              process.stderr.write(
                `[${pairing} rep ${rep + 1}/${repeat}] ${slot.padEnd(5)} ${m.title.padEnd(32)} ${fmt(v)} ${m.unit}` +
                  ` (target CPU ${fmt(cpuUs)} us/req)\n`,
              );
            }
          } finally {
            await t.stop();
            running.delete(t);
          }
        }
      }
      for (const m of metrics) {
        const l = res.get(`lunar:${m.id}`) ?? [];
        const g = res.get(`tgtd:${m.id}`) ?? [];
        const lm = median(l);
        const gm = median(g);
        const best = (xs: number[]) => (m.higher ? Math.max(...xs) : Math.min(...xs));
        const lb = best(l);
        const gb = best(g);
        rows.push({
          pairing,
          metric: m.id,
          title: m.title,
          unit: m.unit,
          higherIsBetter: m.higher,
          lunar: { runs: l, median: lm, best: lb },
          tgtd: { runs: g, median: gm, best: gb },
          ratio: m.higher ? lm / gm : gm / lm,
          ratioBest: m.higher ? lb / gb : gb / lb,
          cpuUsPerRequest: {
            lunar: median(res.get(`cpu:lunar:${m.id}`) ?? []),
            tgtd: median(res.get(`cpu:tgtd:${m.id}`) ?? []),
          },
        });
      }
    }
  } finally {
    await cleanup();
    process.removeListener('SIGINT', onSig);
    process.removeListener('SIGTERM', onSig);
    if (!o['keep-file']) rmSync(dir, { recursive: true, force: true });
  }

  const slotName = lunarIsTgtd ? 'tgtd#2' : lunarCmd ? 'lunar*' : 'lunar';
  const w = (x: string, n: number) => x.padStart(n);
  const header =
    `${'pairing'.padEnd(8)} ${'metric'.padEnd(32)} ${'unit'.padEnd(6)}` +
    ` ${w(slotName, 9)} ${w('tgtd', 9)} ${w('ratio', 6)}  |  ${w(`${slotName} best`, 12)} ${w('tgtd best', 10)} ${w('ratio', 6)}`;
  const lines = [header, '-'.repeat(header.length)];
  for (const r of rows) {
    lines.push(
      `${r.pairing.padEnd(8)} ${r.title.padEnd(32)} ${r.unit.padEnd(6)}` +
        ` ${w(fmt(r.lunar.median), 9)} ${w(fmt(r.tgtd.median), 9)} ${w(r.ratio.toFixed(2), 6)}` +
        `  |  ${w(fmt(r.lunar.best), 12)} ${w(fmt(r.tgtd.best), 10)} ${w(r.ratioBest.toFixed(2), 6)}`,
    );
  }
  lines.push(
    '',
    `target CPU per request (median µs, user+system, all threads; per MiB for 1M) — lower is better`,
    `${'pairing'.padEnd(8)} ${'metric'.padEnd(32)} ${w(slotName, 9)} ${w('tgtd', 9)} ${w('tgtd/' + slotName, 12)}`,
  );
  for (const r of rows) {
    const c = r.cpuUsPerRequest;
    lines.push(
      `${r.pairing.padEnd(8)} ${r.title.padEnd(32)} ${w(fmt(c.lunar), 9)} ${w(fmt(c.tgtd), 9)} ${w((c.tgtd / c.lunar).toFixed(2), 12)}`,
    );
  }
  const worst = Math.min(...rows.map((r) => r.ratio));
  const worstBest = Math.min(...rows.map((r) => r.ratioBest));
  lines.push(
    '',
    `left: median of ${repeat} runs of ~${seconds}s; right: best of ${repeat}. ratio ≥ 1 means ${slotName} at least as good (lunar/tgtd; tgtd/lunar for latency)`,
    `lowest ratio: median ${worst.toFixed(2)}, best-of ${worstBest.toFixed(2)}; ${((Date.now() - started) / 1000).toFixed(0)} s`,
    `1-min load average ${loadStart.toFixed(1)} at start, ${(loadavg()[0] ?? 0).toFixed(1)} at end (2 cores: above ~1 the figures are disturbed by other work)`,
  );
  process.stdout.write(lines.join('\n') + '\n');
  if (o.json) {
    writeFileSync(
      o.json,
      JSON.stringify(
        {
          when: new Date().toISOString(),
          lunarSlot: slotName,
          seconds,
          repeat,
          size,
          loadavg: { start: loadStart, end: loadavg()[0] ?? 0 },
          client: 'qemu-img bench (-t none, stride 7919 blocks for 4K) + iscsi-perf -r',
          rows,
        },
        null,
        1,
      ),
    );
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  runIscsiBench(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
