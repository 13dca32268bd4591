/**
 * Full feature phase of one iSCSI session (ERL 0, one connection): CmdSN window and ordering,
 * tasks (immediate/unsolicited data, R2T, Data-Out checks, Data-In, residuals), NOP, Text
 * (SendTargets), Logout, TMF, Reject, Async. No sockets: PDUs go out through a {@link PduSink}.
 */
import type { Nexus, ScsiCommand, ScsiResult, ScsiTarget, TaskAttribute } from '../../scsi/types.js';
import { ScsiStatus, TmfFunction, TmfResponse } from '../../scsi/types.js';
import { AlignedPool } from '../../native/aligned-pool.js';
import { allocAligned } from '../../native/index.js';
import { lunToNumber } from '../pdu/codec.js';
import { AsyncEvent, LogoutReason, LogoutResponse, RESERVED_TAG, RejectReason } from '../pdu/constants.js';
import { encodeText, parseText } from '../pdu/text.js';
import type {
  DataOut,
  InitiatorPdu,
  LogoutRequest,
  NopOut,
  ScsiCommandPdu,
  TargetPdu,
  TextRequest,
  TmfRequest,
} from '../pdu/types.js';
import { planDataIn, planR2T, residualOf } from './datain.js';
import type { SessionParams } from './params.js';
import { snAdd, snGt, snInWindow, snLt } from './serial.js';

/** Where the session's PDUs go (the connection). */
export interface PduSink {
  /** Queues the PDU; `onWritten` runs once its bytes left for the kernel (or were dropped). */
  send(pdu: TargetPdu, onWritten?: () => void): void;
  /** Close the connection; `afterFlush` lets queued PDUs reach the wire first. */
  close(reason: string, afterFlush?: boolean): void;
}

/** Server-level services a session needs. */
export interface SessionHooks {
  /** SendTargets answer for this initiator (value: 'All', a target name, or '' for the session's). */
  sendTargets(value: string, session: IscsiSession): [string, string][];
  /** Sessions of the same target (including this one), for LUN/target-wide TMFs. */
  peers(session: IscsiSession): readonly IscsiSession[];
  /** TARGET COLD RESET: drop every session of the target after the response went out. */
  coldReset(session: IscsiSession): void;
  /** The session is over (logout, connection loss, drop). */
  closed(session: IscsiSession, reason: string): void;
}

export interface SessionOptions {
  readonly tsih: number;
  readonly initiatorName: string;
  readonly isid: string;
  readonly discovery: boolean;
  readonly targetName: string;
  readonly scsi?: ScsiTarget;
  readonly nexus?: Nexus;
  readonly params: SessionParams;
  readonly cmdSN: number;
  readonly queueDepth: number;
  readonly portalGroupTag: number;
  readonly hooks: SessionHooks;
  /** Most tasks allowed to wait for data/execution at once (backpressure signal). */
  readonly maxActiveTasks?: number;
}

interface R2TState {
  readonly ttt: number;
  readonly offset: number;
  readonly length: number;
  received: number;
  nextDataSN: number;
}

interface Task {
  readonly itt: number;
  readonly pdu: ScsiCommandPdu;
  readonly lun: number;
  readonly cmdSN: number;
  readonly immediate: boolean;
  /** Data-Out expected in total (EDTL for writes, else 0). */
  readonly writeLength: number;
  /** The command's aligned write buffer (pool): Data-Out lands here at its BufferOffset. */
  buf: Buffer | undefined;
  /** The framing layer is writing a Data-Out into `buf` (placeData): it must not be reused yet. */
  filling: boolean;
  /** Without `buf`: the received Data-Out segments, joined at execution. */
  readonly pieces: Buffer[];
  received: number;
  /** Unsolicited range end: immediate data plus, with InitialR2T=No, Data-Out up to FirstBurstLength. */
  readonly unsolicitedEnd: number;
  unsolicitedDone: boolean;
  unsolicitedDataSN: number;
  delivered: boolean;
  executing: boolean;
  aborted: boolean;
  readonly r2ts: Map<number, R2TState>;
  nextR2TOffset: number;
  r2tSN: number;
  done?: Promise<void>;
}

/** ASC/ASCQ for Data-Out errors (SPC-4; RFC 7143 §11.4.7.2). */
export const DataError = {
  DATA_SN: [0x4b, 0x00], // DATA PHASE ERROR
  BAD_TTT: [0x4b, 0x01], // INVALID TARGET PORT TRANSFER TAG RECEIVED
  TOO_MUCH: [0x4b, 0x02], // TOO MUCH WRITE DATA
  OFFSET: [0x4b, 0x05], // DATA OFFSET ERROR
  UNEXPECTED_UNSOLICITED: [0x0c, 0x0c], // UNEXPECTED UNSOLICITED DATA
  NOT_ENOUGH: [0x0c, 0x0d], // NOT ENOUGH UNSOLICITED DATA
} as const;

/**
 * Write buffers of all sessions: taken when a write command arrives, handed back when the command
 * completed and the core said it keeps no reference (ScsiResult.dataOutReusable).
 */
const WRITE_BUFFERS = new AlignedPool(64 * 1024 * 1024);
/** Largest command given its own write buffer (larger ones collect segments; the core refuses them). */
const WRITE_BUFFER_MAX = 32 * 1024 * 1024;
/** Write-buffer bytes one session may hold before new commands collect segments instead. */
const WRITE_BUFFER_BUDGET = 128 * 1024 * 1024;

/** The empty data segment, shared (a zero-length Buffer has nothing to mutate). */
const EMPTY: Buffer = Buffer.alloc(0);

/** Sense data as an iSCSI data segment: SenseLength (2 bytes) then the sense bytes (RFC 7143 §11.4.7.2). */
function senseSegment(sense: Buffer): Buffer {
  const data = Buffer.allocUnsafe(2 + sense.length);
  data.writeUInt16BE(sense.length, 0);
  sense.copy(data, 2);
  return data;
}

const TMF_LUN_FUNCTIONS: ReadonlySet<number> = new Set([1, 2, 3, 4, 5]);

export class IscsiSession {
  readonly tsih: number;
  readonly initiatorName: string;
  readonly isid: string;
  readonly discovery: boolean;
  readonly targetName: string;
  readonly portalGroupTag: number;
  readonly nexus: Nexus | undefined;
  readonly scsi: ScsiTarget | undefined;
  params: SessionParams;
  readonly queueDepth: number;
  cid = 0;
  #hooks: SessionHooks;
  #sink: PduSink | undefined;
  #statSN = 0;
  #expCmdSN: number;
  #maxCmdSN: number;
  /** Non-immediate PDUs waiting for their turn in CmdSN order; `null` = consumed (aborted/RefCmdSN). */
  #ordered = new Map<number, InitiatorPdu | null>();
  #tasks = new Map<number, Task>();
  /** Bytes of write buffers held by this session's tasks. */
  #bufBytes = 0;
  /** A write buffer the framing layer filled with the next SCSI Command's immediate data. */
  #staged: { itt: number; buf: Buffer } | undefined;
  #tttNext = 1;
  #closed = false;
  #textPending = new Map<number, { rest: Buffer; itt: number }>();
  #textIn = new Map<number, Buffer[]>();
  #pingTtt: number | undefined;
  #pingSentAt = 0;
  #lastPingAt = 0;
  #maxActive: number;
  #logoutRequested = false;
  /** Called whenever the active-task count drops (the connection resumes reading). */
  onIdle: (() => void) | undefined;

  constructor(o: SessionOptions) {
    this.tsih = o.tsih;
    this.initiatorName = o.initiatorName;
    this.isid = o.isid;
    this.discovery = o.discovery;
    this.targetName = o.targetName;
    this.portalGroupTag = o.portalGroupTag;
    this.nexus = o.nexus;
    this.scsi = o.scsi;
    this.params = o.params;
    this.queueDepth = Math.max(1, o.queueDepth);
    this.#hooks = o.hooks;
    this.#expCmdSN = o.cmdSN >>> 0;
    this.#maxCmdSN = snAdd(this.#expCmdSN, this.queueDepth - 1);
    this.#maxActive = o.maxActiveTasks ?? this.queueDepth * 2;
  }

  get expCmdSN(): number {
    return this.#expCmdSN;
  }
  /**
   * MaxCmdSN = ExpCmdSN + free task slots - 1 (queue depth minus tasks still active), never
   * moving backwards (RFC 7143 §4.2.2.1): a busy session closes its window instead of queueing
   * without bound.
   */
  get maxCmdSN(): number {
    const free = Math.max(0, this.queueDepth - this.#tasks.size);
    const want = snAdd(this.#expCmdSN, free - 1);
    if (snGt(want, this.#maxCmdSN)) this.#maxCmdSN = want;
    return this.#maxCmdSN;
  }
  get statSN(): number {
    return this.#statSN;
  }
  get activeTasks(): number {
    return this.#tasks.size;
  }
  get congested(): boolean {
    return this.#tasks.size >= this.#maxActive;
  }
  get closed(): boolean {
    return this.#closed;
  }
  get logoutRequested(): boolean {
    return this.#logoutRequested;
  }

  /** Attach (or re-attach after connection reinstatement) the session's connection. */
  attach(sink: PduSink, cid: number, nextStatSN: number): void {
    this.#sink = sink;
    this.cid = cid;
    this.#statSN = nextStatSN >>> 0;
    this.#pingTtt = undefined;
  }

  /** Drop the tasks of a replaced connection (connection reinstatement at ERL 0: no recovery). */
  async reinstateConnection(): Promise<void> {
    await this.#abortWhere(() => true);
    this.#ordered.clear();
  }

  // ---------------------------------------------------------------- output helpers

  #send(pdu: TargetPdu, onWritten?: () => void): void {
    if (!this.#closed && this.#sink) this.#sink.send(pdu, onWritten);
    else onWritten?.();
  }

  /** Next StatSN for a status-bearing PDU. */
  #takeStatSN(): number {
    const s = this.#statSN;
    this.#statSN = snAdd(s, 1);
    return s;
  }

  reject(reason: number, bhs: Buffer | undefined): void {
    this.#send({
      opcode: 0x3f,
      immediate: false,
      data: bhs ?? Buffer.alloc(48),
      reason,
      statSN: this.#takeStatSN(),
      expCmdSN: this.#expCmdSN,
      maxCmdSN: this.maxCmdSN,
      dataSN: 0,
    });
  }

  /** Protocol error at ERL 0: Reject (when the header is known) and drop the connection. */
  #protocolError(reason: string, bhs?: Buffer): void {
    if (bhs) this.reject(RejectReason.PROTOCOL_ERROR, bhs);
    this.#sink?.close(`protocol error: ${reason}`, true);
  }

  // ---------------------------------------------------------------- input

  /** One PDU received in full feature phase. Never throws. */
  receive(pdu: InitiatorPdu, rawBhs?: Buffer): void {
    if (this.#closed) return;
    try {
      this.#receive(pdu, rawBhs);
    } catch (e) {
      this.#sink?.close(`internal error: ${(e as Error).message}`);
    }
    this.#unstage(); // a command that took its staged buffer cleared it; any other PDU frees it
  }

  #receive(pdu: InitiatorPdu, rawBhs: Buffer | undefined): void {
    switch (pdu.opcode) {
      case 0x05:
        this.#dataOut(pdu);
        return;
      case 0x10:
        this.reject(RejectReason.PROTOCOL_ERROR, rawBhs); // no SNACK at ERL 0
        return;
      case 0x03:
        this.reject(RejectReason.PROTOCOL_ERROR, rawBhs); // login in full feature phase
        return;
      case 0x00:
        if (pdu.itt === RESERVED_TAG) {
          // Answer to our NOP-In (or an unsolicited ping that wants no reply).
          if (pdu.ttt !== RESERVED_TAG && pdu.ttt === this.#pingTtt) this.#pingTtt = undefined;
          return;
        }
        break;
      default:
        break;
    }
    if (pdu.opcode === 0x01) {
      if (this.discovery) {
        this.reject(RejectReason.PROTOCOL_ERROR, rawBhs);
        return;
      }
      if (!this.#acceptCommand(pdu, rawBhs)) return;
    }
    if (pdu.immediate) {
      this.#deliver(pdu, rawBhs);
      return;
    }
    const sn = (pdu as { cmdSN: number }).cmdSN;
    if (!snInWindow(sn, this.#expCmdSN, this.maxCmdSN)) {
      // Outside the window: silently ignored (RFC 7143 §4.2.2.1).
      if (pdu.opcode === 0x01) this.#forget(pdu.itt);
      return;
    }
    if (sn !== this.#expCmdSN) {
      if (this.#ordered.has(sn)) {
        if (pdu.opcode === 0x01) this.#forget(pdu.itt);
        return;
      }
      this.#ordered.set(sn, pdu);
      return;
    }
    this.#expCmdSN = snAdd(sn, 1);
    this.#deliver(pdu, rawBhs);
    this.#drainOrdered();
  }

  #drainOrdered(): void {
    for (;;) {
      if (!this.#ordered.has(this.#expCmdSN)) return;
      const next = this.#ordered.get(this.#expCmdSN);
      this.#ordered.delete(this.#expCmdSN);
      this.#expCmdSN = snAdd(this.#expCmdSN, 1);
      if (next) this.#deliver(next, undefined);
    }
  }

  #deliver(pdu: InitiatorPdu, rawBhs: Buffer | undefined): void {
    if (this.#closed) return;
    switch (pdu.opcode) {
      case 0x00:
        this.#nopOut(pdu);
        return;
      case 0x01: {
        const t = this.#tasks.get(pdu.itt);
        if (t && t.pdu === pdu && !t.aborted) {
          t.delivered = true;
          this.#advance(t);
        }
        return;
      }
      case 0x02:
        void this.#tmf(pdu);
        return;
      case 0x04:
        this.#text(pdu, rawBhs);
        return;
      case 0x06:
        void this.#logout(pdu);
        return;
      default:
        this.reject(RejectReason.COMMAND_NOT_SUPPORTED, rawBhs);
    }
  }

  // ---------------------------------------------------------------- SCSI commands

  /** Validate a SCSI Command and register its task (before CmdSN ordering). */
  #acceptCommand(pdu: ScsiCommandPdu, rawBhs: Buffer | undefined): boolean {
    const p = this.params;
    if (this.#tasks.has(pdu.itt)) {
      this.reject(RejectReason.TASK_IN_PROGRESS, rawBhs);
      return false;
    }
    const writeLength = pdu.write ? pdu.edtl : 0;
    const imm = pdu.data.length;
    if (imm > 0 && (!pdu.write || !p.immediateData || imm > p.firstBurstLength || imm > pdu.edtl)) {
      this.#protocolError('bad immediate data', rawBhs);
      return false;
    }
    if (pdu.read && pdu.write && pdu.bidiReadLength === undefined) {
      // Bidirectional without the read-length AHS: treat the read length as 0.
    }
    const unsolicitedEnd = p.initialR2T ? imm : Math.min(p.firstBurstLength, writeLength);
    const t: Task = {
      itt: pdu.itt,
      pdu,
      lun: lunToNumber(pdu.lun),
      cmdSN: pdu.cmdSN,
      immediate: pdu.immediate,
      writeLength,
      buf: undefined,
      filling: false,
      pieces: [],
      received: imm,
      unsolicitedEnd: Math.max(unsolicitedEnd, imm),
      unsolicitedDone: pdu.final || p.initialR2T || imm >= Math.max(unsolicitedEnd, imm),
      unsolicitedDataSN: 0,
      delivered: false,
      executing: false,
      aborted: false,
      r2ts: new Map(),
      nextR2TOffset: 0,
      r2tSN: 0,
    };
    if (!pdu.final && p.initialR2T) {
      // F=0 announces unsolicited Data-Out, which InitialR2T=Yes forbids.
      this.#protocolError('unsolicited data with InitialR2T=Yes', rawBhs);
      return false;
    }
    const staged = this.#staged;
    if (staged !== undefined && staged.itt === pdu.itt && imm > 0 && pdu.data.buffer === staged.buf.buffer) {
      this.#staged = undefined;
      t.buf = staged.buf; // the immediate data is already in place
    } else if (
      writeLength > 0 &&
      writeLength <= WRITE_BUFFER_MAX &&
      this.#bufBytes + writeLength <= WRITE_BUFFER_BUDGET
    ) {
      t.buf = WRITE_BUFFERS.take(writeLength);
      this.#bufBytes += t.buf.length;
    }
    if (imm) this.#addData(t, pdu.data, 0);
    this.#tasks.set(pdu.itt, t);
    return true;
  }

  /** Stores Data-Out bytes (already checked) at `offset` of the task's data. */
  #addData(t: Task, data: Buffer, offset: number): void {
    const buf = t.buf;
    if (buf === undefined) t.pieces.push(data);
    else if (data.buffer !== buf.buffer || data.byteOffset !== buf.byteOffset + offset)
      data.copy(buf, offset);
    // else: the framing layer already placed it (see placeDataOut)
  }

  /** Drops the task's write buffer; `reuse` when nothing (no I/O in flight) can still touch it. */
  #dropBuffer(t: Task, reuse: boolean): void {
    const buf = t.buf;
    if (buf === undefined) return;
    t.buf = undefined;
    this.#bufBytes -= buf.length;
    if (reuse && !t.filling) WRITE_BUFFERS.give(buf); // while filling, the GC takes it
  }

  /** Hands back a staged buffer whose command was not accepted (its data is complete). */
  #unstage(): void {
    const staged = this.#staged;
    if (staged === undefined) return;
    this.#staged = undefined;
    this.#bufBytes -= staged.buf.length;
    WRITE_BUFFERS.give(staged.buf);
  }

  /**
   * Where the data segment of an incoming PDU belongs (the framing layer's placement hook): for a
   * SCSI Data-Out, see {@link placeDataOut}; for a write command's immediate data, the start of a
   * new write buffer that the command takes over when it is accepted.
   */
  placeData(bhs: Buffer, length: number): Buffer | undefined {
    if ((bhs[0]! & 0x3f) === 0x05) return this.placeDataOut(bhs, length);
    this.#unstage();
    const write = (bhs[1]! & 0x20) !== 0;
    const edtl = bhs.readUInt32BE(20);
    const itt = bhs.readUInt32BE(16);
    if (!write || length > edtl || edtl > WRITE_BUFFER_MAX || this.#bufBytes + edtl > WRITE_BUFFER_BUDGET)
      return undefined;
    if (this.#closed || this.discovery || this.#tasks.has(itt)) return undefined;
    const buf = WRITE_BUFFERS.take(edtl);
    this.#bufBytes += buf.length;
    this.#staged = { itt, buf };
    return buf.subarray(0, length);
  }

  /** Removes a task that never started. */
  #forget(itt: number): void {
    const t = this.#tasks.get(itt);
    if (t === undefined) return;
    this.#tasks.delete(itt);
    this.#dropBuffer(t, true);
  }

  /**
   * Where the data of an incoming Data-Out belongs: the view of the task's write buffer at its
   * BufferOffset, when the PDU is exactly the next one expected for that task (same checks as
   * {@link #dataOut}, except DataSN); else undefined and the PDU arrives the ordinary way.
   */
  placeDataOut(bhs: Buffer, length: number): Buffer | undefined {
    const t = this.#tasks.get(bhs.readUInt32BE(16));
    if (t === undefined || t.buf === undefined || t.aborted || t.executing) return undefined;
    const ttt = bhs.readUInt32BE(20);
    const offset = bhs.readUInt32BE(40);
    if (ttt === RESERVED_TAG) {
      if (t.unsolicitedDone || offset !== t.received || offset + length > t.unsolicitedEnd) return undefined;
    } else {
      const r = t.r2ts.get(ttt);
      if (r === undefined || offset !== r.offset + r.received || r.received + length > r.length)
        return undefined;
    }
    t.filling = true;
    return t.buf.subarray(offset, offset + length);
  }

  /** Move a delivered task along: R2Ts for missing data, or execution when complete. */
  #advance(t: Task): void {
    if (!t.delivered || t.aborted || t.executing) return;
    if (t.received >= t.writeLength) {
      this.#execute(t);
      return;
    }
    if (!t.unsolicitedDone) return;
    if (t.nextR2TOffset < t.received) t.nextR2TOffset = t.received;
    const p = this.params;
    while (t.r2ts.size < p.maxOutstandingR2T && t.nextR2TOffset < t.writeLength) {
      const [burst] = planR2T(t.nextR2TOffset, t.writeLength, p.maxBurstLength);
      if (!burst) break;
      let ttt = this.#tttNext;
      this.#tttNext = this.#tttNext >= 0x7fffffff ? 1 : this.#tttNext + 1;
      if (ttt === RESERVED_TAG) ttt = 1;
      t.r2ts.set(ttt, { ttt, offset: burst.offset, length: burst.length, received: 0, nextDataSN: 0 });
      t.nextR2TOffset = burst.offset + burst.length;
      this.#send({
        opcode: 0x31,
        immediate: false,
        data: EMPTY,
        lun: t.pdu.lun,
        itt: t.itt,
        ttt,
        statSN: this.#statSN,
        expCmdSN: this.#expCmdSN,
        maxCmdSN: this.maxCmdSN,
        r2tSN: t.r2tSN++,
        bufferOffset: burst.offset,
        desiredLength: burst.length,
      });
    }
  }

  #dataOut(pdu: DataOut): void {
    const t = this.#tasks.get(pdu.itt);
    if (t) t.filling = false;
    if (!t || t.aborted) return; // unknown, failed or aborted task: discard silently
    const len = pdu.data.length;
    if (pdu.ttt === RESERVED_TAG) {
      if (t.unsolicitedDone) {
        this.#failTask(t, DataError.UNEXPECTED_UNSOLICITED);
        return;
      }
      if (pdu.dataSN !== t.unsolicitedDataSN) {
        this.#failTask(t, DataError.DATA_SN);
        return;
      }
      if (pdu.bufferOffset !== t.received) {
        this.#failTask(t, DataError.OFFSET);
        return;
      }
      if (pdu.bufferOffset + len > t.unsolicitedEnd) {
        this.#failTask(t, DataError.TOO_MUCH);
        return;
      }
      t.unsolicitedDataSN++;
      if (len) this.#addData(t, pdu.data, pdu.bufferOffset);
      t.received += len;
      if (pdu.final || t.received >= t.unsolicitedEnd) t.unsolicitedDone = true;
      this.#advance(t);
      return;
    }
    const r = t.r2ts.get(pdu.ttt);
    if (!r) {
      this.#failTask(t, DataError.BAD_TTT);
      return;
    }
    if (pdu.dataSN !== r.nextDataSN) {
      this.#failTask(t, DataError.DATA_SN);
      return;
    }
    if (pdu.bufferOffset !== r.offset + r.received) {
      this.#failTask(t, DataError.OFFSET);
      return;
    }
    if (r.received + len > r.length) {
      this.#failTask(t, DataError.TOO_MUCH);
      return;
    }
    r.nextDataSN++;
    r.received += len;
    if (len) this.#addData(t, pdu.data, pdu.bufferOffset);
    t.received += len;
    if (r.received === r.length) {
      t.r2ts.delete(r.ttt);
      this.#advance(t);
    } else if (pdu.final) {
      this.#failTask(t, DataError.NOT_ENOUGH);
    }
  }

  /**
   * A Data-Out sequence error (bad DataSN, BufferOffset, TTT, length). ERL 0 cannot recover the
   * data, so the task ends with CHECK CONDITION / ABORTED COMMAND and the connection stays up;
   * later Data-Out for the task is discarded. (Dropping the connection instead would make
   * libiscsi reconnect and renegotiate, see the report on iSCSIdatasn.)
   */
  #failTask(t: Task, err: readonly [number, number]): void {
    t.aborted = true;
    this.#tasks.delete(t.itt);
    this.#dropBuffer(t, true); // before execution: no I/O holds it
    if (!t.delivered && !t.immediate && this.#ordered.get(t.cmdSN) === t.pdu)
      this.#ordered.set(t.cmdSN, null);
    const sense = Buffer.alloc(18);
    sense[0] = 0x70;
    sense[2] = 0x0b; // ABORTED COMMAND
    sense[7] = 10;
    sense[12] = err[0];
    sense[13] = err[1];
    this.#respond(t, { status: ScsiStatus.CHECK_CONDITION, sense });
    this.onIdle?.();
  }

  #execute(t: Task): void {
    const scsi = this.scsi;
    const nexus = this.nexus;
    if (!scsi || !nexus) return;
    t.executing = true;
    const pieces = t.pieces;
    const dataOut = t.buf
      ? t.buf.subarray(0, t.received)
      : pieces.length === 0
        ? EMPTY
        : pieces.length === 1
          ? pieces[0]!
          : gather(pieces, t.received);
    const cmd: ScsiCommand = {
      nexus,
      lun: t.lun,
      cdb: t.pdu.cdb,
      expectedDataOutLength: t.writeLength,
      expectedDataInLength: t.pdu.read ? (t.pdu.write ? (t.pdu.bidiReadLength ?? 0) : t.pdu.edtl) : 0,
      dataOut,
      taskAttribute: (t.pdu.attr <= 4 ? t.pdu.attr : 1) as TaskAttribute,
      taskTag: t.itt,
      signal: t, // the task's own `aborted` flag (an AbortController per command costs ~7% CPU)
    };
    t.done = (async () => {
      let result: ScsiResult;
      try {
        result = await scsi.execute(cmd);
      } catch {
        // The core must not throw; if it does, report a hardware error rather than hang the task.
        result = {
          status: ScsiStatus.CHECK_CONDITION,
          sense: Buffer.from([0x70, 0, 0x04, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x44, 0, 0, 0, 0, 0]),
        };
      }
      this.#dropBuffer(t, result.dataOutReusable === true);
      if (t.aborted || this.#closed) {
        result.release?.();
        return;
      }
      this.#tasks.delete(t.itt);
      this.#respond(t, result);
      this.onIdle?.();
    })();
  }

  #respond(t: Task, r: ScsiResult): void {
    const p = this.params;
    const expIn = t.pdu.read ? (t.pdu.write ? (t.pdu.bidiReadLength ?? 0) : t.pdu.edtl) : 0;
    const dataIn = r.dataIn ?? EMPTY;
    const sendLen = Math.min(dataIn.length, expIn);
    // Residual: for reads, data produced vs expected; for writes, what the CDB wanted vs EDTL.
    let res = residualOf(0, 0);
    if (t.pdu.read && !t.pdu.write) res = residualOf(dataIn.length, expIn);
    else if (t.pdu.write && !t.pdu.read) res = residualOf(r.dataOutWanted ?? t.writeLength, t.writeLength);
    else if (!t.pdu.read && !t.pdu.write) {
      if (dataIn.length > 0) res = residualOf(dataIn.length, 0);
      else if (r.dataOutWanted) res = residualOf(r.dataOutWanted, 0);
    }
    let bidiRes = residualOf(0, 0);
    if (t.pdu.read && t.pdu.write) {
      bidiRes = residualOf(dataIn.length, expIn);
      res = residualOf(r.dataOutWanted ?? t.writeLength, t.writeLength);
    }
    const fold = sendLen > 0 && !r.sense && !(t.pdu.read && t.pdu.write);
    const segs = planDataIn(sendLen, p.initiatorMaxRecvDataSegmentLength, p.maxBurstLength);
    let dataSN = 0;
    for (const s of segs) {
      const withStatus = fold && s.last;
      this.#send(
        {
          opcode: 0x25,
          immediate: false,
          data: dataIn.subarray(s.offset, s.offset + s.length),
          final: s.final || s.last,
          ack: false,
          overflow: withStatus && res.overflow,
          underflow: withStatus && res.underflow,
          hasStatus: withStatus,
          status: withStatus ? r.status : 0,
          lun: t.pdu.lun,
          itt: t.itt,
          ttt: RESERVED_TAG,
          statSN: withStatus ? this.#takeStatSN() : 0,
          expCmdSN: this.#expCmdSN,
          maxCmdSN: this.maxCmdSN,
          dataSN: dataSN++,
          bufferOffset: s.offset,
          residual: withStatus ? res.count : 0,
        },
        s.last ? r.release : undefined,
      );
    }
    if (segs.length === 0) r.release?.();
    if (fold) return;
    const data = r.sense?.length ? senseSegment(r.sense) : EMPTY;
    this.#send({
      opcode: 0x21,
      immediate: false,
      data,
      bidiOverflow: bidiRes.overflow,
      bidiUnderflow: bidiRes.underflow,
      overflow: res.overflow,
      underflow: res.underflow,
      response: 0,
      status: r.status,
      itt: t.itt,
      snackTag: 0,
      statSN: this.#takeStatSN(),
      expCmdSN: this.#expCmdSN,
      maxCmdSN: this.maxCmdSN,
      expDataSN: t.pdu.read ? dataSN : t.r2tSN,
      bidiResidual: bidiRes.count,
      residual: res.count,
    });
  }

  // ---------------------------------------------------------------- NOP

  #nopOut(pdu: NopOut): void {
    this.#send({
      opcode: 0x20,
      immediate: false,
      data: pdu.data,
      lun: pdu.lun,
      itt: pdu.itt,
      ttt: RESERVED_TAG,
      statSN: this.#takeStatSN(),
      expCmdSN: this.#expCmdSN,
      maxCmdSN: this.maxCmdSN,
    });
  }

  /**
   * Keep-alive: called periodically by the connection. Sends a NOP-In ping every `intervalMs`;
   * returns false when the previous ping went unanswered for `timeoutMs` (drop the connection).
   */
  tick(now: number, intervalMs: number, timeoutMs: number): boolean {
    if (this.#closed) return true;
    if (this.#pingTtt !== undefined) return now - this.#pingSentAt < timeoutMs;
    if (intervalMs > 0 && now - this.#lastPingAt >= intervalMs) {
      const ttt = this.#tttNext;
      this.#tttNext = this.#tttNext >= 0x7fffffff ? 1 : this.#tttNext + 1;
      this.#pingTtt = ttt;
      this.#pingSentAt = now;
      this.#lastPingAt = now;
      this.#send({
        opcode: 0x20,
        immediate: false,
        data: EMPTY,
        lun: 0n,
        itt: RESERVED_TAG,
        ttt,
        statSN: this.#statSN,
        expCmdSN: this.#expCmdSN,
        maxCmdSN: this.maxCmdSN,
      });
    }
    return true;
  }

  /** Any PDU from the initiator proves the connection alive. */
  heard(now: number): void {
    this.#lastPingAt = Math.max(this.#lastPingAt, now);
    if (this.#pingTtt !== undefined && now - this.#pingSentAt > 0) {
      // keep waiting for the NOP-Out echo, but traffic means the peer is alive
      this.#pingSentAt = now;
    }
  }

  // ---------------------------------------------------------------- Text

  #text(pdu: TextRequest, rawBhs: Buffer | undefined): void {
    // Continuation of a long response we are sending.
    if (pdu.ttt !== RESERVED_TAG) {
      const pend = this.#textPending.get(pdu.ttt);
      this.#textPending.delete(pdu.ttt);
      if (!pend) {
        this.reject(RejectReason.INVALID_PDU_FIELD, rawBhs);
        return;
      }
      this.#sendText(pdu, pend.rest);
      return;
    }
    if (pdu.cont) {
      const parts = this.#textIn.get(pdu.itt) ?? [];
      parts.push(pdu.data);
      this.#textIn.set(pdu.itt, parts);
      this.#sendTextPdu(pdu, EMPTY, true, false, RESERVED_TAG);
      return;
    }
    const parts = this.#textIn.get(pdu.itt);
    this.#textIn.delete(pdu.itt);
    const all = parts ? Buffer.concat([...parts, pdu.data]) : pdu.data;
    const parsed = parseText(all);
    if (!parsed.ok) {
      this.reject(RejectReason.PROTOCOL_ERROR, rawBhs);
      return;
    }
    const answers: [string, string][] = [];
    for (const [k, v] of parsed.pairs) {
      if (k === 'SendTargets') answers.push(...this.#hooks.sendTargets(v, this));
      else answers.push([k, 'NotUnderstood']);
    }
    this.#sendText(pdu, encodeText(answers));
  }

  #sendText(pdu: TextRequest, payload: Buffer): void {
    const max = this.params.initiatorMaxRecvDataSegmentLength;
    if (payload.length <= max) {
      this.#sendTextPdu(pdu, payload, false, true, RESERVED_TAG);
      return;
    }
    const ttt = this.#tttNext;
    this.#tttNext = this.#tttNext >= 0x7fffffff ? 1 : this.#tttNext + 1;
    this.#textPending.set(ttt, { rest: payload.subarray(max), itt: pdu.itt });
    this.#sendTextPdu(pdu, payload.subarray(0, max), true, false, ttt);
  }

  #sendTextPdu(pdu: TextRequest, data: Buffer, cont: boolean, final: boolean, ttt: number): void {
    this.#send({
      opcode: 0x24,
      immediate: false,
      data,
      final,
      cont,
      lun: pdu.lun,
      itt: pdu.itt,
      ttt,
      statSN: this.#takeStatSN(),
      expCmdSN: this.#expCmdSN,
      maxCmdSN: this.maxCmdSN,
    });
  }

  // ---------------------------------------------------------------- Logout

  async #logout(pdu: LogoutRequest): Promise<void> {
    let response: number = LogoutResponse.SUCCESS;
    if (pdu.reason === LogoutReason.REMOVE_FOR_RECOVERY) response = LogoutResponse.RECOVERY_NOT_SUPPORTED;
    else if (pdu.reason === LogoutReason.CLOSE_CONNECTION && pdu.cid !== this.cid) {
      response = LogoutResponse.CID_NOT_FOUND;
    }
    if (response === LogoutResponse.SUCCESS) await this.#abortWhere(() => true);
    if (this.#closed) return;
    this.#send({
      opcode: 0x26,
      immediate: false,
      data: EMPTY,
      response,
      itt: pdu.itt,
      statSN: this.#takeStatSN(),
      expCmdSN: this.#expCmdSN,
      maxCmdSN: this.maxCmdSN,
      time2Wait: 0,
      time2Retain: 0,
    });
    if (response === LogoutResponse.SUCCESS) {
      this.#sink?.close('logout', true);
    }
  }

  /** Ask the initiator to log out within `seconds` (Async Message, event 1). */
  requestLogout(seconds: number): void {
    this.#logoutRequested = true;
    this.#async(AsyncEvent.LOGOUT_REQUEST, 0, 0, Math.max(0, Math.min(65535, seconds)));
  }

  /** SCSI asynchronous event (Async Message, event 0) carrying sense data. */
  scsiAsyncEvent(lun: bigint, sense: Buffer): void {
    this.#async(AsyncEvent.SCSI_ASYNC_EVENT, 0, 0, 0, lun, senseSegment(sense));
  }

  #async(event: number, p1: number, p2: number, p3: number, lun = 0n, data: Buffer = EMPTY): void {
    this.#send({
      opcode: 0x32,
      immediate: false,
      data,
      lun,
      statSN: this.#takeStatSN(),
      expCmdSN: this.#expCmdSN,
      maxCmdSN: this.maxCmdSN,
      event,
      vcode: 0,
      param1: p1,
      param2: p2,
      param3: p3,
    });
  }

  // ---------------------------------------------------------------- TMF

  /** Abort the tasks matching `pred` (no responses); resolves once executing ones settled. */
  async #abortWhere(pred: (t: Task) => boolean): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const t of [...this.#tasks.values()]) {
      if (!pred(t)) continue;
      t.aborted = true;
      this.#tasks.delete(t.itt);
      if (!t.delivered && !t.immediate && this.#ordered.get(t.cmdSN) === t.pdu)
        this.#ordered.set(t.cmdSN, null);
      if (!t.executing) this.#dropBuffer(t, true); // an executing task drops it when the core returns
      if (t.done) waits.push(t.done.catch(() => undefined));
    }
    await Promise.all(waits);
    this.onIdle?.();
  }

  /** Abort tasks on `lun` (or all when undefined) — used by peers for LUN/target resets. */
  abortTasks(lun: number | undefined): Promise<void> {
    return this.#abortWhere((t) => lun === undefined || t.lun === lun);
  }

  async #tmf(pdu: TmfRequest): Promise<void> {
    const fn = pdu.fn;
    const lun = lunToNumber(pdu.lun);
    const scsi = this.scsi;
    const nexus = this.nexus;
    let response: number = TmfResponse.COMPLETE;
    if (!scsi || !nexus) {
      response = TmfResponse.NOT_SUPPORTED;
    } else if (TMF_LUN_FUNCTIONS.has(fn) && fn !== 1 && !scsi.luns().includes(lun)) {
      response = TmfResponse.LUN_DOES_NOT_EXIST;
    } else {
      switch (fn) {
        case TmfFunction.ABORT_TASK: {
          const t = this.#tasks.get(pdu.rtt);
          if (t) {
            await this.#abortWhere((x) => x === t);
            scsi.taskManagement(TmfFunction.ABORT_TASK, nexus, t.lun);
          } else if (
            snInWindow(pdu.refCmdSN, this.#expCmdSN, this.maxCmdSN) &&
            snLt(pdu.refCmdSN, pdu.cmdSN) &&
            !this.#ordered.has(pdu.refCmdSN)
          ) {
            // Never received: consider it received so the window moves on (RFC 7143 §11.5.1 b).
            this.#ordered.set(pdu.refCmdSN, null);
            if (pdu.refCmdSN === this.#expCmdSN) this.#drainOrdered();
          } else if (this.#ordered.get(pdu.refCmdSN) === null) {
            // already consumed
          } else {
            response = TmfResponse.TASK_DOES_NOT_EXIST;
          }
          break;
        }
        case TmfFunction.ABORT_TASK_SET:
          await this.#abortWhere((t) => t.lun === lun);
          response = scsi.taskManagement(TmfFunction.ABORT_TASK_SET, nexus, lun);
          break;
        case TmfFunction.CLEAR_ACA:
          response = TmfResponse.NOT_SUPPORTED;
          break;
        case TmfFunction.CLEAR_TASK_SET:
        case TmfFunction.LOGICAL_UNIT_RESET:
          await Promise.all(this.#hooks.peers(this).map((s) => s.abortTasks(lun)));
          response = scsi.taskManagement(fn, nexus, lun);
          break;
        case TmfFunction.TARGET_WARM_RESET:
        case TmfFunction.TARGET_COLD_RESET:
          await Promise.all(this.#hooks.peers(this).map((s) => s.abortTasks(undefined)));
          response = scsi.taskManagement(fn, nexus, lun);
          break;
        case 8: // TASK REASSIGN
          response = TmfResponse.REASSIGNMENT_UNSUPPORTED;
          break;
        default:
          response = TmfResponse.REJECTED;
      }
    }
    if (this.#closed) return;
    this.#send({
      opcode: 0x22,
      immediate: false,
      data: EMPTY,
      response,
      itt: pdu.itt,
      statSN: this.#takeStatSN(),
      expCmdSN: this.#expCmdSN,
      maxCmdSN: this.maxCmdSN,
    });
    if (fn === TmfFunction.TARGET_COLD_RESET && response === TmfResponse.COMPLETE)
      this.#hooks.coldReset(this);
  }

  // ---------------------------------------------------------------- teardown

  /** End the session: abort tasks, tell the SCSI core the nexus is gone. Idempotent. */
  close(reason: string): void {
    if (this.#closed) return;
    void this.#abortWhere(() => true);
    this.#closed = true;
    this.#ordered.clear();
    if (this.scsi && this.nexus) {
      try {
        this.scsi.nexusLost(this.nexus);
      } catch {
        // the core must not throw; a failure here must not take the server down
      }
    }
    this.#hooks.closed(this, reason);
  }

  /** Was the CmdSN `sn` already received or queued? (tests) */
  hasQueued(sn: number): boolean {
    return this.#ordered.has(sn) || snGt(this.#expCmdSN, sn);
  }
}

/**
 * Joins a command's Data-Out pieces (slices of the receive buffers) into one 4096-aligned pool
 * buffer: the one copy the data needs, after which an O_DIRECT backstore writes it as it is
 * (Buffer.concat would copy into unaligned memory and the backstore would copy again).
 */
function gather(pieces: readonly Buffer[], total: number): Buffer {
  const out = allocAligned(total, { zero: false });
  let at = 0;
  for (const p of pieces) at += p.copy(out, at);
  return at === out.length ? out : out.subarray(0, at);
}
