/**
 * Dev server for real-initiator checks: one memory LUN on two portals (groups 1 and 2).
 *   npx tsc -p tsconfig.json --noEmit false --outDir /tmp/lunar-dist
 *   node /tmp/lunar-dist/test/iscsi/serve-dev.js [port1] [port2] [sizeMiB]
 */
import { MemoryBackstore } from '../../src/backstore/index.js';
import { IscsiServer } from '../../src/iscsi/index.js';
import { createScsiTarget } from '../../src/scsi/index.js';

const env = (k: string): string | undefined => process.env[k];
const port1 = Number(process.argv[2] ?? 3301);
const port2 = Number(process.argv[3] ?? 3302);
const mib = Number(process.argv[4] ?? 256);
const IQN = process.env['LUNAR_IQN'] ?? 'iqn.2026-11.io.lunar:dev';

const backstore = new MemoryBackstore({ blockSize: 512, blockCount: (mib << 20) / 512 });
const scsi = createScsiTarget({ name: IQN, luns: [{ lun: 0, backstore, id: '0123456789abcdef' }] });
const server = new IscsiServer({
  portals: [
    { host: '127.0.0.1', port: port1, portalGroupTag: 1 },
    { host: '127.0.0.1', port: port2, portalGroupTag: 2 },
  ],
  targets: [
    {
      name: IQN,
      alias: 'dev',
      scsi,
      acl: { initiators: 'ALL', addresses: 'ALL' },
      ...(env('LUNAR_CHAP_USER')
        ? {
            chap: {
              users: [{ user: env('LUNAR_CHAP_USER') ?? '', secret: env('LUNAR_CHAP_SECRET') ?? '' }],
              ...(env('LUNAR_MUTUAL_USER')
                ? {
                    mutual: {
                      user: env('LUNAR_MUTUAL_USER') ?? '',
                      secret: env('LUNAR_MUTUAL_SECRET') ?? '',
                    },
                  }
                : {}),
            },
          }
        : {}),
    },
  ],
  ...(process.env['LUNAR_DIGESTS']
    ? { digests: process.env['LUNAR_DIGESTS'].split(',') as ('None' | 'CRC32C')[] }
    : {}),
});
const verbose = process.env['LUNAR_VERBOSE'] === '1';
server.on('session-up', (s) => verbose && console.log('session-up', JSON.stringify(s)));
server.on('session-down', (s) => verbose && console.log('session-down', s.tsih, s.reason));
server.on('login-failed', (e) => console.log('login-failed', JSON.stringify(e)));
await server.start();
console.log(`serving ${IQN} on 127.0.0.1:${port1},1 and 127.0.0.1:${port2},2 (pid ${process.pid})`);
const stop = async () => {
  await server.stop({ logoutTimeoutMs: 1000 });
  process.exit(0);
};
// SIGUSR1 drops every session (a connection fault for reconnect tests; data survives).
process.on('SIGUSR1', () => {
  for (const s of server.sessions()) server.dropSession(s.tsih);
});
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
