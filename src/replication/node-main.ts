/**
 * A replication node process (one resource on one node) and a small client for its control
 * socket. Until `lunar repl …` folds this in:
 *
 *   node dist/src/replication/node-main.js serve --config r0.yaml --node 0 [--no-up] [--log-level info]
 *   node dist/src/replication/node-main.js ctl   --config r0.yaml --node 0 <command> [options]
 *
 * ctl commands: up down adjust primary [--force] secondary connect [--discard-my-data] disconnect
 * invalidate invalidate-remote new-current-uuid --clear-bitmap verify pause-sync resume-sync
 * resume-io wait-connect wait-sync [--timeout MS] status [--json] proc events shutdown
 * (--peer N restricts a command to one peer).
 */
import { createConnection } from 'node:net';
import { parseArgs } from 'node:util';
import { ensureThreadPoolSize } from '../native/index.js';
import { createLogger, type LogLevel } from '../util/log.js';
import { loadResourceConfig } from './config.js';
import { controlRequest, startControlServer } from './control.js';
import { Resource } from './resource.js';
import { type ResourceStatus, statusText } from './status.js';

const USAGE = `usage:
  node-main serve --config FILE --node ID [--no-up] [--log-level LEVEL] [--log-format text|json]
  node-main ctl --config FILE --node ID COMMAND [--force] [--discard-my-data] [--clear-bitmap]
                [--peer N] [--timeout MS] [--json]
`;

async function serve(
  configPath: string,
  nodeId: number,
  up: boolean,
  level: LogLevel,
  format: 'text' | 'json',
): Promise<void> {
  const cfg = loadResourceConfig(configPath);
  const log = createLogger({ level, format, name: 'lunar-repl' });
  const r = new Resource({ config: cfg, nodeId, logger: log });
  const ctlPath = r.me.control;
  r.on('event', (l) => log.debug({ event: l }, 'event'));
  let stopping = false;
  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await r.down().catch((e: Error) => log.error({ err: e.message }, 'down failed'));
    server.close();
    process.exit(code);
  };
  const server = await startControlServer(r, ctlPath, {
    onShutdown: () => void stop(0),
    reloadConfig: () => loadResourceConfig(configPath),
  });
  process.on('SIGTERM', () => void stop(0));
  process.on('SIGINT', () => void stop(0));
  if (up) await r.up();
  log.info(
    { resource: cfg.name, node: nodeId, control: ctlPath, address: r.me.address },
    'replication node ready',
  );
  process.stdout.write(`READY ${ctlPath}\n`);
}

async function ctl(
  configPath: string,
  nodeId: number,
  argv: string[],
  v: Record<string, unknown>,
): Promise<number> {
  const cfg = loadResourceConfig(configPath);
  const node = cfg.nodes.find((n) => n.id === nodeId);
  if (node === undefined) throw new Error(`node ${nodeId} is not in ${configPath}`);
  const cmd = argv[0];
  if (cmd === undefined) throw new Error(`missing command\n${USAGE}`);
  if (cmd === 'events') {
    const sock = createConnection(node.control);
    sock.on('connect', () => sock.write(`${JSON.stringify({ cmd: 'events' })}\n`));
    sock.pipe(process.stdout);
    await new Promise((r) => sock.on('close', r));
    return 0;
  }
  const req: Record<string, unknown> & { cmd: string } = { cmd };
  if (v['force'] === true) req['force'] = true;
  if (v['discard-my-data'] === true) req['discardMyData'] = true;
  if (v['clear-bitmap'] === true) req['clearBitmap'] = true;
  if (typeof v['peer'] === 'string') req['peer'] = Number(v['peer']);
  if (typeof v['timeout'] === 'string') req['timeoutMs'] = Number(v['timeout']);
  const res = await controlRequest(node.control, req);
  if (cmd === 'status' && v['json'] !== true) process.stdout.write(statusText(res as ResourceStatus));
  else if (cmd === 'proc') process.stdout.write(String(res));
  else if (res !== null) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
  return 0;
}

async function main(): Promise<number> {
  ensureThreadPoolSize();
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      node: { type: 'string', short: 'n' },
      'no-up': { type: 'boolean' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
      force: { type: 'boolean' },
      'discard-my-data': { type: 'boolean' },
      'clear-bitmap': { type: 'boolean' },
      peer: { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const mode = positionals[0];
  if (
    values.help === true ||
    mode === undefined ||
    values.config === undefined ||
    values.node === undefined
  ) {
    process.stderr.write(USAGE);
    return values.help === true ? 0 : 2;
  }
  const nodeId = Number(values.node);
  if (mode === 'serve') {
    await serve(
      values.config,
      nodeId,
      values['no-up'] !== true,
      (values['log-level'] ?? 'info') as LogLevel,
      values['log-format'] === 'json' ? 'json' : 'text',
    );
    return -1; // keep running
  }
  if (mode === 'ctl') return ctl(values.config, nodeId, positionals.slice(1), values);
  process.stderr.write(USAGE);
  return 2;
}

main().then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e: Error) => {
    process.stderr.write(`error: ${e.message}\n`);
    process.exit(1);
  },
);
