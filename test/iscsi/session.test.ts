import { describe, expect, it } from 'vitest';
import type { InitiatorPdu, ScsiCommandPdu, TargetPdu } from '../../src/iscsi/pdu/types.js';
import { planDataIn, planR2T, residualOf } from '../../src/iscsi/session/datain.js';
import { RFC_DEFAULTS, type SessionParams } from '../../src/iscsi/session/params.js';
import { snGt, snInWindow, snLt } from '../../src/iscsi/session/serial.js';
import { IscsiSession } from '../../src/iscsi/session/session.js';
import type { Nexus } from '../../src/scsi/types.js';
import { FakeScsi } from './fake-scsi.js';
import { read10, write10 } from './initiator.js';

const nexus: Nexus = {
  initiatorName: 'iqn.i',
  isid: '400000000001',
  targetName: 'iqn.t',
  portalGroupTag: 1,
  relativeTargetPortId: 1,
  key: 'k',
};

function setup(params: Partial<SessionParams> = {}, depth = 8) {
  const out: TargetPdu[] = [];
  const closed: string[] = [];
  const scsi = new FakeScsi();
  const s = new IscsiSession({
    tsih: 1,
    initiatorName: 'iqn.i',
    isid: '400000000001',
    discovery: false,
    targetName: 'iqn.t',
    scsi,
    nexus,
    params: { ...RFC_DEFAULTS, ...params },
    cmdSN: 10,
    queueDepth: depth,
    portalGroupTag: 1,
    hooks: {
      sendTargets: () => [['TargetName', 'iqn.t']],
      peers: (x) => [x],
      coldReset: () => undefined,
      closed: () => undefined,
    },
  });
  s.attach({ send: (p) => out.push(p), close: (r) => closed.push(r) }, 0, 100);
  return { s, out, closed, scsi };
}

function cmd(o: Partial<ScsiCommandPdu>): ScsiCommandPdu {
  return {
    opcode: 0x01,
    immediate: false,
    data: Buffer.alloc(0),
    final: true,
    read: false,
    write: false,
    attr: 1,
    lun: 0n,
    itt: 1,
    edtl: 0,
    cmdSN: 10,
    expStatSN: 100,
    cdb: Buffer.alloc(16),
    ...o,
  };
}
const tick = () => new Promise((r) => setTimeout(r, 5));

describe('serial arithmetic', () => {
  it('wraps at 2^32', () => {
    expect(snLt(0xffffffff, 0)).toBe(true);
    expect(snGt(0, 0xffffffff)).toBe(true);
    expect(snInWindow(1, 0xfffffffe, 5)).toBe(true);
    expect(snInWindow(6, 0xfffffffe, 5)).toBe(false);
  });
});

describe('Data-In planning and residuals', () => {
  it('splits by MaxRecvDataSegmentLength, F at each MaxBurstLength', () => {
    const p = planDataIn(10000, 4096, 6000);
    expect(p.map((x) => [x.offset, x.length, x.final, x.last])).toEqual([
      [0, 4096, false, false],
      [4096, 1904, true, false],
      [6000, 4000, true, true],
    ]);
    expect(planDataIn(0, 8192, 8192)).toEqual([]);
    expect(planR2T(1000, 5000, 1500)).toEqual([
      { offset: 1000, length: 1500 },
      { offset: 2500, length: 1500 },
      { offset: 4000, length: 1000 },
    ]);
  });
  it('residual over/underflow', () => {
    expect(residualOf(512, 1024)).toEqual({ overflow: false, underflow: true, count: 512 });
    expect(residualOf(2048, 1024)).toEqual({ overflow: true, underflow: false, count: 1024 });
    expect(residualOf(1, 1)).toEqual({ overflow: false, underflow: false, count: 0 });
  });
});

describe('session full feature phase', () => {
  it('READ: Data-In per initiator MRDSL, status folded into the last PDU, StatSN/DataSN', async () => {
    const { s, out, scsi } = setup({ initiatorMaxRecvDataSegmentLength: 1024, maxBurstLength: 2048 });
    scsi.disk.fill(9, 0, 4096);
    s.receive(cmd({ read: true, edtl: 4096, cdb: read10(0, 8) }));
    await tick();
    expect(out.map((p) => p.opcode)).toEqual([0x25, 0x25, 0x25, 0x25]);
    const last = out[3];
    expect(last).toMatchObject({
      hasStatus: true,
      final: true,
      status: 0,
      statSN: 100,
      dataSN: 3,
      bufferOffset: 3072,
    });
    expect(out[1]).toMatchObject({ final: true, hasStatus: false });
    expect(out[0]).toMatchObject({ final: false });
    expect(s.expCmdSN).toBe(11);
    expect(s.statSN).toBe(101);
  });

  it('WRITE: immediate data + R2Ts up to MaxOutstandingR2T, each ≤ MaxBurstLength', async () => {
    const { s, out, scsi } = setup({
      maxBurstLength: 1024,
      maxOutstandingR2T: 2,
      initialR2T: true,
      firstBurstLength: 512,
    });
    const data = Buffer.alloc(3584, 3);
    s.receive(cmd({ write: true, edtl: 3584, cdb: write10(0, 7), data: data.subarray(0, 512), final: true }));
    const r2ts = out.filter((p) => p.opcode === 0x31);
    expect(r2ts.map((p) => p.opcode === 0x31 && [p.r2tSN, p.bufferOffset, p.desiredLength])).toEqual([
      [0, 512, 1024],
      [1, 1536, 1024],
    ]);
    const send = (r: TargetPdu, from: number, len: number, sn: number, final: boolean) =>
      s.receive({
        opcode: 0x05,
        immediate: false,
        data: data.subarray(from, from + len),
        final,
        lun: 0n,
        itt: 1,
        ttt: r.opcode === 0x31 ? r.ttt : 0,
        expStatSN: 101,
        dataSN: sn,
        bufferOffset: from,
      } as InitiatorPdu);
    send(r2ts[0]!, 512, 512, 0, false);
    send(r2ts[0]!, 1024, 512, 1, true);
    const r3 = out.filter((p) => p.opcode === 0x31)[2];
    expect(r3).toMatchObject({ r2tSN: 2, bufferOffset: 2560, desiredLength: 1024 });
    send(r2ts[1]!, 1536, 1024, 0, true);
    send(r3!, 2560, 1024, 0, true);
    await tick();
    const resp = out.at(-1);
    expect(resp).toMatchObject({ opcode: 0x21, status: 0, expDataSN: 3, underflow: false });
    expect(scsi.disk.subarray(0, 3584).equals(data)).toBe(true);
  });

  it('WRITE: placeDataOut hands out the task buffer only for the next expected Data-Out; the buffer is reused after completion', async () => {
    const { s, out, scsi } = setup({ maxBurstLength: 1024, maxOutstandingR2T: 1, initialR2T: true });
    const data = Buffer.alloc(2048);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    s.receive(cmd({ write: true, edtl: 2048, cdb: write10(0, 4), final: true }));
    const r2t = out.find((p) => p.opcode === 0x31);
    if (r2t?.opcode !== 0x31) throw new Error('no R2T');
    const bhs = (ttt: number, offset: number, itt = 1) => {
      const b = Buffer.alloc(48);
      b[0] = 0x05;
      b.writeUInt32BE(itt, 16);
      b.writeUInt32BE(ttt, 20);
      b.writeUInt32BE(offset, 40);
      return b;
    };
    expect(s.placeDataOut(bhs(r2t.ttt, 512), 512)).toBeUndefined(); // not the next offset
    expect(s.placeDataOut(bhs(r2t.ttt ^ 0x55, 0), 512)).toBeUndefined(); // unknown TTT
    expect(s.placeDataOut(bhs(r2t.ttt, 0, 9), 512)).toBeUndefined(); // unknown task
    expect(s.placeDataOut(bhs(r2t.ttt, 0), 2048)).toBeUndefined(); // beyond the R2T
    expect(s.placeDataOut(bhs(0xffffffff, 0), 512)).toBeUndefined(); // unsolicited after InitialR2T=Yes
    const at0 = s.placeDataOut(bhs(r2t.ttt, 0), 1024);
    if (at0 === undefined) throw new Error('not placed');
    data.copy(at0, 0, 0, 1024); // what the framing layer does
    const dataOut = (ttt: number, from: number, piece: Buffer, sn: number) =>
      s.receive({
        opcode: 0x05,
        immediate: false,
        data: piece,
        final: true,
        lun: 0n,
        itt: 1,
        ttt,
        expStatSN: 101,
        dataSN: sn,
        bufferOffset: from,
      } as InitiatorPdu);
    dataOut(r2t.ttt, 0, at0, 0);
    const r2 = out.filter((p) => p.opcode === 0x31)[1];
    if (r2?.opcode !== 0x31) throw new Error('no second R2T');
    dataOut(r2.ttt, 1024, data.subarray(1024), 0); // not placed: copied in at its offset
    await tick();
    expect(out.at(-1)).toMatchObject({ opcode: 0x21, status: 0 });
    expect(scsi.disk.subarray(0, 2048).equals(data)).toBe(true);
    const memory = at0.buffer;
    // The core said it keeps no reference: the next write command gets the same memory.
    s.receive(cmd({ itt: 2, cmdSN: 11, write: true, edtl: 2048, cdb: write10(8, 4), final: true }));
    const r3 = out.filter((p) => p.opcode === 0x31)[2];
    if (r3?.opcode !== 0x31) throw new Error('no R2T for the second command');
    expect(s.placeDataOut(bhs(r3.ttt, 0, 2), 1024)?.buffer).toBe(memory);
  });

  it('WRITE: placeData stages immediate data in a write buffer the command takes over; unaccepted stages and buffers being filled are not reused', async () => {
    const { s, out, scsi } = setup({
      immediateData: true,
      initialR2T: true,
      firstBurstLength: 4096,
      maxBurstLength: 4096,
    });
    const cmdBhs = (itt: number, edtl: number, write = true) => {
      const b = Buffer.alloc(48);
      b[0] = 0x01;
      b[1] = 0x80 | (write ? 0x20 : 0);
      b.writeUInt32BE(itt, 16);
      b.writeUInt32BE(edtl, 20);
      return b;
    };
    expect(s.placeData(cmdBhs(1, 1024, false), 512)).toBeUndefined(); // not a write
    expect(s.placeData(cmdBhs(1, 512), 1024)).toBeUndefined(); // more immediate data than EDTL
    expect(s.placeData(cmdBhs(1, 64 << 20), 512)).toBeUndefined(); // beyond the largest transfer
    const imm = s.placeData(cmdBhs(1, 1024), 1024);
    if (imm === undefined) throw new Error('not staged');
    imm.fill(0x5a);
    s.receive(cmd({ itt: 1, write: true, edtl: 1024, cdb: write10(0, 2), data: imm }));
    await tick();
    expect(out.at(-1)).toMatchObject({ opcode: 0x21, status: 0 });
    expect(scsi.disk.subarray(0, 1024).equals(Buffer.alloc(1024, 0x5a))).toBe(true);
    // Staged for a command that then fails acceptance (immediate data with InitialR2T... F=0): handed back.
    const lost = s.placeData(cmdBhs(2, 1024), 512);
    if (lost === undefined) throw new Error('not staged');
    s.receive(
      cmd({ itt: 2, cmdSN: 11, write: true, edtl: 1024, cdb: write10(4, 2), data: lost, final: false }),
    );
    const again = s.placeData(cmdBhs(3, 1024), 512);
    expect(again?.buffer).toBe(lost.buffer); // the pool got it back
    s.receive({
      opcode: 0x00,
      immediate: true,
      data: Buffer.alloc(0),
      lun: 0n,
      itt: 9,
      ttt: 0xffffffff,
      cmdSN: 11,
      expStatSN: 1,
    } as InitiatorPdu);
    // A task dropped while the framing layer fills its buffer: that memory is not handed out again.
    s.receive(cmd({ itt: 4, cmdSN: 11, write: true, edtl: 8192, cdb: write10(8, 16) }));
    const r2t = out.filter((p) => p.opcode === 0x31).at(-1);
    if (r2t?.opcode !== 0x31) throw new Error('no R2T');
    const bhs = Buffer.alloc(48);
    bhs[0] = 0x05;
    bhs.writeUInt32BE(4, 16);
    bhs.writeUInt32BE(r2t.ttt, 20);
    const filling = s.placeDataOut(bhs, 4096);
    if (filling === undefined) throw new Error('not placed');
    await s.abortTasks(undefined);
    const next = s.placeData(cmdBhs(5, 8192), 512);
    expect(next?.buffer).not.toBe(filling.buffer);
  });

  it('CmdSN window: too high/low ignored, gaps held, MaxCmdSN = ExpCmdSN + depth - 1', async () => {
    const { s, out, scsi } = setup({}, 4);
    expect(s.maxCmdSN).toBe(13);
    s.receive(cmd({ itt: 1, cmdSN: 14 })); // above MaxCmdSN
    s.receive(cmd({ itt: 2, cmdSN: 9 })); // below ExpCmdSN
    s.receive(cmd({ itt: 3, cmdSN: 11 }));
    await tick();
    expect(scsi.executed.length).toBe(0);
    s.receive(cmd({ itt: 4, cmdSN: 10 }));
    await tick();
    expect(scsi.executed.map((c) => c.taskTag)).toEqual([4, 3]);
    expect(s.expCmdSN).toBe(12);
    expect(out.filter((p) => p.opcode === 0x21).length).toBe(2);
    // immediate: delivered now, ExpCmdSN unchanged
    s.receive(cmd({ itt: 5, cmdSN: 12, immediate: true }));
    await tick();
    expect(s.expCmdSN).toBe(12);
    expect(scsi.executed.at(-1)?.taskTag).toBe(5);
  });

  it('residuals and sense in the SCSI Response', async () => {
    const { s, out } = setup();
    s.receive(cmd({ itt: 1, cmdSN: 10, read: true, edtl: 1536, cdb: read10(0, 2) }));
    await tick();
    expect(out.at(-1)).toMatchObject({ opcode: 0x25, hasStatus: true, underflow: true, residual: 512 });
    s.receive(cmd({ itt: 2, cmdSN: 11, read: true, edtl: 100, cdb: read10(0, 1) }));
    await tick();
    expect(out.at(-1)).toMatchObject({ opcode: 0x25, hasStatus: true, overflow: true, residual: 412 });
    s.receive(cmd({ itt: 3, cmdSN: 12, read: true, edtl: 512, cdb: read10(99999, 1) }));
    await tick();
    const r = out.at(-1);
    expect(r).toMatchObject({ opcode: 0x21, status: 2, underflow: true, residual: 512 });
    expect(r?.data.readUInt16BE(0)).toBe(18);
  });

  it('NOP-Out ping echoes data; NOP-In keep-alive and its timeout', () => {
    const { s, out } = setup();
    s.receive({
      opcode: 0x00,
      immediate: true,
      data: Buffer.from('hi'),
      lun: 0n,
      itt: 7,
      ttt: 0xffffffff,
      cmdSN: 10,
      expStatSN: 100,
    });
    expect(out[0]).toMatchObject({ opcode: 0x20, itt: 7, ttt: 0xffffffff, statSN: 100 });
    expect(out[0]?.data.toString()).toBe('hi');
    expect(s.tick(10_000, 1000, 3000)).toBe(true);
    const ping = out[1];
    expect(ping).toMatchObject({ opcode: 0x20, itt: 0xffffffff, statSN: 101 });
    expect(s.tick(12_000, 1000, 3000)).toBe(true);
    expect(s.tick(13_001, 1000, 3000)).toBe(false);
    if (ping?.opcode !== 0x20) return;
    s.receive({
      opcode: 0x00,
      immediate: true,
      data: Buffer.alloc(0),
      lun: 0n,
      itt: 0xffffffff,
      ttt: ping.ttt,
      cmdSN: 10,
      expStatSN: 101,
    });
    expect(s.tick(13_002, 1000, 3000)).toBe(true);
  });

  it('long Text responses continue with C bit and TTT', () => {
    const { s, out } = setup({ initiatorMaxRecvDataSegmentLength: 512 });
    const keys: [string, string][] = [];
    for (let i = 0; i < 40; i++) keys.push([`X-k${i}`, 'v']);
    const data = Buffer.from(keys.map(([k, v]) => `${k}=${v}\0`).join(''));
    s.receive({
      opcode: 0x04,
      immediate: false,
      data,
      final: true,
      cont: false,
      lun: 0n,
      itt: 3,
      ttt: 0xffffffff,
      cmdSN: 10,
      expStatSN: 100,
    });
    const first = out[0];
    expect(first).toMatchObject({ opcode: 0x24, cont: true, final: false });
    if (first?.opcode !== 0x24) return;
    expect(first.data.length).toBe(512);
    s.receive({
      opcode: 0x04,
      immediate: false,
      data: Buffer.alloc(0),
      final: true,
      cont: false,
      lun: 0n,
      itt: 3,
      ttt: first.ttt,
      cmdSN: 11,
      expStatSN: 101,
    });
    expect(out[1]).toMatchObject({ opcode: 0x24, cont: false, final: true, ttt: 0xffffffff });
  });

  it('ABORT TASK with RefCmdSN of a never-received command fills the CmdSN hole', async () => {
    const { s, out, scsi } = setup();
    s.receive(cmd({ itt: 2, cmdSN: 11 })); // waits for 10
    s.receive({
      opcode: 0x02,
      immediate: true,
      data: Buffer.alloc(0),
      fn: 1,
      lun: 0n,
      itt: 9,
      rtt: 1,
      cmdSN: 12,
      expStatSN: 100,
      refCmdSN: 10,
      expDataSN: 0,
    });
    await tick();
    expect(out.find((p) => p.opcode === 0x22)).toMatchObject({ response: 0 });
    expect(scsi.executed.map((c) => c.taskTag)).toEqual([2]);
    expect(s.expCmdSN).toBe(12);
  });

  it('SNACK is rejected at ERL 0', () => {
    const { s, out } = setup();
    s.receive(
      {
        opcode: 0x10,
        immediate: false,
        data: Buffer.alloc(0),
        type: 0,
        lun: 0n,
        itt: 1,
        ttt: 0,
        expStatSN: 0,
        begRun: 0,
        runLength: 0,
      },
      Buffer.alloc(48),
    );
    expect(out[0]).toMatchObject({ opcode: 0x3f, reason: 4 });
  });

  it('logout answers and closes after flush; remove-for-recovery is not supported', async () => {
    const { s, out, closed } = setup();
    s.receive({
      opcode: 0x06,
      immediate: false,
      data: Buffer.alloc(0),
      reason: 2,
      itt: 4,
      cid: 0,
      cmdSN: 10,
      expStatSN: 100,
    });
    await tick();
    expect(out[0]).toMatchObject({ opcode: 0x26, response: 2 });
    s.receive({
      opcode: 0x06,
      immediate: false,
      data: Buffer.alloc(0),
      reason: 0,
      itt: 5,
      cid: 0,
      cmdSN: 11,
      expStatSN: 101,
    });
    await tick();
    expect(out[1]).toMatchObject({ opcode: 0x26, response: 0 });
    expect(closed).toEqual(['logout']);
  });
});
