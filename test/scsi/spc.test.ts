import { describe, expect, it } from 'vitest';
import { Asc, SenseKey } from '../../src/scsi/sense.js';
import { ScsiStatus } from '../../src/scsi/types.js';
import { cdb, fill, fixture, LU_ID, N2, senseOf } from './helpers.js';

describe('INQUIRY', () => {
  it('standard data: SPC-4, HISUP, format 2, additional length, CMDQUE, names, version descriptors', async () => {
    const f = await fixture();
    const d = (await f.run(cdb.inquiry(false, 0, 260))).dataIn!;
    expect(d.length).toBe(96);
    expect([d[0], d[1], d[2], d[3], d[4], d[7]]).toEqual([0, 0, 6, 0x12, 91, 0x02]);
    expect(d.subarray(8, 16).toString()).toBe('LUNAR   ');
    expect(d.subarray(16, 32).toString()).toBe('VIRTUAL-DISK    ');
    expect([0, 1, 2, 3].map((i) => d.readUInt16BE(58 + 2 * i))).toEqual([0x00a0, 0x0460, 0x04c0, 0x0960]);
    expect((await f.run(cdb.inquiry(false, 0, 5))).dataIn!.length).toBe(5);
    expect((await f.run(cdb.inquiry(false, 0, 0))).dataIn!.length).toBe(0);
  });

  it('EVPD=0 with a page code, unknown VPD page, CMDDT: INVALID FIELD IN CDB', async () => {
    const f = await fixture();
    expect(senseOf(await f.run(cdb.inquiry(false, 1, 255)))).toMatchObject({
      code: Asc.INVALID_FIELD_IN_CDB,
      field: { byte: 2 },
    });
    expect(senseOf(await f.run(cdb.inquiry(true, 0x42, 255))).code).toBe(Asc.INVALID_FIELD_IN_CDB);
    expect(senseOf(await f.run([0x12, 0x02, 0, 0, 255, 0])).field).toMatchObject({ byte: 1, bit: 1 });
  });

  it('VPD pages: supported list, serial, block limits, characteristics, provisioning', async () => {
    const f = await fixture();
    const sup = (await f.run(cdb.inquiry(true, 0, 255))).dataIn!;
    const pages = [...sup.subarray(4, 4 + sup.readUInt16BE(2))];
    expect(pages).toEqual([0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2]);
    for (const p of pages) {
      const d = (await f.run(cdb.inquiry(true, p, 255))).dataIn!;
      expect(d[1]).toBe(p);
      expect(d.length).toBe(4 + d.readUInt16BE(2));
    }
    const sn = (await f.run(cdb.inquiry(true, 0x80, 255))).dataIn!;
    expect(sn.subarray(4).toString()).toBe(LU_ID);
    const bl = (await f.run(cdb.inquiry(true, 0xb0, 255))).dataIn!;
    expect(bl[3]).toBe(0x3c);
    expect(bl.readUInt32BE(8)).toBe(65536);
    expect(bl.readUInt32BE(20)).toBe(0); // no UNMAP when fully provisioned
    const bc = (await f.run(cdb.inquiry(true, 0xb1, 255))).dataIn!;
    expect(bc.readUInt16BE(4)).toBe(1);
    const lbp = (await f.run(cdb.inquiry(true, 0xb2, 255))).dataIn!;
    expect(lbp[5]).toBe(0);
    const t = await fixture({ thin: true });
    expect((await t.run(cdb.inquiry(true, 0xb2, 255))).dataIn![5]).toBe(0xe4);
    const tbl = (await t.run(cdb.inquiry(true, 0xb0, 255))).dataIn!;
    expect(tbl.readUInt32BE(20)).toBeGreaterThan(0);
    expect(tbl.readUInt32BE(24)).toBeGreaterThan(0);
  });

  it('device identification: NAA 6 from the LU id, T10, port designators from the nexus, names', async () => {
    const f = await fixture();
    const d = (await f.run(cdb.inquiry(true, 0x83, 1024), { nexus: N2 })).dataIn!;
    const descs: { b0: number; b1: number; value: Buffer }[] = [];
    for (let p = 4; p < d.length;) {
      const len = d[p + 3]!;
      descs.push({ b0: d[p]!, b1: d[p + 1]!, value: d.subarray(p + 4, p + 4 + len) });
      p += 4 + len;
    }
    const naa = descs.find((x) => (x.b1 & 0x0f) === 3)!;
    expect(naa.value.length).toBe(16);
    expect(naa.value[0]! >> 4).toBe(6);
    expect(naa.value.subarray(8).toString('hex')).toBe(LU_ID);
    expect(descs.find((x) => (x.b1 & 0x0f) === 1)!.value.toString()).toBe(`LUNAR   ${LU_ID}`);
    const rtp = descs.find((x) => x.b1 === 0x94)!;
    expect(rtp.value.readUInt16BE(2)).toBe(1);
    const tpg = descs.find((x) => x.b1 === 0x95)!;
    expect(tpg.value.readUInt16BE(2)).toBe(1);
    const names = descs.filter((x) => (x.b1 & 0x0f) === 8).map((x) => x.value.toString().replace(/\0+$/, ''));
    expect(names).toEqual(['iqn.2026-11.io.lunar:t1,t,0x0001', 'iqn.2026-11.io.lunar:t1']);
    for (const x of descs.filter((y) => (y.b1 & 0x0f) === 8)) expect(x.value.length % 4).toBe(0);
  });

  it('rejects a bad LU id at creation', async () => {
    await expect(fixture({ lu: { id: 'xyz' } })).rejects.toThrow(/16 hex/);
  });
});

describe('REPORT LUNS', () => {
  it('select report 0/1/2, allocation length rules', async () => {
    const f = await fixture();
    f.target.addLun({ lun: 300, backstore: f.store, id: 'fedcba9876543210' });
    const all = (await f.run(cdb.reportLuns())).dataIn!;
    expect(all.readUInt32BE(0)).toBe(16);
    expect([...all.subarray(8, 16)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect([...all.subarray(16, 18)]).toEqual([0x41, 0x2c]);
    expect((await f.run(cdb.reportLuns(1024, 2))).dataIn!.readUInt32BE(0)).toBe(16);
    expect((await f.run(cdb.reportLuns(1024, 1))).dataIn!.readUInt32BE(0)).toBe(0);
    expect(senseOf(await f.run(cdb.reportLuns(1024, 3))).field).toMatchObject({ byte: 2 });
    expect(senseOf(await f.run(cdb.reportLuns(15))).field).toMatchObject({ byte: 6 });
    expect((await f.run(cdb.reportLuns(16))).dataIn!.length).toBe(16);
  });
});

describe('REQUEST SENSE', () => {
  it('NO SENSE when nothing pending; fixed or descriptor per DESC; reports and clears a UA', async () => {
    const f = await fixture({ keepUa: true });
    const ua = (await f.run(cdb.requestSense())).dataIn!;
    expect([ua[0], ua[2], ua[12]]).toEqual([0x70, 6, 0x29]);
    const none = (await f.run(cdb.requestSense())).dataIn!;
    expect([none[0], none[2], none[12]]).toEqual([0x70, 0, 0]);
    const desc = (await f.run(cdb.requestSense(252, true))).dataIn!;
    expect([desc[0], desc[1]]).toEqual([0x72, 0]);
    expect((await f.run(cdb.requestSense(8))).dataIn!.length).toBe(8);
  });
});

describe('MODE SENSE / MODE SELECT', () => {
  const pagesOf = (d: Buffer, headerLen: number, bdl: number) => {
    const out: number[] = [];
    for (let p = headerLen + bdl; p < d.length; p += 2 + d[p + 1]!) out.push(d[p]! & 0x3f);
    return out;
  };

  it('MODE SENSE(6): all pages, header, block descriptor, DBD, allocation length', async () => {
    const f = await fixture();
    const d = (await f.run(cdb.modeSense6(0x3f))).dataIn!;
    expect(d[0]).toBe(d.length - 1);
    expect(d[2]).toBe(0x10); // DPOFUA
    expect(d[3]).toBe(8);
    expect(d.readUInt32BE(4)).toBe(1024);
    expect(d.readUIntBE(9, 3)).toBe(512);
    expect(pagesOf(d, 4, 8)).toEqual([0x08, 0x0a, 0x1c]);
    const nodbd = (await f.run(cdb.modeSense6(0x3f, { dbd: true }))).dataIn!;
    expect(nodbd[3]).toBe(0);
    expect(pagesOf(nodbd, 4, 0)).toEqual([0x08, 0x0a, 0x1c]);
    expect((await f.run(cdb.modeSense6(0x3f, { alloc: 4 }))).dataIn!.length).toBe(4);
    expect(pagesOf((await f.run(cdb.modeSense6(0x3f, { sub: 0xff }))).dataIn!, 4, 8)).toEqual([
      0x08, 0x0a, 0x1c,
    ]);
    expect(senseOf(await f.run(cdb.modeSense6(0x3f, { sub: 1 }))).code).toBe(Asc.INVALID_FIELD_IN_CDB);
    expect(senseOf(await f.run(cdb.modeSense6(0x19))).field).toMatchObject({ byte: 2, bit: 5 });
    expect(senseOf(await f.run(cdb.modeSense6(0x08, { pc: 3 })))).toMatchObject({
      key: SenseKey.ILLEGAL_REQUEST,
      code: Asc.SAVING_PARAMETERS_NOT_SUPPORTED,
    });
  });

  it('MODE SENSE(10): LLBAA long descriptor; page controls current/changeable/default', async () => {
    const f = await fixture();
    const d = (await f.run(cdb.modeSense10(0x08, { llbaa: true }))).dataIn!;
    expect(d.readUInt16BE(0)).toBe(d.length - 2);
    expect(d[4]).toBe(1);
    expect(d.readUInt16BE(6)).toBe(16);
    expect(Number(d.readBigUInt64BE(8))).toBe(1024);
    expect(d.readUInt32BE(20)).toBe(512);
    const caching = d.subarray(24);
    expect([caching[0], caching[1], caching[2]]).toEqual([0x08, 0x12, 0x04]);
    const ch = (await f.run(cdb.modeSense10(0x0a, { pc: 1, dbd: true }))).dataIn!.subarray(8);
    expect([ch[2], ch[4]]).toEqual([0x04, 0x08]);
    const def = (await f.run(cdb.modeSense10(0x08, { pc: 2, dbd: true }))).dataIn!.subarray(8);
    expect(def[2]).toBe(0x04);
    const short = (await f.run(cdb.modeSense10(0x08))).dataIn!;
    expect(short.readUInt16BE(6)).toBe(8);
  });

  const select6 = async (f: Awaited<ReturnType<typeof fixture>>, page: number, edit: (p: Buffer) => void) => {
    const ms = (await f.run(cdb.modeSense6(page, { dbd: true }))).dataIn!;
    const p = Buffer.from(ms.subarray(4));
    edit(p);
    const data = Buffer.concat([Buffer.alloc(4), p]);
    return f.run(cdb.modeSelect6(data.length), { data });
  };

  it('D_SENSE is changeable and switches sense to descriptor format', async () => {
    const f = await fixture();
    expect((await select6(f, 0x0a, (p) => (p[2] = p[2]! | 0x04))).status).toBe(ScsiStatus.GOOD);
    const r = await f.run(cdb.rw16(0x88, 0xffffffffffffffffn, 1));
    expect(r.sense![0]).toBe(0x72);
    expect(senseOf(r).code).toBe(Asc.LBA_OUT_OF_RANGE);
    expect((await select6(f, 0x0a, (p) => (p[2] = p[2]! & ~0x04))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.rw16(0x88, 0xffffffffffffffffn, 1))).sense![0]).toBe(0x70);
  });

  it('SWP write-protects the LU', async () => {
    const f = await fixture();
    expect((await select6(f, 0x0a, (p) => (p[4] = p[4]! | 0x08))).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await f.run(cdb.rw10(0x2a, 0, 1), { data: fill(1, 0) }))).toMatchObject({
      key: SenseKey.DATA_PROTECT,
      code: Asc.LOGICAL_UNIT_SOFTWARE_WRITE_PROTECTED,
    });
    expect((await f.run(cdb.rw10(0x28, 0, 1))).status).toBe(ScsiStatus.GOOD);
    expect((await select6(f, 0x0a, (p) => (p[4] = p[4]! & ~0x08))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.rw10(0x2a, 0, 1), { data: fill(1, 0) })).status).toBe(ScsiStatus.GOOD);
  });

  it('MODE SELECT rejects non-changeable changes, unknown pages, PS, SP, bad lengths, wrong block size', async () => {
    const f = await fixture();
    const r = await select6(f, 0x0a, (p) => (p[3] = 0x10));
    expect(senseOf(r)).toMatchObject({
      code: Asc.INVALID_FIELD_IN_PARAMETER_LIST,
      field: { cdb: false, byte: 7, bit: 4 },
    });
    expect(senseOf(await select6(f, 0x08, (p) => (p[0] = 0x88))).field).toMatchObject({ byte: 4, bit: 7 });
    const unknown = Buffer.from([0, 0, 0, 0, 0x19, 2, 0, 0]);
    expect(senseOf(await f.run(cdb.modeSelect6(8), { data: unknown })).code).toBe(
      Asc.INVALID_FIELD_IN_PARAMETER_LIST,
    );
    expect(
      senseOf(await f.run(cdb.modeSelect6(4, true, true), { data: Buffer.alloc(4) })).field,
    ).toMatchObject({
      byte: 1,
      bit: 0,
    });
    expect(senseOf(await f.run(cdb.modeSelect6(12), { data: Buffer.alloc(4) })).code).toBe(
      Asc.PARAMETER_LIST_LENGTH_ERROR,
    );
    expect((await f.run(cdb.modeSelect6(0))).status).toBe(ScsiStatus.GOOD);
    const bd = Buffer.alloc(12);
    bd[3] = 8;
    bd.writeUIntBE(4096, 9, 3);
    expect(senseOf(await f.run(cdb.modeSelect6(12), { data: bd })).code).toBe(
      Asc.INVALID_FIELD_IN_PARAMETER_LIST,
    );
    bd.writeUIntBE(512, 9, 3);
    expect((await f.run(cdb.modeSelect6(12), { data: bd })).status).toBe(ScsiStatus.GOOD);
  });

  it('MODE SELECT(10) sets WCE; mode values are per LU, seen by every nexus', async () => {
    const f = await fixture();
    const ms = (await f.run(cdb.modeSense10(0x08, { dbd: true }))).dataIn!;
    const page = Buffer.from(ms.subarray(8));
    page[2] = 0;
    const data = Buffer.concat([Buffer.alloc(8), page]);
    expect((await f.run(cdb.modeSelect10(data.length), { data })).status).toBe(ScsiStatus.GOOD);
    expect(f.target.logicalUnit(0)!.mode.wce).toBe(false);
    await f.run(cdb.tur(), { nexus: N2 }); // MODE PARAMETERS CHANGED
    const other = (await f.run(cdb.modeSense10(0x08, { dbd: true }), { nexus: N2 })).dataIn!;
    expect(other[8 + 2]).toBe(0);
  });
});
