/** Argument checks and shared bookkeeping for the backstores. */
import { BackstoreError, BackstoreErrorCode } from './types.js';

export const VALID_BLOCK_SIZES: readonly number[] = [512, 4096];

export function invalid(message: string): BackstoreError {
  return new BackstoreError(BackstoreErrorCode.INVALID_ARGUMENT, message);
}

function checkCount(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw invalid(`${what} must be a non-negative integer (got ${String(v)})`);
  }
  return v;
}

/**
 * Common state and checks. Subclasses call these at the top of each method (inside an async
 * function, so a failed check becomes a rejection).
 */
export abstract class BackstoreBase {
  readonly blockSize: number;
  #blockCount: number;
  #closed = false;

  constructor(blockSize: number, blockCount: number) {
    this.blockSize = blockSize;
    this.#blockCount = blockCount;
  }

  get blockCount(): number {
    return this.#blockCount;
  }

  protected setBlockCount(blocks: number): void {
    this.#blockCount = blocks;
  }

  get closed(): boolean {
    return this.#closed;
  }

  protected markClosed(): void {
    this.#closed = true;
  }

  protected checkOpen(what: string): void {
    if (this.#closed) throw new BackstoreError(BackstoreErrorCode.CLOSED, `${what}: backstore is closed`);
  }

  protected checkWritable(what: string, readOnly: boolean): void {
    if (readOnly) throw new BackstoreError(BackstoreErrorCode.READ_ONLY, `${what}: backstore is read-only`);
  }

  /** Validates an LBA range and returns its byte offset and length. */
  protected checkRange(what: string, lba: unknown, blocks: unknown): { offset: number; length: number } {
    const l = checkCount(lba, `${what}: lba`);
    const n = checkCount(blocks, `${what}: blocks`);
    if (l + n > this.#blockCount || (n === 0 && l > this.#blockCount)) {
      throw new BackstoreError(
        BackstoreErrorCode.OUT_OF_RANGE,
        `${what}: blocks [${l}, ${l + n}) exceed the capacity of ${this.#blockCount} blocks`,
      );
    }
    return { offset: l * this.blockSize, length: n * this.blockSize };
  }

  /** Validates a write payload (a whole number of blocks) and returns its block count. */
  protected checkData(what: string, data: unknown): number {
    if (!(data instanceof Uint8Array)) throw invalid(`${what}: data must be a Buffer`);
    if (data.length % this.blockSize !== 0) {
      throw new BackstoreError(
        BackstoreErrorCode.MISALIGNED,
        `${what}: ${data.length} bytes is not a whole number of ${this.blockSize}-byte blocks`,
      );
    }
    return data.length / this.blockSize;
  }

  protected checkPattern(what: string, pattern: unknown): Buffer | null {
    if (pattern === null) return null;
    if (!(pattern instanceof Uint8Array)) throw invalid(`${what}: pattern must be a Buffer or null`);
    if (pattern.length !== this.blockSize) {
      throw new BackstoreError(
        BackstoreErrorCode.MISALIGNED,
        `${what}: pattern must be exactly one block (${this.blockSize} bytes), got ${pattern.length}`,
      );
    }
    return Buffer.isBuffer(pattern)
      ? pattern
      : Buffer.from(pattern.buffer, pattern.byteOffset, pattern.length);
  }

  protected checkLba(what: string, lba: unknown): number {
    const l = checkCount(lba, `${what}: lba`);
    if (l >= this.#blockCount) {
      throw new BackstoreError(
        BackstoreErrorCode.OUT_OF_RANGE,
        `${what}: lba ${l} is beyond the last block (${this.#blockCount - 1})`,
      );
    }
    return l;
  }

  protected checkNewSize(what: string, blocks: unknown): number {
    const n = checkCount(blocks, `${what}: blocks`);
    if (n * this.blockSize > Number.MAX_SAFE_INTEGER) throw invalid(`${what}: ${n} blocks is too large`);
    return n;
  }
}

/** Whether every byte of `b` is zero. */
export function isZero(b: Uint8Array): boolean {
  // Compare 8 bytes at a time when the view is 8-aligned within its ArrayBuffer.
  let i = 0;
  const n = b.length;
  if ((b.byteOffset & 7) === 0 && n >= 64) {
    const words = new BigUint64Array(b.buffer, b.byteOffset, n >>> 3);
    for (let w = 0; w < words.length; w++) if (words[w] !== 0n) return false;
    i = words.length << 3;
  }
  for (; i < n; i++) if (b[i] !== 0) return false;
  return true;
}
