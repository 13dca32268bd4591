/**
 * Pure codec: typed PDU ⇄ bytes. `encodePdu` returns a buffer list (header segment incl. AHS and
 * header digest, data segment as given, padding + data digest) so the data is never copied.
 * `decodeBhs` turns a header segment (BHS + AHS, digest already checked) plus a data segment into
 * a typed PDU; it never throws.
 */
import { crc32c } from '../../native/index.js';
import { AhsType, BHS_LENGTH, INITIATOR_OPCODES, RejectReason, TARGET_OPCODES } from './constants.js';
import type { DecodeError, DecodeResult, Pdu } from './types.js';

export interface DigestOptions {
  readonly headerDigest: boolean;
  readonly dataDigest: boolean;
}

export const NO_DIGESTS: DigestOptions = { headerDigest: false, dataDigest: false };
const EMPTY = Buffer.alloc(0);
const PADS = [EMPTY, Buffer.alloc(1), Buffer.alloc(2), Buffer.alloc(3)] as const;

export function padLength(n: number): number {
  return (4 - (n & 3)) & 3;
}

function isidToBuf(b: Buffer, off: number, isid: string): void {
  const hex = isid.padStart(12, '0').slice(-12);
  b.write(hex, off, 6, 'hex');
}

function lunWrite(b: Buffer, lun: bigint): void {
  b.writeBigUInt64BE(BigInt.asUintN(64, lun), 8);
}

/** Serialise the BHS (48 bytes) and any AHS of a PDU. */
/** StatSN, ExpCmdSN, MaxCmdSN: bytes 24–35 of every target PDU that carries them. */
function writeTargetSN(b: Buffer, p: { statSN: number; expCmdSN: number; maxCmdSN: number }): void {
  b.writeUInt32BE(p.statSN >>> 0, 24);
  b.writeUInt32BE(p.expCmdSN >>> 0, 28);
  b.writeUInt32BE(p.maxCmdSN >>> 0, 32);
}

/** CmdSN, ExpStatSN: bytes 24–31 of every initiator PDU that carries them. */
function writeInitiatorSN(b: Buffer, p: { cmdSN: number; expStatSN: number }): void {
  b.writeUInt32BE(p.cmdSN >>> 0, 24);
  b.writeUInt32BE(p.expStatSN >>> 0, 28);
}

function encodeHeader(pdu: Pdu): Buffer {
  let ahs: Buffer[] = [];
  if (pdu.opcode === 0x01) {
    if (pdu.cdb.length > 16) {
      const ext = pdu.cdb.subarray(16);
      const a = Buffer.alloc(4 + ext.length + padLength(ext.length));
      a.writeUInt16BE(ext.length + 1, 0);
      a[2] = AhsType.EXTENDED_CDB;
      ext.copy(a, 4);
      ahs.push(a);
    }
    if (pdu.bidiReadLength !== undefined) {
      const a = Buffer.alloc(8);
      a.writeUInt16BE(5, 0);
      a[2] = AhsType.BIDI_READ_LENGTH;
      a.writeUInt32BE(pdu.bidiReadLength >>> 0, 4);
      ahs.push(a);
    }
  } else {
    ahs = [];
  }
  const ahsLen = ahs.reduce((s, a) => s + a.length, 0);
  const b = Buffer.alloc(BHS_LENGTH + ahsLen);
  b[0] = (pdu.immediate ? 0x40 : 0) | pdu.opcode;
  b[4] = ahsLen >> 2;
  const dl = pdu.data.length;
  b[5] = (dl >> 16) & 0xff;
  b.writeUInt16BE(dl & 0xffff, 6);
  switch (pdu.opcode) {
    case 0x00:
      b[1] = 0x80;
      lunWrite(b, pdu.lun);
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      b.writeUInt32BE(pdu.ttt >>> 0, 20);
      writeInitiatorSN(b, pdu);
      break;
    case 0x01: {
      b[1] = (pdu.final ? 0x80 : 0) | (pdu.read ? 0x40 : 0) | (pdu.write ? 0x20 : 0) | (pdu.attr & 7);
      lunWrite(b, pdu.lun);
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      b.writeUInt32BE(pdu.edtl >>> 0, 20);
      writeInitiatorSN(b, pdu);
      pdu.cdb.copy(b, 32, 0, Math.min(16, pdu.cdb.length));
      let off = BHS_LENGTH;
      for (const a of ahs) {
        a.copy(b, off);
        off += a.length;
      }
      break;
    }
    case 0x02:
      b[1] = 0x80 | (pdu.fn & 0x7f);
      lunWrite(b, pdu.lun);
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      b.writeUInt32BE(pdu.rtt >>> 0, 20);
      writeInitiatorSN(b, pdu);
      b.writeUInt32BE(pdu.refCmdSN >>> 0, 32);
      b.writeUInt32BE(pdu.expDataSN >>> 0, 36);
      break;
    case 0x03:
    case 0x23:
      b[1] = (pdu.transit ? 0x80 : 0) | (pdu.cont ? 0x40 : 0) | ((pdu.csg & 3) << 2) | (pdu.nsg & 3);
      b[2] = pdu.versionMax;
      b[3] = pdu.opcode === 0x03 ? pdu.versionMin : pdu.versionActive;
      isidToBuf(b, 8, pdu.isid);
      b.writeUInt16BE(pdu.tsih & 0xffff, 14);
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      if (pdu.opcode === 0x03) {
        b.writeUInt16BE(pdu.cid & 0xffff, 20);
        writeInitiatorSN(b, pdu);
      } else {
        writeTargetSN(b, pdu);
        b[36] = (pdu.status >> 8) & 0xff;
        b[37] = pdu.status & 0xff;
      }
      break;
    case 0x04:
    case 0x24:
      b[1] = (pdu.final ? 0x80 : 0) | (pdu.cont ? 0x40 : 0);
      lunWrite(b, pdu.lun);
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      b.writeUInt32BE(pdu.ttt >>> 0, 20);
      if (pdu.opcode === 0x04) {
        writeInitiatorSN(b, pdu);
      } else {
        writeTargetSN(b, pdu);
      }
      break;
    case 0x05:
      b[1] = pdu.final ? 0x80 : 0;
      lunWrite(b, pdu.lun);
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      b.writeUInt32BE(pdu.ttt >>> 0, 20);
      b.writeUInt32BE(pdu.expStatSN >>> 0, 28);
      b.writeUInt32BE(pdu.dataSN >>> 0, 36);
      b.writeUInt32BE(pdu.bufferOffset >>> 0, 40);
      break;
    case 0x06:
      b[1] = 0x80 | (pdu.reason & 0x7f);
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      b.writeUInt16BE(pdu.cid & 0xffff, 20);
      writeInitiatorSN(b, pdu);
      break;
    case 0x10:
      b[1] = 0x80 | (pdu.type & 0x0f);
      lunWrite(b, pdu.lun);
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      b.writeUInt32BE(pdu.ttt >>> 0, 20);
      b.writeUInt32BE(pdu.expStatSN >>> 0, 28);
      b.writeUInt32BE(pdu.begRun >>> 0, 40);
      b.writeUInt32BE(pdu.runLength >>> 0, 44);
      break;
    case 0x20:
      b[1] = 0x80;
      lunWrite(b, pdu.lun);
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      b.writeUInt32BE(pdu.ttt >>> 0, 20);
      writeTargetSN(b, pdu);
      break;
    case 0x21:
      b[1] =
        0x80 |
        (pdu.bidiOverflow ? 0x10 : 0) |
        (pdu.bidiUnderflow ? 0x08 : 0) |
        (pdu.overflow ? 0x04 : 0) |
        (pdu.underflow ? 0x02 : 0);
      b[2] = pdu.response;
      b[3] = pdu.status;
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      b.writeUInt32BE(pdu.snackTag >>> 0, 20);
      writeTargetSN(b, pdu);
      b.writeUInt32BE(pdu.expDataSN >>> 0, 36);
      b.writeUInt32BE(pdu.bidiResidual >>> 0, 40);
      b.writeUInt32BE(pdu.residual >>> 0, 44);
      break;
    case 0x22:
      b[1] = 0x80;
      b[2] = pdu.response;
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      writeTargetSN(b, pdu);
      break;
    case 0x25:
      b[1] =
        (pdu.final ? 0x80 : 0) |
        (pdu.ack ? 0x40 : 0) |
        (pdu.overflow ? 0x04 : 0) |
        (pdu.underflow ? 0x02 : 0) |
        (pdu.hasStatus ? 0x01 : 0);
      b[3] = pdu.hasStatus ? pdu.status : 0;
      lunWrite(b, pdu.lun);
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      b.writeUInt32BE(pdu.ttt >>> 0, 20);
      writeTargetSN(b, pdu);
      b.writeUInt32BE(pdu.dataSN >>> 0, 36);
      b.writeUInt32BE(pdu.bufferOffset >>> 0, 40);
      b.writeUInt32BE(pdu.residual >>> 0, 44);
      break;
    case 0x26:
      b[1] = 0x80;
      b[2] = pdu.response;
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      writeTargetSN(b, pdu);
      b.writeUInt16BE(pdu.time2Wait & 0xffff, 40);
      b.writeUInt16BE(pdu.time2Retain & 0xffff, 42);
      break;
    case 0x31:
      b[1] = 0x80;
      lunWrite(b, pdu.lun);
      b.writeUInt32BE(pdu.itt >>> 0, 16);
      b.writeUInt32BE(pdu.ttt >>> 0, 20);
      writeTargetSN(b, pdu);
      b.writeUInt32BE(pdu.r2tSN >>> 0, 36);
      b.writeUInt32BE(pdu.bufferOffset >>> 0, 40);
      b.writeUInt32BE(pdu.desiredLength >>> 0, 44);
      break;
    case 0x32:
      b[1] = 0x80;
      lunWrite(b, pdu.lun);
      b.writeUInt32BE(0xffffffff, 16);
      writeTargetSN(b, pdu);
      b[36] = pdu.event;
      b[37] = pdu.vcode;
      b.writeUInt16BE(pdu.param1 & 0xffff, 38);
      b.writeUInt16BE(pdu.param2 & 0xffff, 40);
      b.writeUInt16BE(pdu.param3 & 0xffff, 42);
      break;
    case 0x3f:
      b[1] = 0x80;
      b[2] = pdu.reason;
      b.writeUInt32BE(0xffffffff, 16);
      writeTargetSN(b, pdu);
      b.writeUInt32BE(pdu.dataSN >>> 0, 36);
      break;
  }
  return b;
}

/**
 * Encode a PDU as a buffer list: [header (+digest)] [data] [padding (+digest)]. The data
 * buffer is passed through untouched (zero-copy).
 */
export function encodePdu(pdu: Pdu, digests: DigestOptions = NO_DIGESTS): Buffer[] {
  const header = encodeHeader(pdu);
  const out: Buffer[] = [];
  if (digests.headerDigest) {
    const h = Buffer.allocUnsafe(header.length + 4);
    header.copy(h, 0);
    h.writeUInt32LE(crc32c(header), header.length);
    out.push(h);
  } else {
    out.push(header);
  }
  const dl = pdu.data.length;
  if (dl > 0) {
    out.push(pdu.data);
    const pad = padLength(dl);
    if (digests.dataDigest) {
      const tail = Buffer.alloc(pad + 4);
      let crc = crc32c(pdu.data);
      if (pad) crc = crc32c(PADS[pad] as Buffer, crc);
      tail.writeUInt32LE(crc, pad);
      out.push(tail);
    } else if (pad) {
      out.push(PADS[pad] as Buffer);
    }
  }
  return out;
}

/** Convenience: one contiguous buffer (tests, the in-test initiator). */
export function encodePduToBuffer(pdu: Pdu, digests: DigestOptions = NO_DIGESTS): Buffer {
  return Buffer.concat(encodePdu(pdu, digests));
}

function fail(
  code: DecodeError['code'],
  message: string,
  bhs: Buffer,
  fatal: boolean,
  reject?: number,
): DecodeError {
  const e: DecodeError = {
    ok: false,
    code,
    message,
    fatal,
    bhs: Buffer.from(bhs.subarray(0, BHS_LENGTH)),
    opcode: (bhs[0] ?? 0) & 0x3f,
    itt: bhs.length >= 20 ? bhs.readUInt32BE(16) : 0xffffffff,
    ...(reject !== undefined ? { reject } : {}),
  };
  return e;
}

function isidOf(b: Buffer): string {
  return b.toString('hex', 8, 14);
}

/**
 * Decode one PDU from its header segment (BHS + AHS, without header digest) and data segment
 * (without padding/digest). `expect` restricts the accepted direction.
 */
export function decodeBhs(
  header: Buffer,
  data: Buffer,
  expect: 'initiator' | 'target' | 'any' = 'any',
): DecodeResult<Pdu> {
  if (header.length < BHS_LENGTH) return fail('invalid-field', 'short BHS', header, true);
  const b = header;
  const opcode = b[0]! & 0x3f;
  const immediate = (b[0]! & 0x40) !== 0;
  const f1 = b[1]!;
  const u32 = (o: number) => b.readUInt32BE(o);
  const lun = b.readBigUInt64BE(8);
  const itt = u32(16);
  if (expect === 'initiator' && !INITIATOR_OPCODES.has(opcode)) {
    return fail(
      TARGET_OPCODES.has(opcode) ? 'wrong-direction' : 'unknown-opcode',
      `opcode 0x${opcode.toString(16)} not valid from an initiator`,
      b,
      false,
      RejectReason.PROTOCOL_ERROR,
    );
  }
  if (expect === 'target' && !TARGET_OPCODES.has(opcode)) {
    return fail('unknown-opcode', `opcode 0x${opcode.toString(16)} not valid from a target`, b, false, 0x04);
  }
  const ahsBytes = b[4]! * 4;
  if (header.length !== BHS_LENGTH + ahsBytes) return fail('bad-ahs', 'AHS length mismatch', b, true);
  if (ahsBytes > 0 && opcode !== 0x01) {
    return fail('bad-ahs', 'AHS on a PDU that carries none', b, false, RejectReason.PROTOCOL_ERROR);
  }
  switch (opcode) {
    case 0x00:
      return {
        ok: true,
        pdu: { opcode, immediate, data, lun, itt, ttt: u32(20), cmdSN: u32(24), expStatSN: u32(28) },
      };
    case 0x01: {
      let cdb = b.subarray(32, 48);
      let bidiReadLength: number | undefined;
      let off = BHS_LENGTH;
      while (off < header.length) {
        if (off + 4 > header.length) return fail('bad-ahs', 'truncated AHS', b, true);
        const len = b.readUInt16BE(off);
        const type = b[off + 2]!;
        const total = 3 + len + padLength(3 + len);
        if (len < 1 || off + total > header.length) return fail('bad-ahs', 'bad AHS length', b, true);
        if (type === AhsType.EXTENDED_CDB) {
          const ext = b.subarray(off + 4, off + 3 + len);
          cdb = Buffer.concat([cdb, ext]);
        } else if (type === AhsType.BIDI_READ_LENGTH) {
          if (len !== 5) return fail('bad-ahs', 'bad bidi AHS', b, false, RejectReason.INVALID_PDU_FIELD);
          bidiReadLength = u32(off + 4);
        } else {
          return fail('bad-ahs', `unknown AHS type ${type}`, b, false, RejectReason.INVALID_PDU_FIELD);
        }
        off += total;
      }
      return {
        ok: true,
        pdu: {
          opcode,
          immediate,
          data,
          final: (f1 & 0x80) !== 0,
          read: (f1 & 0x40) !== 0,
          write: (f1 & 0x20) !== 0,
          attr: f1 & 7,
          lun,
          itt,
          edtl: u32(20),
          cmdSN: u32(24),
          expStatSN: u32(28),
          cdb,
          ...(bidiReadLength !== undefined ? { bidiReadLength } : {}),
        },
      };
    }
    case 0x02:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate,
          data,
          fn: f1 & 0x7f,
          lun,
          itt,
          rtt: u32(20),
          cmdSN: u32(24),
          expStatSN: u32(28),
          refCmdSN: u32(32),
          expDataSN: u32(36),
        },
      };
    case 0x03:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate,
          data,
          transit: (f1 & 0x80) !== 0,
          cont: (f1 & 0x40) !== 0,
          csg: (f1 >> 2) & 3,
          nsg: f1 & 3,
          versionMax: b[2]!,
          versionMin: b[3]!,
          isid: isidOf(b),
          tsih: b.readUInt16BE(14),
          itt,
          cid: b.readUInt16BE(20),
          cmdSN: u32(24),
          expStatSN: u32(28),
        },
      };
    case 0x04:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate,
          data,
          final: (f1 & 0x80) !== 0,
          cont: (f1 & 0x40) !== 0,
          lun,
          itt,
          ttt: u32(20),
          cmdSN: u32(24),
          expStatSN: u32(28),
        },
      };
    case 0x05:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate,
          data,
          final: (f1 & 0x80) !== 0,
          lun,
          itt,
          ttt: u32(20),
          expStatSN: u32(28),
          dataSN: u32(36),
          bufferOffset: u32(40),
        },
      };
    case 0x06:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate,
          data,
          reason: f1 & 0x7f,
          itt,
          cid: b.readUInt16BE(20),
          cmdSN: u32(24),
          expStatSN: u32(28),
        },
      };
    case 0x10:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate,
          data,
          type: f1 & 0x0f,
          lun,
          itt,
          ttt: u32(20),
          expStatSN: u32(28),
          begRun: u32(40),
          runLength: u32(44),
        },
      };
    case 0x20:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate: false,
          data,
          lun,
          itt,
          ttt: u32(20),
          statSN: u32(24),
          expCmdSN: u32(28),
          maxCmdSN: u32(32),
        },
      };
    case 0x21:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate: false,
          data,
          bidiOverflow: (f1 & 0x10) !== 0,
          bidiUnderflow: (f1 & 0x08) !== 0,
          overflow: (f1 & 0x04) !== 0,
          underflow: (f1 & 0x02) !== 0,
          response: b[2]!,
          status: b[3]!,
          itt,
          snackTag: u32(20),
          statSN: u32(24),
          expCmdSN: u32(28),
          maxCmdSN: u32(32),
          expDataSN: u32(36),
          bidiResidual: u32(40),
          residual: u32(44),
        },
      };
    case 0x22:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate: false,
          data,
          response: b[2]!,
          itt,
          statSN: u32(24),
          expCmdSN: u32(28),
          maxCmdSN: u32(32),
        },
      };
    case 0x23:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate: false,
          data,
          transit: (f1 & 0x80) !== 0,
          cont: (f1 & 0x40) !== 0,
          csg: (f1 >> 2) & 3,
          nsg: f1 & 3,
          versionMax: b[2]!,
          versionActive: b[3]!,
          isid: isidOf(b),
          tsih: b.readUInt16BE(14),
          itt,
          statSN: u32(24),
          expCmdSN: u32(28),
          maxCmdSN: u32(32),
          status: (b[36]! << 8) | b[37]!,
        },
      };
    case 0x24:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate: false,
          data,
          final: (f1 & 0x80) !== 0,
          cont: (f1 & 0x40) !== 0,
          lun,
          itt,
          ttt: u32(20),
          statSN: u32(24),
          expCmdSN: u32(28),
          maxCmdSN: u32(32),
        },
      };
    case 0x25:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate: false,
          data,
          final: (f1 & 0x80) !== 0,
          ack: (f1 & 0x40) !== 0,
          overflow: (f1 & 0x04) !== 0,
          underflow: (f1 & 0x02) !== 0,
          hasStatus: (f1 & 0x01) !== 0,
          status: (f1 & 0x01) !== 0 ? b[3]! : 0,
          lun,
          itt,
          ttt: u32(20),
          statSN: u32(24),
          expCmdSN: u32(28),
          maxCmdSN: u32(32),
          dataSN: u32(36),
          bufferOffset: u32(40),
          residual: u32(44),
        },
      };
    case 0x26:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate: false,
          data,
          response: b[2]!,
          itt,
          statSN: u32(24),
          expCmdSN: u32(28),
          maxCmdSN: u32(32),
          time2Wait: b.readUInt16BE(40),
          time2Retain: b.readUInt16BE(42),
        },
      };
    case 0x31:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate: false,
          data,
          lun,
          itt,
          ttt: u32(20),
          statSN: u32(24),
          expCmdSN: u32(28),
          maxCmdSN: u32(32),
          r2tSN: u32(36),
          bufferOffset: u32(40),
          desiredLength: u32(44),
        },
      };
    case 0x32:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate: false,
          data,
          lun,
          statSN: u32(24),
          expCmdSN: u32(28),
          maxCmdSN: u32(32),
          event: b[36]!,
          vcode: b[37]!,
          param1: b.readUInt16BE(38),
          param2: b.readUInt16BE(40),
          param3: b.readUInt16BE(42),
        },
      };
    case 0x3f:
      return {
        ok: true,
        pdu: {
          opcode,
          immediate: false,
          data,
          reason: b[2]!,
          statSN: u32(24),
          expCmdSN: u32(28),
          maxCmdSN: u32(32),
          dataSN: u32(36),
        },
      };
    default:
      return fail(
        'unknown-opcode',
        `unknown opcode 0x${opcode.toString(16)}`,
        b,
        false,
        RejectReason.COMMAND_NOT_SUPPORTED,
      );
  }
}

/** SAM LUN field → flat LUN number (peripheral and flat addressing). */
export function lunToNumber(lun: bigint): number {
  const hi = Number((lun >> 48n) & 0xffffn);
  const method = hi >> 14;
  if (method === 0) return hi & 0xff; // peripheral device addressing, bus 0
  if (method === 1) return hi & 0x3fff; // flat space addressing
  return -1;
}

/** Flat LUN number → SAM LUN field (peripheral for < 256, else flat space). */
export function numberToLun(n: number): bigint {
  const hi = n < 256 ? n : 0x4000 | (n & 0x3fff);
  return BigInt(hi) << 48n;
}
