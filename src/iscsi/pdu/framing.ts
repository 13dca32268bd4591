/**
 * Framing reader: a streaming parser that turns the byte stream of a connection into PDUs.
 *
 * Bytes are consumed as they arrive (`feed`), so the caller may hand in a buffer it reuses for the
 * next socket read (Node's `onread` static buffer: no allocation per read). Headers are collected
 * in a small buffer; a data segment goes, as it arrives, to its final place: for SCSI Data-Out and
 * SCSI Command immediate data the `place` hook may name the command's own write buffer (one copy,
 * socket → write buffer); otherwise a buffer of the segment's size (or, for `stable` input wholly
 * holding the segment, a view of it: zero-copy). Digests are checked incrementally (CRC32C is
 * chained over the pieces). `push` + `next` is the pull-style form over the same parser.
 * Digests and the receive limit are settable as the login progresses (they apply from the next
 * PDU's header on).
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

/**
 * Where the data segment of a SCSI Data-Out or of a SCSI Command (immediate data), given its BHS,
 * should land: a view of exactly `length` bytes, or undefined to get it the ordinary way. Called
 * once the PDU's header is complete and checked, after the PDUs before it were handed out; the
 * data is written into the view as it arrives, and the PDU is handed out when it is complete.
 */
export type DataPlacement = (bhs: Buffer, length: number) => Buffer | undefined;

/** Largest header: BHS + 255 words of AHS + header digest. */
const MAX_HEADER = BHS_LENGTH + 255 * 4 + 4;

/** Where the parser is within the current PDU. */
const PHASE = { HEADER: 0, DATA: 1, TAIL: 2 } as const;
type Phase = (typeof PHASE)[keyof typeof PHASE];

export class FrameReader {
  /** See {@link DataPlacement}. */
  place: DataPlacement | undefined;
  headerDigest: boolean;
  dataDigest: boolean;
  maxRecvDataSegmentLength: number;
  readonly expect: 'initiator' | 'target' | 'any';
  #dead = false;
  #lastBhs: Buffer | undefined;
  /** Pull-style results not yet taken by next(), each with the BHS it came with. */
  #queue: [DecodeResult<Pdu>, Buffer | undefined][] = [];
  #queueHead = 0;

  // The PDU being parsed.
  #phase: Phase = PHASE.HEADER;
  readonly #hdr = Buffer.allocUnsafe(MAX_HEADER);
  #hdrHave = 0;
  /** Header bytes needed (BHS first, then BHS + AHS + header digest). */
  #hdrNeed = BHS_LENGTH;
  #headerLen = 0;
  #header: Buffer | undefined;
  #dsl = 0;
  #data: Buffer | undefined;
  /** #data is a view of the (stable) bytes being fed: nothing to copy. */
  #dataInPlace = false;
  #dataHave = 0;
  #crc = 0;
  /** Pad bytes and data digest of the segment (≤ 7 bytes). */
  readonly #tail = Buffer.alloc(8);
  #tailHave = 0;
  #tailNeed = 0;
  #digest = false;

  constructor(opts: FrameReaderOptions = {}) {
    this.headerDigest = opts.headerDigest ?? false;
    this.dataDigest = opts.dataDigest ?? false;
    this.maxRecvDataSegmentLength = opts.maxRecvDataSegmentLength ?? 8192;
    this.expect = opts.expect ?? 'initiator';
  }

  /** The 48-byte BHS of the PDU last handed out (for Reject data segments). */
  get lastBhs(): Buffer | undefined {
    return this.#lastBhs;
  }

  /** Pull style: queue the PDUs in `chunk` (kept by reference when a segment lies within it). */
  push(chunk: Buffer): void {
    if (this.#dead || chunk.length === 0) return;
    this.feed(
      chunk,
      (r) => {
        this.#queue.push([r, r.ok ? this.#lastBhs : undefined]);
      },
      true,
    );
  }

  /**
   * Next whole PDU, `undefined` when more bytes are needed, or a DecodeError. After a fatal
   * error the reader yields nothing more.
   */
  next(): DecodeResult<Pdu> | undefined {
    if (this.#queueHead >= this.#queue.length) return undefined;
    const [r, bhs] = this.#queue[this.#queueHead++]!;
    if (this.#queueHead === this.#queue.length) {
      this.#queue = [];
      this.#queueHead = 0;
    }
    this.#lastBhs = bhs;
    return r;
  }

  /**
   * Parses `bytes` at once, calling `emit` for every PDU (or error) completed in them. The bytes
   * are not referenced after return unless `stable` (then a data segment wholly inside them is
   * handed out as a view). `emit` returning false stops parsing for good (the connection ends).
   */
  feed(bytes: Buffer, emit: (r: DecodeResult<Pdu>) => boolean | void, stable = false): void {
    let at = 0;
    const n = bytes.length;
    while (at < n && !this.#dead) {
      if (this.#phase === PHASE.HEADER) {
        const take = Math.min(this.#hdrNeed - this.#hdrHave, n - at);
        bytes.copy(this.#hdr, this.#hdrHave, at, at + take);
        this.#hdrHave += take;
        at += take;
        if (this.#hdrHave < this.#hdrNeed) return;
        if (this.#hdrNeed === BHS_LENGTH) {
          const ahs = this.#hdr[4]! * 4;
          this.#headerLen = BHS_LENGTH + ahs;
          this.#hdrNeed = this.#headerLen + (this.headerDigest ? 4 : 0);
          if (this.#hdrHave < this.#hdrNeed) continue;
        }
        const r = this.#headerDone(bytes, at, stable);
        if (r !== undefined && emit(r) === false) {
          this.#dead = true;
          return;
        }
        continue;
      }
      if (this.#phase === PHASE.DATA) {
        const data = this.#data!;
        const take = Math.min(this.#dsl - this.#dataHave, n - at);
        if (!this.#dataInPlace) bytes.copy(data, this.#dataHave, at, at + take);
        if (this.#digest) this.#crc = crc32c(data.subarray(this.#dataHave, this.#dataHave + take), this.#crc);
        this.#dataHave += take;
        at += take;
        if (this.#dataHave < this.#dsl) return;
        this.#phase = PHASE.TAIL;
        if (this.#tailNeed > 0) continue;
      } else {
        const take = Math.min(this.#tailNeed - this.#tailHave, n - at);
        bytes.copy(this.#tail, this.#tailHave, at, at + take);
        this.#tailHave += take;
        at += take;
        if (this.#tailHave < this.#tailNeed) return;
      }
      const r = this.#segmentDone();
      if (emit(r) === false) {
        this.#dead = true;
        return;
      }
    }
  }

  /** The header is complete: check it, then emit (no data) or prepare to receive the data. */
  #headerDone(bytes: Buffer, at: number, stable: boolean): DecodeResult<Pdu> | undefined {
    const headerLen = this.#headerLen;
    const hdr = this.#hdr;
    const bhsView = hdr.subarray(0, BHS_LENGTH);
    if (this.#hdrNeed > headerLen && crc32c(hdr.subarray(0, headerLen)) !== hdr.readUInt32LE(headerLen)) {
      return this.#fatal({
        ok: false,
        code: 'header-digest',
        message: 'header digest mismatch',
        fatal: true,
        bhs: Buffer.from(bhsView),
      });
    }
    const dsl = (hdr[5]! << 16) | hdr.readUInt16BE(6);
    if (dsl > this.maxRecvDataSegmentLength) {
      return this.#fatal({
        ok: false,
        code: 'oversized-segment',
        message: `data segment ${dsl} exceeds MaxRecvDataSegmentLength ${this.maxRecvDataSegmentLength}`,
        fatal: true,
        reject: RejectReason.PROTOCOL_ERROR,
        bhs: Buffer.from(bhsView),
        opcode: hdr[0]! & 0x3f,
        itt: hdr.readUInt32BE(16),
      });
    }
    // The PDU keeps its own copy of the header (decoded fields such as the CDB are views of it).
    const header = Buffer.from(hdr.subarray(0, headerLen));
    this.#header = header;
    this.#hdrHave = 0;
    this.#hdrNeed = BHS_LENGTH;
    this.#dsl = dsl;
    this.#dataHave = 0;
    this.#crc = 0;
    this.#tailHave = 0;
    this.#digest = this.dataDigest && dsl > 0;
    this.#tailNeed = padLength(dsl) + (this.#digest ? 4 : 0);
    if (dsl === 0) {
      this.#data = EMPTY;
      this.#phase = PHASE.TAIL;
      return this.#tailNeed === 0 ? this.#segmentDone() : undefined;
    }
    let data: Buffer | undefined;
    const opcode = header[0]! & 0x3f;
    if (this.place !== undefined && (opcode === 0x05 || opcode === 0x01)) {
      const d = this.place(header.subarray(0, BHS_LENGTH), dsl);
      if (d !== undefined && d.length === dsl) data = d;
    }
    this.#dataInPlace = false;
    if (data === undefined) {
      this.#dataInPlace = stable && bytes.length - at >= dsl;
      data = this.#dataInPlace ? bytes.subarray(at, at + dsl) : Buffer.allocUnsafe(dsl);
    }
    this.#data = data;
    this.#phase = PHASE.DATA;
    return undefined;
  }

  /** Data segment, padding and digest are in: check the digest and decode. */
  #segmentDone(): DecodeResult<Pdu> {
    const header = this.#header!;
    const data = this.#data!;
    this.#phase = PHASE.HEADER;
    this.#header = undefined;
    this.#data = undefined;
    const bhs = header.subarray(0, BHS_LENGTH);
    this.#lastBhs = bhs;
    if (this.#digest) {
      const pad = this.#tailNeed - 4;
      const crc = pad > 0 ? crc32c(this.#tail.subarray(0, pad), this.#crc) : this.#crc;
      if (crc !== this.#tail.readUInt32LE(pad)) {
        return {
          ok: false,
          code: 'data-digest',
          message: 'data digest mismatch',
          fatal: false,
          reject: RejectReason.DATA_DIGEST_ERROR,
          bhs,
          opcode: header[0]! & 0x3f,
          itt: header.readUInt32BE(16),
        };
      }
    }
    const res = decodeBhs(header, data, this.expect);
    if (!res.ok) return res.fatal ? this.#fatal(res) : res;
    return res;
  }

  #fatal(e: DecodeError): DecodeError {
    this.#dead = true;
    this.#header = undefined;
    this.#data = undefined;
    return e;
  }
}

const EMPTY: Buffer = Buffer.alloc(0);
