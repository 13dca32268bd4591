/**
 * lunar's native facade. Every function has a pure-TS twin (exported under `fallback`, also the
 * test oracle); the native addon (build/Release/lunar_native.node) is used when it loads.
 *
 * Entry points must size the libuv thread pool for QD32 before Node starts it (see threadpool.ts).
 */
import { addon, type NativePoolStats } from './addon.js';
import { crc32cTable } from './crc32c-table.js';
import { openFallbackFile } from './fallback-file.js';
import { openBlockFile, openNativeFile } from './file.js';
import { codedError } from './file-types.js';

export { type NativePoolStats, nativeLoadError, nativeLoaded } from './addon.js';
export type { BlockFile, BlockFileOptions, CodedError } from './file-types.js';
export {
  ensureThreadPoolSize,
  LUNAR_THREADPOOL_SIZE,
  relaunchWithThreadPoolSize,
  UV_THREADPOOL_MAX,
} from './threadpool.js';
export { openBlockFile, openNativeFile };

/**
 * iSCSI CRC32C (Castagnoli, reflected, init/final-xor 0xFFFFFFFF) of `data`.
 * `seed` is a previous result: `crc32c(b, crc32c(a)) === crc32c(concat(a, b))`.
 * Returns an unsigned 32-bit number.
 */
export const crc32c: (data: Uint8Array, seed?: number) => number =
  addon !== null
    ? (() => {
        const native = addon;
        return (data: Uint8Array, seed = 0): number => native.crc32c(data, seed >>> 0);
      })()
    : crc32cTable;

/** Whether crc32c() uses the CPU's crc32 instruction (SSE4.2). */
export const crc32cHardware: boolean = addon?.crc32cHardware ?? false;

/** Address alignment of allocAligned() buffers when native (4096); the fallback gives plain Buffers. */
export const ALIGNMENT = 4096;

/** Whether allocAligned() really returns 4096-byte-aligned memory (native addon loaded). */
export const alignedAllocation: boolean = addon !== null;

function checkSize(size: number): void {
  if (typeof size !== 'number') throw codedError('ERR_INVALID_ARG_TYPE', 'size must be a number', TypeError);
  if (!Number.isSafeInteger(size) || size < 0 || size > 2 ** 32) {
    throw codedError('ERR_OUT_OF_RANGE', `size must be an integer in [0, 2^32] (got ${size})`);
  }
}

function allocPlain(size: number, zero = true): Buffer {
  checkSize(size);
  return zero ? Buffer.alloc(size) : Buffer.allocUnsafe(size);
}

/**
 * A Buffer of `size` bytes whose memory is 4096-byte aligned (O_DIRECT-ready), from a pool that
 * takes it back when the Buffer is collected. `zero: false` skips zero-filling (the caller
 * overwrites it all). Without the addon: a plain Buffer.
 */
export function allocAligned(size: number, opts: { readonly zero?: boolean } = {}): Buffer {
  const zero = opts.zero !== false;
  if (addon === null) return allocPlain(size, zero);
  return addon.allocAligned(size, zero);
}

/**
 * Whether `buffer` starts at a multiple of `alignment` (a power of two) in memory. Without the
 * addon addresses are unknown: true only for alignment 1.
 */
export function isAligned(buffer: Uint8Array, alignment: number): boolean {
  if (addon === null) return alignment === 1;
  return addon.isAligned(buffer, alignment);
}

/** Pool statistics (null without the addon). */
export function alignedPoolStats(): NativePoolStats | null {
  return addon?.poolStats() ?? null;
}

/** Bounds the memory the aligned pool keeps idle (default 32 MiB); trims at once. */
export function setAlignedPoolIdleCap(bytes: number): void {
  if (addon !== null) addon.setPoolIdleCap(bytes);
}

/** The pure-TS twins: fallbacks and test oracles. */
export const fallback = {
  crc32c: crc32cTable,
  allocAligned: (size: number, opts: { readonly zero?: boolean } = {}): Buffer =>
    allocPlain(size, opts.zero !== false),
  openBlockFile: openFallbackFile,
  isAligned: (_buffer: Uint8Array, alignment: number): boolean => alignment === 1,
} as const;

/**
 * Holds (true) or releases (false) io_uring submissions of this thread's ring: while held, reads
 * and writes queue their SQEs, and the last release submits them in one io_uring_enter (one
 * device kick for the batch). Holds nest; without the addon or a ring, nothing happens.
 */
export function submitHold(on: boolean): void {
  addon?.submitHold(on);
}
