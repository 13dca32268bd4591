/**
 * File backstore: a regular file (sparse, created on demand) or a block device, read and written
 * with O_DIRECT through the native addon when the filesystem allows it (else buffered, visible in
 * `capabilities.directIo` and `description`). Callers pass ordinary Buffers: unaligned ones are
 * copied into pooled aligned bounce buffers for O_DIRECT. Reads return an aligned pool Buffer that
 * belongs to the caller.
 */
import { stat } from 'node:fs/promises';
import {
  ALIGNMENT,
  allocAligned,
  type BlockFile,
  type CodedError,
  isAligned,
  openBlockFile,
} from '../native/index.js';
import { AlignedPool } from '../native/aligned-pool.js';
import { BackstoreBase, invalid, VALID_BLOCK_SIZES } from './common.js';
import {
  type Backstore,
  type BackstoreCapabilities,
  BackstoreError,
  BackstoreErrorCode,
  type WriteOptions,
} from './types.js';

export interface FileBackstoreOptions {
  readonly path: string;
  /** Bytes. Required to create the file; an existing smaller file is grown to it (never shrunk). */
  readonly size?: number | undefined;
  /** 512 (default) or 4096. */
  readonly blockSize?: number | undefined;
  readonly readOnly?: boolean | undefined;
  /** O_DIRECT (default true); falls back to buffered I/O when the filesystem refuses it. */
  readonly direct?: boolean | undefined;
  /** Create a missing file (sparse, `size` bytes). Default false. */
  readonly create?: boolean | undefined;
  /** Native I/O engine (default 'auto': io_uring when available, else the libuv thread pool). */
  readonly engine?: 'auto' | 'io_uring' | 'threadpool' | undefined;
}

/** Chunk size of writeSame and zero-filling writes. */
const PATTERN_CHUNK = 1024 * 1024;
/** writeSame chunks in flight at once. */
const PATTERN_DEPTH = 4;

function errorCode(e: unknown): string | undefined {
  return e instanceof Error ? (e as CodedError).code : undefined;
}

export class FileBackstore extends BackstoreBase implements Backstore {
  readonly kind = 'file';
  /** write() is done with its data when it settles (the I/O completed; bounce buffers are ours). */
  readonly doneWithWriteData = true;
  readonly description: string;
  readonly path: string;
  readonly #file: BlockFile;
  readonly #readOnly: boolean;
  readonly #direct: boolean;
  #thin: boolean;
  /** Bounce buffers for unaligned writes (back when the write completes) and read buffers
   *  (back on release()). */
  readonly #pool = new AlignedPool(32 * 1024 * 1024);
  #zeroChunk: Buffer | null = null;
  #patternChunk: { pattern: Buffer; chunk: Buffer } | null = null;

  /** Use {@link openFileBackstore}. */
  constructor(file: BlockFile, blockSize: number, blockCount: number, notes: readonly string[]) {
    super(blockSize, blockCount);
    this.#file = file;
    this.path = file.path;
    this.#readOnly = file.readOnly;
    this.#direct = file.direct;
    this.#thin = file.native && !file.blockDevice;
    const how = `${file.direct ? 'O_DIRECT' : 'buffered'}, ${file.engine}`;
    const extra = notes.filter((n) => n !== '');
    this.description = `file ${file.path} (${how}${file.readOnly ? ', read-only' : ''}${extra.length > 0 ? `; ${extra.join('; ')}` : ''})`;
  }

  get capabilities(): BackstoreCapabilities {
    return {
      directIo: this.#direct,
      thin: this.#thin,
      readOnly: this.#readOnly,
      persistent: true,
      // O_DIRECT bypasses the page cache, not the device's write cache: flush() is always needed.
      volatileCache: true,
    };
  }

  async read(lba: number, blocks: number): Promise<Buffer> {
    this.checkOpen('read');
    const { offset, length } = this.checkRange('read', lba, blocks);
    if (length === 0) return Buffer.alloc(0);
    // Read buffers come from the pool and go back on release() (the iSCSI layer releases them
    // once the socket has written them; a caller that keeps one leaves it to the GC).
    const buf = this.#pool.lend(length);
    let n: number;
    try {
      n = await this.#file.read(buf, offset);
    } catch (e) {
      this.#pool.takeBack(buf);
      throw this.#mapError(e, 'read');
    }
    if (n < length) buf.fill(0, n); // the file shrank underneath us: the rest reads as zeros
    return buf;
  }

  release(buffer: Buffer): void {
    this.#pool.takeBack(buffer);
  }

  async write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    this.checkOpen('write');
    this.checkWritable('write', this.#readOnly);
    const blocks = this.checkData('write', data);
    const { offset, length } = this.checkRange('write', lba, blocks);
    const fua = opts?.fua === true;
    if (length === 0) {
      if (fua) await this.#sync('write');
      return;
    }
    if (!this.#direct || isAligned(data, this.#file.memAlign)) {
      try {
        await this.#file.write(data, offset, fua);
      } catch (e) {
        throw this.#mapError(e, 'write');
      }
      return;
    }
    const bounce = this.#pool.take(length);
    data.copy(bounce, 0, 0, length);
    try {
      await this.#file.write(bounce.length === length ? bounce : bounce.subarray(0, length), offset, fua);
    } catch (e) {
      throw this.#mapError(e, 'write');
    } finally {
      this.#pool.give(bounce);
    }
  }

  async flush(): Promise<void> {
    this.checkOpen('flush');
    await this.#sync('flush');
  }

  async unmap(lba: number, blocks: number): Promise<void> {
    this.checkOpen('unmap');
    this.checkWritable('unmap', this.#readOnly);
    const { offset, length } = this.checkRange('unmap', lba, blocks);
    if (length === 0) return;
    if (this.#thin) {
      try {
        await this.#file.punchHole(offset, length);
        return;
      } catch (e) {
        const code = errorCode(e);
        if (code !== 'EOPNOTSUPP' && code !== 'ENOTSUP') throw this.#mapError(e, 'unmap');
        this.#thin = false; // this filesystem cannot punch holes: write zeros from now on
      }
    }
    await this.#writeChunks(offset, length, this.#zeros(), 'unmap');
  }

  async writeSame(lba: number, blocks: number, pattern: Buffer | null, opts?: WriteOptions): Promise<void> {
    this.checkOpen('writeSame');
    this.checkWritable('writeSame', this.#readOnly);
    const p = this.checkPattern('writeSame', pattern);
    const { offset, length } = this.checkRange('writeSame', lba, blocks);
    if (length > 0) {
      if (p === null) await this.unmap(lba, blocks);
      else await this.#writeChunks(offset, length, this.#patternBuffer(p), 'writeSame');
    }
    if (opts?.fua === true) await this.#sync('writeSame');
  }

  async isMapped(lba: number): Promise<boolean> {
    this.checkOpen('isMapped');
    const l = this.checkLba('isMapped', lba);
    if (this.#file.blockDevice) return true;
    const off = l * this.blockSize;
    try {
      const d = await this.#file.seekData(off);
      return d !== -1 && d < off + this.blockSize;
    } catch (e) {
      const code = errorCode(e);
      if (code === 'EINVAL' || code === 'EOPNOTSUPP') return true; // no SEEK_DATA here: say allocated
      throw this.#mapError(e, 'isMapped');
    }
  }

  async resize(blocks: number): Promise<void> {
    this.checkOpen('resize');
    this.checkWritable('resize', this.#readOnly);
    const n = this.checkNewSize('resize', blocks);
    if (this.#file.blockDevice) throw invalid(`resize: ${this.path} is a block device`);
    try {
      await this.#file.truncate(n * this.blockSize);
    } catch (e) {
      throw this.#mapError(e, 'resize');
    }
    this.setBlockCount(n);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.markClosed();
    try {
      await this.#file.close(); // waits for requests in flight
    } catch (e) {
      throw this.#mapError(e, 'close');
    }
  }

  async #sync(what: string): Promise<void> {
    try {
      await this.#file.datasync();
    } catch (e) {
      throw this.#mapError(e, what);
    }
  }

  #zeros(): Buffer {
    this.#zeroChunk ??= allocAligned(PATTERN_CHUNK, { zero: true });
    return this.#zeroChunk;
  }

  /** A PATTERN_CHUNK buffer of `p` repeated; the last one is cached (never modified after build). */
  #patternBuffer(p: Buffer): Buffer {
    const cached = this.#patternChunk;
    if (cached?.pattern.equals(p)) return cached.chunk;
    const chunk = allocAligned(PATTERN_CHUNK, { zero: false });
    chunk.fill(p);
    this.#patternChunk = { pattern: Buffer.from(p), chunk };
    return chunk;
  }

  /** Writes `chunk` repeatedly over [offset, offset + length), a few chunks in flight. */
  async #writeChunks(offset: number, length: number, chunk: Buffer, what: string): Promise<void> {
    let next = offset;
    const end = offset + length;
    const worker = async (): Promise<void> => {
      while (next < end) {
        const at = next;
        const len = Math.min(chunk.length, end - at);
        next += len;
        try {
          await this.#file.write(len === chunk.length ? chunk : chunk.subarray(0, len), at);
        } catch (e) {
          next = end;
          throw this.#mapError(e, what);
        }
      }
    };
    const n = Math.min(PATTERN_DEPTH, Math.ceil(length / chunk.length));
    const results = await Promise.allSettled(Array.from({ length: n }, worker));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  #mapError(e: unknown, what: string): BackstoreError {
    if (e instanceof BackstoreError) return e;
    const code = errorCode(e);
    const msg = `${what} ${this.path}: ${e instanceof Error ? e.message : String(e)}`;
    switch (code) {
      case 'ENOSPC':
      case 'EDQUOT':
        return new BackstoreError(BackstoreErrorCode.NO_SPACE, msg, { cause: e });
      case 'EINVAL_ALIGN':
        return new BackstoreError(BackstoreErrorCode.MISALIGNED, msg, { cause: e });
      case 'EROFS':
        return new BackstoreError(BackstoreErrorCode.READ_ONLY, msg, { cause: e });
      case 'EBADF':
        return new BackstoreError(
          this.#file.closed ? BackstoreErrorCode.CLOSED : BackstoreErrorCode.IO,
          msg,
          { cause: e },
        );
      case 'ERR_INVALID_ARG_TYPE':
      case 'ERR_OUT_OF_RANGE':
        return new BackstoreError(BackstoreErrorCode.INVALID_ARGUMENT, msg, { cause: e });
      default:
        return new BackstoreError(BackstoreErrorCode.IO, msg, { cause: e });
    }
  }
}

function openError(e: unknown, path: string): BackstoreError {
  const code = errorCode(e);
  const msg = `file backstore ${path}: ${e instanceof Error ? e.message : String(e)}`;
  if (code === 'ENOENT') return new BackstoreError(BackstoreErrorCode.NOT_FOUND, msg, { cause: e });
  if (code === 'EISDIR' || code === 'EINVAL' || code === 'ENOTDIR') {
    return new BackstoreError(BackstoreErrorCode.INVALID_ARGUMENT, msg, { cause: e });
  }
  if (code === 'ENOSPC') return new BackstoreError(BackstoreErrorCode.NO_SPACE, msg, { cause: e });
  return new BackstoreError(BackstoreErrorCode.IO, msg, { cause: e });
}

/** Opens (and, with `create`, creates) a file backstore. */
export async function openFileBackstore(opts: FileBackstoreOptions): Promise<FileBackstore> {
  const path = opts.path;
  if (typeof path !== 'string' || path.length === 0) throw invalid('path: must be a non-empty string');
  const blockSize = opts.blockSize ?? 512;
  if (!VALID_BLOCK_SIZES.includes(blockSize)) {
    throw invalid(`blockSize: must be 512 or 4096 (got ${String(blockSize)})`);
  }
  const size = opts.size;
  if (size !== undefined && (!Number.isSafeInteger(size) || size <= 0 || size % blockSize !== 0)) {
    throw invalid(`size: must be a positive multiple of blockSize ${blockSize} (got ${String(size)})`);
  }
  const readOnly = opts.readOnly === true;
  const wantDirect = opts.direct !== false;
  const notes: string[] = [];

  let exists = true;
  try {
    const st = await stat(path);
    if (st.isDirectory()) throw invalid(`path: ${path} is a directory`);
  } catch (e) {
    if (e instanceof BackstoreError) throw e;
    if (errorCode(e) !== 'ENOENT') throw openError(e, path);
    exists = false;
  }
  if (!exists) {
    if (opts.create !== true || readOnly) {
      throw new BackstoreError(
        BackstoreErrorCode.NOT_FOUND,
        `file backstore: ${path} does not exist${readOnly ? ' (read-only: not created)' : ' (pass create: true and a size to create it)'}`,
      );
    }
    if (size === undefined) throw invalid(`size: required to create ${path}`);
  }

  const tryOpen = async (ro: boolean, direct: boolean): Promise<BlockFile> =>
    openBlockFile(path, { readOnly: ro, direct, create: !exists && !ro, engine: opts.engine ?? 'auto' });
  let file: BlockFile;
  try {
    file = await tryOpen(readOnly, wantDirect);
  } catch (e) {
    const code = errorCode(e);
    if (readOnly || (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM') || !exists)
      throw openError(e, path);
    // Like tgtd: a file we may not write is served read-only.
    try {
      file = await tryOpen(true, wantDirect);
    } catch (e2) {
      throw openError(e2, path);
    }
    notes.push(`opened read-only (${String(code)})`);
  }
  if (wantDirect && !file.direct) notes.push(file.directNote);
  if (file.direct && (file.offsetAlign > blockSize || file.memAlign > ALIGNMENT)) {
    const ro = file.readOnly;
    await file.close();
    try {
      file = await tryOpen(ro, false);
    } catch (e) {
      throw openError(e, path);
    }
    notes.push(`O_DIRECT needs ${file.offsetAlign}-byte I/O, larger than blockSize ${blockSize}: buffered`);
  }

  try {
    let bytes = await file.size();
    if (size !== undefined && bytes < size && !file.readOnly && !file.blockDevice) {
      await file.truncate(size); // sparse: no blocks allocated
      bytes = size;
    }
    const blockCount = Math.floor(bytes / blockSize);
    if (blockCount === 0) throw invalid(`size: ${path} is smaller than one ${blockSize}-byte block`);
    return new FileBackstore(file, blockSize, blockCount, notes);
  } catch (e) {
    await file.close().catch(() => undefined);
    if (e instanceof BackstoreError) throw e;
    throw openError(e, path);
  }
}
