/**
 * A small iSCSI initiator for integration tests (uses lunar's codec; the fuzz tests have an
 * independent one). Login (None/CHAP, mutual), SCSI READ/WRITE with immediate data, unsolicited
 * Data-Out and R2T, TMF, NOP, Text, Logout, and raw PDU access for protocol tests.
 */
import { connect, type Socket } from 'node:net';
import { encodePdu, numberToLun } from '../../src/iscsi/pdu/codec.js';
import { FrameReader } from '../../src/iscsi/pdu/framing.js';
import { encodeText, parseText } from '../../src/iscsi/pdu/text.js';
import type { InitiatorPdu, LoginResponse, Pdu, TargetPdu } from '../../src/iscsi/pdu/types.js';
import { chapResponse, decodeBinaryValue, encodeHexValue } from '../../src/iscsi/session/chap.js';

export interface LoginOptions {
  initiatorName?: string;
  targetName?: string;
  discovery?: boolean;
  isid?: string;
  tsih?: number;
  cid?: number;
  keys?: [string, string][];
  chap?: {
    user: string;
    secret: string;
    alg?: number;
    mutual?: { user: string; secret: string; challenge?: Buffer };
  };
  headerDigest?: string;
  dataDigest?: string;
  skipSecurity?: boolean;
}

export interface ScsiReply {
  status: number;
  response: number;
  data: Buffer;
  sense: Buffer;
  residual: number;
  overflow: boolean;
  underflow: boolean;
  pdus: TargetPdu[];
}

export class TestInitiator {
  readonly socket: Socket;
  readonly reader = new FrameReader({ expect: 'target', maxRecvDataSegmentLength: 16777215 });
  #queue: TargetPdu[] = [];
  #waiters: (() => void)[] = [];
  closed = false;
  itt = 1;
  cmdSN = 1;
  expStatSN = 0;
  maxCmdSN = 1;
  digests = { headerDigest: false, dataDigest: false };
  /** Negotiated (as answered by the target). */
  negotiated = new Map<string, string>();
  tsih = 0;
  isid = '400001370000';
  /** Auto-answer target NOP-In pings. */
  autoPong = true;
  maxRecvDataSegmentLength = 8192;
  firstBurstLength = 65536;
  maxBurstLength = 262144;
  immediateData = true;
  initialR2T = true;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.reader.push(c);
      for (;;) {
        const r = this.reader.next();
        if (!r) break;
        if (!r.ok) {
          this.socket.destroy();
          break;
        }
        const p = r.pdu as TargetPdu;
        if (this.autoPong && p.opcode === 0x20 && p.itt === 0xffffffff && p.ttt !== 0xffffffff) {
          this.send({
            opcode: 0x00,
            immediate: true,
            data: Buffer.alloc(0),
            lun: 0n,
            itt: 0xffffffff,
            ttt: p.ttt,
            cmdSN: this.cmdSN,
            expStatSN: this.expStatSN,
          });
          continue;
        }
        this.#queue.push(p);
        this.#wake();
      }
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  static connect(port: number, host = '127.0.0.1'): Promise<TestInitiator> {
    return new Promise((res, rej) => {
      const s = connect({ port, host }, () => res(new TestInitiator(s)));
      s.once('error', rej);
    });
  }

  send(pdu: InitiatorPdu | Pdu): void {
    for (const b of encodePdu(pdu, this.digests)) this.socket.write(b);
  }
  sendRaw(b: Buffer): void {
    this.socket.write(b);
  }

  /** Next PDU (optionally matching), or undefined on close/timeout. */
  async recv(match?: (p: TargetPdu) => boolean, timeoutMs = 5000): Promise<TargetPdu | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = match ? this.#queue.findIndex(match) : this.#queue.length ? 0 : -1;
      if (i >= 0) {
        const [p] = this.#queue.splice(i, 1);
        this.#track(p!);
        return p;
      }
      if (this.closed) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  #track(p: TargetPdu): void {
    const statBearing =
      p.opcode === 0x21 ||
      p.opcode === 0x22 ||
      p.opcode === 0x23 ||
      p.opcode === 0x24 ||
      p.opcode === 0x26 ||
      p.opcode === 0x32 ||
      p.opcode === 0x3f ||
      (p.opcode === 0x20 && p.itt !== 0xffffffff) ||
      (p.opcode === 0x25 && p.hasStatus);
    if (statBearing) this.expStatSN = ((p as { statSN: number }).statSN + 1) >>> 0;
    if ('maxCmdSN' in p) this.maxCmdSN = p.maxCmdSN;
  }

  waitClosed(timeoutMs = 5000): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((res) => {
      const t = setTimeout(() => res(false), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(t);
        res(true);
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  nextItt(): number {
    return this.itt++;
  }

  async loginPdu(
    csg: number,
    nsg: number,
    transit: boolean,
    pairs: [string, string][],
    o: LoginOptions,
  ): Promise<LoginResponse> {
    this.send({
      opcode: 0x03,
      immediate: true,
      data: encodeText(pairs),
      transit,
      cont: false,
      csg,
      nsg,
      versionMax: 0,
      versionMin: 0,
      isid: o.isid ?? this.isid,
      tsih: o.tsih ?? 0,
      itt: this.itt,
      cid: o.cid ?? 0,
      cmdSN: this.cmdSN,
      expStatSN: this.expStatSN,
    });
    const r = await this.recv((p) => p.opcode === 0x23);
    if (r?.opcode !== 0x23) throw new Error('no login response');
    const kv = parseText(r.data);
    if (kv.ok) for (const [k, v] of kv.pairs) this.negotiated.set(k, v);
    return r;
  }

  /** Full login; throws with the status on failure. Returns the final response. */
  async login(o: LoginOptions = {}): Promise<LoginResponse> {
    if (o.isid) this.isid = o.isid;
    const first: [string, string][] = [
      ['InitiatorName', o.initiatorName ?? 'iqn.2026-11.test:init'],
      ['SessionType', o.discovery ? 'Discovery' : 'Normal'],
    ];
    if (!o.discovery) first.push(['TargetName', o.targetName ?? 'iqn.2026-11.test:target']);
    let resp: LoginResponse;
    if (!o.skipSecurity) {
      first.push(['AuthMethod', o.chap ? 'CHAP,None' : 'None']);
      resp = await this.loginPdu(0, 1, !o.chap, first, o);
      if (resp.status) throw Object.assign(new Error(`login status 0x${resp.status.toString(16)}`), { resp });
      if (o.chap) {
        resp = await this.loginPdu(0, 1, false, [['CHAP_A', String(o.chap.alg ?? 5)]], o);
        if (resp.status)
          throw Object.assign(new Error(`login status 0x${resp.status.toString(16)}`), { resp });
        const kv = parseText(resp.data);
        if (!kv.ok) throw new Error('bad text');
        const m = new Map(kv.pairs);
        const alg = Number(m.get('CHAP_A'));
        const id = Number(m.get('CHAP_I'));
        const c = decodeBinaryValue(m.get('CHAP_C') ?? '')!;
        const pairs: [string, string][] = [
          ['CHAP_N', o.chap.user],
          ['CHAP_R', encodeHexValue(chapResponse(alg, id, o.chap.secret, c))],
        ];
        const mutual = o.chap.mutual;
        const myChallenge = mutual?.challenge ?? Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
        if (mutual) {
          pairs.push(['CHAP_I', '77'], ['CHAP_C', encodeHexValue(myChallenge)]);
        }
        resp = await this.loginPdu(0, 1, true, pairs, o);
        if (resp.status)
          throw Object.assign(new Error(`login status 0x${resp.status.toString(16)}`), { resp });
        if (mutual) {
          const kv2 = parseText(resp.data);
          if (!kv2.ok) throw new Error('bad text');
          const m2 = new Map(kv2.pairs);
          const want = chapResponse(alg, 77, mutual.secret, myChallenge);
          if (m2.get('CHAP_N') !== mutual.user || !decodeBinaryValue(m2.get('CHAP_R') ?? '')?.equals(want)) {
            throw new Error('target failed mutual CHAP');
          }
        }
      }
    }
    const op: [string, string][] = o.skipSecurity ? [...first] : [];
    op.push(
      ['HeaderDigest', o.headerDigest ?? 'None'],
      ['DataDigest', o.dataDigest ?? 'None'],
      ['MaxRecvDataSegmentLength', String(this.maxRecvDataSegmentLength)],
    );
    if (!o.discovery) {
      op.push(
        ['InitialR2T', this.initialR2T ? 'Yes' : 'No'],
        ['ImmediateData', this.immediateData ? 'Yes' : 'No'],
        ['FirstBurstLength', String(this.firstBurstLength)],
        ['MaxBurstLength', String(this.maxBurstLength)],
        ['MaxOutstandingR2T', '4'],
        ['ErrorRecoveryLevel', '0'],
        ['MaxConnections', '1'],
      );
    }
    op.push(...(o.keys ?? []));
    resp = await this.loginPdu(1, 3, true, op, o);
    if (resp.status) throw Object.assign(new Error(`login status 0x${resp.status.toString(16)}`), { resp });
    this.tsih = resp.tsih;
    this.cmdSN = resp.expCmdSN;
    const hd = this.negotiated.get('HeaderDigest') === 'CRC32C';
    const dd = this.negotiated.get('DataDigest') === 'CRC32C';
    this.digests = { headerDigest: hd, dataDigest: dd };
    this.reader.headerDigest = hd;
    this.reader.dataDigest = dd;
    const n = (k: string, d: number) => Number(this.negotiated.get(k) ?? d);
    this.firstBurstLength = n('FirstBurstLength', this.firstBurstLength);
    this.maxBurstLength = n('MaxBurstLength', this.maxBurstLength);
    this.initialR2T = (this.negotiated.get('InitialR2T') ?? (this.initialR2T ? 'Yes' : 'No')) === 'Yes';
    this.immediateData =
      (this.negotiated.get('ImmediateData') ?? (this.immediateData ? 'Yes' : 'No')) === 'Yes';
    return resp;
  }

  targetMaxRecv(): number {
    return Number(this.negotiated.get('MaxRecvDataSegmentLength') ?? 8192);
  }

  /**
   * Run a SCSI command. `dataOut` for writes (immediate data, unsolicited Data-Out and R2Ts
   * handled per the negotiated keys); `readLength` for reads.
   */
  async scsi(
    cdb: Buffer,
    opts: {
      lun?: number;
      dataOut?: Buffer;
      readLength?: number;
      edtl?: number;
      immediate?: boolean;
      timeoutMs?: number;
    } = {},
  ): Promise<ScsiReply | undefined> {
    const itt = this.nextItt();
    const dataOut = opts.dataOut;
    const edtl = opts.edtl ?? (dataOut ? dataOut.length : (opts.readLength ?? 0));
    const lun = numberToLun(opts.lun ?? 0);
    const maxSeg = this.targetMaxRecv();
    let imm: Buffer = Buffer.alloc(0);
    let unsolicitedEnd = 0;
    if (dataOut) {
      const fb = Math.min(this.firstBurstLength, edtl, dataOut.length);
      if (this.immediateData) imm = dataOut.subarray(0, Math.min(fb, maxSeg));
      unsolicitedEnd = this.initialR2T ? imm.length : fb;
    }
    const sent = imm.length;
    const cmdSN = this.cmdSN;
    if (!opts.immediate) this.cmdSN = (this.cmdSN + 1) >>> 0;
    this.send({
      opcode: 0x01,
      immediate: opts.immediate ?? false,
      data: imm,
      final: !dataOut || unsolicitedEnd <= sent,
      read: opts.readLength !== undefined,
      write: !!dataOut,
      attr: 1,
      lun,
      itt,
      edtl,
      cmdSN,
      expStatSN: this.expStatSN,
      cdb,
    });
    if (dataOut && unsolicitedEnd > sent) {
      let off = sent;
      let sn = 0;
      while (off < unsolicitedEnd) {
        const n = Math.min(maxSeg, unsolicitedEnd - off);
        this.send({
          opcode: 0x05,
          immediate: false,
          data: dataOut.subarray(off, off + n),
          final: off + n >= unsolicitedEnd,
          lun,
          itt,
          ttt: 0xffffffff,
          expStatSN: this.expStatSN,
          dataSN: sn++,
          bufferOffset: off,
        });
        off += n;
      }
    }
    const pdus: TargetPdu[] = [];
    const chunks: Buffer[] = [];
    for (;;) {
      const p = await this.recv((x) => 'itt' in x && x.itt === itt, opts.timeoutMs ?? 5000);
      if (!p) return undefined;
      pdus.push(p);
      if (p.opcode === 0x31 && dataOut) {
        let off = p.bufferOffset;
        const end = p.bufferOffset + p.desiredLength;
        let sn = 0;
        while (off < end) {
          const n = Math.min(maxSeg, end - off);
          this.send({
            opcode: 0x05,
            immediate: false,
            data: dataOut.subarray(off, off + n),
            final: off + n >= end,
            lun,
            itt,
            ttt: p.ttt,
            expStatSN: this.expStatSN,
            dataSN: sn++,
            bufferOffset: off,
          });
          off += n;
        }
      } else if (p.opcode === 0x25) {
        chunks.push(p.data);
        if (p.hasStatus) {
          return {
            status: p.status,
            response: 0,
            data: Buffer.concat(chunks),
            sense: Buffer.alloc(0),
            residual: p.residual,
            overflow: p.overflow,
            underflow: p.underflow,
            pdus,
          };
        }
      } else if (p.opcode === 0x21) {
        const senseLen = p.data.length >= 2 ? p.data.readUInt16BE(0) : 0;
        return {
          status: p.status,
          response: p.response,
          data: Buffer.concat(chunks),
          sense: p.data.subarray(2, 2 + senseLen),
          residual: p.residual,
          overflow: p.overflow,
          underflow: p.underflow,
          pdus,
        };
      }
    }
  }

  async tmf(fn: number, opts: { lun?: number; rtt?: number; refCmdSN?: number; immediate?: boolean } = {}) {
    const itt = this.nextItt();
    const cmdSN = this.cmdSN;
    if (!(opts.immediate ?? true)) this.cmdSN = (this.cmdSN + 1) >>> 0;
    this.send({
      opcode: 0x02,
      immediate: opts.immediate ?? true,
      data: Buffer.alloc(0),
      fn,
      lun: numberToLun(opts.lun ?? 0),
      itt,
      rtt: opts.rtt ?? 0xffffffff,
      cmdSN,
      expStatSN: this.expStatSN,
      refCmdSN: opts.refCmdSN ?? 0,
      expDataSN: 0,
    });
    return this.recv((p) => p.opcode === 0x22 && p.itt === itt);
  }

  async nop(data = Buffer.alloc(0)) {
    const itt = this.nextItt();
    this.send({
      opcode: 0x00,
      immediate: true,
      data,
      lun: 0n,
      itt,
      ttt: 0xffffffff,
      cmdSN: this.cmdSN,
      expStatSN: this.expStatSN,
    });
    return this.recv((p) => p.opcode === 0x20 && p.itt === itt);
  }

  async text(pairs: [string, string][]): Promise<[string, string][]> {
    const itt = this.nextItt();
    let ttt = 0xffffffff;
    let payload: Buffer = encodeText(pairs);
    const parts: Buffer[] = [];
    for (;;) {
      const cmdSN = this.cmdSN;
      this.cmdSN = (this.cmdSN + 1) >>> 0;
      this.send({
        opcode: 0x04,
        immediate: false,
        data: payload,
        final: true,
        cont: false,
        lun: 0n,
        itt,
        ttt,
        cmdSN,
        expStatSN: this.expStatSN,
      });
      const r = await this.recv((p) => p.opcode === 0x24 && p.itt === itt);
      if (r?.opcode !== 0x24) throw new Error('no text response');
      parts.push(r.data);
      if (!r.cont) break;
      ttt = r.ttt;
      payload = Buffer.alloc(0);
    }
    const kv = parseText(Buffer.concat(parts), { allowDuplicates: true });
    if (!kv.ok) throw new Error(kv.message);
    return kv.pairs;
  }

  async logout(reason = 0) {
    const itt = this.nextItt();
    const cmdSN = this.cmdSN;
    this.cmdSN = (this.cmdSN + 1) >>> 0;
    this.send({
      opcode: 0x06,
      immediate: false,
      data: Buffer.alloc(0),
      reason,
      itt,
      cid: 0,
      cmdSN,
      expStatSN: this.expStatSN,
    });
    return this.recv((p) => p.opcode === 0x26 && p.itt === itt);
  }
}

export function read10(lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x28;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}
export function write10(lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x2a;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}
