/**
 * EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 §6.4, §6.22; SPC-3 formats): a copy
 * manager for block→block segments (descriptor 02h) between LUs of this target, named by
 * identification descriptor CSCDs (E4h) carrying the NAA designator of VPD page 83h. Limits are
 * reported in the operating parameters and in the third-party copy VPD page (8Fh).
 *
 * A copy is atomic against other commands touching the same blocks: its source range (read) and
 * destination range (write) are admitted in the task ordering of their LUs when the command is
 * submitted, before it runs.
 */
import { type CommandContext, dataIn, GOOD, io, type Outcome } from './command.js';
import type { LogicalUnit } from './lu.js';
import type { Admission } from './scheduler.js';
import { Asc, check, illegal, invalidField, invalidParam, SenseKey } from './sense.js';
import { naaDesignator } from './spc.js';
import { TaskAttribute } from './types.js';

export const XcopyLimits = {
  MAX_CSCD_DESCRIPTORS: 8,
  MAX_SEGMENT_DESCRIPTORS: 16,
  MAX_DESCRIPTOR_LIST_LENGTH: 1024,
  MAX_CONCURRENT_COPIES: 16,
} as const;

const HEADER = 16;
const CSCD_LENGTH = 32;
const IDENT_CSCD = 0xe4;
const BLOCK_TO_BLOCK = 0x02;
const CHUNK_BYTES = 1024 * 1024;

export const ReceiveCopyAction = {
  COPY_STATUS: 0x00,
  OPERATING_PARAMETERS: 0x03,
} as const;

/** Held results of a copy (LIST ID USAGE 00b), per I_T nexus and list identifier. */
export interface CopyResult {
  /** 0 in progress, 1 completed without errors, 2 completed with errors. */
  status: number;
  segments: number;
  bytes: number;
}

export const maxSegmentBytes = (lu: LogicalUnit): number => Math.min(0xffff * lu.blockSize, 64 * 1024 * 1024);

const copyAborted = (code: number = Asc.NO_ADDITIONAL_SENSE) => check(SenseKey.COPY_ABORTED, code);

interface Segment {
  readonly src: LogicalUnit;
  readonly dst: LogicalUnit;
  readonly srcLba: number;
  readonly dstLba: number;
  readonly blocks: number;
}

export function extendedCopy(ctx: CommandContext): Outcome {
  const { lu, cdb, nexus, target } = ctx;
  const length = cdb.readUInt32BE(10);
  if (length === 0) return GOOD;
  const p = ctx.cmd.dataOut;
  if (length < HEADER || p.length < length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const listId = p[0] ?? 0;
  const usage = ((p[1] ?? 0) >> 3) & 0x03;
  if (usage === 1) throw invalidParam(1, 4);
  if (usage === 3 && listId !== 0) throw invalidParam(0);
  const cscdLen = p.readUInt16BE(2);
  const segLen = p.readUInt32BE(8);
  const inlineLen = p.readUInt32BE(12);
  if (HEADER + cscdLen + segLen + inlineLen > length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  if (cscdLen + segLen > XcopyLimits.MAX_DESCRIPTOR_LIST_LENGTH)
    throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  if (inlineLen !== 0) throw illegal(Asc.INLINE_DATA_LENGTH_EXCEEDED);
  if (cscdLen % CSCD_LENGTH !== 0) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const cscdCount = cscdLen / CSCD_LENGTH;
  if (cscdCount > XcopyLimits.MAX_CSCD_DESCRIPTORS) throw illegal(Asc.TOO_MANY_TARGET_DESCRIPTORS);
  // count the segment descriptors first (TOO MANY before anything in them is judged)
  const segOffsets: number[] = [];
  for (let off = HEADER + cscdLen; off < HEADER + cscdLen + segLen;) {
    if (off + 4 > HEADER + cscdLen + segLen) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
    segOffsets.push(off);
    off += 4 + p.readUInt16BE(off + 2);
  }
  if (segOffsets.length > XcopyLimits.MAX_SEGMENT_DESCRIPTORS)
    throw illegal(Asc.TOO_MANY_SEGMENT_DESCRIPTORS);

  // CSCD descriptors: identification descriptors naming one of our LUs (or unreachable)
  const cscds: (LogicalUnit | undefined)[] = [];
  for (let i = 0; i < cscdCount; i++) {
    const off = HEADER + i * CSCD_LENGTH;
    const type = p[off] ?? 0;
    if (type !== IDENT_CSCD) throw illegal(Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE);
    const b1 = p[off + 1] ?? 0;
    // LU ID TYPE (bits 7-6) qualifies a LU IDENTIFIER field, which an identification descriptor
    // does not have (it names the LU by its designator): ignored here.
    if ((b1 & 0x1f) !== 0) throw invalidParam(off + 1, 4); // peripheral device type: block
    const codeSet = (p[off + 4] ?? 0) & 0x0f;
    const assocType = p[off + 5] ?? 0;
    const dlen = p[off + 7] ?? 0;
    if (dlen > 20) throw invalidParam(off + 7);
    const designator = p.subarray(off + 8, off + 8 + dlen);
    const blockLength = ((p[off + 29] ?? 0) << 16) | ((p[off + 30] ?? 0) << 8) | (p[off + 31] ?? 0);
    let found: LogicalUnit | undefined;
    // NUL = 1 names no device we can reach; otherwise a binary NAA designator of a LU (association 0)
    if (!(b1 & 0x20) && codeSet === 1 && (assocType & 0x3f) === 0x03) {
      for (const n of target.luns()) {
        const cand = target.lu(n);
        if (cand && naaDesignator(cand).equals(designator)) found = cand;
      }
    }
    if (found && blockLength !== 0 && blockLength !== found.blockSize) found = undefined;
    cscds.push(found);
  }

  const segments: Segment[] = [];
  for (const off of segOffsets) {
    const type = p[off] ?? 0;
    if (type !== BLOCK_TO_BLOCK) throw illegal(Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE);
    if (p.readUInt16BE(off + 2) !== 0x18) throw invalidParam(off + 2);
    const si = p.readUInt16BE(off + 4);
    const di = p.readUInt16BE(off + 6);
    const src = si < cscds.length ? cscds[si] : undefined;
    const dst = di < cscds.length ? cscds[di] : undefined;
    if (!src || !dst) throw copyAborted(Asc.UNREACHABLE_COPY_TARGET);
    if (src.blockSize !== dst.blockSize) throw copyAborted(Asc.UNREACHABLE_COPY_TARGET);
    const blocks = p.readUInt16BE(off + 10);
    const srcLba = Number(p.readBigUInt64BE(off + 12));
    const dstLba = Number(p.readBigUInt64BE(off + 20));
    if (srcLba + blocks > src.blockCount || dstLba + blocks > dst.blockCount) throw copyAborted();
    segments.push({ src, dst, srcLba, dstLba, blocks });
  }
  for (const s of segments) {
    if (!s.dst.loaded || !s.src.loaded) throw copyAborted(Asc.UNREACHABLE_COPY_TARGET);
    if (s.dst.writeProtected) throw check(SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED);
    if (s.src !== lu && s.src.pr.conflicts(nexus, 'read')) return { status: 0x18 };
    if (s.dst !== lu && s.dst.pr.conflicts(nexus, 'write')) return { status: 0x18 };
  }

  const key = `${nexus.key}#${listId}`;
  const hold = usage === 0;
  if (hold && lu.copyResults.get(key)?.status === 0) throw illegal(Asc.OPERATION_IN_PROGRESS);
  const result: CopyResult = { status: 0, segments: 0, bytes: 0 };
  if (hold) lu.copyResults.set(key, result);

  // ranges: on this LU through the Deferred; on other LUs admitted now, in submission order
  const local = segments.flatMap((s) => [
    ...(s.src === lu ? [{ lba: s.srcLba, blocks: s.blocks, write: false }] : []),
    ...(s.dst === lu ? [{ lba: s.dstLba, blocks: s.blocks, write: true }] : []),
  ]);
  const others: Admission[] = [];
  for (const s of segments) {
    if (s.src !== lu)
      others.push(
        s.src.scheduler.admit(TaskAttribute.SIMPLE, { lba: s.srcLba, blocks: s.blocks, write: false }),
      );
    if (s.dst !== lu)
      others.push(
        s.dst.scheduler.admit(TaskAttribute.SIMPLE, { lba: s.dstLba, blocks: s.blocks, write: true }),
      );
  }
  const releaseOthers = () => {
    for (const a of others) a.release();
  };
  return {
    range: local,
    release: () => {
      releaseOthers();
      if (result.status === 0) result.status = 2;
    },
    run: async () => {
      try {
        for (const a of others) if (a.ready) await a.ready;
        for (const s of segments) {
          await copySegment(s);
          result.segments++;
          result.bytes += s.blocks * s.src.blockSize;
        }
        result.status = 1;
        return GOOD;
      } catch (err) {
        result.status = 2;
        throw err instanceof Error && err.name === 'CheckCondition' ? err : copyAborted();
      } finally {
        releaseOthers();
      }
    },
  };
}

async function copySegment(s: Segment): Promise<void> {
  const bs = s.src.blockSize;
  const chunk = Math.max(1, Math.floor(CHUNK_BYTES / bs));
  const fua = !s.dst.mode.wce;
  // overlapping forward copy on one LU goes from the end, so no source block is overwritten first
  const backwards = s.src === s.dst && s.dstLba > s.srcLba && s.dstLba < s.srcLba + s.blocks;
  const starts: number[] = [];
  for (let i = 0; i < s.blocks; i += chunk) starts.push(i);
  if (backwards) starts.reverse();
  for (const i of starts) {
    const n = Math.min(chunk, s.blocks - i);
    const data = await io('read', () => s.src.backstore.read(s.srcLba + i, n)).catch(() => {
      throw copyAborted();
    });
    await io('write', () => s.dst.backstore.write(s.dstLba + i, data, { fua })).catch(() => {
      throw copyAborted();
    });
  }
}

export function receiveCopyResults(action: number) {
  return (ctx: CommandContext): Outcome => {
    const { lu, cdb, nexus } = ctx;
    const listId = cdb[2] ?? 0;
    const alloc = cdb.readUInt32BE(10);
    if (action === ReceiveCopyAction.COPY_STATUS) {
      const r = lu.copyResults.get(`${nexus.key}#${listId}`);
      if (!r) throw invalidField(2);
      const b = Buffer.alloc(12);
      b.writeUInt32BE(8, 0);
      b[4] = r.status & 0x7f; // HDD 0
      b.writeUInt16BE(Math.min(0xffff, r.segments), 5);
      // TRANSFER COUNT in KiB when bytes do not fit 32 bits
      if (r.bytes > 0xffffffff) {
        b[7] = 0x01;
        b.writeUInt32BE(Math.min(0xffffffff, Math.floor(r.bytes / 1024)), 8);
      } else {
        b[7] = 0x00;
        b.writeUInt32BE(r.bytes, 8);
      }
      if (r.status !== 0) lu.copyResults.delete(`${nexus.key}#${listId}`);
      return dataIn(b, alloc);
    }
    // OPERATING PARAMETERS
    const b = Buffer.alloc(46);
    b.writeUInt32BE(b.length - 4, 0);
    b[4] = 0x01; // SNLID: LIST ID USAGE 11b supported
    b.writeUInt16BE(XcopyLimits.MAX_CSCD_DESCRIPTORS, 8);
    b.writeUInt16BE(XcopyLimits.MAX_SEGMENT_DESCRIPTORS, 10);
    b.writeUInt32BE(XcopyLimits.MAX_DESCRIPTOR_LIST_LENGTH, 12);
    b.writeUInt32BE(maxSegmentBytes(lu), 16);
    b.writeUInt32BE(0, 20); // maximum inline data length
    b.writeUInt32BE(0, 24); // held data limit
    b.writeUInt32BE(0, 28); // maximum stream device transfer size
    b.writeUInt16BE(XcopyLimits.MAX_CONCURRENT_COPIES, 34);
    b[36] = XcopyLimits.MAX_CONCURRENT_COPIES;
    b[37] = Math.log2(lu.blockSize); // data segment granularity
    b[38] = 0;
    b[39] = 0;
    b[43] = 2; // implemented descriptor list length
    b[44] = BLOCK_TO_BLOCK;
    b[45] = IDENT_CSCD;
    return dataIn(b, alloc);
  };
}

/** Third-party copy VPD page (8Fh) body: supported commands, parameter data, descriptors, limits. */
export function thirdPartyCopyPage(lu: LogicalUnit): Buffer {
  const desc = (type: number, body: Buffer): Buffer => {
    const padded = Buffer.alloc((body.length + 3) & ~3);
    body.copy(padded);
    const h = Buffer.alloc(4);
    h.writeUInt16BE(type, 0);
    h.writeUInt16BE(padded.length, 2);
    return Buffer.concat([h, padded]);
  };
  // 0001h supported commands: EXTENDED COPY (LID1), RECEIVE COPY RESULTS (status, op params)
  const cmds = Buffer.from([
    0x83,
    1,
    0x00,
    0x84,
    2,
    ReceiveCopyAction.COPY_STATUS,
    ReceiveCopyAction.OPERATING_PARAMETERS,
  ]);
  const supported = desc(0x0001, Buffer.concat([Buffer.from([cmds.length]), cmds]));
  // 0004h parameter data
  const pd = Buffer.alloc(28);
  pd.writeUInt16BE(XcopyLimits.MAX_CSCD_DESCRIPTORS, 4);
  pd.writeUInt16BE(XcopyLimits.MAX_SEGMENT_DESCRIPTORS, 6);
  pd.writeUInt32BE(XcopyLimits.MAX_DESCRIPTOR_LIST_LENGTH, 8);
  pd.writeUInt32BE(0, 12); // maximum inline data length
  const params = desc(0x0004, pd);
  // 0008h supported descriptors
  const descs = desc(0x0008, Buffer.from([2, BLOCK_TO_BLOCK, IDENT_CSCD]));
  // 000Ch supported CSCD IDs: none
  const ids = desc(0x000c, Buffer.from([0, 0]));
  // 8001h general copy operations
  const g = Buffer.alloc(28);
  g.writeUInt32BE(XcopyLimits.MAX_CONCURRENT_COPIES, 0);
  g.writeUInt32BE(XcopyLimits.MAX_CONCURRENT_COPIES, 4);
  g.writeUInt32BE(maxSegmentBytes(lu), 8);
  g[12] = Math.log2(lu.blockSize);
  g[13] = 0;
  const general = desc(0x8001, g);
  return Buffer.concat([supported, params, descs, ids, general]);
}
