import { describe, expect, it } from 'vitest';
import { AluaState, aluaCheck } from '../../src/scsi/alua.js';
import { createScsiTarget } from '../../src/scsi/index.js';
import { COMMANDS } from '../../src/scsi/opcodes.js';
import { Asc, CheckCondition, SenseKey } from '../../src/scsi/sense.js';
import { type Nexus, ScsiStatus } from '../../src/scsi/types.js';
import { clearUa, LU_ID, makeCmd, makeNexus, senseOf, TestStore, u32 } from './helpers.js';

const P1 = makeNexus('iqn.2026-11.test:a', '400001370000', 1, 1);
const P2 = makeNexus('iqn.2026-11.test:a', '400001370000', 2, 2);

async function setup(explicit = true) {
  const target = createScsiTarget({
    name: 'iqn.2026-11.io.lunar:t1',
    luns: [{ lun: 0, backstore: new TestStore(), id: LU_ID }],
    ports: [
      { relativeTargetPortId: 1, portalGroupTag: 1 },
      { relativeTargetPortId: 2, portalGroupTag: 2 },
    ],
    alua: { groups: { 1: 'active-optimized', 2: 'standby' }, explicit },
  });
  const run = (cdb: readonly number[], nexus: Nexus, data?: Buffer) =>
    target.execute(makeCmd(cdb, data ? { nexus, data } : { nexus }));
  for (const n of [P1, P2]) {
    target.nexusCreated(n);
    await clearUa((c, o) => run(c, o?.nexus ?? n), n);
  }
  return { target, run };
}

const rtpg = (ext: boolean, alloc = 1024) => [0xa3, (ext ? 0x20 : 0) | 0x0a, 0, 0, 0, 0, ...u32(alloc), 0, 0];
const stpg = (len: number) => [0xa4, 0x0a, 0, 0, 0, 0, ...u32(len), 0, 0];
const tur = [0, 0, 0, 0, 0, 0];
const read10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];

describe('ALUA', () => {
  it('one optimized group at a time: making a group optimized demotes the other optimized one', async () => {
    const { target } = await setup();
    expect(target.aluaState(1)).toBe(AluaState.ACTIVE_OPTIMIZED);
    target.setAluaState(2, AluaState.ACTIVE_OPTIMIZED);
    expect(target.aluaState(2)).toBe(AluaState.ACTIVE_OPTIMIZED);
    expect(target.aluaState(1)).toBe(AluaState.ACTIVE_NON_OPTIMIZED);
    target.setAluaState(1, AluaState.STANDBY); // a non-optimized change demotes nobody
    expect(target.aluaState(2)).toBe(AluaState.ACTIVE_OPTIMIZED);
  });

  it('INQUIRY TPGS, REPORT TARGET PORT GROUPS (both formats), VPD 0x83 port and group', async () => {
    const { run } = await setup();
    const inq = (await run([0x12, 0, 0, 0, 96, 0], P1)).dataIn!;
    expect((inq[5]! >> 4) & 0x03).toBe(3);
    const r = (await run(rtpg(false), P2)).dataIn!;
    expect(r.readUInt32BE(0)).toBe(r.length - 4);
    expect(r.length).toBe(4 + 12 + 12);
    expect(r[4]! & 0x0f).toBe(AluaState.ACTIVE_OPTIMIZED);
    expect(r[4]! & 0x80).toBe(0x80); // PREF
    expect(r.readUInt16BE(6)).toBe(1);
    expect(r[11]).toBe(1); // one port
    expect(r.readUInt16BE(14)).toBe(1);
    expect(r[16]! & 0x0f).toBe(AluaState.STANDBY);
    expect(r.readUInt16BE(18)).toBe(2);
    const x = (await run(rtpg(true), P2)).dataIn!;
    expect(x[4]! >> 4).toBe(1);
    expect(x.readUInt32BE(0)).toBe(x.length - 4);
    const vpd = (await run([0x12, 1, 0x83, 0, 255, 0], P2)).dataIn!;
    const hex = vpd.toString('hex');
    expect(hex).toContain('5194000400000002'); // relative target port 2
    expect(hex).toContain('5195000400000002'); // target port group 2
  });

  it('standby refuses media access with 04/0B, allows INQUIRY/MODE SENSE/PR IN/RTPG', async () => {
    const { run } = await setup();
    for (const c of [tur, read10]) {
      const s = senseOf(await run(c, P2));
      expect([s.key, s.code]).toEqual([
        SenseKey.NOT_READY,
        Asc.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE,
      ]);
    }
    expect((await run(read10, P1)).status).toBe(ScsiStatus.GOOD);
    expect((await run([0x1a, 0, 0x3f, 0, 255, 0], P2)).status).toBe(ScsiStatus.GOOD);
    expect((await run([0x5e, 0, 0, 0, 0, 0, 0, 0, 255, 0], P2)).status).toBe(ScsiStatus.GOOD);
    expect((await run([0x12, 0, 0, 0, 96, 0], P2)).status).toBe(ScsiStatus.GOOD);
  });

  it('state table: every opcode class per state', () => {
    const allowedIn = (state: AluaState, opcode: number, sa: number | undefined) => {
      try {
        aluaCheck(state, opcode, sa);
        return true;
      } catch (e) {
        expect(e).toBeInstanceOf(CheckCondition);
        return false;
      }
    };
    const always = new Set(['12', '03', 'a0', 'a3/0a', 'a4/0a', 'a3/0c', 'a3/0d']);
    const standbyToo = new Set(['15', '55', '1a', '5a', '5e', '5f']);
    for (const d of COMMANDS) {
      const h = (n: number) => n.toString(16).padStart(2, '0');
      const op = h(d.opcode);
      const k = d.sa === undefined ? op : `${op}/${h(d.sa)}`;
      expect(allowedIn(AluaState.ACTIVE_OPTIMIZED, d.opcode, d.sa), d.name).toBe(true);
      expect(allowedIn(AluaState.ACTIVE_NON_OPTIMIZED, d.opcode, d.sa), d.name).toBe(true);
      expect(allowedIn(AluaState.STANDBY, d.opcode, d.sa), d.name).toBe(always.has(k) || standbyToo.has(op));
      expect(allowedIn(AluaState.UNAVAILABLE, d.opcode, d.sa), d.name).toBe(always.has(k));
      expect(allowedIn(AluaState.TRANSITIONING, d.opcode, d.sa), d.name).toBe(always.has(k));
    }
    const code = (st: AluaState) => {
      try {
        aluaCheck(st, 0x28, undefined);
      } catch (e) {
        return (e as CheckCondition).sense.code;
      }
      return 0;
    };
    expect(code(AluaState.UNAVAILABLE)).toBe(
      Asc.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE,
    );
    expect(code(AluaState.TRANSITIONING)).toBe(
      Asc.LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION,
    );
  });

  it('SET TARGET PORT GROUPS (explicit) and admin changes raise 2A/06 on the other nexuses', async () => {
    const { target, run } = await setup();
    const p = Buffer.alloc(12);
    p[4] = AluaState.STANDBY;
    p.writeUInt16BE(1, 6);
    p[8] = AluaState.ACTIVE_OPTIMIZED;
    p.writeUInt16BE(2, 10);
    expect((await run(stpg(12), P2, p)).status).toBe(ScsiStatus.GOOD);
    expect(target.aluaState(1)).toBe(AluaState.STANDBY);
    expect(senseOf(await run(tur, P1)).code).toBe(Asc.ASYMMETRIC_ACCESS_STATE_CHANGED);
    expect((await run(read10, P2)).status).toBe(ScsiStatus.GOOD); // no UA for the issuer
    const r = (await run(rtpg(false), P2)).dataIn!;
    expect(r[9]).toBe(0x01); // status: altered by SET TARGET PORT GROUPS
    // transitioning cannot be set; unknown group
    p[4] = AluaState.TRANSITIONING;
    expect(senseOf(await run(stpg(12), P2, p)).code).toBe(Asc.INVALID_FIELD_IN_PARAMETER_LIST);
    p[4] = 0;
    p.writeUInt16BE(9, 6);
    expect(senseOf(await run(stpg(12), P2, p)).code).toBe(Asc.INVALID_FIELD_IN_PARAMETER_LIST);
    target.setAluaState(2, AluaState.UNAVAILABLE);
    expect(senseOf(await run(tur, P2)).code).toBe(Asc.ASYMMETRIC_ACCESS_STATE_CHANGED);
    expect(senseOf(await run(tur, P2)).code).toBe(
      Asc.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE,
    );
  });

  it('implicit only: SET TARGET PORT GROUPS is not supported, TPGS 01b', async () => {
    const { run } = await setup(false);
    expect(senseOf(await run(stpg(0), P1)).code).toBe(Asc.INVALID_FIELD_IN_CDB);
    const inq = (await run([0x12, 0, 0, 0, 96, 0], P1)).dataIn!;
    expect((inq[5]! >> 4) & 0x03).toBe(1);
  });
});
