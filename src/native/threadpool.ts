/**
 * libuv thread-pool sizing. Every native file request occupies one pool thread while it blocks in
 * pread/pwrite, so a queue depth of 32 needs at least 32 threads (libuv's default is 4, shared
 * with fs, dns.lookup, zlib and crypto).
 *
 * libuv reads UV_THREADPOOL_SIZE once, when the pool first starts, and on Node 20 the ES-module
 * loader starts it (async fs reads of the entry file) BEFORE any line of an ESM entry point runs:
 * setting process.env in an .mjs/ESM entry is too late (measured: the process keeps 4 workers).
 * Ways that work, in order of preference (docs/native.md):
 *   1. the environment of the process: `UV_THREADPOOL_SIZE=64 node …` (systemd unit, npm script);
 *   2. a CommonJS preload or shim that sets it and then import()s the ESM code (`node -r x.cjs`),
 *      where ensureThreadPoolSize() is effective;
 *   3. relaunchWithThreadPoolSize(): an ESM entry re-executes itself once with the variable set
 *      (what bench/run.ts does; fine for tools, not for a daemon under a supervisor).
 */
import { spawnSync } from 'node:child_process';

/** The pool size lunar's entry points ask for (QD32 of disk I/O plus headroom for fs/crypto/zlib). */
export const LUNAR_THREADPOOL_SIZE = 64;

/** libuv's hard maximum for UV_THREADPOOL_SIZE. */
export const UV_THREADPOOL_MAX = 1024;

function configured(): number | null {
  const n = Number.parseInt(process.env['UV_THREADPOOL_SIZE'] ?? '', 10);
  return Number.isInteger(n) && n > 0 ? n : null;
}

function clamp(size: number): number {
  return Math.max(1, Math.min(UV_THREADPOOL_MAX, Math.floor(size)));
}

/**
 * Sets `UV_THREADPOOL_SIZE` to `size` unless the user already set it, and returns the value now
 * in the environment. Only effective before the pool's first use (CommonJS preload/shim, or for
 * child processes this one spawns).
 */
export function ensureThreadPoolSize(size: number = LUNAR_THREADPOOL_SIZE): number {
  const current = configured();
  if (current !== null) return current;
  const n = clamp(size);
  process.env['UV_THREADPOOL_SIZE'] = String(n);
  return n;
}

/**
 * For ESM entry points: when UV_THREADPOOL_SIZE is not set, runs this same command again as a child
 * with it set (stdio inherited) and returns the child's exit code; the caller then exits with it.
 * Returns null when the variable was already set (the pool has the asked size: carry on).
 */
export function relaunchWithThreadPoolSize(size: number = LUNAR_THREADPOOL_SIZE): number | null {
  if (configured() !== null) return null;
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, UV_THREADPOOL_SIZE: String(clamp(size)) },
  });
  if (r.error !== undefined) throw r.error;
  if (r.signal !== null) return 128 + (signalNumber(r.signal) ?? 1);
  return r.status ?? 1;
}

function signalNumber(sig: NodeJS.Signals): number | undefined {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };
  return table[sig];
}
