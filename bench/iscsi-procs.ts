/**
 * Start and stop iSCSI targets as child processes for benchmarks and the fuzz/interop tests:
 * lunar (`lunar serve --config`, config generated per docs/config.md) and a private tgtd
 * (own control port, own portal). Every process started here is stopped by its pid.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface RunningTarget {
  readonly kind: 'lunar' | 'tgtd';
  readonly pid: number;
  readonly iqn: string;
  readonly host: string;
  readonly ports: readonly number[];
  /** iscsi:// URL of the benchmarked LUN on the first portal. */
  readonly url: string;
  /** Same LUN on every portal. */
  readonly urls: readonly string[];
  /** Exit code/signal once the process has ended, else undefined. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Last lines of stdout+stderr (for error messages). */
  output(): string;
  stop(): Promise<void>;
}

export const HOST = '127.0.0.1';

/** Repository root: this file is bench/iscsi-procs.ts (tsx/vitest) or dist/bench/iscsi-procs.js. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
}

export function lunarCli(): string {
  return join(repoRoot(), 'dist', 'src', 'cli', 'lunar.js');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function run(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; allowFail?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    execFile(
      cmd,
      [...args],
      { timeout: opts.timeoutMs ?? 600_000, maxBuffer: 64 << 20, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        if (code !== 0 && !opts.allowFail) {
          rej(new Error(`${cmd} ${args.join(' ')} failed (${err?.message}):\n${stdout}\n${stderr}`));
        } else {
          res({ code, stdout, stderr });
        }
      },
    );
  });
}

export function canConnect(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ host, port });
    const t = setTimeout(() => {
      s.destroy();
      res(false);
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      res(true);
    });
    s.once('error', () => {
      clearTimeout(t);
      res(false);
    });
  });
}

/** Spawned child with captured output and exit status. */
interface Child {
  proc: ChildProcess;
  pid: number;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  buf: string[];
}

function spawnChild(cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): Child {
  const proc = spawn(cmd, [...args], { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  if (proc.pid === undefined) throw new Error(`cannot start ${cmd}`);
  const c: Child = { proc, pid: proc.pid, exit: undefined, buf: [] };
  const keep = (d: Buffer) => {
    c.buf.push(d.toString('utf8'));
    if (c.buf.length > 200) c.buf.splice(0, c.buf.length - 200);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  proc.on('exit', (code, signal) => {
    c.exit = { code, signal };
  });
  proc.on('error', (e) => {
    c.buf.push(`spawn error: ${e.message}\n`);
    c.exit ??= { code: -1, signal: null };
  });
  return c;
}

async function killChild(c: Child, graceMs: number): Promise<void> {
  if (c.exit) return;
  const gone = new Promise<void>((r) => {
    if (c.exit) r();
    else c.proc.once('exit', () => r());
  });
  try {
    process.kill(c.pid, 'SIGTERM');
  } catch {
    return;
  }
  const t = await Promise.race([gone.then(() => true), sleep(graceMs).then(() => false)]);
  if (!t && !c.exit) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    await Promise.race([gone, sleep(3000)]);
  }
}

async function waitPorts(c: Child, host: string, ports: readonly number[], timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  for (const p of ports) {
    for (;;) {
      if (c.exit)
        throw new Error(`${what} exited (${JSON.stringify(c.exit)}) before listening:\n${c.buf.join('')}`);
      if (await canConnect(host, p)) break;
      if (Date.now() > deadline)
        throw new Error(`${what} not listening on ${host}:${p} after ${timeoutMs} ms`);
      await sleep(100);
    }
  }
}

// ---------------------------------------------------------------- lunar

export interface LunarLun {
  lun: number;
  backstore: 'file' | 'memory' | 'null';
  path?: string;
  size?: string | number;
  direct?: boolean;
  /** The read block cache for this LUN (default: lunar's default, on for O_DIRECT files). */
  cache?: boolean;
  blockSize?: 512 | 4096;
  writeCache?: boolean;
  readOnly?: boolean;
  removable?: boolean;
  physicalBlockSize?: number;
}

export interface LunarOptions {
  /** Working directory for config + --data (created). */
  dir: string;
  iqn: string;
  ports: readonly number[];
  luns: readonly LunarLun[];
  params?: Record<string, string | number>;
  /** `busyPoll:` µs (docs/config.md); default: lunar's default. */
  busyPoll?: number;
  /** Replace `node dist/src/cli/lunar.js` (argv words; config/data flags are appended). */
  cmd?: readonly string[];
  logLevel?: string;
  startTimeoutMs?: number;
  /** Extra node flags for lunar (e.g. --max-old-space-size=64); ignored with `cmd`. */
  nodeArgs?: readonly string[];
}

export function lunarConfigYaml(
  o: Pick<LunarOptions, 'iqn' | 'ports' | 'luns' | 'params' | 'busyPoll'>,
): string {
  const lines: string[] = ['portals:'];
  for (const p of o.ports) lines.push(`  - listen: ${HOST}:${p}`, '    group: 1');
  if (o.busyPoll !== undefined) lines.push(`busyPoll: ${o.busyPoll}`);
  lines.push('targets:', `  - name: ${o.iqn}`, '    acl:', '      initiators: ALL', '      addresses: ALL');
  if (o.params && Object.keys(o.params).length) {
    lines.push('    params:');
    for (const [k, v] of Object.entries(o.params)) lines.push(`      ${k}: ${JSON.stringify(v)}`);
  }
  lines.push('    luns:');
  for (const l of o.luns) {
    lines.push(`      - lun: ${l.lun}`, `        backstore: ${l.backstore}`);
    if (l.path !== undefined) lines.push(`        path: ${JSON.stringify(l.path)}`);
    if (l.size !== undefined) lines.push(`        size: ${JSON.stringify(l.size)}`);
    if (l.direct !== undefined) lines.push(`        direct: ${l.direct}`);
    if (l.cache !== undefined) lines.push(`        cache: ${l.cache}`);
    if (l.blockSize !== undefined) lines.push(`        blockSize: ${l.blockSize}`);
    if (l.writeCache !== undefined) lines.push(`        writeCache: ${l.writeCache}`);
    if (l.readOnly !== undefined) lines.push(`        readOnly: ${l.readOnly}`);
    if (l.removable !== undefined) lines.push(`        removable: ${l.removable}`);
    if (l.physicalBlockSize !== undefined) lines.push(`        physicalBlockSize: ${l.physicalBlockSize}`);
  }
  return lines.join('\n') + '\n';
}

export async function startLunar(o: LunarOptions): Promise<RunningTarget> {
  const dir = resolve(o.dir);
  mkdirSync(join(dir, 'data'), { recursive: true });
  const cfg = join(dir, 'lunar.yaml');
  writeFileSync(cfg, lunarConfigYaml(o));
  const base = o.cmd?.length ? [...o.cmd] : [process.execPath, ...(o.nodeArgs ?? []), lunarCli()];
  const [cmd, ...pre] = base as [string, ...string[]];
  if (!o.cmd && !existsSync(lunarCli())) throw new Error(`${lunarCli()} missing: run npm run build first`);
  const args = [
    ...pre,
    'serve',
    '--config',
    cfg,
    '--data',
    join(dir, 'data'),
    '--log-level',
    o.logLevel ?? 'warn',
    '--stop-timeout',
    '1',
  ];
  const c = spawnChild(cmd, args);
  try {
    await waitPorts(c, HOST, o.ports, o.startTimeoutMs ?? 20_000, 'lunar');
  } catch (e) {
    await killChild(c, 2000);
    throw e;
  }
  const lun = o.luns[0]?.lun ?? 0;
  const urls = o.ports.map((p) => `iscsi://${HOST}:${p}/${o.iqn}/${lun}`);
  return {
    kind: 'lunar',
    pid: c.pid,
    iqn: o.iqn,
    host: HOST,
    ports: o.ports,
    url: urls[0] ?? '',
    urls,
    exited: () => c.exit,
    output: () => c.buf.join('').slice(-8000),
    stop: () => killChild(c, 4000),
  };
}

// ---------------------------------------------------------------- tgtd

export interface TgtdOptions {
  iqn: string;
  port: number;
  /** tgtd -C control port id (a unix socket name, not a TCP port); default = port. */
  control?: number;
  file: string;
  /** --bsoflags direct */
  direct?: boolean;
  /** Extra --bsoflags/--bstype etc. not needed so far. */
  startTimeoutMs?: number;
}

export async function startTgtd(o: TgtdOptions): Promise<RunningTarget> {
  const ctl = String(o.control ?? o.port);
  const c = spawnChild('tgtd', ['-f', '-C', ctl, '--iscsi', `portal=${HOST}:${o.port}`]);
  const adm = (...a: string[]) => run('tgtadm', ['-C', ctl, '--lld', 'iscsi', ...a], { timeoutMs: 10_000 });
  try {
    const deadline = Date.now() + (o.startTimeoutMs ?? 10_000);
    for (;;) {
      if (c.exit) throw new Error(`tgtd exited: ${c.buf.join('')}`);
      const r = await run('tgtadm', ['-C', ctl, '--lld', 'iscsi', '--mode', 'target', '--op', 'show'], {
        allowFail: true,
        timeoutMs: 5000,
      });
      if (r.code === 0) break;
      if (Date.now() > deadline) throw new Error(`tgtd control channel ${ctl} not ready: ${r.stderr}`);
      await sleep(100);
    }
    await adm('--mode', 'target', '--op', 'new', '--tid', '1', '-T', o.iqn);
    await adm(
      '--mode',
      'logicalunit',
      '--op',
      'new',
      '--tid',
      '1',
      '--lun',
      '1',
      '-b',
      resolve(o.file),
      ...(o.direct ? ['--bsoflags', 'direct'] : []),
    );
    await adm('--mode', 'target', '--op', 'bind', '--tid', '1', '-I', 'ALL');
    await waitPorts(c, HOST, [o.port], 10_000, 'tgtd');
  } catch (e) {
    await killChild(c, 300);
    throw e;
  }
  const url = `iscsi://${HOST}:${o.port}/${o.iqn}/1`;
  return {
    kind: 'tgtd',
    pid: c.pid,
    iqn: o.iqn,
    host: HOST,
    ports: [o.port],
    url,
    urls: [url],
    exited: () => c.exit,
    output: () => c.buf.join('').slice(-8000),
    // tgtd ignores SIGTERM while targets exist; a short grace then SIGKILL.
    stop: () => killChild(c, 300),
  };
}

/** /proc/PID/status VmRSS in bytes, or undefined when the process is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(s);
    return m?.[1] ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
