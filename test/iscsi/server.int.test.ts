import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IscsiServer, type IscsiServerConfig } from '../../src/iscsi/index.js';
import { FakeScsi } from './fake-scsi.js';
import { read10, TestInitiator, write10 } from './initiator.js';

const TARGET = 'iqn.2026-11.test:target';

function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('IscsiServer over loopback', () => {
  let server: IscsiServer;
  let scsi: FakeScsi;
  let port: number;
  const clients: TestInitiator[] = [];

  async function start(extra: Partial<IscsiServerConfig> = {}, targetExtra: object = {}) {
    scsi = new FakeScsi();
    server = new IscsiServer({
      portals: [{ host: '127.0.0.1', port: 0, portalGroupTag: 1 }],
      targets: [
        { name: TARGET, alias: 'disk0', scsi, acl: { initiators: 'ALL', addresses: 'ALL' }, ...targetExtra },
      ],
      ...extra,
    });
    await server.start();
    port = server.portals()[0]!.port;
  }
  async function client(): Promise<TestInitiator> {
    const c = await TestInitiator.connect(port);
    clients.push(c);
    return c;
  }

  beforeEach(async () => {
    await start();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await server.stop({ logoutTimeoutMs: 0 });
  });

  it('logs in, reads and writes with immediate data and R2T, logs out', async () => {
    const c = await client();
    const r = await c.login();
    expect(r.tsih).toBeGreaterThan(0);
    expect(c.negotiated.get('TargetPortalGroupTag')).toBe('1');
    expect(c.negotiated.get('TargetAlias')).toBe('disk0');
    expect(server.sessions()).toHaveLength(1);
    const data = pattern(200 * 512);
    const w = await c.scsi(write10(10, 200), { dataOut: data });
    expect(w?.status).toBe(0);
    expect(scsi.disk.subarray(10 * 512, 210 * 512).equals(data)).toBe(true);
    const rd = await c.scsi(read10(10, 200), { readLength: 200 * 512 });
    expect(rd?.status).toBe(0);
    expect(rd?.data.equals(data)).toBe(true);
    // Data-In split per our MaxRecvDataSegmentLength (8192)
    expect(rd!.pdus.filter((p) => p.opcode === 0x25).length).toBe(Math.ceil((200 * 512) / 8192));
    const lo = await c.logout();
    expect(lo?.opcode).toBe(0x26);
    expect(await c.waitClosed()).toBe(true);
    await new Promise((r) => setTimeout(r, 20));
    expect(server.sessions()).toHaveLength(0);
    expect(scsi.lost).toHaveLength(1);
  });

  it('unsolicited Data-Out with InitialR2T=No, digests', async () => {
    const c = await client();
    c.initialR2T = false;
    c.immediateData = false;
    c.firstBurstLength = 16384;
    await c.login({ headerDigest: 'CRC32C', dataDigest: 'CRC32C' });
    expect(c.digests).toEqual({ headerDigest: true, dataDigest: true });
    const data = pattern(100 * 512, 7);
    const w = await c.scsi(write10(0, 100), { dataOut: data });
    expect(w?.status).toBe(0);
    expect(w!.pdus.filter((p) => p.opcode === 0x31).length).toBeGreaterThan(0);
    const rd = await c.scsi(read10(0, 100), { readLength: 100 * 512 });
    expect(rd?.data.equals(data)).toBe(true);
  });

  it("takes the initiator's first allowed digest when it offers both (RFC 7143 §6.2)", async () => {
    const c = await client();
    await c.login({ headerDigest: 'CRC32C,None', dataDigest: 'None,CRC32C' });
    expect(c.negotiated.get('HeaderDigest')).toBe('CRC32C');
    expect(c.negotiated.get('DataDigest')).toBe('None');
  });

  it('residuals: read underflow/overflow, write underflow', async () => {
    const c = await client();
    await c.login();
    const under = await c.scsi(read10(0, 1), { readLength: 1024 });
    expect(under).toMatchObject({ status: 0, underflow: true, residual: 512 });
    const over = await c.scsi(read10(0, 2), { readLength: 512 });
    expect(over).toMatchObject({ status: 0, overflow: true, residual: 512 });
    expect(over?.data.length).toBe(512);
    const wu = await c.scsi(write10(0, 1), { dataOut: Buffer.alloc(1024) });
    expect(wu).toMatchObject({ status: 0, underflow: true, residual: 512 });
  });

  it('sense data in a SCSI Response', async () => {
    const c = await client();
    await c.login();
    const r = await c.scsi(read10(1_000_000, 1), { readLength: 512 });
    expect(r?.status).toBe(2);
    expect(r?.sense[12]).toBe(0x21);
  });

  it('CmdSN: out-of-window commands are ignored, out-of-order ones wait', async () => {
    const c = await client();
    await c.login();
    const base = c.cmdSN;
    // too high: ignored
    c.cmdSN = (base + 1000) >>> 0;
    const hi = await c.scsi(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), {
      timeoutMs: 300,
    });
    expect(hi).toBeUndefined();
    // CmdSN base+1 before base: held until base arrives
    c.cmdSN = (base + 1) >>> 0;
    const later = c.scsi(Buffer.alloc(16));
    await new Promise((r) => setTimeout(r, 50));
    expect(scsi.executed.length).toBe(0);
    c.cmdSN = base;
    const first = await c.scsi(Buffer.alloc(16));
    expect(first?.status).toBe(0);
    expect((await later)?.status).toBe(0);
    c.cmdSN = (base + 2) >>> 0;
    const nop = await c.nop(Buffer.from('ping'));
    expect(nop?.data.toString()).toBe('ping');
  });

  it('TMF: ABORT TASK gets no response for the aborted task; LUN RESET; CLEAR ACA unsupported', async () => {
    const c = await client();
    await c.login();
    const cdb = Buffer.alloc(16);
    cdb[0] = 0xc0;
    const itt = c.itt;
    const held = c.scsi(cdb, { timeoutMs: 500 });
    await new Promise((r) => setTimeout(r, 50));
    const t = await c.tmf(1, { rtt: itt, refCmdSN: c.cmdSN - 1 });
    expect(t).toMatchObject({ opcode: 0x22, response: 0 });
    expect(await held).toBeUndefined();
    const lr = await c.tmf(5, { lun: 0 });
    expect(lr).toMatchObject({ response: 0 });
    expect(scsi.tmfs.map((x) => x.fn)).toContain(5);
    expect(await c.tmf(3)).toMatchObject({ response: 5 });
    expect(await c.tmf(8)).toMatchObject({ response: 4 });
    expect(await c.tmf(1, { rtt: 12345, refCmdSN: c.cmdSN - 5 })).toMatchObject({ response: 1 });
    expect(await c.tmf(5, { lun: 7 })).toMatchObject({ response: 2 });
  });

  it('bad DataSN fails the task with ABORTED COMMAND, connection stays', async () => {
    const c = await client();
    c.immediateData = false;
    await c.login();
    const itt = c.itt++;
    c.send({
      opcode: 0x01,
      immediate: false,
      data: Buffer.alloc(0),
      final: true,
      read: false,
      write: true,
      attr: 1,
      lun: 0n,
      itt,
      edtl: 1024,
      cmdSN: c.cmdSN++,
      expStatSN: c.expStatSN,
      cdb: write10(0, 2),
    });
    const r2t = await c.recv((p) => p.opcode === 0x31);
    expect(r2t?.opcode).toBe(0x31);
    if (r2t?.opcode !== 0x31) return;
    c.send({
      opcode: 0x05,
      immediate: false,
      data: Buffer.alloc(512),
      final: false,
      lun: 0n,
      itt,
      ttt: r2t.ttt,
      expStatSN: c.expStatSN,
      dataSN: 27,
      bufferOffset: 0,
    });
    const resp = await c.recv((p) => p.opcode === 0x21);
    expect(resp).toMatchObject({ status: 2 });
    expect(resp?.data[2 + 2]).toBe(0x0b);
    expect(resp?.data[2 + 12]).toBe(0x4b);
    c.send({
      opcode: 0x05,
      immediate: false,
      data: Buffer.alloc(512),
      final: true,
      lun: 0n,
      itt,
      ttt: r2t.ttt,
      expStatSN: c.expStatSN,
      dataSN: 1,
      bufferOffset: 512,
    });
    const rd = await c.scsi(read10(0, 1), { readLength: 512 });
    expect(rd?.status).toBe(0);
  });

  it('discovery: SendTargets=All lists targets the ACL allows', async () => {
    const c = await client();
    await c.login({ discovery: true });
    const pairs = await c.text([['SendTargets', 'All']]);
    expect(pairs).toEqual([
      ['TargetName', TARGET],
      ['TargetAddress', `127.0.0.1:${port},1`],
    ]);
    await c.logout();
  });

  it('login failures: unknown target, missing InitiatorName, ACL', async () => {
    const failed: number[] = [];
    server.on('login-failed', (e: { status: number }) => failed.push(e.status));
    const c = await client();
    await expect(c.login({ targetName: 'iqn.2026-11.test:nope' })).rejects.toThrow(/0x203/);
    const c2 = await client();
    const r = await c2.loginPdu(0, 1, true, [['AuthMethod', 'None']], {});
    expect(r.status).toBe(0x0207);
    server.addTarget({
      name: 'iqn.2026-11.test:acl',
      scsi: new FakeScsi(),
      acl: { initiators: ['iqn.2026-11.test:other'], addresses: 'ALL' },
    });
    const c3 = await client();
    await expect(c3.login({ targetName: 'iqn.2026-11.test:acl' })).rejects.toThrow(/0x202/);
    expect(failed).toEqual([0x0203, 0x0207, 0x0202]);
  });

  it('session reinstatement: same ISID closes the old session', async () => {
    const a = await client();
    await a.login();
    const b = await client();
    await b.login();
    expect(await a.waitClosed()).toBe(true);
    expect(server.sessions()).toHaveLength(1);
    expect(scsi.lost).toHaveLength(1);
    const rd = await b.scsi(read10(0, 1), { readLength: 512 });
    expect(rd?.status).toBe(0);
  });

  it('connection reinstatement keeps the session (same TSIH and CID)', async () => {
    const a = await client();
    await a.login();
    const tsih = a.tsih;
    const b = await client();
    b.expStatSN = a.expStatSN;
    await b.login({ tsih });
    expect(b.tsih).toBe(tsih);
    expect(await a.waitClosed()).toBe(true);
    expect(server.sessions()).toHaveLength(1);
    const rd = await b.scsi(read10(0, 1), { readLength: 512 });
    expect(rd?.status).toBe(0);
  });

  it('stop() asks initiators to log out with an Async Message', async () => {
    const c = await client();
    await c.login();
    const stopping = server.stop({ logoutTimeoutMs: 2000 });
    const a = await c.recv((p) => p.opcode === 0x32);
    expect(a).toMatchObject({ event: 1, param3: 2 });
    await c.logout();
    await stopping;
    expect(server.sessions()).toHaveLength(0);
    await start();
  });
});

describe('IscsiServer with CHAP', () => {
  it.each([5, 6, 7, 8])('one-way and mutual CHAP with CHAP_A=%i', async (alg) => {
    const scsi = new FakeScsi();
    const server = new IscsiServer({
      portals: [{ host: '127.0.0.1', port: 0, portalGroupTag: 1 }],
      targets: [
        {
          name: TARGET,
          scsi,
          acl: { initiators: 'ALL', addresses: 'ALL' },
          chap: {
            users: [{ user: 'alice', secret: 'alicesecret12' }],
            mutual: { user: 'tgt', secret: 'targetsecret1' },
          },
        },
      ],
    });
    await server.start();
    const port = server.portals()[0]!.port;
    try {
      const a = await TestInitiator.connect(port);
      await a.login({ chap: { user: 'alice', secret: 'alicesecret12', alg } });
      a.close();
      const b = await TestInitiator.connect(port);
      b.isid = '400001370001';
      await b.login({
        chap: {
          user: 'alice',
          secret: 'alicesecret12',
          alg,
          mutual: { user: 'tgt', secret: 'targetsecret1' },
        },
      });
      b.close();
      const c = await TestInitiator.connect(port);
      await expect(c.login({ chap: { user: 'alice', secret: 'wrong', alg } })).rejects.toThrow(/0x201/);
      c.close();
      const d = await TestInitiator.connect(port);
      await expect(d.login()).rejects.toThrow(/0x201/);
      d.close();
    } finally {
      await server.stop({ logoutTimeoutMs: 0 });
    }
  });
});
