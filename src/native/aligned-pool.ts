/**
 * A free list of aligned buffers that its owner hands back explicitly, so a buffer is reused at
 * once instead of after a GC cycle and a finalizer (which for MiB-sized buffers means page faults
 * on fresh memory and external-memory GC pressure). Power-of-two classes from 4 KiB to 8 MiB;
 * the idle bytes kept are capped. Giving back a buffer is a promise that nobody uses it any more.
 */
import { ALIGNMENT, allocAligned } from './index.js';

/** The power of two ≥ length, at least ALIGNMENT (bit arithmetic: Math.log2/pow showed in profiles). */
function classOf(length: number): number {
  if (length <= ALIGNMENT) return ALIGNMENT;
  if (length <= 0x40000000) return 1 << (32 - Math.clz32(length - 1));
  return 2 ** Math.ceil(Math.log2(length));
}

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
    const cls = classOf(length);
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

  /** Buffers handed out by lend() and not yet back: the view's memory → the whole pool buffer. */
  readonly #lent = new WeakMap<ArrayBufferLike, Buffer>();

  /**
   * A view of exactly `length` bytes of a pool buffer, for a caller outside the owner's control
   * (e.g. a read result); it comes back through {@link takeBack}, or to the GC if it never does.
   */
  lend(length: number): Buffer {
    const whole = this.take(length);
    this.#lent.set(whole.buffer, whole);
    return whole.length === length ? whole : whole.subarray(0, length);
  }

  /** Takes back a view lend() handed out (true); anything else, or a second time: false. */
  takeBack(view: Buffer): boolean {
    const whole = this.#lent.get(view.buffer);
    if (whole === undefined) return false;
    this.#lent.delete(view.buffer);
    this.give(whole);
    return true;
  }

  /** Bytes kept for reuse. */
  get idleBytes(): number {
    return this.#idle;
  }
}
