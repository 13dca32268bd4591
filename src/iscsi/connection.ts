/**
 * Socket glue for one iSCSI connection: frames in (FrameReader), login machine, then the
 * session's full feature phase; PDUs out as buffer lists under cork/uncork. Backpressure: reading
 * stops while the socket's write side is congested or too many tasks are active. Nothing the
 * network sends can throw out of here: any failure ends this connection only.
 */
import type { Socket } from 'node:net';
import { type DigestOptions, encodePdu, NO_DIGESTS } from './pdu/codec.js';
import { LoginStatus } from './pdu/constants.js';
import { FrameReader } from './pdu/framing.js';
import type { InitiatorPdu, LoginRequest, TargetPdu } from './pdu/types.js';
import { type LoginContext, LoginMachine, type LoginResult } from './session/login.js';
import { busyPoll } from '../net/busy-poll.js';
import type { StaticReads } from '../net/static-reads.js';
import type { DecodeResult, Pdu } from './pdu/types.js';
import type { IscsiSession, PduSink } from './session/session.js';

export interface ConnectionOwner {
  loginContext(conn: IscsiConnection): LoginContext;
  /** Login finished: create/join the session. Returns the session or a failure reason. */
  loginComplete(conn: IscsiConnection, result: LoginResult): IscsiSession | string;
  loginFailed(conn: IscsiConnection, status: number, reason: string, login: LoginMachine): void;
  connectionClosed(conn: IscsiConnection, reason: string): void;
  readonly nopInIntervalMs: number;
  readonly nopInTimeoutMs: number;
}

const LOGIN_TIMEOUT_MS = 30_000;
/** LUNAR_ISCSI_TRACE=1 logs a one-line summary of every PDU to stderr (debugging aid). */
const TRACE = process.env['LUNAR_ISCSI_TRACE'] === '1';

function summary(p: object): string {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) {
    if (k === 'data') o['dlen'] = (v as Buffer).length;
    else if (k === 'cdb') o['cdb'] = (v as Buffer).toString('hex', 0, 10);
    else if (typeof v === 'bigint') o[k] = v.toString(16);
    else o[k] = v;
  }
  return JSON.stringify(o);
}

export class IscsiConnection implements PduSink {
  readonly socket: Socket;
  readonly portalGroupTag: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  readonly #owner: ConnectionOwner;
  readonly #reader = new FrameReader({ expect: 'initiator', maxRecvDataSegmentLength: 8192 });
  #login: LoginMachine | undefined;
  #session: IscsiSession | undefined;
  #digests: DigestOptions = NO_DIGESTS;
  #corked = false;
  #closed = false;
  #closing = false;
  #timer: NodeJS.Timeout | undefined;
  #pausedForWrite = false;
  #pausedForTasks = false;
  closeReason = '';

  /** `reads`: the socket delivers its bytes through a static buffer (see Portal) instead of 'data'. */
  constructor(socket: Socket, owner: ConnectionOwner, portalGroupTag: number, reads?: StaticReads) {
    this.socket = socket;
    this.#owner = owner;
    this.portalGroupTag = portalGroupTag;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = socket.localAddress ?? '';
    this.localPort = socket.localPort ?? 0;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    if (reads) reads.attach((bytes) => this.#onBytes(bytes, false));
    else socket.on('data', (chunk: Buffer) => this.#onBytes(chunk, true));
    socket.on('error', (e) => this.#finish(`socket error: ${e.message}`));
    socket.on('close', () => this.#finish(this.closeReason || 'peer closed the connection'));
    socket.on('end', () => {
      if (!this.#closed) this.close('peer closed the connection');
    });
    socket.on('drain', () => {
      if (this.#pausedForWrite) {
        this.#pausedForWrite = false;
        this.#maybeResume();
      }
    });
    this.#timer = setInterval(() => this.#tick(), 1000);
    this.#timer.unref();
    this.#loginDeadline = Date.now() + LOGIN_TIMEOUT_MS;
    socket.resume(); // accepted paused (Portal): handlers are in place now
  }
  #loginDeadline: number;

  get session(): IscsiSession | undefined {
    return this.#session;
  }
  get address(): string {
    const a = this.remoteAddress.includes(':') ? `[${this.remoteAddress}]` : this.remoteAddress;
    return `${a}:${this.remotePort}`;
  }
  get closed(): boolean {
    return this.#closed;
  }

  #tick(): void {
    const now = Date.now();
    if (!this.#session) {
      if (now > this.#loginDeadline) this.close('login timed out');
      return;
    }
    if (!this.#session.tick(now, this.#owner.nopInIntervalMs, this.#owner.nopInTimeoutMs)) {
      this.close('NOP-In ping timed out');
    }
  }

  /** Bytes from the socket (`stable`: they stay valid after the call). False: stop reading. */
  #onBytes(bytes: Buffer, stable: boolean): boolean {
    if (this.#closed || this.#closing) return false;
    try {
      busyPoll.arm(this.#session?.activeTasks);
      this.#reader.feed(bytes, (r) => this.#handle(r), stable);
    } catch (e) {
      this.close(`internal error: ${(e as Error).message}`);
    }
    return !this.#closed && !this.#closing;
  }

  /** One parsed PDU (or framing error). False: the connection is ending, stop parsing. */
  #handle(r: DecodeResult<Pdu>): boolean {
    if (this.#closed || this.#closing) return false;
    if (!r.ok) {
      if (r.fatal || !this.#session) {
        if (this.#session && r.reject !== undefined && r.bhs) this.#session.reject(r.reject, r.bhs);
        this.close(`PDU error: ${r.message}`, true);
        return false;
      }
      if (r.reject !== undefined) this.#session.reject(r.reject, r.bhs);
      if (r.code === 'data-digest' && (r.opcode === 0x01 || r.opcode === 0x05)) {
        // ERL 0 has no recovery for lost SCSI data: drop the connection.
        this.close('data digest error on SCSI data', true);
        return false;
      }
      return true;
    }
    const pdu = r.pdu as InitiatorPdu;
    if (TRACE) console.error(`[iscsi ${this.address}] <- ${summary(pdu)}`);
    if (this.#session) {
      this.#session.heard(Date.now());
      this.#session.receive(pdu, this.#reader.lastBhs);
      if (this.#session?.congested && !this.#pausedForTasks) {
        this.#pausedForTasks = true;
        this.socket.pause();
      }
      return !this.#closed && !this.#closing;
    }
    if (pdu.opcode !== 0x03) {
      // Only Login Requests are allowed during login.
      this.send({
        opcode: 0x23,
        immediate: false,
        data: Buffer.alloc(0),
        transit: false,
        cont: false,
        csg: 0,
        nsg: 0,
        versionMax: 0,
        versionActive: 0,
        isid: '000000000000',
        tsih: 0,
        itt: (pdu as { itt?: number }).itt ?? 0,
        statSN: 0,
        expCmdSN: 0,
        maxCmdSN: 0,
        status: LoginStatus.INVALID_DURING_LOGIN,
      });
      this.close('non-login PDU during login', true);
      return false;
    }
    this.#loginPdu(pdu);
    return !this.#closed && !this.#closing;
  }

  #loginPdu(pdu: LoginRequest): void {
    if (!this.#login) this.#login = new LoginMachine(this.#owner.loginContext(this));
    const login = this.#login;
    for (const a of login.receive(pdu)) {
      switch (a.type) {
        case 'send':
          this.send(a.pdu);
          break;
        case 'fail':
          this.#owner.loginFailed(this, a.status, a.reason, login);
          this.close(`login failed: ${a.reason}`, true);
          return;
        case 'complete': {
          const s = this.#owner.loginComplete(this, a.result);
          if (typeof s === 'string') {
            // The session could not be set up (target removed meanwhile): answer with a status.
            const status = /removed/.test(s) ? LoginStatus.TARGET_REMOVED : LoginStatus.TARGET_ERROR;
            this.send({
              opcode: 0x23,
              immediate: false,
              data: Buffer.alloc(0),
              transit: false,
              cont: false,
              csg: pdu.csg,
              nsg: 0,
              versionMax: 0,
              versionActive: 0,
              isid: pdu.isid,
              tsih: 0,
              itt: pdu.itt,
              statSN: a.result.nextStatSN,
              expCmdSN: a.result.cmdSN,
              maxCmdSN: a.result.cmdSN,
              status,
            });
            this.#owner.loginFailed(this, status, s, login);
            this.close(`login failed: ${s}`, true);
            return;
          }
          this.#session = s;
          s.onIdle = () => {
            if (this.#pausedForTasks && !s.congested) {
              this.#pausedForTasks = false;
              this.#maybeResume();
            }
          };
          break;
        }
      }
    }
    const s = this.#session;
    if (s) {
      // The final Login Response went out without digests; from now on both sides use them.
      this.#digests = { headerDigest: s.params.headerDigest, dataDigest: s.params.dataDigest };
      this.#reader.headerDigest = s.params.headerDigest;
      this.#reader.dataDigest = s.params.dataDigest;
      this.#reader.maxRecvDataSegmentLength = s.params.targetMaxRecvDataSegmentLength;
      // Data-Out goes straight from the socket chunks into its command's write buffer.
      this.#reader.place = (bhs, length) => (this.#session === s ? s.placeData(bhs, length) : undefined);
    }
  }

  #maybeResume(): void {
    if (!this.#pausedForWrite && !this.#pausedForTasks && !this.#closed) this.socket.resume();
  }

  send(pdu: TargetPdu, onWritten?: () => void): void {
    if (this.#closed || this.socket.destroyed) {
      onWritten?.();
      return;
    }
    if (TRACE) console.error(`[iscsi ${this.address}] -> ${summary(pdu)}`);
    const bufs = encodePdu(pdu, this.#digests);
    busyPoll.arm(this.#session?.activeTasks);
    if (!this.#corked) {
      this.#corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        if (!this.socket.destroyed) this.socket.uncork();
      });
    }
    let ok = true;
    const last = bufs.length - 1;
    for (let i = 0; i < last; i++) ok = this.socket.write(bufs[i]!) && ok;
    // The write callback runs once libuv is done with the bytes (written, or the socket failed).
    ok =
      (onWritten ? this.socket.write(bufs[last]!, () => onWritten()) : this.socket.write(bufs[last]!)) && ok;
    if (!ok && !this.#pausedForWrite) {
      this.#pausedForWrite = true;
      this.socket.pause();
    }
  }

  /** Close the connection. With `afterFlush`, queued PDUs are written first (FIN after data). */
  close(reason: string, afterFlush = false): void {
    if (this.#closing || this.#closed) return;
    this.#closing = true;
    this.closeReason = reason;
    if (afterFlush) {
      if (this.#corked) {
        this.#corked = false;
        this.socket.uncork();
      }
      this.socket.end();
      const t = setTimeout(() => this.socket.destroy(), 5000);
      t.unref();
      // Stop processing input now; the session ends when the socket closes.
      this.#endSession(reason);
    } else {
      this.socket.destroy();
      this.#finish(reason);
    }
  }

  /** Detach without ending the session (connection reinstatement replaced us). */
  detach(reason: string): void {
    this.#session = undefined;
    this.close(reason);
  }

  #endSession(reason: string): void {
    const s = this.#session;
    this.#session = undefined;
    if (s) s.close(reason);
  }

  #finish(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing = true;
    if (this.#timer) clearInterval(this.#timer);
    if (!this.closeReason) this.closeReason = reason;
    this.#endSession(this.closeReason);
    if (!this.socket.destroyed) this.socket.destroy();
    this.#owner.connectionClosed(this, this.closeReason);
  }
}
