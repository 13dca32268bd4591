/**
 * One replicated resource on this node: local disk + metadata, connections to the peers, the
 * write path (protocol A/B/C), flushes, bitmap-driven resync (optionally checksum based), online
 * verify, split-brain handling, quorum and fencing. `ReplicatedBackstore` (backstore.ts) puts the
 * Backstore face on it; node-main.ts and control.ts drive it from the outside.
 *
 * Connections: for every pair of nodes the lower node id dials and the higher one accepts; both
 * ends run the authenticated handshake (src/wire/connection.ts), exchange PARAMS (UUIDs, role,
 * disk state, bitmap weight) and take the same sync decision (uuid.ts) independently.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { openBackstore } from '../backstore/index.js';
import { submitHold } from '../native/index.js';
import { type Backstore, BackstoreError, BackstoreErrorCode, type WriteOptions } from '../backstore/types.js';
import { type Logger, silentLogger } from '../util/log.js';
import {
  DataFlags,
  type Frame,
  PACKET_NAMES,
  type ParamsMsg,
  PacketType,
  type PacketInit,
  type WireError,
} from '../wire/codec.js';
import { adoptWithStaticReads, StaticReads } from '../net/static-reads.js';
import { handshake, WireConnection } from '../wire/connection.js';
import { ActivityLog } from './activity-log.js';
import type { Bitmap } from './bitmap.js';
import { metaPath, type NodeConfig, type ResourceConfig } from './config.js';
import { blockDigests, diffMask, digestLength, maskBit } from './digest.js';
import { IntervalLock, LockEntry } from './interval-lock.js';
import { Metadata } from './metadata.js';
import { Peer, type PendingWrite, type SyncRun, WriteOp } from './peer.js';
import {
  type ConnState,
  type DiskState,
  diskAt,
  diskIndex,
  hasQuorum,
  PROTOCOLS,
  promoteRefusal,
  receivesWrites,
  type Role,
  roleAt,
  roleIndex,
} from './states.js';
import { decideSync, newUuid, parseUuid, UUID_JUST_CREATED, type UuidSet, uuidHex } from './uuid.js';

/** PARAMS.flags: why the params were sent. */
const ParamsKind = { HELLO: 0, REQ: 1, REPLY: 2, INFO: 3 } as const;
/** SYNC_START.value. */
const SyncStartKind = {
  SENDER_SOURCE_FULL: 1,
  SENDER_TARGET_FULL: 2,
  SKIP: 3,
  SENDER_SOURCE_BITMAP: 4,
} as const;
const BITMAP_CHUNK = 1024 * 1024;
/** Resync / verify requests in flight per peer (32 × 256 KiB: 8 MiB; 8 capped resync at ~300 MiB/s here). */
const RESYNC_WINDOW = 32;
/**
 * …and at most this many resync bytes in flight: 16 requests of 1 MiB (the default chunk), still
 * 32 of 256 KiB, while the short runs of a sparse bitmap keep the full count. More bytes in flight
 * only lengthen the queues (the peer's write queue, the socket buffers), not the throughput.
 */
const RESYNC_WINDOW_BYTES = 16 * 1024 * 1024;
/**
 * Protocol A completes a write once its data is in the socket's send buffer, so nothing but the
 * socket buffers (4 MiB send + up to 32 MiB autotuned receive on loopback) held back a Primary
 * whose peer fell behind: tens of MiB of writes piled up in the peer's queue. Beyond these
 * bounds of writes sent and not yet acknowledged, a protocol A write completes on its WRITE_ACK
 * (like C) — the Primary is paced by the peer, as DRBD's max-buffers (2048 × 4 KiB) does.
 */
const PROTO_A_MAX_UNACKED_BYTES = 8 * 1024 * 1024;
const PROTO_A_MAX_UNACKED = 2048;

/**
 * A replicated write's local I/O is submitted once its DATA frames are in the kernel. The frames
 * of a tick go out together (one writev per peer), at the end of the tick — or as soon as this
 * many writes are waiting for that, and their local writes are submitted right then. Without the
 * bound a QD32 burst (all 32 completions arrive together) ran all 32 write prologues, then one
 * writev, then 32 local submits: the disk idled ~150 µs per burst while the loop worked, and the
 * bursts stayed synchronised. 12 was best with one io_uring_enter per local write; with a group's
 * submits batched (submitHold), 16: C QD32, 5 alternated rounds, 12 → 94.1k median (85.7–97.4k),
 * 16 → 97.6k median (95.9–100.8k), the Primary 8.8–10.3 → 8.3–9.0 µs per write (8: 92k, 24: 86–92k).
 */
const FRAME_GROUP = frameGroupSetting();

/**
 * From this size on the local write is submitted first and the DATA frame follows at the end of
 * the tick: handing 1 MiB to loopback TCP takes ~250 µs of the Primary's thread (copy plus the
 * receiver's TCP processing), during which the local disk would otherwise idle, while submitting
 * an O_DIRECT write is short. 1 MiB sequential writes at QD4, protocol C, peer on tmpfs,
 * 3 rounds: 1,737 / 1,824 / 1,682 → 2,005 / 1,920 / 1,954 MiB/s.
 */
const LOCAL_FIRST_BYTES = 256 * 1024;

const SUBMIT_BATCH = process.env['LUNAR_REPL_SUBMIT_BATCH'] !== '0';

/** The local write's options (shared: no object per write). */
const FUA: WriteOptions = Object.freeze({ fua: true });
const NO_FUA: WriteOptions = Object.freeze({ fua: false });

/** FRAME_GROUP: 16, or LUNAR_REPL_FRAME_GROUP (a positive integer; for measurements). */
function frameGroupSetting(): number {
  const v = Number(process.env['LUNAR_REPL_FRAME_GROUP'] ?? '');
  return Number.isInteger(v) && v > 0 ? v : 16;
}

/**
 * Requests in flight, bounded by count and by bytes (one request always fits). One waiter at a
 * time (the resync loop); `settled()` wakes it whenever a request completes.
 */
class InflightWindow {
  count = 0;
  bytes = 0;
  #wake: (() => void) | null = null;
  readonly #maxCount: number;
  readonly #maxBytes: number;

  constructor(maxCount: number, maxBytes: number) {
    this.#maxCount = maxCount;
    this.#maxBytes = maxBytes;
  }

  fits(bytes: number): boolean {
    return this.count === 0 || (this.count < this.#maxCount && this.bytes + bytes <= this.#maxBytes);
  }

  /** Resolves at the next completion (at once when nothing is in flight). */
  next(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((r) => {
      this.#wake = r;
    });
  }

  add(bytes: number): void {
    this.count++;
    this.bytes += bytes;
  }

  settled(bytes: number): void {
    this.count--;
    this.bytes -= bytes;
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }
}

export class ReplicationError extends Error {
  override readonly name = 'ReplicationError';
}

export interface ResourceOptions {
  readonly config: ResourceConfig;
  readonly nodeId: number;
  readonly logger?: Logger;
  /** Opens the backing store (default: a file backstore on node.disk, created sparse when missing). */
  readonly openBacking?: (node: NodeConfig, cfg: ResourceConfig) => Promise<Backstore>;
}

export interface ResourceEvents {
  /** One events2-style line per state change ('change …', 'call helper …', …). */
  event: [string];
}

/** Hands a buffer returned by `b.read()` back to backstores that recycle read buffers. */
function releaseReadBuffer(b: Backstore, buf: Buffer): void {
  (b as Backstore & { release?: (buffer: Buffer) => void }).release?.(buf);
}

/** The backstore holds no reference to write() data once the write settled (it may be reused). */
function keepsNoWriteData(b: Backstore): boolean {
  return (b as Backstore & { readonly doneWithWriteData?: boolean }).doneWithWriteData === true;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A UUID (hex) with its lowest bit set to this node's role, as DRBD does when it sets a UUID. */
function withRoleBit(hex: string, primary: boolean): string {
  const v = parseUuid(hex) & ~1n;
  return uuidHex(primary ? v | 1n : v);
}

function sameUuid(a: string, b: string): boolean {
  return (parseUuid(a) & ~1n) === (parseUuid(b) & ~1n);
}

function randomUuid(): bigint {
  return randomBytes(8).readBigUInt64BE();
}

export class Resource extends EventEmitter<ResourceEvents> {
  /** Replaced by adjust() (options only; the node list and size are fixed while running). */
  cfg: ResourceConfig;
  readonly me: NodeConfig;
  readonly peers = new Map<number, Peer>();
  readonly log: Logger;
  readonly lock = new IntervalLock();
  backing: Backstore | null = null;
  md: Metadata | null = null;
  al: ActivityLog | null = null;
  role: Role = 'Secondary';
  disk: DiskState = 'Diskless';
  isUp = false;
  /** I/O frozen: quorum lost with suspend-io, or fencing with resource-and-stonith. */
  suspendedBy: Set<'quorum' | 'fencing' | 'user'> = new Set();
  #resumeWaiters: (() => void)[] = [];
  /** Replicated writes whose local submit waits for their DATA frames to reach the kernel. */
  #afterFrames: WriteOp[] = [];
  /** The other array #sendFrames swaps in (no array per group). */
  #afterFramesSpare: WriteOp[] = [];
  /** The peers' values as an array (the set is fixed at construction): no iterator per write. */
  readonly #peerList: Peer[] = [];
  #framesTickArmed = false;
  #server: Server | null = null;
  #tick: NodeJS.Timeout | null = null;
  readonly #openBacking: (node: NodeConfig, cfg: ResourceConfig) => Promise<Backstore>;
  readonly #lastLines = new Map<string, string>();
  /** Counters (KiB-able bytes). */
  readBytes = 0;
  writtenBytes = 0;
  localPending = 0;
  appPending = 0;

  constructor(o: ResourceOptions) {
    super();
    this.cfg = o.config;
    const me = o.config.nodes.find((n) => n.id === o.nodeId);
    if (me === undefined)
      throw new ReplicationError(`node id ${o.nodeId} is not part of resource ${o.config.name}`);
    this.me = me;
    this.log = (o.logger ?? silentLogger).child({ res: o.config.name, node: o.nodeId });
    for (const n of o.config.nodes) if (n.id !== me.id) this.peers.set(n.id, new Peer(n));
    this.#peerList.push(...this.peers.values());
    this.#openBacking =
      o.openBacking ??
      ((n, c) =>
        openBackstore({
          kind: 'file',
          path: n.disk,
          size: c.sizeBytes,
          blockSize: c.blockSize,
          create: true,
          direct: c.disk.direct,
        }));
  }

  get name(): string {
    return this.cfg.name;
  }

  get diskless(): boolean {
    return this.me.disk === 'none';
  }

  get blockSize(): number {
    return this.cfg.blockSize;
  }

  get sizeBytes(): number {
    return this.cfg.sizeBytes;
  }

  // ---------------------------------------------------------------- lifecycle

  /** Attaches the disk, opens the metadata, listens, and starts connecting to every peer. */
  async up(): Promise<void> {
    if (this.isUp) return;
    if (!this.diskless) {
      this.disk = 'Attaching';
      const backing = await this.#openBacking(this.me, this.cfg);
      if (backing.blockCount * backing.blockSize < this.cfg.sizeBytes) {
        await backing.close();
        throw new ReplicationError(
          `backing store ${backing.description} is smaller than ${this.cfg.sizeBytes} bytes`,
        );
      }
      let md: Metadata;
      try {
        md = await Metadata.open(metaPath(this.me), {
          nodeId: this.me.id,
          sizeBytes: this.cfg.sizeBytes,
          maxNodes: 4,
        });
      } catch (e) {
        await backing.close();
        throw e;
      }
      this.backing = backing;
      this.md = md;
      this.al = new ActivityLog(
        Math.min(this.cfg.disk.alExtents, 1020),
        {
          transaction: async (active) => {
            await md.flushBitmaps();
            await md.writeAl(active);
          },
        },
        md.alExtents,
      );
      this.disk = md.sb.disk;
      if (md.recoveredFromCrash) {
        this.log.warn(
          { al: md.alExtents.length },
          'unclean shutdown: activity log extents marked out of sync',
        );
      }
    }
    this.isUp = true;
    this.role = 'Secondary';
    await this.#listen();
    this.#tick = setInterval(() => this.#onTick(), 250);
    this.#tick.unref();
    for (const p of this.peers.values()) this.#wantConnect(p, false);
    this.#changed();
  }

  /** Disconnects, flushes and closes everything (the metadata is marked clean). */
  async down(): Promise<void> {
    if (!this.isUp) return;
    if (this.role === 'Primary') await this.secondary().catch(() => {});
    for (const p of this.peers.values()) this.#disconnectPeer(p, 'resource down', 'StandAlone');
    this.isUp = false;
    if (this.#tick !== null) clearInterval(this.#tick);
    this.#tick = null;
    await new Promise<void>((r) => (this.#server === null ? r() : this.#server.close(() => r())));
    this.#server = null;
    await this.lock.drain();
    if (this.backing !== null) {
      await this.backing.flush().catch(() => {});
      await this.backing.close();
    }
    if (this.md !== null) await this.md.close(true);
    this.backing = null;
    this.md = null;
    this.al = null;
    this.disk = 'Diskless';
    this.#releaseSuspend();
    this.#changed();
  }

  // ---------------------------------------------------------------- admin verbs

  /**
   * drbdadm adjust: applies a changed resource file (net/disk/quorum/fencing options), brings the
   * resource up if it is down and reconnects peers that are StandAlone (except after a split
   * brain, which needs an explicit connect). Node list, addresses, disks and size must not change.
   */
  async adjust(next: ResourceConfig): Promise<string[]> {
    const cur = this.cfg;
    const key = (c: ResourceConfig): string =>
      JSON.stringify([
        c.name,
        c.cluster,
        c.sizeBytes,
        c.blockSize,
        c.nodes.map((n) => [n.id, n.address, n.disk, n.metaDisk]),
      ]);
    if (key(cur) !== key(next)) {
      throw new ReplicationError(
        'adjust: name, cluster, size, block size or the node list changed; run down and up',
      );
    }
    const changes: string[] = [];
    for (const k of ['net', 'disk'] as const) {
      for (const [f, v] of Object.entries(next[k])) {
        if ((cur[k] as unknown as Record<string, unknown>)[f] !== v) changes.push(`${k}.${f}=${String(v)}`);
      }
    }
    for (const k of ['quorum', 'onNoQuorum', 'fencing', 'fencePeer', 'secret'] as const) {
      if (cur[k] !== next[k]) changes.push(k === 'secret' ? 'secret' : `${k}=${String(next[k])}`);
    }
    this.cfg = next;
    if (!this.isUp) {
      await this.up();
      changes.push('up');
    } else {
      for (const p of this.peers.values()) if (p.conn !== null) this.#startPing(p);
      for (const p of this.peers.values()) {
        if (!p.want && !p.lastError.startsWith('split brain')) {
          this.#wantConnect(p, true);
          changes.push(`connect ${p.cfg.name}`);
        }
      }
      this.#quorumCheck();
    }
    this.#changed();
    return changes;
  }

  async primary(force = false): Promise<void> {
    this.#mustBeUp();
    if (this.role === 'Primary') return;
    const connected = [...this.peers.values()].filter((p) => p.established);
    const why = promoteRefusal({
      role: this.role,
      disk: this.disk,
      force,
      quorum: this.#hasQuorum(),
      // A Primary seen by any connected peer counts (a tiebreaker relays it across a cut link).
      peerPrimary: connected.some(
        (p) => p.role === 'Primary' || ((p.params?.primarySeen ?? 0) & ~(1 << this.me.id)) !== 0,
      ),
      peerUpToDate: connected.some((p) => p.disk === 'UpToDate'),
      syncTarget: connected.some((p) => p.sync?.dir === 'target'),
    });
    if (why !== null) throw new ReplicationError(`cannot promote ${this.name}: ${why}`);
    const md = this.#md();
    const wasJustCreated = (parseUuid(md.sb.current) & ~1n) === UUID_JUST_CREATED;
    if (force && this.disk !== 'UpToDate') {
      this.disk = 'UpToDate';
      md.sb.disk = 'UpToDate';
    }
    this.role = 'Primary';
    md.sb.primary = true;
    // A new data generation when some diskful peer is not with us (or the data is new).
    const missing = [...this.peers.values()].filter(
      (p) => p.diskful && !(p.established && p.disk === 'UpToDate' && p.sync === null),
    );
    if (wasJustCreated || force || missing.length > 0) {
      this.#rotateCurrent(missing.map((p) => p.id));
    }
    await md.writeSuperblock();
    this.#changed();
    for (const p of this.peers.values()) {
      if (!p.established) continue;
      if (force && p.disk !== 'UpToDate' && p.sync === null && p.diskful) this.#sendParams(p, ParamsKind.REQ);
      else this.#sendParams(p, ParamsKind.INFO);
    }
  }

  async secondary(): Promise<void> {
    this.#mustBeUp();
    if (this.role !== 'Primary') return;
    await this.lock.drain();
    await this.flush().catch(() => {});
    this.role = 'Secondary';
    if (this.md !== null) {
      this.md.sb.primary = false;
      await this.md.writeSuperblock();
    }
    this.#changed();
    this.#broadcastParams();
  }

  connect(opts: { discardMyData?: boolean; peer?: number } = {}): void {
    this.#mustBeUp();
    for (const p of this.#selectPeers(opts.peer)) {
      if (opts.discardMyData === true) p.discardMyData = true;
      this.#wantConnect(p, true);
    }
  }

  disconnect(peer?: number): void {
    this.#mustBeUp();
    for (const p of this.#selectPeers(peer)) this.#disconnectPeer(p, 'disconnect requested', 'StandAlone');
  }

  /** This node's data is discarded: full resync from the (single) connected UpToDate peer. */
  invalidate(peer?: number): void {
    this.#mustBeUp();
    if (this.role === 'Primary')
      throw new ReplicationError('invalidate: refusing on a Primary (demote first)');
    const src = this.#selectPeers(peer).find((p) => p.established && p.disk === 'UpToDate');
    if (src === undefined) throw new ReplicationError('invalidate: no connected UpToDate peer to sync from');
    if (src.sync !== null) throw new ReplicationError('invalidate: a resync is already running');
    src.conn?.send({ type: PacketType.SYNC_START, value: SyncStartKind.SENDER_TARGET_FULL });
    this.#startSync(src, 'target', true);
  }

  /** The peer's data is discarded: full resync from this node. */
  invalidateRemote(peer?: number): void {
    this.#mustBeUp();
    if (this.disk !== 'UpToDate') throw new ReplicationError('invalidate-remote: local disk is not UpToDate');
    const targets = this.#selectPeers(peer).filter((p) => p.established && p.diskful);
    if (targets.length === 0) throw new ReplicationError('invalidate-remote: no connected diskful peer');
    for (const t of targets) {
      if (t.role === 'Primary') throw new ReplicationError('invalidate-remote: the peer is Primary');
      if (t.sync !== null) throw new ReplicationError('invalidate-remote: a resync is already running');
      t.conn?.send({ type: PacketType.SYNC_START, value: SyncStartKind.SENDER_SOURCE_FULL });
      this.#startSync(t, 'source', true);
    }
  }

  /**
   * "Skip initial sync" for new, zeroed volumes (drbdadm new-current-uuid --clear-bitmap): every
   * connected peer adopts a fresh data generation and both sides become UpToDate without a sync.
   */
  async newCurrentUuidClearBitmap(): Promise<void> {
    this.#mustBeUp();
    const md = this.#md();
    const peers = [...this.peers.values()].filter((p) => p.diskful);
    if (peers.some((p) => !p.established)) {
      throw new ReplicationError('new-current-uuid --clear-bitmap: every diskful peer must be connected');
    }
    md.sb.current = uuidHex(newUuid(this.role === 'Primary', randomUuid));
    md.sb.bitmapUuids = {};
    for (const bm of md.bitmaps) bm.clearAll();
    md.sb.disk = 'UpToDate';
    this.disk = 'UpToDate';
    await md.writeSuperblock();
    await md.flushBitmaps();
    for (const p of peers) {
      p.conn?.send({
        type: PacketType.SYNC_START,
        value: SyncStartKind.SKIP,
        params: this.#params(p, ParamsKind.INFO),
      });
    }
    this.#changed();
  }

  pauseSync(peer?: number): void {
    for (const p of this.#selectPeers(peer)) {
      if (p.sync === null) continue;
      p.sync.pausedByUser = true;
      p.conn?.send({ type: PacketType.SYNC_PAUSE, value: 1 });
      this.#syncState(p);
    }
    this.#changed();
  }

  resumeSync(peer?: number): void {
    for (const p of this.#selectPeers(peer)) {
      if (p.sync === null) continue;
      p.sync.pausedByUser = false;
      p.conn?.send({ type: PacketType.SYNC_PAUSE, value: 0 });
      this.#syncState(p);
    }
    this.#changed();
  }

  /** Online verify against every connected peer; resolves when done with the out-of-sync block count. */
  async verify(peer?: number): Promise<number> {
    this.#mustBeUp();
    const peers = this.#selectPeers(peer).filter((p) => p.established && p.diskful && !this.diskless);
    if (peers.length === 0) throw new ReplicationError('verify: no connected diskful peer');
    let total = 0;
    for (const p of peers) {
      if (p.sync !== null || p.verify !== null)
        throw new ReplicationError('verify: a resync or verify is running');
      total += await this.#runVerify(p);
    }
    return total;
  }

  resumeIo(): void {
    this.suspendedBy.delete('fencing');
    this.suspendedBy.delete('user');
    if (this.suspendedBy.size === 0) this.#releaseSuspend();
    this.#changed();
  }

  /** Resolves once every (selected) peer is connected, or rejects after timeoutMs. */
  async waitConnect(timeoutMs: number, peer?: number): Promise<void> {
    await this.#waitFor(() => this.#selectPeers(peer).every((p) => p.established), timeoutMs, 'wait-connect');
  }

  /** Resolves once connected, no resync is running, and both disks are UpToDate, for every (selected) peer. */
  async waitSync(timeoutMs: number, peer?: number): Promise<void> {
    await this.#waitFor(
      () =>
        this.#selectPeers(peer).every(
          (p) =>
            p.established &&
            p.sync === null &&
            (!p.diskful ||
              this.diskless ||
              (p.rs === 'Established' && this.disk === 'UpToDate' && p.disk === 'UpToDate')),
        ),
      timeoutMs,
      'wait-sync',
    );
  }

  async #waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > end) throw new ReplicationError(`${what}: timed out after ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  // ---------------------------------------------------------------- I/O (the Backstore face)

  async read(offset: number, length: number): Promise<Buffer> {
    this.#mustBeUp();
    if (this.role !== 'Primary')
      throw new BackstoreError(BackstoreErrorCode.IO, `${this.name}: reads need the Primary role`);
    const b = this.#backing();
    if (this.disk !== 'UpToDate')
      throw new BackstoreError(BackstoreErrorCode.IO, `${this.name}: local disk is ${this.disk}`);
    this.localPending++;
    try {
      const data = await b.read(offset / b.blockSize, length / b.blockSize);
      this.readBytes += length;
      return data;
    } finally {
      this.localPending--;
    }
  }

  /**
   * Replicated write. `data === null` writes zeros (unmap / write-same of zeros). Completes when the
   * local disk has it and, per protocol, every connected peer has it sent (A), received (B) or on
   * disk (C). A peer that drops meanwhile gets the range marked in its bitmap instead.
   *
   * Not an async function: a write is a WriteOp record moved along by callbacks (lock, AL, frames
   * sent, local completion, each peer's answer), one promise for the caller and none per step.
   * The common case (not suspended, no overlap, extents active) runs synchronously up to the
   * frames sent, as before.
   */
  write(offset: number, length: number, data: Buffer | null, fua: boolean): Promise<void> {
    try {
      this.#mustBeUp();
      if (!this.#ioOpen()) return this.#ioGate().then(() => this.#writeStart(offset, length, data, fua));
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.#writeStart(offset, length, data, fua);
  }

  /** write() past the I/O gate: role check, then the interval lock (its order is fixed here). */
  #writeStart(offset: number, length: number, data: Buffer | null, fua: boolean): Promise<void> {
    let b: Backstore;
    try {
      if (this.role !== 'Primary') {
        throw new BackstoreError(BackstoreErrorCode.READ_ONLY, `${this.name}: writes need the Primary role`);
      }
      b = this.#backing();
    } catch (e) {
      return Promise.reject(e as Error);
    }
    // The disk and AL of the moment the write entered (as the async version captured them).
    const op = new WriteOp(offset, length, data, fua, b, this.al as ActivityLog);
    const done = new Promise<void>((resolve, reject) => {
      op.resolve = resolve;
      op.reject = reject;
    });
    this.appPending++;
    const entered = this.lock.enter(offset, length);
    if (entered instanceof LockEntry) {
      op.lock = entered;
      this.#writeLocked(op);
    } else {
      // The lock's promise never rejects.
      void entered.then((e) => {
        op.lock = e;
        this.#writeLocked(op);
      });
    }
    return done;
  }

  /** Lock held: the AL extents (a transaction first when one is not active). */
  #writeLocked(op: WriteOp): void {
    const al = op.al;
    let hit: boolean;
    try {
      hit = al.tryAcquireRange(op.offset, op.length);
    } catch (e) {
      this.#writeAbort(op, e); // (no AL: a rejection, as in the async version)
      return;
    }
    if (hit) {
      op.alHeld = true;
      this.#writeIssue(op);
      return;
    }
    // acquire() takes the same extents (released with releaseRange()).
    al.acquire(op.offset, op.length).then(
      () => {
        op.alHeld = true;
        this.#writeIssue(op);
      },
      (e: unknown) => this.#writeAbort(op, e),
    );
  }

  /** Lock and AL held: DATA to the peers, then (or, for large writes, at once) the local write. */
  #writeIssue(op: WriteOp): void {
    let n = 0;
    try {
      const peers = this.#peerList;
      for (let i = 0; i < peers.length; i++) {
        const p = peers[i] as Peer;
        if (!p.diskful) continue;
        if (this.#sendsWrites(p)) {
          n++;
          op.peers++;
          this.#replicate(p, op);
        } else this.#markOutOfSync(p, op.offset, op.length);
      }
    } catch (e) {
      this.#writeAbort(op, e);
      return;
    }
    // The local write is submitted once the DATA frames are in the kernel (one writev for the
    // frames of a tick or of FRAME_GROUP writes), so the peer's write starts as early as possible
    // — except large writes (LOCAL_FIRST_BYTES), whose frames take longer to hand over.
    this.localPending++;
    if (n === 0 || op.length >= LOCAL_FIRST_BYTES) this.#submitLocal(op);
    else this.#whenFramesSent(op);
  }

  #submitLocal(op: WriteOp): void {
    const b = op.b;
    let local: Promise<void>;
    try {
      local =
        op.data === null
          ? b.writeSame(op.offset / b.blockSize, op.length / b.blockSize, null, op.fua ? FUA : NO_FUA)
          : b.write(op.offset / b.blockSize, op.data, op.fua ? FUA : NO_FUA);
    } catch (e) {
      local = Promise.reject(e as Error); // a backstore that throws instead of rejecting
    }
    local.then(
      () => {
        this.localPending--;
        this.writtenBytes += op.length;
        op.local = 1;
        if (op.peers === 0) this.#writeEnd(op);
      },
      (e: unknown) => {
        op.local = 2;
        op.error = e;
        if (op.peers === 0) this.#writeEnd(op);
      },
    );
  }

  /** A peer answered (per protocol) or dropped. */
  #peerDone(op: WriteOp): void {
    if (--op.peers === 0 && op.local !== 0 && !op.dead) this.#writeEnd(op);
  }

  /** Local write and every peer done. */
  #writeEnd(op: WriteOp): void {
    if (op.local === 2) {
      // The peers may have the new data while this disk does not: record the range as out of
      // sync towards every peer (status shows it; the next resync makes the replicas agree).
      for (const p of this.#peerList) this.#markOutOfSync(p, op.offset, op.length);
      this.localPending--;
    }
    this.#writeRelease(op);
    if (op.local === 2) op.reject(op.error);
    else op.resolve();
  }

  /** An exception before the I/O started (AL transaction, sending): the write fails at once. */
  #writeAbort(op: WriteOp, e: unknown): void {
    op.dead = true;
    this.#writeRelease(op);
    op.reject(e);
  }

  #writeRelease(op: WriteOp): void {
    if (op.alHeld) op.al.releaseRange(op.offset, op.length);
    (op.lock as LockEntry).release();
    this.appPending--;
  }

  /**
   * Submits `op`'s local write once the frames sent so far are handed to the kernel: at the end of
   * this tick, or at once (with the others waiting) when FRAME_GROUP writes are waiting.
   */
  #whenFramesSent(op: WriteOp): void {
    this.#afterFrames.push(op);
    if (this.#afterFrames.length >= FRAME_GROUP) this.#sendFrames();
    else if (!this.#framesTickArmed) {
      this.#framesTickArmed = true;
      process.nextTick(this.#framesTick);
    }
  }

  readonly #framesTick = (): void => {
    this.#framesTickArmed = false;
    this.#sendFrames();
  };

  #sendFrames(): void {
    if (this.#afterFrames.length === 0) return;
    const peers = this.#peerList;
    for (let i = 0; i < peers.length; i++) (peers[i] as Peer).conn?.flush();
    const q = this.#afterFrames;
    this.#afterFrames = this.#afterFramesSpare;
    if (SUBMIT_BATCH) submitHold(true);
    try {
      for (let i = 0; i < q.length; i++) this.#submitLocal(q[i] as WriteOp);
    } finally {
      if (SUBMIT_BATCH) submitHold(false);
    }
    q.length = 0;
    this.#afterFramesSpare = q;
  }

  /** Local flush and a FLUSH round trip to every UpToDate peer (acked after its fdatasync). */
  async flush(): Promise<void> {
    this.#mustBeUp();
    await this.#ioGate();
    const b = this.#backing();
    const waits: Promise<void>[] = [b.flush()];
    for (const p of this.peers.values()) {
      if (!this.#sendsWrites(p) || p.disk !== 'UpToDate') continue;
      waits.push(
        new Promise<void>((resolve) => {
          this.#request(p, { type: PacketType.FLUSH }, undefined, () => resolve());
        }),
      );
    }
    await Promise.all(waits);
  }

  // ---------------------------------------------------------------- status helpers

  hasQuorum(): boolean {
    return this.#hasQuorum();
  }

  // ---------------------------------------------------------------- internals: connections

  #selectPeers(id?: number): Peer[] {
    if (id === undefined) return [...this.peers.values()];
    const p = this.peers.get(id);
    if (p === undefined) throw new ReplicationError(`no peer with node id ${id}`);
    return [p];
  }

  #mustBeUp(): void {
    if (!this.isUp) throw new ReplicationError(`resource ${this.name} is down (run up first)`);
  }

  #md(): Metadata {
    if (this.md === null) throw new ReplicationError(`${this.name}: no local disk (diskless node)`);
    return this.md;
  }

  #backing(): Backstore {
    if (this.backing === null) throw new BackstoreError(BackstoreErrorCode.IO, `${this.name}: no local disk`);
    return this.backing;
  }

  async #listen(): Promise<void> {
    const [host, port] = this.me.address.split(':') as [string, string];
    // Paused: the accepted socket is taken over with static-buffer reads before anything is read.
    const server = createServer({ pauseOnConnect: true }, (sock) => this.#onAccept(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new ReplicationError(
            e.code === 'EADDRINUSE'
              ? `replication address ${this.me.address} is already in use (another node or resource running?)`
              : `cannot listen on ${this.me.address}: ${e.message}`,
          ),
        ),
      );
      server.listen(Number(port), host, () => resolve());
    });
    server.on('error', (e) => this.log.error({ err: e.message }, 'listener error'));
    this.#server = server;
  }

  #handshakeOpts(peerId: number | null) {
    return {
      cluster: this.cfg.cluster,
      resource: this.cfg.name,
      nodeId: this.me.id,
      peerId,
      secret: this.cfg.secret,
      timeoutMs: Math.max(2000, this.cfg.net.pingTimeoutMs),
    };
  }

  #onAccept(accepted: Socket): void {
    const { socket: sock, reads } = adoptWithStaticReads(accepted, { targets: true });
    sock.setNoDelay(true);
    const conn = new WireConnection(sock, this.cfg.net.maxFrame, reads);
    handshake(conn, {
      ...this.#handshakeOpts(null),
      acceptPeer: (id) => {
        const p = this.peers.get(id);
        if (p === undefined) return `node ${id} is not part of resource ${this.name}`;
        if (id > this.me.id) return `node ${id} should be accepting (higher ids accept), not dialing`;
        if (!p.want || !this.isUp) return `resource ${this.name} is StandAlone on node ${this.me.id}`;
        return null;
      },
    }).then(
      (r) => {
        const p = this.peers.get(r.peerId) as Peer;
        if (p.conn !== null) this.#disconnectPeer(p, 'replaced by a new connection', 'Connecting');
        this.#attach(p, conn);
      },
      (e: WireError) => {
        this.log.warn({ err: e.message }, 'incoming replication connection refused');
        this.#noteHandshakeError(e);
      },
    );
  }

  #noteHandshakeError(e: WireError, p?: Peer): void {
    const line = `call helper name:${this.name} helper:handshake-failed reason:"${e.message}"`;
    if (p !== undefined) p.lastError = e.message;
    else for (const q of this.peers.values()) if (q.conn === null) q.lastError = e.message;
    this.emit('event', line);
  }

  #wantConnect(p: Peer, explicit: boolean): void {
    if (!explicit && p.cs === 'StandAlone' && p.lastError.startsWith('split brain')) return;
    p.want = true;
    if (p.conn === null && p.cs !== 'Connecting') {
      p.cs = 'Connecting';
      this.#changed();
    }
    if (p.id > this.me.id) this.#dial(p);
  }

  #dial(p: Peer): void {
    if (!p.want || p.conn !== null || p.dialing || !this.isUp) return;
    p.dialing = true;
    const [host, port] = p.cfg.address.split(':') as [string, string];
    const reads = new StaticReads({ targets: true });
    const sock = connect({ host, port: Number(port), onread: reads.onread });
    sock.setNoDelay(true);
    const retry = (): void => {
      p.dialing = false;
      if (p.retryTimer !== null) clearTimeout(p.retryTimer);
      p.retryTimer = setTimeout(() => {
        p.retryTimer = null;
        this.#dial(p);
      }, this.cfg.net.connectIntMs);
      p.retryTimer.unref();
    };
    // A dial into a partition hangs in SYN_SENT, and TCP's own retransmits back off to tens of
    // seconds: after the partition heals the peers would stay apart that long. Each attempt gets
    // a deadline instead, then a fresh one connect-int later (as DRBD retries).
    const deadline = setTimeout(
      () => {
        sock.destroy();
        retry();
      },
      Math.max(1000, this.cfg.net.pingTimeoutMs),
    );
    deadline.unref();
    sock.once('error', () => {
      clearTimeout(deadline);
      sock.destroy();
      retry();
    });
    sock.once('connect', () => {
      clearTimeout(deadline);
      sock.removeAllListeners('error');
      const conn = new WireConnection(sock, this.cfg.net.maxFrame, reads);
      handshake(conn, this.#handshakeOpts(p.id)).then(
        () => {
          p.dialing = false;
          if (!p.want || !this.isUp) {
            conn.end();
            return;
          }
          this.#attach(p, conn);
        },
        (e: WireError) => {
          this.log.warn({ peer: p.id, err: e.message }, 'replication handshake failed');
          this.#noteHandshakeError(e, p);
          retry();
        },
      );
    });
  }

  #attach(p: Peer, conn: WireConnection): void {
    p.conn = conn;
    p.cs = 'Connected';
    p.rs = 'Off';
    p.established = false;
    p.bitmapSent = false;
    p.bitmapReceived = false;
    p.seqIn = 0;
    p.seqOut = 0;
    p.lastError = '';
    conn.on('frame', (f) => {
      try {
        this.#onFrame(p, conn, f);
      } catch (e) {
        this.log.error({ peer: p.id, err: (e as Error).message }, 'protocol error');
        p.lastError = `protocol error: ${(e as Error).message}`;
        conn.destroy();
      }
    });
    conn.on('close', (reason) => this.#onClosed(p, conn, reason));
    // Our params go out before any queued packet of the peer is processed (the decision needs both).
    this.#sendParams(p, ParamsKind.HELLO);
    conn.start();
    this.#startPing(p);
    this.#changed();
  }

  #startPing(p: Peer): void {
    if (p.pingTimer !== null) clearInterval(p.pingTimer);
    p.pingTimer = setInterval(() => {
      if (p.conn === null || p.pingDeadline !== null) return;
      p.conn.send({ type: PacketType.PING });
      p.pingDeadline = setTimeout(() => {
        p.pingDeadline = null;
        p.lastError = `ping timeout: no answer within ${this.cfg.net.pingTimeoutMs} ms`;
        this.#dropPeer(p, 'Timeout');
      }, this.cfg.net.pingTimeoutMs);
    }, this.cfg.net.pingIntMs);
    p.pingTimer.unref();
  }

  #stopTimers(p: Peer): void {
    if (p.pingTimer !== null) clearInterval(p.pingTimer);
    if (p.pingDeadline !== null) clearTimeout(p.pingDeadline);
    p.pingTimer = null;
    p.pingDeadline = null;
  }

  /** Network-level loss: drop the connection, keep trying to reconnect. */
  #dropPeer(p: Peer, cs: ConnState): void {
    const conn = p.conn;
    if (conn === null) return;
    p.cs = cs;
    conn.destroy();
  }

  /** Admin disconnect / down: tell the peer, stop reconnecting. */
  #disconnectPeer(p: Peer, reason: string, cs: ConnState): void {
    p.want = cs !== 'StandAlone';
    if (p.retryTimer !== null) clearTimeout(p.retryTimer);
    p.retryTimer = null;
    const conn = p.conn;
    if (conn !== null) {
      conn.send({ type: PacketType.DISCONNECT, reason });
      conn.end();
      this.#onClosed(p, conn, null);
    }
    p.cs = cs;
    this.#changed();
  }

  #onClosed(p: Peer, conn: WireConnection, reason: WireError | null): void {
    if (p.conn !== conn) return;
    const wasEstablished = p.established;
    p.wireOutClosed += conn.bytesOut;
    p.wireInClosed += conn.bytesIn;
    p.conn = null;
    p.established = false;
    this.#stopTimers(p);
    if (reason !== null && p.lastError === '') p.lastError = reason.message;
    // Everything the peer did not acknowledge is out of sync now.
    p.unackedWriteBytes = 0;
    p.unackedWrites = 0;
    for (const [id, req] of p.pending) {
      p.pending.delete(id);
      if (req.kind === 'write') {
        this.#markOutOfSync(p, req.offset, req.length);
        if (req.waiter !== null) {
          const w = req.waiter;
          req.waiter = null;
          this.#peerDone(w);
        }
      } else req.settle(null, 0);
    }
    if (p.sync !== null) {
      p.sync.stopped = true;
      p.sync.finishedAt = Date.now();
      p.lastSync = p.sync;
      p.sync = null;
    }
    if (p.verify !== null) {
      p.verify.stopped = true;
      p.lastVerify = p.verify;
      p.verify = null;
    }
    const peerWasPrimary = p.role === 'Primary';
    p.rs = 'Off';
    p.role = 'Unknown';
    p.disk = 'DUnknown';
    if (p.cs === 'Connected') p.cs = reason === null ? 'Unconnected' : 'NetworkFailure';
    if (this.md !== null) void this.md.flushBitmaps().catch(() => {});
    if (wasEstablished && this.role === 'Primary' && p.diskful && this.md !== null) {
      const bmU = parseUuid(this.md.sb.bitmapUuids[String(p.id)] ?? '0');
      if (bmU === 0n) {
        this.#rotateCurrent([p.id]);
        void this.md.writeSuperblock().catch(() => {});
        this.#broadcastParams();
      }
      this.#fence(p);
    }
    if (peerWasPrimary) this.#broadcastParams();
    this.#quorumCheck();
    this.#changed();
    if (p.want && this.isUp) {
      setTimeout(() => {
        if (p.conn === null && p.want && this.isUp) {
          p.cs = 'Connecting';
          this.#changed();
          if (p.id > this.me.id) this.#dial(p);
        }
      }, 10).unref();
    }
  }

  // ---------------------------------------------------------------- internals: params + decision

  #uuidSet(peerId: number): UuidSet {
    const md = this.#md();
    return {
      current: parseUuid(md.sb.current),
      bitmap: parseUuid(md.sb.bitmapUuids[String(peerId)] ?? '0'),
      history: md.sb.history.map(parseUuid),
    };
  }

  #params(p: Peer, kind: number): ParamsMsg {
    const md = this.md;
    p.weakSent = this.#weakNodes();
    return {
      currentUuid: md === null ? uuidHex(0n) : md.sb.current,
      bitmapUuid: md === null ? uuidHex(0n) : (md.sb.bitmapUuids[String(p.id)] ?? uuidHex(0n)),
      history: md === null ? [] : md.sb.history,
      role: roleIndex(this.role),
      disk: diskIndex(this.disk),
      sizeBytes: this.cfg.sizeBytes,
      dirtyBits: md?.bitmaps[p.id]?.count ?? 0,
      protocol: PROTOCOLS.indexOf(this.cfg.net.protocol),
      discardMyData: p.discardMyData,
      crashedPrimary: md?.sb.crashedPrimary === true,
      resolveConflicts: this.me.id < p.id,
      flags: kind,
      hasQuorum: this.#hasQuorum(),
      primarySeen: this.#primarySeen(),
      weakNodes: p.weakSent,
    };
  }

  /** Diskful peers this node's writes do not reach (bit = node id). */
  #weakNodes(): number {
    let m = 0;
    for (const q of this.peers.values()) if (q.diskful && !this.#sendsWrites(q)) m |= 1 << q.id;
    return m;
  }

  /** Whether a node other than `p` (and this one) is known to be Primary. */
  #primaryElsewhere(p: Peer): boolean {
    for (const q of this.peers.values()) {
      if (q === p || !q.established) continue;
      if (q.role === 'Primary') return true;
      const seen = (q.params?.primarySeen ?? 0) & ~(1 << this.me.id) & ~(1 << p.id);
      if (seen !== 0) return true;
    }
    return false;
  }

  /** Bitmask of node ids known to be Primary: this node and connected peers. */
  #primarySeen(): number {
    let m = this.role === 'Primary' ? 1 << this.me.id : 0;
    for (const p of this.peers.values()) if (p.established && p.role === 'Primary') m |= 1 << p.id;
    return m;
  }

  #sendParams(p: Peer, kind: number): void {
    p.conn?.send({ type: PacketType.PARAMS, params: this.#params(p, kind) });
  }

  #broadcastParams(): void {
    for (const p of this.peers.values()) if (p.established) this.#sendParams(p, ParamsKind.INFO);
  }

  /** New current UUID; peers in `lost` get the old one as their bitmap UUID (if they had none). */
  #rotateCurrent(lost: readonly number[]): void {
    const md = this.#md();
    const old = md.sb.current;
    const oldV = parseUuid(old) & ~1n;
    const meaningful = oldV !== UUID_JUST_CREATED && oldV !== 0n;
    let used = false;
    for (const id of lost) {
      const k = String(id);
      if (meaningful && parseUuid(md.sb.bitmapUuids[k] ?? '0') === 0n) {
        md.sb.bitmapUuids[k] = old;
        used = true;
      }
    }
    if (!used && meaningful) md.sb.history = [old, ...md.sb.history].slice(0, 2);
    md.sb.current = uuidHex(newUuid(this.role === 'Primary', randomUuid));
    this.log.info({ old, current: md.sb.current, lost }, 'new current data generation');
  }

  #onParams(p: Peer, msg: ParamsMsg): void {
    const first = p.params === null || !p.established;
    const oldRole = p.role;
    p.params = msg;
    p.role = roleAt(msg.role);
    p.disk = diskAt(msg.disk);
    if (msg.sizeBytes !== this.cfg.sizeBytes) {
      p.lastError = `size mismatch: peer has ${msg.sizeBytes} bytes, this node ${this.cfg.sizeBytes}`;
      this.#disconnectPeer(p, p.lastError, 'StandAlone');
      return;
    }
    switch (msg.flags) {
      case ParamsKind.HELLO:
        if (first) this.#decide(p);
        break;
      case ParamsKind.REQ:
        // Re-evaluate unless a resync is really running (bitmap exchange finished).
        if (p.sync !== null && !p.sync.deferred && p.rs !== 'WFBitMapS' && p.rs !== 'WFBitMapT') break;
        p.sync = null;
        this.#sendParams(p, ParamsKind.REPLY);
        this.#decide(p);
        break;
      case ParamsKind.REPLY:
        if (p.sync !== null && (p.sync.deferred || p.rs === 'WFBitMapS' || p.rs === 'WFBitMapT'))
          p.sync = null;
        this.#decide(p);
        break;
      default:
        this.#adoptFromPrimary(p, msg);
        break;
    }
    if (oldRole !== p.role) {
      for (const q of this.peers.values()) if (q !== p && q.established) this.#sendParams(q, ParamsKind.INFO);
    }
    this.#quorumCheck();
    this.#changed();
  }

  /**
   * An Established secondary follows the Primary's new data generation. Peers left in the old one
   * get it as their bitmap UUID: those not connected here, and those the Primary's writes do not
   * reach (`weakNodes`) even while this node is still connected to them. This node may notice a
   * partition up to a ping timeout after the Primary does, or never when only the link between
   * the Primary and that peer is down; without the bitmap UUID the two had no common generation
   * at their next handshake and refused each other for good ("unrelated data").
   */
  #adoptFromPrimary(p: Peer, msg: ParamsMsg): void {
    if (this.md === null || p.role !== 'Primary' || p.rs !== 'Established' || p.sync !== null) return;
    if (this.disk !== 'UpToDate') return;
    const md = this.md;
    if (sameUuid(msg.currentUuid, md.sb.current)) return;
    for (const q of this.peers.values()) {
      if (q === p || !q.diskful || (q.established && (msg.weakNodes & (1 << q.id)) === 0)) continue;
      const k = String(q.id);
      if (parseUuid(md.sb.bitmapUuids[k] ?? '0') === 0n) md.sb.bitmapUuids[k] = md.sb.current;
    }
    md.sb.current = withRoleBit(msg.currentUuid, false);
    void md.writeSuperblock().catch(() => {});
  }

  #decide(p: Peer): void {
    const msg = p.params;
    if (msg === null || p.conn === null) return;
    if (this.diskless || !p.diskful || p.disk === 'Diskless') {
      p.established = true;
      p.rs = 'Established';
      p.lastDecision = 'diskless: no sync';
      this.#changed();
      return;
    }
    const md = this.#md();
    const bm = md.bitmaps[p.id] as Bitmap;
    const d = decideSync({
      self: this.#uuidSet(p.id),
      peer: {
        current: parseUuid(msg.currentUuid),
        bitmap: parseUuid(msg.bitmapUuid),
        history: msg.history.map(parseUuid),
      },
      selfCrashedPrimary: md.sb.crashedPrimary === true,
      peerCrashedPrimary: msg.crashedPrimary,
      resolveConflicts: this.me.id < p.id,
      selfDiscardMyData: p.discardMyData,
      peerDiscardMyData: msg.discardMyData,
      sb: {
        afterSb0pri: this.cfg.net.afterSb0pri,
        afterSb1pri: this.cfg.net.afterSb1pri,
        afterSb2pri: this.cfg.net.afterSb2pri,
        selfPrimary: this.role === 'Primary',
        peerPrimary: p.role === 'Primary',
        selfChanges: bm.count,
        peerChanges: msg.dirtyBits,
      },
    });
    p.discardMyData = false;
    p.lastDecision = `rule ${d.rule}: ${d.action}${d.full ? ' (full)' : ''} — ${d.reason}`;
    this.log.info(
      { peer: p.id, rule: d.rule, action: d.action, full: d.full, splitBrain: d.splitBrain },
      d.reason,
    );
    if (d.splitBrain) {
      this.emit(
        'event',
        `call helper name:${this.name} peer-node-id:${p.id} helper:split-brain action:${d.action}`,
      );
    }
    let action = d.action;
    if (action === 'target' && this.role === 'Primary') {
      action = 'disconnect';
      p.lastDecision += ' — refused: this node is Primary and would become SyncTarget';
    }
    if (action === 'disconnect') {
      p.lastError = d.splitBrain ? `split brain: ${d.reason}` : d.reason;
      this.#disconnectPeer(p, d.reason, 'StandAlone');
      p.lastError = d.splitBrain ? `split brain: ${d.reason}` : d.reason;
      this.#changed();
      return;
    }
    p.established = true;
    const primaryElsewhere = this.#primaryElsewhere(p);
    if (action === 'none') {
      p.rs = 'Established';
      const k = String(p.id);
      const bu = md.sb.bitmapUuids[k];
      if (bu !== undefined && sameUuid(md.sb.current, msg.currentUuid)) {
        // Same generation: the bitmap UUID towards this peer is history now.
        if (parseUuid(bu) !== 0n) md.sb.history = [bu, ...md.sb.history.filter((h) => h !== bu)].slice(0, 2);
        delete md.sb.bitmapUuids[k];
        void md.writeSuperblock().catch(() => {});
      }
      // Same generation: ship leftovers (verify marks, writes during the handshake). Only the Primary
      // does (or the lower id when no Primary exists): a Secondary resyncing a peer that also gets
      // the Primary's writes could overwrite newer data.
      const mine =
        this.role === 'Primary' || (p.role !== 'Primary' && !primaryElsewhere && this.me.id < p.id);
      if (!mine && this.role !== 'Primary' && (primaryElsewhere || p.role === 'Primary')) {
        if (p.role !== 'Primary') bm.clearAll(); // conservative marks; the Primary keeps its own
      }
      if (mine && (bm.count > 0 || msg.dirtyBits > 0)) {
        p.conn.send({ type: PacketType.SYNC_START, value: SyncStartKind.SENDER_SOURCE_BITMAP });
        this.#startSync(p, 'source', false);
      } else if (md.sb.crashedPrimary === true && this.role !== 'Primary') {
        md.sb.crashedPrimary = false;
        void md.writeSuperblock().catch(() => {});
      }
      this.#changed();
      return;
    }
    const otherSource = [...this.peers.values()].some(
      (q) => q !== p && q.sync?.dir === 'target' && !q.sync.deferred,
    );
    if (action === 'target' && (otherSource || (primaryElsewhere && p.role !== 'Primary'))) {
      // One sync source at a time; re-evaluated when the running sync ends.
      p.rs = 'PausedSyncT';
      p.sync = this.#newSync('target', d.full);
      p.sync.deferred = true;
      this.#changed();
      return;
    }
    this.#startSync(p, action, d.full);
  }

  // ---------------------------------------------------------------- internals: resync

  #newSync(dir: 'source' | 'target', full: boolean): SyncRun {
    return {
      dir,
      full,
      startedAt: Date.now(),
      finishedAt: null,
      totalBits: 0,
      doneBytes: 0,
      dataBytes: 0,
      digestBytes: 0,
      equalBlocks: 0,
      pausedByUser: false,
      pausedByPeer: false,
      stopped: false,
      deferred: false,
    };
  }

  #startSync(p: Peer, dir: 'source' | 'target', full: boolean): void {
    const md = this.#md();
    const bm = md.bitmaps[p.id] as Bitmap;
    if (full) bm.setAll();
    p.established = true;
    p.sync = this.#newSync(dir, full);
    p.rs = dir === 'source' ? 'WFBitMapS' : 'WFBitMapT';
    if (dir === 'target' && this.disk !== 'Inconsistent') {
      this.disk = 'Inconsistent';
      md.sb.disk = 'Inconsistent';
      void md.writeSuperblock().catch(() => {});
      this.#broadcastParams();
    }
    p.bitmapReceived = false;
    for (let off = 0; off < bm.bytes.length; off += BITMAP_CHUNK) {
      const part = Buffer.from(bm.bytes.subarray(off, Math.min(bm.bytes.length, off + BITMAP_CHUNK)));
      p.conn?.send({ type: PacketType.BITMAP, offset: off, length: part.length }, part);
    }
    p.conn?.send({ type: PacketType.BITMAP_DONE });
    p.bitmapSent = true;
    this.#changed();
  }

  #onBitmap(p: Peer, f: Frame): void {
    const md = this.#md();
    const bm = md.bitmaps[p.id] as Bitmap;
    const part = new Uint8Array(bm.bytes.length);
    part.set(
      f.payload.subarray(0, Math.max(0, Math.min(f.payload.length, bm.bytes.length - f.packet.offset))),
      f.packet.offset,
    );
    bm.or(part);
  }

  #onBitmapDone(p: Peer): void {
    p.bitmapReceived = true;
    const s = p.sync;
    if (s === null || !p.bitmapSent) return;
    const bm = this.#md().bitmaps[p.id] as Bitmap;
    s.totalBits = bm.count;
    s.deferred = false;
    this.#syncState(p);
    void this.#md()
      .flushBitmaps()
      .catch(() => {});
    if (s.dir === 'source') void this.#runSyncSource(p, s);
    this.#changed();
  }

  #syncState(p: Peer): void {
    const s = p.sync;
    if (s === null) return;
    const paused = s.pausedByUser || s.pausedByPeer;
    if (s.dir === 'source') p.rs = paused ? 'PausedSyncS' : 'SyncSource';
    else p.rs = paused ? 'PausedSyncT' : 'SyncTarget';
  }

  /** Paces requests by the bytes issued so far (not acknowledged: acks lag with a deep window). */
  async #rateLimit(s: SyncRun, issuedBytes: number): Promise<void> {
    const rate = this.cfg.disk.resyncRateKiB * 1024;
    if (rate <= 0) return;
    const due = s.startedAt + (issuedBytes / rate) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
  }

  async #runSyncSource(p: Peer, s: SyncRun): Promise<void> {
    const md = this.#md();
    const bm = md.bitmaps[p.id] as Bitmap;
    const blockBytes = bm.blockBytes;
    const maxBits = Math.max(1, Math.floor(this.cfg.disk.resyncChunk / blockBytes));
    // Requests run concurrently (read under the lock, RS_DATA, RS_ACK); the loop only waits for
    // room in the window, woken by each completion (no Promise.race over every request).
    const win = new InflightWindow(RESYNC_WINDOW, RESYNC_WINDOW_BYTES);
    let cursor = 0;
    let issued = 0;
    try {
      for (;;) {
        if (s.stopped || p.sync !== s) return;
        if (s.pausedByUser || s.pausedByPeer) {
          await sleep(20);
          continue;
        }
        let bit = bm.nextSet(cursor);
        if (bit < 0) {
          if (win.count > 0) {
            await win.next();
            continue;
          }
          bit = bm.nextSet(0);
          if (bit < 0) break;
        }
        const run = bm.runLength(bit, maxBits);
        const offset = bit * blockBytes;
        const length = Math.min(run * blockBytes, this.cfg.sizeBytes - offset);
        cursor = bit + run;
        if (this.cfg.disk.resyncRateKiB > 0) await this.#rateLimit(s, issued + length);
        while (!win.fits(length)) await win.next();
        if (s.stopped || p.sync !== s) return;
        if (s.pausedByUser || s.pausedByPeer) {
          cursor = bit; // paused while waiting: this range is sent after the resume
          continue;
        }
        issued += length;
        win.add(length);
        void this.#resyncRange(p, s, bm, offset, length)
          .catch((e: Error) => {
            this.log.warn({ peer: p.id, err: e.message }, 'resync request failed');
            // A local read error: restart through a reconnect rather than stall in SyncSource.
            if (!s.stopped && p.sync === s) {
              s.stopped = true;
              p.lastError = `resync failed: ${e.message}`;
              this.#dropPeer(p, 'NetworkFailure');
            }
          })
          .finally(() => win.settled(length));
      }
      while (win.count > 0) await win.next();
      if (s.stopped || p.sync !== s || p.conn === null) return;
      this.#finishSyncSource(p, s);
    } catch (e) {
      this.log.error({ peer: p.id, err: (e as Error).message }, 'resync source failed');
    }
  }

  /** Reads a range under the write lock (ordered against application writes) and sends it. */
  async #sendResyncData(p: Peer, s: SyncRun, offset: number, length: number): Promise<boolean> {
    const b = this.#backing();
    const release = await this.lock.acquire(offset, length);
    let reply: Promise<boolean>;
    try {
      const data = await b.read(offset / b.blockSize, length / b.blockSize);
      s.dataBytes += length;
      p.sentBytes += length;
      reply = new Promise<boolean>((resolve) => {
        this.#request(p, { type: PacketType.RS_DATA, offset, length }, data, (_pl, v) => {
          // Answered (the peer has every byte) or failed with the connection (nothing left to
          // write): the read buffer goes back to the backstore for the next read. Without this
          // every 256 KiB read was a fresh aligned allocation, and V8's external-memory GCs took
          // a third of the SyncSource's main thread during a resync.
          releaseReadBuffer(b, data);
          resolve(v === 1);
        });
      });
    } finally {
      release();
    }
    return reply;
  }

  async #resyncRange(p: Peer, s: SyncRun, bm: Bitmap, offset: number, length: number): Promise<void> {
    const blockBytes = bm.blockBytes;
    if (!this.cfg.net.csums) {
      if (await this.#sendResyncData(p, s, offset, length)) {
        bm.clearRange(offset, length);
        s.doneBytes += length;
      }
      return;
    }
    const b = this.#backing();
    const alg = this.cfg.net.verifyAlg;
    let digests: Buffer;
    {
      const release = await this.lock.acquire(offset, length);
      try {
        digests = blockDigests(await b.read(offset / b.blockSize, length / b.blockSize), blockBytes, alg);
      } finally {
        release();
      }
    }
    s.digestBytes += digests.length;
    const reply = await new Promise<Buffer | null>((resolve) => {
      this.#request(p, { type: PacketType.RS_DIGEST, offset, length }, digests, (pl) => resolve(pl));
    });
    if (reply === null) return;
    s.digestBytes += reply.length;
    const n = Math.ceil(length / blockBytes);
    // Equal blocks are in sync; differing runs are sent as data.
    let i = 0;
    while (i < n) {
      if (!maskBit(reply, i)) {
        bm.clearRange(offset + i * blockBytes, blockBytes);
        s.equalBlocks++;
        s.doneBytes += blockBytes;
        i++;
        continue;
      }
      let j = i;
      while (j < n && maskBit(reply, j)) j++;
      const o = offset + i * blockBytes;
      const l = Math.min((j - i) * blockBytes, offset + length - o);
      if (!(await this.#sendResyncData(p, s, o, l))) return;
      bm.clearRange(o, l);
      s.doneBytes += l;
      i = j;
    }
  }

  #finishSyncSource(p: Peer, s: SyncRun): void {
    const md = this.#md();
    const k = String(p.id);
    const bu = md.sb.bitmapUuids[k];
    if (bu !== undefined && parseUuid(bu) !== 0n) {
      md.sb.history = [bu, ...md.sb.history.filter((h) => h !== bu)].slice(0, 2);
      delete md.sb.bitmapUuids[k];
    }
    md.sb.crashedPrimary = false;
    void md.writeSuperblock().catch(() => {});
    void md.flushBitmaps().catch(() => {});
    p.conn?.send({ type: PacketType.SYNC_DONE, params: this.#params(p, ParamsKind.INFO) });
    s.finishedAt = Date.now();
    p.lastSync = s;
    p.sync = null;
    p.rs = 'Established';
    this.log.info(
      { peer: p.id, dataBytes: s.dataBytes, digestBytes: s.digestBytes },
      'resync finished (source)',
    );
    this.#changed();
  }

  #onSyncDone(p: Peer, msg: ParamsMsg | null): void {
    const s = p.sync;
    if (s === null || s.dir !== 'target' || msg === null) return;
    const md = this.#md();
    const old = md.sb.current;
    if (!sameUuid(old, msg.currentUuid)) {
      const oldV = parseUuid(old) & ~1n;
      if (oldV !== UUID_JUST_CREATED && oldV !== 0n) md.sb.history = [old, ...md.sb.history].slice(0, 2);
      md.sb.current = withRoleBit(msg.currentUuid, this.role === 'Primary');
    }
    delete md.sb.bitmapUuids[String(p.id)];
    (md.bitmaps[p.id] as Bitmap).clearAll();
    if (diskAt(msg.disk) === 'UpToDate') {
      this.disk = 'UpToDate';
      md.sb.disk = 'UpToDate';
    }
    md.sb.crashedPrimary = false;
    // The resynced data reaches stable storage before the metadata says UpToDate.
    const b = this.backing;
    void (b === null ? Promise.resolve() : b.flush()).then(() => md.writeSuperblock()).catch(() => {});
    void md.flushBitmaps().catch(() => {});
    s.finishedAt = Date.now();
    p.lastSync = s;
    p.sync = null;
    p.rs = 'Established';
    p.disk = diskAt(msg.disk);
    this.emit('event', `call helper name:${this.name} peer-node-id:${p.id} helper:after-resync-target`);
    this.#broadcastParams();
    // Deferred syncs from other peers are re-evaluated now.
    for (const q of this.peers.values()) {
      if (q !== p && q.sync?.deferred === true) {
        q.sync = null;
        q.rs = 'Established';
        this.#sendParams(q, ParamsKind.REQ);
      }
    }
    this.#changed();
  }

  // ---------------------------------------------------------------- internals: verify

  async #runVerify(p: Peer): Promise<number> {
    try {
      return await this.#verifyLoop(p);
    } finally {
      if (p.verify !== null) {
        p.verify.stopped = true;
        p.lastVerify = p.verify;
        p.verify = null;
        p.conn?.send({ type: PacketType.OV_DONE, value: p.lastVerify.oosBlocks });
        if (p.rs === 'VerifyS') p.rs = p.conn === null ? 'Off' : 'Established';
        this.#changed();
      }
    }
  }

  async #verifyLoop(p: Peer): Promise<number> {
    const b = this.#backing();
    const md = this.#md();
    const bm = md.bitmaps[p.id] as Bitmap;
    const v = {
      dir: 'source' as const,
      startedAt: Date.now(),
      totalBytes: this.cfg.sizeBytes,
      doneBytes: 0,
      oosBlocks: 0,
      stopped: false,
    };
    p.verify = v;
    p.rs = 'VerifyS';
    p.conn?.send({ type: PacketType.OV_REQUEST, value: 1 });
    this.#changed();
    const chunk = this.cfg.disk.resyncChunk;
    const alg = this.cfg.net.verifyAlg;
    const inflight = new Set<Promise<void>>();
    for (let off = 0; off < this.cfg.sizeBytes && !v.stopped; off += chunk) {
      const len = Math.min(chunk, this.cfg.sizeBytes - off);
      while (inflight.size >= RESYNC_WINDOW) await Promise.race(inflight);
      const release = await this.lock.acquire(off, len);
      let digests: Buffer;
      try {
        digests = blockDigests(await b.read(off / b.blockSize, len / b.blockSize), bm.blockBytes, alg);
      } finally {
        release();
      }
      const t = new Promise<void>((resolve) => {
        this.#request(p, { type: PacketType.OV_REQUEST, offset: off, length: len }, digests, (mask) => {
          if (mask === null) v.stopped = true;
          else {
            const n = Math.ceil(len / bm.blockBytes);
            for (let i = 0; i < n; i++) {
              if (maskBit(mask, i)) {
                v.oosBlocks++;
                bm.setRange(off + i * bm.blockBytes, bm.blockBytes);
              }
            }
            v.doneBytes += len;
          }
          resolve();
        });
      });
      inflight.add(t);
      void t.finally(() => inflight.delete(t));
    }
    await Promise.all(inflight);
    p.lastVerify = v;
    p.verify = null;
    if (p.conn === null) throw new ReplicationError('verify: connection lost');
    p.conn.send({ type: PacketType.OV_DONE, value: v.oosBlocks });
    p.rs = 'Established';
    void md.flushBitmaps().catch(() => {});
    this.emit(
      'event',
      `call helper name:${this.name} peer-node-id:${p.id} helper:out-of-sync verify-done oos-kib:${(v.oosBlocks * bm.blockBytes) / 1024}`,
    );
    this.#changed();
    return v.oosBlocks;
  }

  // ---------------------------------------------------------------- internals: packets

  /** Sends a request and registers its single-reply completion. */
  #request(
    p: Peer,
    init: Omit<PacketInit, 'id'>,
    payload: Uint8Array | undefined,
    settle: (pl: Buffer | null, v: number) => void,
  ): void {
    if (p.conn === null) {
      settle(null, 0);
      return;
    }
    const id = p.nextId++;
    p.pending.set(id, { kind: 'reply', sentAt: Date.now(), settle });
    p.conn.send({ ...init, id } as PacketInit, payload);
  }

  #reply(p: Peer, f: Frame): void {
    const req = p.pending.get(f.packet.id);
    if (req === undefined || req.kind !== 'reply') return;
    p.pending.delete(f.packet.id);
    req.settle(f.payload, f.packet.value);
  }

  #sendsWrites(p: Peer): boolean {
    return p.established && p.conn !== null && p.diskful && receivesWrites(p.disk);
  }

  #markOutOfSync(p: Peer, offset: number, length: number): void {
    if (!p.diskful) return;
    this.md?.bitmaps[p.id]?.setRange(offset, length);
  }

  /** Sends `op`'s DATA to `p`; `op` hears of it per protocol (#peerDone). */
  #replicate(p: Peer, op: WriteOp): void {
    const conn = p.conn as WireConnection;
    const proto = this.cfg.net.protocol;
    const id = p.nextId++;
    const seq = ++p.seqOut;
    const length = op.length;
    let flags = DataFlags.WANT_WRITE_ACK;
    if (op.fua) flags |= DataFlags.FUA;
    if (proto === 'B') flags |= DataFlags.WANT_RECV_ACK;
    if (op.data === null) flags |= DataFlags.ZEROES;
    // Protocol A over its bound of unacknowledged writes waits for the WRITE_ACK like C.
    const unpacedA =
      proto === 'A' &&
      p.unackedWriteBytes < PROTO_A_MAX_UNACKED_BYTES &&
      p.unackedWrites < PROTO_A_MAX_UNACKED;
    const req: PendingWrite = {
      kind: 'write',
      offset: op.offset,
      length,
      sentAt: Date.now(),
      waiter: unpacedA ? null : op,
      atRecv: proto === 'B',
    };
    p.pending.set(id, req);
    p.unackedWriteBytes += length;
    p.unackedWrites++;
    p.sentBytes += length;
    // Protocol A completes once the data is in the local TCP send buffer (handed to the kernel):
    // the caller may reuse its buffer from then on.
    conn.sendData(
      id,
      seq,
      op.offset,
      length,
      flags,
      op.data ?? undefined,
      unpacedA ? () => this.#peerDone(op) : undefined,
    );
  }

  #onFrame(p: Peer, conn: WireConnection, f: Frame): void {
    const pk = f.packet;
    if (pk.type !== PacketType.DATA && pk.type !== PacketType.RS_DATA && this.log.isLevelEnabled('trace')) {
      this.log.trace(
        { peer: p.id, type: PACKET_NAMES[pk.type], id: pk.id, value: pk.value, flags: pk.params?.flags },
        'packet',
      );
    }
    switch (pk.type) {
      case PacketType.PARAMS:
        if (pk.params !== null) this.#onParams(p, pk.params);
        return;
      case PacketType.PING:
        conn.send({ type: PacketType.PING_ACK });
        return;
      case PacketType.PING_ACK:
        if (p.pingDeadline !== null) clearTimeout(p.pingDeadline);
        p.pingDeadline = null;
        return;
      case PacketType.DATA:
        this.#onData(p, conn, f);
        return;
      case PacketType.RECV_ACK: {
        const req = p.pending.get(pk.id);
        if (req?.kind === 'write' && req.atRecv && req.waiter !== null) {
          const w = req.waiter;
          req.waiter = null;
          this.#peerDone(w);
        }
        return;
      }
      case PacketType.WRITE_ACK:
      case PacketType.NEG_ACK: {
        const req = p.pending.get(pk.id);
        if (req?.kind !== 'write') return;
        p.pending.delete(pk.id);
        p.unackedWriteBytes -= req.length;
        p.unackedWrites--;
        if (pk.type === PacketType.NEG_ACK) this.#markOutOfSync(p, req.offset, req.length);
        if (req.waiter !== null) {
          const w = req.waiter;
          req.waiter = null;
          this.#peerDone(w);
        }
        return;
      }
      case PacketType.FLUSH:
        this.#onFlush(p, conn, pk.id);
        return;
      case PacketType.FLUSH_ACK:
      case PacketType.RS_ACK:
      case PacketType.RS_DIGEST_REPLY:
      case PacketType.OV_REPLY:
        this.#reply(p, f);
        return;
      case PacketType.BITMAP:
        this.#onBitmap(p, f);
        return;
      case PacketType.BITMAP_DONE:
        this.#onBitmapDone(p);
        return;
      case PacketType.SYNC_START:
        this.#onSyncStart(p, pk.value, pk.params);
        return;
      case PacketType.RS_DATA:
        this.#onResyncData(p, conn, f);
        return;
      case PacketType.RS_DIGEST:
        this.#onResyncDigest(p, conn, f);
        return;
      case PacketType.SYNC_DONE:
        this.#onSyncDone(p, pk.params);
        return;
      case PacketType.SYNC_PAUSE:
        if (p.sync !== null) {
          p.sync.pausedByPeer = pk.value === 1;
          this.#syncState(p);
          this.#changed();
        }
        return;
      case PacketType.OV_REQUEST:
        this.#onVerifyRequest(p, conn, f);
        return;
      case PacketType.OV_DONE:
        if (p.rs === 'VerifyT') p.rs = 'Established';
        this.emit(
          'event',
          `call helper name:${this.name} peer-node-id:${p.id} helper:out-of-sync verify-done oos-blocks:${pk.value}`,
        );
        this.#changed();
        return;
      case PacketType.DISCONNECT:
        p.lastError = `peer disconnected: ${pk.reason}`;
        p.cs = 'Unconnected';
        conn.destroy();
        return;
      case PacketType.REFUSE:
        p.lastError = `peer refused: ${pk.reason}`;
        conn.destroy();
        return;
      default:
        throw new Error(`unexpected packet ${pk.type} on an established connection`);
    }
  }

  #onSyncStart(p: Peer, kind: number, params: ParamsMsg | null): void {
    if (this.md === null) return;
    switch (kind) {
      case SyncStartKind.SENDER_SOURCE_FULL:
      case SyncStartKind.SENDER_SOURCE_BITMAP:
        if (this.role === 'Primary') {
          p.lastError = 'peer wanted to become SyncSource of this Primary';
          this.#dropPeer(p, 'ProtocolError');
          return;
        }
        this.#startSync(p, 'target', kind === SyncStartKind.SENDER_SOURCE_FULL);
        return;
      case SyncStartKind.SENDER_TARGET_FULL:
        this.#startSync(p, 'source', true);
        return;
      case SyncStartKind.SKIP: {
        if (params === null) return;
        const md = this.md;
        md.sb.current = withRoleBit(params.currentUuid, this.role === 'Primary');
        delete md.sb.bitmapUuids[String(p.id)];
        (md.bitmaps[p.id] as Bitmap).clearAll();
        md.sb.disk = 'UpToDate';
        this.disk = 'UpToDate';
        p.disk = diskAt(params.disk);
        void md.writeSuperblock().catch(() => {});
        void md.flushBitmaps().catch(() => {});
        this.#broadcastParams();
        this.#changed();
        return;
      }
    }
  }

  /**
   * Other diskful peers that will not see this replicated write get it marked out of sync: those
   * not connected here, and those the Primary's writes do not reach (its `weakNodes`).
   */
  #markForOthers(from: Peer, offset: number, length: number): void {
    const weak = from.role === 'Primary' ? (from.params?.weakNodes ?? 0) : 0;
    for (const q of this.peers.values()) {
      if (q === from || !q.diskful) continue;
      if (!(q.established && q.conn !== null) || (weak & (1 << q.id)) !== 0)
        this.#markOutOfSync(q, offset, length);
    }
  }

  #onData(p: Peer, conn: WireConnection, f: Frame): void {
    const pk = f.packet;
    if (pk.seq !== p.seqIn + 1) throw new Error(`write sequence gap: expected ${p.seqIn + 1}, got ${pk.seq}`);
    p.seqIn = pk.seq;
    const b = this.backing;
    if (b === null || this.role === 'Primary') {
      conn.send({ type: PacketType.NEG_ACK, id: pk.id, reason: 'not a writable secondary' });
      return;
    }
    const zeros = (pk.flags & DataFlags.ZEROES) !== 0;
    if (!zeros && f.payload.length !== pk.length) throw new Error('DATA payload length mismatch');
    p.ua++;
    p.recvBytes += pk.length;
    if ((pk.flags & DataFlags.WANT_RECV_ACK) !== 0) conn.sendAck(PacketType.RECV_ACK, pk.id);
    const lockP = this.lock.acquire(pk.offset, pk.length); // arrival order fixed here
    const work = (async () => {
      const release = await lockP;
      try {
        const fua = (pk.flags & DataFlags.FUA) !== 0;
        this.localPending++;
        try {
          if (zeros) await b.writeSame(pk.offset / b.blockSize, pk.length / b.blockSize, null, { fua });
          else await b.write(pk.offset / b.blockSize, f.payload, { fua });
        } finally {
          this.localPending--;
        }
        this.writtenBytes += pk.length;
        this.#markForOthers(p, pk.offset, pk.length);
        conn.sendAck(PacketType.WRITE_ACK, pk.id);
      } catch (e) {
        conn.send({ type: PacketType.NEG_ACK, id: pk.id, reason: (e as Error).message });
      } finally {
        release();
        p.ua--;
        if (keepsNoWriteData(b)) conn.recycle(f.payload);
      }
    })();
    p.applying.add(work);
    void work.finally(() => p.applying.delete(work));
  }

  #onFlush(p: Peer, conn: WireConnection, id: number): void {
    const before = [...p.applying];
    void (async () => {
      await Promise.all(before);
      await this.backing?.flush().catch(() => {});
      conn.send({ type: PacketType.FLUSH_ACK, id });
    })();
  }

  #onResyncData(p: Peer, conn: WireConnection, f: Frame): void {
    const pk = f.packet;
    const b = this.backing;
    if (b === null || f.payload.length !== pk.length) throw new Error('bad RS_DATA');
    const lockP = this.lock.acquire(pk.offset, pk.length);
    p.recvBytes += pk.length;
    const s = p.sync;
    const work = (async () => {
      const release = await lockP;
      try {
        await b.write(pk.offset / b.blockSize, f.payload);
        this.writtenBytes += pk.length;
        this.md?.bitmaps[p.id]?.clearRange(pk.offset, pk.length);
        this.#markForOthers(p, pk.offset, pk.length);
        if (s !== null) {
          s.doneBytes += pk.length;
          s.dataBytes += pk.length;
        }
        conn.send({ type: PacketType.RS_ACK, id: pk.id, value: 1 });
      } catch (e) {
        conn.send({ type: PacketType.RS_ACK, id: pk.id, value: 0, reason: (e as Error).message });
      } finally {
        release();
        if (keepsNoWriteData(b)) conn.recycle(f.payload);
      }
    })();
    p.applying.add(work);
    void work.finally(() => p.applying.delete(work));
  }

  #onResyncDigest(p: Peer, conn: WireConnection, f: Frame): void {
    const pk = f.packet;
    const b = this.backing;
    if (b === null) throw new Error('RS_DIGEST on a diskless node');
    const lockP = this.lock.acquire(pk.offset, pk.length);
    const s = p.sync;
    const alg = this.cfg.net.verifyAlg;
    void (async () => {
      const release = await lockP;
      try {
        const mine = blockDigests(await b.read(pk.offset / b.blockSize, pk.length / b.blockSize), 4096, alg);
        const { mask } = diffMask(mine, f.payload, digestLength(alg));
        const n = Math.ceil(pk.length / 4096);
        const bm = this.md?.bitmaps[p.id];
        for (let i = 0; i < n; i++) {
          if (!maskBit(mask, i)) {
            bm?.clearRange(pk.offset + i * 4096, 4096);
            if (s !== null) {
              s.equalBlocks++;
              s.doneBytes += 4096;
            }
          }
        }
        if (s !== null) s.digestBytes += f.payload.length + mask.length;
        conn.send({ type: PacketType.RS_DIGEST_REPLY, id: pk.id }, mask);
      } finally {
        release();
      }
    })();
  }

  #onVerifyRequest(p: Peer, conn: WireConnection, f: Frame): void {
    const pk = f.packet;
    if (pk.value === 1) {
      p.rs = 'VerifyT';
      this.#changed();
      return;
    }
    const b = this.backing;
    if (b === null) throw new Error('OV_REQUEST on a diskless node');
    const lockP = this.lock.acquire(pk.offset, pk.length);
    const alg = this.cfg.net.verifyAlg;
    void (async () => {
      const release = await lockP;
      try {
        const mine = blockDigests(await b.read(pk.offset / b.blockSize, pk.length / b.blockSize), 4096, alg);
        const { mask } = diffMask(mine, f.payload, digestLength(alg));
        const n = Math.ceil(pk.length / 4096);
        const bm = this.md?.bitmaps[p.id];
        for (let i = 0; i < n; i++) if (maskBit(mask, i)) bm?.setRange(pk.offset + i * 4096, 4096);
        conn.send({ type: PacketType.OV_REPLY, id: pk.id }, mask);
      } finally {
        release();
      }
    })();
  }

  // ---------------------------------------------------------------- internals: quorum, fencing, timers

  #hasQuorum(): boolean {
    const connected = [...this.peers.values()].filter((p) => p.established).length;
    return hasQuorum({ setting: this.cfg.quorum, nodes: this.cfg.nodes.length, connectedPeers: connected });
  }

  #quorumCheck(): void {
    const q = this.#hasQuorum();
    if (!q && this.role === 'Primary' && this.cfg.onNoQuorum === 'suspend-io') this.suspendedBy.add('quorum');
    if (q && this.suspendedBy.delete('quorum') && this.suspendedBy.size === 0) this.#releaseSuspend();
  }

  async #ioGate(): Promise<void> {
    while (!this.#ioOpen()) await new Promise<void>((r) => this.#resumeWaiters.push(r));
  }

  /** I/O may proceed now (throws under on-no-quorum io-error; notes a quorum suspension). */
  #ioOpen(): boolean {
    if (this.cfg.quorum !== 'off' && this.role === 'Primary' && !this.#hasQuorum()) {
      if (this.cfg.onNoQuorum === 'io-error') {
        throw new BackstoreError(BackstoreErrorCode.IO, `${this.name}: no quorum (on-no-quorum io-error)`);
      }
      this.suspendedBy.add('quorum');
    }
    return this.suspendedBy.size === 0;
  }

  #releaseSuspend(): void {
    const w = this.#resumeWaiters;
    this.#resumeWaiters = [];
    for (const f of w) f();
  }

  #fence(p: Peer): void {
    if (this.cfg.fencing === 'dont-care' || this.cfg.fencePeer === null) return;
    const stonith = this.cfg.fencing === 'resource-and-stonith';
    if (stonith) this.suspendedBy.add('fencing');
    this.emit('event', `call helper name:${this.name} peer-node-id:${p.id} helper:fence-peer`);
    const child = spawn('/bin/sh', ['-c', this.cfg.fencePeer], {
      stdio: 'ignore',
      env: {
        ...process.env,
        LUNAR_RESOURCE: this.name,
        LUNAR_PEER_ID: String(p.id),
        LUNAR_PEER_ADDRESS: p.cfg.address,
        DRBD_RESOURCE: this.name,
        DRBD_PEER_NODE_ID: String(p.id),
      },
    });
    child.on('error', () => {});
    child.on('close', (code) => {
      // DRBD's fence-peer exit codes: 3 peer Inconsistent, 4 peer outdated, 5 unreachable, 7 stonithed.
      const c = code ?? -1;
      this.emit(
        'event',
        `response helper name:${this.name} peer-node-id:${p.id} helper:fence-peer status:${c}`,
      );
      const ok = c === 3 || c === 4 || c === 7 || (c === 5 && !stonith);
      if (ok && this.md !== null) {
        if (!this.md.sb.outdatedPeers.includes(p.id)) this.md.sb.outdatedPeers.push(p.id);
        void this.md.writeSuperblock().catch(() => {});
      }
      if (ok && this.suspendedBy.delete('fencing') && this.suspendedBy.size === 0) this.#releaseSuspend();
      this.#changed();
    });
  }

  #onTick(): void {
    const now = Date.now();
    const ko = this.cfg.net.timeoutMs * this.cfg.net.koCount;
    for (const p of this.peers.values()) {
      if (p.conn === null) continue;
      if (p.pending.size > 0 && p.oldestPendingAge(now) > ko) {
        p.lastError = `ko-count exceeded: a request stayed unanswered for more than ${ko} ms`;
        this.#dropPeer(p, 'Timeout');
      }
    }
    if (this.md?.bitmaps.some((b) => b.dirtyPages.length > 0)) {
      void this.md?.flushBitmaps().catch(() => {});
    }
    this.#changed();
  }

  // ---------------------------------------------------------------- events

  /** The current state as events2 object lines (without the action word). */
  stateLines(): Map<string, string> {
    const m = new Map<string, string>();
    const yn = (b: boolean): string => (b ? 'yes' : 'no');
    m.set(
      'resource',
      `resource name:${this.name} role:${this.role} suspended:${this.suspendedBy.size === 0 ? 'no' : [...this.suspendedBy].join(',')}`,
    );
    m.set(
      'device',
      `device name:${this.name} volume:0 disk:${this.isUp ? this.disk : 'Diskless'} quorum:${yn(this.#hasQuorum())}`,
    );
    for (const p of this.peers.values()) {
      m.set(
        `connection:${p.id}`,
        `connection name:${this.name} peer-node-id:${p.id} conn-name:${p.cfg.name} connection:${p.cs} role:${p.role}`,
      );
      const paused = p.sync !== null && (p.sync.pausedByUser || p.sync.pausedByPeer);
      m.set(
        `peer-device:${p.id}`,
        `peer-device name:${this.name} peer-node-id:${p.id} conn-name:${p.cfg.name} volume:0 replication:${p.rs} peer-disk:${p.disk} resync-suspended:${paused ? 'user' : 'no'}`,
      );
    }
    return m;
  }

  #changed(): void {
    // A Primary's peers learn at once which nodes its writes stop (or start) reaching.
    if (this.role === 'Primary') {
      const weak = this.#weakNodes();
      for (const p of this.peers.values())
        if (p.established && p.weakSent !== weak) this.#sendParams(p, ParamsKind.INFO);
    }
    for (const [k, line] of this.stateLines()) {
      if (this.#lastLines.get(k) === line) continue;
      this.#lastLines.set(k, line);
      this.emit('event', `change ${line}`);
    }
  }
}

/** Removes a stale unix socket path (helper for the control channel). */
export function removeStale(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    /* ignore */
  }
}
