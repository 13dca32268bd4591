/**
 * CRC32C throughput: native (SSE4.2, 3-way interleaved) vs the pure-TS slice-by-8 table, on 4 KiB,
 * 64 KiB and 1 MiB buffers. Measured with benchmark.js (statistically sampled, ± relative margin of
 * error printed) and cross-checked by a tight timed loop.
 *
 *   npm run bench -- crc [--max-time 1]
 */

import { parseArgs } from 'node:util';
import Benchmark from 'benchmark';
import { crc32c, crc32cHardware, fallback, nativeLoadError, nativeLoaded } from '../src/native/index.js';
import { table } from './common.js';

const SIZES = [4096, 65_536, 1 << 20] as const;

interface Row {
  size: number;
  impl: string;
  gbps: number;
  rme: number;
  loopGbps: number;
}

function timedLoop(fn: (b: Uint8Array) => number, buf: Uint8Array, seconds: number): number {
  let sink = 0;
  let bytes = 0;
  const start = process.hrtime.bigint();
  const limit = BigInt(Math.round(seconds * 1e9));
  let now = start;
  while (now - start < limit) {
    for (let i = 0; i < 16; i++) sink ^= fn(buf);
    bytes += 16 * buf.length;
    now = process.hrtime.bigint();
  }
  if (sink === 0.5) console.log(sink); // keep the result alive
  return bytes / (Number(now - start) / 1e9) / 1e9;
}

function benchOne(
  name: string,
  fn: (b: Uint8Array) => number,
  buf: Uint8Array,
  maxTime: number,
): Promise<Benchmark> {
  return new Promise((resolve, reject) => {
    let sink = 0;
    const b = new Benchmark(
      name,
      () => {
        sink ^= fn(buf);
      },
      {
        maxTime,
        minSamples: 10,
        onComplete: () => {
          if (sink === 0.5) console.log(sink);
          resolve(b);
        },
        onError: (e: unknown) => reject(e),
      },
    );
    b.run({ async: false });
  });
}

export async function runCrcBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { 'max-time': { type: 'string', default: '1' } } });
  const maxTime = Number(values['max-time']);
  console.log(
    `crc32c: native ${nativeLoaded ? `loaded (${crc32cHardware ? 'SSE4.2 crc32 instruction' : 'table, no SSE4.2'})` : `NOT loaded: ${nativeLoadError}`}`,
  );
  const impls: Array<[string, (b: Uint8Array) => number]> = [];
  if (nativeLoaded) impls.push(['native', (b) => crc32c(b)]);
  impls.push(['fallback (TS slice-by-8)', (b) => fallback.crc32c(b)]);

  const rows: Row[] = [];
  for (const size of SIZES) {
    const buf = new Uint8Array(size);
    for (let i = 0; i < size; i++) buf[i] = (i * 2654435761) >>> 24;
    for (const [impl, fn] of impls) {
      const b = await benchOne(`${impl} ${size}`, fn, buf, maxTime);
      const loop = timedLoop(fn, buf, Math.min(1, maxTime));
      rows.push({ size, impl, gbps: (b.hz * size) / 1e9, rme: b.stats.rme, loopGbps: loop });
    }
  }

  const out: string[][] = [
    ['buffer', 'implementation', 'GB/s (benchmark.js)', '± rme', 'GB/s (timed loop)', 'native/fallback'],
  ];
  for (const r of rows) {
    const fb = rows.find((x) => x.size === r.size && x.impl.startsWith('fallback'));
    const ratio = r.impl === 'native' && fb ? `${(r.gbps / fb.gbps).toFixed(1)}×` : '';
    out.push([
      r.size >= 1 << 20 ? `${r.size >> 20} MiB` : `${r.size >> 10} KiB`,
      r.impl,
      r.gbps.toFixed(2),
      `${r.rme.toFixed(1)}%`,
      r.loopGbps.toFixed(2),
      ratio,
    ]);
  }
  console.log(table(out));
  console.log('(GB = 10^9 bytes; benchmark.js figures are the headline, the timed loop is a cross-check)');
}
