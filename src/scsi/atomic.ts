/**
 * WRITE ATOMIC(16) (SBC-4 §5.48): all of the blocks are written or none, both against other
 * commands and against power loss.
 *
 * - Against other commands: the write's range is exclusive in the LU's task ordering
 *   (scheduler.ts), as for every write; a read overlapping it sees all old or all new data.
 * - Against power loss: on a backstore whose data does not survive a restart (memory) there is
 *   nothing to tear. On a persistent one the write goes through a one-record write-ahead journal
 *   (`AtomicJournal`, e.g. DATA/journal/<lu-id>.wal): the record (LBA, data, SHA-256) is made
 *   durable first, then the data is written with FUA, then the record is dropped. After a crash
 *   the runtime replays a complete record before the LU is served (an incomplete record — bad
 *   checksum — means the data write never started, so the old data stands). A persistent LU
 *   without a journal does not offer the command at all.
 *
 * Atomic writes of one LU go through the journal one at a time.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Backstore } from '../backstore/types.js';
import { type CommandContext, checkRange, io, type Outcome } from './command.js';
import type { LogicalUnit } from './lu.js';
import { invalidField } from './sense.js';
import { ScsiStatus } from './types.js';

/** Largest atomic write, in bytes (VPD B0h MAXIMUM ATOMIC TRANSFER LENGTH = this / block size). */
export const MAX_ATOMIC_BYTES = 2 * 1024 * 1024;

export const maxAtomicBlocks = (lu: LogicalUnit): number =>
  Math.max(1, Math.floor(MAX_ATOMIC_BYTES / lu.blockSize));

/** Whether the LU offers WRITE ATOMIC(16). */
export const atomicSupported = (lu: LogicalUnit): boolean =>
  !lu.backstore.capabilities.persistent || lu.config.atomicJournal !== undefined;

export interface AtomicJournal {
  /** Durably records the intent to write `data` at `lba`. */
  record(lba: number, data: Buffer): Promise<void>;
  /** The write reached stable storage: the record may go. */
  clear(): Promise<void>;
}

const MAGIC = Buffer.from('LUNARWAL1\n');

/** One-record write-ahead journal in a file (see the module comment). */
export class FileAtomicJournal implements AtomicJournal {
  readonly file: string;
  constructor(dir: string, luId: string) {
    this.file = join(dir, `${luId.toLowerCase()}.wal`);
    mkdirSync(dir, { recursive: true });
  }

  async record(lba: number, data: Buffer): Promise<void> {
    const h = Buffer.alloc(MAGIC.length + 8 + 4 + 32);
    MAGIC.copy(h);
    h.writeBigUInt64BE(BigInt(lba), MAGIC.length);
    h.writeUInt32BE(data.length, MAGIC.length + 8);
    createHash('sha256')
      .update(h.subarray(0, MAGIC.length + 12))
      .update(data)
      .digest()
      .copy(h, MAGIC.length + 12);
    const fd = openSync(this.file, 'w', 0o600);
    try {
      writeSync(fd, Buffer.concat([h, data]));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  async clear(): Promise<void> {
    rmSync(this.file, { force: true });
  }

  /** Replays a complete record onto the backstore (call before serving the LU). True if it did. */
  async recover(backstore: Backstore): Promise<boolean> {
    let b: Buffer;
    try {
      b = readFileSync(this.file);
    } catch {
      return false;
    }
    const hl = MAGIC.length + 12;
    let ok = b.length >= hl + 32 && b.subarray(0, MAGIC.length).equals(MAGIC);
    let lba = 0;
    let data: Buffer = Buffer.alloc(0);
    if (ok) {
      lba = Number(b.readBigUInt64BE(MAGIC.length));
      const len = b.readUInt32BE(MAGIC.length + 8);
      data = b.subarray(hl + 32, hl + 32 + len);
      const sum = createHash('sha256').update(b.subarray(0, hl)).update(data).digest();
      ok = data.length === len && sum.equals(b.subarray(hl, hl + 32));
    }
    if (ok) {
      await backstore.write(lba, data, { fua: true });
      await backstore.flush();
    }
    rmSync(this.file, { force: true });
    return ok;
  }
}

export function writeAtomic16(ctx: CommandContext): Outcome {
  const { lu, cdb } = ctx;
  if ((cdb[1] ?? 0) >> 5) throw invalidField(1, 7); // no protection information
  const lba = Number(cdb.readBigUInt64BE(2));
  const boundary = cdb.readUInt16BE(10);
  const blocks = cdb.readUInt16BE(12);
  checkRange(lu, lba, blocks);
  if (boundary !== 0) throw invalidField(10); // MAXIMUM ATOMIC BOUNDARY SIZE 0
  if (blocks > maxAtomicBlocks(lu)) throw invalidField(12);
  const bs = lu.blockSize;
  const wanted = blocks * bs;
  if (blocks === 0) return { status: ScsiStatus.GOOD, dataOutWanted: 0 };
  // all or nothing: a short Data-Out writes nothing
  if (ctx.cmd.dataOut.length < wanted) throw invalidField(12);
  const data = ctx.cmd.dataOut.subarray(0, wanted);
  const journal = lu.config.atomicJournal;
  const fua = ((cdb[1] ?? 0) & 0x08) !== 0 || !lu.mode.wce;
  return {
    range: { lba, blocks, write: true },
    run: async () => {
      if (!journal) {
        await io('write', () => lu.backstore.write(lba, data, { fua }));
        return { status: ScsiStatus.GOOD, dataOutWanted: wanted };
      }
      const prev = lu.atomicChain;
      let done!: () => void;
      lu.atomicChain = new Promise<void>((r) => {
        done = r;
      });
      try {
        await prev;
        await io('write', () => journal.record(lba, data));
        await io('write', () => lu.backstore.write(lba, data, { fua: true }));
        await io('write', () => journal.clear());
      } finally {
        done();
      }
      return { status: ScsiStatus.GOOD, dataOutWanted: wanted };
    },
  };
}
