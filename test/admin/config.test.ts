import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  availableMemory,
  ConfigError,
  DEFAULT_BUSY_POLL_US,
  defaultCacheSize,
  defaultConfigText,
  ensureLunIds,
  formatSize,
  loadConfig,
  parseConfig,
  parseHostPort,
  parseSize,
  saveConfig,
} from '../../src/admin/config.js';

const GOOD = `portals:
  - listen: 127.0.0.1:3260
    group: 1
targets:
  - name: iqn.2026-11.io.lunar:t1
    acl: { initiators: ALL, addresses: [127.0.0.1, 10.0.0.0/8] }
    luns:
      - lun: 0
        backstore: file
        path: d.img
        size: 1G
      - lun: 1
        backstore: memory
        size: 64M
        blockSize: 4096
`;

describe('parseConfig', () => {
  it('accepts a good file and applies defaults', () => {
    const { config } = parseConfig(GOOD, 'c.yaml');
    expect(config.portals).toEqual([{ host: '127.0.0.1', port: 3260, group: 1 }]);
    const t = config.targets[0]!;
    expect(t.acl.initiators).toBe('ALL');
    expect(t.luns[0]).toMatchObject({
      lun: 0,
      backstore: 'file',
      size: 2 ** 30,
      blockSize: 512,
      direct: true,
      writeCache: true,
      readOnly: false,
    });
    expect(t.luns[1]).toMatchObject({ blockSize: 4096, size: 64 * 2 ** 20 });
  });

  it('defaults the portal to loopback:3260', () => {
    const { config } = parseConfig('targets: []\n', 'c.yaml');
    expect(config.portals).toEqual([{ host: '127.0.0.1', port: 3260, group: 1 }]);
  });

  const lun = (extra: string) =>
    `targets:\n  - name: iqn.2026-11.io.lunar:t1\n    luns:\n      - lun: 0\n${extra}`;
  // Each bad input must give a message that names the problem (the regexp) and the line.
  const bad: [string, string, RegExp][] = [
    ['yaml syntax', 'targets: [\n', /c\.yaml:\d+: YAML syntax/],
    ['duplicate key', 'targets: []\ntargets: []\n', /YAML syntax/],
    ['unknown top field', 'targetz: []\n', /c\.yaml:1: \(top level\): unknown field "targetz"/],
    ['portals not a list', 'portals: 3260\n', /portals: must be array/],
    ['empty portals', 'portals: []\n', /portals: must NOT have fewer than 1 items/],
    ['portal without listen', 'portals:\n  - group: 1\n', /portals\[0\]: missing required field "listen"/],
    [
      'portal bad port',
      'portals:\n  - listen: 127.0.0.1:99999\n',
      /c\.yaml:2: portals\[0\]\.listen: .*port must be 1\.\.65535/,
    ],
    ['portal port text', 'portals:\n  - listen: 127.0.0.1:http\n', /port must be 1\.\.65535/],
    ['portal no host', 'portals:\n  - listen: ":3260"\n', /has no host/],
    ['portal twice', 'portals:\n  - listen: 127.0.0.1:3260\n  - listen: 127.0.0.1:3260\n', /listed twice/],
    ['portal group 0', 'portals:\n  - listen: 127.0.0.1\n    group: 0\n', /group: must be >= 1/],
    ['target without name', 'targets:\n  - luns: []\n', /targets\[0\]: missing required field "name"/],
    [
      'target bad iqn',
      'targets:\n  - name: mytarget\n    luns: []\n',
      /c\.yaml:2: targets\[0\]\.name: must match pattern/,
    ],
    ['target without luns', 'targets:\n  - name: iqn.2026-11.io.lunar:t1\n', /missing required field "luns"/],
    [
      'target twice',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    luns: []\n  - name: iqn.2026-11.io.lunar:T1\n    luns: []\n',
      /defined twice/,
    ],
    [
      'unknown portal group',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    portalGroups: [7]\n    luns: []\n',
      /no portal has group 7/,
    ],
    [
      'acl initiators number',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    acl: { initiators: 5 }\n    luns: []\n',
      /acl\.initiators/,
    ],
    [
      'acl bad address',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    acl: { addresses: [300.1.1.1] }\n    luns: []\n',
      /"300\.1\.1\.1" is not an IP address or CIDR/,
    ],
    [
      'acl bad cidr',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    acl: { addresses: [10.0.0.0/33] }\n    luns: []\n',
      /not an IP address or CIDR/,
    ],
    [
      'chap short secret',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    chap: { users: [{ user: a, secret: short }] }\n    luns: []\n',
      /secret: must NOT have fewer than 12 characters/,
    ],
    [
      'chap no user',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    chap: { users: [{ secret: Secret12345678 }] }\n    luns: []\n',
      /missing required field "user"/,
    ],
    [
      'redirect bad',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    redirect: { to: "host:0" }\n    luns: []\n',
      /redirect\.to: .*port must be/,
    ],
    [
      'queue depth 0',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    queueDepth: 0\n    luns: []\n',
      /queueDepth: must be >= 1/,
    ],
    ['lun missing backstore', lun(''), /luns\[0\]: missing required field "backstore"/],
    [
      'lun bad backstore',
      lun('        backstore: disk\n'),
      /backstore: must be one of "file", "memory", "null"/,
    ],
    [
      'lun negative',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    luns:\n      - lun: -1\n        backstore: null\n        size: 1M\n',
      /lun: must be >= 0/,
    ],
    [
      'lun too big',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    luns:\n      - lun: 20000\n        backstore: null\n        size: 1M\n',
      /lun: must be <= 16383/,
    ],
    [
      'file without path',
      lun('        backstore: file\n        size: 1G\n'),
      /luns\[0\]\.path: a file backstore needs a path/,
    ],
    [
      'memory with path',
      lun('        backstore: memory\n        path: x\n        size: 1G\n'),
      /only a file backstore has a path/,
    ],
    ['memory without size', lun('        backstore: memory\n'), /a memory backstore needs a size/],
    [
      'size garbage',
      lun('        backstore: memory\n        size: lots\n'),
      /size: must match pattern|size: must be integer/,
    ],
    ['size zero', lun('        backstore: memory\n        size: 0\n'), /size/],
    [
      'size not block multiple',
      lun('        backstore: memory\n        size: 1000\n'),
      /not a multiple of the block size 512/,
    ],
    [
      'block size 1024',
      lun('        backstore: memory\n        size: 1M\n        blockSize: 1024\n'),
      /blockSize: must be one of 512, 4096/,
    ],
    [
      'readOnly string',
      lun('        backstore: memory\n        size: 1M\n        readOnly: "yes"\n'),
      /readOnly: must be boolean/,
    ],
    [
      'bad id',
      lun('        backstore: memory\n        size: 1M\n        id: xyz\n'),
      /id: must match pattern/,
    ],
    [
      'vendor too long',
      lun('        backstore: memory\n        size: 1M\n        vendor: ABCDEFGHIJ\n'),
      /vendor: must NOT have more than 8 characters/,
    ],
    [
      'unknown lun field',
      lun('        backstore: memory\n        size: 1M\n        colour: red\n'),
      /unknown field "colour"/,
    ],
    [
      'lun twice',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    luns:\n      - { lun: 0, backstore: null, size: 1M }\n      - { lun: 0, backstore: null, size: 1M }\n',
      /LUN 0 is defined twice/,
    ],
    ['cache size garbage', 'cache: { size: lots }\n', /c\.yaml:1: cache\.size: must match pattern/],
    ['busy poll negative', 'busyPoll: -5\n', /c\.yaml:1: busyPoll: must be >= 0/],
    ['busy poll too long', 'busyPoll: 5000\n', /c\.yaml:1: busyPoll: must be <= 1000/],
    ['busy poll fraction', 'busyPoll: 2.5\n', /c\.yaml:1: busyPoll: must be integer/],
    ['busy poll text', 'busyPoll: fast\n', /c\.yaml:1: busyPoll: must be integer/],
    [
      'cache size below a page',
      'cache:\n  size: 100\n',
      /c\.yaml:2: cache\.size: 100 bytes is less than one 4096-byte page \(use 0 to turn the cache off\)/,
    ],
    ['cache size negative', 'cache: { size: -1 }\n', /cache\.size: must be >= 0/],
    ['cache not a map', 'cache: 1G\n', /c\.yaml:1: cache: must be object/],
    ['cache unknown field', 'cache: { sise: 1G }\n', /cache: unknown field "sise"/],
    [
      'lun cache not boolean',
      lun('        backstore: memory\n        size: 1M\n        cache: "yes"\n'),
      /luns\[0\]\.cache: must be boolean/,
    ],
    [
      'lun cache with the cache off',
      `cache: { size: 0 }\n${lun('        backstore: file\n        path: d.img\n        size: 1G\n        cache: true\n')}`,
      /c\.yaml:\d+: targets\[0\]\.luns\[0\]\.cache: the block cache is off/,
    ],
    [
      'replicated lun cached',
      lun('        backstore: replicated\n        resource: r0\n        cache: true\n'),
      /luns\[0\]\.cache: replicated LUNs are not cached/,
    ],
    [
      'same id twice',
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    luns:\n      - { lun: 0, backstore: null, size: 1M, id: 0123456789abcdef }\n      - { lun: 1, backstore: null, size: 1M, id: 0123456789ABCDEF }\n',
      /id: 0123456789abcdef is also used by/,
    ],
  ];
  it.each(bad)('rejects %s', (_name, text, re) => {
    let err: unknown;
    try {
      parseConfig(text, 'c.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as ConfigError).message;
    expect(msg).toMatch(re);
    expect(msg).toMatch(/^c\.yaml:\d+: /m);
  });

  it('reports the right line for a nested field', () => {
    const text =
      'targets:\n  - name: iqn.2026-11.io.lunar:t1\n    luns:\n      - lun: 0\n        backstore: memory\n        size: 1M\n        blockSize: 333\n';
    expect(() => parseConfig(text, 'c.yaml')).toThrow(/c\.yaml:7: targets\[0\]\.luns\[0\]\.blockSize/);
  });
});

describe('block cache settings', () => {
  const luns = `targets:
  - name: iqn.2026-11.io.lunar:t1
    luns:
      - { lun: 0, backstore: file, path: a.img, size: 1G }
      - { lun: 1, backstore: file, path: b.img, size: 1G, direct: false }
      - { lun: 2, backstore: file, path: c.img, size: 1G, cache: false }
      - { lun: 3, backstore: memory, size: 1M }
      - { lun: 4, backstore: memory, size: 1M, cache: true }
      - { lun: 5, backstore: null, size: 1M }
`;
  const cached = (text: string) => parseConfig(text, 'c.yaml').config.targets[0]!.luns.map((l) => l.cache);

  it('defaults to 1 GiB, or an eighth of the memory when that is less, in whole pages', () => {
    expect(defaultCacheSize(64 * 2 ** 30)).toBe(2 ** 30);
    expect(defaultCacheSize(8 * 2 ** 30)).toBe(2 ** 30);
    expect(defaultCacheSize(2 * 2 ** 30)).toBe(256 * 2 ** 20);
    expect(defaultCacheSize(1_000_000_000)).toBe(Math.floor(125_000_000 / 4096) * 4096);
    expect(defaultCacheSize()).toBe(defaultCacheSize(availableMemory()));
    expect(availableMemory()).toBeLessThanOrEqual(totalmem());
    expect(defaultCacheSize() % 4096).toBe(0);
    expect(defaultCacheSize()).toBeGreaterThan(0);
  });

  it('is on by default: cached are the O_DIRECT file LUNs, unless a LUN says otherwise', () => {
    const { config } = parseConfig(luns, 'c.yaml');
    expect(config.cache).toEqual({ size: defaultCacheSize() });
    expect(config.busyPoll).toBe(DEFAULT_BUSY_POLL_US);
    expect(parseConfig(`busyPoll: 0\n${luns}`, 'c.yaml').config.busyPoll).toBe(0);
    expect(parseConfig(`busyPoll: 250\n${luns}`, 'c.yaml').config.busyPoll).toBe(250);
    expect(cached(luns)).toEqual([true, false, false, false, true, false]);
    // The config lunar serve writes on first start gets the cache.
    const { config: dflt } = parseConfig(
      defaultConfigText({
        iqn: 'iqn.2026-11.io.lunar:d',
        listen: '127.0.0.1:3260',
        size: '1G',
        id: '0123456789abcdef',
      }),
      'c.yaml',
    );
    expect(dflt.cache?.size).toBeGreaterThan(0);
    expect(dflt.targets[0]!.luns[0]!.cache).toBe(true);
  });

  it.each([
    ['512M', 512 * 2 ** 20],
    ['1G', 2 ** 30],
    ['10000', 8192],
    ['4096', 4096],
  ])('size %s', (size, bytes) => {
    expect(parseConfig(`cache: { size: ${size} }\n${luns}`, 'c.yaml').config.cache).toEqual({ size: bytes });
  });

  it.each(['0', '0M', '"0 GiB"'])('size %s turns it off, and the default LUNs with it', (size) => {
    const text = `cache: { size: ${size} }\n${luns.replace(', cache: true', '')}`;
    expect(parseConfig(text, 'c.yaml').config.cache).toEqual({ size: 0 });
    expect(cached(text)).toEqual([false, false, false, false, false, false]);
  });

  it('an empty cache section keeps the default', () => {
    expect(parseConfig(`cache: {}\n${luns}`, 'c.yaml').config.cache).toEqual({ size: defaultCacheSize() });
  });
});

describe('sizes and addresses', () => {
  it.each([
    ['4096', 4096],
    ['64M', 64 * 2 ** 20],
    ['1G', 2 ** 30],
    ['1GiB', 2 ** 30],
    ['1.5G', 1.5 * 2 ** 30],
    ['2T', 2 * 2 ** 40],
  ])('parseSize(%s)', (t, n) => expect(parseSize(t)).toBe(n));
  it.each(['', 'G', '-1G', '1X', '1 G G'])('parseSize rejects %j', (t) =>
    expect(() => parseSize(t)).toThrow(/not a size/),
  );
  it('formatSize round-trips', () => {
    for (const n of [512, 4096, 2 ** 20, 3 * 2 ** 30, 2 ** 40, 1536])
      expect(parseSize(formatSize(n))).toBe(n);
  });
  it('parseHostPort', () => {
    expect(parseHostPort('0.0.0.0:3261')).toEqual({ host: '0.0.0.0', port: 3261 });
    expect(parseHostPort('[::1]:3262')).toEqual({ host: '::1', port: 3262 });
    expect(parseHostPort('localhost')).toEqual({ host: 'localhost', port: 3260 });
  });
});

describe('file round trip', () => {
  it('generates LU ids, saves them atomically with comments kept, and loads them back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lunar-cfg-'));
    try {
      const file = join(dir, 'lunar.yaml');
      writeFileSync(file, `# my comment\n${GOOD}`);
      const { loaded, changed } = ensureLunIds(loadConfig(file));
      expect(changed).toBe(true);
      saveConfig(loaded);
      const text = readFileSync(file, 'utf8');
      expect(text).toContain('# my comment');
      const again = loadConfig(file);
      const ids = again.config.targets[0]!.luns.map((l) => l.id);
      expect(ids).toEqual(loaded.config.targets[0]!.luns.map((l) => l.id));
      expect(ids.every((id) => /^[0-9a-f]{16}$/.test(id ?? ''))).toBe(true);
      expect(ensureLunIds(again).changed).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('names a missing file', () => {
    expect(() => loadConfig('/nonexistent/lunar.yaml')).toThrow(/\/nonexistent\/lunar\.yaml: no such file/);
  });
});
