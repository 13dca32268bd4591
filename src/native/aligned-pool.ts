/**
 * A free list of aligned buffers that its owner hands back explicitly, so a buffer is reused at
 * once instead of after a GC cycle and a finalizer (which for MiB-sized buffers means page faults
 * on fresh memory and external-memory GC pressure). Power-of-two classes from 4 KiB to 8 MiB;
 * the idle bytes kept are capped. Giving back a buffer is a promise that nobody uses it any more.
 */
import { ALIGNMENT, allocAligned } from './index.js';

export class AlignedPool {
  static readonly MAX_CLASS = 8 * 1024 * 1024;
  readonly #free = new Map<number, Buffer[]>();
  readonly #cap: number;
  #idle = 0;

  constructor(capBytes: number) {
    this.#cap = capBytes;
  }

  /** An aligned buffer of at least `length` bytes (its class size; longer than 8 MiB: exact). */
  take(length: number): Buffer {
    const cls = Math.max(ALIGNMENT, 2 ** Math.ceil(Math.log2(Math.max(1, length))));
    const b = this.#free.get(cls)?.pop();
    if (b !== undefined) {
      this.#idle -= b.length;
      return b;
    }
    return allocAligned(cls <= AlignedPool.MAX_CLASS ? cls : length, { zero: false });
  }

  /** Hands back a buffer `take()` returned (whole, not a view of it). */
  give(b: Buffer): void {
    if (b.length > AlignedPool.MAX_CLASS || this.#idle + b.length > this.#cap) return;
    let list = this.#free.get(b.length);
    if (list === undefined) {
      list = [];
      this.#free.set(b.length, list);
    }
    list.push(b);
    this.#idle += b.length;
  }

  /** Bytes kept for reuse. */
  get idleBytes(): number {
    return this.#idle;
  }
}
