/**
 * Local control channel of a replication node: a unix socket speaking JSON lines.
 *
 *   → {"cmd":"primary","force":true}
 *   ← {"ok":true,"result":…}  |  {"ok":false,"error":"…"}
 *
 * Commands: up, down, adjust, primary [force], secondary, connect [discardMyData, peer], disconnect [peer],
 * invalidate [peer], invalidate-remote [peer], new-current-uuid [clearBitmap], verify [peer],
 * pause-sync, resume-sync, resume-io, wait-connect [timeoutMs], wait-sync [timeoutMs], status,
 * proc, events (streams events2-style lines: the `exists` dump, `exists -`, then one line per change),
 * load (a write load generator for tests and demos: FUA writes of stamped 4 KiB blocks, one
 * `{"ack":seq,"block":n}` line per acknowledged write, then the usual reply).
 */
import { randomFillSync } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Backstore } from '../backstore/types.js';
import { allocAligned } from '../native/index.js';
import { ReplicatedBackstore } from './backstore.js';
import type { ResourceConfig } from './config.js';
import { removeStale, type Resource } from './resource.js';
import { procText, resourceStatus } from './status.js';
import { xorshift32 } from '../util/xorshift.js';

export type ControlRequest = { cmd: string } & Record<string, unknown>;

export const CONTROL_COMMANDS = [
  'up',
  'down',
  'adjust',
  'primary',
  'secondary',
  'connect',
  'disconnect',
  'invalidate',
  'invalidate-remote',
  'new-current-uuid',
  'verify',
  'pause-sync',
  'resume-sync',
  'resume-io',
  'wait-connect',
  'wait-sync',
  'status',
  'proc',
  'events',
  'load',
  'bench',
  'shutdown',
] as const;

function optPeer(req: ControlRequest): number | undefined {
  const p = req['peer'];
  return typeof p === 'number' ? p : undefined;
}

function optTimeout(req: ControlRequest): number {
  const t = req['timeoutMs'];
  return typeof t === 'number' && t > 0 ? t : 60_000;
}

/** Executes one control request against a resource. */
export async function execute(
  r: Resource,
  req: ControlRequest,
  o: ControlServerOptions = {},
): Promise<unknown> {
  switch (req.cmd) {
    case 'adjust': {
      if (o.reloadConfig === undefined) throw new Error('adjust: this node has no resource file to reload');
      return { changes: await r.adjust(o.reloadConfig()) };
    }
    case 'up':
      await r.up();
      return null;
    case 'down':
      await r.down();
      return null;
    case 'primary':
      await r.primary(req['force'] === true);
      return null;
    case 'secondary':
      await r.secondary();
      return null;
    case 'connect':
      r.connect({
        discardMyData: req['discardMyData'] === true,
        ...(optPeer(req) === undefined ? {} : { peer: optPeer(req) as number }),
      });
      return null;
    case 'disconnect':
      r.disconnect(optPeer(req));
      return null;
    case 'invalidate':
      r.invalidate(optPeer(req));
      return null;
    case 'invalidate-remote':
      r.invalidateRemote(optPeer(req));
      return null;
    case 'new-current-uuid':
      if (req['clearBitmap'] !== true) throw new Error('new-current-uuid: only --clear-bitmap is supported');
      await r.newCurrentUuidClearBitmap();
      return null;
    case 'verify':
      return { outOfSyncBlocks: await r.verify(optPeer(req)) };
    case 'pause-sync':
      r.pauseSync(optPeer(req));
      return null;
    case 'resume-sync':
      r.resumeSync(optPeer(req));
      return null;
    case 'resume-io':
      r.resumeIo();
      return null;
    case 'wait-connect':
      await r.waitConnect(optTimeout(req), optPeer(req));
      return null;
    case 'wait-sync':
      await r.waitSync(optTimeout(req), optPeer(req));
      return null;
    case 'status':
      return resourceStatus(r);
    case 'proc':
      return procText(r);
    default:
      throw new Error(`unknown command '${req.cmd}' (known: ${CONTROL_COMMANDS.join(', ')})`);
  }
}

export interface ControlServerOptions {
  /** Re-reads the resource file (for adjust). */
  readonly reloadConfig?: () => ResourceConfig;
  /** Called for 'shutdown' after the reply is written. */
  readonly onShutdown?: () => void;
}

/** Serves the control channel on a unix socket path (a stale socket file is replaced). */
export async function startControlServer(
  r: Resource,
  path: string,
  o: ControlServerOptions = {},
): Promise<Server> {
  removeStale(path);
  const server = createServer((sock) => serve(r, sock, o));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  return server;
}

function serve(r: Resource, sock: Socket, o: ControlServerOptions): void {
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('error', () => {});
  sock.on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line.length > 0) void handle(r, sock, line, o);
    }
  });
}

async function handle(r: Resource, sock: Socket, line: string, o: ControlServerOptions): Promise<void> {
  let req: ControlRequest;
  try {
    const v = JSON.parse(line) as unknown;
    if (v === null || typeof v !== 'object' || typeof (v as { cmd?: unknown }).cmd !== 'string') {
      throw new Error('request must be a JSON object with a "cmd" string');
    }
    req = v as ControlRequest;
  } catch (e) {
    sock.write(`${JSON.stringify({ ok: false, error: `bad request: ${(e as Error).message}` })}\n`);
    return;
  }
  if (req.cmd === 'events') {
    for (const l of r.stateLines().values()) sock.write(`exists ${l}\n`);
    sock.write('exists -\n');
    const on = (l: string): void => {
      sock.write(`${l}\n`);
    };
    r.on('event', on);
    sock.on('close', () => r.off('event', on));
    return;
  }
  if (req.cmd === 'load') {
    try {
      const result = await load(r, req, (l) => {
        if (!sock.destroyed) sock.write(`${l}\n`);
      });
      if (!sock.destroyed) sock.write(`${JSON.stringify({ ok: true, result })}\n`);
    } catch (e) {
      if (!sock.destroyed) sock.write(`${JSON.stringify({ ok: false, error: (e as Error).message })}\n`);
    }
    return;
  }
  if (req.cmd === 'bench') {
    try {
      const result = await benchLoad(r, req);
      if (!sock.destroyed) sock.write(`${JSON.stringify({ ok: true, result })}\n`);
    } catch (e) {
      if (!sock.destroyed) sock.write(`${JSON.stringify({ ok: false, error: (e as Error).message })}\n`);
    }
    return;
  }
  if (req.cmd === 'shutdown') {
    sock.end(`${JSON.stringify({ ok: true, result: null })}\n`);
    o.onShutdown?.();
    return;
  }
  try {
    const result = await execute(r, req, o);
    if (!sock.destroyed) sock.write(`${JSON.stringify({ ok: true, result })}\n`);
  } catch (e) {
    if (!sock.destroyed) sock.write(`${JSON.stringify({ ok: false, error: (e as Error).message })}\n`);
  }
}

/** Sends one request and resolves with the result (rejects with the node's error message). */
export function controlRequest(path: string, req: ControlRequest, timeoutMs = 120_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const t = setTimeout(() => {
      sock.destroy();
      reject(new Error(`control request '${req.cmd}' timed out`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('error', (e) => {
      clearTimeout(t);
      reject(new Error(`cannot reach the node's control socket ${path}: ${e.message}`));
    });
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (c: string) => {
      buf += c;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const res = JSON.parse(buf.slice(0, nl)) as { ok?: boolean; result?: unknown; error?: string };
        buf = buf.slice(nl + 1);
        if (res.ok === undefined) continue; // progress lines (load)
        clearTimeout(t);
        sock.end();
        if (res.ok) resolve(res.result ?? null);
        else reject(new Error(res.error ?? 'failed'));
        return;
      }
    });
  });
}

/** Content of block `block` written by write number `seq`: the pair repeated over 4 KiB. */
export function stampBlock(seq: number, block: number): Buffer {
  const b = Buffer.allocUnsafe(4096);
  for (let i = 0; i < 4096; i += 8) {
    b.writeUInt32LE(seq, i);
    b.writeUInt32LE(block, i + 4);
  }
  return b;
}

async function load(r: Resource, req: ControlRequest, ack: (line: string) => void): Promise<unknown> {
  const count = typeof req['count'] === 'number' ? req['count'] : 1000;
  const blocks = typeof req['blocks'] === 'number' ? req['blocks'] : 1024;
  const qd = typeof req['qd'] === 'number' ? req['qd'] : 8;
  const fua = req['fua'] !== false;
  const rand = xorshift32(typeof req['seed'] === 'number' ? req['seed'] : 1);
  const bs = new ReplicatedBackstore(r);
  const per = 4096 / bs.blockSize;
  let next = 1;
  let acked = 0;
  const worker = async (): Promise<void> => {
    while (next <= count) {
      const seq = next++;
      const block = Math.floor(rand() * blocks);
      await bs.write(block * per, stampBlock(seq, block), { fua });
      acked++;
      ack(JSON.stringify({ ack: seq, block }));
    }
  };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: qd }, worker));
  return { acked, ms: Date.now() - t0 };
}

export interface BenchResult {
  readonly ios: number;
  readonly bytes: number;
  readonly secs: number;
  readonly iops: number;
  readonly mibps: number;
  readonly meanUs: number;
  readonly p50Us: number;
  readonly p99Us: number;
  /** Latency percentiles 0, 1, …, 100 (µs), for distribution charts. */
  readonly cdfUs: readonly number[];
}

/**
 * Benchmark load (bench/repl.ts): `size`-byte writes at queue depth `qd` for `seconds` (after
 * `warmupMs` not counted), random (`pattern: 'rand'`) or sequential; `raw: true` writes the local
 * backing store directly (the local-only baseline, no replication). Buffers are allocated once,
 * aligned.
 */
export async function benchLoad(r: Resource, req: ControlRequest): Promise<BenchResult> {
  const n = (k: string, d: number): number => (typeof req[k] === 'number' ? (req[k] as number) : d);
  const size = n('size', 4096);
  const qd = n('qd', 1);
  const seconds = n('seconds', 3);
  const warmupMs = n('warmupMs', 300);
  const seq = req['pattern'] === 'seq';
  const fua = req['fua'] === true;
  const raw = req['raw'] === true;
  const bs: Backstore | null = raw ? r.backing : new ReplicatedBackstore(r);
  if (bs === null) throw new Error('bench: no local disk');
  const per = size / bs.blockSize;
  const slots = Math.floor(r.sizeBytes / size);
  // Aligned like the iSCSI layer's write buffers (its Data-Out lands in an aligned pool), so the
  // O_DIRECT backing file takes them as they are instead of through a bounce copy.
  const bufs = Array.from({ length: qd }, () => randomFillSync(allocAligned(size, { zero: false })));
  const rand = xorshift32(0x2545f491);
  let next = 0;
  const lat: number[] = [];
  let recording = false;
  let stopAt = Date.now() + warmupMs + seconds * 1000;
  const worker = async (i: number): Promise<void> => {
    const buf = bufs[i] as Buffer;
    while (Date.now() < stopAt) {
      const slot = seq ? next++ % slots : Math.floor(rand() * slots);
      const t0 = performance.now();
      await bs.write(slot * per, buf, { fua });
      if (recording) lat.push((performance.now() - t0) * 1000);
    }
  };
  const started = Promise.all(Array.from({ length: qd }, (_, i) => worker(i)));
  await new Promise((res) => setTimeout(res, warmupMs));
  recording = true;
  const t0 = performance.now();
  stopAt = Date.now() + seconds * 1000;
  await started;
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? 0;
  const ios = lat.length;
  return {
    ios,
    bytes: ios * size,
    secs,
    iops: ios / secs,
    mibps: (ios * size) / 1048576 / secs,
    meanUs: lat.reduce((a, b) => a + b, 0) / Math.max(1, ios),
    p50Us: pct(50),
    p99Us: pct(99),
    cdfUs: Array.from({ length: 101 }, (_, p) => pct(p)),
  };
}
