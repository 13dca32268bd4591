/**
 * SBC-3 block commands: READ CAPACITY, READ/WRITE, WRITE AND VERIFY, VERIFY, PRE-FETCH,
 * SYNCHRONIZE CACHE, START STOP UNIT, WRITE SAME, UNMAP, GET LBA STATUS, COMPARE AND WRITE,
 * ORWRITE, READ DEFECT DATA.
 */
import {
  type CommandContext,
  checkRange,
  checkTransferLength,
  dataIn,
  GOOD,
  io,
  type LbaLength,
  lbaLen6,
  lbaLen10,
  lbaLen12,
  lbaLen16,
  type Outcome,
} from './command.js';
import type { LogicalUnit } from './lu.js';
import {
  Asc,
  type CheckCondition,
  check,
  illegal,
  invalidField,
  invalidParam,
  lbaOutOfRange,
  SenseKey,
} from './sense.js';
import { MAX_COMPARE_AND_WRITE_BLOCKS, MAX_UNMAP_DESCRIPTORS, MAX_UNMAP_LBA_COUNT } from './spc.js';
import { ScsiStatus } from './types.js';

/** CDB layout of one member of a READ/WRITE/VERIFY family. */
export interface RwForm {
  readonly parse: (cdb: Buffer) => LbaLength;
  /** Byte of the transfer length field (for the field pointer). */
  readonly lengthByte: number;
  /** Whether byte 1 carries PROTECT/DPO/FUA (not in the 6-byte forms). */
  readonly flags: boolean;
}

export const RW6: RwForm = { parse: lbaLen6, lengthByte: 4, flags: false };
export const RW10: RwForm = { parse: lbaLen10, lengthByte: 7, flags: true };
export const RW12: RwForm = { parse: lbaLen12, lengthByte: 6, flags: true };
export const RW16: RwForm = { parse: lbaLen16, lengthByte: 10, flags: true };

const protectField = (cdb: Buffer, form: RwForm): number => (form.flags ? ((cdb[1] ?? 0) >> 5) & 0x07 : 0);
const fuaBit = (cdb: Buffer, form: RwForm): boolean => form.flags && ((cdb[1] ?? 0) & 0x08) !== 0;

/** Common front of every medium-access command: protection field, transfer length, range. */
function frontCheck(lu: LogicalUnit, cdb: Buffer, form: RwForm): LbaLength {
  // We format without protection information: any (RD|WR|VR)PROTECT value is an invalid field.
  if (protectField(cdb, form) !== 0) throw invalidField(1, 7);
  const { lba, blocks } = form.parse(cdb);
  checkRange(lu, lba, blocks);
  checkTransferLength(lu, blocks, form.lengthByte);
  return { lba, blocks };
}

/** Write FUA: the initiator asked for it, or the write cache is disabled (write-through). */
const writeFua = (lu: LogicalUnit, fua: boolean): boolean => fua || !lu.mode.wce;

export function readCmd(form: RwForm) {
  return (ctx: CommandContext): Outcome => {
    const { lu, cdb } = ctx;
    const { lba, blocks } = frontCheck(lu, cdb, form);
    if (blocks === 0) return GOOD;
    return {
      range: { lba, blocks, write: false },
      run: async () => {
        const data = await io('read', () => lu.backstore.read(lba, blocks));
        const b = lu.backstore;
        return { status: ScsiStatus.GOOD, dataIn: data, release: () => b.release?.(data) };
      },
    };
  };
}

/** Whole blocks of Data-Out actually received (an initiator may send less than the CDB says). */
const receivedBlocks = (ctx: CommandContext, blocks: number): number =>
  Math.min(blocks, Math.floor(ctx.cmd.dataOut.length / ctx.lu.blockSize));

export function writeCmd(form: RwForm, verify = false) {
  return (ctx: CommandContext): Outcome => {
    const { lu, cdb } = ctx;
    const { lba, blocks } = frontCheck(lu, cdb, form);
    const wanted = blocks * lu.blockSize;
    if (blocks === 0) return { status: ScsiStatus.GOOD, dataOutWanted: 0 };
    const n = receivedBlocks(ctx, blocks);
    // WRITE AND VERIFY puts the data on the medium before it compares: always FUA.
    const fua = verify || writeFua(lu, fuaBit(cdb, form));
    return {
      range: { lba, blocks, write: true },
      run: async () => {
        if (n > 0) {
          const data = ctx.cmd.dataOut.subarray(0, n * lu.blockSize);
          await io('write', () => lu.backstore.write(lba, data, { fua }));
        }
        return {
          status: ScsiStatus.GOOD,
          dataOutWanted: wanted,
          dataOutReusable: lu.backstore.doneWithWriteData === true,
        };
      },
    };
  };
}

const miscompare = (offset: number): CheckCondition =>
  check(SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY_OPERATION, { information: offset });

/** Offset of the first differing byte, or -1. */
export function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  if (a.subarray(0, n).equals(b.subarray(0, n))) return -1;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}

export function verifyCmd(form: RwForm) {
  return (ctx: CommandContext): Outcome => {
    const { lu, cdb } = ctx;
    const { lba, blocks } = frontCheck(lu, cdb, form);
    const bytchk = ((cdb[1] ?? 0) >> 1) & 0x03;
    if (bytchk === 2) throw invalidField(1, 2);
    if (blocks === 0) return GOOD;
    const bs = lu.blockSize;
    if (bytchk === 0) {
      // Medium verification: read the range so a medium error surfaces.
      return {
        range: { lba, blocks, write: false },
        run: async () => {
          await io('read', () => lu.backstore.read(lba, blocks));
          return GOOD;
        },
      };
    }
    const wanted = bytchk === 3 ? bs : blocks * bs;
    const sent = ctx.cmd.dataOut.subarray(0, wanted);
    return {
      range: { lba, blocks, write: false },
      run: async () => {
        const data = await io('read', () => lu.backstore.read(lba, blocks));
        if (bytchk === 3) {
          for (let i = 0; i < blocks; i++) {
            const d = firstDifference(data.subarray(i * bs, (i + 1) * bs), sent);
            if (d >= 0) throw miscompare(i * bs + d);
          }
        } else {
          const d = firstDifference(data, sent);
          if (d >= 0) throw miscompare(d);
        }
        return { status: ScsiStatus.GOOD, dataOutWanted: wanted };
      },
    };
  };
}

export function prefetch(form: RwForm) {
  return (ctx: CommandContext): Outcome => {
    const { lu, cdb } = ctx;
    const { lba, blocks } = form.parse(cdb);
    checkRange(lu, lba, blocks);
    // No cache of our own to fill: SBC-3 says GOOD when the blocks cannot all be cached.
    return GOOD;
  };
}

export function synchronizeCache(form: RwForm) {
  return (ctx: CommandContext): Outcome => {
    const { lu, cdb } = ctx;
    const { lba, blocks } = form.parse(cdb);
    checkRange(lu, lba, blocks);
    return {
      run: async () => {
        await io('write', () => lu.backstore.flush());
        return GOOD;
      },
    };
  };
}

export function readCapacity10(ctx: CommandContext): Outcome {
  const { lu, cdb } = ctx;
  const pmi = ((cdb[8] ?? 0) & 0x01) !== 0;
  const lba = cdb.readUInt32BE(2);
  if (!pmi && lba !== 0) throw invalidField(2);
  const b = Buffer.alloc(8);
  const last = lu.blockCount - 1;
  b.writeUInt32BE(last > 0xffffffff ? 0xffffffff : Math.max(0, last), 0);
  b.writeUInt32BE(lu.blockSize, 4);
  return dataIn(b, 8);
}

export function readCapacity16(ctx: CommandContext): Outcome {
  const { lu, cdb } = ctx;
  const alloc = cdb.readUInt32BE(10);
  const b = Buffer.alloc(32);
  b.writeBigUInt64BE(BigInt(Math.max(0, lu.blockCount - 1)), 0);
  b.writeUInt32BE(lu.blockSize, 8);
  b[12] = 0x00; // no protection
  b[13] = lu.lbppbExponent & 0x0f; // logical blocks per physical block exponent
  if (lu.thin) b[14] = 0x80 | 0x40; // LBPME, LBPRZ
  return dataIn(b, alloc);
}

export function startStopUnit(ctx: CommandContext): Outcome {
  const { lu, cdb } = ctx;
  const powerCondition = (cdb[4] ?? 0) >> 4;
  const noFlush = ((cdb[4] ?? 0) & 0x04) !== 0;
  const loej = ((cdb[4] ?? 0) & 0x02) !== 0;
  const start = ((cdb[4] ?? 0) & 0x01) !== 0;
  // A power condition other than START_VALID makes START and LOEJ ignored (SBC-3 §5.25).
  if (powerCondition !== 0 || !loej || !lu.removable) return GOOD;
  // While any nexus prevents removal, the medium may be neither ejected nor (re)loaded.
  if (lu.preventers.size > 0) throw illegal(Asc.MEDIUM_REMOVAL_PREVENTED);
  if (start) {
    lu.loaded = true;
    return GOOD;
  }
  return {
    run: async () => {
      if (!noFlush && lu.loaded) await io('write', () => lu.backstore.flush());
      lu.loaded = false;
      return GOOD;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// thin provisioning

export function writeSame(sixteen: boolean) {
  return (ctx: CommandContext): Outcome => {
    const { lu, cdb } = ctx;
    const b1 = cdb[1] ?? 0;
    if (b1 >> 5) throw invalidField(1, 7);
    const anchor = (b1 & 0x10) !== 0;
    const unmap = (b1 & 0x08) !== 0;
    const ndob = sixteen && (b1 & 0x01) !== 0;
    const { lba, blocks: requested } = sixteen ? lbaLen16(cdb) : lbaLen10(cdb);
    const n = lu.blockCount;
    if (lba > n || lba + requested > n) throw lbaOutOfRange();
    if ((unmap || anchor) && !lu.thin) throw invalidField(1, unmap ? 3 : 4);
    if (anchor) throw invalidField(1, 4); // ANC_SUP = 0
    const blocks = requested === 0 ? n - lba : requested;
    const bs = lu.blockSize;
    let pattern: Buffer | null = null;
    if (!ndob) {
      if (ctx.cmd.dataOut.length !== bs) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
      pattern = ctx.cmd.dataOut;
    }
    const dataOutWanted = ndob ? 0 : bs;
    if (blocks === 0) return { status: ScsiStatus.GOOD, dataOutWanted };
    const fua = writeFua(lu, false);
    return {
      range: { lba, blocks, write: true },
      run: async () => {
        // UNMAP=1: deallocate whatever the Data-Out holds (LBPRZ: the blocks then read as zeros).
        if (unmap) await io('write', () => lu.backstore.unmap(lba, blocks));
        else
          await io('write', () => lu.backstore.writeSame(lba, blocks, pattern ?? Buffer.alloc(bs), { fua }));
        return { status: ScsiStatus.GOOD, dataOutWanted };
      },
    };
  };
}

export function unmapCmd(ctx: CommandContext): Outcome {
  const { lu, cdb } = ctx;
  if ((cdb[1] ?? 0) & 0x01) throw invalidField(1, 0); // ANCHOR: ANC_SUP = 0
  const length = cdb.readUInt16BE(7);
  if (length === 0) return GOOD;
  if (length < 8) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const data = ctx.cmd.dataOut;
  if (data.length < length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const descLength = data.readUInt16BE(2);
  const usable = Math.min(descLength, length - 8);
  const count = Math.floor(usable / 16);
  if (count > MAX_UNMAP_DESCRIPTORS) throw invalidParam(2);
  const ranges: { lba: number; blocks: number; write: true }[] = [];
  for (let i = 0; i < count; i++) {
    const off = 8 + 16 * i;
    const lba = Number(data.readBigUInt64BE(off));
    const blocks = data.readUInt32BE(off + 8);
    if (blocks > MAX_UNMAP_LBA_COUNT) throw invalidParam(off + 8);
    checkRange(lu, lba, blocks);
    if (blocks === 0) continue;
    ranges.push({ lba, blocks, write: true });
  }
  if (ranges.length === 0) return GOOD;
  return {
    range: ranges,
    run: async () => {
      for (const r of ranges) await io('write', () => lu.backstore.unmap(r.lba, r.blocks));
      return GOOD;
    },
  };
}

/** Longest run GET LBA STATUS describes in one descriptor, and the most blocks it scans. */
const LBA_STATUS_SCAN_LIMIT = 1 << 21;

export function getLbaStatus(ctx: CommandContext): Outcome {
  const { lu, cdb } = ctx;
  const lba = Number(cdb.readBigUInt64BE(2));
  const alloc = cdb.readUInt32BE(10);
  if (lba >= lu.blockCount) throw lbaOutOfRange();
  const maxDescriptors = Math.max(1, Math.floor((Math.max(alloc, 24) - 8) / 16));
  return {
    range: { lba, blocks: Math.min(LBA_STATUS_SCAN_LIMIT, lu.blockCount - lba), write: false },
    run: async () => {
      const end = Math.min(lu.blockCount, lba + LBA_STATUS_SCAN_LIMIT);
      const descs: Buffer[] = [];
      let start = lba;
      let state = await io('read', () => lu.backstore.isMapped(lba));
      for (let b = lba + 1; b <= end; b++) {
        const s = b < end ? await io('read', () => lu.backstore.isMapped(b)) : !state;
        if (s !== state || b === end) {
          const d = Buffer.alloc(16);
          d.writeBigUInt64BE(BigInt(start), 0);
          d.writeUInt32BE(b - start, 8);
          d[12] = state ? 0x00 : 0x01; // mapped / deallocated
          descs.push(d);
          if (descs.length >= maxDescriptors) break;
          start = b;
          state = s;
        }
      }
      const h = Buffer.alloc(8);
      h.writeUInt32BE(4 + 16 * descs.length, 0);
      return dataIn(Buffer.concat([h, ...descs]), alloc);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// COMPARE AND WRITE, ORWRITE

export function compareAndWrite(ctx: CommandContext): Outcome {
  const { lu, cdb } = ctx;
  if ((cdb[1] ?? 0) >> 5) throw invalidField(1, 7);
  const lba = Number(cdb.readBigUInt64BE(2));
  const blocks = cdb[13] ?? 0;
  checkRange(lu, lba, blocks);
  if (blocks > MAX_COMPARE_AND_WRITE_BLOCKS) throw invalidField(13);
  const bs = lu.blockSize;
  const wanted = 2 * blocks * bs;
  // The Data-Out must be exactly the verify and write instances of NUMBER OF LOGICAL BLOCKS
  // (an initiator that meant 256 blocks sends 0 in this one-byte field).
  if (ctx.cmd.dataOut.length !== wanted) throw invalidField(13);
  if (blocks === 0) return { status: ScsiStatus.GOOD, dataOutWanted: 0 };
  const verifyData = ctx.cmd.dataOut.subarray(0, blocks * bs);
  const writeData = ctx.cmd.dataOut.subarray(blocks * bs);
  const fua = writeFua(lu, ((cdb[1] ?? 0) & 0x08) !== 0);
  return {
    // The range is exclusive in the scheduler from read to write: the compare is atomic.
    range: { lba, blocks, write: true },
    run: async () => {
      const current = await io('read', () => lu.backstore.read(lba, blocks));
      const d = firstDifference(current, verifyData);
      if (d >= 0) throw miscompare(d);
      await io('write', () => lu.backstore.write(lba, writeData, { fua }));
      return { status: ScsiStatus.GOOD, dataOutWanted: wanted };
    },
  };
}

export function orWrite(ctx: CommandContext): Outcome {
  const { lu, cdb } = ctx;
  const { lba, blocks } = frontCheck(lu, cdb, RW16);
  if (blocks === 0) return { status: ScsiStatus.GOOD, dataOutWanted: 0 };
  const n = receivedBlocks(ctx, blocks);
  const fua = writeFua(lu, fuaBit(cdb, RW16));
  return {
    range: { lba, blocks, write: true },
    run: async () => {
      if (n > 0) {
        const current = await io('read', () => lu.backstore.read(lba, n));
        const sent = ctx.cmd.dataOut;
        for (let i = 0; i < current.length; i++) current[i] = (current[i] ?? 0) | (sent[i] ?? 0);
        await io('write', () => lu.backstore.write(lba, current, { fua }));
      }
      return { status: ScsiStatus.GOOD, dataOutWanted: blocks * lu.blockSize };
    },
  };
}

export function readDefectData(twelve: boolean) {
  return (ctx: CommandContext): Outcome => {
    const { cdb } = ctx;
    const flags = (twelve ? cdb[1] : cdb[2]) ?? 0;
    const alloc = twelve ? cdb.readUInt32BE(6) : cdb.readUInt16BE(7);
    // No defects: both lists valid (if asked for) and empty, in the requested format.
    const h = Buffer.alloc(twelve ? 8 : 4);
    h[1] = flags & 0x1f;
    return dataIn(h, alloc);
  };
}
