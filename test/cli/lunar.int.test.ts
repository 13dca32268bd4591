/**
 * A real `lunar serve` child process driven by the CLIs: live changes persisted and restored on
 * restart (same LU ids → same VPD 0x83 NAA), stop semantics, kill -9 then start, port in use,
 * the control API over TCP with its token.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/admin/config.js';
import { TestInitiator } from '../iscsi/initiator.js';
import { Daemon, ensureBuilt, haveBinary, tmp } from './daemon.js';

const IQN = 'iqn.2026-11.com.example:int1';
let daemons: Daemon[] = [];

beforeAll(() => ensureBuilt(), 120_000);
afterEach(async () => {
  for (const d of daemons) await d.kill('SIGKILL');
  daemons = [];
});

function daemon(port: number, configText?: string, dir = tmp()): Daemon {
  const d = new Daemon(dir, port, configText);
  daemons.push(d);
  return d;
}

/** VPD page 0x83 as iscsi-inq prints it (the NAA designator bytes included, printed raw). */
function vpd83(port: number, lun: number, target = IQN): string {
  const r = spawnSync('iscsi-inq', ['-e', '1', '-c', '131', `iscsi://127.0.0.1:${port}/${target}/${lun}`], {
    encoding: 'latin1',
    timeout: 20_000,
  });
  return r.stdout;
}

describe('lunar CLI against a live daemon', () => {
  it('applies changes live, saves them, and a restart restores targets, LUNs, ACLs, CHAP and LU ids', async () => {
    const d = daemon(3420);
    await d.start();
    const img = join(d.dir, 'd1.img');
    writeFileSync(img, '');
    truncateSync(img, 64 << 20);
    const ok = (args: string[]) => {
      const r = d.lunar(args);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      return r.stdout;
    };
    ok(['target', 'new', IQN, '--tid', '1']);
    ok(['lun', 'new', '1', '1', '--path', img]);
    ok(['lun', 'new', '1', '2', '--backstore', 'memory', '--size', '16M']);
    ok(['acl', 'add', '1', '--address', '127.0.0.1']);
    ok(['acl', 'add', '1', '--initiator', 'iqn.2026-11.test:init']);
    expect(d.lunar(['chap', 'new', 'alice', '--secret', 'alicesecret123']).status).toBe(0);
    ok(['chap', 'bind', '1', 'alice']);
    ok(['target', 'set', '1', 'MaxBurstLength=131072', 'alias=int-one']);
    const before = JSON.parse(ok(['target', 'show', '1', '--json'])) as {
      luns: { lun: number; id: string }[];
      acl: unknown;
      accounts: unknown;
      params: unknown;
      alias: string;
    };
    expect(before.luns.map((l) => l.lun)).toEqual([1, 2]);
    expect(before.acl).toEqual({ initiators: ['iqn.2026-11.test:init'], addresses: ['127.0.0.1'] });
    expect(before.accounts).toEqual([{ user: 'alice', outgoing: false }]);
    expect(before.params).toEqual({ MaxBurstLength: '131072' });
    // the file holds it (and still parses)
    const saved = parseConfig(readFileSync(d.config, 'utf8'), d.config).config;
    expect(saved.targets[0]?.luns.map((l) => l.id)).toEqual(before.luns.map((l) => l.id));
    expect(readFileSync(d.config, 'utf8')).toMatch(/^# integration test$/m);

    // table output is readable
    expect(ok(['target', 'list'])).toMatch(
      /^TID\s+NAME\s+LUNS\s+SESSIONS\s+STATE\s+ACL\n1\s+iqn\.2026-11\.com\.example:int1\s+2\s+0\s+ready/,
    );

    // restart
    await d.kill('SIGTERM');
    await d.start();
    const after = JSON.parse(ok(['target', 'show', '1', '--json'])) as typeof before;
    expect(after).toEqual(before);

    // CHAP is enforced after the restart: a login without CHAP is refused, with CHAP it works
    const c1 = await TestInitiator.connect(3420);
    await expect(c1.login({ targetName: IQN })).rejects.toThrow(/login status/);
    c1.close();
    const c2 = await TestInitiator.connect(3420);
    await c2.login({ targetName: IQN, chap: { user: 'alice', secret: 'alicesecret123' } });
    await c2.logout();
    c2.close();
  });

  it('keeps the VPD 0x83 NAA of a LUN across a restart', async () => {
    if (!haveBinary('iscsi-inq')) return;
    const d = daemon(3421);
    await d.start();
    const img = join(d.dir, 'd.img');
    writeFileSync(img, '');
    truncateSync(img, 8 << 20);
    expect(d.lunar(['target', 'new', IQN, '--allow-all']).status).toBe(0);
    expect(d.lunar(['lun', 'new', IQN, '0', '--path', img]).status).toBe(0);
    const first = vpd83(3421, 0);
    expect(first).toMatch(/Designator Type:\(3\) NAA/);
    const id =
      (JSON.parse(d.lunar(['lun', 'list', IQN, '--json']).stdout) as { id: string }[])[0]?.id ?? 'none';
    expect(first).toContain(id);
    await d.kill('SIGTERM');
    await d.start();
    expect(vpd83(3421, 0)).toBe(first);
  });

  it('stop refuses while initiators are connected, naming them; --force logs them out', async () => {
    const d = daemon(3422);
    await d.start();
    expect(d.lunar(['target', 'new', IQN, '--allow-all']).status).toBe(0);
    expect(d.lunar(['lun', 'new', IQN, '0', '--backstore', 'null', '--size', '1G']).status).toBe(0);
    const c = await TestInitiator.connect(3422);
    await c.login({ targetName: IQN, initiatorName: 'iqn.2026-11.test:holder' });
    const refused = d.lunar(['stop']);
    expect(refused.status).toBe(3);
    expect(refused.stderr).toMatch(
      /initiators are still connected: iqn\.2026-11\.test:holder \(127\.0\.0\.1\)/,
    );
    const list = d.lunar(['session', 'list', '--json']);
    expect(JSON.parse(list.stdout)).toMatchObject([{ initiator: 'iqn.2026-11.test:holder', target: IQN }]);
    // tgtadm: delete of a target with sessions fails like tgtadm unless --force
    const del = d.tgtadm(['--lld', 'iscsi', '--op', 'delete', '--mode', 'target', '--tid', '1']);
    expect(del.status).toBe(22);
    expect(del.stderr.split('\n')[0]).toBe('tgtadm: this target is still active');
    const stop = d.lunar(['stop', '--force', '--timeout', '3', '--no-wait']);
    expect(stop.status).toBe(0);
    const a = await c.recv((p) => p.opcode === 0x32, 5000);
    expect(a).toMatchObject({ event: 1 });
    await c.logout();
    c.close();
    expect(await d.exited()).toBe(0);
    expect(d.log).toMatch(/asking initiators to log out/);
  });

  it('an offline target (tgtadm state, or the system offline) refuses new logins until ready', async () => {
    const d = daemon(3433);
    await d.start();
    expect(d.lunar(['target', 'new', IQN, '--allow-all']).status).toBe(0);
    const login = async () => {
      const c = await TestInitiator.connect(3433);
      try {
        await c.login({ targetName: IQN });
        await c.logout();
        return true;
      } catch {
        return false;
      } finally {
        c.close();
      }
    };
    expect(await login()).toBe(true);
    const upd = (args: string[]) =>
      expect(d.tgtadm(['--lld', 'iscsi', '--op', 'update', ...args]).status).toBe(0);
    upd(['--mode', 'target', '--tid', '1', '-n', 'state', '-v', 'offline']);
    expect(d.tgtadm(['--lld', 'iscsi', '--op', 'show', '--mode', 'target']).stdout).toMatch(
      /^ {8}State: offline$/m,
    );
    expect(await login()).toBe(false);
    upd(['--mode', 'target', '--tid', '1', '-n', 'state', '-v', 'ready']);
    expect(await login()).toBe(true);
    upd(['--mode', 'sys', '--name', 'State', '--value', 'offline']);
    expect(d.tgtadm(['--lld', 'iscsi', '--op', 'show', '--mode', 'sys']).stdout).toMatch(
      /^ {4}State: offline$/m,
    );
    expect(await login()).toBe(false);
    upd(['--mode', 'sys', '--name', 'State', '--value', 'ready']);
    expect(await login()).toBe(true);
  });

  it('a LUN added or removed live: REPORTED LUNS DATA HAS CHANGED, then REPORT LUNS shows it', async () => {
    const d = daemon(3434);
    await d.start();
    expect(d.lunar(['target', 'new', IQN, '--allow-all']).status).toBe(0);
    expect(d.lunar(['lun', 'new', IQN, '0', '--backstore', 'memory', '--size', '1M']).status).toBe(0);
    const c = await TestInitiator.connect(3434);
    await c.login({ targetName: IQN });
    const tur = Buffer.alloc(6);
    // the power-on unit attention first
    await c.scsi(tur, { lun: 0 });
    expect((await c.scsi(tur, { lun: 0 }))?.status).toBe(0);
    expect(d.lunar(['lun', 'new', IQN, '1', '--backstore', 'memory', '--size', '1M']).status).toBe(0);
    const ua = await c.scsi(tur, { lun: 0 });
    expect(ua?.status).toBe(2);
    const sense = ua?.sense ?? Buffer.alloc(0);
    // fixed or descriptor format: key 6 (UNIT ATTENTION), ASC/ASCQ 3F/0E
    const body = sense.length >= 2 && sense.readUInt16BE(0) === sense.length - 2 ? sense.subarray(2) : sense;
    const [key, asc, ascq] =
      (body[0] ?? 0) >= 0x72 ? [body[1], body[2], body[3]] : [body[2], body[12], body[13]];
    expect([(key ?? 0) & 0x0f, asc, ascq]).toEqual([6, 0x3f, 0x0e]);
    const reportLuns = Buffer.alloc(12);
    reportLuns[0] = 0xa0;
    reportLuns.writeUInt32BE(4096, 6);
    const rl = await c.scsi(reportLuns, { lun: 0, readLength: 4096 });
    expect(rl?.data.readUInt32BE(0)).toBe(16);
    expect(d.lunar(['lun', 'delete', IQN, '1']).status).toBe(0);
    expect((await c.scsi(tur, { lun: 0 }))?.status).toBe(2);
    const rl2 = await c.scsi(reportLuns, { lun: 0, readLength: 4096 });
    expect(rl2?.data.readUInt32BE(0)).toBe(8);
    await c.logout();
    c.close();
  });

  it('SIGTERM also asks initiators to log out and waits', async () => {
    const d = daemon(3423);
    await d.start();
    expect(d.lunar(['target', 'new', IQN, '--allow-all']).status).toBe(0);
    const c = await TestInitiator.connect(3423);
    await c.login({ targetName: IQN });
    process.kill(d.pid, 'SIGTERM');
    const a = await c.recv((p) => p.opcode === 0x32, 5000);
    expect(a).toMatchObject({ event: 1 });
    await c.logout();
    c.close();
    expect(await d.exited()).toBe(0);
  });

  it('kill -9 then start works with no clean-up (stale pid file and socket)', async () => {
    const d = daemon(3424);
    await d.start();
    expect(d.lunar(['target', 'new', IQN, '--allow-all']).status).toBe(0);
    const pid = d.pid;
    await d.kill('SIGKILL');
    expect(readFileSync(join(d.data, 'lunar.pid'), 'utf8').trim()).toBe(String(pid));
    expect(existsSync(join(d.data, 'lunar.sock'))).toBe(true);
    await d.start();
    expect(readFileSync(join(d.data, 'lunar.pid'), 'utf8').trim()).toBe(String(d.pid));
    expect(JSON.parse(d.lunar(['target', 'list', '--json']).stdout)).toMatchObject([{ name: IQN, tid: 1 }]);
  });

  it('a second daemon on the same data directory is refused', async () => {
    const d = daemon(3425);
    await d.start();
    const second = new Daemon(d.dir, 3425);
    const r = second.run('lunar.js', ['serve', '--config', d.config, '--data', d.data]);
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(new RegExp(`already running with this data directory \\(pid ${d.pid}`));
  });

  it('port in use: the message names the port and the process holding it', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(3426, '127.0.0.1', r));
    try {
      const d = daemon(3426);
      const r = d.run('lunar.js', ['serve', '--config', d.config, '--data', d.data]);
      expect(r.status).toBe(3);
      expect(r.stderr).toMatch(new RegExp(`127\\.0\\.0\\.1:3426 is in use by node \\(pid ${process.pid}\\)`));
      expect(existsSync(join(d.data, 'lunar.pid'))).toBe(false);
    } finally {
      blocker.close();
    }
  });

  it('control API over loopback TCP needs the token', async () => {
    const d = daemon(3427);
    await d.start(['--control-listen', '127.0.0.1:3428']);
    const tokenFile = join(d.data, 'token');
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(d.data, 'lunar.sock')).mode & 0o777).toBe(0o600);
    const token = readFileSync(tokenFile, 'utf8').trim();
    const noToken = await fetch('http://127.0.0.1:3428/v1/status');
    expect(noToken.status).toBe(401);
    const bad = await fetch('http://127.0.0.1:3428/v1/status', { headers: { authorization: 'Bearer nope' } });
    expect(bad.status).toBe(401);
    const good = await fetch('http://127.0.0.1:3428/v1/status', {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(good.status).toBe(200);
    expect(await good.json()).toMatchObject({ pid: d.pid, targets: 0 });
    const viaCli = d.run(
      'lunar.js',
      ['target', 'list', '--url', 'http://127.0.0.1:3428', '--token', token, '--json'],
      { ...process.env, LUNAR_SOCKET: '/nonexistent' },
    );
    expect(viaCli.status).toBe(0);
    expect(JSON.parse(viaCli.stdout)).toEqual([]);
    // lunar stop waits for the daemon to be gone (scripts can chain a start)
    const stop = d.lunar(['stop']);
    expect(stop).toMatchObject({ status: 0, stdout: 'stopping\nstopped\n' });
    expect(await d.exited()).toBe(0);
  });

  it('portals can be added and removed live and are saved', async () => {
    const d = daemon(3429);
    await d.start();
    expect(d.lunar(['portal', 'add', '127.0.0.1:3430', '--group', '1']).status).toBe(0);
    const c = await TestInitiator.connect(3430);
    c.close();
    expect(readFileSync(d.config, 'utf8')).toMatch(/listen: 127\.0\.0\.1:3430/);
    expect(d.lunar(['portal', 'remove', '127.0.0.1:3430']).status).toBe(0);
    await expect(TestInitiator.connect(3430)).rejects.toThrow();
    const last = d.lunar(['portal', 'remove', '127.0.0.1:3429']);
    expect(last.status).toBe(2);
    expect(last.stderr).toMatch(/last portal/);
  });

  it('tells systemd it is ready (Type=notify) once it serves', async () => {
    if (!haveBinary('systemd-notify') || !haveBinary('python3')) return;
    const dir = tmp();
    const sock = join(dir, 'notify.sock');
    const got = join(dir, 'got.txt');
    const listener = spawn(
      'python3',
      [
        '-c',
        `import socket\ns=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.bind(${JSON.stringify(sock)})\nprint('bound', flush=True)\nd=s.recv(4096)\nopen(${JSON.stringify(got)}+'.tmp','wb').write(d)\nimport os\nos.rename(${JSON.stringify(got)}+'.tmp',${JSON.stringify(got)})`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((r) => listener.stdout?.once('data', () => r()));
      const d = daemon(3432, undefined, dir);
      (d.env as Record<string, string>)['NOTIFY_SOCKET'] = sock;
      await d.start();
      for (let i = 0; i < 50 && !existsSync(got); i++) await new Promise((r) => setTimeout(r, 100));
      expect(readFileSync(got, 'utf8')).toBe(`READY=1\nMAINPID=${d.pid}`);
    } finally {
      if (listener.pid && listener.exitCode === null) process.kill(listener.pid, 'SIGKILL');
    }
  });

  it('the daemon not running: exit 5 and a hint', () => {
    const d = new Daemon(tmp(), 3431);
    const r = d.lunar(['status']);
    expect(r.status).toBe(5);
    expect(r.stderr).toMatch(/cannot reach lunar at .*lunar\.sock.*is `lunar serve` running\?/);
  });
});
