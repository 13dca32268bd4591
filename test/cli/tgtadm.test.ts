import { describe, expect, it } from 'vitest';
import type { LunView, SessionView, TargetView } from '../../src/admin/control.js';
import {
  formatAccounts,
  formatConnections,
  formatSystem,
  formatTargetParams,
  formatTargets,
  lunParams,
  parseTgtadmArgs,
  sizeMb,
  tgtadmMain,
  validateTgtadm,
} from '../../src/cli/tgtadm.js';

import { fixture, shape, tgtdErrorCases } from './tgt-shapes.js';

const lun = (over: Partial<LunView>): LunView => ({
  lun: 1,
  backstore: 'file',
  path: '/tmp/d1.img',
  blockSize: 512,
  readOnly: false,
  removable: false,
  direct: false,
  writeCache: true,
  id: '0123456789abcdef',
  bytes: 64 * 2 ** 20,
  online: true,
  ...over,
});

const session = (over: Partial<SessionView>): SessionView => ({
  tsih: 1,
  initiator: 'iqn.1994-05.com.redhat:client1',
  target: 'iqn.2011-01.com.chinaitv:three',
  tid: 3,
  address: '127.0.0.1',
  remote: '127.0.0.1:40000',
  portal: '127.0.0.1:3260',
  cid: 0,
  isid: '400001370000',
  headerDigest: 'None',
  dataDigest: 'None',
  ...over,
});

const target = (over: Partial<TargetView>): TargetView => ({
  tid: 1,
  name: 'iqn.2011-01.com.chinaitv:rhcs-storage',
  state: 'ready',
  acl: { initiators: 'ALL', addresses: [] },
  accounts: [],
  params: {},
  luns: [],
  sessions: [],
  ...over,
});

describe('tgtadm output shapes (captured from tgtd 1.0.85)', () => {
  it('--op show --mode target: same headings and field names, in the same order', () => {
    // The captured state: target 1 with LUNs 1 and 3 (3 offline, removable), two accounts (one
    // outgoing), ACL of an address, ALL and an initiator name; target 3 with one nexus and no LUN.
    const views = [
      target({
        tid: 1,
        luns: [lun({ lun: 1 }), lun({ lun: 3, online: false, removable: true, bytes: 0 })],
        accounts: [
          { user: 'alice', outgoing: false },
          { user: 'tgtout', outgoing: true },
        ],
        acl: { initiators: ['iqn.1994-05.com.redhat:abc'], addresses: ['192.168.1.231', 'ALL'] },
      }),
      target({
        tid: 3,
        name: 'iqn.2011-01.com.chinaitv:three',
        luns: [lun({ lun: 1 })],
        acl: { initiators: 'ALL', addresses: 'ALL' },
        sessions: [session({})],
      }),
    ];
    const want = fixture('tgtd-show-target.txt');
    expect(shape(formatTargets(views))).toEqual(shape(want));
  });

  it('target lines are what resource agents grep for', () => {
    const out = formatTargets([target({ tid: 7, luns: [lun({ lun: 2, path: '/dev/vg/lv' })] })]);
    expect(out).toMatch(/^Target 7: iqn\.2011-01\.com\.chinaitv:rhcs-storage$/m);
    expect(out).toMatch(/^\s+LUN: 2$/m);
    expect(out).toMatch(/^\s+Backing store path: \/dev\/vg\/lv$/m);
    expect(out).toMatch(/^ {8}LUN: 0\n {12}Type: controller$/m);
  });

  it('a session shows as I_T nexus / Connection that the iSCSITarget agent parses', () => {
    const out = formatTargets([target({ sessions: [session({ tsih: 5, cid: 2 })] })]);
    const block = out.slice(out.indexOf('I_T nexus information'), out.indexOf('LUN information'));
    expect(block).toMatch(/^\s+I_T nexus: 5$/m);
    expect(block).toMatch(/^\s+Connection: 2$/m);
    expect(block).toMatch(/^\s+IP Address: 127\.0\.0\.1$/m);
  });

  it('--op show --mode target --tid N: the same keys in the same order', () => {
    const want = fixture('tgtd-show-target-tid.txt');
    expect(shape(formatTargetParams(target({})))).toEqual(shape(want));
    const redirected = formatTargetParams(
      target({ redirect: { host: '10.0.0.1', port: 3261, permanent: false } }),
    );
    expect(redirected.trimEnd().split('\n').slice(-3)).toEqual([
      'RedirectAddress=10.0.0.1',
      'RedirectPort=3261',
      'RedirectReason=Temporary',
    ]);
    expect(formatTargetParams(target({ params: { HeaderDigest: 'CRC32C,None' }, queueDepth: 64 }))).toMatch(
      /^HeaderDigest=CRC32C$[\s\S]*^MaxQueueCmd=64$/m,
    );
  });

  it('--op show --mode conn', () => {
    expect(shape(formatConnections([session({})]))).toEqual(shape(fixture('tgtd-show-conn.txt')));
    expect(formatConnections([])).toBe('');
  });

  it('--op show --mode account', () => {
    expect(shape(formatAccounts(['tgtout', 'alice']))).toEqual(shape(fixture('tgtd-show-account.txt')));
  });

  it('--op show --mode sys keeps the section headings in order', () => {
    const heads = (t: string) => t.split('\n').filter((l) => /^\S.*:$/.test(l));
    expect(heads(formatSystem('ready'))).toEqual(heads(fixture('tgtd-show-sys.txt')));
    expect(formatSystem('offline')).toMatch(/^ {4}State: offline$/m);
  });

  it('Size is in decimal megabytes, truncated, as tgtadm prints it', () => {
    expect(sizeMb(64 * 2 ** 20)).toBe(67);
    expect(sizeMb(0)).toBe(0);
    expect(sizeMb(2 ** 30)).toBe(1073);
  });
});

describe('tgtadm argument parsing', () => {
  const cases: [string[], Record<string, string>][] = [
    [
      ['--lld', 'iscsi', '--op', 'new', '--mode', 'target', '--tid', '1', '-T', 'iqn.x:y'],
      { lld: 'iscsi', op: 'new', mode: 'target', tid: '1', targetname: 'iqn.x:y' },
    ],
    [
      ['-L', 'iscsi', '-o', 'new', '-m', 'target', '-t', '1', '-T', 'iqn.x:y'],
      { lld: 'iscsi', op: 'new', mode: 'target', tid: '1', targetname: 'iqn.x:y' },
    ],
    [
      ['--lld=iscsi', '--op=show', '--mode=target', '--tid=3'],
      { lld: 'iscsi', op: 'show', mode: 'target', tid: '3' },
    ],
    [['-Liscsi', '-oshow', '-mtarget', '-t3'], { lld: 'iscsi', op: 'show', mode: 'target', tid: '3' }],
    [['--mo', 'target', '--ti', '2', '--op', 'show'], { mode: 'target', tid: '2', op: 'show' }],
    [
      [
        '-o',
        'new',
        '-m',
        'logicalunit',
        '-t',
        '1',
        '-l',
        '2',
        '-b',
        '/dev/sdb1',
        '-E',
        'aio',
        '-f',
        'sync:direct',
        '-Y',
        'disk',
        '-y',
        '4096',
      ],
      {
        op: 'new',
        mode: 'logicalunit',
        tid: '1',
        lun: '2',
        backingStore: '/dev/sdb1',
        bstype: 'aio',
        bsoflags: 'sync:direct',
        deviceType: 'disk',
        blocksize: '4096',
      },
    ],
    [
      ['--op', 'bind', '--mode', 'target', '--tid', '1', '--initiator-address', '10.0.0.0/8'],
      { op: 'bind', mode: 'target', tid: '1', initiatorAddress: '10.0.0.0/8' },
    ],
    [
      ['--op', 'bind', '--mode', 'target', '--tid', '1', '-Q', 'iqn.1994-05.com.redhat:a'],
      { op: 'bind', mode: 'target', tid: '1', initiatorName: 'iqn.1994-05.com.redhat:a' },
    ],
    [
      ['--op', 'bind', '--mode', 'account', '--tid', '1', '--user', 'u', '--outgoing'],
      { op: 'bind', mode: 'account', tid: '1', user: 'u', outgoing: '1' },
    ],
    [
      ['--op', 'delete', '--mode', 'target', '--tid', '1', '--force'],
      { op: 'delete', mode: 'target', tid: '1', force: '1' },
    ],
    [
      ['--op', 'update', '--mode', 'target', '--tid', '1', '-n', 'HeaderDigest', '-v', 'CRC32C'],
      { op: 'update', mode: 'target', tid: '1', name: 'HeaderDigest', value: 'CRC32C' },
    ],
    [
      [
        '--op',
        'update',
        '--mode',
        'logicalunit',
        '--tid',
        '1',
        '--lun',
        '1',
        '--params',
        'scsi_sn=A,vendor_id=B',
      ],
      { op: 'update', mode: 'logicalunit', tid: '1', lun: '1', params: 'scsi_sn=A,vendor_id=B' },
    ],
    [
      ['--op', 'delete', '--mode', 'connection', '--tid=1', '--sid=2', '--cid=0'],
      { op: 'delete', mode: 'connection', tid: '1', sid: '2', cid: '0' },
    ],
    [['-C', '0', '--op', 'show', '--mode', 'sys'], { controlPort: '0', op: 'show', mode: 'sys' }],
    [
      ['--op', 'new', '--mode', 'account', '-u', 'alice', '-p', 'secretpass12'],
      { op: 'new', mode: 'account', user: 'alice', password: 'secretpass12' },
    ],
  ];
  it.each(cases)('%j', (argv, want) => {
    expect(parseTgtadmArgs(argv).opts).toEqual(want);
  });

  it('normalises the mode aliases', () => {
    expect(validateTgtadm(parseTgtadmArgs(['--op', 'show', '--mode', 'connection', '--tid', '1']))).toEqual({
      op: 'show',
      mode: 'conn',
    });
    expect(validateTgtadm(parseTgtadmArgs(['--op', 'show', '--mode', 'system']))).toEqual({
      op: 'show',
      mode: 'sys',
    });
  });

  it('maps --params of a logical unit', () => {
    expect(lunParams('scsi_id=abc,scsi_sn=SN1,vendor_id=ACME,product_id=Box,readonly=1')).toEqual({
      scsiId: 'abc',
      serial: 'SN1',
      vendor: 'ACME',
      product: 'Box',
      readOnly: true,
    });
  });
});

describe('tgtadm errors caught before the daemon is asked (same text and exit code as tgtadm)', () => {
  const io = () => {
    const err: string[] = [];
    return { err, io: { out: () => undefined, err: (s: string) => err.push(s) } };
  };
  const cases = tgtdErrorCases();
  it('has the captured table', () => expect(cases.length).toBeGreaterThanOrEqual(50));
  it.each(cases.map((c) => [c.args.join(' '), c] as const))('%s', async (_name, c) => {
    process.env['LUNAR_SOCKET'] = '/nonexistent/lunar.sock';
    const { err, io: sink } = io();
    const rc = await tgtadmMain(c.args, sink);
    const first = err.join('').split('\n')[0] ?? '';
    if (rc === 107) {
      // needs the daemon's state: checked against a live lunar in tgtadm.int.test.ts
      expect(first).toMatch(/^tgtadm: failed to send request hdr to tgt daemon/);
      return;
    }
    expect({ rc, first }).toEqual({ rc: c.rc, first: c.message });
  });
});
