/** Backstores: the block devices the SCSI layer serves. `openBackstore(spec)` builds one. */
import { invalid, VALID_BLOCK_SIZES } from './common.js';
import { type FileBackstore, type FileBackstoreOptions, openFileBackstore } from './file.js';
import { MemoryBackstore } from './memory.js';
import { NullBackstore } from './null.js';
import type { Backstore } from './types.js';

export {
  CachedBackstore,
  type CachedBackstoreStats,
  PAGE_SIZE,
  PageCache,
  type PageCacheOptions,
  type PageCacheStats,
} from './cache.js';
export { FileBackstore, type FileBackstoreOptions, openFileBackstore } from './file.js';
export { MEMORY_CHUNK, MemoryBackstore } from './memory.js';
export { NullBackstore } from './null.js';
export * from './types.js';

export interface FileBackstoreSpec {
  readonly kind: 'file';
  readonly path: string;
  /** Bytes; required when the file is created. */
  readonly size?: number | undefined;
  readonly blockSize?: number | undefined;
  readonly readOnly?: boolean | undefined;
  /** O_DIRECT (default true). */
  readonly direct?: boolean | undefined;
  /** Create the file when missing (default false). */
  readonly create?: boolean | undefined;
  /** Native I/O engine (default 'auto'). */
  readonly engine?: 'auto' | 'io_uring' | 'threadpool' | undefined;
}

export interface MemoryBackstoreSpec {
  readonly kind: 'memory';
  /** Bytes, a multiple of blockSize. */
  readonly size: number;
  readonly blockSize?: number | undefined;
  readonly readOnly?: boolean | undefined;
}

export interface NullBackstoreSpec {
  readonly kind: 'null';
  /** Bytes, a multiple of blockSize. */
  readonly size: number;
  readonly blockSize?: number | undefined;
}

export type BackstoreSpec = FileBackstoreSpec | MemoryBackstoreSpec | NullBackstoreSpec;

function checkBool(spec: Record<string, unknown>, field: string): void {
  const v = spec[field];
  if (v !== undefined && typeof v !== 'boolean') {
    throw invalid(`${field}: must be a boolean (got ${typeof v})`);
  }
}

function checkBlockSize(v: unknown): number {
  if (v === undefined) return 512;
  if (typeof v !== 'number' || !VALID_BLOCK_SIZES.includes(v)) {
    throw invalid(`blockSize: must be 512 or 4096 (got ${String(v)})`);
  }
  return v;
}

function checkSize(v: unknown, blockSize: number, required: boolean): number | undefined {
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v % blockSize !== 0) {
    throw invalid(
      `size: must be a positive number of bytes, a multiple of blockSize ${blockSize} (got ${String(v)})`,
    );
  }
  return v;
}

/**
 * Opens a backstore. Rejects with a BackstoreError: INVALID_ARGUMENT naming the bad field,
 * NOT_FOUND (file missing without `create`), IO …
 */
export async function openBackstore(spec: BackstoreSpec): Promise<Backstore> {
  if (spec === null || typeof spec !== 'object') throw invalid('spec: must be an object');
  const raw = spec as unknown as Record<string, unknown>;
  const blockSize = checkBlockSize(raw['blockSize']);
  switch (spec.kind) {
    case 'file': {
      if (typeof spec.path !== 'string' || spec.path.length === 0)
        throw invalid('path: must be a non-empty string');
      for (const f of ['readOnly', 'direct', 'create']) checkBool(raw, f);
      const size = checkSize(raw['size'], blockSize, false);
      const engine = raw['engine'];
      if (engine !== undefined && engine !== 'auto' && engine !== 'io_uring' && engine !== 'threadpool') {
        throw invalid(`engine: must be 'auto', 'io_uring' or 'threadpool' (got ${String(engine)})`);
      }
      const opts: FileBackstoreOptions = {
        path: spec.path,
        blockSize,
        size,
        readOnly: spec.readOnly,
        direct: spec.direct,
        create: spec.create,
        engine: spec.engine,
      };
      const b: FileBackstore = await openFileBackstore(opts);
      return b;
    }
    case 'memory': {
      checkBool(raw, 'readOnly');
      const size = checkSize(raw['size'], blockSize, true) as number;
      return new MemoryBackstore({
        blockSize,
        blockCount: size / blockSize,
        readOnly: spec.readOnly === true,
      });
    }
    case 'null': {
      const size = checkSize(raw['size'], blockSize, true) as number;
      return new NullBackstore({ blockSize, blockCount: size / blockSize });
    }
    default:
      throw invalid(`kind: must be 'file', 'memory' or 'null' (got ${String(raw['kind'])})`);
  }
}
