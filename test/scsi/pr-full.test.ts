import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createScsiTarget } from '../../src/scsi/index.js';
import { iscsiTransportId, PrType } from '../../src/scsi/pr.js';
import { FilePrStore, MemoryPrStore, type PrStore } from '../../src/scsi/pr-store.js';
import { Asc, SenseKey } from '../../src/scsi/sense.js';
import { type Nexus, ScsiStatus, TmfFunction } from '../../src/scsi/types.js';
import { clearUa, LU_ID, makeCmd, makeNexus, senseOf, TestStore, u16, u32 } from './helpers.js';

const prin = (sa: number, alloc = 4096) => [0x5e, sa, 0, 0, 0, 0, 0, ...u16(alloc), 0];
const prout = (sa: number, type = 0, len = 24) => [0x5f, sa, type, 0, 0, ...u32(len), 0];
const params = (key: bigint, saKey: bigint, flags = 0, tids: Buffer[] = []) => {
  const b = Buffer.alloc(24);
  b.writeBigUInt64BE(key, 0);
  b.writeBigUInt64BE(saKey, 8);
  b[20] = flags;
  if (!tids.length && !(flags & 0x08)) return b;
  const t = Buffer.concat(tids);
  const l = Buffer.alloc(4);
  l.writeUInt32BE(t.length);
  return Buffer.concat([b, l, t]);
};
const moveParams = (key: bigint, saKey: bigint, rtpi: number, tid: Buffer, unreg = false, aptpl = false) => {
  const b = Buffer.alloc(24);
  b.writeBigUInt64BE(key, 0);
  b.writeBigUInt64BE(saKey, 8);
  b[17] = (unreg ? 2 : 0) | (aptpl ? 1 : 0);
  b.writeUInt16BE(rtpi, 18);
  b.writeUInt32BE(tid.length, 20);
  return Buffer.concat([b, tid]);
};

const TARGET = 'iqn.2026-11.io.lunar:t1';
// A: one initiator on two target ports; B and C on port 1.
const A1 = makeNexus('iqn.2026-11.test:a', '400001370000', 1, 1);
const A2 = makeNexus('iqn.2026-11.test:a', '400001370000', 2, 2);
const B1 = makeNexus('iqn.2026-11.test:b', '400001370001', 1, 1);
const C1 = makeNexus('iqn.2026-11.test:c', '400001370002', 1, 1);
const KA = 0xaaaan;
const KB = 0xbbbbn;
const KC = 0xccccn;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function setup(store: PrStore = new MemoryPrStore(), backing = new TestStore()) {
  const target = createScsiTarget({
    name: TARGET,
    luns: [{ lun: 0, backstore: backing, id: LU_ID }],
    prStore: store,
    ports: [
      { relativeTargetPortId: 1, portalGroupTag: 1 },
      { relativeTargetPortId: 2, portalGroupTag: 2 },
    ],
  });
  const run = (cdb: readonly number[] | Buffer, nexus: Nexus, data?: Buffer) =>
    target.execute(makeCmd(cdb, data ? { nexus, data } : { nexus }));
  for (const n of [A1, A2, B1, C1]) {
    target.nexusCreated(n);
    await clearUa((c, o) => run(c, o?.nexus ?? n), n);
  }
  const out = (
    sa: number,
    nexus: Nexus,
    key: bigint,
    saKey: bigint,
    type = 0,
    flags = 0,
    tids: Buffer[] = [],
  ) => {
    const p = params(key, saKey, flags, tids);
    return run(prout(sa, type, p.length), nexus, p);
  };
  const keys = async (nexus = A1) => {
    const d = (await run(prin(0), nexus)).dataIn!;
    const n = d.readUInt32BE(4) / 8;
    return Array.from({ length: n }, (_, i) => d.readBigUInt64BE(8 + 8 * i));
  };
  const reservation = async (nexus = A1) => {
    const d = (await run(prin(1), nexus)).dataIn!;
    return d.readUInt32BE(4) === 0 ? undefined : { key: d.readBigUInt64BE(8), type: d[21]! & 0x0f };
  };
  const tur = (n: Nexus) => run([0, 0, 0, 0, 0, 0], n);
  const write = (n: Nexus) => run([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], n, Buffer.alloc(512, 7));
  const read = (n: Nexus) => run([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], n);
  return { target, run, out, keys, reservation, tur, write, read, store };
}

describe('persistent reservations: APTPL and the PR store', () => {
  it('APTPL state survives a restart (memory store); without APTPL nothing is saved', async () => {
    const store = new MemoryPrStore();
    const backing = new TestStore();
    const s1 = await setup(store, backing);
    expect((await s1.out(0, A1, 0n, KA)).status).toBe(ScsiStatus.GOOD);
    expect(store.saved.size).toBe(0);
    expect((await s1.out(0, B1, 0n, KB, 0, 0x01)).status).toBe(ScsiStatus.GOOD); // APTPL
    expect((await s1.out(1, B1, KB, 0n, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)).status).toBe(
      ScsiStatus.GOOD,
    );
    const caps = (await s1.run(prin(2), A1)).dataIn!;
    expect(caps[2]! & 0x1d).toBe(0x1d); // CRH SIP_C ATP_C PTPL_C
    expect(caps[3]! & 0x01).toBe(1); // PTPL_A
    // "restart": a new target on the same store
    const s2 = await setup(store, backing);
    expect(await s2.keys()).toEqual([KA, KB]);
    expect(await s2.reservation()).toEqual({ key: KB, type: PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY });
    expect((await s2.write(C1)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect((await s2.write(A1)).status).toBe(ScsiStatus.GOOD);
    // cold reset keeps APTPL state
    s2.target.taskManagement(TmfFunction.TARGET_COLD_RESET, A1, 0);
    expect(await s2.keys(B1).catch(() => [])).toEqual([]); // UA pending first
    await clearUa((c, o) => s2.run(c, o?.nexus ?? B1), B1);
    expect(await s2.keys(B1)).toEqual([KA, KB]);
    // APTPL turned off: the store forgets it
    expect((await s2.out(0, B1, KB, KB, 0, 0)).status).toBe(ScsiStatus.GOOD);
    expect(store.saved.size).toBe(0);
    const s3 = await setup(store, backing);
    expect(await s3.keys()).toEqual([]);
  });

  it('file store: atomic JSON in the directory, reloaded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lunar-pr-'));
    dirs.push(dir);
    const store = new FilePrStore(join(dir, 'pr'));
    const s1 = await setup(store);
    expect((await s1.out(0, A1, 0n, KA, 0, 0x01)).status).toBe(ScsiStatus.GOOD);
    expect((await s1.out(1, A1, KA, 0n, PrType.EXCLUSIVE_ACCESS)).status).toBe(ScsiStatus.GOOD);
    const json = JSON.parse(readFileSync(join(dir, 'pr', `${LU_ID}.json`), 'utf8'));
    expect(json.aptpl).toBe(true);
    expect(json.registrations[0].initiatorName).toBe('iqn.2026-11.test:a');
    const s2 = await setup(new FilePrStore(join(dir, 'pr')));
    expect(await s2.reservation()).toEqual({ key: KA, type: PrType.EXCLUSIVE_ACCESS });
    expect((await s2.read(B1)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
  });
});

describe('persistent reservations: target ports and initiator ports', () => {
  it('ALL_TG_PT registers the initiator port on every target port; READ FULL STATUS shows it', async () => {
    const s = await setup();
    expect((await s.out(0, A1, 0n, KA, 0, 0x04)).status).toBe(ScsiStatus.GOOD);
    expect((await s.out(1, A2, KA, 0n, PrType.WRITE_EXCLUSIVE)).status).toBe(ScsiStatus.GOOD);
    expect((await s.write(A1)).status).toBe(ScsiStatus.GOOD);
    expect((await s.write(B1)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    // already registered through port 2 as well: a second REGISTER with key 0 conflicts
    expect((await s.out(0, A2, 0n, 0x99n)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    const d = (await s.run(prin(3), B1)).dataIn!;
    expect(d.readUInt32BE(4)).toBe(d.length - 8);
    expect(d.readBigUInt64BE(8)).toBe(KA);
    expect(d[8 + 12]! & 0x03).toBe(0x03); // ALL_TG_PT, R_HOLDER
    expect(d[8 + 13]).toBe(PrType.WRITE_EXCLUSIVE);
    const tidLen = d.readUInt32BE(8 + 20);
    const tid = d.subarray(8 + 24, 8 + 24 + tidLen);
    expect(tid[0]).toBe(0x05); // format 00b (name only), as LIO reports and sg_persist decodes
    expect(tid.subarray(4).toString('utf8')).toMatch(/^iqn\.2026-11\.test:a\0/);
  });

  it('SPEC_I_PT registers the named initiator ports (formats 00b and 01b); errors', async () => {
    const s = await setup();
    const tidB = iscsiTransportId(B1.initiatorName, B1.isid);
    const tidC = iscsiTransportId(C1.initiatorName, undefined);
    expect((await s.out(0, A1, 0n, KA, 0, 0x08, [tidB, tidC])).status).toBe(ScsiStatus.GOOD);
    expect(await s.keys()).toEqual([KA, KA, KA]);
    // B and C are registrants now (they act with key KA)
    expect((await s.out(1, C1, KA, 0n, PrType.EXCLUSIVE_ACCESS)).status).toBe(ScsiStatus.GOOD);
    expect((await s.read(C1)).status).toBe(ScsiStatus.GOOD);
    expect((await s.read(B1)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    // naming an already registered port: invalid field in the parameter list
    const s2 = await setup();
    await s2.out(0, B1, 0n, KB);
    expect(senseOf(await s2.out(0, A1, 0n, KA, 0, 0x08, [tidB])).code).toBe(
      Asc.INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // SPEC_I_PT from a registered nexus
    expect(senseOf(await s2.out(0, B1, KB, KB, 0, 0x08, [tidC])).code).toBe(
      Asc.INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // not an iSCSI TransportID
    const bad = Buffer.from(tidC);
    bad[0] = 0x06;
    expect(senseOf(await s2.out(0, A1, 0n, KA, 0, 0x08, [bad])).code).toBe(
      Asc.INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // TransportID length beyond the list
    const p = params(0n, KA, 0x08, [tidC]);
    p.writeUInt32BE(400, 24);
    expect(senseOf(await s2.run(prout(0, 0, p.length), A1, p)).code).toBe(Asc.PARAMETER_LIST_LENGTH_ERROR);
    expect(await s2.keys()).toEqual([KB]);
  });

  it('REGISTER AND MOVE hands the reservation to another I_T nexus (UNREG, errors)', async () => {
    const s = await setup();
    await s.out(0, A1, 0n, KA);
    await s.out(1, A1, KA, 0n, PrType.WRITE_EXCLUSIVE);
    const tidB = iscsiTransportId(B1.initiatorName, B1.isid);
    const mv = (p: Buffer, n = A1, type: number = PrType.WRITE_EXCLUSIVE) =>
      s.run(prout(7, type, p.length), n, p);
    // not the holder
    await s.out(0, C1, 0n, KC);
    expect((await mv(moveParams(KC, KB, 1, tidB), C1)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    // SA key 0, unknown port, to itself
    expect(senseOf(await mv(moveParams(KA, 0n, 1, tidB))).code).toBe(Asc.INVALID_FIELD_IN_PARAMETER_LIST);
    expect(senseOf(await mv(moveParams(KA, KB, 9, tidB))).code).toBe(Asc.INVALID_FIELD_IN_PARAMETER_LIST);
    const tidA = iscsiTransportId(A1.initiatorName, A1.isid);
    expect(senseOf(await mv(moveParams(KA, KB, 1, tidA))).code).toBe(Asc.INVALID_FIELD_IN_PARAMETER_LIST);
    expect((await mv(moveParams(KA, KB, 1, tidB, true))).status).toBe(ScsiStatus.GOOD);
    expect(await s.reservation()).toEqual({ key: KB, type: PrType.WRITE_EXCLUSIVE });
    expect(await s.keys()).toEqual([KC, KB]);
    expect((await s.write(B1)).status).toBe(ScsiStatus.GOOD);
    expect((await s.write(A1)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    // all-registrants reservations cannot be moved
    await s.out(2, B1, KB, 0n, PrType.WRITE_EXCLUSIVE);
    await s.out(1, B1, KB, 0n, PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS);
    const tidC = iscsiTransportId(C1.initiatorName, C1.isid);
    expect((await mv(moveParams(KB, KC, 1, tidC), B1, PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS)).status).toBe(
      ScsiStatus.RESERVATION_CONFLICT,
    );
  });
});

describe('persistent reservations: preempt, abort, unit attentions', () => {
  it('PREEMPT AND ABORT: preempted nexuses get 2A/05 and their tasks are aborted through the hook', async () => {
    const s = await setup();
    const aborted: [readonly string[], number][] = [];
    s.target.onAbortTasks((keys, lun) => aborted.push([keys, lun]));
    await s.out(0, A1, 0n, KA);
    await s.out(0, B1, 0n, KB);
    await s.out(1, A1, KA, 0n, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY);
    expect((await s.out(5, B1, KB, KA, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)).status).toBe(
      ScsiStatus.GOOD,
    );
    expect(aborted).toEqual([[[A1.key], 0]]);
    const ua = senseOf(await s.tur(A1));
    expect([ua.key, ua.code]).toEqual([SenseKey.UNIT_ATTENTION, Asc.REGISTRATIONS_PREEMPTED]);
    expect(await s.reservation()).toEqual({ key: KB, type: PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY });
    expect((await s.write(A1)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect((await s.read(A1)).status).toBe(ScsiStatus.GOOD);
    expect((await s.write(B1)).status).toBe(ScsiStatus.GOOD);
  });

  it('RELEASE of a registrants-only reservation: 2A/04 to the other registrants; CLEAR: 2A/03', async () => {
    const s = await setup();
    await s.out(0, A1, 0n, KA);
    await s.out(0, B1, 0n, KB);
    await s.out(0, C1, 0n, KC);
    await s.out(1, A1, KA, 0n, PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY);
    expect((await s.out(2, A1, KA, 0n, PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY)).status).toBe(
      ScsiStatus.GOOD,
    );
    expect(senseOf(await s.tur(B1)).code).toBe(Asc.RESERVATIONS_RELEASED);
    expect(senseOf(await s.tur(C1)).code).toBe(Asc.RESERVATIONS_RELEASED);
    expect((await s.tur(A1)).status).toBe(ScsiStatus.GOOD);
    expect((await s.out(3, C1, KC, 0n)).status).toBe(ScsiStatus.GOOD);
    expect(senseOf(await s.tur(A1)).code).toBe(Asc.RESERVATIONS_PREEMPTED);
    expect(senseOf(await s.tur(B1)).code).toBe(Asc.RESERVATIONS_PREEMPTED);
    expect((await s.tur(C1)).status).toBe(ScsiStatus.GOOD);
  });

  it('SPC-2 RESERVE conflicts with registrations; RELEASE(6) too', async () => {
    const s = await setup();
    await s.out(0, A1, 0n, KA);
    expect((await s.run([0x16, 0, 0, 0, 0, 0], B1)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect((await s.run([0x17, 0, 0, 0, 0, 0], A1)).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
  });
});
