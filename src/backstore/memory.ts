/**
 * Memory backstore: sparse, not persistent. Data lives in fixed-size chunks in a Map; absent
 * chunks read as zeros and unmap deletes whole chunks (zero-fills partial ones).
 */
import { BackstoreBase, isZero } from './common.js';
import type { Backstore, BackstoreCapabilities, WriteOptions } from './types.js';

/** Chunk size: a multiple of every supported block size. */
export const MEMORY_CHUNK = 64 * 1024;

export interface MemoryBackstoreOptions {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly readOnly?: boolean;
}

export class MemoryBackstore extends BackstoreBase implements Backstore {
  readonly kind = 'memory';
  /** write() is done with its data when it settles (copied, or the I/O completed). */
  readonly doneWithWriteData = true;
  readonly description: string;
  readonly capabilities: BackstoreCapabilities;
  readonly #chunks = new Map<number, Buffer>();
  readonly #readOnly: boolean;

  constructor(opts: MemoryBackstoreOptions) {
    super(opts.blockSize, opts.blockCount);
    this.#readOnly = opts.readOnly === true;
    this.description = `memory (${opts.blockCount} × ${opts.blockSize} B)`;
    this.capabilities = {
      directIo: false,
      thin: true,
      readOnly: this.#readOnly,
      persistent: false,
      volatileCache: false,
    };
  }

  /** Bytes held in chunks (for tests and status). */
  get allocatedBytes(): number {
    return this.#chunks.size * MEMORY_CHUNK;
  }

  async read(lba: number, blocks: number): Promise<Buffer> {
    this.checkOpen('read');
    const { offset, length } = this.checkRange('read', lba, blocks);
    const out = Buffer.alloc(length);
    this.#each(offset, length, (chunk, at, len, outAt) => {
      const c = this.#chunks.get(chunk);
      if (c !== undefined) c.copy(out, outAt, at, at + len);
    });
    return out;
  }

  async write(lba: number, data: Buffer, _opts?: WriteOptions): Promise<void> {
    this.checkOpen('write');
    this.checkWritable('write', this.#readOnly);
    const blocks = this.checkData('write', data);
    const { offset, length } = this.checkRange('write', lba, blocks);
    this.#each(offset, length, (chunk, at, len, srcAt) => {
      let c = this.#chunks.get(chunk);
      if (c === undefined) {
        const src = data.subarray(srcAt, srcAt + len);
        if (isZero(src)) return; // writing zeros over a hole keeps it a hole
        c = Buffer.alloc(MEMORY_CHUNK);
        this.#chunks.set(chunk, c);
      }
      data.copy(c, at, srcAt, srcAt + len);
    });
  }

  async flush(): Promise<void> {
    this.checkOpen('flush');
  }

  async unmap(lba: number, blocks: number): Promise<void> {
    this.checkOpen('unmap');
    this.checkWritable('unmap', this.#readOnly);
    const { offset, length } = this.checkRange('unmap', lba, blocks);
    this.#zero(offset, length);
  }

  async writeSame(lba: number, blocks: number, pattern: Buffer | null, _opts?: WriteOptions): Promise<void> {
    this.checkOpen('writeSame');
    this.checkWritable('writeSame', this.#readOnly);
    const p = this.checkPattern('writeSame', pattern);
    const { offset, length } = this.checkRange('writeSame', lba, blocks);
    if (p === null || isZero(p)) {
      this.#zero(offset, length);
      return;
    }
    this.#each(offset, length, (chunk, at, len) => {
      let c = this.#chunks.get(chunk);
      if (c === undefined) {
        c = Buffer.alloc(MEMORY_CHUNK);
        this.#chunks.set(chunk, c);
      }
      // `at` is block-aligned, so the repeated pattern lines up with block boundaries.
      c.fill(p, at, at + len);
    });
  }

  async isMapped(lba: number): Promise<boolean> {
    this.checkOpen('isMapped');
    const l = this.checkLba('isMapped', lba);
    return this.#chunks.has(Math.floor((l * this.blockSize) / MEMORY_CHUNK));
  }

  async resize(blocks: number): Promise<void> {
    this.checkOpen('resize');
    this.checkWritable('resize', this.#readOnly);
    const n = this.checkNewSize('resize', blocks);
    const newBytes = n * this.blockSize;
    const oldBytes = this.blockCount * this.blockSize;
    if (newBytes < oldBytes) this.#zero(newBytes, oldBytes - newBytes); // a later grow reads zeros
    this.setBlockCount(n);
  }

  async close(): Promise<void> {
    this.markClosed();
    this.#chunks.clear();
  }

  #zero(offset: number, length: number): void {
    this.#each(offset, length, (chunk, at, len) => {
      const c = this.#chunks.get(chunk);
      if (c === undefined) return;
      if (len === MEMORY_CHUNK) this.#chunks.delete(chunk);
      else {
        c.fill(0, at, at + len);
        if (isZero(c)) this.#chunks.delete(chunk);
      }
    });
  }

  /** Calls fn(chunkIndex, offsetInChunk, length, offsetInRequest) for each chunk piece of a range. */
  #each(
    offset: number,
    length: number,
    fn: (chunk: number, at: number, len: number, reqAt: number) => void,
  ): void {
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const chunk = Math.floor(pos / MEMORY_CHUNK);
      const at = pos - chunk * MEMORY_CHUNK;
      const len = Math.min(MEMORY_CHUNK - at, end - pos);
      fn(chunk, at, len, pos - offset);
      pos += len;
    }
  }
}
