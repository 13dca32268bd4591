/** The transport over the real SCSI core (src/scsi) with a memory backstore. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBackstore } from '../../src/backstore/index.js';
import { IscsiServer } from '../../src/iscsi/index.js';
import { createScsiTarget } from '../../src/scsi/index.js';
import { read10, TestInitiator, write10 } from './initiator.js';

const IQN = 'iqn.2026-11.test:core';
let server: IscsiServer;
let port: number;

beforeAll(async () => {
  const backstore = new MemoryBackstore({ blockSize: 512, blockCount: 8192 });
  const scsi = createScsiTarget({ name: IQN, luns: [{ lun: 0, backstore, id: '00112233445566ff' }] });
  server = new IscsiServer({
    portals: [{ host: '127.0.0.1', port: 0, portalGroupTag: 1 }],
    targets: [{ name: IQN, scsi, acl: { initiators: 'ALL', addresses: 'ALL' } }],
  });
  await server.start();
  port = server.portals()[0]!.port;
});
afterAll(async () => {
  await server.stop({ logoutTimeoutMs: 0 });
});

describe('iSCSI + SCSI core + memory backstore', () => {
  it('clears the power-on unit attention, writes and reads back, INQUIRY', async () => {
    const c = await TestInitiator.connect(port);
    try {
      c.initialR2T = false;
      await c.login({ targetName: IQN, headerDigest: 'CRC32C', dataDigest: 'CRC32C' });
      const tur = Buffer.alloc(16);
      let r = await c.scsi(tur);
      if (r?.status === 2) r = await c.scsi(tur); // UNIT ATTENTION after login
      expect(r?.status).toBe(0);
      const data = Buffer.alloc(1024 * 512);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
      expect((await c.scsi(write10(100, 1024), { dataOut: data }))?.status).toBe(0);
      const rd = await c.scsi(read10(100, 1024), { readLength: data.length });
      expect(rd?.status).toBe(0);
      expect(rd?.data.equals(data)).toBe(true);
      const inq = Buffer.alloc(16);
      inq[0] = 0x12;
      inq.writeUInt16BE(96, 3);
      const i = await c.scsi(inq, { readLength: 96 });
      expect(i?.status).toBe(0);
      expect(i?.data.toString('latin1', 8, 13)).toBe('LUNAR');
      const bad = await c.scsi(read10(8192, 1), { readLength: 512 });
      expect(bad?.status).toBe(2);
      expect((bad?.sense[2] ?? 0) & 0x0f).toBe(5);
      await c.logout();
    } finally {
      c.close();
    }
  });
});
