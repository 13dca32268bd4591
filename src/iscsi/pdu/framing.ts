/**
 * Framing reader: accumulates socket chunks and yields whole PDUs. When a PDU lies within one
 * chunk its data segment is a slice of that chunk (zero-copy); PDUs straddling chunks are
 * assembled once. Digests and the receive limit are settable as the login progresses.
 */
import { crc32c } from '../../native/index.js';
import { decodeBhs, padLength } from './codec.js';
import { BHS_LENGTH, RejectReason } from './constants.js';
import type { DecodeError, DecodeResult, Pdu } from './types.js';

export interface FrameReaderOptions {
  headerDigest?: boolean;
  dataDigest?: boolean;
  /** Largest data segment accepted (our declared MaxRecvDataSegmentLength). */
  maxRecvDataSegmentLength?: number;
  /** Which side's PDUs this reader accepts. */
  expect?: 'initiator' | 'target' | 'any';
}

export class FrameReader {
  headerDigest: boolean;
  dataDigest: boolean;
  maxRecvDataSegmentLength: number;
  readonly expect: 'initiator' | 'target' | 'any';
  #chunks: Buffer[] = [];
  #buffered = 0;
  #dead = false;
  #lastBhs: Buffer | undefined;

  constructor(opts: FrameReaderOptions = {}) {
    this.headerDigest = opts.headerDigest ?? false;
    this.dataDigest = opts.dataDigest ?? false;
    this.maxRecvDataSegmentLength = opts.maxRecvDataSegmentLength ?? 8192;
    this.expect = opts.expect ?? 'initiator';
  }

  /** The 48-byte BHS of the PDU last returned by next() (for Reject data segments). */
  get lastBhs(): Buffer | undefined {
    return this.#lastBhs;
  }

  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): void {
    if (this.#dead || chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /** Peek `n` bytes starting at the front (copies only when they straddle chunks). */
  #peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    for (const c of this.#chunks) {
      const take = Math.min(c.length, n - off);
      c.copy(out, off, 0, take);
      off += take;
      if (off === n) break;
    }
    return out;
  }

  #consume(n: number): void {
    this.#buffered -= n;
    while (n > 0) {
      const first = this.#chunks[0]!;
      if (first.length <= n) {
        n -= first.length;
        this.#chunks.shift();
      } else {
        this.#chunks[0] = first.subarray(n);
        n = 0;
      }
    }
  }

  /**
   * Next whole PDU, `undefined` when more bytes are needed, or a DecodeError. After a fatal
   * error the reader yields nothing more.
   */
  next(): DecodeResult<Pdu> | undefined {
    if (this.#dead || this.#buffered < BHS_LENGTH) return undefined;
    const bhs = this.#peek(BHS_LENGTH);
    const ahsLen = bhs[4]! * 4;
    const dsl = (bhs[5]! << 16) | bhs.readUInt16BE(6);
    const hd = this.headerDigest ? 4 : 0;
    const headerLen = BHS_LENGTH + ahsLen;
    // Check the header digest before trusting any length field.
    if (this.#buffered < headerLen + hd) return undefined;
    const header = this.#peek(headerLen + hd);
    if (hd && crc32c(header.subarray(0, headerLen)) !== header.readUInt32LE(headerLen)) {
      return this.#fatal({
        ok: false,
        code: 'header-digest',
        message: 'header digest mismatch',
        fatal: true,
        bhs: Buffer.from(bhs),
      });
    }
    if (dsl > this.maxRecvDataSegmentLength) {
      return this.#fatal({
        ok: false,
        code: 'oversized-segment',
        message: `data segment ${dsl} exceeds MaxRecvDataSegmentLength ${this.maxRecvDataSegmentLength}`,
        fatal: true,
        reject: RejectReason.PROTOCOL_ERROR,
        bhs: Buffer.from(bhs),
        opcode: bhs[0]! & 0x3f,
        itt: bhs.readUInt32BE(16),
      });
    }
    const pad = padLength(dsl);
    const dd = this.dataDigest && dsl > 0 ? 4 : 0;
    const total = headerLen + hd + dsl + pad + dd;
    if (this.#buffered < total) return undefined;
    const whole = this.#peek(total);
    const headerSeg = whole.subarray(0, headerLen);
    this.#lastBhs = whole.subarray(0, BHS_LENGTH);
    const data = whole.subarray(headerLen + hd, headerLen + hd + dsl);
    if (dd) {
      const crc = crc32c(whole.subarray(headerLen + hd, headerLen + hd + dsl + pad));
      if (crc !== whole.readUInt32LE(headerLen + hd + dsl + pad)) {
        this.#consume(total);
        return {
          ok: false,
          code: 'data-digest',
          message: 'data digest mismatch',
          fatal: false,
          reject: RejectReason.DATA_DIGEST_ERROR,
          bhs: Buffer.from(bhs),
          opcode: bhs[0]! & 0x3f,
          itt: bhs.readUInt32BE(16),
        };
      }
    }
    this.#consume(total);
    const res = decodeBhs(headerSeg, data, this.expect);
    if (!res.ok && res.fatal) return this.#fatal(res);
    return res;
  }

  #fatal(e: DecodeError): DecodeError {
    this.#dead = true;
    this.#chunks = [];
    this.#buffered = 0;
    return e;
  }
}
