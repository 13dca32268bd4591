/**
 * lunar-tgtadm against a live lunar, side by side with the real tgtd when it is installed
 * (tgtd -f -C 41 on 127.0.0.1:3441): the lab sequences of ../shared/seeds/000 run unmodified
 * (only /dev/sdb1 and /dev/sdb2 point at temporary files) through a PATH dir whose `tgtadm`
 * is lunar's front end; exit codes and the shape of every `--op show` match tgtd's; a restart
 * keeps it all; iscsi-ls lists the targets. Then the captured table of wrong requests.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon, ensureBuilt, haveBinary, tmp } from './daemon.js';
import { shape, tgtdErrorCases } from './tgt-shapes.js';

const TGTD_PORT = 3441;
const TGTD_CONTROL = '41';

/** The seed's command lines, verbatim ("#" prompts dropped), in the order the write-up gives them. */
const SEED = `tgtadm --lld iscsi --op new --mode target --tid 1 -T iqn.2011-01.com.chinaitv:rhcs-storage
tgtadm --lld iscsi --op show --mode target
tgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b /dev/sdb1
tgtadm --lld iscsi --op show --mode target
tgtadm --lld iscsi --op bind --mode target --tid 1 -I 192.168.1.231
tgtadm --lld iscsi --op bind --mode target --tid 1 -I 192.168.1.232
tgtadm --lld iscsi --op bind --mode target --tid 1 -I 192.168.1.233
tgtadm --lld iscsi --op bind --mode target --tid 1 -I ALL
tgtadm --lld iscsi --op unbind --mode target --tid 1 -I 192.168.1.233
tgtadm --lld iscsi --op new --mode target --tid 1 -T iqn.2011-01.com.chinaitv:rhcs-storage
tgtadm --lld iscsi --op new --mode target --tid 2 -T iqn.2011-01.com.chinaitv:rhcs-storage2
tgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b /dev/sdb1
tgtadm --lld iscsi --op new --mode logicalunit --tid 2 --lun 1 -b /dev/sdb2
tgtadm --lld iscsi --op bind --mode target --tid 1 -I ip
tgtadm --lld iscsi --op bind --mode target --tid 2 -I ip
tgtadm --lld iscsi --op show --mode target`.split('\n');

interface Step {
  cmd: string;
  rc: number;
  out: string;
  err: string;
}

let dir: string;
let lunar: Daemon;
let tgtd: ChildProcess | undefined;
let tgtdBin: string | undefined;
let sdb1: string;
let sdb2: string;

function sh(script: string, pathDir: string): Step {
  const r = spawnSync('sh', ['-c', script], {
    encoding: 'utf8',
    env: { ...lunar.env, PATH: `${pathDir}:${process.env['PATH'] ?? ''}` },
    timeout: 60_000,
  });
  return { cmd: script, rc: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function runSeed(pathDir: string): Step[] {
  return SEED.map((line) => sh(line.replace('/dev/sdb1', sdb1).replace('/dev/sdb2', sdb2), pathDir));
}

beforeAll(async () => {
  ensureBuilt();
  dir = tmp('lunar-tgtadm-');
  sdb1 = join(dir, 'sdb1.img');
  sdb2 = join(dir, 'sdb2.img');
  for (const f of [sdb1, sdb2]) {
    writeFileSync(f, '');
    truncateSync(f, 32 << 20);
  }
  lunar = new Daemon(join(dir, 'lunar'), 3440);
  await lunar.start();
  if (haveBinary('tgtd') && haveBinary('tgtadm')) {
    tgtd = spawn('tgtd', ['-f', '-C', TGTD_CONTROL, '--iscsi', `portal=127.0.0.1:${TGTD_PORT}`], {
      stdio: 'ignore',
    });
    const binDir = join(dir, 'tgtd-bin');
    mkdirSync(binDir, { recursive: true });
    tgtdBin = binDir;
    const real = spawnSync('sh', ['-c', 'command -v tgtadm'], { encoding: 'utf8' }).stdout.trim();
    writeFileSync(join(binDir, 'tgtadm'), `#!/bin/sh\nexec ${real} -C ${TGTD_CONTROL} "$@"\n`);
    chmodSync(join(binDir, 'tgtadm'), 0o755);
    for (let i = 0; i < 50; i++) {
      if (
        spawnSync(join(binDir, 'tgtadm'), ['--lld', 'iscsi', '--op', 'show', '--mode', 'sys'], {
          stdio: 'ignore',
        }).status === 0
      )
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}, 120_000);

afterAll(async () => {
  await lunar?.kill('SIGKILL');
  if (tgtd?.pid) {
    try {
      process.kill(tgtd.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

describe('the lab sequences of seeds/000 with tgtadm resolving to lunar', () => {
  let lunarSteps: Step[] = [];

  it('run unmodified; exit codes as tgtd gives them', () => {
    lunarSteps = runSeed(lunar.wrapperDir());
    // tgtd's answers for the same lines: 0 everywhere but the two repeated creations (22)
    const expected = SEED.map((_l, i) => (i === 9 || i === 11 ? 22 : 0));
    expect(lunarSteps.map((s) => s.rc)).toEqual(expected);
    expect(lunarSteps[9]?.err).toBe('tgtadm: this target already exists\n');
    expect(lunarSteps[11]?.err).toBe('tgtadm: this logical unit number already exists\n');
    if (tgtdBin) {
      const tgtdSteps = runSeed(tgtdBin);
      expect(lunarSteps.map((s) => s.rc)).toEqual(tgtdSteps.map((s) => s.rc));
      expect(lunarSteps.map((s) => s.err)).toEqual(tgtdSteps.map((s) => s.err));
      // every show prints the same shape as tgtd's (values differ: LU ids, sizes)
      for (const i of [1, 3, 15])
        expect(shape(lunarSteps[i]?.out ?? '')).toEqual(shape(tgtdSteps[i]?.out ?? ''));
    }
    const final = lunarSteps[15]?.out ?? '';
    expect(final).toMatch(/^Target 1: iqn\.2011-01\.com\.chinaitv:rhcs-storage$/m);
    expect(final).toMatch(/^Target 2: iqn\.2011-01\.com\.chinaitv:rhcs-storage2$/m);
    expect(final).toContain(`Backing store path: ${sdb1}`);
    expect(final).toContain(`Backing store path: ${sdb2}`);
    expect(final).toMatch(/ACL information:\n {8}192\.168\.1\.231\n {8}192\.168\.1\.232\n {8}ALL\n {8}ip\n/);
  });

  it('a restart keeps every target, LUN and ACL (no rc.local needed)', async () => {
    const before = sh('tgtadm --lld iscsi --op show --mode target', lunar.wrapperDir()).out;
    await lunar.kill('SIGTERM');
    await lunar.start();
    const after = sh('tgtadm --lld iscsi --op show --mode target', lunar.wrapperDir()).out;
    expect(after).toBe(before);
  });

  it('iscsi-ls lists them', () => {
    if (!haveBinary('iscsi-ls')) return;
    // the write-up's own advice: replace ip with ALL to let every initiator in
    expect(sh('tgtadm --lld iscsi --op bind --mode target --tid 2 -I ALL', lunar.wrapperDir()).rc).toBe(0);
    const r = spawnSync('iscsi-ls', ['-s', 'iscsi://127.0.0.1:3440'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stdout).toMatch(/Target:iqn\.2011-01\.com\.chinaitv:rhcs-storage Portal:127\.0\.0\.1:3440,1/);
    expect(r.stdout).toMatch(/Target:iqn\.2011-01\.com\.chinaitv:rhcs-storage2 Portal:127\.0\.0\.1:3440,1/);
    expect(r.stdout).toMatch(/Lun:1\s+Type:DIRECT_ACCESS/);
  });
});

describe('wrong tgtadm requests: same first line and exit code as tgtd (captured table)', () => {
  /** lunar extensions where tgtd says "invalid request": documented in docs/tgtadm.md. */
  const DEVIATIONS = new Set(['--lld iscsi --op show --mode session --tid 1']);
  let d: Daemon;
  let img: string;

  beforeAll(async () => {
    d = new Daemon(tmp('lunar-tgtadm-err-'), 3442);
    await d.start();
    img = join(d.dir, 'd1.img');
    writeFileSync(img, '');
    truncateSync(img, 16 << 20);
    for (const args of [
      ['--op', 'new', '--mode', 'target', '--tid', '1', '-T', 'iqn.2011-01.com.chinaitv:rhcs-storage'],
      ['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '1', '-b', img],
      ['--op', 'bind', '--mode', 'target', '--tid', '1', '-I', '192.168.1.231'],
      ['--op', 'new', '--mode', 'account', '--user', 'alice', '--password', 'secretpass12'],
    ]) {
      expect(d.tgtadm(['--lld', 'iscsi', ...args]).status).toBe(0);
    }
  }, 60_000);
  afterAll(async () => d?.kill('SIGKILL'));

  const cases = tgtdErrorCases();
  it.each(cases.map((c) => [c.args.join(' '), c] as const))('%s', (name, c) => {
    const args = c.args.map((a) =>
      a.replace('/tmp/tgtcap/d1.img', img).replace('/tmp/tgtcap/nonexist.img', join(d.dir, 'nonexist.img')),
    );
    const r = d.tgtadm(args);
    if (DEVIATIONS.has(name)) {
      expect(r.status).toBe(0);
      return;
    }
    expect({ rc: r.status, first: r.stderr.split('\n')[0] }).toEqual({ rc: c.rc, first: c.message });
    if (c.message === 'tgtadm: invalid request') expect(r.stderr).toMatch(/\n {2}\(lunar: .+\)\n$/);
  });
});
