/**
 * COMPARE AND WRITE from two iSCSI sessions (two initiator names) racing on one block over real
 * sockets: in every round both compare against the block's current contents, so exactly one may
 * succeed and the other must get MISCOMPARE; the block then holds the winner's data.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBackstore } from '../../src/backstore/index.js';
import { IscsiServer } from '../../src/iscsi/index.js';
import { createScsiTarget } from '../../src/scsi/index.js';
import { read10, TestInitiator } from './initiator.js';

const IQN = 'iqn.2026-11.test:caw';
const LBA = 77;
const ROUNDS = 200;
let server: IscsiServer;
let port: number;

beforeAll(async () => {
  const backstore = new MemoryBackstore({ blockSize: 512, blockCount: 1024 });
  const scsi = createScsiTarget({ name: IQN, luns: [{ lun: 0, backstore, id: '00112233445566aa' }] });
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

function caw16(lba: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x89;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c[13] = 1; // one block
  return c;
}

async function session(name: string, isid: string): Promise<TestInitiator> {
  const c = await TestInitiator.connect(port);
  await c.login({ targetName: IQN, initiatorName: name, isid });
  const tur = Buffer.alloc(16);
  for (let i = 0; i < 3 && (await c.scsi(tur))?.status !== 0; i++); // clear POWER ON unit attention
  return c;
}

describe('COMPARE AND WRITE from two sessions', () => {
  it(`never lets both win (${ROUNDS} racing rounds)`, async () => {
    const a = await session('iqn.2026-11.test:host-a', '400001000001');
    const b = await session('iqn.2026-11.test:host-b', '400001000002');
    try {
      let wins = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const cur = (await a.scsi(read10(LBA, 1), { readLength: 512 }))!.data;
        const mine = (tag: number) => Buffer.alloc(512, (round * 2 + tag) & 0xff);
        const [ra, rb] = await Promise.all([
          a.scsi(caw16(LBA), { dataOut: Buffer.concat([cur, mine(1)]) }),
          b.scsi(caw16(LBA), { dataOut: Buffer.concat([cur, mine(2)]) }),
        ]);
        const good = [ra, rb].filter((r) => r?.status === 0);
        expect(good, `round ${round}: exactly one COMPARE AND WRITE succeeds`).toHaveLength(1);
        const loser = ra?.status === 0 ? rb : ra;
        expect(loser?.status).toBe(2);
        expect((loser?.sense[2] ?? 0) & 0x0f, 'MISCOMPARE sense key').toBe(0x0e);
        const now = (await b.scsi(read10(LBA, 1), { readLength: 512 }))!.data;
        expect(now.equals(mine(ra?.status === 0 ? 1 : 2))).toBe(true);
        wins += ra?.status === 0 ? 1 : 0;
      }
      // Both sessions won some rounds: the race was real, not one session always first.
      console.log(
        `COMPARE AND WRITE race: session A won ${wins}/${ROUNDS}, session B ${ROUNDS - wins}/${ROUNDS}`,
      );
      await a.logout();
      await b.logout();
    } finally {
      a.close();
      b.close();
    }
  });
});
