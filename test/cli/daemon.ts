/**
 * Integration-test helpers: a real `lunar serve` child process (from dist/, built on demand)
 * driven through its CLIs. Every process started here is killed by pid.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
export const DIST_CLI = join(ROOT, 'dist/src/cli');

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds dist/ when src/admin or src/cli is newer than the built CLI. */
export function ensureBuilt(): void {
  const built = join(DIST_CLI, 'tgt-admin.js');
  const src = Math.max(
    newest(join(ROOT, 'src/admin')),
    newest(join(ROOT, 'src/cli')),
    newest(join(ROOT, 'src/iscsi')),
    newest(join(ROOT, 'src/scsi')),
  );
  if (existsSync(built) && statSync(built).mtimeMs >= src) return;
  // tsc exits non-zero for type errors elsewhere in the tree but still emits; check the output exists
  spawnSync(
    process.execPath,
    [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')],
    { cwd: ROOT, stdio: 'ignore' },
  );
  if (!existsSync(built)) throw new Error('build failed: dist/src/cli/tgt-admin.js missing');
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function tmp(prefix = 'lunar-int-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export class Daemon {
  readonly dir: string;
  readonly data: string;
  readonly config: string;
  readonly port: number;
  child?: ChildProcess;
  log = '';
  readonly env: NodeJS.ProcessEnv;

  constructor(dir: string, port: number, configText?: string) {
    this.dir = dir;
    this.data = join(dir, 'data');
    this.config = join(dir, 'lunar.yaml');
    this.port = port;
    mkdirSync(this.data, { recursive: true });
    if (configText !== undefined || !existsSync(this.config)) {
      writeFileSync(
        this.config,
        configText ?? `# integration test\nportals:\n  - listen: 127.0.0.1:${port}\ntargets: []\n`,
      );
    }
    this.env = { ...process.env, LUNAR_SOCKET: join(this.data, 'lunar.sock') };
  }

  /** Starts `lunar serve` and waits for its control API; returns the child (or its exit). */
  async start(extra: string[] = []): Promise<void> {
    const child = spawn(
      process.execPath,
      [
        join(DIST_CLI, 'lunar.js'),
        'serve',
        '--config',
        this.config,
        '--data',
        this.data,
        '--stop-timeout',
        '2',
        ...extra,
      ],
      {
        env: this.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.child = child;
    child.stdout?.on('data', (b: Buffer) => (this.log += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (this.log += b.toString()));
    const deadline = Date.now() + 45_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`lunar serve exited ${child.exitCode}:\n${this.log}`);
      if (this.lunar(['status']).status === 0) return;
      await new Promise((r) => setTimeout(r, 150));
    }
    throw new Error(`lunar serve did not come up:\n${this.log}`);
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  /** Waits for the child to exit (after stop/kill). */
  async exited(timeoutMs = 15_000): Promise<number | null> {
    const c = this.child;
    if (!c) return null;
    if (c.exitCode !== null || c.signalCode !== null) return c.exitCode;
    return await new Promise((r) => {
      const t = setTimeout(() => r(null), timeoutMs);
      c.once('exit', (code) => {
        clearTimeout(t);
        r(code);
      });
    });
  }

  /** Kills the child by pid (SIGTERM by default) and waits for it. */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    try {
      process.kill(c.pid ?? 0, signal);
    } catch {
      return;
    }
    if ((await this.exited()) === null && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid ?? 0, 'SIGKILL');
      } catch {
        // gone
      }
      await this.exited();
    }
  }

  run(
    bin: 'lunar.js' | 'tgtadm.js' | 'tgt-admin.js',
    args: string[],
    env: NodeJS.ProcessEnv = this.env,
  ): RunResult {
    const r = spawnSync(process.execPath, [join(DIST_CLI, bin), ...args], {
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  lunar(args: string[]): RunResult {
    return this.run('lunar.js', args);
  }
  tgtadm(args: string[]): RunResult {
    return this.run('tgtadm.js', args);
  }
  tgtAdmin(args: string[]): RunResult {
    return this.run('tgt-admin.js', args);
  }

  /** A directory holding an executable `tgtadm` that runs lunar's front end (for PATH). */
  wrapperDir(): string {
    const dir = join(this.dir, 'bin');
    mkdirSync(dir, { recursive: true });
    const script = join(dir, 'tgtadm');
    writeFileSync(script, `#!/bin/sh\nexec "${process.execPath}" "${join(DIST_CLI, 'tgtadm.js')}" "$@"\n`);
    chmodSync(script, 0o755);
    return dir;
  }
}

export function haveBinary(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
