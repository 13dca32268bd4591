/**
 * The `lunar` command line (commander). Exit codes scripts can rely on: see ./exit.ts
 * (0 ok, 1 failure, 2 usage/invalid, 3 conflict/busy/in use, 4 not found, 5 daemon unreachable).
 */

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { startControlServer } from '../admin/api.js';
import {
  ConfigError,
  defaultConfigText,
  ensureLunIds,
  ensureTids,
  type LunarConfig,
  loadConfig,
  newLunId,
  parseHostPort,
  saveConfig,
  writeFileAtomic,
} from '../admin/config.js';
import { Controller } from '../admin/control.js';
import { AlreadyRunningError, acquirePidFile, isLiveProcess } from '../admin/pidfile.js';
import { portInUseMessage } from '../admin/portinfo.js';
import { startRuntime } from '../admin/runtime.js';
import { createLogger, LOG_LEVELS, type LogFormat, type LogLevel } from '../util/log.js';
import { registerCommands } from './commands.js';
import { registerBenchCommand, registerReplCommands } from './repl.js';

import { EXIT, EXIT_HELP } from './exit.js';

export { EXIT };

/** A listening address is taken; the message names it and, when it can, who holds it. */
export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
}

/** Tells systemd we are ready (Type=notify, NotifyAccess=all) through systemd-notify. */
function notifySystemd(log: { warn(msg: string): void }, state = '--ready'): void {
  if (!process.env['NOTIFY_SOCKET']) return;
  const child = spawn('systemd-notify', [state, `--pid=${process.pid}`], { stdio: 'ignore' });
  child.on('error', (err) => log.warn(`systemd-notify: ${err.message}`));
}

/** Temp files of saves interrupted by a crash (FILE.tmp-PID-RANDOM whose PID is gone). */
function removeStaleTempFiles(configFile: string, log: { info(msg: string): void }): void {
  const dir = dirname(configFile);
  const prefix = `${basename(configFile)}.tmp-`;
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number(n.slice(prefix.length).split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isLiveProcess(pid, '')) continue;
    try {
      unlinkSync(join(dir, n));
      log.info(`removed ${join(dir, n)} (left by an interrupted save)`);
    } catch {
      // not ours to remove
    }
  }
}

export function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

/** IQN for the default target: iqn.2026-11.io.lunar:<host>.disk0, host reduced to IQN-safe characters. */
export function defaultIqn(host = hostname()): string {
  const h =
    host
      .toLowerCase()
      .replace(/[^a-z0-9.-]/g, '-')
      .replace(/^[-.]+|[-.]+$/g, '') || 'host';
  return `iqn.2026-11.io.lunar:${h}.disk0`;
}

interface ServeOptions {
  config?: string;
  data: string;
  listen?: string[];
  logLevel: LogLevel;
  logFormat: LogFormat;
  stopTimeout: string;
  controlListen?: string;
  node?: string;
}

async function serve(opts: ServeOptions): Promise<number> {
  const log = createLogger({ level: opts.logLevel, format: opts.logFormat });
  const dataDir = resolve(opts.data);
  mkdirSync(dataDir, { recursive: true });
  let configFile = opts.config ? resolve(opts.config) : join(dataDir, 'lunar.yaml');
  if (!opts.config && !existsSync(configFile)) {
    writeFileAtomic(
      configFile,
      defaultConfigText({ iqn: defaultIqn(), listen: '127.0.0.1:3260', size: '1G', id: newLunId() }),
    );
    log.info(`created ${configFile} (one target, LUN 0 = 1 GiB sparse ${join(dataDir, 'disk0.img')})`);
  }
  configFile = resolve(configFile);
  removeStaleTempFiles(configFile, log);
  let loaded = loadConfig(configFile);
  const withIds = ensureLunIds(loaded);
  if (withIds.changed) {
    saveConfig(withIds.loaded);
    log.info(`saved generated LU ids to ${configFile}`);
  }
  loaded = withIds.loaded;
  const withTids = ensureTids(loaded);
  if (withTids.changed) {
    saveConfig(withTids.loaded);
    log.info(`saved generated target ids (tid) to ${configFile}`);
  }
  loaded = withTids.loaded;
  let config: LunarConfig = loaded.config;
  if (opts.listen?.length) {
    config = { ...config, portals: opts.listen.map((l) => ({ ...parseHostPort(l), group: 1 })) };
  }
  const release = acquirePidFile(join(dataDir, 'lunar.pid'));
  let runtime: Awaited<ReturnType<typeof startRuntime>>;
  try {
    if (opts.node !== undefined && !/^[0-3]$/.test(opts.node))
      throw new Error(`--node "${opts.node}" must be a node id 0..3 of the replicated resources`);
    runtime = await startRuntime(config, dataDir, log, {
      ...(opts.node !== undefined ? { nodeId: Number(opts.node) } : {}),
    });
  } catch (err) {
    release();
    const m = /iSCSI portal (\S+): address already in use/.exec((err as Error).message);
    if (m?.[1]) {
      const port = Number(m[1].slice(m[1].lastIndexOf(':') + 1));
      throw new PortInUseError(portInUseMessage(m[1], port));
    }
    throw err;
  }
  let stopNow: (why: string, timeoutMs?: number) => void = () => undefined;
  const controller = new Controller({
    loaded,
    runtime,
    dataDir,
    log,
    portalsOverridden: !!opts.listen?.length,
    version: version(),
    onStop: (timeoutMs) => stopNow('lunar stop', timeoutMs),
  });
  let control: Awaited<ReturnType<typeof startControlServer>>;
  try {
    let tcp: { host: string; port: number } | undefined;
    if (opts.controlListen) tcp = parseHostPort(opts.controlListen, 3261);
    control = await startControlServer({
      controller,
      socketPath: join(dataDir, 'lunar.sock'),
      ...(tcp ? { tcp, tokenFile: join(dataDir, 'token') } : {}),
    });
  } catch (err) {
    await runtime.stop({ logoutTimeoutMs: 0 });
    release();
    const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
    if (e.code === 'EADDRINUSE' && e.port !== undefined) {
      throw new PortInUseError(
        `control API: ${portInUseMessage(`${e.address ?? '127.0.0.1'}:${e.port}`, e.port)}`,
      );
    }
    throw err;
  }
  log.info(
    `control API on ${control.socketPath}${control.tcpPort !== undefined ? ` and http://${opts.controlListen?.split(':')[0] ?? '127.0.0.1'}:${control.tcpPort} (token in ${join(dataDir, 'token')})` : ''}`,
  );
  for (const p of config.portals) {
    const shown = p.host.includes(':') ? `[${p.host}]:${p.port}` : `${p.host}:${p.port}`;
    log.info(`listening on ${shown} (portal group ${p.group})`);
  }
  for (const t of config.targets) {
    for (const l of t.luns) {
      const where =
        l.backstore === 'file'
          ? resolve(dataDir, l.path ?? '')
          : l.backstore === 'replicated'
            ? `replicated resource ${l.resource ?? '?'} (offered while Primary here)`
            : l.backstore;
      log.info(`target ${t.name} LUN ${l.lun}: ${where}${l.readOnly ? ' (read-only)' : ''}`);
    }
  }
  if (config.portals.every((p) => p.host.startsWith('127.') || p.host === '::1' || p.host === 'localhost')) {
    log.info(
      'serving loopback only; to serve the network: lunar serve --listen 0.0.0.0:3260 (or set portals in the config)',
    );
  }
  const first = config.targets[0];
  const p0 = config.portals[0];
  if (first && p0)
    log.info(
      `try: iscsiadm -m discovery -t st -p ${p0.host}:${p0.port}  |  iscsi-ls iscsi://${p0.host}:${p0.port}`,
    );

  notifySystemd(log);
  return await new Promise<number>((done) => {
    let stopping = false;
    const stop = (signal: string, timeoutMs = Number(opts.stopTimeout) * 1000) => {
      if (stopping) {
        log.warn(`${signal} again: exiting now`);
        release();
        process.exit(EXIT.FAILURE);
      }
      stopping = true;
      log.info(`${signal}: asking initiators to log out (up to ${timeoutMs / 1000}s), then stopping`);
      notifySystemd(log, '--stopping');
      runtime
        .stop({ logoutTimeoutMs: timeoutMs })
        .then(() => control.close())
        .then(() => {
          log.info('stopped');
          done(EXIT.OK);
        })
        .catch((err: unknown) => {
          log.error(`stop failed: ${(err as Error).message}`);
          done(EXIT.FAILURE);
        })
        .finally(release);
    };
    stopNow = stop;
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

function describeError(err: unknown): { message: string; code: number } {
  if (err instanceof ConfigError)
    return { message: `configuration error:\n${err.message}`, code: EXIT.USAGE };
  if (err instanceof AlreadyRunningError) return { message: err.message, code: EXIT.CONFLICT };
  if (err instanceof PortInUseError) return { message: err.message, code: EXIT.CONFLICT };
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e.code === 'EADDRINUSE') {
    return {
      message: `${e.message}\nthe port is taken by another program (find it with: ss -ltnp 'sport = :${e.port ?? 3260}'); tgtd? stop it, or pick another --listen`,
      code: EXIT.CONFLICT,
    };
  }
  if (e.code === 'EACCES' && e.syscall === 'listen') {
    return {
      message: `${e.message}: ports below 1024 need root or CAP_NET_BIND_SERVICE`,
      code: EXIT.FAILURE,
    };
  }
  if (e.code === 'EADDRNOTAVAIL')
    return { message: `${e.message}: no interface has that address`, code: EXIT.USAGE };
  return { message: e.message ?? String(err), code: EXIT.FAILURE };
}

export function buildProgram(): Command {
  const program = new Command('lunar')
    .description('lunar: iSCSI target, replicated block device, lock service and cluster layer')
    .version(version(), '-V, --version')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  program
    .command('serve')
    .description(
      'serve the targets of a config file over iSCSI; with no --config, DATA/lunar.yaml (created on first start with one target and a 1 GiB sparse LUN 0)',
    )
    .option('-c, --config <file>', 'YAML config file (docs/config.md)')
    .option('-d, --data <dir>', 'data directory (backing files, generated config, pid file)', './lunar-data')
    .option(
      '-l, --listen <addr...>',
      'portal address(es) host:port, overriding the config (e.g. 0.0.0.0:3260)',
    )
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info'))
    .addOption(new Option('--log-format <format>', 'log format').choices(['text', 'json']).default('text'))
    .option('--stop-timeout <seconds>', 'how long to wait for initiators to log out on stop', '5')
    .option(
      '--node <id>',
      'this node id in the replicated resources of the config (default: the node whose address is local)',
    )
    .option(
      '--control-listen <host:port>',
      'also serve the control API over HTTP on this loopback address, with the bearer token in DATA/token (e.g. 127.0.0.1:3261)',
    )
    .addHelpText(
      'after',
      `
DESCRIPTION
  Runs the target in the foreground, logging to stdout. Every change made at run time (lunar,
  lunar-tgtadm, lunar-tgt-admin, the control API on DATA/lunar.sock) is saved into the config and
  restored on the next start. SIGTERM/SIGINT: initiators are asked to log out (Async Message),
  lunar waits up to --stop-timeout seconds, then exits 0. Under systemd (Type=notify) it reports
  readiness once every portal listens (contrib/lunar.service).

EXAMPLES
  lunar serve                                   # ./lunar-data, one 1 GiB sparse LUN
  lunar serve --config /etc/lunar/lunar.yaml --data /var/lib/lunar --listen 0.0.0.0:3260
  lunar serve --control-listen 127.0.0.1:3261 --log-format json

${EXIT_HELP}
`,
    )
    .action(async (o: ServeOptions) => {
      program.setOptionValue('exit', await serve(o));
    });
  registerCommands(program);
  registerReplCommands(program);
  registerBenchCommand(program);
  program.addHelpText(
    'after',
    `\nDOCUMENTATION\n  docs/cli.md, docs/control-api.md, docs/tgtadm.md, docs/config.md\n\n${EXIT_HELP}\n`,
  );
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return (program.getOptionValue('exit') as number | undefined) ?? EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    const { message, code } = describeError(err);
    process.stderr.write(`lunar: ${message}\n`);
    return code;
  }
}
