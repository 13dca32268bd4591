/**
 * What a dispatch-table entry looks like, and the small helpers handlers share (CDB fields, results,
 * backstore error mapping).
 */
import { BackstoreError } from '../backstore/types.js';
import type { AluaView } from './alua.js';
import type { LogicalUnit } from './lu.js';
import type { PrAccess } from './pr.js';
import type { LbaRange } from './scheduler.js';
import { Asc, CheckCondition, check, invalidField, lbaOutOfRange, SenseKey } from './sense.js';
import type { Nexus, ScsiCommand, ScsiResult } from './types.js';
import { ScsiStatus } from './types.js';

export type DataDirection = 'none' | 'in' | 'out';

/** What handlers may ask of the target. */
export interface TargetView {
  readonly name: string;
  lu(lun: number): LogicalUnit | undefined;
  luns(): readonly number[];
  /** Every I_T nexus the target knows (for unit attentions to "other" nexuses). */
  nexusKeys(): readonly string[];
  readonly alua: AluaView;
  /** The I_T nexuses themselves. */
  nexuses(): readonly Nexus[];
  /** Portal group tag of a relative target port identifier (undefined: no such port). */
  portalGroupOf(relativeTargetPortId: number): number | undefined;
  /** PREEMPT AND ABORT: the transport aborts these nexuses' tasks on `lun` (no response, TAS 0). */
  abortNexusTasks(nexusKeys: readonly string[], lun: number): void;
  /** Descriptors supported by `lu`, in (opcode, service action) order. */
  supported(lu: LogicalUnit): readonly CommandDescriptor[];
  /** The descriptor for an opcode (+ service action), supported or not by a given LU. */
  find(opcode: number, sa: number | undefined): CommandDescriptor | undefined;
  /** Whether the opcode is dispatched by service action. */
  hasServiceActions(opcode: number): boolean;
  /** A MODE SELECT changed current values: MODE PARAMETERS CHANGED for the other nexuses. */
  modeParametersChanged(lu: LogicalUnit, by: Nexus): void;
}

export interface BaseContext {
  readonly target: TargetView;
  readonly cmd: ScsiCommand;
  readonly cdb: Buffer;
  readonly nexus: Nexus;
}

export interface CommandContext extends BaseContext {
  readonly lu: LogicalUnit;
}

/** Work that must wait for its turn in the LU's task set (and may touch the medium). */
export interface Deferred {
  /** LBA range(s) it reads or writes: ordered against overlapping tasks (see scheduler.ts). */
  readonly range?: LbaRange | readonly LbaRange[];
  run(): Promise<ScsiResult>;
  /** Called once when the task ends, whether `run` ran or not (aborted while queued). */
  release?(): void;
}

export type Outcome = ScsiResult | Deferred;

export const isDeferred = (o: Outcome): o is Deferred => typeof (o as Deferred).run === 'function';

export interface CommandDescriptor {
  readonly opcode: number;
  /** Service action (in CDB byte 1, bits 4-0) for opcodes dispatched by service action. */
  readonly sa?: number;
  readonly name: string;
  readonly cdbLength: number;
  /**
   * CDB usage data (SPC-4 REPORT SUPPORTED OPERATION CODES): byte 0 is the opcode, byte 1 of a
   * service-action command holds the service action, every other set bit is a bit the command
   * uses. Dispatch rejects a CDB with any other bit set (INVALID FIELD IN CDB at that bit).
   */
  readonly usage: readonly number[];
  readonly direction: DataDirection;
  /** Needs the medium (NOT READY / MEDIUM NOT PRESENT when ejected). */
  readonly medium?: boolean;
  /** Modifies the medium: DATA PROTECT / WRITE PROTECTED on a write-protected LU. */
  readonly writes?: boolean;
  /** Reported despite a pending unit attention (INQUIRY, REPORT LUNS, REQUEST SENSE). */
  readonly uaExempt?: boolean;
  /** Allowed from a nexus that does not hold the LU's RESERVE(6/10). */
  readonly reservationExempt?: boolean | ((cdb: Buffer) => boolean);
  /** Class under a persistent reservation (SPC-4 table 66): 'write' when absent. */
  readonly prAccess?: PrAccess | ((cdb: Buffer) => PrAccess);
  /** RESERVE/RELEASE(6/10): conflict while any persistent reservation registration exists. */
  readonly spc2?: boolean;
  /** Only some LUs support it (e.g. thin provisioning commands): others see an unknown opcode. */
  readonly supportedBy?: (lu: LogicalUnit) => boolean;
  /** Nominal / recommended timeouts in seconds (REPORT SUPPORTED OPERATION CODES, RCTD). */
  readonly timeout?: { readonly nominal: number; readonly recommended: number };
  readonly handler: (ctx: CommandContext) => Outcome;
  /** Handler for a LUN that does not exist (INQUIRY, REPORT LUNS, REQUEST SENSE). */
  readonly noLu?: (ctx: BaseContext) => Outcome;
}

// ---------------------------------------------------------------------------------------------
// results

export const GOOD: ScsiResult = { status: ScsiStatus.GOOD };

/** GOOD with data, cut to the allocation length. */
export function dataIn(data: Buffer, allocationLength: number): ScsiResult {
  return {
    status: ScsiStatus.GOOD,
    dataIn: data.length > allocationLength ? data.subarray(0, allocationLength) : data,
  };
}

// ---------------------------------------------------------------------------------------------
// CDB fields

/** LBA and transfer length of the READ/WRITE/VERIFY… families. */
export interface LbaLength {
  readonly lba: number;
  readonly blocks: number;
}

/** 6-byte CDB: 21-bit LBA, 8-bit length (0 = 256 for READ(6)/WRITE(6)). */
export const lbaLen6 = (cdb: Buffer): LbaLength => ({
  lba: (((cdb[1] ?? 0) & 0x1f) << 16) | ((cdb[2] ?? 0) << 8) | (cdb[3] ?? 0),
  blocks: cdb[4] || 256,
});
export const lbaLen10 = (cdb: Buffer): LbaLength => ({
  lba: cdb.readUInt32BE(2),
  blocks: cdb.readUInt16BE(7),
});
export const lbaLen12 = (cdb: Buffer): LbaLength => ({
  lba: cdb.readUInt32BE(2),
  blocks: cdb.readUInt32BE(6),
});
export const lbaLen16 = (cdb: Buffer): LbaLength => ({
  lba: Number(cdb.readBigUInt64BE(2)),
  blocks: cdb.readUInt32BE(10),
});

/** LBA OUT OF RANGE when the range does not fit (also for 0 blocks starting past the end). */
export function checkRange(lu: LogicalUnit, lba: number, blocks: number): void {
  const n = lu.blockCount;
  if (lba > n || lba + blocks > n) throw lbaOutOfRange();
}

/** Largest transfer a single command may ask for, in blocks (VPD 0xB0). */
export const MAX_TRANSFER_BYTES = 32 * 1024 * 1024;
export const maxTransferBlocks = (lu: LogicalUnit): number =>
  Math.max(1, Math.floor(MAX_TRANSFER_BYTES / lu.blockSize));

/** INVALID FIELD IN CDB at the transfer-length field when it exceeds the block limits. */
export function checkTransferLength(lu: LogicalUnit, blocks: number, lengthByte: number): void {
  if (blocks > maxTransferBlocks(lu)) throw invalidField(lengthByte);
}

// ---------------------------------------------------------------------------------------------
// backstore errors → sense

export type IoKind = 'read' | 'write' | 'other';

export function backstoreCheck(err: unknown, kind: IoKind): CheckCondition {
  if (err instanceof CheckCondition) return err;
  if (err instanceof BackstoreError) {
    switch (err.code) {
      case 'OUT_OF_RANGE':
        return lbaOutOfRange();
      case 'READ_ONLY':
        return check(SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED);
      case 'NO_SPACE':
        return check(SenseKey.DATA_PROTECT, Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT);
      case 'IO':
        if (kind === 'read') return check(SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR);
        if (kind === 'write') return check(SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR);
        return check(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE);
      default:
        return check(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE);
    }
  }
  return check(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE);
}

/** Runs a backstore call, turning its rejection into the matching CHECK CONDITION. */
export async function io<T>(kind: IoKind, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw backstoreCheck(err, kind);
  }
}
