import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileAtomicJournal } from '../../src/scsi/atomic.js';
import { createScsiTarget } from '../../src/scsi/index.js';
import { Asc, SenseKey } from '../../src/scsi/sense.js';
import { naaDesignator } from '../../src/scsi/spc.js';
import { ScsiStatus } from '../../src/scsi/types.js';
import { cdb, fill, fixture, LU_ID, makeCmd, N1, N2, senseOf, TestStore, u16, u32, u64 } from './helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// EXTENDED COPY

const xcopyCdb = (len: number) => [0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...u32(len), 0, 0];
const rcr = (sa: number, listId = 0, alloc = 1024) => [
  0x84,
  sa,
  listId,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  ...u32(alloc),
  0,
  0,
];

function cscd(naa: Buffer, blockSize = 512, b1 = 0): Buffer {
  const d = Buffer.alloc(32);
  d[0] = 0xe4;
  d[1] = b1;
  d[4] = 0x01; // binary
  d[5] = 0x03; // LU, NAA
  d[7] = naa.length;
  naa.copy(d, 8);
  d[29] = (blockSize >> 16) & 0xff;
  d[30] = (blockSize >> 8) & 0xff;
  d[31] = blockSize & 0xff;
  return d;
}
function seg(src: number, dst: number, blocks: number, srcLba: number, dstLba: number, type = 0x02): Buffer {
  const d = Buffer.alloc(28);
  d[0] = type;
  d.writeUInt16BE(0x18, 2);
  d.writeUInt16BE(src, 4);
  d.writeUInt16BE(dst, 6);
  d.writeUInt16BE(blocks, 10);
  d.writeBigUInt64BE(BigInt(srcLba), 12);
  d.writeBigUInt64BE(BigInt(dstLba), 20);
  return d;
}
function xparams(cscds: Buffer[], segs: Buffer[], listId = 1, usage = 0): Buffer {
  const h = Buffer.alloc(16);
  h[0] = listId;
  h[1] = usage << 3;
  const c = Buffer.concat(cscds);
  const s = Buffer.concat(segs);
  h.writeUInt16BE(c.length, 2);
  h.writeUInt32BE(s.length, 8);
  return Buffer.concat([h, c, s]);
}

async function twoLuns() {
  const a = new TestStore();
  const b = new TestStore();
  const target = createScsiTarget({
    name: 'iqn.2026-11.io.lunar:t1',
    luns: [
      { lun: 0, backstore: a, id: LU_ID },
      { lun: 1, backstore: b, id: 'fedcba9876543210' },
    ],
  });
  target.nexusCreated(N1);
  const run = (c: readonly number[], data?: Buffer, lun = 0) =>
    target.execute(makeCmd(c, data ? { data, lun, nexus: N1 } : { lun, nexus: N1 }));
  for (const lun of [0, 1]) for (let i = 0; i < 3; i++) await run([0, 0, 0, 0, 0, 0], undefined, lun);
  const naa0 = naaDesignator(target.logicalUnit(0)!);
  const naa1 = naaDesignator(target.logicalUnit(1)!);
  return { target, run, a, b, naa0, naa1 };
}

describe('EXTENDED COPY (LID1) / RECEIVE COPY RESULTS', () => {
  it('copies within a LU and to another LU; copy status held per list id', async () => {
    const { run, a, b, naa0, naa1 } = await twoLuns();
    a.data.fill(0x41, 0, 16 * 512);
    const p = xparams([cscd(naa0), cscd(naa1)], [seg(0, 0, 16, 0, 100), seg(0, 1, 16, 0, 500)], 7);
    expect((await run(xcopyCdb(p.length), p)).status).toBe(ScsiStatus.GOOD);
    expect(a.data.subarray(100 * 512, 116 * 512).equals(fill(16, 0x41))).toBe(true);
    expect(b.data.subarray(500 * 512, 516 * 512).equals(fill(16, 0x41))).toBe(true);
    const st = (await run(rcr(0, 7))).dataIn!;
    expect(st[4]).toBe(1);
    expect(st.readUInt16BE(5)).toBe(2);
    expect(st.readUInt32BE(8)).toBe(32 * 512);
    expect(senseOf(await run(rcr(0, 8))).code).toBe(Asc.INVALID_FIELD_IN_CDB);
    const op = (await run(rcr(3))).dataIn!;
    expect(op.readUInt16BE(8)).toBeGreaterThanOrEqual(2);
    expect([op[44], op[45]]).toEqual([0x02, 0xe4]);
    const vpd = (await run([0x12, 1, 0x8f, 0, 255, 0])).dataIn!;
    expect(vpd[1]).toBe(0x8f);
    expect(vpd.readUInt16BE(4)).toBe(0x0001);
  });

  it('parameter errors: lengths, limits, descriptor types, unreachable, out of range', async () => {
    const { run, naa0 } = await twoLuns();
    const ok = xparams([cscd(naa0)], [seg(0, 0, 8, 0, 64)]);
    expect((await run(xcopyCdb(0))).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await run(xcopyCdb(40), ok.subarray(0, 40))).code).toBe(Asc.PARAMETER_LIST_LENGTH_ERROR);
    const many = xparams(
      Array.from({ length: 9 }, () => cscd(naa0)),
      [seg(0, 0, 1, 0, 1)],
    );
    expect(senseOf(await run(xcopyCdb(many.length), many)).code).toBe(Asc.TOO_MANY_TARGET_DESCRIPTORS);
    const segs = xparams(
      [cscd(naa0)],
      Array.from({ length: 17 }, () => seg(0, 0, 1, 0, 1)),
    );
    expect(senseOf(await run(xcopyCdb(segs.length), segs)).code).toBe(Asc.TOO_MANY_SEGMENT_DESCRIPTORS);
    const fc = cscd(naa0);
    fc[0] = 0xe0;
    const t1 = xparams([fc], [seg(0, 0, 1, 0, 1)]);
    expect(senseOf(await run(xcopyCdb(t1.length), t1)).code).toBe(
      Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
    );
    const t2 = xparams([cscd(naa0)], [seg(0, 0, 1, 0, 1, 0x03)]);
    expect(senseOf(await run(xcopyCdb(t2.length), t2)).code).toBe(
      Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
    );
    const rsvd = xparams([cscd(naa0, 512, 0x80)], [seg(0, 0, 1, 0, 1)]);
    expect((await run(xcopyCdb(rsvd.length), rsvd)).status).toBe(ScsiStatus.GOOD); // LU ID TYPE ignored
    for (const p of [
      xparams([cscd(naa0, 512, 0x20)], [seg(0, 0, 1, 0, 1)]), // NUL
      xparams([cscd(naa0)], [seg(0, 1, 1, 0, 1)]), // bad index
      xparams([cscd(naa0)], [seg(0, 0, 8, 0, 1020)]), // beyond the end
      xparams([cscd(Buffer.alloc(16, 9))], [seg(0, 0, 1, 0, 1)]), // unknown LU
    ]) {
      expect(senseOf(await run(xcopyCdb(p.length), p)).key).toBe(SenseKey.COPY_ABORTED);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// SANITIZE

const sanitizeCdb = (sa: number, len = 0, immed = false, ause = false) => [
  0x48,
  (immed ? 0x80 : 0) | (ause ? 0x20 : 0) | sa,
  0,
  0,
  0,
  0,
  0,
  ...u16(len),
  0,
];
const overwriteParams = (pattern: Buffer, passes = 1, invert = false) => {
  const h = Buffer.from([(invert ? 0x80 : 0) | passes, 0, ...u16(pattern.length)]);
  return Buffer.concat([h, pattern]);
};

describe('SANITIZE', () => {
  it('OVERWRITE writes the pattern everywhere; parameter checks', async () => {
    const f = await fixture({ blockCount: 64, lu: { sanitizeRate: 0 } });
    f.store.data.fill(0x61);
    const p = overwriteParams(Buffer.from([0xde, 0xad, 0xbe, 0xef]));
    expect((await f.run(sanitizeCdb(1, p.length), { data: p })).status).toBe(ScsiStatus.GOOD);
    for (let i = 0; i < f.store.data.length; i += 4) expect(f.store.data.readUInt32BE(i)).toBe(0xdeadbeef);
    for (const len of [0, 4, 512 + 5]) {
      expect(senseOf(await f.run(sanitizeCdb(1, len), { data: Buffer.alloc(len) })).code).toBe(
        Asc.INVALID_FIELD_IN_CDB,
      );
    }
    const zeroCount = overwriteParams(Buffer.alloc(4), 0);
    expect(senseOf(await f.run(sanitizeCdb(1, 8), { data: zeroCount })).code).toBe(Asc.INVALID_FIELD_IN_CDB);
    // CRYPTO ERASE does not apply: unsupported service action
    expect(senseOf(await f.run(sanitizeCdb(3))).code).toBe(Asc.INVALID_FIELD_IN_CDB);
    // reserved bits
    expect(senseOf(await f.run([0x48, 0x41, 0, 0, 0, 0, 0, 0, 8, 0], { data: p })).code).toBe(
      Asc.INVALID_FIELD_IN_CDB,
    );
  });

  it('while sanitizing (IMMED): NOT READY 04/1B for media access, INQUIRY allowed, UA waits', async () => {
    const f = await fixture({ blockCount: 2048, lu: { sanitizeRate: 1024 * 1024 } }); // ≈1 s
    const p = overwriteParams(Buffer.alloc(512, 0x55));
    expect((await f.run(sanitizeCdb(1, p.length, true), { data: p })).status).toBe(ScsiStatus.GOOD);
    const s = senseOf(await f.run(cdb.tur()));
    expect([s.key, s.code]).toEqual([SenseKey.NOT_READY, Asc.LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS]);
    expect(senseOf(await f.run(cdb.rw16(0x88, 0, 1))).code).toBe(
      Asc.LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS,
    );
    expect((await f.run(cdb.inquiry(false, 0, 96))).status).toBe(ScsiStatus.GOOD);
    const rs = (await f.run(cdb.requestSense())).dataIn!;
    expect([rs[2]! & 0x0f, rs[12], rs[13]]).toEqual([SenseKey.NOT_READY, 0x04, 0x1b]);
    // a reset does not stop it
    f.target.taskManagement(6, N2, 0);
    expect(senseOf(await f.run(cdb.tur(), { nexus: N2 })).code).toBe(
      Asc.LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS,
    );
    await f.target.logicalUnit(0)!.sanitizing;
    expect(senseOf(await f.run(cdb.tur(), { nexus: N2 })).key).toBe(SenseKey.UNIT_ATTENTION);
    expect(f.store.data.every((x) => x === 0x55)).toBe(true);
  });

  it('BLOCK ERASE on a thin LU deallocates everything; failure mode and EXIT FAILURE MODE', async () => {
    const f = await fixture({ thin: true, blockCount: 64 });
    await f.run(cdb.rw10(0x2a, 0, 8), { data: fill(8, 0x77) });
    expect((await f.run(sanitizeCdb(2))).status).toBe(ScsiStatus.GOOD);
    expect(f.store.mapped.size).toBe(0);
    expect(senseOf(await f.run(sanitizeCdb(2, 8), { data: Buffer.alloc(8) })).code).toBe(
      Asc.INVALID_FIELD_IN_CDB,
    );
    // a failing sanitize (AUSE=1) leaves failure mode; EXIT FAILURE MODE leaves it
    f.store.failNext = 'IO';
    const r = await f.run(sanitizeCdb(2, 0, false, true));
    expect([senseOf(r).key, senseOf(r).code]).toEqual([SenseKey.MEDIUM_ERROR, Asc.SANITIZE_COMMAND_FAILED]);
    expect(senseOf(await f.run(cdb.rw10(0x28, 0, 1))).code).toBe(Asc.SANITIZE_COMMAND_FAILED);
    expect((await f.run(sanitizeCdb(0x1f))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.rw10(0x28, 0, 1))).status).toBe(ScsiStatus.GOOD);
    // without AUSE, only a successful sanitize ends failure mode
    f.store.failNext = 'IO';
    await f.run(sanitizeCdb(2));
    expect(senseOf(await f.run(sanitizeCdb(0x1f))).code).toBe(Asc.SANITIZE_COMMAND_FAILED);
    expect((await f.run(sanitizeCdb(2))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.rw10(0x28, 0, 1))).status).toBe(ScsiStatus.GOOD);
  });

  it('write-protected LU and RESERVE from another nexus', async () => {
    const ro = await fixture({ readOnly: true });
    const p = overwriteParams(Buffer.alloc(4));
    expect(senseOf(await ro.run(sanitizeCdb(1, 8), { data: p })).key).toBe(SenseKey.DATA_PROTECT);
    const f = await fixture();
    await f.run(cdb.reserve6(), { nexus: N2 });
    expect((await f.run(sanitizeCdb(1, 8), { data: p })).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
  });
});

// ---------------------------------------------------------------------------------------------
// WRITE ATOMIC(16)

const wa16 = (lba: number, n: number, boundary = 0) => [
  0x9c,
  0,
  ...u64(lba),
  ...u16(boundary),
  ...u16(n),
  0,
  0,
];

describe('WRITE ATOMIC(16)', () => {
  it('writes; limits in VPD B0; zero blocks; boundary and range errors', async () => {
    const f = await fixture();
    expect((await f.run(wa16(4, 2), { data: fill(2, 0x33) })).status).toBe(ScsiStatus.GOOD);
    expect(f.store.data.subarray(4 * 512, 6 * 512).equals(fill(2, 0x33))).toBe(true);
    expect((await f.run(wa16(0, 0))).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await f.run(wa16(1023, 2), { data: fill(2, 1) })).code).toBe(Asc.LBA_OUT_OF_RANGE);
    expect(senseOf(await f.run(wa16(0, 1, 1), { data: fill(1, 1) })).code).toBe(Asc.INVALID_FIELD_IN_CDB);
    const b0 = (await f.run(cdb.inquiry(true, 0xb0, 255))).dataIn!;
    expect(b0.readUInt32BE(44)).toBe(4096);
    expect(b0.readUInt32BE(48)).toBe(1);
    const ro = await fixture({ readOnly: true });
    expect(senseOf(await ro.run(wa16(0, 1), { data: fill(1, 1) })).key).toBe(SenseKey.DATA_PROTECT);
  });

  it('journal: a complete record is replayed, a torn one is dropped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lunar-wal-'));
    dirs.push(dir);
    const j = new FileAtomicJournal(dir, LU_ID);
    const store = new TestStore();
    await j.record(10, fill(2, 0x5a));
    expect(await j.recover(store)).toBe(true);
    expect(store.data.subarray(10 * 512, 12 * 512).equals(fill(2, 0x5a))).toBe(true);
    await j.record(20, fill(2, 0x5b));
    const torn = Buffer.alloc(40, 1);
    writeFileSync(j.file, torn);
    expect(await j.recover(store)).toBe(false);
    expect(store.data.subarray(20 * 512, 22 * 512).equals(fill(2, 0))).toBe(true);
    // through the LU: persistent backstore with a journal offers the command
    const pstore = new TestStore();
    (pstore.capabilities as { persistent: boolean }).persistent = true;
    const t = createScsiTarget({
      name: 'iqn.2026-11.io.lunar:t1',
      luns: [{ lun: 0, backstore: pstore, id: LU_ID, atomicJournal: j }],
    });
    t.nexusCreated(N1);
    for (let i = 0; i < 3; i++) await t.execute(makeCmd(cdb.tur()));
    expect((await t.execute(makeCmd(wa16(0, 1), { data: fill(1, 9) }))).status).toBe(ScsiStatus.GOOD);
    const t2 = createScsiTarget({
      name: 'iqn.2026-11.io.lunar:t1',
      luns: [{ lun: 0, backstore: pstore, id: LU_ID }],
    });
    t2.nexusCreated(N1);
    for (let i = 0; i < 3; i++) await t2.execute(makeCmd(cdb.tur()));
    expect(senseOf(await t2.execute(makeCmd(wa16(0, 1), { data: fill(1, 9) }))).code).toBe(
      Asc.INVALID_COMMAND_OPERATION_CODE,
    );
  });
});
