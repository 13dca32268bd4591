/**
 * SPC-4 primary commands: INQUIRY (+ VPD), REPORT LUNS, REQUEST SENSE, TEST UNIT READY,
 * RESERVE/RELEASE(6/10), PREVENT ALLOW MEDIUM REMOVAL, REPORT SUPPORTED OPERATION CODES and
 * REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS.
 */

import { atomicSupported, maxAtomicBlocks } from './atomic.js';
import {
  type BaseContext,
  type CommandContext,
  type CommandDescriptor,
  dataIn,
  GOOD,
  maxTransferBlocks,
  type Outcome,
} from './command.js';
import type { LogicalUnit } from './lu.js';
import { Asc, buildSense, check, invalidField, SenseKey } from './sense.js';
import { ScsiStatus } from './types.js';
import { thirdPartyCopyPage } from './xcopy.js';

/** Version descriptors (SPC-4 table 30): SAM-5, SPC-4, SBC-3, iSCSI. */
export const VERSION_DESCRIPTORS = [0x00a0, 0x0460, 0x04c0, 0x0960] as const;

/** Fixed OUI-like prefix of our NAA 6 designators ("LUN" in ASCII). */
export const NAA_PREFIX = 0x4c554e;

export const MAX_UNMAP_LBA_COUNT = 0x100000;
export const MAX_UNMAP_DESCRIPTORS = 256;
export const MAX_COMPARE_AND_WRITE_BLOCKS = 255;

const ascii = (s: string, len: number): Buffer => {
  const b = Buffer.alloc(len, 0x20);
  b.write(s.replace(/[^\x20-\x7e]/g, '?').slice(0, len), 'ascii');
  return b;
};

const PQ_NOT_CONNECTED = 0x7f; // peripheral qualifier 3, device type 0x1f

function standardInquiry(lu: LogicalUnit | undefined, explicitAlua = false): Buffer {
  const b = Buffer.alloc(96);
  b[0] = lu ? 0x00 : PQ_NOT_CONNECTED; // direct access block device
  b[1] = lu?.removable ? 0x80 : 0x00;
  b[2] = 0x06; // SPC-4
  b[3] = 0x12; // HISUP, response data format 2
  b[4] = b.length - 5;
  // TPGS: implicit ALUA always (01b), explicit too when SET TARGET PORT GROUPS is on (11b); 3PC
  b[5] = lu ? (explicitAlua ? 0x30 : 0x10) | 0x08 : 0x00;
  b[6] = 0x00;
  b[7] = 0x02; // CMDQUE
  ascii(lu?.vendor ?? 'LUNAR', 8).copy(b, 8);
  ascii(lu?.product ?? 'VIRTUAL-DISK', 16).copy(b, 16);
  ascii(lu?.revision ?? '0001', 4).copy(b, 32);
  VERSION_DESCRIPTORS.forEach((v, i) => {
    b.writeUInt16BE(v, 58 + 2 * i);
  });
  return b;
}

function vpd(code: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h[1] = code;
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}

const designator = (b0: number, b1: number, value: Buffer): Buffer => {
  const h = Buffer.from([b0, b1, 0, value.length]);
  return Buffer.concat([h, value]);
};

/** SCSI name string: UTF-8, NUL-terminated, padded to a multiple of 4. */
const nameString = (s: string): Buffer => {
  const raw = Buffer.from(s, 'utf8');
  const len = (raw.length + 1 + 3) & ~3;
  const b = Buffer.alloc(len);
  raw.copy(b);
  return b;
};

export function naaDesignator(lu: LogicalUnit): Buffer {
  const v = Buffer.alloc(16);
  v.writeBigUInt64BE((6n << 60n) | (BigInt(NAA_PREFIX) << 36n), 0);
  v.writeBigUInt64BE(BigInt(`0x${lu.config.id}`), 8);
  return v;
}

function deviceIdentification(ctx: BaseContext, lu: LogicalUnit): Buffer {
  const n = ctx.nexus;
  const port = Buffer.alloc(4);
  port.writeUInt16BE(n.relativeTargetPortId & 0xffff, 2);
  const group = Buffer.alloc(4);
  group.writeUInt16BE(n.portalGroupTag & 0xffff, 2);
  const t10 = Buffer.concat([ascii(lu.vendor, 8), Buffer.from(lu.config.id.toLowerCase(), 'ascii')]);
  const tpgt = `0x${(n.portalGroupTag & 0xffff).toString(16).padStart(4, '0')}`;
  return vpd(
    0x83,
    Buffer.concat([
      designator(0x01, 0x03, naaDesignator(lu)), // binary, LU, NAA
      designator(0x02, 0x01, t10), // ASCII, LU, T10 vendor id
      designator(0x51, 0x94, port), // iSCSI, binary, PIV, target port, relative target port
      designator(0x51, 0x95, group), // iSCSI, binary, PIV, target port, target port group
      designator(0x53, 0x98, nameString(`${n.targetName},t,${tpgt}`)), // target port name
      designator(0x53, 0xa8, nameString(n.targetName)), // target device name
    ]),
  );
}

function blockLimits(lu: LogicalUnit, supportsCaw: boolean): Buffer {
  const atomic = atomicSupported(lu);
  const b = Buffer.alloc(0x3c);
  // offsets below are page offsets minus the 4-byte header
  b[0] = 0x00; // WSNZ 0: WRITE SAME with 0 blocks writes to the end of the medium
  b[1] = supportsCaw ? MAX_COMPARE_AND_WRITE_BLOCKS : 0;
  b.writeUInt16BE(1 << lu.lbppbExponent, 2); // optimal transfer length granularity
  b.writeUInt32BE(maxTransferBlocks(lu), 4);
  b.writeUInt32BE(0, 8); // optimal transfer length: not reported
  b.writeUInt32BE(maxTransferBlocks(lu), 12); // maximum prefetch length
  if (lu.thin) {
    b.writeUInt32BE(MAX_UNMAP_LBA_COUNT, 16);
    b.writeUInt32BE(MAX_UNMAP_DESCRIPTORS, 20);
    b.writeUInt32BE(1 << lu.lbppbExponent, 24); // optimal unmap granularity
  }
  b.writeBigUInt64BE(0n, 32); // maximum write same length: not reported
  if (atomic) {
    b.writeUInt32BE(Math.min(maxAtomicBlocks(lu), maxTransferBlocks(lu)), 40); // maximum atomic transfer length
    b.writeUInt32BE(1, 44); // atomic alignment
    b.writeUInt32BE(1, 48); // atomic transfer length granularity
    // maximum atomic transfer length with atomic boundary, maximum atomic boundary size: 0
  }
  return vpd(0xb0, b);
}

function blockCharacteristics(lu: LogicalUnit): Buffer {
  const b = Buffer.alloc(0x3c);
  b.writeUInt16BE(0x0001, 0); // non-rotating medium
  // WABEREQ 01b: after a BLOCK ERASE sanitize, reads succeed (deallocated blocks read zeros)
  if (lu.thin) b[3] = 0x40;
  return vpd(0xb1, b);
}

function logicalBlockProvisioning(lu: LogicalUnit): Buffer {
  const b = Buffer.alloc(4);
  if (lu.thin) {
    b[1] = 0x80 | 0x40 | 0x20 | 0x04; // LBPU, LBPWS, LBPWS10, LBPRZ
    b[2] = 0x02; // thin provisioned
  }
  return vpd(0xb2, b);
}

export function inquiry(ctx: BaseContext, lu: LogicalUnit | undefined): Outcome {
  const { cdb } = ctx;
  const evpd = ((cdb[1] ?? 0) & 0x01) !== 0;
  const page = cdb[2] ?? 0;
  const alloc = cdb.readUInt16BE(3);
  if (!evpd) {
    if (page !== 0) throw invalidField(2);
    return dataIn(standardInquiry(lu, ctx.target.alua.explicit), alloc);
  }
  if (!lu) throw check(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED);
  const supportsCaw = ctx.target.supported(lu).some((d) => d.opcode === 0x89);
  const pages: Record<number, () => Buffer> = {
    0: () => vpd(0x00, Buffer.from(Object.keys(pages).map(Number))),
    128: () => vpd(0x80, Buffer.from(lu.serial, 'ascii')),
    131: () => deviceIdentification(ctx, lu),
    176: () => blockLimits(lu, supportsCaw),
    177: () => blockCharacteristics(lu),
    178: () => logicalBlockProvisioning(lu),
    143: () => vpd(0x8f, thirdPartyCopyPage(lu)),
  };
  const build = pages[page];
  if (!build) throw invalidField(2);
  const data = build();
  data[0] = 0x00;
  return dataIn(data, alloc);
}

/** LUN field of REPORT LUNS: peripheral device addressing below 256, flat space above. */
export function encodeLun(lun: number): Buffer {
  const b = Buffer.alloc(8);
  if (lun < 256) b[1] = lun;
  else {
    b[0] = 0x40 | ((lun >> 8) & 0x3f);
    b[1] = lun & 0xff;
  }
  return b;
}

export function reportLuns(ctx: BaseContext): Outcome {
  const { cdb } = ctx;
  const select = cdb[2] ?? 0;
  const alloc = cdb.readUInt32BE(6);
  if (alloc < 16) throw invalidField(6);
  let luns: readonly number[];
  if (select === 0x00 || select === 0x02) luns = ctx.target.luns();
  else if (select === 0x01) luns = [];
  else throw invalidField(2);
  const h = Buffer.alloc(8);
  h.writeUInt32BE(luns.length * 8, 0);
  return dataIn(Buffer.concat([h, ...luns.map(encodeLun)]), alloc);
}

export function requestSense(ctx: BaseContext, lu: LogicalUnit | undefined): Outcome {
  const { cdb } = ctx;
  const desc = ((cdb[1] ?? 0) & 0x01) !== 0;
  const alloc = cdb[4] ?? 0;
  let key: SenseKey = SenseKey.NO_SENSE;
  let code: number = Asc.NO_ADDITIONAL_SENSE;
  if (!lu) {
    key = SenseKey.ILLEGAL_REQUEST;
    code = Asc.LOGICAL_UNIT_NOT_SUPPORTED;
  } else {
    const ua = lu.sanitizing ? undefined : lu.takeUa(ctx.nexus.key);
    if (lu.sanitizing) {
      key = SenseKey.NOT_READY;
      code = Asc.LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS;
    } else if (ua !== undefined) {
      key = SenseKey.UNIT_ATTENTION;
      code = ua;
    } else if (!lu.loaded) {
      key = SenseKey.NOT_READY;
      code = Asc.MEDIUM_NOT_PRESENT;
    }
  }
  return dataIn(buildSense({ key, code }, desc), alloc);
}

export const testUnitReady = (): Outcome => GOOD;

export function reserve(ctx: CommandContext): Outcome {
  const { lu, nexus } = ctx;
  if (lu.reservedBy !== undefined && lu.reservedBy !== nexus.key)
    return { status: ScsiStatus.RESERVATION_CONFLICT };
  lu.reservedBy = nexus.key;
  return GOOD;
}

export function release(ctx: CommandContext): Outcome {
  const { lu, nexus } = ctx;
  if (lu.reservedBy === nexus.key) lu.reservedBy = undefined;
  return GOOD;
}

export function preventAllow(ctx: CommandContext): Outcome {
  const { cdb, lu, nexus } = ctx;
  const prevent = (cdb[4] ?? 0) & 0x03;
  if (prevent > 1) throw invalidField(4, 1);
  if (prevent) lu.preventers.add(nexus.key);
  else lu.preventers.delete(nexus.key);
  return GOOD;
}

// ---------------------------------------------------------------------------------------------
// REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS

function timeoutsDescriptor(d: CommandDescriptor): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(0x0a, 0);
  b.writeUInt32BE(d.timeout?.nominal ?? 0, 4);
  b.writeUInt32BE(d.timeout?.recommended ?? 30, 8);
  return b;
}

export function reportSupportedOpcodes(ctx: CommandContext): Outcome {
  const { cdb, lu, target } = ctx;
  const rctd = ((cdb[2] ?? 0) & 0x80) !== 0;
  const options = (cdb[2] ?? 0) & 0x07;
  const opcode = cdb[3] ?? 0;
  const sa = cdb.readUInt16BE(4);
  const alloc = cdb.readUInt32BE(6);
  const supported = target.supported(lu);
  if (options === 0) {
    const parts = supported.map((d) => {
      const b = Buffer.alloc(8);
      b[0] = d.opcode;
      b.writeUInt16BE(d.sa ?? 0, 2);
      b[5] = (rctd ? 0x02 : 0) | (d.sa !== undefined ? 0x01 : 0); // CTDP, SERVACTV
      b.writeUInt16BE(d.cdbLength, 6);
      return rctd ? Buffer.concat([b, timeoutsDescriptor(d)]) : b;
    });
    const body = Buffer.concat(parts);
    const h = Buffer.alloc(4);
    h.writeUInt32BE(body.length, 0);
    return dataIn(Buffer.concat([h, body]), alloc);
  }
  const hasSa = target.hasServiceActions(opcode);
  let wantSa: number | undefined;
  if (options === 1) {
    if (hasSa) throw invalidField(2, 2);
    if (sa !== 0) throw invalidField(4);
  } else if (options === 2) {
    if (!hasSa) throw invalidField(2, 2);
    wantSa = sa;
  } else if (options === 3) {
    if (hasSa) wantSa = sa;
  } else {
    throw invalidField(2, 2);
  }
  const d = supported.find((x) => x.opcode === opcode && x.sa === wantSa);
  const h = Buffer.alloc(4);
  if (!d) {
    h[1] = 0x01; // SUPPORT 001b: not supported
    return dataIn(h, alloc);
  }
  h[1] = (rctd ? 0x80 : 0) | 0x03; // CTDP, SUPPORT 011b: supported as in the standard
  h.writeUInt16BE(d.cdbLength, 2);
  const parts: Buffer[] = [h, Buffer.from(d.usage)];
  if (rctd) parts.push(timeoutsDescriptor(d));
  return dataIn(Buffer.concat(parts), alloc);
}

export function reportSupportedTmfs(ctx: CommandContext): Outcome {
  const { cdb } = ctx;
  const repd = ((cdb[2] ?? 0) & 0x80) !== 0;
  const alloc = cdb.readUInt32BE(6);
  if (alloc < 4) throw invalidField(6);
  const b = Buffer.alloc(repd ? 16 : 4);
  b[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x02; // ATS, ATSS, CTSS, LURS, TRS
  b[1] = 0x00;
  if (repd) b[3] = 0x0c;
  return dataIn(b, alloc);
}
