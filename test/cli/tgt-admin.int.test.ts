/**
 * lunar-tgt-admin against a live lunar: -e creates what targets.conf describes, --update changes
 * a running target keeping its unchanged LUNs (same LU ids), --delete refuses a target in use
 * unless -f, --dump prints it back, -s shows it as tgtadm does.
 */
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestInitiator } from '../iscsi/initiator.js';
import { Daemon, ensureBuilt, tmp } from './daemon.js';

describe('lunar-tgt-admin', () => {
  let d: Daemon;
  let conf: string;
  const img = (n: string) => join(d.dir, n);
  beforeAll(async () => {
    ensureBuilt();
    d = new Daemon(tmp('lunar-tgtadmin-'), 3446);
    await d.start();
    for (const n of ['a.img', 'b.img', 'c.img']) {
      writeFileSync(img(n), '');
      truncateSync(img(n), 8 << 20);
    }
    conf = join(d.dir, 'targets.conf');
  }, 120_000);
  afterAll(async () => d?.kill('SIGKILL'));

  type View = {
    tid: number;
    name: string;
    luns: { lun: number; path: string; id: string; serial?: string; writeCache: boolean }[];
    acl: unknown;
    accounts: unknown;
  };
  const targets = () => JSON.parse(d.lunar(['target', 'list', '--json']).stdout) as View[];

  it('-e creates the targets of the file; running ones are left alone', () => {
    writeFileSync(
      conf,
      `default-driver iscsi
<target iqn.2026-11.com.example:conf1>
    backing-store ${img('a.img')}
    <backing-store ${img('b.img')}>
        scsi_sn SN-B
        lun 5
    </backing-store>
    write-cache off
    incominguser confuser confsecret1234
</target>
<target iqn.2026-11.com.example:conf2>
    direct-store ${img('c.img')}
    initiator-address 127.0.0.1
</target>
`,
    );
    const r = d.tgtAdmin(['-e', '-c', conf]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const ts = targets();
    expect(ts.map((t) => [t.tid, t.name])).toEqual([
      [1, 'iqn.2026-11.com.example:conf1'],
      [2, 'iqn.2026-11.com.example:conf2'],
    ]);
    expect(ts[0]?.luns).toMatchObject([
      { lun: 1, path: img('a.img'), writeCache: false },
      { lun: 5, path: img('b.img'), serial: 'SN-B', writeCache: false },
    ]);
    expect(ts[0]?.acl).toEqual({ initiators: 'ALL', addresses: 'ALL' });
    expect(ts[0]?.accounts).toEqual([{ user: 'confuser', outgoing: false }]);
    expect(ts[1]?.acl).toEqual({ initiators: 'ALL', addresses: ['127.0.0.1'] });
    // again: nothing to do, nothing changes
    expect(d.tgtAdmin(['-e', '-c', conf]).status).toBe(0);
    expect(targets()).toEqual(ts);
  });

  it('-s and --dump', () => {
    const show = d.tgtAdmin(['-s']);
    expect(show.stdout).toMatch(/^Target 1: iqn\.2026-11\.com\.example:conf1$/m);
    const dump = d.tgtAdmin(['--dump']);
    expect(dump.stdout).toContain('<target iqn.2026-11.com.example:conf2>');
    expect(dump.stdout).toContain(`\t<backing-store ${img('c.img')}>`);
  });

  it('--update keeps unchanged LUNs (same LU ids) and applies the rest', () => {
    const before = targets()[0];
    writeFileSync(
      conf,
      `<target iqn.2026-11.com.example:conf1>
    backing-store ${img('a.img')}
    write-cache off
    initiator-address 10.0.0.0/8
</target>
`,
    );
    const r = d.tgtAdmin(['--update', 'tid=1', '-c', conf, '-v']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/tgtadm --lld iscsi --op delete --mode logicalunit --tid 1 --lun 5/);
    const after = targets()[0];
    expect(after?.luns.map((l) => [l.lun, l.id])).toEqual([[1, before?.luns[0]?.id]]);
    expect(after?.acl).toEqual({ initiators: 'ALL', addresses: ['10.0.0.0/8'] });
    expect(after?.accounts).toEqual([]);
  });

  it('--delete refuses a target in use unless -f', async () => {
    const c = await TestInitiator.connect(3446);
    await c.login({ targetName: 'iqn.2026-11.com.example:conf2' });
    const refused = d.tgtAdmin(['--delete', 'iqn.2026-11.com.example:conf2']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(
      /target 2 \(iqn\.2026-11\.com\.example:conf2\) is in use by iqn\.2026-11\.test:init \(127\.0\.0\.1\); use --force/,
    );
    const forced = d.tgtAdmin(['--delete', 'tid=2', '-f']);
    expect(forced.status).toBe(0);
    expect(targets().map((t) => t.tid)).toEqual([1]);
    c.close();
  });

  it('a wrong file names the file and line and changes nothing', () => {
    writeFileSync(conf, '<target iqn.2026-11.com.example:bad>\n  colour blue\n</target>\n');
    const before = targets();
    const r = d.tgtAdmin(['-e', '-c', conf]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      `tgt-admin: ${conf}:2: unknown option "colour" in <target iqn.2026-11.com.example:bad>\n`,
    );
    expect(targets()).toEqual(before);
  });
});
