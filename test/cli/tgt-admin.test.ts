import { describe, expect, it } from 'vitest';
import type { TargetView } from '../../src/admin/control.js';
import {
  dumpTargets,
  numberLuns,
  parseTargetsConf,
  selectTargets,
  targetCommands,
  updateCommands,
} from '../../src/cli/tgt-admin.js';

const CONF = `# example in tgt's syntax
include /etc/tgt/temp/*.conf
default-driver iscsi

<target iqn.2008-09.com.example:server.target1>
    backing-store /dev/LVM/somedevice
</target>

<target iqn.2008-09.com.example:server.target4>
    direct-store /dev/sdb	# Becomes LUN 3
    backing-store /dev/sdc	# Becomes LUN 1
    direct-store /dev/sdd	# Becomes LUN 4
    backing-store /dev/sde	# Becomes LUN 2
</target>

<target iqn.2008-09.com.example:server.target5>
    <direct-store /dev/sdd>
        vendor_id VENDOR1
        lun 1
    </direct-store>
    <backing-store /dev/sdb1>
        vendor_id back1
        scsi_sn SERIAL
        write-cache on
    </backing-store>
    <backing-store /dev/sdd1>
        vendor_id back2
        lun 15
    </backing-store>
    write-cache off
    scsi_sn multipath-10
    initiator-address 192.168.100.1
    initiator-address 192.168.200.5
    initiator-name iqn.1994-05.com.redhat:node1
    incominguser user1 secretpass12
    incominguser user2 secretpass23
    outgoinguser userA secretpassA12
    MaxRecvDataSegmentLength 65536
</target>
`;

const noIncludes = () => [];

describe('targets.conf', () => {
  const conf = parseTargetsConf(CONF, '/etc/tgt/targets.conf', noIncludes);

  it('reads targets, stores, sub-blocks and options', () => {
    expect(conf.targets.map((t) => t.name)).toEqual([
      'iqn.2008-09.com.example:server.target1',
      'iqn.2008-09.com.example:server.target4',
      'iqn.2008-09.com.example:server.target5',
    ]);
    const t5 = conf.targets[2];
    expect(t5?.initiatorAddresses).toEqual(['192.168.100.1', '192.168.200.5']);
    expect(t5?.incoming).toEqual([
      { user: 'user1', password: 'secretpass12' },
      { user: 'user2', password: 'secretpass23' },
    ]);
    expect(t5?.outgoing).toEqual({ user: 'userA', password: 'secretpassA12' });
    expect(t5?.opts).toMatchObject({
      'write-cache': 'off',
      scsi_sn: 'multipath-10',
      MaxRecvDataSegmentLength: '65536',
    });
  });

  it('numbers LUNs as tgt-admin does: backing-store first, then direct-store, explicit lun wins', () => {
    const t4 = conf.targets[1];
    if (!t4) throw new Error('no target4');
    expect(numberLuns(t4).map((l) => [l.lun, l.entry.path])).toEqual([
      [1, '/dev/sdc'],
      [2, '/dev/sde'],
      [3, '/dev/sdb'],
      [4, '/dev/sdd'],
    ]);
    const t5 = conf.targets[2];
    if (!t5) throw new Error('no target5');
    expect(numberLuns(t5).map((l) => [l.lun, l.entry.path])).toEqual([
      [1, '/dev/sdd'],
      [2, '/dev/sdb1'],
      [15, '/dev/sdd1'],
    ]);
  });

  it('turns a target into tgtadm requests', () => {
    const t5 = conf.targets[2];
    if (!t5) throw new Error('no target5');
    const cmds = targetCommands(t5, 7).map((c) => c.join(' '));
    expect(cmds[0]).toBe(
      '--lld iscsi --op new --mode target --tid 7 -T iqn.2008-09.com.example:server.target5',
    );
    // the sub-block's write-cache on beats the target's write-cache off
    expect(cmds).toContain('--lld iscsi --op new --mode logicalunit --tid 7 --lun 2 -b /dev/sdb1');
    expect(cmds).toContain(
      '--lld iscsi --op new --mode logicalunit --tid 7 --lun 15 -b /dev/sdd1 --bsoflags sync',
    );
    expect(cmds).toContain(
      '--lld iscsi --op update --mode logicalunit --tid 7 --lun 2 --params scsi_sn=SERIAL,vendor_id=back1',
    );
    expect(cmds).toContain(
      '--lld iscsi --op update --mode logicalunit --tid 7 --lun 15 --params scsi_sn=multipath-10,vendor_id=back2',
    );
    expect(cmds).toContain(
      '--lld iscsi --op update --mode target --tid 7 --name MaxRecvDataSegmentLength --value 65536',
    );
    expect(cmds).toContain('--lld iscsi --op bind --mode account --tid 7 --user userA --outgoing');
    expect(cmds).toContain('--lld iscsi --op bind --mode target --tid 7 -I 192.168.200.5');
    expect(cmds).toContain('--lld iscsi --op bind --mode target --tid 7 -Q iqn.1994-05.com.redhat:node1');
    expect(cmds).not.toContain('--lld iscsi --op bind --mode target --tid 7 -I ALL');
    // no initiator-address/name: open to ALL, as tgt-admin binds it
    const t1 = conf.targets[0];
    if (!t1) throw new Error('no target1');
    expect(targetCommands(t1, 1).map((c) => c.join(' '))).toContain(
      '--lld iscsi --op bind --mode target --tid 1 -I ALL',
    );
  });

  it('--update keeps LUNs whose path did not change (their LU ids stay)', () => {
    const t1 = conf.targets[0];
    if (!t1) throw new Error('no target1');
    const live: TargetView = {
      tid: 3,
      name: t1.name,
      state: 'ready',
      acl: { initiators: 'ALL', addresses: ['ALL', '10.0.0.1'] },
      accounts: [{ user: 'old', outgoing: false }],
      params: {},
      luns: [
        {
          lun: 1,
          backstore: 'file',
          path: '/dev/LVM/somedevice',
          blockSize: 512,
          readOnly: false,
          removable: false,
          direct: false,
          writeCache: true,
          id: 'aaaaaaaaaaaaaaaa',
          bytes: 0,
          online: true,
        },
        {
          lun: 2,
          backstore: 'file',
          path: '/dev/gone',
          blockSize: 512,
          readOnly: false,
          removable: false,
          direct: false,
          writeCache: true,
          id: 'bbbbbbbbbbbbbbbb',
          bytes: 0,
          online: true,
        },
      ],
      sessions: [],
    };
    expect(updateCommands(t1, live).map((c) => c.join(' '))).toEqual([
      '--lld iscsi --op delete --mode logicalunit --tid 3 --lun 2',
      '--lld iscsi --op unbind --mode target --tid 3 -I 10.0.0.1',
      '--lld iscsi --op unbind --mode account --tid 3 --user old',
    ]);
  });

  it('selects targets by ALL, tid=N or name', () => {
    const ts = [
      { name: 'iqn.a:1', tid: 1 },
      { name: 'iqn.a:2', tid: 2 },
    ];
    expect(selectTargets('ALL', ts)).toHaveLength(2);
    expect(selectTargets('tid=2', ts)).toEqual([{ name: 'iqn.a:2', tid: 2 }]);
    expect(selectTargets('iqn.a:1', ts)).toEqual([{ name: 'iqn.a:1', tid: 1 }]);
    expect(selectTargets('tid=9', ts)).toEqual([]);
  });

  it('--dump writes what it reads back', () => {
    const view: TargetView = {
      tid: 1,
      name: 'iqn.2026-11.com.example:d',
      state: 'ready',
      acl: { initiators: ['iqn.1994-05.com.redhat:n1'], addresses: ['10.0.0.0/8'] },
      accounts: [{ user: 'u1', outgoing: false }],
      params: { MaxBurstLength: '131072' },
      luns: [
        {
          lun: 1,
          backstore: 'file',
          path: '/tmp/x.img',
          blockSize: 512,
          readOnly: true,
          removable: false,
          direct: true,
          writeCache: false,
          id: '0123456789abcdef',
          serial: 'SN',
          bytes: 0,
          online: true,
        },
      ],
      sessions: [],
    };
    const text = dumpTargets([view], new Map([['u1', 'secretpass12']]));
    const back = parseTargetsConf(text, 'dump.conf', noIncludes).targets[0];
    expect(back?.name).toBe(view.name);
    expect(back?.luns[0]).toMatchObject({
      path: '/tmp/x.img',
      opts: { lun: '1', scsi_sn: 'SN', readonly: '1', 'write-cache': 'off', bsoflags: 'direct' },
    });
    expect(back?.initiatorAddresses).toEqual(['10.0.0.0/8']);
    expect(back?.initiatorNames).toEqual(['iqn.1994-05.com.redhat:n1']);
    expect(back?.incoming).toEqual([{ user: 'u1', password: 'secretpass12' }]);
    expect(back?.opts).toMatchObject({ MaxBurstLength: '131072' });
  });

  it('follows include lines', () => {
    const c = parseTargetsConf('include conf.d/*.conf\n', '/etc/tgt/targets.conf', (pattern, from) => {
      expect([pattern, from]).toEqual(['conf.d/*.conf', '/etc/tgt/targets.conf']);
      return [
        {
          file: '/etc/tgt/conf.d/a.conf',
          text: '<target iqn.2026-11.x:inc>\n backing-store /tmp/a\n</target>\n',
        },
      ];
    });
    expect(c.targets.map((t) => [t.name, t.file])).toEqual([['iqn.2026-11.x:inc', '/etc/tgt/conf.d/a.conf']]);
  });
});
