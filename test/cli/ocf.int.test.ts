/**
 * ClusterLabs' resource agents (Debian resource-agents) iSCSITarget and iSCSILogicalUnit with
 * implementation=tgt pass ocf-tester against lunar, with `tgtadm` on PATH running lunar's front end.
 * Skipped when ocf-tester or the agents are not installed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, ensureBuilt, haveBinary, tmp } from './daemon.js';

const AGENTS = '/usr/lib/ocf/resource.d/heartbeat';
const ready =
  haveBinary('ocf-tester') &&
  existsSync(join(AGENTS, 'iSCSITarget')) &&
  existsSync(join(AGENTS, 'iSCSILogicalUnit'));
const IQN = 'iqn.2026-11.com.example:ocf';

describe.skipIf(!ready)('OCF resource agents (implementation=tgt) against lunar', () => {
  let d: Daemon;
  let path: string;
  beforeAll(async () => {
    ensureBuilt();
    d = new Daemon(tmp('lunar-ocf-'), 3445);
    await d.start();
    path = `${d.wrapperDir()}:${process.env['PATH'] ?? ''}`;
  }, 120_000);
  afterAll(async () => d?.kill('SIGKILL'));

  const ocfTester = (args: string[]) =>
    spawnSync('ocf-tester', args, {
      encoding: 'utf8',
      env: { ...d.env, PATH: path, OCF_ROOT: '/usr/lib/ocf' },
      timeout: 600_000,
    });

  it('iSCSITarget with CHAP, an ACL and iSCSI parameters', () => {
    const r = ocfTester([
      '-n',
      'tgt1',
      '-o',
      'implementation=tgt',
      '-o',
      `iqn=${IQN}`,
      '-o',
      'tid=1',
      '-o',
      'incoming_username=ocfuser',
      '-o',
      'incoming_password=ocfsecret1234',
      '-o',
      'allowed_initiators=127.0.0.1 10.0.0.0/8',
      '-o',
      'additional_parameters=MaxRecvDataSegmentLength=65536 HeaderDigest=CRC32C',
      join(AGENTS, 'iSCSITarget'),
    ]);
    expect(r.stdout + r.stderr).toMatch(/iSCSITarget passed all tests/);
    // ocf-tester leaves the resource started: lunar has it, saved
    const t = JSON.parse(d.lunar(['target', 'show', '1', '--json']).stdout) as {
      name: string;
      accounts: unknown;
      params: unknown;
    };
    expect(t).toMatchObject({
      name: IQN,
      accounts: [{ user: 'ocfuser', outgoing: false }],
      params: { MaxRecvDataSegmentLength: '65536' },
    });
  });

  it('iSCSILogicalUnit with scsi_id and scsi_sn', () => {
    const img = join(d.dir, 'lu.img');
    writeFileSync(img, '');
    truncateSync(img, 16 << 20);
    const r = ocfTester([
      '-n',
      'lu1',
      '-o',
      'implementation=tgt',
      '-o',
      `target_iqn=${IQN}`,
      '-o',
      'lun=1',
      '-o',
      `path=${img}`,
      '-o',
      'scsi_sn=SN0001',
      '-o',
      'scsi_id=ocf-lu-1',
      join(AGENTS, 'iSCSILogicalUnit'),
    ]);
    expect(r.stdout + r.stderr).toMatch(/iSCSILogicalUnit passed all tests/);
    const luns = JSON.parse(d.lunar(['lun', 'list', '1', '--json']).stdout) as unknown[];
    expect(luns).toMatchObject([{ lun: 1, path: img, serial: 'SN0001', scsiId: 'ocf-lu-1' }]);
  });
});
