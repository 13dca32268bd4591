/**
 * Dirty bitmap: one bit per `blockBytes` (4 KiB by default) of the device, set for every block a
 * peer has missed. Pages of 4 KiB (32768 bits) are tracked dirty so only changed pages are written
 * back to the metadata file.
 */

export const BITMAP_PAGE = 4096;

export class Bitmap {
  readonly bits: number;
  readonly blockBytes: number;
  readonly bytes: Uint8Array;
  #count = 0;
  readonly #dirtyPages = new Set<number>();

  constructor(deviceBytes: number, blockBytes = 4096, from?: Uint8Array) {
    this.blockBytes = blockBytes;
    this.bits = Math.ceil(deviceBytes / blockBytes);
    const len = Math.ceil(Math.ceil(this.bits / 8) / BITMAP_PAGE) * BITMAP_PAGE;
    this.bytes = new Uint8Array(len);
    if (from !== undefined) {
      this.bytes.set(from.subarray(0, len));
      this.#clearTail();
      this.#count = this.#recount();
    }
  }

  /** Byte length when stored (a whole number of pages). */
  static storedBytes(deviceBytes: number, blockBytes = 4096): number {
    return Math.ceil(Math.ceil(Math.ceil(deviceBytes / blockBytes) / 8) / BITMAP_PAGE) * BITMAP_PAGE;
  }

  /** Bits set. */
  get count(): number {
    return this.#count;
  }

  get dirtyPages(): readonly number[] {
    return [...this.#dirtyPages].sort((a, b) => a - b);
  }

  clearDirty(pages?: readonly number[]): void {
    if (pages === undefined) this.#dirtyPages.clear();
    else for (const p of pages) this.#dirtyPages.delete(p);
  }

  /** The block range [first, end) covering a byte range. */
  blockRange(offset: number, length: number): [number, number] {
    if (length <= 0) return [0, 0];
    const first = Math.floor(offset / this.blockBytes);
    const end = Math.min(this.bits, Math.ceil((offset + length) / this.blockBytes));
    return [first, end];
  }

  test(bit: number): boolean {
    return ((this.bytes[bit >>> 3] as number) & (1 << (bit & 7))) !== 0;
  }

  /** Sets the bits covering a byte range; returns how many were newly set. */
  setRange(offset: number, length: number): number {
    const [a, b] = this.blockRange(offset, length);
    return this.setBits(a, b);
  }

  /** Clears bits for a byte range; only blocks fully covered are cleared. */
  clearRange(offset: number, length: number): number {
    const a = Math.ceil(offset / this.blockBytes);
    const b = Math.min(this.bits, Math.floor((offset + length) / this.blockBytes));
    return this.clearBits(a, b);
  }

  setBits(a: number, b: number): number {
    let n = 0;
    for (let i = a; i < b;) {
      if ((i & 7) === 0 && i + 8 <= b) {
        const byte = i >>> 3;
        const v = this.bytes[byte] as number;
        if (v !== 0xff) {
          n += 8 - popcount8(v);
          this.bytes[byte] = 0xff;
          this.#dirtyPages.add(Math.floor(byte / BITMAP_PAGE));
        }
        i += 8;
        continue;
      }
      const byte = i >>> 3;
      const m = 1 << (i & 7);
      const v = this.bytes[byte] as number;
      if ((v & m) === 0) {
        this.bytes[byte] = v | m;
        n++;
        this.#dirtyPages.add(Math.floor(byte / BITMAP_PAGE));
      }
      i++;
    }
    this.#count += n;
    return n;
  }

  clearBits(a: number, b: number): number {
    let n = 0;
    for (let i = a; i < b;) {
      const byte = i >>> 3;
      if ((i & 7) === 0 && i + 8 <= b) {
        const v = this.bytes[byte] as number;
        if (v !== 0) {
          n += popcount8(v);
          this.bytes[byte] = 0;
          this.#dirtyPages.add(Math.floor(byte / BITMAP_PAGE));
        }
        i += 8;
        continue;
      }
      const m = 1 << (i & 7);
      const v = this.bytes[byte] as number;
      if ((v & m) !== 0) {
        this.bytes[byte] = v & ~m;
        n++;
        this.#dirtyPages.add(Math.floor(byte / BITMAP_PAGE));
      }
      i++;
    }
    this.#count -= n;
    return n;
  }

  setAll(): void {
    this.setBits(0, this.bits);
  }

  clearAll(): void {
    this.clearBits(0, this.bits);
  }

  /** First set bit at or after `from`, or -1. */
  nextSet(from: number): number {
    let i = from;
    while (i < this.bits) {
      const byte = i >>> 3;
      const v = this.bytes[byte] as number;
      if (v === 0) {
        i = (byte + 1) << 3;
        continue;
      }
      if ((v & (1 << (i & 7))) !== 0) return i;
      i++;
    }
    return -1;
  }

  /** Number of consecutive set bits starting at `bit` (bounded by `max`). */
  runLength(bit: number, max: number): number {
    let n = 0;
    while (n < max && bit + n < this.bits && this.test(bit + n)) n++;
    return n;
  }

  /** ORs another bitmap's bytes into this one (connect-time merge). */
  or(other: Uint8Array): void {
    const n = Math.min(other.length, this.bytes.length);
    for (let i = 0; i < n; i++) {
      const v = this.bytes[i] as number;
      const o = other[i] as number;
      if ((v | o) !== v) {
        this.bytes[i] = v | o;
        this.#dirtyPages.add(Math.floor(i / BITMAP_PAGE));
      }
    }
    this.#clearTail();
    this.#count = this.#recount();
  }

  /** Bits set in [a, b). */
  countBits(a: number, b: number): number {
    let n = 0;
    for (let i = a; i < b; i++) if (this.test(i)) n++;
    return n;
  }

  #clearTail(): void {
    for (let i = this.bits; i < this.bytes.length * 8; i++) {
      const byte = i >>> 3;
      if ((i & 7) === 0) {
        this.bytes.fill(0, byte);
        break;
      }
      this.bytes[byte] = (this.bytes[byte] as number) & ~(1 << (i & 7));
    }
  }

  #recount(): number {
    let n = 0;
    for (const v of this.bytes) n += popcount8(v);
    return n;
  }
}

function popcount8(v: number): number {
  let x = v - ((v >>> 1) & 0x55);
  x = (x & 0x33) + ((x >>> 2) & 0x33);
  return (x + (x >>> 4)) & 0x0f;
}
