/** openBlockFile(): the native handle when the addon is loaded, else the node:fs twin. */
import { addon, type NativeFileHandle, nativeLoadError } from './addon.js';
import { openFallbackFile } from './fallback-file.js';
import { type BlockFile, type BlockFileOptions, codedError } from './file-types.js';

function reject(e: unknown): Promise<never> {
  return Promise.reject(e);
}

/** Wraps the native handle so that argument errors become rejections, like every other failure. */
class NativeBlockFile implements BlockFile {
  readonly native = true;
  readonly engine: 'io_uring' | 'threadpool';
  readonly #h: NativeFileHandle;
  readonly path: string;
  readonly direct: boolean;
  readonly directNote: string;
  readonly readOnly: boolean;
  readonly blockDevice: boolean;
  readonly memAlign: number;
  readonly offsetAlign: number;

  constructor(h: NativeFileHandle) {
    this.#h = h;
    this.path = h.path;
    this.direct = h.direct;
    this.directNote = h.directNote;
    this.readOnly = h.readOnly;
    this.blockDevice = h.blockDevice;
    this.memAlign = h.memAlign;
    this.offsetAlign = h.offsetAlign;
    this.engine = h.engine;
  }

  get closed(): boolean {
    return this.#h.closed;
  }

  /** Requests in flight (native only; for tests and status). */
  get inflight(): number {
    return this.#h.inflight;
  }

  /** tmpfs / ramfs file (native only; see NativeFileHandle.inlineMax). */
  get memoryBacked(): boolean {
    return this.#h.memoryBacked;
  }

  /** Largest transfer that runs inline on a memory-backed file; 0 elsewhere (native only). */
  get inlineMax(): number {
    return this.#h.inlineMax;
  }

  /** Inline transfers copy through a shared mapping of the file (native only; see NativeFileHandle.mapped). */
  get mapped(): boolean {
    return this.#h.mapped;
  }

  read(buffer: Uint8Array, offset: number): Promise<number> {
    try {
      return this.#h.read(buffer, offset);
    } catch (e) {
      return reject(e);
    }
  }
  write(buffer: Uint8Array, offset: number, dsync?: boolean): Promise<number> {
    try {
      return this.#h.write(buffer, offset, dsync);
    } catch (e) {
      return reject(e);
    }
  }
  readv(buffers: readonly Uint8Array[], offset: number): Promise<number> {
    try {
      return this.#h.readv(buffers, offset);
    } catch (e) {
      return reject(e);
    }
  }
  writev(buffers: readonly Uint8Array[], offset: number, dsync?: boolean): Promise<number> {
    try {
      return this.#h.writev(buffers, offset, dsync);
    } catch (e) {
      return reject(e);
    }
  }
  datasync(): Promise<void> {
    try {
      return this.#h.datasync();
    } catch (e) {
      return reject(e);
    }
  }
  sync(): Promise<void> {
    try {
      return this.#h.sync();
    } catch (e) {
      return reject(e);
    }
  }
  punchHole(offset: number, length: number): Promise<void> {
    try {
      return this.#h.punchHole(offset, length);
    } catch (e) {
      return reject(e);
    }
  }
  allocate(offset: number, length: number): Promise<void> {
    try {
      return this.#h.allocate(offset, length);
    } catch (e) {
      return reject(e);
    }
  }
  size(): Promise<number> {
    try {
      return this.#h.size();
    } catch (e) {
      return reject(e);
    }
  }
  truncate(size: number): Promise<void> {
    try {
      return this.#h.truncate(size);
    } catch (e) {
      return reject(e);
    }
  }
  seekData(offset: number): Promise<number> {
    try {
      return this.#h.seekData(offset);
    } catch (e) {
      return reject(e);
    }
  }
  seekHole(offset: number): Promise<number> {
    try {
      return this.#h.seekHole(offset);
    } catch (e) {
      return reject(e);
    }
  }
  close(): Promise<void> {
    try {
      return this.#h.close();
    } catch (e) {
      return reject(e);
    }
  }
}

/** Opens with the native addon. Rejects with code 'ENOSYS' when the addon is not loaded. */
export async function openNativeFile(path: string, opts: BlockFileOptions = {}): Promise<BlockFile> {
  if (addon === null) throw codedError('ENOSYS', `native addon not loaded: ${nativeLoadError ?? 'unknown'}`);
  if (opts === null || typeof opts !== 'object') {
    throw codedError('ERR_INVALID_ARG_TYPE', 'options must be an object', TypeError);
  }
  const h = addon.open(
    path,
    opts.readOnly === true,
    opts.direct === true,
    opts.create === true,
    opts.mode ?? 0o644,
    opts.engine ?? 'auto',
  );
  return new NativeBlockFile(await h);
}

/**
 * Opens a file or block device for block I/O: native (O_DIRECT when asked and possible) when the
 * addon is loaded, else node:fs buffered. Check `direct` / `directNote` on the result.
 */
export function openBlockFile(path: string, opts: BlockFileOptions = {}): Promise<BlockFile> {
  if (addon !== null) return openNativeFile(path, opts);
  return openFallbackFile(
    path,
    opts,
    `native addon not loaded (${nativeLoadError ?? 'unknown'}): buffered node:fs I/O`,
  );
}
