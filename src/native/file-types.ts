/** Block-file I/O contract shared by the native handle and its node:fs twin. */

export interface BlockFileOptions {
  /** Open O_RDONLY (writes, truncate and punch fail with code 'EBADF'). */
  readonly readOnly?: boolean;
  /** Ask for O_DIRECT; when the filesystem refuses it the file opens buffered and says so (`direct: false`). */
  readonly direct?: boolean;
  /** Create the file when missing (ignored with readOnly). */
  readonly create?: boolean;
  /** Permission bits for a created file (default 0o644). */
  readonly mode?: number;
  /**
   * Native I/O engine: 'auto' (default: io_uring when available and LUNAR_IO_ENGINE is not
   * 'threadpool'), 'io_uring' (falls back to the pool when unavailable) or 'threadpool'.
   */
  readonly engine?: 'auto' | 'io_uring' | 'threadpool';
}

/**
 * An open file or block device. Offsets and lengths are bytes. With `direct`, every buffer address
 * must be a multiple of `memAlign` and every offset and length a multiple of `offsetAlign`
 * (otherwise: code 'EINVAL_ALIGN'); buffers from allocAligned() always satisfy the address rule.
 * Errors are Error objects with a `code` ('EBADF', 'ENOENT', 'EINVAL_ALIGN', 'ERR_OUT_OF_RANGE',
 * 'ERR_INVALID_ARG_TYPE', or the OS errno name); every method returns a Promise and never throws.
 */
export interface BlockFile {
  readonly path: string;
  /** Whether I/O bypasses the page cache (O_DIRECT in use). */
  readonly direct: boolean;
  /** Why O_DIRECT is not in use although it was asked for ('' otherwise). */
  readonly directNote: string;
  readonly readOnly: boolean;
  readonly blockDevice: boolean;
  readonly memAlign: number;
  readonly offsetAlign: number;
  readonly closed: boolean;
  /** True for the native implementation, false for the node:fs twin. */
  readonly native: boolean;
  /** Who performs the I/O: 'io_uring', 'threadpool' (native) or 'node:fs' (fallback). */
  readonly engine: 'io_uring' | 'threadpool' | 'node:fs';
  /** Reads into `buffer` at byte `offset`; resolves the byte count (short only at end of file). */
  read(buffer: Uint8Array, offset: number): Promise<number>;
  /**
   * Writes all of `buffer` at byte `offset`; resolves the byte count. With `dsync` the data is on
   * stable storage when it resolves (pwritev2 RWF_DSYNC, else write + fdatasync).
   */
  write(buffer: Uint8Array, offset: number, dsync?: boolean): Promise<number>;
  /** Vectored read (preadv) into consecutive buffers. */
  readv(buffers: readonly Uint8Array[], offset: number): Promise<number>;
  /** Vectored write (pwritev) from consecutive buffers. */
  writev(buffers: readonly Uint8Array[], offset: number, dsync?: boolean): Promise<number>;
  datasync(): Promise<void>;
  sync(): Promise<void>;
  /** Deallocates the range, keeping the size; code 'EOPNOTSUPP' when the filesystem cannot. */
  punchHole(offset: number, length: number): Promise<void>;
  /** Allocates the range (fallocate mode 0; extends the size when past the end). */
  allocate(offset: number, length: number): Promise<void>;
  /** Size in bytes (BLKGETSIZE64 for block devices). */
  size(): Promise<number>;
  truncate(size: number): Promise<void>;
  /** Offset of the first data at or after `offset`, or -1 when there is none (SEEK_DATA). */
  seekData(offset: number): Promise<number>;
  /** Offset of the first hole at or after `offset` (end of file counts), or -1 past the end (SEEK_HOLE). */
  seekHole(offset: number): Promise<number>;
  /** Waits for requests in flight, then closes. Closing twice is harmless. */
  close(): Promise<void>;
}

/** An Error with a `code`, the shape every native and fallback failure has. */
export interface CodedError extends Error {
  code: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

export function codedError(code: string, message: string, ctor: ErrorConstructor = Error): CodedError {
  const e = new ctor(message) as CodedError;
  e.code = code;
  return e;
}
