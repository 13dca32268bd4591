/**
 * Bench entry: `npm run build && npm run bench -- <name> [options]`.
 *
 *   crc            CRC32C GB/s, native vs pure-TS (benchmark.js)
 *   backstore      file backstore vs fio, same file and patterns (--file --seconds --size --engine)
 *   backstore-mem  60 s QD32 random I/O sampling RSS/heap/external (--seconds --every --file --size)
 *   iscsi          lunar vs tgtd through libiscsi (see bench/iscsi.ts)
 *   repl           replication: local-only vs protocol A/B/C, resync vs fio (see bench/repl.ts)
 */
import { relaunchWithThreadPoolSize } from '../src/native/threadpool.js';

const BENCHES: Record<string, (argv: string[]) => Promise<void>> = {
  crc: async (argv) => (await import('./crc.js')).runCrcBench(argv),
  backstore: async (argv) => (await import('./backstore.js')).runBackstoreBench(argv),
  'backstore-mem': async (argv) => (await import('./backstore.js')).runBackstoreMemBench(argv),
  iscsi: async (argv) => (await import('./iscsi.js')).runIscsiBench(argv),
  repl: async (argv) => (await import('./repl.js')).runReplBench(argv),
};

async function main(): Promise<number> {
  const [name, ...rest] = process.argv.slice(2);
  const bench = name === undefined ? undefined : BENCHES[name];
  if (bench === undefined) {
    console.error(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}> [options]`);
    return 2;
  }
  await bench(rest);
  return 0;
}

// Node's ESM loader has already started the libuv pool (4 threads) by now: a bench at QD32 needs
// UV_THREADPOOL_SIZE in the environment, so run again with it set when it is missing.
const relaunched = relaunchWithThreadPoolSize();
process.exitCode = relaunched ?? (await main());
