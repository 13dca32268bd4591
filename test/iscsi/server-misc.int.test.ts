import { afterEach, describe, expect, it } from 'vitest';
import { IscsiServer, type IscsiServerConfig } from '../../src/iscsi/index.js';
import { encodePduToBuffer } from '../../src/iscsi/pdu/codec.js';
import { FakeScsi } from './fake-scsi.js';
import { read10, TestInitiator } from './initiator.js';

const TARGET = 'iqn.2026-11.test:target';
let server: IscsiServer | undefined;
const clients: TestInitiator[] = [];

async function start(cfg: Partial<IscsiServerConfig> = {}, target: object = {}) {
  server = new IscsiServer({
    portals: [{ host: '127.0.0.1', port: 0, portalGroupTag: 1 }],
    targets: [
      { name: TARGET, scsi: new FakeScsi(), acl: { initiators: 'ALL', addresses: 'ALL' }, ...target },
    ],
    ...cfg,
  });
  await server.start();
  return server.portals()[0]!.port;
}
async function client(port: number) {
  const c = await TestInitiator.connect(port);
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server?.stop({ logoutTimeoutMs: 0 });
  server = undefined;
});

describe('IscsiServer: more', () => {
  it('EADDRINUSE names the address', async () => {
    const port = await start();
    const other = new IscsiServer({ portals: [{ host: '127.0.0.1', port, portalGroupTag: 1 }], targets: [] });
    await expect(other.start()).rejects.toThrow(`iSCSI portal 127.0.0.1:${port}: address already in use`);
  });

  it('drops a connection whose NOP-In pings go unanswered', async () => {
    const port = await start({ nopInIntervalSec: 1, nopInTimeoutSec: 1 });
    const c = await client(port);
    c.autoPong = false;
    await c.login();
    expect(await c.waitClosed(5000)).toBe(true);
    const ok = await client(port);
    await ok.login();
    await new Promise((r) => setTimeout(r, 3000));
    expect(ok.closed).toBe(false);
  });

  it('data digest error on a NOP-Out is rejected with reason 2, connection stays', async () => {
    const port = await start({ digests: ['CRC32C', 'None'] });
    const c = await client(port);
    await c.login({ headerDigest: 'CRC32C', dataDigest: 'CRC32C' });
    const bytes = encodePduToBuffer(
      {
        opcode: 0x00,
        immediate: true,
        data: Buffer.from('abcd'),
        lun: 0n,
        itt: 50,
        ttt: 0xffffffff,
        cmdSN: c.cmdSN,
        expStatSN: c.expStatSN,
      },
      c.digests,
    );
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    c.sendRaw(bytes);
    expect(await c.recv((p) => p.opcode === 0x3f)).toMatchObject({ reason: 2 });
    expect((await c.nop(Buffer.from('ok')))?.data.toString()).toBe('ok');
  });

  it('redirect answers 0x0101 with TargetAddress', async () => {
    const port = await start({}, { redirect: { host: '10.1.2.3', port: 3260 } });
    const c = await client(port);
    const err = (await c.login().catch((e: unknown) => e)) as { resp?: { status: number; data: Buffer } };
    expect(err.resp?.status).toBe(0x0101);
    expect(err.resp?.data.toString()).toContain('TargetAddress=10.1.2.3:3260,1');
  });

  it('discovery CHAP, ACL-filtered SendTargets', async () => {
    const port = await start({ discoveryChap: { users: [{ user: 'disc', secret: 'discsecret12' }] } });
    server!.addTarget({
      name: 'iqn.2026-11.test:hidden',
      scsi: new FakeScsi(),
      acl: { initiators: ['iqn.2026-11.test:someone-else'], addresses: 'ALL' },
    });
    server!.addTarget({
      name: 'iqn.2026-11.test:byaddr',
      scsi: new FakeScsi(),
      acl: { initiators: 'ALL', addresses: ['10.0.0.0/8'] },
    });
    const bad = await client(port);
    await expect(bad.login({ discovery: true })).rejects.toThrow(/0x201/);
    const c = await client(port);
    await c.login({ discovery: true, chap: { user: 'disc', secret: 'discsecret12' } });
    expect(await c.text([['SendTargets', 'All']])).toEqual([
      ['TargetName', TARGET],
      ['TargetAddress', `127.0.0.1:${port},1`],
    ]);
  });

  it('removeTarget refuses while sessions exist; force drops them', async () => {
    const port = await start();
    const c = await client(port);
    await c.login();
    expect(() => server!.removeTarget(TARGET)).toThrow(/still connected/);
    server!.removeTarget(TARGET, { force: true });
    expect(await c.waitClosed()).toBe(true);
    expect(server!.sessions()).toEqual([]);
  });

  it('dropSession and garbage input end only that connection', async () => {
    const port = await start();
    const a = await client(port);
    await a.login();
    const b = await client(port);
    b.isid = '400001370009';
    await b.login();
    const g = await client(port);
    g.sendRaw(Buffer.alloc(4096, 0xff));
    expect(await g.waitClosed()).toBe(true);
    expect(server!.dropSession(a.tsih)).toBe(true);
    expect(await a.waitClosed()).toBe(true);
    expect((await b.scsi(read10(0, 1), { readLength: 512 }))?.status).toBe(0);
    expect(server!.sessions().map((s) => s.tsih)).toEqual([b.tsih]);
  });

  it('mutated PDUs after login never take the server down', async () => {
    const port = await start();
    const control = await client(port);
    control.isid = '400001370077';
    await control.login();
    let seed = 12345;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let round = 0; round < 30; round++) {
      const c = await client(port);
      c.isid = (0x400001380000 + round).toString(16);
      await c.login().catch(() => undefined);
      for (let i = 0; i < 40 && !c.closed; i++) {
        const pdu = encodePduToBuffer({
          opcode: 0x00,
          immediate: true,
          data: Buffer.alloc(rnd() % 64, rnd() & 0xff),
          lun: 0n,
          itt: rnd(),
          ttt: rnd(),
          cmdSN: c.cmdSN + (rnd() % 3),
          expStatSN: c.expStatSN,
        });
        pdu[0] = ((pdu[0] ?? 0) & 0x40) | ([0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x10, 0x3a][rnd() % 8] ?? 0);
        for (let k = 0; k < 1 + (rnd() % 4); k++) {
          const at = rnd() % pdu.length;
          pdu[at] = rnd() & 0xff;
        }
        c.sendRaw(pdu);
      }
      await new Promise((r) => setTimeout(r, 5));
      c.close();
    }
    expect((await control.scsi(read10(0, 1), { readLength: 512 }))?.status).toBe(0);
    expect((await control.nop(Buffer.from('alive')))?.data.toString()).toBe('alive');
  });

  it('target cold reset answers, then drops all sessions of the target', async () => {
    const port = await start();
    const c = await client(port);
    await c.login();
    expect(await c.tmf(7)).toMatchObject({ opcode: 0x22, response: 0 });
    expect(await c.waitClosed()).toBe(true);
  });
});
