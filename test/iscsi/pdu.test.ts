import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeBhs,
  encodePdu,
  encodePduToBuffer,
  lunToNumber,
  numberToLun,
  padLength,
} from '../../src/iscsi/pdu/codec.js';
import { FrameReader } from '../../src/iscsi/pdu/framing.js';
import { encodeText, parseText } from '../../src/iscsi/pdu/text.js';
import type { Pdu } from '../../src/iscsi/pdu/types.js';
import { crc32c } from '../../src/native/index.js';

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u8 = fc.integer({ min: 0, max: 0xff });
const lun = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const bool = fc.boolean();
const data = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
const isid = fc.uint8Array({ minLength: 6, maxLength: 6 }).map((a) => Buffer.from(a).toString('hex'));

const arbs: fc.Arbitrary<Pdu>[] = [
  fc.record({
    opcode: fc.constant(0x00 as const),
    immediate: bool,
    data,
    lun,
    itt: u32,
    ttt: u32,
    cmdSN: u32,
    expStatSN: u32,
  }),
  fc
    .record({
      opcode: fc.constant(0x01 as const),
      immediate: bool,
      data,
      final: bool,
      read: bool,
      write: bool,
      attr: fc.integer({ min: 0, max: 7 }),
      lun,
      itt: u32,
      edtl: u32,
      cmdSN: u32,
      expStatSN: u32,
      cdb: fc.uint8Array({ minLength: 16, maxLength: 260 }).map((a) => Buffer.from(a)),
      bidi: fc.option(u32, { nil: undefined }),
    })
    .map(({ bidi, ...r }) => (bidi === undefined ? r : { ...r, bidiReadLength: bidi })),
  fc.record({
    opcode: fc.constant(0x02 as const),
    immediate: bool,
    data,
    fn: fc.integer({ min: 0, max: 0x7f }),
    lun,
    itt: u32,
    rtt: u32,
    cmdSN: u32,
    expStatSN: u32,
    refCmdSN: u32,
    expDataSN: u32,
  }),
  fc.record({
    opcode: fc.constant(0x03 as const),
    immediate: bool,
    data,
    transit: bool,
    cont: bool,
    csg: fc.integer({ min: 0, max: 3 }),
    nsg: fc.integer({ min: 0, max: 3 }),
    versionMax: u8,
    versionMin: u8,
    isid,
    tsih: u16,
    itt: u32,
    cid: u16,
    cmdSN: u32,
    expStatSN: u32,
  }),
  fc.record({
    opcode: fc.constant(0x04 as const),
    immediate: bool,
    data,
    final: bool,
    cont: bool,
    lun,
    itt: u32,
    ttt: u32,
    cmdSN: u32,
    expStatSN: u32,
  }),
  fc.record({
    opcode: fc.constant(0x05 as const),
    immediate: bool,
    data,
    final: bool,
    lun,
    itt: u32,
    ttt: u32,
    expStatSN: u32,
    dataSN: u32,
    bufferOffset: u32,
  }),
  fc.record({
    opcode: fc.constant(0x06 as const),
    immediate: bool,
    data,
    reason: fc.integer({ min: 0, max: 0x7f }),
    itt: u32,
    cid: u16,
    cmdSN: u32,
    expStatSN: u32,
  }),
  fc.record({
    opcode: fc.constant(0x10 as const),
    immediate: bool,
    data,
    type: fc.integer({ min: 0, max: 15 }),
    lun,
    itt: u32,
    ttt: u32,
    expStatSN: u32,
    begRun: u32,
    runLength: u32,
  }),
  fc.record({
    opcode: fc.constant(0x20 as const),
    immediate: fc.constant(false),
    data,
    lun,
    itt: u32,
    ttt: u32,
    statSN: u32,
    expCmdSN: u32,
    maxCmdSN: u32,
  }),
  fc.record({
    opcode: fc.constant(0x21 as const),
    immediate: fc.constant(false),
    data,
    bidiOverflow: bool,
    bidiUnderflow: bool,
    overflow: bool,
    underflow: bool,
    response: u8,
    status: u8,
    itt: u32,
    snackTag: u32,
    statSN: u32,
    expCmdSN: u32,
    maxCmdSN: u32,
    expDataSN: u32,
    bidiResidual: u32,
    residual: u32,
  }),
  fc.record({
    opcode: fc.constant(0x22 as const),
    immediate: fc.constant(false),
    data,
    response: u8,
    itt: u32,
    statSN: u32,
    expCmdSN: u32,
    maxCmdSN: u32,
  }),
  fc.record({
    opcode: fc.constant(0x23 as const),
    immediate: fc.constant(false),
    data,
    transit: bool,
    cont: bool,
    csg: fc.integer({ min: 0, max: 3 }),
    nsg: fc.integer({ min: 0, max: 3 }),
    versionMax: u8,
    versionActive: u8,
    isid,
    tsih: u16,
    itt: u32,
    statSN: u32,
    expCmdSN: u32,
    maxCmdSN: u32,
    status: u16,
  }),
  fc.record({
    opcode: fc.constant(0x24 as const),
    immediate: fc.constant(false),
    data,
    final: bool,
    cont: bool,
    lun,
    itt: u32,
    ttt: u32,
    statSN: u32,
    expCmdSN: u32,
    maxCmdSN: u32,
  }),
  fc
    .record({
      opcode: fc.constant(0x25 as const),
      immediate: fc.constant(false),
      data,
      final: bool,
      ack: bool,
      overflow: bool,
      underflow: bool,
      hasStatus: bool,
      status: u8,
      lun,
      itt: u32,
      ttt: u32,
      statSN: u32,
      expCmdSN: u32,
      maxCmdSN: u32,
      dataSN: u32,
      bufferOffset: u32,
      residual: u32,
    })
    .map((p) => (p.hasStatus ? p : { ...p, status: 0 })),
  fc.record({
    opcode: fc.constant(0x26 as const),
    immediate: fc.constant(false),
    data,
    response: u8,
    itt: u32,
    statSN: u32,
    expCmdSN: u32,
    maxCmdSN: u32,
    time2Wait: u16,
    time2Retain: u16,
  }),
  fc.record({
    opcode: fc.constant(0x31 as const),
    immediate: fc.constant(false),
    data,
    lun,
    itt: u32,
    ttt: u32,
    statSN: u32,
    expCmdSN: u32,
    maxCmdSN: u32,
    r2tSN: u32,
    bufferOffset: u32,
    desiredLength: u32,
  }),
  fc.record({
    opcode: fc.constant(0x32 as const),
    immediate: fc.constant(false),
    data,
    lun,
    statSN: u32,
    expCmdSN: u32,
    maxCmdSN: u32,
    event: u8,
    vcode: u8,
    param1: u16,
    param2: u16,
    param3: u16,
  }),
  fc.record({
    opcode: fc.constant(0x3f as const),
    immediate: fc.constant(false),
    data,
    reason: u8,
    statSN: u32,
    expCmdSN: u32,
    maxCmdSN: u32,
    dataSN: u32,
  }),
];
const anyPdu = fc.oneof(...arbs);
const digests = fc.record({ headerDigest: bool, dataDigest: bool });

function decodeAll(bytes: Buffer, d: { headerDigest: boolean; dataDigest: boolean }, chunks: number[] = []) {
  const r = new FrameReader({ ...d, expect: 'any', maxRecvDataSegmentLength: 1 << 20 });
  const out: Pdu[] = [];
  let off = 0;
  for (const c of [...chunks, bytes.length]) {
    const end = Math.min(bytes.length, off + Math.max(1, c));
    r.push(bytes.subarray(off, end));
    off = end;
    for (let x = r.next(); x; x = r.next()) {
      if (!x.ok) throw new Error(x.message);
      out.push(x.pdu);
    }
    if (off >= bytes.length) break;
  }
  if (off < bytes.length) {
    r.push(bytes.subarray(off));
    for (let x = r.next(); x; x = r.next()) {
      if (!x.ok) throw new Error(x.message);
      out.push(x.pdu);
    }
  }
  return out;
}

const norm = (p: Pdu) => JSON.parse(JSON.stringify(p, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));

describe('PDU codec', () => {
  it('round-trips every opcode, with and without digests, across arbitrary chunking', () => {
    fc.assert(
      fc.property(
        fc.array(anyPdu, { minLength: 1, maxLength: 5 }),
        digests,
        fc.array(fc.integer({ min: 1, max: 200 })),
        (pdus, d, chunks) => {
          const bytes = Buffer.concat(pdus.map((p) => encodePduToBuffer(p, d)));
          const back = decodeAll(bytes, d, chunks);
          expect(back.map(norm)).toEqual(pdus.map(norm));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('pads data to 4 bytes and passes the data buffer through untouched', () => {
    const data = Buffer.from('abcde');
    const bufs = encodePdu(
      { opcode: 0x00, immediate: true, data, lun: 0n, itt: 1, ttt: 0xffffffff, cmdSN: 1, expStatSN: 1 },
      { headerDigest: false, dataDigest: false },
    );
    expect(bufs[1]).toBe(data);
    expect(bufs[2]?.length).toBe(padLength(5));
    expect(Buffer.concat(bufs).length).toBe(48 + 8);
  });

  it('digests are CRC32C, little-endian (RFC 3720 B.4 vector: 32 zero bytes → aa 36 91 8a)', () => {
    const v = Buffer.alloc(4);
    v.writeUInt32LE(crc32c(Buffer.alloc(32)));
    expect(v.toString('hex')).toBe('aa36918a');
  });

  it('header digest mismatch is fatal; data digest mismatch is a Reject (reason 2)', () => {
    const d = { headerDigest: true, dataDigest: true };
    const pdu: Pdu = {
      opcode: 0x00,
      immediate: true,
      data: Buffer.from('ping'),
      lun: 0n,
      itt: 1,
      ttt: 0xffffffff,
      cmdSN: 1,
      expStatSN: 1,
    };
    const bytes = encodePduToBuffer(pdu, d);
    const badHd = Buffer.from(bytes);
    badHd[49] = (badHd[49] ?? 0) ^ 1;
    const r1 = new FrameReader({ ...d });
    r1.push(badHd);
    expect(r1.next()).toMatchObject({ ok: false, code: 'header-digest', fatal: true });
    expect(r1.next()).toBeUndefined();
    const badDd = Buffer.from(bytes);
    badDd[badDd.length - 1] = (badDd[badDd.length - 1] ?? 0) ^ 1;
    const r2 = new FrameReader({ ...d });
    r2.push(Buffer.concat([badDd, bytes]));
    expect(r2.next()).toMatchObject({ ok: false, code: 'data-digest', fatal: false, reject: 2 });
    expect(r2.next()).toMatchObject({ ok: true });
  });

  it('a placement hook gets Data-Out data copied straight into its view, across any chunking, digests checked', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9000 }),
        digests,
        fc.array(fc.integer({ min: 1, max: 4000 }), { maxLength: 12 }),
        fc.boolean(),
        (len, d, chunks, corrupt) => {
          const data = Buffer.alloc(len);
          for (let i = 0; i < len; i++) data[i] = (i * 13 + len) & 0xff;
          const dataOut: Pdu = {
            opcode: 0x05,
            immediate: false,
            data,
            final: true,
            lun: 0n,
            itt: 7,
            ttt: 3,
            expStatSN: 1,
            dataSN: 0,
            bufferOffset: 4096,
          };
          const nop: Pdu = {
            opcode: 0x00,
            immediate: true,
            data: Buffer.from('x'),
            lun: 0n,
            itt: 1,
            ttt: 0xffffffff,
            cmdSN: 1,
            expStatSN: 1,
          };
          const bytes = Buffer.concat([encodePduToBuffer(dataOut, d), encodePduToBuffer(nop, d)]);
          const bad = corrupt && d.dataDigest;
          if (bad) bytes[48 + (d.headerDigest ? 4 : 0)]! ^= 1;
          const dest = Buffer.alloc(4096 + len + 100);
          const r = new FrameReader({ ...d, expect: 'any', maxRecvDataSegmentLength: 1 << 20 });
          const offered: number[] = [];
          r.place = (bhs, length) => {
            offered.push(bhs[0]! & 0x3f);
            expect(bhs.readUInt32BE(40)).toBe(4096);
            return dest.subarray(4096, 4096 + length);
          };
          const got: (Pdu | string)[] = [];
          let off = 0;
          for (const c of [...chunks, bytes.length]) {
            r.push(bytes.subarray(off, Math.min(bytes.length, off + c)));
            off = Math.min(bytes.length, off + c);
            for (let x = r.next(); x; x = r.next()) got.push(x.ok ? x.pdu : x.code);
          }
          expect(offered).toEqual([0x05]); // only the Data-Out is offered
          if (bad) {
            expect(got[0]).toBe('data-digest');
          } else {
            const p = got[0] as Pdu;
            expect(p.data.buffer).toBe(dest.buffer);
            expect(p.data.byteOffset).toBe(dest.byteOffset + 4096);
            expect(p.data.equals(data)).toBe(true);
            expect(norm({ ...p, data: Buffer.alloc(0) })).toEqual(
              norm({ ...dataOut, data: Buffer.alloc(0) }),
            );
          }
          expect(norm(got[1] as Pdu)).toEqual(norm(nop)); // the stream stays in step
        },
      ),
      { numRuns: 300 },
    );
    // A refused placement: the data comes the ordinary way.
    const r = new FrameReader({ expect: 'any' });
    r.place = () => undefined;
    const dataOut: Pdu = {
      opcode: 0x05,
      immediate: false,
      data: Buffer.from('abcd'),
      final: true,
      lun: 0n,
      itt: 7,
      ttt: 3,
      expStatSN: 1,
      dataSN: 0,
      bufferOffset: 0,
    };
    r.push(encodePduToBuffer(dataOut, { headerDigest: false, dataDigest: false }));
    const x = r.next();
    expect(x?.ok && x.pdu.data.toString()).toBe('abcd');
  });

  it('a data segment above MaxRecvDataSegmentLength is a fatal protocol error', () => {
    const r = new FrameReader({ maxRecvDataSegmentLength: 512 });
    r.push(
      encodePduToBuffer({
        opcode: 0x00,
        immediate: true,
        data: Buffer.alloc(1024),
        lun: 0n,
        itt: 1,
        ttt: 0,
        cmdSN: 0,
        expStatSN: 0,
      }),
    );
    expect(r.next()).toMatchObject({ ok: false, code: 'oversized-segment', fatal: true, reject: 4 });
  });

  it('target opcodes from an initiator and unknown opcodes decode to Reject reasons, never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 48, maxLength: 48 }), (raw) => {
        const b = Buffer.from(raw);
        b[4] = 0;
        const r = decodeBhs(b, Buffer.alloc(0), 'initiator');
        if (!r.ok) expect(r.reject === undefined || [4, 5, 9].includes(r.reject)).toBe(true);
      }),
    );
    const b = Buffer.alloc(48);
    b[0] = 0x21;
    expect(decodeBhs(b, Buffer.alloc(0), 'initiator')).toMatchObject({
      ok: false,
      code: 'wrong-direction',
      reject: 4,
    });
    b[0] = 0x1c;
    expect(decodeBhs(b, Buffer.alloc(0), 'initiator')).toMatchObject({ ok: false, code: 'unknown-opcode' });
  });

  it('FrameReader never throws on garbage', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), digests, (chunks, d) => {
        const r = new FrameReader({ ...d, maxRecvDataSegmentLength: 8192 });
        for (const c of chunks) {
          r.push(Buffer.from(c));
          for (let i = 0; i < 20; i++) if (!r.next()) break;
        }
      }),
    );
  });

  it('extended CDB AHS (32-byte CDB) and bidi read length AHS', () => {
    const cdb = Buffer.alloc(32, 7);
    const p: Pdu = {
      opcode: 0x01,
      immediate: false,
      data: Buffer.alloc(0),
      final: true,
      read: true,
      write: true,
      attr: 1,
      lun: 0n,
      itt: 9,
      edtl: 512,
      cmdSN: 1,
      expStatSN: 1,
      cdb,
      bidiReadLength: 4096,
    };
    const bytes = encodePduToBuffer(p);
    expect(bytes[4]).toBe((4 + 16 + 8) / 4);
    const [back] = decodeAll(bytes, { headerDigest: false, dataDigest: false });
    expect(back).toMatchObject({ cdb, bidiReadLength: 4096 });
  });

  it('LUN field ⇄ flat LUN number', () => {
    for (const n of [0, 1, 255, 256, 16383]) expect(lunToNumber(numberToLun(n))).toBe(n);
    expect(numberToLun(1)).toBe(0x0001000000000000n);
    expect(numberToLun(300)).toBe(0x412c000000000000n);
  });
});

describe('text segments', () => {
  it('round-trips key=value pairs (UTF-8)', () => {
    const key = fc.stringMatching(/^[A-Za-z][A-Za-z0-9.\-_]{0,20}$/);
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.tuple(
            key,
            fc.string({ maxLength: 40 }).filter((s) => !s.includes('\0')),
          ),
          { selector: (t) => t[0], maxLength: 8 },
        ),
        (pairs) => {
          const r = parseText(encodeText(pairs));
          expect(r).toEqual({ ok: true, pairs });
        },
      ),
    );
    expect(parseText(Buffer.from('TargetAlias=dïsk\0'))).toEqual({
      ok: true,
      pairs: [['TargetAlias', 'dïsk']],
    });
  });
  it('rejects duplicates, long keys and values, missing "=", bad UTF-8', () => {
    expect(parseText(Buffer.from('A=1\0A=2\0'))).toMatchObject({ ok: false, code: 'duplicate-key' });
    expect(parseText(Buffer.from('A=1\0A=2\0'), { allowDuplicates: true })).toMatchObject({ ok: true });
    expect(parseText(Buffer.from(`${'K'.repeat(64)}=1\0`))).toMatchObject({
      ok: false,
      code: 'key-too-long',
    });
    expect(parseText(Buffer.from(`K=${'v'.repeat(256)}\0`))).toMatchObject({
      ok: false,
      code: 'value-too-long',
    });
    expect(parseText(Buffer.from(`CHAP_C=0x${'a'.repeat(1000)}\0`))).toMatchObject({ ok: true });
    expect(parseText(Buffer.from('novalue\0'))).toMatchObject({ ok: false, code: 'no-separator' });
    expect(parseText(Buffer.from([0x41, 0x3d, 0xff, 0]))).toMatchObject({ ok: false, code: 'bad-utf8' });
  });
});
