import { describe, expect, it } from 'vitest';
import { COMMANDS, SERVICE_ACTION_OPCODES } from '../../src/scsi/opcodes.js';
import { Asc, SenseKey } from '../../src/scsi/sense.js';
import { checkUsage } from '../../src/scsi/target.js';
import { ScsiStatus, TmfFunction, TmfResponse } from '../../src/scsi/types.js';
import { cdb, clearUa, fixture, makeCmd, makeNexus, N1, N2, senseOf } from './helpers.js';

describe('dispatch table', () => {
  it('has unique opcode/service-action entries with consistent usage data', () => {
    const seen = new Set<string>();
    for (const d of COMMANDS) {
      const k = `${d.opcode}/${d.sa ?? '-'}`;
      expect(seen.has(k), k).toBe(false);
      seen.add(k);
      expect(d.usage.length, d.name).toBe(d.cdbLength);
      expect(d.usage[0], d.name).toBe(d.opcode);
      if (d.sa !== undefined) expect(d.usage[1]! & 0x1f, d.name).toBe(d.sa);
      expect(d.usage[d.cdbLength - 1], `${d.name} control byte`).toBe(0);
      const group = d.opcode >> 5;
      const expectedLength = [6, 10, 10, 0, 16, 12, 0, 0][group];
      expect(d.cdbLength, d.name).toBe(expectedLength);
    }
  });

  it('a CDB with exactly the usage bits set passes the reserved-bit check', () => {
    for (const d of COMMANDS) {
      const c = Buffer.alloc(16);
      Buffer.from(d.usage as number[]).copy(c);
      expect(() => checkUsage(d, c), d.name).not.toThrow();
    }
  });

  it('every opcode 0x00-0xFF is in the table or yields INVALID COMMAND OPERATION CODE', async () => {
    const f = await fixture({ thin: true });
    const known = new Set(COMMANDS.map((d) => d.opcode));
    for (let op = 0; op < 256; op++) {
      const r = await f.run([op]);
      if (known.has(op)) {
        if (r.status === ScsiStatus.CHECK_CONDITION) {
          expect(senseOf(r).code, `opcode 0x${op.toString(16)}`).not.toBe(Asc.INVALID_COMMAND_OPERATION_CODE);
        }
      } else {
        expect(r.status, `opcode 0x${op.toString(16)}`).toBe(ScsiStatus.CHECK_CONDITION);
        expect(senseOf(r)).toMatchObject({
          key: SenseKey.ILLEGAL_REQUEST,
          code: Asc.INVALID_COMMAND_OPERATION_CODE,
        });
      }
    }
  });

  it('an unknown service action is INVALID FIELD IN CDB pointing at byte 1', async () => {
    const f = await fixture();
    for (const op of SERVICE_ACTION_OPCODES) {
      const r = await f.run([op, 0x1e]);
      expect(senseOf(r)).toMatchObject({
        key: SenseKey.ILLEGAL_REQUEST,
        code: Asc.INVALID_FIELD_IN_CDB,
        field: { cdb: true, byte: 1, bit: 4 },
      });
    }
  });

  it('a reserved bit set is INVALID FIELD IN CDB with the byte and bit', async () => {
    const f = await fixture();
    const r = await f.run([0x28, 0x01, 0, 0, 0, 0, 0, 0, 1, 0]); // READ(10) obsolete RELADR bit
    expect(senseOf(r)).toMatchObject({
      code: Asc.INVALID_FIELD_IN_CDB,
      field: { cdb: true, byte: 1, bit: 0 },
    });
    const naca = await f.run([0x00, 0, 0, 0, 0, 0x04]); // TUR with NACA
    expect(senseOf(naca)).toMatchObject({ code: Asc.INVALID_FIELD_IN_CDB, field: { byte: 5, bit: 2 } });
  });

  it('never rejects execute(), even for garbage', async () => {
    const f = await fixture({ thin: true });
    for (let i = 0; i < 2000; i++) {
      const c = Buffer.alloc(16);
      for (let j = 0; j < 16; j++) c[j] = (Math.random() * 256) | 0;
      const r = await f.run(c, { data: Buffer.alloc((Math.random() * 2048) | 0) });
      expect(typeof r.status).toBe('number');
    }
  });
});

describe('REPORT SUPPORTED OPERATION CODES', () => {
  it('lists every supported descriptor, with CTDP and timeouts when RCTD', async () => {
    for (const thin of [false, true]) {
      const f = await fixture({ thin });
      const r = await f.run(cdb.rsoc(0));
      const d = r.dataIn!;
      const len = d.readUInt32BE(0);
      expect(d.length).toBe(4 + len);
      const listed: string[] = [];
      for (let p = 4; p < d.length; p += 8) {
        expect(d[p + 5]! & 0x02).toBe(0);
        listed.push(`${d[p]}/${(d[p + 5]! & 1) === 1 ? d.readUInt16BE(p + 2) : '-'}`);
      }
      const lu = f.target.logicalUnit(0)!;
      const expected = COMMANDS.filter((c) => !c.supportedBy || c.supportedBy(lu)).map(
        (c) => `${c.opcode}/${c.sa ?? '-'}`,
      );
      expect(listed.sort()).toEqual(expected.sort());
      const rt = (await f.run(cdb.rsoc(0, 0, 0, true))).dataIn!;
      for (let p = 4; p < rt.length; p += 20) {
        expect(rt[p + 5]! & 0x02).toBe(0x02);
        expect(rt.readUInt16BE(p + 8)).toBe(0x0a);
      }
    }
  });

  it('one command: usage data matches the table; SA rules', async () => {
    const f = await fixture({ thin: true });
    const lu = f.target.logicalUnit(0)!;
    for (const d of COMMANDS) {
      if (d.supportedBy && !d.supportedBy(lu)) continue;
      const ok = await f.run(cdb.rsoc(d.sa === undefined ? 1 : 2, d.opcode, d.sa ?? 0));
      expect(ok.status, d.name).toBe(ScsiStatus.GOOD);
      const b = ok.dataIn!;
      expect(b[1]! & 0x07).toBe(3);
      expect(b.readUInt16BE(2)).toBe(d.cdbLength);
      expect([...b.subarray(4, 4 + d.cdbLength)]).toEqual(d.usage);
      const wrong = await f.run(cdb.rsoc(d.sa === undefined ? 2 : 1, d.opcode, d.sa ?? 0));
      expect(senseOf(wrong).code, d.name).toBe(Asc.INVALID_FIELD_IN_CDB);
    }
    const none = await f.run(cdb.rsoc(1, 0xff));
    expect(none.dataIn![1]! & 0x07).toBe(1);
    const rctd = await f.run(cdb.rsoc(1, 0x28, 0, true));
    expect(rctd.dataIn!.length).toBe(4 + 10 + 12);
    expect(rctd.dataIn![1]! & 0x80).toBe(0x80);
  });

  it('REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS', async () => {
    const f = await fixture();
    const r = await f.run(cdb.rstmf());
    expect(r.dataIn!.length).toBe(4);
    expect(r.dataIn![0]).toBe(0xda);
    expect((await f.run(cdb.rstmf(true))).dataIn!.length).toBe(16);
    expect(senseOf(await f.run(cdb.rstmf(false, 2))).code).toBe(Asc.INVALID_FIELD_IN_CDB);
  });
});

describe('LUN not in the map', () => {
  it('INQUIRY answers with peripheral qualifier 3, REPORT LUNS and REQUEST SENSE work, others fail', async () => {
    const f = await fixture();
    const inq = await f.run(cdb.inquiry(false, 0, 96), { lun: 5 });
    expect(inq.status).toBe(ScsiStatus.GOOD);
    expect(inq.dataIn![0]).toBe(0x7f);
    const rl = await f.run(cdb.reportLuns(), { lun: 5 });
    expect(rl.dataIn!.readUInt32BE(0)).toBe(8);
    const rs = await f.run(cdb.requestSense(), { lun: 5 });
    expect(rs.status).toBe(ScsiStatus.GOOD);
    expect(rs.dataIn![2]).toBe(SenseKey.ILLEGAL_REQUEST);
    expect(rs.dataIn![12]).toBe(0x25);
    const tur = await f.run(cdb.tur(), { lun: 5 });
    expect(senseOf(tur)).toMatchObject({
      key: SenseKey.ILLEGAL_REQUEST,
      code: Asc.LOGICAL_UNIT_NOT_SUPPORTED,
    });
    const bad = await f.run([0xff], { lun: 5 });
    expect(senseOf(bad).code).toBe(Asc.LOGICAL_UNIT_NOT_SUPPORTED);
  });
});

describe('unit attentions', () => {
  it('POWER ON at the first command of a new nexus; INQUIRY, REPORT LUNS, REQUEST SENSE not blocked', async () => {
    const f = await fixture({ keepUa: true });
    expect((await f.run(cdb.inquiry(false, 0, 96))).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.reportLuns())).status).toBe(ScsiStatus.GOOD);
    const tur = await f.run(cdb.tur());
    expect(senseOf(tur)).toMatchObject({
      key: SenseKey.UNIT_ATTENTION,
      code: Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED,
    });
    expect((await f.run(cdb.tur())).status).toBe(ScsiStatus.GOOD);
    // N2 still has its own
    const rs = await f.run(cdb.requestSense(), { nexus: N2 });
    expect(rs.dataIn![2]).toBe(SenseKey.UNIT_ATTENTION);
    expect(rs.dataIn![12]).toBe(0x29);
    expect((await f.run(cdb.tur(), { nexus: N2 })).status).toBe(ScsiStatus.GOOD);
  });

  it('an unseen nexus gets POWER ON without nexusCreated', async () => {
    const f = await fixture();
    const n3 = makeNexus('iqn.2026-11.test:init3');
    expect(senseOf(await f.run(cdb.tur(), { nexus: n3 })).key).toBe(SenseKey.UNIT_ATTENTION);
  });

  it('LUN reset: BUS DEVICE RESET for every nexus, reservation released', async () => {
    const f = await fixture();
    expect((await f.run(cdb.reserve6())).status).toBe(ScsiStatus.GOOD);
    expect(f.target.taskManagement(TmfFunction.LOGICAL_UNIT_RESET, N1, 0)).toBe(TmfResponse.COMPLETE);
    expect(f.target.taskManagement(TmfFunction.LOGICAL_UNIT_RESET, N1, 9)).toBe(
      TmfResponse.LUN_DOES_NOT_EXIST,
    );
    for (const n of [N1, N2]) {
      expect(senseOf(await f.run(cdb.tur(), { nexus: n }))).toMatchObject({
        key: SenseKey.UNIT_ATTENTION,
        code: Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED,
      });
    }
    expect((await f.run(cdb.tur(), { nexus: N2 })).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.reserve6(), { nexus: N2 })).status).toBe(ScsiStatus.GOOD);
  });

  it('MODE SELECT change raises MODE PARAMETERS CHANGED for the other nexus only', async () => {
    const f = await fixture();
    const ms = await f.run(cdb.modeSense6(0x08, { dbd: true }));
    const page = Buffer.from(ms.dataIn!.subarray(4));
    page[2] = page[2]! & ~0x04; // WCE off
    const data = Buffer.concat([Buffer.alloc(4), page]);
    expect((await f.run(cdb.modeSelect6(data.length), { data })).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.tur())).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await f.run(cdb.tur(), { nexus: N2 }))).toMatchObject({
      key: SenseKey.UNIT_ATTENTION,
      code: Asc.MODE_PARAMETERS_CHANGED,
    });
    // same values again: no change, no UA
    expect((await f.run(cdb.modeSelect6(data.length), { data })).status).toBe(ScsiStatus.GOOD);
    expect((await f.run(cdb.tur(), { nexus: N2 })).status).toBe(ScsiStatus.GOOD);
  });

  it('CAPACITY DATA HAS CHANGED after lunResized; REPORTED LUNS DATA HAS CHANGED after addLun', async () => {
    const f = await fixture();
    await f.store.resize(2048);
    f.target.lunResized(0);
    expect(senseOf(await f.run(cdb.readCapacity10())).code).toBe(Asc.CAPACITY_DATA_HAS_CHANGED);
    const rc = await f.run(cdb.readCapacity10());
    expect(rc.dataIn!.readUInt32BE(0)).toBe(2047);
    await clearUa(f.run, N2);
    f.target.addLun({ lun: 3, backstore: f.store, id: 'fedcba9876543210' });
    expect(f.target.luns()).toEqual([0, 3]);
    expect(senseOf(await f.run(cdb.tur())).code).toBe(Asc.REPORTED_LUNS_DATA_HAS_CHANGED);
    expect(senseOf(await f.run(cdb.tur(), { lun: 3 })).code).toBe(
      Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED,
    );
    expect(f.target.removeLun(3)?.id).toBe('fedcba9876543210');
    expect(senseOf(await f.run(cdb.tur(), { nexus: N2 })).code).toBe(Asc.REPORTED_LUNS_DATA_HAS_CHANGED);
  });

  it('UA sense follows D_SENSE', async () => {
    const f = await fixture();
    f.target.logicalUnit(0)!.mode.dSense = true;
    f.target.taskManagement(TmfFunction.LOGICAL_UNIT_RESET, N1, 0);
    const r = await f.run(cdb.tur());
    expect(r.sense![0]).toBe(0x72);
  });
});

describe('RESERVE / RELEASE', () => {
  it('conflicts across nexuses, exempt commands pass, release by holder only', async () => {
    const f = await fixture();
    for (const [res, rel] of [
      [cdb.reserve6(), cdb.release6()],
      [cdb.reserve10(), cdb.release10()],
    ] as const) {
      expect((await f.run(res)).status).toBe(ScsiStatus.GOOD);
      expect((await f.run(res)).status).toBe(ScsiStatus.GOOD); // re-reserve by holder
      expect((await f.run(res, { nexus: N2 })).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
      expect((await f.run(rel, { nexus: N2 })).status).toBe(ScsiStatus.GOOD); // no-op
      expect((await f.run(cdb.modeSense6(0x3f))).status).toBe(ScsiStatus.GOOD);
      expect((await f.run(cdb.modeSense6(0x3f), { nexus: N2 })).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
      expect((await f.run(cdb.rw10(0x28, 0, 1), { nexus: N2 })).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
      for (const ok of [
        cdb.inquiry(false, 0, 36),
        cdb.reportLuns(),
        cdb.requestSense(),
        cdb.preventAllow(0),
      ]) {
        expect((await f.run(ok, { nexus: N2 })).status).toBe(ScsiStatus.GOOD);
      }
      expect((await f.run(cdb.preventAllow(1), { nexus: N2 })).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
      expect((await f.run(rel)).status).toBe(ScsiStatus.GOOD);
      expect((await f.run(res, { nexus: N2 })).status).toBe(ScsiStatus.GOOD);
      expect((await f.run(rel, { nexus: N2 })).status).toBe(ScsiStatus.GOOD);
    }
  });

  it('released on nexus loss and target reset', async () => {
    const f = await fixture();
    await f.run(cdb.reserve6());
    f.target.nexusLost(N1);
    expect((await f.run(cdb.reserve6(), { nexus: N2 })).status).toBe(ScsiStatus.GOOD);
    f.target.taskManagement(TmfFunction.TARGET_WARM_RESET, N2, 0);
    await clearUa(f.run, N1);
    expect((await f.run(cdb.reserve6())).status).toBe(ScsiStatus.GOOD);
  });
});

describe('robustness', () => {
  it('short CDB buffers are padded, not crashed on', async () => {
    const f = await fixture();
    const r = await f.target.execute({ ...makeCmd([]), cdb: Buffer.from([0x28]) });
    expect(r.status).toBe(ScsiStatus.GOOD);
  });
});
