import { describe, expect, it } from 'vitest';
import { PrType } from '../../src/scsi/pr.js';
import { Asc, SenseKey } from '../../src/scsi/sense.js';
import { ScsiStatus, TmfFunction } from '../../src/scsi/types.js';
import { cdb, fill, fixture, N1, N2, senseOf, u16, u32 } from './helpers.js';

const prin = (sa: number, alloc = 1024) => [0x5e, sa, 0, 0, 0, 0, 0, ...u16(alloc), 0];
const prout = (sa: number, type = 0, len = 24) => [0x5f, sa, type, 0, 0, ...u32(len), 0];
const params = (key: bigint, saKey: bigint, flags = 0) => {
  const b = Buffer.alloc(24);
  b.writeBigUInt64BE(key, 0);
  b.writeBigUInt64BE(saKey, 8);
  b[20] = flags;
  return b;
};
const K1 = 0x1111n;
const K2 = 0x2222n;

async function setup() {
  const f = await fixture();
  const out = (sa: number, key: bigint, saKey: bigint, type = 0, nexus = N1) =>
    f.run(prout(sa, type), { data: params(key, saKey), nexus });
  const keys = async (nexus = N1) => {
    const d = (await f.run(prin(0), { nexus })).dataIn!;
    const n = d.readUInt32BE(4) / 8;
    return {
      generation: d.readUInt32BE(0),
      keys: Array.from({ length: n }, (_, i) => d.readBigUInt64BE(8 + 8 * i)),
    };
  };
  const reservation = async (nexus = N1) => {
    const d = (await f.run(prin(1), { nexus })).dataIn!;
    return d.readUInt32BE(4) === 0 ? undefined : { key: d.readBigUInt64BE(8), type: d[21]! & 0x0f };
  };
  return { f, out, keys, reservation };
}

describe('persistent reservations', () => {
  it('REGISTER / REGISTER AND IGNORE: keys, generation, conflicts on wrong key, unregister', async () => {
    const { f, out, keys } = await setup();
    expect((await out(0, 5n, K1)).status).toBe(ScsiStatus.RESERVATION_CONFLICT); // unregistered, key ≠ 0
    expect((await out(0, 0n, K1)).status).toBe(ScsiStatus.GOOD);
    expect((await out(6, 0n, K2, 0, N2)).status).toBe(ScsiStatus.GOOD);
    expect(await keys()).toEqual({ generation: 2, keys: [K1, K2] });
    expect((await out(0, 9n, 3n)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect((await out(0, K1, 0x3333n)).status).toBe(ScsiStatus.GOOD);
    expect((await out(6, 0n, 0n, 0, N2)).status).toBe(ScsiStatus.GOOD);
    expect(await keys()).toEqual({ generation: 4, keys: [0x3333n] });
    expect((await f.run(prin(0, 4))).dataIn!.length).toBe(4);
    expect(senseOf(await f.run(prout(0, 0, 20), { data: Buffer.alloc(20) })).code).toBe(
      Asc.PARAMETER_LIST_LENGTH_ERROR,
    );
    // SPEC_I_PT on REGISTER AND IGNORE EXISTING KEY: invalid field in the parameter list
    expect(senseOf(await f.run(prout(6), { data: params(0n, 1n, 0x08) })).code).toBe(
      Asc.INVALID_FIELD_IN_PARAMETER_LIST,
    );
  });

  it('RESERVE / READ RESERVATION / RELEASE; type mismatch; all-registrants key 0', async () => {
    const { out, reservation } = await setup();
    await out(6, 0n, K1);
    await out(6, 0n, K2, 0, N2);
    expect((await out(1, K2, 0n, PrType.EXCLUSIVE_ACCESS)).status).toBe(ScsiStatus.RESERVATION_CONFLICT); // wrong key
    expect((await out(1, K1, 0n, PrType.EXCLUSIVE_ACCESS)).status).toBe(ScsiStatus.GOOD);
    expect((await out(1, K1, 0n, PrType.EXCLUSIVE_ACCESS)).status).toBe(ScsiStatus.GOOD);
    expect((await out(1, K1, 0n, PrType.WRITE_EXCLUSIVE)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect((await out(1, K2, 0n, PrType.EXCLUSIVE_ACCESS, N2)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect(await reservation()).toEqual({ key: K1, type: PrType.EXCLUSIVE_ACCESS });
    expect((await out(2, K2, 0n, PrType.EXCLUSIVE_ACCESS, N2)).status).toBe(ScsiStatus.GOOD); // not holder: no-op
    expect(senseOf(await out(2, K1, 0n, PrType.WRITE_EXCLUSIVE)).code).toBe(
      Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
    );
    expect((await out(2, K1, 0n, PrType.EXCLUSIVE_ACCESS)).status).toBe(ScsiStatus.GOOD);
    expect(await reservation()).toBeUndefined();
    expect((await out(1, K2, 0n, PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, N2)).status).toBe(ScsiStatus.GOOD);
    expect(await reservation()).toEqual({ key: 0n, type: PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS });
    expect(senseOf(await out(1, K1, 0n, 2)).field).toMatchObject({ byte: 2, bit: 3 });
    expect(senseOf(await out(1, K1, 0n, 0x11)).field).toMatchObject({ byte: 2, bit: 7 });
  });

  it.each([
    [PrType.WRITE_EXCLUSIVE, [true, false, true, false]],
    [PrType.EXCLUSIVE_ACCESS, [false, false, false, false]],
    [PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, [true, true, true, false]],
    [PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, [true, true, false, false]],
    [PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, [true, true, true, false]],
    [PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, [true, true, false, false]],
  ] as const)(
    'access for type %i: [reg read, reg write, unreg read, unreg write]',
    async (type, expected) => {
      const { f, out } = await setup();
      await out(6, 0n, K1);
      await out(1, K1, 0n, type);
      const can = async () => [
        (await f.run(cdb.rw10(0x28, 0, 1), { nexus: N2 })).status === ScsiStatus.GOOD,
        (await f.run(cdb.rw10(0x2a, 0, 1), { nexus: N2, data: fill(1, 0) })).status === ScsiStatus.GOOD,
      ];
      const unreg = await can();
      await out(6, 0n, K2, 0, N2);
      const reg = await can();
      expect([...reg, ...unreg]).toEqual(expected);
      expect((await f.run(cdb.rw10(0x2a, 0, 1), { data: fill(1, 0) })).status).toBe(ScsiStatus.GOOD); // holder
      for (const c of [
        cdb.inquiry(false, 0, 36),
        cdb.tur(),
        cdb.readCapacity10(),
        cdb.reportLuns(),
        prin(0),
      ]) {
        await out(6, 0n, 0n, 0, N2);
        expect((await f.run(c, { nexus: N2 })).status).toBe(ScsiStatus.GOOD);
      }
    },
  );

  it('holder unregistering releases; registrants-only types raise RESERVATIONS RELEASED for the others', async () => {
    const { f, out, reservation } = await setup();
    await out(6, 0n, K1);
    await out(6, 0n, K2, 0, N2);
    await out(1, K1, 0n, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY);
    await out(0, K1, 0n);
    expect(await reservation()).toBeUndefined();
    expect(senseOf(await f.run(cdb.tur(), { nexus: N2 }))).toMatchObject({
      key: SenseKey.UNIT_ATTENTION,
      code: Asc.RESERVATIONS_RELEASED,
    });
    expect((await f.run(cdb.tur())).status).toBe(ScsiStatus.GOOD);
    // all registrants: survives until the last registrant leaves
    await out(6, 0n, K1);
    await out(1, K1, 0n, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS);
    await out(0, K1, 0n);
    expect(await reservation()).toEqual({ key: 0n, type: PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS });
    await out(0, K2, 0n, 0, N2);
    expect(await reservation()).toBeUndefined();
  });

  it('PREEMPT removes registrations (UA REGISTRATIONS PREEMPTED), takes over the reservation', async () => {
    const { f, out, keys, reservation } = await setup();
    await out(6, 0n, K1);
    await out(6, 0n, K2, 0, N2);
    const g = (await keys()).generation;
    expect((await out(4, K2, K1, PrType.EXCLUSIVE_ACCESS, N2)).status).toBe(ScsiStatus.GOOD);
    expect(await keys(N2)).toEqual({ generation: g + 1, keys: [K2] });
    expect(senseOf(await f.run(cdb.tur())).code).toBe(Asc.REGISTRATIONS_PREEMPTED);
    expect((await out(4, K2, 0x9999n, PrType.EXCLUSIVE_ACCESS, N2)).status).toBe(
      ScsiStatus.RESERVATION_CONFLICT,
    );
    await out(6, 0n, K1);
    await out(1, K1, 0n, PrType.WRITE_EXCLUSIVE);
    expect((await out(5, K2, K1, PrType.EXCLUSIVE_ACCESS, N2)).status).toBe(ScsiStatus.GOOD);
    expect(await reservation(N2)).toEqual({ key: K2, type: PrType.EXCLUSIVE_ACCESS });
    expect(senseOf(await out(4, K2, 0n, PrType.EXCLUSIVE_ACCESS, N2)).code).toBe(
      Asc.INVALID_FIELD_IN_PARAMETER_LIST,
    );
  });

  it('CLEAR removes everything (UA RESERVATIONS PREEMPTED); READ FULL STATUS; capabilities', async () => {
    const { f, out, keys, reservation } = await setup();
    await out(6, 0n, K1);
    await out(6, 0n, K2, 0, N2);
    await out(1, K1, 0n, PrType.WRITE_EXCLUSIVE);
    const fs = (await f.run(prin(3))).dataIn!;
    expect(fs.readUInt32BE(4)).toBe(fs.length - 8);
    expect(fs.readBigUInt64BE(8)).toBe(K1);
    expect([fs[8 + 12], fs[8 + 13]]).toEqual([1, PrType.WRITE_EXCLUSIVE]);
    const tidLen = fs.readUInt32BE(8 + 20);
    const tid = fs.subarray(8 + 24, 8 + 24 + tidLen);
    expect(tid[0]).toBe(0x05); // format 00b (name only), as LIO reports and sg_persist decodes
    expect(tid.subarray(4).toString().replace(/\0+$/, '')).toBe(N1.initiatorName);
    expect(tidLen % 4).toBe(0);
    const caps = (await f.run(prin(2))).dataIn!;
    expect([caps.readUInt16BE(0), caps[4], caps[5]]).toEqual([8, 0xea, 0x01]);
    expect((await out(3, K2, 0n, 0, N2)).status).toBe(ScsiStatus.GOOD);
    expect((await keys(N2)).keys).toEqual([]);
    expect(await reservation(N2)).toBeUndefined();
    expect(senseOf(await f.run(cdb.tur())).code).toBe(Asc.RESERVATIONS_PREEMPTED);
  });

  it('SPC-2 RESERVE conflicts while registrations exist; PR survives nexus loss and LU reset, not power on', async () => {
    const { f, out, keys } = await setup();
    await out(6, 0n, K1);
    expect((await f.run(cdb.reserve6())).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    f.target.nexusLost(N1);
    f.target.taskManagement(TmfFunction.LOGICAL_UNIT_RESET, N2, 0);
    await f.run(cdb.tur(), { nexus: N2 });
    expect((await keys(N2)).keys).toEqual([K1]);
    f.target.taskManagement(TmfFunction.TARGET_COLD_RESET, N2, 0);
    await f.run(cdb.tur(), { nexus: N2 });
    await f.run(cdb.tur());
    expect((await keys(N2)).keys).toEqual([]);
  });

  it('PRIN service actions beyond READ FULL STATUS are INVALID FIELD IN CDB', async () => {
    const { f } = await setup();
    for (let sa = 0; sa < 0x20; sa++) {
      const r = await f.run(prin(sa));
      if (sa < 4) expect(r.status).toBe(ScsiStatus.GOOD);
      else expect(senseOf(r)).toMatchObject({ code: Asc.INVALID_FIELD_IN_CDB, field: { byte: 1 } });
    }
  });
});
