/**
 * A framed connection over a stream socket, and the authenticated handshake every replication
 * connection starts with (protocol version, cluster and resource names, node ids, and an
 * HMAC-SHA256 challenge–response proof of the shared secret in both directions, in the spirit of
 * DRBD's cram-hmac-alg). Bad bytes from the network become a WireError and the socket is dropped;
 * nothing is thrown into the event loop.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { type StaticReads } from '../net/static-reads.js';
import {
  ackPrefixLength,
  dataPrefixLength,
  DEFAULT_MAX_FRAME,
  encodeFrame,
  type Frame,
  FrameReader,
  type HelloMsg,
  PacketType,
  type PacketInit,
  WIRE_VERSION,
  WireError,
  WireErrorCode,
  writeAckPrefix,
  writeDataPrefix,
} from './codec.js';

/**
 * A payload with at least this much still to come is read by the socket straight into its buffer
 * (when the StaticReads allows targets). Smaller rests keep going through the static buffer,
 * where one read picks up many small frames at once (4 KiB writes at QD32: one read per frame
 * would be a syscall per frame).
 */
export const READ_INTO_PAYLOAD_MIN = 32 * 1024;

export interface WireConnectionEvents {
  frame: [Frame];
  close: [WireError | null];
}

/**
 * Frames in, frames out. Before `start()` frames are queued for `next()` (handshake); after it
 * every frame is emitted as 'frame'. 'close' fires once with the reason (null = orderly end).
 */
export class WireConnection extends EventEmitter<WireConnectionEvents> {
  readonly socket: Duplex;
  readonly reader: FrameReader;
  bytesOut = 0;
  #queue: Frame[] = [];
  #waiter: ((f: Frame | null) => void) | null = null;
  #streaming = false;
  #corked = false;
  #closed = false;
  #closeReason: WireError | null = null;

  /** `reads`: the socket reads into a static buffer (StaticReads) instead of emitting 'data'. */
  constructor(socket: Duplex, maxFrame = DEFAULT_MAX_FRAME, reads: StaticReads | null = null) {
    super();
    this.socket = socket;
    this.reader = new FrameReader(maxFrame);
    if (reads === null) socket.on('data', (chunk: Buffer) => this.#onData(chunk, false));
    else
      reads.attach(
        (bytes) => this.#onData(bytes, true),
        () => (this.#closed ? null : this.reader.readTarget(READ_INTO_PAYLOAD_MIN)),
      );
    socket.on('error', (e: Error) =>
      this.#close(new WireError(WireErrorCode.CLOSED, `socket error: ${e.message}`)),
    );
    socket.on('close', () => this.#close(null));
    socket.on('end', () => this.#close(null));
  }

  get closed(): boolean {
    return this.#closed;
  }

  get bytesIn(): number {
    return this.reader.bytesIn;
  }

  /** Switches from queued (handshake) mode to 'frame' events; queued frames are emitted first. */
  start(): void {
    this.#streaming = true;
    const q = this.#queue;
    this.#queue = [];
    for (const f of q) if (!this.#closed) this.emit('frame', f);
  }

  /** The next frame (handshake mode); rejects on close or timeout. */
  next(timeoutMs: number): Promise<Frame> {
    const q = this.#queue.shift();
    if (q !== undefined) return Promise.resolve(q);
    if (this.#closed) {
      return Promise.reject(this.#closeReason ?? new WireError(WireErrorCode.CLOSED, 'connection closed'));
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.#waiter = null;
        reject(new WireError(WireErrorCode.TIMEOUT, `no packet from peer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = (f) => {
        clearTimeout(t);
        this.#waiter = null;
        if (f === null)
          reject(this.#closeReason ?? new WireError(WireErrorCode.CLOSED, 'connection closed by peer'));
        else resolve(f);
      };
    });
  }

  /**
   * Sends one frame (prefix and payload written back to back). Returns false when the socket wants
   * a drain. `onFlushed` runs once the bytes were handed to the kernel (the payload buffer may be
   * reused from then on), or with an error when the connection fails first.
   */
  send(p: PacketInit, payload?: Uint8Array, onFlushed?: (err?: Error | null) => void): boolean {
    if (this.#closed) return this.#sendClosed(onFlushed);
    const [prefix, body] = encodeFrame(p, payload);
    return this.#write(prefix, body, onFlushed);
  }

  /**
   * send({ type: DATA, id, seq, offset, length, flags }, payload, onFlushed) — the same bytes,
   * without a packet object: the header encoder's field lookups on packet objects of a dozen
   * shapes went megamorphic (framePrefixLength alone was 4.6 % of the Primary's main thread).
   */
  sendData(
    id: number,
    seq: number,
    offset: number,
    length: number,
    flags: number,
    payload: Uint8Array | undefined,
    onFlushed?: (err?: Error | null) => void,
  ): boolean {
    if (this.#closed) return this.#sendClosed(onFlushed);
    const plen = payload === undefined ? 0 : payload.length;
    const prefix = Buffer.allocUnsafe(dataPrefixLength(id, seq, length, flags));
    writeDataPrefix(prefix, 0, id, seq, offset, length, flags, plen);
    return this.#write(prefix, plen > 0 ? (payload as Uint8Array) : null, onFlushed);
  }

  /** send({ type, id }) — an ack (WRITE_ACK, RECV_ACK…), without a packet object. */
  sendAck(type: PacketType, id: number): boolean {
    if (this.#closed) return false;
    const prefix = Buffer.allocUnsafe(ackPrefixLength(type, id));
    writeAckPrefix(prefix, 0, type, id);
    return this.#write(prefix, null, undefined);
  }

  #sendClosed(onFlushed: ((err?: Error | null) => void) | undefined): boolean {
    onFlushed?.(new WireError(WireErrorCode.CLOSED, 'connection closed'));
    return false;
  }

  #write(prefix: Buffer, body: Uint8Array | null, onFlushed?: (err?: Error | null) => void): boolean {
    this.bytesOut += prefix.length + (body === null ? 0 : body.length);
    // Every frame sent in one tick goes out in one writev (acks and small packets coalesce).
    if (!this.#corked) {
      this.#corked = true;
      this.socket.cork();
      process.nextTick(this.#uncork);
    }
    if (body === null) return this.socket.write(prefix, onFlushed);
    this.socket.write(prefix);
    return this.socket.write(body, onFlushed);
  }

  /** Hands the frames sent so far to the kernel now (one writev) instead of at the end of the tick. */
  flush(): void {
    this.#uncork();
  }

  readonly #uncork = (): void => {
    if (!this.#corked) return;
    this.#corked = false;
    this.socket.uncork();
  };

  /** Hands a received frame's payload back for reuse once nothing references it (FrameReader.recycle). */
  recycle(payload: Buffer): void {
    this.reader.recycle(payload);
  }

  /** Resolves when the socket's write buffer has drained (or the connection closed). */
  drain(): Promise<void> {
    if (this.#closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.on('close', done);
    });
  }

  /** Sends REFUSE with a reason, then ends the connection. */
  refuse(reason: string): void {
    this.send({ type: PacketType.REFUSE, reason });
    this.end(new WireError(WireErrorCode.REFUSED, reason));
  }

  /** Ends the connection (flushing what was written); `reason` is reported by 'close'. */
  end(reason: WireError | null = null): void {
    if (this.#closed) return;
    this.socket.end();
    const s = this.socket;
    setTimeout(() => s.destroy(), 200).unref();
    this.#close(reason);
  }

  destroy(reason: WireError | null = null): void {
    this.socket.destroy();
    this.#close(reason);
  }

  #onData(chunk: Buffer, transient: boolean): void {
    if (this.#closed) return;
    let frames: Frame[];
    try {
      frames = transient ? this.reader.pushCopy(chunk) : this.reader.push(chunk);
    } catch (e) {
      const err = e as WireError;
      this.destroy(err);
      return;
    }
    for (const f of frames) {
      if (this.#closed) return;
      if (this.#streaming) this.emit('frame', f);
      else if (this.#waiter !== null) this.#waiter(f);
      else this.#queue.push(f);
    }
  }

  #close(reason: WireError | null): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeReason = reason;
    if (this.#waiter !== null) this.#waiter(null);
    this.emit('close', reason);
  }
}

export interface HandshakeOptions {
  readonly cluster: string;
  readonly resource: string;
  readonly nodeId: number;
  /**
   * The node id we expect on the other end (refused otherwise); null on an accepting socket, where
   * `acceptPeer` vets the id the peer claims (returns a refusal reason or null).
   */
  readonly peerId: number | null;
  readonly acceptPeer?: (peerId: number) => string | null;
  readonly secret: string | Buffer;
  readonly timeoutMs?: number;
  /** Override for tests of version mismatch. */
  readonly version?: number;
}

export interface HandshakeResult {
  readonly peerId: number;
  readonly peerVersion: number;
}

const AUTH_LABEL = Buffer.from('lunar-auth-v1');

/** The proof a node sends: HMAC-SHA256(secret, label | challenge it received | its own node id). */
export function authProof(secret: string | Buffer, challenge: Uint8Array, proverNodeId: number): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(proverNodeId);
  return createHmac('sha256', secret).update(AUTH_LABEL).update(challenge).update(id).digest();
}

/**
 * Runs the symmetric handshake on a fresh connection (both ends call it). Resolves with the
 * peer's identity; rejects with WireError REFUSED (the peer refused us, reason included),
 * AUTH_FAILED / PROTOCOL (we refused the peer; it was told why) or TIMEOUT/CLOSED.
 */
export async function handshake(conn: WireConnection, o: HandshakeOptions): Promise<HandshakeResult> {
  const timeout = o.timeoutMs ?? 5000;
  const challenge = randomBytes(32);
  const hello: HelloMsg = {
    version: o.version ?? WIRE_VERSION,
    cluster: o.cluster,
    resource: o.resource,
    nodeId: o.nodeId,
    expectPeerId: o.peerId ?? 0xffffffff,
    challenge,
  };
  conn.send({ type: PacketType.HELLO, hello });
  const expectType = async (type: number): Promise<Frame> => {
    const f = await conn.next(timeout);
    if (f.packet.type === PacketType.REFUSE) {
      conn.end(new WireError(WireErrorCode.REFUSED, f.packet.reason));
      throw new WireError(WireErrorCode.REFUSED, `peer refused the connection: ${f.packet.reason}`);
    }
    if (f.packet.type !== type) {
      const why = `handshake: expected packet ${type}, got ${f.packet.type}`;
      conn.refuse(why);
      throw new WireError(WireErrorCode.PROTOCOL, why);
    }
    return f;
  };
  const fail = (code: WireErrorCode, why: string): never => {
    conn.refuse(why);
    throw new WireError(code, why);
  };

  const h = (await expectType(PacketType.HELLO)).packet.hello;
  if (h === null) return fail(WireErrorCode.PROTOCOL, 'handshake: HELLO without hello body');
  if (h.version !== (o.version ?? WIRE_VERSION)) {
    fail(
      WireErrorCode.PROTOCOL,
      `protocol version mismatch: node ${o.nodeId} speaks ${o.version ?? WIRE_VERSION}, node ${h.nodeId} speaks ${h.version}`,
    );
  }
  if (h.cluster !== o.cluster)
    fail(WireErrorCode.PROTOCOL, `cluster name mismatch: '${h.cluster}' vs '${o.cluster}'`);
  if (h.resource !== o.resource) {
    fail(WireErrorCode.PROTOCOL, `resource name mismatch: '${h.resource}' vs '${o.resource}'`);
  }
  if (o.peerId !== null && h.nodeId !== o.peerId) {
    fail(WireErrorCode.PROTOCOL, `unexpected node id ${h.nodeId} (expected ${o.peerId})`);
  }
  if (o.peerId === null) {
    const why = o.acceptPeer?.(h.nodeId) ?? null;
    if (why !== null) fail(WireErrorCode.PROTOCOL, why);
  }
  const peerId = h.nodeId;
  if (h.expectPeerId !== o.nodeId && h.expectPeerId !== 0xffffffff) {
    fail(WireErrorCode.PROTOCOL, `peer expected node id ${h.expectPeerId}, this is node ${o.nodeId}`);
  }
  if (h.challenge.length !== 32) fail(WireErrorCode.PROTOCOL, 'handshake: challenge must be 32 bytes');

  conn.send({ type: PacketType.AUTH, auth: { response: authProof(o.secret, h.challenge, o.nodeId) } });
  const a = (await expectType(PacketType.AUTH)).packet.auth;
  const want = authProof(o.secret, challenge, peerId);
  if (a === null || a.response.length !== want.length || !timingSafeEqual(a.response, want)) {
    fail(
      WireErrorCode.AUTH_FAILED,
      `authentication failed: node ${h.nodeId} does not know the shared secret of resource '${o.resource}'`,
    );
  }
  conn.send({ type: PacketType.AUTH_OK });
  await expectType(PacketType.AUTH_OK);
  return { peerId, peerVersion: h.version };
}
