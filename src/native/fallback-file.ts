/**
 * Pure-TS twin of the native block-file I/O: node:fs FileHandle with positional reads and writes,
 * always buffered (no O_DIRECT, no hole punching). Used when the addon is missing and as the test
 * oracle for the native handle.
 */
import { constants as fsc } from 'node:fs';
import { type FileHandle, open, readFile } from 'node:fs/promises';
import { type BlockFile, type BlockFileOptions, type CodedError, codedError } from './file-types.js';

const MAX_OFFSET = Number.MAX_SAFE_INTEGER;

function checkView(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) {
    throw codedError('ERR_INVALID_ARG_TYPE', `${what} must be a Buffer or Uint8Array`, TypeError);
  }
  return v;
}

function checkOffset(v: unknown, what: string): number {
  if (typeof v !== 'number') throw codedError('ERR_INVALID_ARG_TYPE', `${what} must be a number`, TypeError);
  if (!Number.isSafeInteger(v) || v < 0) {
    throw codedError('ERR_OUT_OF_RANGE', `${what} must be a non-negative safe integer (got ${v})`);
  }
  return v;
}

function withPath(e: unknown, path: string): unknown {
  if (
    e instanceof Error &&
    typeof (e as CodedError).code === 'string' &&
    (e as CodedError).path === undefined
  ) {
    (e as CodedError).path = path;
  }
  return e;
}

class FsBlockFile implements BlockFile {
  readonly path: string;
  readonly direct = false;
  readonly directNote: string;
  readonly readOnly: boolean;
  readonly blockDevice: boolean;
  readonly memAlign = 1;
  readonly offsetAlign = 1;
  readonly native = false;
  readonly engine = 'node:fs';
  #fh: FileHandle;
  #rdev: number;
  #closing = false;
  #closed = false;
  #inflight = 0;
  #closeWaiters: Array<() => void> = [];
  #closePromise: Promise<void> | null = null;

  constructor(
    fh: FileHandle,
    path: string,
    readOnly: boolean,
    blockDevice: boolean,
    rdev: number,
    note: string,
  ) {
    this.#fh = fh;
    this.path = path;
    this.readOnly = readOnly;
    this.blockDevice = blockDevice;
    this.#rdev = rdev;
    this.directNote = note;
  }

  get closed(): boolean {
    return this.#closing || this.#closed;
  }

  async #run<T>(what: string, write: boolean, fn: () => Promise<T>): Promise<T> {
    if (this.#closing || this.#closed)
      throw codedError('EBADF', `${what}: file handle is closed ('${this.path}')`);
    if (write && this.readOnly)
      throw codedError('EBADF', `${what}: file handle is read-only ('${this.path}')`);
    this.#inflight++;
    try {
      return await fn();
    } catch (e) {
      throw withPath(e, this.path);
    } finally {
      this.#inflight--;
      if (this.#inflight === 0) for (const w of this.#closeWaiters.splice(0)) w();
    }
  }

  async #transfer(bufs: Uint8Array[], offset: number, isRead: boolean): Promise<number> {
    let done = 0;
    for (const b of bufs) {
      let at = 0;
      while (at < b.length) {
        const r = isRead
          ? await this.#fh.read(b, at, b.length - at, offset + done)
          : await this.#fh.write(b, at, b.length - at, offset + done);
        const n = isRead
          ? (r as { bytesRead: number }).bytesRead
          : (r as { bytesWritten: number }).bytesWritten;
        if (n === 0) {
          if (isRead) return done;
          throw codedError('EIO', `write made no progress ('${this.path}')`);
        }
        at += n;
        done += n;
      }
    }
    return done;
  }

  #args(
    what: string,
    buffers: unknown,
    offset: unknown,
    vectored: boolean,
  ): { bufs: Uint8Array[]; off: number } {
    let bufs: Uint8Array[];
    if (vectored) {
      if (!Array.isArray(buffers)) {
        throw codedError('ERR_INVALID_ARG_TYPE', `${what}: buffers must be an array`, TypeError);
      }
      bufs = buffers.map((b) => checkView(b, 'buffers[i]'));
    } else {
      bufs = [checkView(buffers, 'buffer')];
    }
    const off = checkOffset(offset, 'offset');
    const total = bufs.reduce((s, b) => s + b.length, 0);
    if (off + total > MAX_OFFSET) throw codedError('ERR_OUT_OF_RANGE', `${what}: offset + length too large`);
    return { bufs, off };
  }

  read(buffer: Uint8Array, offset: number): Promise<number> {
    return this.#run('read', false, async () => {
      const { bufs, off } = this.#args('read', buffer, offset, false);
      return this.#transfer(bufs, off, true);
    });
  }

  write(buffer: Uint8Array, offset: number, dsync?: boolean): Promise<number> {
    return this.#run('write', true, async () => {
      const { bufs, off } = this.#args('write', buffer, offset, false);
      const n = await this.#transfer(bufs, off, false);
      if (dsync === true) await this.#fh.datasync();
      return n;
    });
  }

  readv(buffers: readonly Uint8Array[], offset: number): Promise<number> {
    return this.#run('readv', false, async () => {
      const { bufs, off } = this.#args('readv', buffers, offset, true);
      return this.#transfer(bufs, off, true);
    });
  }

  writev(buffers: readonly Uint8Array[], offset: number, dsync?: boolean): Promise<number> {
    return this.#run('writev', true, async () => {
      const { bufs, off } = this.#args('writev', buffers, offset, true);
      const n = await this.#transfer(bufs, off, false);
      if (dsync === true) await this.#fh.datasync();
      return n;
    });
  }

  datasync(): Promise<void> {
    return this.#run('fdatasync', false, () => this.#fh.datasync());
  }

  sync(): Promise<void> {
    return this.#run('fsync', false, () => this.#fh.sync());
  }

  punchHole(offset: number, length: number): Promise<void> {
    return this.#run('fallocate', true, async () => {
      checkOffset(offset, 'offset');
      checkOffset(length, 'length');
      throw codedError('EOPNOTSUPP', `punch hole needs the native addon ('${this.path}')`);
    });
  }

  allocate(offset: number, length: number): Promise<void> {
    return this.#run('fallocate', true, async () => {
      const end = checkOffset(offset, 'offset') + checkOffset(length, 'length');
      if (length > 0 && !this.blockDevice && end > (await this.#size())) await this.#fh.truncate(end);
    });
  }

  async #size(): Promise<number> {
    if (!this.blockDevice) return (await this.#fh.stat()).size;
    // No BLKGETSIZE64 from JS: sysfs gives the size in 512-byte sectors.
    const major = Math.floor(this.#rdev / 256) & 0xfff;
    const minor = (this.#rdev & 0xff) | (Math.floor(this.#rdev / 4096) & ~0xff);
    const sectors = Number((await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
    return sectors * 512;
  }

  size(): Promise<number> {
    return this.#run('fstat', false, () => this.#size());
  }

  truncate(size: number): Promise<void> {
    return this.#run('ftruncate', true, async () => this.#fh.truncate(checkOffset(size, 'size')));
  }

  // No SEEK_DATA from JS: the whole file is data and the only hole is at its end.
  seekData(offset: number): Promise<number> {
    return this.#run('lseek', false, async () => {
      const off = checkOffset(offset, 'offset');
      return off < (await this.#size()) ? off : -1;
    });
  }

  seekHole(offset: number): Promise<number> {
    return this.#run('lseek', false, async () => {
      const off = checkOffset(offset, 'offset');
      const size = await this.#size();
      return off < size ? size : -1;
    });
  }

  close(): Promise<void> {
    if (this.#closePromise) return this.#closePromise;
    this.#closing = true;
    this.#closePromise = (async () => {
      if (this.#inflight > 0) await new Promise<void>((resolve) => this.#closeWaiters.push(resolve));
      try {
        await this.#fh.close();
      } finally {
        this.#closed = true;
      }
    })();
    return this.#closePromise;
  }
}

/** Opens `path` with node:fs (buffered). `direct` is accepted and reported as not in use. */
export async function openFallbackFile(
  path: string,
  opts: BlockFileOptions = {},
  note?: string,
): Promise<BlockFile> {
  if (typeof path !== 'string') throw codedError('ERR_INVALID_ARG_TYPE', 'path must be a string', TypeError);
  if (path.length === 0 || path.includes('\0')) {
    throw codedError('ERR_INVALID_ARG_VALUE', 'path must be a non-empty string without NUL bytes', TypeError);
  }
  const readOnly = opts.readOnly === true;
  const flags = readOnly ? fsc.O_RDONLY : fsc.O_RDWR | (opts.create === true ? fsc.O_CREAT : 0);
  const fh = await open(path, flags, opts.mode ?? 0o644);
  try {
    const st = await fh.stat();
    if (st.isDirectory())
      throw codedError('EISDIR', `EISDIR: illegal operation on a directory, open '${path}'`);
    if (!st.isFile() && !st.isBlockDevice()) {
      throw codedError('EINVAL', `EINVAL: not a regular file or block device, open '${path}'`);
    }
    const why = note ?? 'native addon not loaded: buffered node:fs I/O';
    return new FsBlockFile(fh, path, readOnly, st.isBlockDevice(), st.rdev, opts.direct === true ? why : '');
  } catch (e) {
    await fh.close();
    throw e;
  }
}
