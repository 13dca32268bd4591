/**
 * A small, independent iSCSI initiator-side PDU builder and client for the fuzz tests
 * (RFC 7143). It deliberately shares no code with src/iscsi: it is the oracle, and it must be
 * able to build PDUs that lunar's own codec would refuse to build.
 */
import { Socket } from 'node:net';

// ------------------------------------------------------------------ CRC32C (own table)

const CRC_T = (() => {
  const t = new Uint32Array(256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[b] = c >>> 0;
  }
  return t;
})();

export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_T[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** iSCSI puts the CRC32C on the wire least significant byte first. */
export function digestBytes(data: Uint8Array): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(crc32c(data), 0);
  return b;
}

// ------------------------------------------------------------------ opcodes

export const OP = {
  NOP_OUT: 0x00,
  SCSI_CMD: 0x01,
  TMF: 0x02,
  LOGIN: 0x03,
  TEXT: 0x04,
  DATA_OUT: 0x05,
  LOGOUT: 0x06,
  SNACK: 0x10,
  NOP_IN: 0x20,
  SCSI_RESP: 0x21,
  TMF_RESP: 0x22,
  LOGIN_RESP: 0x23,
  TEXT_RESP: 0x24,
  DATA_IN: 0x25,
  LOGOUT_RESP: 0x26,
  R2T: 0x31,
  ASYNC: 0x32,
  REJECT: 0x3f,
} as const;

export const ALL_FF = 0xffffffff;

// ------------------------------------------------------------------ BHS builders

export interface Bhs {
  /** 48 bytes; bytes 4..7 (TotalAHSLength, DataSegmentLength) are filled in by frame(). */
  bhs: Buffer;
  data?: Buffer;
  ahs?: Buffer;
}

function lunBytes(b: Buffer, lun: number) {
  // Single-level LUN, peripheral addressing for < 256, flat space above.
  if (lun < 256) b.writeUInt16BE(lun, 8);
  else b.writeUInt16BE(0x4000 | (lun & 0x3fff), 8);
}

export function nopOut(o: {
  itt: number;
  cmdSN: number;
  expStatSN: number;
  lun?: number;
  data?: Buffer;
}): Bhs {
  const b = Buffer.alloc(48);
  b[0] = 0x40 | OP.NOP_OUT;
  b[1] = 0x80;
  lunBytes(b, o.lun ?? 0);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE(ALL_FF, 20);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  return o.data ? { bhs: b, data: o.data } : { bhs: b };
}

export function scsiCmd(o: {
  itt: number;
  cmdSN: number;
  expStatSN: number;
  lun: number;
  cdb: Uint8Array;
  edtl: number;
  read?: boolean;
  write?: boolean;
  final?: boolean;
  immediate?: boolean;
  attr?: number;
  data?: Buffer;
}): Bhs {
  const b = Buffer.alloc(48);
  b[0] = (o.immediate ? 0x40 : 0) | OP.SCSI_CMD;
  b[1] = (o.final === false ? 0 : 0x80) | (o.read ? 0x40 : 0) | (o.write ? 0x20 : 0) | ((o.attr ?? 1) & 7);
  lunBytes(b, o.lun);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE(o.edtl >>> 0, 20);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  Buffer.from(o.cdb.subarray(0, 16)).copy(b, 32);
  return o.data ? { bhs: b, data: o.data } : { bhs: b };
}

export function dataOut(o: {
  itt: number;
  ttt: number;
  expStatSN: number;
  lun: number;
  dataSN: number;
  offset: number;
  final: boolean;
  data: Buffer;
}): Bhs {
  const b = Buffer.alloc(48);
  b[0] = OP.DATA_OUT;
  b[1] = o.final ? 0x80 : 0;
  lunBytes(b, o.lun);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE(o.ttt >>> 0, 20);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  b.writeUInt32BE(o.dataSN >>> 0, 36);
  b.writeUInt32BE(o.offset >>> 0, 40);
  return { bhs: b, data: o.data };
}

export function tmf(o: {
  itt: number;
  cmdSN: number;
  expStatSN: number;
  lun: number;
  fn: number;
  rtt: number;
  refCmdSN: number;
}): Bhs {
  const b = Buffer.alloc(48);
  b[0] = 0x40 | OP.TMF;
  b[1] = 0x80 | (o.fn & 0x7f);
  lunBytes(b, o.lun);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE(o.rtt >>> 0, 20);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  b.writeUInt32BE(o.refCmdSN >>> 0, 32);
  return { bhs: b };
}

export function textReq(o: {
  itt: number;
  cmdSN: number;
  expStatSN: number;
  ttt?: number;
  final?: boolean;
  cont?: boolean;
  data: Buffer;
}): Bhs {
  const b = Buffer.alloc(48);
  b[0] = 0x40 | OP.TEXT;
  b[1] = (o.final === false ? 0 : 0x80) | (o.cont ? 0x40 : 0);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE((o.ttt ?? ALL_FF) >>> 0, 20);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  return { bhs: b, data: o.data };
}

export function logoutReq(o: {
  itt: number;
  cmdSN: number;
  expStatSN: number;
  reason?: number;
  cid?: number;
}): Bhs {
  const b = Buffer.alloc(48);
  b[0] = 0x40 | OP.LOGOUT;
  b[1] = 0x80 | ((o.reason ?? 0) & 0x7f);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt16BE((o.cid ?? 0) & 0xffff, 20);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  return { bhs: b };
}

export function snack(o: {
  itt: number;
  expStatSN: number;
  type: number;
  begrun: number;
  runlen: number;
}): Bhs {
  const b = Buffer.alloc(48);
  b[0] = OP.SNACK;
  b[1] = 0x80 | (o.type & 0x0f);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt32BE(ALL_FF, 20);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  b.writeUInt32BE(o.begrun >>> 0, 40);
  b.writeUInt32BE(o.runlen >>> 0, 44);
  return { bhs: b };
}

export function loginReq(o: {
  isid: Buffer;
  tsih?: number;
  itt: number;
  cid?: number;
  cmdSN: number;
  expStatSN: number;
  csg: number;
  nsg: number;
  transit: boolean;
  cont?: boolean;
  versionMax?: number;
  versionMin?: number;
  data: Buffer;
}): Bhs {
  const b = Buffer.alloc(48);
  b[0] = 0x40 | OP.LOGIN;
  b[1] = (o.transit ? 0x80 : 0) | (o.cont ? 0x40 : 0) | ((o.csg & 3) << 2) | (o.nsg & 3);
  b[2] = o.versionMax ?? 0;
  b[3] = o.versionMin ?? 0;
  o.isid.copy(b, 8, 0, 6);
  b.writeUInt16BE((o.tsih ?? 0) & 0xffff, 14);
  b.writeUInt32BE(o.itt >>> 0, 16);
  b.writeUInt16BE((o.cid ?? 0) & 0xffff, 20);
  b.writeUInt32BE(o.cmdSN >>> 0, 24);
  b.writeUInt32BE(o.expStatSN >>> 0, 28);
  return { bhs: b, data: o.data };
}

export function textKeys(keys: readonly (string | readonly [string, string])[]): Buffer {
  return Buffer.from(
    keys.map((k) => (typeof k === 'string' ? k : `${k[0]}=${k[1]}`) + '\0').join(''),
    'utf8',
  );
}

export function parseKeys(data: Buffer): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of data.toString('utf8').split('\0')) {
    if (!kv) continue;
    const i = kv.indexOf('=');
    if (i > 0) m.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return m;
}

const pad4 = (n: number) => (4 - (n & 3)) & 3;

export interface FrameOpts {
  hd?: boolean;
  dd?: boolean;
  /** Overrides for the length fields (lies). */
  ahsWords?: number;
  dlen?: number;
  corruptHd?: boolean;
  corruptDd?: boolean;
}

/** Serialize: BHS + AHS + [header digest] + data + pad + [data digest]. */
export function frame(p: Bhs, o: FrameOpts = {}): Buffer {
  const bhs = Buffer.from(p.bhs);
  const ahs = p.ahs ?? Buffer.alloc(0);
  const data = p.data ?? Buffer.alloc(0);
  bhs[4] = (o.ahsWords ?? Math.ceil(ahs.length / 4)) & 0xff;
  const dlen = (o.dlen ?? data.length) & 0xffffff;
  bhs[5] = (dlen >>> 16) & 0xff;
  bhs[6] = (dlen >>> 8) & 0xff;
  bhs[7] = dlen & 0xff;
  const parts: Buffer[] = [bhs];
  if (ahs.length) parts.push(ahs, Buffer.alloc(pad4(ahs.length)));
  if (o.hd) {
    const d = digestBytes(Buffer.concat(parts));
    if (o.corruptHd) d[0] = d[0]! ^ 0x5a;
    parts.push(d);
  }
  if (data.length) {
    const padded = Buffer.concat([data, Buffer.alloc(pad4(data.length))]);
    parts.push(padded);
    if (o.dd) {
      const d = digestBytes(padded);
      if (o.corruptDd) d[3] = d[3]! ^ 0xa5;
      parts.push(d);
    }
  }
  return Buffer.concat(parts);
}

// ------------------------------------------------------------------ received PDUs

export interface InPdu {
  op: number;
  flags: number;
  bhs: Buffer;
  data: Buffer;
  itt: number;
}

export interface ConnStats {
  pdusSent: number;
  bytesSent: number;
  pdusReceived: number;
  rejects: number;
  byOp: Map<number, number>;
}

export function newStats(): ConnStats {
  return { pdusSent: 0, bytesSent: 0, pdusReceived: 0, rejects: 0, byOp: new Map() };
}

interface Waiter {
  done(p: InPdu): boolean;
  resolve(pdus: InPdu[]): void;
  reject(e: Error): void;
  pdus: InPdu[];
  timer: NodeJS.Timeout;
}

export interface LoginResult {
  hd: boolean;
  dd: boolean;
  /** Target's MaxRecvDataSegmentLength (how much we may send in one PDU). */
  maxSend: number;
  immediateData: boolean;
  initialR2T: boolean;
  firstBurst: number;
  keys: Map<string, string>;
}

/** One TCP connection speaking iSCSI as an initiator, loose enough to also send garbage. */
export class Conn {
  readonly sock: Socket;
  hd = false;
  dd = false;
  closed = false;
  /** The target ended or reset the connection (as opposed to us destroying it). */
  peerClosed = false;
  connected = false;
  cmdSN = 1;
  expStatSN = 0;
  maxCmdSN = 1;
  nextItt = 1;
  lun = 0;
  login: LoginResult | undefined;
  readonly stats: ConnStats;
  private rx: Buffer[] = [];
  private rxLen = 0;
  private waiters = new Set<Waiter>();
  private closeWaiters: (() => void)[] = [];
  /** Called for every received PDU (after waiters). */
  onPdu: ((p: InPdu) => void) | undefined;

  constructor(stats?: ConnStats) {
    this.stats = stats ?? newStats();
    this.sock = new Socket();
    this.sock.setNoDelay(true);
    this.sock.on('data', (d: Buffer) => this.onData(d));
    this.sock.on('error', () => {
      this.peerClosed = true;
    });
    this.sock.on('end', () => {
      this.peerClosed = true;
      this.sock.destroy();
    });
    this.sock.on('close', () => {
      this.closed = true;
      for (const w of this.waiters) {
        clearTimeout(w.timer);
        w.reject(new Error('connection closed'));
      }
      this.waiters.clear();
      for (const f of this.closeWaiters.splice(0)) f();
    });
  }

  static open(host: string, port: number, stats?: ConnStats, timeoutMs = 5000): Promise<Conn> {
    const c = new Conn(stats);
    return new Promise((res, rej) => {
      const t = setTimeout(() => {
        c.sock.destroy();
        rej(new Error(`connect ${host}:${port} timed out`));
      }, timeoutMs);
      c.sock.once('connect', () => {
        clearTimeout(t);
        c.connected = true;
        res(c);
      });
      c.sock.once('error', (e) => {
        clearTimeout(t);
        rej(e);
      });
      c.sock.connect(port, host);
    });
  }

  itt(): number {
    const i = this.nextItt;
    this.nextItt = (this.nextItt + 1) >>> 0 || 1;
    if (this.nextItt === ALL_FF) this.nextItt = 1;
    return i;
  }

  /** Write raw bytes; `pdus` is how many PDUs they count as. */
  writeRaw(buf: Buffer, pdus = 1): boolean {
    if (this.closed || this.sock.destroyed) return false;
    this.stats.pdusSent += pdus;
    this.stats.bytesSent += buf.length;
    return this.sock.write(buf);
  }

  send(p: Bhs, o: FrameOpts = {}): boolean {
    return this.writeRaw(frame(p, { hd: this.hd, dd: this.dd, ...o }));
  }

  /** Wait until the socket can take more (or is closed). */
  drain(): Promise<void> {
    if (this.closed || !this.sock.writableNeedDrain) return Promise.resolve();
    return new Promise((r) => {
      const done = () => {
        this.sock.off('drain', done);
        this.sock.off('close', done);
        r();
      };
      this.sock.once('drain', done);
      this.sock.once('close', done);
    });
  }

  whenClosed(timeoutMs: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((r) => {
      const t = setTimeout(() => r(false), timeoutMs);
      this.closeWaiters.push(() => {
        clearTimeout(t);
        r(true);
      });
    });
  }

  destroy(): void {
    this.sock.destroy();
  }

  /** Collect PDUs until `done` says the exchange is complete. */
  wait(done: (p: InPdu) => boolean, timeoutMs = 5000): Promise<InPdu[]> {
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        done,
        resolve,
        reject,
        pdus: [],
        timer: setTimeout(() => {
          this.waiters.delete(w);
          reject(new Error(`timeout after ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.add(w);
    });
  }

  private onData(d: Buffer) {
    this.rx.push(d);
    this.rxLen += d.length;
    for (;;) {
      if (this.rxLen < 48) return;
      if (this.rx.length > 1) this.rx = [Buffer.concat(this.rx)];
      const b = this.rx[0]!;
      const ahs = b[4]! * 4;
      const dlen = (b[5]! << 16) | (b[6]! << 8) | b[7]!;
      const hdLen = this.hd ? 4 : 0;
      const ddLen = this.dd && dlen > 0 ? 4 : 0;
      const total = 48 + ahs + hdLen + dlen + pad4(dlen) + ddLen;
      if (b.length < total) return;
      const bhs = b.subarray(0, 48);
      const dataStart = 48 + ahs + hdLen;
      const p: InPdu = {
        op: bhs[0]! & 0x3f,
        flags: bhs[1]!,
        bhs: Buffer.from(bhs),
        data: Buffer.from(b.subarray(dataStart, dataStart + dlen)),
        itt: bhs.readUInt32BE(16),
      };
      const rest = b.subarray(total);
      this.rx = rest.length ? [rest] : [];
      this.rxLen = rest.length;
      this.account(p);
    }
  }

  private account(p: InPdu) {
    this.stats.pdusReceived++;
    this.stats.byOp.set(p.op, (this.stats.byOp.get(p.op) ?? 0) + 1);
    if (p.op === OP.REJECT) this.stats.rejects++;
    const carriesStatSN =
      p.op === OP.SCSI_RESP ||
      p.op === OP.TMF_RESP ||
      p.op === OP.TEXT_RESP ||
      p.op === OP.LOGOUT_RESP ||
      p.op === OP.REJECT ||
      p.op === OP.ASYNC ||
      p.op === OP.LOGIN_RESP ||
      (p.op === OP.NOP_IN && p.itt !== ALL_FF) ||
      (p.op === OP.DATA_IN && (p.flags & 1) !== 0);
    if (carriesStatSN) this.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
    if (p.op >= 0x20) this.maxCmdSN = p.bhs.readUInt32BE(32);
    // Answer target NOP-In pings so the target does not time us out.
    if (p.op === OP.NOP_IN && p.bhs.readUInt32BE(20) !== ALL_FF && p.itt === ALL_FF) {
      const out = nopOut({ itt: ALL_FF, cmdSN: this.cmdSN, expStatSN: this.expStatSN, lun: this.lun });
      out.bhs.writeUInt32BE(p.bhs.readUInt32BE(20), 20);
      this.send(out);
    }
    for (const w of this.waiters) {
      w.pdus.push(p);
      if (w.done(p)) {
        this.waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve(w.pdus);
        break;
      }
    }
    this.onPdu?.(p);
  }

  // ---------------------------------------------------------------- conversations

  async doLogin(o: {
    initiator: string;
    target: string;
    isid: Buffer;
    digests?: boolean;
    timeoutMs?: number;
  }): Promise<LoginResult> {
    const itt = this.itt();
    const loginCmdSN = this.cmdSN;
    let stage = 0;
    let resp: InPdu | undefined;
    const keys = new Map<string, string>();
    const digest = o.digests ? 'CRC32C,None' : 'None';
    const steps: { csg: number; nsg: number; keys: Buffer }[] = [
      {
        csg: 0,
        nsg: 1,
        keys: textKeys([
          ['InitiatorName', o.initiator],
          ['TargetName', o.target],
          ['SessionType', 'Normal'],
          ['AuthMethod', 'None'],
        ]),
      },
      {
        csg: 1,
        nsg: 3,
        keys: textKeys([
          ['HeaderDigest', digest],
          ['DataDigest', digest],
          ['ErrorRecoveryLevel', '0'],
          ['InitialR2T', 'No'],
          ['ImmediateData', 'Yes'],
          ['MaxRecvDataSegmentLength', '262144'],
          ['MaxBurstLength', '262144'],
          ['FirstBurstLength', '65536'],
          ['DefaultTime2Wait', '2'],
          ['DefaultTime2Retain', '0'],
          ['MaxOutstandingR2T', '1'],
          ['DataPDUInOrder', 'Yes'],
          ['DataSequenceInOrder', 'Yes'],
          ['MaxConnections', '1'],
        ]),
      },
    ];
    let tsih = 0;
    let fresh = true; // first request of a stage carries that stage's keys
    for (let round = 0; round < 8; round++) {
      const st = steps[stage]!;
      const req = loginReq({
        isid: o.isid,
        tsih,
        itt,
        cmdSN: loginCmdSN,
        expStatSN: this.expStatSN,
        csg: st.csg,
        nsg: st.nsg,
        transit: true,
        data: fresh ? st.keys : Buffer.alloc(0),
      });
      fresh = false;
      const w = this.wait((p) => p.op === OP.LOGIN_RESP && p.itt === itt, o.timeoutMs ?? 5000);
      this.send(req);
      resp = (await w).at(-1)!;
      const cls = resp.bhs[36]!;
      if (cls !== 0) throw new Error(`login rejected: status class ${cls} detail ${resp.bhs[37]}`);
      tsih = resp.bhs.readUInt16BE(14);
      for (const [k, v] of parseKeys(resp.data)) keys.set(k, v);
      const transit = (resp.flags & 0x80) !== 0;
      const nsg = resp.flags & 3;
      this.cmdSN = resp.bhs.readUInt32BE(28);
      this.maxCmdSN = resp.bhs.readUInt32BE(32);
      if (transit && nsg === 3) {
        const hd = keys.get('HeaderDigest') === 'CRC32C';
        const dd = keys.get('DataDigest') === 'CRC32C';
        this.hd = hd;
        this.dd = dd;
        const r: LoginResult = {
          hd,
          dd,
          maxSend: Number(keys.get('MaxRecvDataSegmentLength') ?? 8192) || 8192,
          immediateData: (keys.get('ImmediateData') ?? 'Yes') === 'Yes',
          initialR2T: (keys.get('InitialR2T') ?? 'Yes') === 'Yes',
          firstBurst: Number(keys.get('FirstBurstLength') ?? 65536) || 65536,
          keys,
        };
        this.login = r;
        return r;
      }
      if (transit && nsg === 1 && stage === 0) {
        stage = 1;
        fresh = true;
      }
    }
    throw new Error('login did not reach full feature phase');
  }

  async ping(timeoutMs = 5000, data?: Buffer): Promise<InPdu> {
    const itt = this.itt();
    const w = this.wait((p) => p.op === OP.NOP_IN && p.itt === itt, timeoutMs);
    this.send(
      nopOut({ itt, cmdSN: this.cmdSN, expStatSN: this.expStatSN, lun: this.lun, ...(data ? { data } : {}) }),
    );
    return (await w).at(-1)!;
  }

  /** One SCSI command; returns status, sense, read data. Handles R2T for writes. */
  async scsi(
    cdb: Uint8Array,
    o: { read?: number; write?: Buffer; timeoutMs?: number } = {},
  ): Promise<{ status: number; sense: Buffer; data: Buffer; response: number }> {
    const itt = this.itt();
    const lr = this.login;
    const maxSend = Math.min(lr?.maxSend ?? 8192, 65536);
    const wlen = o.write?.length ?? 0;
    let imm: Buffer = Buffer.alloc(0);
    if (o.write && lr?.immediateData) imm = o.write.subarray(0, Math.min(maxSend, lr.firstBurst, wlen));
    const cmdSN = this.cmdSN;
    this.cmdSN = (this.cmdSN + 1) >>> 0;
    const readBuf = Buffer.alloc(o.read ?? 0);
    let status = -1;
    let response = 0;
    let sense: Buffer = Buffer.alloc(0);
    // Unsolicited Data-Out (InitialR2T=No) up to FirstBurstLength after the immediate data.
    const unsolicitedEnd = o.write && lr && !lr.initialR2T ? Math.min(lr.firstBurst, wlen) : imm.length;
    const w = this.wait((p) => {
      if (p.itt !== itt) return false;
      if (p.op === OP.DATA_IN) {
        const off = p.bhs.readUInt32BE(40);
        p.data.copy(readBuf, off);
        if (p.flags & 1) {
          status = p.bhs[3]!;
          return true;
        }
        return false;
      }
      if (p.op === OP.R2T && o.write) {
        const ttt = p.bhs.readUInt32BE(20);
        const off = p.bhs.readUInt32BE(40);
        const len = p.bhs.readUInt32BE(44);
        let sn = 0;
        for (let x = off; x < off + len; x += maxSend) {
          const n = Math.min(maxSend, off + len - x);
          this.send(
            dataOut({
              itt,
              ttt,
              expStatSN: this.expStatSN,
              lun: this.lun,
              dataSN: sn++,
              offset: x,
              final: x + n >= off + len,
              data: o.write.subarray(x, x + n),
            }),
          );
        }
        return false;
      }
      if (p.op === OP.SCSI_RESP) {
        response = p.bhs[2]!;
        status = p.bhs[3]!;
        if (p.data.length >= 2) {
          const sl = p.data.readUInt16BE(0);
          sense = p.data.subarray(2, 2 + sl);
        }
        return true;
      }
      if (p.op === OP.REJECT) return true;
      return false;
    }, o.timeoutMs ?? 10_000);
    this.send(
      scsiCmd({
        itt,
        cmdSN,
        expStatSN: this.expStatSN,
        lun: this.lun,
        cdb,
        edtl: o.read ?? wlen,
        read: o.read !== undefined,
        write: o.write !== undefined,
        final: unsolicitedEnd <= imm.length,
        data: imm,
      }),
    );
    if (o.write && unsolicitedEnd > imm.length) {
      let sn = 0;
      for (let x = imm.length; x < unsolicitedEnd; x += maxSend) {
        const n = Math.min(maxSend, unsolicitedEnd - x);
        this.send(
          dataOut({
            itt,
            ttt: ALL_FF,
            expStatSN: this.expStatSN,
            lun: this.lun,
            dataSN: sn++,
            offset: x,
            final: x + n >= unsolicitedEnd,
            data: o.write.subarray(x, x + n),
          }),
        );
      }
    }
    const pdus = await w;
    if (pdus.at(-1)?.op === OP.REJECT) throw new Error('command rejected');
    return { status, sense, data: readBuf, response };
  }

  async logout(timeoutMs = 5000): Promise<InPdu> {
    const itt = this.itt();
    const w = this.wait((p) => p.op === OP.LOGOUT_RESP && p.itt === itt, timeoutMs);
    this.send(logoutReq({ itt, cmdSN: this.cmdSN, expStatSN: this.expStatSN, reason: 0 }));
    return (await w).at(-1)!;
  }
}

export function read10(lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(10);
  c[0] = 0x28;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}

export function write10(lba: number, blocks: number, fua = false): Buffer {
  const c = Buffer.alloc(10);
  c[0] = 0x2a;
  if (fua) c[1] = 0x08;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}

export function isid(n: number): Buffer {
  // T=10b (random): A=0, B+C random-ish qualifier from n, D = low bits.
  const b = Buffer.alloc(6);
  b[0] = 0x80;
  b[1] = (n >>> 24) & 0xff;
  b[2] = (n >>> 16) & 0xff;
  b[3] = (n >>> 8) & 0xff;
  b.writeUInt16BE(n & 0xffff, 4);
  return b;
}
