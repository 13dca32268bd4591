/** Per-peer bookkeeping of a resource: connection, states, requests in flight, counters, sync runs. */
import type { ParamsMsg } from '../wire/codec.js';
import type { Backstore } from '../backstore/types.js';
import type { ActivityLog } from './activity-log.js';
import type { LockEntry } from './interval-lock.js';
import type { WireConnection } from '../wire/connection.js';
import type { NodeConfig } from './config.js';
import type { ConnState, DiskState, ReplState, Role } from './states.js';

/**
 * One replicated write on the Primary, from its interval lock to its completion: a fixed-shape
 * record the write path moves along (its local I/O and every peer count down to the end) instead
 * of an async function with a promise per step and per peer.
 */
export class WriteOp {
  readonly offset: number;
  readonly length: number;
  readonly data: Buffer | null;
  readonly fua: boolean;
  /** The local disk and activity log of the moment the write entered. */
  readonly b: Backstore;
  readonly al: ActivityLog;
  /** Its interval lock entry (set once the lock is held). */
  lock: LockEntry | null = null;
  /** References on the range's AL extents taken (released at the end). */
  alHeld = false;
  /** Peers still to answer (per protocol). */
  peers = 0;
  /** 0: local write not finished; 1: done; 2: failed (`error`). */
  local = 0;
  error: unknown = null;
  /** Ended early (an exception before the I/O started): late peer answers are ignored. */
  dead = false;
  resolve: () => void = noop;
  reject: (e: unknown) => void = noop;

  constructor(
    offset: number,
    length: number,
    data: Buffer | null,
    fua: boolean,
    b: Backstore,
    al: ActivityLog,
  ) {
    this.offset = offset;
    this.length = length;
    this.data = data;
    this.fua = fua;
    this.b = b;
    this.al = al;
  }
}

function noop(): void {}

/** A replicated write waiting for the peer. */
export interface PendingWrite {
  readonly kind: 'write';
  readonly offset: number;
  readonly length: number;
  readonly sentAt: number;
  /** The write to tell (per protocol), null once told or when nothing waits (protocol A). */
  waiter: WriteOp | null;
  /** The waiter is told at RECV_ACK (protocol B), else at WRITE_ACK / NEG_ACK / connection loss. */
  readonly atRecv: boolean;
}

/** Any other request answered by one packet (flush, resync, verify). */
export interface PendingReply {
  readonly kind: 'reply';
  readonly sentAt: number;
  readonly settle: (payload: Buffer | null, value: number) => void;
}

export type Pending = PendingWrite | PendingReply;

export interface SyncRun {
  readonly dir: 'source' | 'target';
  readonly full: boolean;
  readonly startedAt: number;
  finishedAt: number | null;
  /** Bits out of sync when the run started (both bitmaps merged). */
  totalBits: number;
  /** Device bytes processed (resync data written or found equal). */
  doneBytes: number;
  /** RS_DATA payload bytes sent (source) or received (target). */
  dataBytes: number;
  /** Digest bytes sent + received (checksum resync). */
  digestBytes: number;
  /** Blocks found identical by checksum (no data sent). */
  equalBlocks: number;
  pausedByUser: boolean;
  pausedByPeer: boolean;
  /** Ends the source loop. */
  stopped: boolean;
  /** Target deferred this run (another peer is syncing it). */
  deferred: boolean;
}

export interface VerifyRun {
  readonly dir: 'source' | 'target';
  readonly startedAt: number;
  readonly totalBytes: number;
  doneBytes: number;
  oosBlocks: number;
  stopped: boolean;
}

export class Peer {
  readonly cfg: NodeConfig;
  conn: WireConnection | null = null;
  cs: ConnState = 'StandAlone';
  rs: ReplState = 'Off';
  role: Role = 'Unknown';
  disk: DiskState = 'DUnknown';
  params: ParamsMsg | null = null;
  /** Keep (re)connecting. */
  want = false;
  /** One-shot: discard this node's data at the next handshake with this peer. */
  discardMyData = false;
  /** Decision taken for the current connection (writes flow only after it). */
  established = false;
  /** `weakNodes` in the last PARAMS sent to this peer (a Primary re-sends when it changes). */
  weakSent = 0;
  bitmapSent = false;
  bitmapReceived = false;
  nextId = 1;
  seqOut = 0;
  seqIn = 0;
  readonly pending = new Map<number, Pending>();
  /** Bytes and count of replicated writes sent and not yet answered (WRITE_ACK / NEG_ACK). */
  unackedWriteBytes = 0;
  unackedWrites = 0;
  /** Writes received and not yet acknowledged. */
  ua = 0;
  /** Data bytes sent / received (replicated writes and resync data). */
  sentBytes = 0;
  recvBytes = 0;
  /** Wire bytes of closed connections (the live one adds conn.bytesOut/bytesIn). */
  wireOutClosed = 0;
  wireInClosed = 0;
  sync: SyncRun | null = null;
  lastSync: SyncRun | null = null;
  verify: VerifyRun | null = null;
  lastVerify: VerifyRun | null = null;
  lastError = '';
  lastDecision = '';
  pingTimer: NodeJS.Timeout | null = null;
  pingDeadline: NodeJS.Timeout | null = null;
  retryTimer: NodeJS.Timeout | null = null;
  dialing = false;
  /** Promises of replicated writes being applied locally (a FLUSH waits for them). */
  readonly applying = new Set<Promise<void>>();

  constructor(cfg: NodeConfig) {
    this.cfg = cfg;
  }

  get id(): number {
    return this.cfg.id;
  }

  get diskful(): boolean {
    return this.cfg.disk !== 'none';
  }

  get wireOut(): number {
    return this.wireOutClosed + (this.conn?.bytesOut ?? 0);
  }

  get wireIn(): number {
    return this.wireInClosed + (this.conn?.bytesIn ?? 0);
  }

  get pendingWrites(): number {
    let n = 0;
    for (const p of this.pending.values()) if (p.kind === 'write') n++;
    return n;
  }

  oldestPendingAge(now: number): number {
    let oldest = now;
    for (const p of this.pending.values()) if (p.sentAt < oldest) oldest = p.sentAt;
    return now - oldest;
  }
}
