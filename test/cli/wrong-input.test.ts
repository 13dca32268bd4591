/**
 * Wrong input across the control plane, the lunar CLI, the tgtadm front end and targets.conf:
 * every case must give a message that names the problem, and a refused change must leave the
 * config file as it was (the config file's own cases are in test/admin/config.test.ts).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/admin/config.js';
import { ControlError, Controller, checkTargetParam } from '../../src/admin/control.js';
import type { Runtime } from '../../src/admin/runtime.js';
import { parseAssignments, parseLunNumber, targetPatch } from '../../src/cli/commands.js';
import { main } from '../../src/cli/main.js';
import { parseTargetsConf } from '../../src/cli/tgt-admin.js';
import { lunParams, tgtadmMain } from '../../src/cli/tgtadm.js';
import { silentLogger } from '../../src/util/log.js';

const BASE = `# kept comment
portals:
  - listen: 127.0.0.1:3260
targets:
  - tid: 1
    name: iqn.2026-11.com.example:one
    acl: { initiators: ALL, addresses: [127.0.0.1] }
    luns:
      - lun: 0
        backstore: memory
        size: 1M
        id: "00000000000000aa"
accounts:
  - user: alice
    secret: alicesecret123
`;

/** A runtime that accepts every change (the control plane's checks are what is tested). */
const fakeRuntime = (): Runtime =>
  ({
    server: { sessions: () => [], portals: () => [], dropSession: () => false },
    backstores: new Map(),
    stop: async () => undefined,
    reconcile: async () => undefined,
    scsiTarget: () => undefined,
    setOffline: () => undefined,
  }) as unknown as Runtime;

describe('control plane: refused changes name the problem and save nothing', () => {
  let file: string;
  let c: Controller;
  beforeEach(() => {
    const dir = mkdtempSync(join(tmpdir(), 'lunar-wrong-'));
    file = join(dir, 'lunar.yaml');
    writeFileSync(file, BASE);
    c = new Controller({ loaded: loadConfig(file), runtime: fakeRuntime(), dataDir: dir, log: silentLogger });
  });

  const cases: [string, (c: Controller) => Promise<unknown>, string, RegExp][] = [
    ['target without a name', (c) => c.createTarget({ name: '' }), 'invalid', /needs a name/],
    [
      'target name not an IQN',
      (c) => c.createTarget({ name: 'disk1' }),
      'invalid',
      /targets\[1\]\.name: must match pattern/,
    ],
    [
      'target name with a space',
      (c) => c.createTarget({ name: 'iqn.2026-11.com.example:a b' }),
      'invalid',
      /name: must match pattern/,
    ],
    [
      'target exists',
      (c) => c.createTarget({ name: 'iqn.2026-11.com.example:one' }),
      'exists',
      /already exists/,
    ],
    [
      'target exists (other case)',
      (c) => c.createTarget({ name: 'IQN.2026-11.com.example:ONE' }),
      'exists',
      /already exists/,
    ],
    [
      'tid taken',
      (c) => c.createTarget({ name: 'iqn.2026-11.com.example:two', tid: 1 }),
      'exists',
      /tid 1 is already used by iqn\.2026-11\.com\.example:one/,
    ],
    [
      'tid zero',
      (c) => c.createTarget({ name: 'iqn.2026-11.com.example:two', tid: 0 }),
      'invalid',
      /tid 0 must be a whole number/,
    ],
    ['delete unknown tid', (c) => c.deleteTarget(9), 'not_found', /no target with tid 9/],
    [
      'delete unknown name',
      (c) => c.deleteTarget('iqn.2026-11.com.example:nine'),
      'not_found',
      /no target iqn\.2026-11\.com\.example:nine/,
    ],
    [
      'unknown iSCSI key',
      (c) => c.updateTarget(1, { params: { MaxBurst: '1' } }),
      'invalid',
      /unknown target parameter "MaxBurst"/,
    ],
    [
      'iSCSI number out of range',
      (c) => c.updateTarget(1, { params: { MaxBurstLength: '100' } }),
      'invalid',
      /MaxBurstLength: "100" is not a number in 512\.\.16777215/,
    ],
    [
      'iSCSI number not a number',
      (c) => c.updateTarget(1, { params: { MaxRecvDataSegmentLength: 'abc' } }),
      'invalid',
      /MaxRecvDataSegmentLength: "abc"/,
    ],
    [
      'iSCSI boolean',
      (c) => c.updateTarget(1, { params: { ImmediateData: 'yes' } }),
      'invalid',
      /ImmediateData: "yes" must be Yes or No/,
    ],
    [
      'digest',
      (c) => c.updateTarget(1, { params: { HeaderDigest: 'MD5' } }),
      'invalid',
      /HeaderDigest: "MD5" must be None, CRC32C/,
    ],
    [
      'queue depth',
      (c) => c.updateTarget(1, { queueDepth: 0 }),
      'invalid',
      /queue depth 0 must be 1\.\.4096/,
    ],
    [
      'state',
      (c) => c.updateTarget(1, { state: 'gone' as 'ready' }),
      'invalid',
      /state "gone" must be ready or offline/,
    ],
    [
      'redirect without port range',
      (c) => c.updateTarget(1, { redirect: { to: '10.0.0.1:99999' } }),
      'invalid',
      /redirect\.to: .*port must be 1\.\.65535/,
    ],
    [
      'LUN out of range',
      (c) => c.addLun(1, { lun: 20000, backstore: 'memory', size: '1M' }),
      'invalid',
      /LUN 20000 must be a whole number 0\.\.16383/,
    ],
    [
      'LUN exists',
      (c) => c.addLun(1, { lun: 0, backstore: 'memory', size: '1M' }),
      'exists',
      /already has LUN 0/,
    ],
    ['file LUN without path', (c) => c.addLun(1, { lun: 1 }), 'invalid', /needs a path/],
    [
      'missing backing file',
      (c) => c.addLun(1, { lun: 1, path: '/nonexistent/disk.img' }),
      'invalid',
      /\/nonexistent\/disk\.img does not exist/,
    ],
    [
      'backing store is a directory',
      (c) => c.addLun(1, { lun: 1, path: '/tmp' }),
      'invalid',
      /\/tmp is a directory/,
    ],
    [
      'memory LUN without size',
      (c) => c.addLun(1, { lun: 1, backstore: 'memory' }),
      'invalid',
      /memory LUN needs a size/,
    ],
    [
      'memory LUN with a path',
      (c) => c.addLun(1, { lun: 1, backstore: 'memory', path: 'x', size: '1M' }),
      'invalid',
      /memory LUN has no path/,
    ],
    [
      'bad size',
      (c) => c.addLun(1, { lun: 1, backstore: 'memory', size: '12Q' }),
      'invalid',
      /size "12Q" is not a size/,
    ],
    [
      'size not a block multiple',
      (c) => c.addLun(1, { lun: 1, backstore: 'memory', size: 1000 }),
      'invalid',
      /1000 bytes is not a multiple of the block size 512/,
    ],
    [
      'vendor too long',
      (c) => c.addLun(1, { lun: 1, backstore: 'memory', size: '1M', vendor: 'ABCDEFGHIJ' }),
      'invalid',
      /vendor: must NOT have more than 8 characters/,
    ],
    ['delete missing LUN', (c) => c.deleteLun(1, 5), 'not_found', /has no LUN 5/],
    [
      'LUN field not changeable',
      (c) => c.updateLun(1, 0, { size: '2M' } as never),
      'invalid',
      /LUN field "size" cannot be changed/,
    ],
    [
      'ACL address not an address',
      (c) => c.bindAcl(1, { address: '300.1.1.1' }),
      'invalid',
      /"300\.1\.1\.1" is not an IP address or CIDR/,
    ],
    [
      'ACL bad prefix',
      (c) => c.bindAcl(1, { address: '10.0.0.0/40' }),
      'invalid',
      /not an IP address or CIDR/,
    ],
    [
      'ACL entry twice',
      (c) => c.bindAcl(1, { address: '127.0.0.1' }),
      'exists',
      /already has ACL entry 127\.0\.0\.1/,
    ],
    [
      'ACL entry missing',
      (c) => c.unbindAcl(1, { address: '10.1.1.1' }),
      'not_found',
      /has no ACL entry 10\.1\.1\.1/,
    ],
    [
      'ACL nothing given',
      (c) => c.bindAcl(1, {}),
      'invalid',
      /needs an initiator address or an initiator name/,
    ],
    [
      'CHAP secret too short',
      (c) => c.createAccount('bob', 'short'),
      'invalid',
      /accounts\[1\]\.secret: must NOT have fewer than 12 characters/,
    ],
    [
      'CHAP user with a space',
      (c) => c.createAccount('bob smith', 'longenoughsecret'),
      'invalid',
      /accounts\[1\]\.user: must match pattern/,
    ],
    [
      'account exists',
      (c) => c.createAccount('alice', 'anothersecret12'),
      'exists',
      /account alice already exists/,
    ],
    ['account missing', (c) => c.deleteAccount('bob'), 'not_found', /no account bob/],
    ['bind missing account', (c) => c.bindAccount(1, 'bob'), 'not_found', /no account bob/],
    [
      'unbind account not bound',
      (c) => c.unbindAccount(1, 'alice'),
      'not_found',
      /account alice is not bound/,
    ],
    ['portal not host:port', (c) => c.addPortal('127.0.0.1:http'), 'invalid', /port must be 1\.\.65535/],
    [
      'portal exists',
      (c) => c.addPortal('127.0.0.1:3260'),
      'exists',
      /portal 127\.0\.0\.1:3260 already exists/,
    ],
    [
      'remove unknown portal',
      (c) => c.removePortal('127.0.0.1:9999'),
      'not_found',
      /no portal 127\.0\.0\.1:9999/,
    ],
    ['remove last portal', (c) => c.removePortal('127.0.0.1:3260'), 'invalid', /last portal/],
  ];

  it.each(cases)('%s', async (_name, act, code, message) => {
    const err = await act(c).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ControlError);
    expect((err as ControlError).code).toBe(code);
    expect((err as ControlError).message).toMatch(message);
    expect(readFileSync(file, 'utf8')).toBe(BASE);
  });

  it('a hand edit made while lunar runs is not overwritten', async () => {
    const edited = `${BASE}# edited by hand\n`;
    writeFileSync(file, edited);
    await expect(c.createTarget({ name: 'iqn.2026-11.com.example:two' })).rejects.toThrow(
      /was edited by hand while lunar runs; not overwriting it/,
    );
    expect(readFileSync(file, 'utf8')).toBe(edited);
  });

  it('a good change keeps the comments and the order of the file', async () => {
    await c.createTarget({ name: 'iqn.2026-11.com.example:two' });
    const text = readFileSync(file, 'utf8');
    expect(text.startsWith('# kept comment\nportals:')).toBe(true);
    expect(text).toMatch(/- tid: 2\n\s+name: iqn\.2026-11\.com\.example:two/);
  });
});

describe('lunar CLI: wrong input gives exit 2 and a message naming it', () => {
  let err: string[];
  beforeEach(() => {
    err = [];
    process.env['LUNAR_SOCKET'] = '/nonexistent/lunar.sock';
    vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => {
      err.push(String(s));
      return true;
    });
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  });
  afterEach(() => vi.restoreAllMocks());

  const cases: [string[], RegExp][] = [
    [['target', 'new', 'iqn.2026-11.x:y', '--tid', 'abc'], /--tid "abc" must be a whole number/],
    [['target', 'new'], /missing required argument 'name'/],
    [['target', 'frobnicate'], /unknown command 'frobnicate'/],
    [['lun', 'new', '1', 'x'], /LUN "x" must be a whole number 0\.\.16383/],
    [
      ['lun', 'new', '1', '1', '--backstore', 'tape'],
      /argument 'tape' is invalid\. Allowed choices are file, memory, null/,
    ],
    [['lun', 'new', '1', '1', '--block-size', '1024'], /Allowed choices are 512, 4096/],
    [['lun', 'delete', '1', '-3'], /unknown option '-3'|LUN "-3"/],
    [['lun', 'set', '1', '1', 'readOnly=maybe'], /readOnly=maybe: must be true or false/],
    [['lun', 'set', '1', '1', 'serial'], /"serial" is not KEY=VALUE/],
    [['target', 'set', '1', 'MaxQueueCmd=lots'], /MaxQueueCmd=lots: must be a number/],
    [
      ['target', 'set', '1', 'redirect=10.0.0.1:3260,sometimes'],
      /redirect kind "sometimes" must be permanent or temporary/,
    ],
    [['acl', 'add', '1'], /give exactly one of --address or --initiator/],
    [
      ['acl', 'add', '1', '--address', '1.2.3.4', '--initiator', 'iqn.x'],
      /give exactly one of --address or --initiator/,
    ],
    [['session', 'drop', 'abc'], /session "abc" is not a TSIH number/],
    [['portal', 'add', '127.0.0.1:3262', '--group', 'one'], /--group "one" is not a number/],
    [['stop', '--timeout', 'soon'], /--timeout "soon" is not a number of seconds/],
    [['status', '--bogus'], /unknown option '--bogus'/],
  ];
  it.each(cases)('lunar %j', async (argv, message) => {
    const code = await main(argv);
    expect(code).toBe(2);
    expect(err.join('')).toMatch(message);
  });

  it('helpers', () => {
    expect(() => parseAssignments(['=x'])).toThrow(/"=x" is not KEY=VALUE/);
    expect(() => parseLunNumber('16384')).toThrow(/0\.\.16383/);
    expect(() => targetPatch({ redirect: '' })).toThrow(/redirect=HOST:PORT/);
    expect(() => checkTargetParam('MaxConnections', '0')).toThrow(
      /MaxConnections: "0" is not a number in 1\.\.65535/,
    );
  });
});

describe('tgtadm front end: lunar-specific refusals name the problem on a second line', () => {
  const run = async (argv: string[]) => {
    process.env['LUNAR_SOCKET'] = '/nonexistent/lunar.sock';
    const err: string[] = [];
    const rc = await tgtadmMain(argv, { out: () => undefined, err: (s) => err.push(s) });
    return { rc, err: err.join('') };
  };
  const cases: [string[], RegExp][] = [
    [
      ['--lld', 'iser', '--op', 'show', '--mode', 'target'],
      /can't find the driver\n {2}\(lunar: lunar serves iSCSI only/,
    ],
    [['--lld', 'iscsi', '--op', 'show', '--mode', 'target', '--tid', '-1'], /-t argument value '-1' invalid/],
    [['--lld', 'iscsi', '--op', 'show', '--mode', 'target', '--lun=x'], /-l argument value 'x' invalid/],
    [['--lld', 'iscsi', '--op', 'show', '--mode', 'target', '--t', '1'], /option '--t' is ambiguous/],
    [
      ['--lld', 'iscsi', '--op', 'show', '--mode', 'target', '--force=1'],
      /option '--force' doesn't allow an argument/,
    ],
    [['--lld', 'iscsi', '--op', 'delete', '--mode', 'account'], /'user' option is necessary/],
  ];
  it.each(cases)('tgtadm %j', async (argv, message) => {
    const r = await run(argv);
    expect(r.rc).toBe(22);
    expect(r.err).toMatch(message);
  });

  it('logical unit parameters', () => {
    expect(() => lunParams('readonly=yes')).toThrow(
      expect.objectContaining({ detail: 'readonly=yes: must be 0 or 1' }) as Error,
    );
    expect(() => lunParams('colour=blue')).toThrow(
      expect.objectContaining({
        detail: expect.stringMatching(/unknown logical unit parameter "colour"/) as string,
      }) as Error,
    );
  });
});

describe('targets.conf: errors name the file and line', () => {
  const cases: [string, string, RegExp][] = [
    [
      'unclosed target',
      '<target iqn.2026-11.x:a>\nbacking-store /tmp/a\n',
      /t\.conf:1: <target iqn\.2026-11\.x:a> is never closed/,
    ],
    [
      'nested target',
      '<target iqn.2026-11.x:a>\n<target iqn.2026-11.x:b>\n',
      /t\.conf:2: <target iqn\.2026-11\.x:b> inside <target iqn\.2026-11\.x:a>/,
    ],
    ['stray close', '</target>\n', /t\.conf:1: <\/target> without <target>/],
    [
      'store outside target',
      '<backing-store /tmp/a>\n</backing-store>\n',
      /t\.conf:1: <backing-store> outside a <target> block/,
    ],
    [
      'unknown target option',
      '<target iqn.2026-11.x:a>\n  colour blue\n</target>\n',
      /t\.conf:2: unknown option "colour" in <target iqn\.2026-11\.x:a>/,
    ],
    [
      'unknown LUN option',
      '<target iqn.2026-11.x:a>\n<backing-store /tmp/a>\n  speed fast\n</backing-store>\n</target>\n',
      /t\.conf:3: unknown option "speed" in <backing-store \/tmp\/a>/,
    ],
    [
      'bad write-cache',
      '<target iqn.2026-11.x:a>\n  write-cache maybe\n</target>\n',
      /t\.conf:2: write-cache maybe: must be on or off/,
    ],
    [
      'incominguser without password',
      '<target iqn.2026-11.x:a>\n  incominguser bob\n</target>\n',
      /t\.conf:2: incominguser takes a user and a password/,
    ],
    [
      'bad lun',
      '<target iqn.2026-11.x:a>\n<backing-store /tmp/a>\n  lun one\n</backing-store>\n</target>\n',
      /t\.conf:2: lun one: must be a number/,
    ],
    [
      'bad target name',
      '<target disk1>\n</target>\n',
      /t\.conf:1: target name "disk1" must start with iqn\., eui\. or naa\./,
    ],
    [
      'target twice',
      '<target iqn.2026-11.x:a>\n</target>\n<target iqn.2026-11.x:a>\n</target>\n',
      /t\.conf:3: target iqn\.2026-11\.x:a is defined twice/,
    ],
    ['other driver', 'default-driver iser\n', /t\.conf:1: default-driver iser: lunar serves iscsi only/],
    ['unknown global', 'colour blue\n', /t\.conf:1: unknown global option "colour"/],
    ['garbled tag', '<target>\n', /t\.conf:1: cannot read "<target>"/],
    [
      'unclosed store',
      '<target iqn.2026-11.x:a>\n<backing-store /tmp/a>\n</target>\n',
      /t\.conf:3: <\/target> while <backing-store \/tmp\/a> is open/,
    ],
  ];
  it.each(cases)('%s', (_n, text, message) => {
    expect(() => parseTargetsConf(text, 't.conf', () => [])).toThrow(message);
  });
});
