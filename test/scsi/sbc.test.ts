import { describe, expect, it } from 'vitest';
import { Asc, SenseKey } from '../../src/scsi/sense.js';
import { ScsiStatus } from '../../src/scsi/types.js';
import { cdb, fill, fixture, N2, senseOf, u16, u32, u64 } from './helpers.js';

const BS = 512;
const N = 1024;

interface Form {
  readonly name: string;
  readonly build: (lba: number, n: number, b1?: number) => number[];
  readonly maxLba: number;
}
const op = (o10: number, o12: number, o16: number): Form[] => [
  { name: `0x${o10.toString(16)}`, build: (l, n, b) => cdb.rw10(o10, l, n, b), maxLba: 0xffffffff },
  { name: `0x${o12.toString(16)}`, build: (l, n, b) => cdb.rw12(o12, l, n, b), maxLba: 0xffffffff },
  {
    name: `0x${o16.toString(16)}`,
    build: (l, n, b) => cdb.rw16(o16, l, n, b),
    maxLba: Number.MAX_SAFE_INTEGER,
  },
];
const READS = op(0x28, 0xa8, 0x88);
const WRITES = op(0x2a, 0xaa, 0x8a);
const WRITE_VERIFIES = op(0x2e, 0xae, 0x8e);
const VERIFIES = op(0x2f, 0xaf, 0x8f);

describe('READ / WRITE families', () => {
  it.each([...READS, ...WRITES, ...WRITE_VERIFIES, ...VERIFIES])(
    '$name: ranges, 0 blocks, protect field',
    async (form) => {
      const f = await fixture();
      const isRead = READS.includes(form);
      const data = (n: number) => (isRead ? {} : { data: fill(n, 0) });
      expect((await f.run(form.build(0, 1), data(1))).status).toBe(ScsiStatus.GOOD);
      expect((await f.run(form.build(N - 1, 1), data(1))).status).toBe(ScsiStatus.GOOD);
      expect((await f.run(form.build(0, 0))).status).toBe(ScsiStatus.GOOD);
      expect((await f.run(form.build(N, 0))).status).toBe(ScsiStatus.GOOD);
      for (const [lba, n] of [
        [N, 1],
        [N - 1, 2],
        [N + 1, 0],
        [0x80000000, 1],
        [form.maxLba, 1],
      ] as const) {
        const r = await f.run(form.build(lba, n), data(n));
        expect(senseOf(r), `${lba}+${n}`).toMatchObject({
          key: SenseKey.ILLEGAL_REQUEST,
          code: Asc.LBA_OUT_OF_RANGE,
        });
      }
      for (let p = 1; p < 8; p++) {
        const r = await f.run(form.build(0, 1, p << 5), data(1));
        expect(senseOf(r)).toMatchObject({
          code: Asc.INVALID_FIELD_IN_CDB,
          field: { cdb: true, byte: 1, bit: 7 },
        });
      }
    },
  );

  it('READ(16) at LBA 2^64-1 is LBA OUT OF RANGE', async () => {
    const f = await fixture();
    const r = await f.run(cdb.rw16(0x88, 0xffffffffffffffffn, 1));
    expect(senseOf(r).code).toBe(Asc.LBA_OUT_OF_RANGE);
  });

  it('write then read back, every form; DPO/FUA accepted', async () => {
    const f = await fixture();
    let v = 1;
    for (const [w, r] of [
      [WRITES[0]!, READS[0]!],
      [WRITES[1]!, READS[1]!],
      [WRITES[2]!, READS[2]!],
    ] as const) {
      for (const flags of [0, 0x10, 0x08, 0x18, 0x02]) {
        const data = fill(3, v++);
        expect((await f.run(w.build(10, 3, flags), { data })).status).toBe(ScsiStatus.GOOD);
        const rr = await f.run(r.build(10, 3, flags));
        expect(rr.dataIn!.equals(data)).toBe(true);
      }
    }
  });

  it('READ(6)/WRITE(6): 21-bit LBA, 0 means 256 blocks', async () => {
    const f = await fixture({ blockCount: 300 });
    const data = fill(256, 7);
    const w = await f.run(cdb.write6(0, 0), { data });
    expect(w).toMatchObject({ status: ScsiStatus.GOOD, dataOutWanted: 256 * BS });
    const r = await f.run(cdb.read6(0, 0));
    expect(r.dataIn!.length).toBe(256 * BS);
    expect(senseOf(await f.run(cdb.read6(299, 2))).code).toBe(Asc.LBA_OUT_OF_RANGE);
    expect(senseOf(await f.run(cdb.read6(100, 0))).code).toBe(Asc.LBA_OUT_OF_RANGE);
  });

  it('FUA and write-through: FUA bit, or WCE=0 makes every write FUA', async () => {
    const f = await fixture();
    await f.run(cdb.rw10(0x2a, 0, 1), { data: fill(1, 1) });
    await f.run(cdb.rw10(0x2a, 0, 1, 0x08), { data: fill(1, 1) });
    await f.run(cdb.rw10(0x2a, 0, 1, 0x02), { data: fill(1, 1) }); // FUA_NV ignored
    f.target.logicalUnit(0)!.mode.wce = false;
    await f.run(cdb.rw10(0x2a, 0, 1), { data: fill(1, 1) });
    await f.run(cdb.rw10(0x2e, 0, 1), { data: fill(1, 1) }); // write and verify: always FUA
    expect(f.store.log.filter((l) => l.op === 'write').map((l) => l.fua)).toEqual([
      false,
      true,
      false,
      true,
      true,
    ]);
  });

  it('Data-Out shorter or longer than the CDB asks: writes only whole blocks received, reports wanted', async () => {
    const f = await fixture();
    await f.run(cdb.rw10(0x2a, 0, 2), { data: fill(2, 0x61) });
    const short = await f.run(cdb.rw10(0x2a, 0, 2), { data: fill(1, 0x62) });
    expect(short).toMatchObject({ status: ScsiStatus.GOOD, dataOutWanted: 2 * BS });
    const long = await f.run(cdb.rw10(0x2a, 0, 1), { data: fill(2, 0x63) });
    expect(long).toMatchObject({ status: ScsiStatus.GOOD, dataOutWanted: BS });
    const none = await f.run(cdb.rw10(0x2a, 0, 1), { data: Buffer.alloc(200) });
    expect(none.status).toBe(ScsiStatus.GOOD);
    expect(f.store.data[0]).toBe(0x63);
    expect(f.store.data[BS]).toBe(0x62 - 1); // second block still 0x61
  });

  it('transfer length above the block limits is INVALID FIELD IN CDB', async () => {
    const f = await fixture({ blockCount: 200000 });
    const r = await f.run(cdb.rw16(0x88, 0, 65537));
    expect(senseOf(r)).toMatchObject({ code: Asc.INVALID_FIELD_IN_CDB, field: { byte: 10 } });
  });

  it('backstore errors map to sense, never to a rejection', async () => {
    const f = await fixture();
    for (const [code, key, asc, cmd, data] of [
      ['IO', SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR, cdb.rw10(0x28, 0, 1), undefined],
      ['IO', SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, cdb.rw10(0x2a, 0, 1), fill(1, 1)],
      [
        'NO_SPACE',
        SenseKey.DATA_PROTECT,
        Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
        cdb.rw10(0x2a, 0, 1),
        fill(1, 1),
      ],
      ['CLOSED', SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE, cdb.syncCache10(), undefined],
    ] as const) {
      f.store.failNext = code;
      const r = await f.run(cmd, data ? { data } : {});
      expect(senseOf(r)).toMatchObject({ key, code: asc });
    }
  });
});

describe('VERIFY', () => {
  it.each(VERIFIES)('$name: BYTCHK 0/1/3, MISCOMPARE with the offset', async (form) => {
    const f = await fixture();
    const data = Buffer.alloc(4 * BS);
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    await f.run(cdb.rw10(0x2a, 8, 4), { data });
    expect((await f.run(form.build(8, 4, 0x00))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(form.build(8, 4, 0x02), { data })).status).toBe(ScsiStatus.GOOD);
    const bad = Buffer.from(data);
    bad[1000] = (bad[1000] ?? 0) ^ 0x58;
    const mis = await f.run(form.build(8, 4, 0x02), { data: bad });
    expect(senseOf(mis)).toMatchObject({
      key: SenseKey.MISCOMPARE,
      code: Asc.MISCOMPARE_DURING_VERIFY_OPERATION,
      information: 1000,
    });
    expect((await f.run(form.build(8, 4, 0x00), { data: bad })).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await f.run(form.build(8, 4, 0x04), { data })).field).toMatchObject({ byte: 1, bit: 2 });
    f.store.data.fill(9, 0, 2 * BS);
    expect((await f.run(form.build(0, 2, 0x06), { data: fill(1, 9) })).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await f.run(form.build(0, 3, 0x06), { data: fill(1, 9) })).information).toBe(2 * BS);
    expect((await f.run(form.build(0, 1, 0x12), { data: fill(1, 9) })).status).toBe(ScsiStatus.GOOD); // DPO
  });
});

describe('PRE-FETCH, SYNCHRONIZE CACHE, READ CAPACITY', () => {
  it('PRE-FETCH 10/16: GOOD in range, LBA OUT OF RANGE beyond, flags accepted', async () => {
    const f = await fixture();
    for (const build of [
      (l: number, n: number, b1 = 0) => [0x34, b1, ...u32(l), 0, ...u16(n), 0],
      (l: number, n: number, b1 = 0) => [0x90, b1, ...u64(l), ...u32(n), 0, 0],
    ]) {
      expect((await f.run(build(0, 256))).status).toBe(ScsiStatus.GOOD);
      expect((await f.run(build(N - 1, 1, 0x02))).status).toBe(ScsiStatus.GOOD);
      expect((await f.run(build(N, 0))).status).toBe(ScsiStatus.GOOD);
      expect(senseOf(await f.run(build(N, 1))).code).toBe(Asc.LBA_OUT_OF_RANGE);
    }
  });

  it('SYNCHRONIZE CACHE flushes the backstore', async () => {
    const f = await fixture();
    expect((await f.run(cdb.syncCache10())).status).toBe(ScsiStatus.GOOD);
    expect((await f.run([0x91, 0x02, ...u64(0), ...u32(10), 0, 0])).status).toBe(ScsiStatus.GOOD);
    expect(f.store.log.filter((l) => l.op === 'flush')).toHaveLength(2);
    expect(senseOf(await f.run(cdb.syncCache10(N, 1))).code).toBe(Asc.LBA_OUT_OF_RANGE);
  });

  it('READ CAPACITY(10/16); 10 saturates; PMI rule; LBPME when thin', async () => {
    const f = await fixture();
    const r10 = (await f.run(cdb.readCapacity10())).dataIn!;
    expect([r10.readUInt32BE(0), r10.readUInt32BE(4)]).toEqual([N - 1, BS]);
    expect(senseOf(await f.run([0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0])).code).toBe(Asc.INVALID_FIELD_IN_CDB);
    const r16 = (await f.run(cdb.readCapacity16())).dataIn!;
    expect(r16.length).toBe(32);
    expect(Number(r16.readBigUInt64BE(0))).toBe(N - 1);
    expect(r16[14]).toBe(0);
    expect((await f.run(cdb.readCapacity16(12))).dataIn!.length).toBe(12);
    const t = await fixture({ thin: true });
    expect((await t.run(cdb.readCapacity16())).dataIn![14]).toBe(0xc0);
    const big = await fixture();
    Object.defineProperty(big.store, 'blockCount', { value: 2 ** 33 });
    expect((await big.run(cdb.readCapacity10())).dataIn!.readUInt32BE(0)).toBe(0xffffffff);
  });
});

describe('write protection', () => {
  it('read-only LU: DATA PROTECT on every write-type command, reads fine', async () => {
    const f = await fixture({ thin: true, lu: { readOnly: true } });
    const writes = [
      [cdb.write6(0, 1), fill(1, 0)],
      [cdb.rw10(0x2a, 0, 1), fill(1, 0)],
      [cdb.rw12(0xaa, 0, 1), fill(1, 0)],
      [cdb.rw16(0x8a, 0, 1), fill(1, 0)],
      [cdb.rw10(0x2e, 0, 1), fill(1, 0)],
      [cdb.rw16(0x8b, 0, 1), fill(1, 0)],
      [cdb.writeSame10(0, 1), fill(1, 0)],
      [cdb.writeSame16(0, 1), fill(1, 0)],
      [cdb.unmap(24), Buffer.alloc(24)],
      [cdb.caw(0, 1), fill(2, 0)],
    ] as const;
    for (const [c, data] of writes) {
      expect(senseOf(await f.run(c, { data })), `0x${(c[0] ?? 0).toString(16)}`).toMatchObject({
        key: SenseKey.DATA_PROTECT,
        code: Asc.WRITE_PROTECTED,
      });
    }
    expect((await f.run(cdb.rw10(0x28, 0, 1))).status).toBe(ScsiStatus.GOOD);
    const ms = (await f.run(cdb.modeSense6(0x3f))).dataIn!;
    expect(ms[2]! & 0x80).toBe(0x80);
  });

  it('backstore opened read-only counts too', async () => {
    const f = await fixture({ readOnly: true });
    expect(senseOf(await f.run(cdb.rw10(0x2a, 0, 1), { data: fill(1, 0) })).key).toBe(SenseKey.DATA_PROTECT);
  });
});

describe('START STOP UNIT / PREVENT ALLOW (removable)', () => {
  it('eject → MEDIUM NOT PRESENT until loaded; PREVENT blocks eject from any nexus', async () => {
    const f = await fixture({ lu: { removable: true } });
    const inq = (await f.run(cdb.inquiry(false, 0, 96))).dataIn!;
    expect(inq[1]).toBe(0x80);
    expect((await f.run(cdb.startStop(true, false))).status).toBe(ScsiStatus.GOOD);
    for (const c of [
      cdb.tur(),
      cdb.rw10(0x28, 0, 1),
      cdb.readCapacity10(),
      cdb.syncCache10(),
      cdb.readCapacity16(),
    ]) {
      expect(senseOf(await f.run(c))).toMatchObject({
        key: SenseKey.NOT_READY,
        code: Asc.MEDIUM_NOT_PRESENT,
      });
    }
    const rs = (await f.run(cdb.requestSense())).dataIn!;
    expect([rs[2], rs[12]]).toEqual([SenseKey.NOT_READY, 0x3a]);
    expect((await f.run(cdb.inquiry(false, 0, 36))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.startStop(true, true))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.tur())).status).toBe(ScsiStatus.GOOD);

    expect((await f.run(cdb.preventAllow(1))).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await f.run(cdb.startStop(true, false)))).toMatchObject({
      code: Asc.MEDIUM_REMOVAL_PREVENTED,
    });
    expect(senseOf(await f.run(cdb.startStop(true, false), { nexus: N2 })).code).toBe(
      Asc.MEDIUM_REMOVAL_PREVENTED,
    );
    expect((await f.run(cdb.tur())).status).toBe(ScsiStatus.GOOD);
    f.target.nexusLost(N2); // not the preventer
    expect(senseOf(await f.run(cdb.startStop(true, false))).code).toBe(Asc.MEDIUM_REMOVAL_PREVENTED);
    expect((await f.run(cdb.preventAllow(0))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.startStop(true, false))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.preventAllow(1))).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await f.run(cdb.startStop(true, true))).code).toBe(Asc.MEDIUM_REMOVAL_PREVENTED); // no load either
    expect((await f.run(cdb.preventAllow(0))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.startStop(true, true))).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await f.run(cdb.preventAllow(2))).code).toBe(Asc.INVALID_FIELD_IN_CDB);
  });

  it('power condition ≠ 0 or LOEJ=0 does not eject; non-removable ignores LOEJ', async () => {
    const f = await fixture({ lu: { removable: true } });
    for (let pc = 1; pc < 16; pc++) {
      expect((await f.run(cdb.startStop(true, false, pc))).status).toBe(ScsiStatus.GOOD);
      expect((await f.run(cdb.tur())).status).toBe(ScsiStatus.GOOD);
    }
    expect((await f.run(cdb.startStop(false, false))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.tur())).status).toBe(ScsiStatus.GOOD);
    const g = await fixture();
    expect((await g.run(cdb.startStop(true, false))).status).toBe(ScsiStatus.GOOD);
    expect((await g.run(cdb.tur())).status).toBe(ScsiStatus.GOOD);
  });
});

describe('thin provisioning', () => {
  it('UNMAP: deallocates, zero blocks, limits, range checks, not offered when fully provisioned', async () => {
    const f = await fixture({ thin: true });
    await f.run(cdb.rw10(0x2a, 0, 8), { data: fill(8, 0xff) });
    const list = (...ranges: [number, number][]) => {
      const b = Buffer.alloc(8 + 16 * ranges.length);
      b.writeUInt16BE(6 + 16 * ranges.length, 0);
      b.writeUInt16BE(16 * ranges.length, 2);
      ranges.forEach(([l, n], i) => {
        b.writeBigUInt64BE(BigInt(l), 8 + 16 * i);
        b.writeUInt32BE(n, 16 + 16 * i);
      });
      return b;
    };
    const d = list([0, 2], [4, 1]);
    expect((await f.run(cdb.unmap(d.length), { data: d })).status).toBe(ScsiStatus.GOOD);
    expect([...f.store.mapped].sort((a, b) => a - b)).toEqual([2, 3, 5, 6, 7]);
    expect((await f.run(cdb.rw10(0x28, 0, 1))).dataIn!.every((x) => x === 0)).toBe(true);
    expect((await f.run(cdb.unmap(0))).status).toBe(ScsiStatus.GOOD);
    const z = list([0, 0]);
    expect((await f.run(cdb.unmap(z.length), { data: z })).status).toBe(ScsiStatus.GOOD);
    const oob = list([N, 1]);
    expect(senseOf(await f.run(cdb.unmap(oob.length), { data: oob })).code).toBe(Asc.LBA_OUT_OF_RANGE);
    expect(senseOf(await f.run(cdb.unmap(4), { data: Buffer.alloc(4) })).code).toBe(
      Asc.PARAMETER_LIST_LENGTH_ERROR,
    );
    const g = await fixture();
    expect(senseOf(await g.run(cdb.unmap(d.length), { data: d })).code).toBe(
      Asc.INVALID_COMMAND_OPERATION_CODE,
    );
  });

  it('WRITE SAME 10/16: pattern, UNMAP, NDOB, 0 = to the end, Data-Out must be one block', async () => {
    const f = await fixture({ thin: true });
    expect((await f.run(cdb.writeSame10(10, 5), { data: fill(1, 0xaa) })).status).toBe(ScsiStatus.GOOD);
    expect(f.store.data.subarray(10 * BS, 15 * BS).every((x) => x === 0xaa)).toBe(true);
    expect((await f.run(cdb.writeSame16(10, 2, 0x08), { data: fill(1, 0) })).status).toBe(ScsiStatus.GOOD);
    expect(f.store.mapped.has(10)).toBe(false);
    expect((await f.run(cdb.writeSame16(12, 1, 0x09))).status).toBe(ScsiStatus.GOOD); // UNMAP + NDOB
    expect(f.store.mapped.has(12)).toBe(false);
    expect((await f.run(cdb.writeSame10(20, 2, 0x08), { data: fill(1, 0xff) })).status).toBe(ScsiStatus.GOOD);
    expect(f.store.mapped.has(21)).toBe(false); // UNMAP deallocates whatever the pattern
    expect(f.store.data[21 * BS]).toBe(0);
    expect((await f.run(cdb.writeSame10(N - 4, 0), { data: fill(1, 3) })).status).toBe(ScsiStatus.GOOD);
    expect(f.store.data[N * BS - 1]).toBe(3);
    expect(senseOf(await f.run(cdb.writeSame10(N + 1, 0), { data: fill(1, 0) })).code).toBe(
      Asc.LBA_OUT_OF_RANGE,
    );
    expect(senseOf(await f.run(cdb.writeSame10(N - 1, 2), { data: fill(1, 0) })).code).toBe(
      Asc.LBA_OUT_OF_RANGE,
    );
    expect(senseOf(await f.run(cdb.writeSame10(0, 1, 0x10), { data: fill(1, 0) })).code).toBe(
      Asc.INVALID_FIELD_IN_CDB,
    );
    expect(senseOf(await f.run(cdb.writeSame10(0, 1, 0x18), { data: fill(1, 0) })).code).toBe(
      Asc.INVALID_FIELD_IN_CDB,
    );
    expect(senseOf(await f.run(cdb.writeSame10(0, 1, 0x20), { data: fill(1, 0) })).code).toBe(
      Asc.INVALID_FIELD_IN_CDB,
    );
    expect(senseOf(await f.run(cdb.writeSame10(0, 1, 0x08), { data: Buffer.alloc(BS / 2) })).key).toBe(
      SenseKey.ILLEGAL_REQUEST,
    );
    expect(senseOf(await f.run(cdb.writeSame10(0, 1, 0x08), { data: fill(2, 0) })).key).toBe(
      SenseKey.ILLEGAL_REQUEST,
    );
    const g = await fixture();
    expect(senseOf(await g.run(cdb.writeSame10(0, 1, 0x08), { data: fill(1, 0) })).field).toMatchObject({
      byte: 1,
      bit: 3,
    });
    expect((await g.run(cdb.writeSame10(0, 1), { data: fill(1, 0) })).status).toBe(ScsiStatus.GOOD);
  });

  it('GET LBA STATUS: runs of mapped/deallocated, LBA OUT OF RANGE past the end', async () => {
    const f = await fixture({ thin: true, blockCount: 64 });
    await f.run(cdb.rw10(0x2a, 4, 4), { data: fill(4, 1) });
    const r = (await f.run(cdb.getLbaStatus(0, 1024))).dataIn!;
    const descs = (r.readUInt32BE(0) - 4) / 16;
    const got = Array.from({ length: descs }, (_, i) => [
      Number(r.readBigUInt64BE(8 + 16 * i)),
      r.readUInt32BE(16 + 16 * i),
      r[20 + 16 * i],
    ]);
    expect(got).toEqual([
      [0, 4, 1],
      [4, 4, 0],
      [8, 56, 1],
    ]);
    expect((await f.run(cdb.getLbaStatus(5, 24))).dataIn!.length).toBe(24);
    for (const lba of [64, 65, 2n ** 63n, 2n ** 64n - 1n]) {
      expect(senseOf(await f.run(cdb.getLbaStatus(lba))).code).toBe(Asc.LBA_OUT_OF_RANGE);
    }
    const g = await fixture();
    const full = (await g.run(cdb.getLbaStatus(0))).dataIn!;
    expect(full[20]).toBe(0);
  });
});

describe('COMPARE AND WRITE, ORWRITE, READ DEFECT DATA', () => {
  it('COMPARE AND WRITE: writes on match, MISCOMPARE with offset otherwise, Data-Out size exact', async () => {
    const f = await fixture();
    await f.run(cdb.rw10(0x2a, 0, 2), { data: fill(2, 5) });
    const ok = Buffer.concat([fill(2, 5), fill(2, 6)]);
    expect((await f.run(cdb.caw(0, 2), { data: ok })).status).toBe(ScsiStatus.GOOD);
    expect(f.store.data[0]).toBe(6);
    const bad = Buffer.concat([fill(2, 6), fill(2, 7)]);
    bad[700] = 0;
    expect(senseOf(await f.run(cdb.caw(0, 2), { data: bad }))).toMatchObject({
      key: SenseKey.MISCOMPARE,
      information: 700,
    });
    expect(f.store.data[0]).toBe(6);
    expect(senseOf(await f.run(cdb.caw(0, 1), { data: fill(4, 6) }))).toMatchObject({
      code: Asc.INVALID_FIELD_IN_CDB,
      field: { byte: 13 },
    });
    expect(senseOf(await f.run(cdb.caw(0, 0), { data: fill(512, 6) })).code).toBe(Asc.INVALID_FIELD_IN_CDB);
    expect(senseOf(await f.run(cdb.caw(N - 1, 2), { data: fill(4, 6) })).code).toBe(Asc.LBA_OUT_OF_RANGE);
    expect((await f.run(cdb.caw(0, 0))).status).toBe(ScsiStatus.GOOD);
  });

  it('ORWRITE ORs the data in', async () => {
    const f = await fixture();
    await f.run(cdb.rw10(0x2a, 0, 1), { data: fill(1, 0x0f) });
    expect((await f.run(cdb.rw16(0x8b, 0, 1), { data: fill(1, 0xf0) })).status).toBe(ScsiStatus.GOOD);
    expect(f.store.data[0]).toBe(0xff);
    expect(senseOf(await f.run(cdb.rw16(0x8b, 0, 1, 0x20), { data: fill(1, 0) })).code).toBe(
      Asc.INVALID_FIELD_IN_CDB,
    );
  });

  it('READ DEFECT DATA 10/12: empty lists', async () => {
    const f = await fixture();
    const r10 = await f.run([0x37, 0, 0x18 | 5, 0, 0, 0, 0, ...u16(4), 0]);
    expect([...r10.dataIn!]).toEqual([0, 0x1d, 0, 0]);
    const r12 = await f.run([0xb7, 0x18 | 5, 0, 0, 0, 0, ...u32(8), 0, 0]);
    expect(r12.dataIn!.length).toBe(8);
  });
});
