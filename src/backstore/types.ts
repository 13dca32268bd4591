/**
 * The block-device contract every layer above (SCSI, replication) talks to.
 *
 * Addresses are in logical blocks of `blockSize` bytes; counts and LBAs are JS numbers (exact up
 * to 2^53 bytes, i.e. 8 PiB). Every method validates its arguments and rejects with a
 * {@link BackstoreError} whose `code` says what went wrong; none of them throws synchronously.
 * Any number of requests may be in flight at once; a backstore never reorders a request's own
 * bytes, but the caller orders overlapping requests (the SCSI layer and replication do).
 */
export interface Backstore {
  /** 'file' | 'memory' | 'null' | 'replicated' … */
  readonly kind: string;
  /** Human-readable origin (path, 'memory', …) for status output. */
  readonly description: string;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly capabilities: BackstoreCapabilities;
  /** Reads `blocks` blocks at `lba`. The returned buffer is the caller's (length = blocks × blockSize). */
  read(lba: number, blocks: number): Promise<Buffer>;
  /**
   * Optional: hands a buffer that `read()` returned back for reuse once the caller is done with
   * it (e.g. the socket has written it). The caller must not touch it afterwards. Buffers this
   * backstore did not hand out, or already got back, are ignored; not calling it is fine (the GC
   * reclaims the buffer), it only saves an allocation and its page faults per large read.
   */
  release?(buffer: Buffer): void;
  /** True when write() keeps no reference to its `data` once it settles (the caller may reuse
   *  the buffer at once). Absent or false: the backstore may still hold it (e.g. a network send). */
  readonly doneWithWriteData?: boolean;
  /** Writes `data` (a whole number of blocks) at `lba`. With `fua`, it is on stable storage when this resolves. */
  write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void>;
  /** Everything written before this call reaches stable storage. */
  flush(): Promise<void>;
  /** Deallocates the range; it reads as zeros afterwards (thin backstores free the space). */
  unmap(lba: number, blocks: number): Promise<void>;
  /** Writes `pattern` (exactly one block) to every block of the range; `null` pattern = zeros (may unmap). */
  writeSame(lba: number, blocks: number, pattern: Buffer | null, opts?: WriteOptions): Promise<void>;
  /** Whether the given block is allocated (for GET LBA STATUS); full-provisioned stores say true. */
  isMapped(lba: number): Promise<boolean>;
  /** Changes the size (grow or shrink) to `blocks` blocks. */
  resize(blocks: number): Promise<void>;
  close(): Promise<void>;
}

export interface WriteOptions {
  /** Force unit access: on stable storage before the promise resolves. */
  readonly fua?: boolean;
}

export interface BackstoreCapabilities {
  /** Reads and writes bypass the page cache (O_DIRECT). */
  readonly directIo: boolean;
  /** Unmapped blocks free space and read as zeros (thin provisioning). */
  readonly thin: boolean;
  /** Writes are refused (opened read-only). */
  readonly readOnly: boolean;
  /** Data survives a process restart. */
  readonly persistent: boolean;
  /** Writes are cached somewhere volatile until flush() (a write-back cache exists). */
  readonly volatileCache: boolean;
}

export const BackstoreErrorCode = {
  OUT_OF_RANGE: 'OUT_OF_RANGE',
  MISALIGNED: 'MISALIGNED',
  READ_ONLY: 'READ_ONLY',
  NOT_FOUND: 'NOT_FOUND',
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  CLOSED: 'CLOSED',
  IO: 'IO',
  NO_SPACE: 'NO_SPACE',
} as const;
export type BackstoreErrorCode = (typeof BackstoreErrorCode)[keyof typeof BackstoreErrorCode];

export class BackstoreError extends Error {
  override readonly name = 'BackstoreError';
  readonly code: BackstoreErrorCode;
  constructor(code: BackstoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
