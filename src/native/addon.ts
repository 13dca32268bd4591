/**
 * Loader for the native addon (build/Release/lunar_native.node, built by `npm run native:rebuild`).
 * `LUNAR_NO_NATIVE=1` forces the pure-TS fallbacks; `LUNAR_NATIVE_PATH` points at another build.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BlockFile } from './file-types.js';

/** ABI of the addon this TypeScript expects (native/addon.cc exports the same number). */
const EXPECTED_ABI = 2;

export interface NativePoolStats {
  /** Bytes in Buffers handed out and not yet collected (what is reported to V8 as external). */
  readonly liveBytes: number;
  readonly liveBuffers: number;
  /** Bytes parked in the freelists, bounded by idleCap. */
  readonly idleBytes: number;
  readonly idleCap: number;
  readonly hits: number;
  readonly misses: number;
  readonly releases: number;
  readonly frees: number;
}

/**
 * The native FileHandle (native/file.cc): the BlockFile contract (file-types.ts) plus its fd and
 * in-flight count. Argument errors throw synchronously here; the facade turns them into rejections.
 */
export interface NativeFileHandle extends Omit<BlockFile, 'native' | 'engine'> {
  readonly fd: number;
  readonly inflight: number;
  /** How reads/writes/fdatasync run: io_uring from the event loop, or libuv's thread pool. */
  readonly engine: 'io_uring' | 'threadpool';
  /** On tmpfs / ramfs (memory itself): small transfers run inline, see `inlineMax`. */
  readonly memoryBacked: boolean;
  /**
   * Memory-backed files: reads and writes up to this many bytes (and fdatasync) run on the calling
   * thread while nothing else of the handle is in flight, settling an already-settled promise; 0 on
   * other files. LUNAR_MEMFILE_INLINE_MAX (bytes) overrides the default of 1 MiB at open.
   */
  readonly inlineMax: number;
  /**
   * Memory-backed files: inline transfers copy through a shared mapping of the file (a memcpy
   * instead of the page cache's per-page write path), made at the first inline transfer over the
   * file's size then; false before that, when LUNAR_MEMFILE_MMAP=0, or once a fault (the file
   * shrank, tmpfs full) made the handle fall back to pread/pwrite.
   */
  readonly mapped: boolean;
}

/** 'auto' = io_uring when the kernel allows it (unless LUNAR_IO_ENGINE=threadpool), else the pool. */
export type IoEngineChoice = 'auto' | 'io_uring' | 'threadpool';

export interface NativeAddon {
  readonly abiVersion: number;
  readonly crc32cHardware: boolean;
  readonly alignment: number;
  crc32c(data: Uint8Array, seed: number): number;
  crc32cTable(data: Uint8Array, seed: number): number;
  allocAligned(size: number, zero: boolean): Buffer;
  isAligned(buffer: Uint8Array, alignment: number): boolean;
  poolStats(): NativePoolStats;
  submitHold(on: boolean): void;
  setPoolIdleCap(bytes: number): void;
  open(
    path: string,
    readOnly: boolean,
    direct: boolean,
    create: boolean,
    mode: number,
    engine: IoEngineChoice,
  ): Promise<NativeFileHandle>;
}

function candidates(): string[] {
  const override = process.env['LUNAR_NATIVE_PATH'];
  if (override) return [override];
  // src/native/ (tests, tsx) and dist/src/native/ (built): look upwards for build/Release.
  const out: string[] = [];
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    out.push(join(dir, 'build', 'Release', 'lunar_native.node'));
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return out;
}

function load(): { addon: NativeAddon | null; error: string | null } {
  if (process.env['LUNAR_NO_NATIVE'] === '1') return { addon: null, error: 'disabled by LUNAR_NO_NATIVE=1' };
  const require = createRequire(import.meta.url);
  const paths = candidates();
  const path = paths.find((p) => existsSync(p));
  if (path === undefined) {
    return { addon: null, error: `not built (looked for ${paths.join(', ')}); run npm run native:rebuild` };
  }
  try {
    const addon = require(path) as NativeAddon;
    if (addon.abiVersion !== EXPECTED_ABI) {
      return {
        addon: null,
        error: `${path} has ABI ${String(addon.abiVersion)}, expected ${EXPECTED_ABI}; run npm run native:rebuild`,
      };
    }
    return { addon, error: null };
  } catch (e) {
    return { addon: null, error: `failed to load ${path}: ${e instanceof Error ? e.message : String(e)}` };
  }
}

const loaded = load();

/** The addon, or null when the pure-TS fallbacks are in use. */
export const addon: NativeAddon | null = loaded.addon;
/** Whether the native addon is in use. */
export const nativeLoaded: boolean = loaded.addon !== null;
/** Why the addon is not in use (null when it is). */
export const nativeLoadError: string | null = loaded.error;
