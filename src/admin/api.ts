/**
 * The control API: JSON over HTTP on a unix socket (DATA/lunar.sock, mode 0600: file permissions
 * are the authentication) and optionally on a loopback TCP port with a bearer token (DATA/token).
 * Routes are a table; docs/control-api.md documents them.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { writeFileAtomic } from './config.js';
import { ControlError, type Controller, HTTP_STATUS } from './control.js';
import {
  ReplicationAdminError,
  replicationProc,
  replicationStatus,
  replicationVerb,
  resourceOf,
} from './replication.js';

type Params = Readonly<Record<string, string>>;
type Handler = (c: Controller, p: Params, body: Record<string, unknown>, q: URLSearchParams) => unknown;

interface Route {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  readonly path: string;
  readonly handler: Handler;
  readonly status?: number;
  /** A streaming route writes the response itself (text lines until the client goes away). */
  readonly stream?: (c: Controller, p: Params, res: ServerResponse) => void;
}

/** Replication errors as control API errors (a refused state change is a conflict, exit 3). */
async function repl<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ControlError) throw err;
    if (err instanceof ReplicationAdminError) throw new ControlError(err.code, 'resource', err.message);
    throw new ControlError('busy', 'resource', (err as Error).message);
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const bool = (v: unknown): boolean => v === true || v === 'true' || v === '1' || v === 'yes';
const int = (v: string | undefined, what: string): number => {
  if (v === undefined || !/^[0-9]+$/.test(v))
    throw new ControlError('invalid', what, `${what} "${v ?? ''}" is not a whole number`);
  return Number(v);
};
const ref = (p: Params): string => p['target'] ?? '';

/** The routes, in matching order. `:name` segments are URL-decoded parameters. */
export const ROUTES: readonly Route[] = [
  { method: 'GET', path: '/v1/status', handler: (c) => c.status() },
  { method: 'GET', path: '/v1/system', handler: (c) => ({ state: c.systemState }) },
  {
    method: 'PATCH',
    path: '/v1/system',
    handler: (c, _p, b) => {
      c.setSystemState(b['state'] as 'ready' | 'offline');
      return { state: c.systemState };
    },
  },
  { method: 'GET', path: '/v1/targets', handler: (c) => c.targets() },
  {
    method: 'POST',
    path: '/v1/targets',
    status: 201,
    handler: (c, _p, b) =>
      c.createTarget({
        name: str(b['name']) ?? '',
        ...(b['tid'] !== undefined ? { tid: Number(b['tid']) } : {}),
        ...(str(b['alias']) !== undefined ? { alias: str(b['alias']) as string } : {}),
        ...(b['acl'] !== undefined
          ? { acl: b['acl'] as { initiators?: 'ALL' | string[]; addresses?: 'ALL' | string[] } }
          : {}),
      }),
  },
  { method: 'GET', path: '/v1/targets/:target', handler: (c, p) => c.target(ref(p)) },
  { method: 'PATCH', path: '/v1/targets/:target', handler: (c, p, b) => c.updateTarget(ref(p), b) },
  {
    method: 'DELETE',
    path: '/v1/targets/:target',
    handler: async (c, p, _b, q) => {
      await c.deleteTarget(ref(p), { force: bool(q.get('force')) });
      return { deleted: ref(p) };
    },
  },
  { method: 'GET', path: '/v1/targets/:target/luns', handler: (c, p) => c.target(ref(p)).luns },
  {
    method: 'POST',
    path: '/v1/targets/:target/luns',
    status: 201,
    handler: (c, p, b) => c.addLun(ref(p), b as unknown as Parameters<Controller['addLun']>[1]),
  },
  {
    method: 'PATCH',
    path: '/v1/targets/:target/luns/:lun',
    handler: (c, p, b) => c.updateLun(ref(p), int(p['lun'], 'LUN'), b),
  },
  {
    method: 'DELETE',
    path: '/v1/targets/:target/luns/:lun',
    handler: async (c, p) => {
      await c.deleteLun(ref(p), int(p['lun'], 'LUN'));
      return { deleted: int(p['lun'], 'LUN') };
    },
  },
  { method: 'GET', path: '/v1/targets/:target/acl', handler: (c, p) => c.target(ref(p)).acl },
  {
    method: 'POST',
    path: '/v1/targets/:target/acl',
    handler: (c, p, b) => c.bindAcl(ref(p), aclChange(b)).then((t) => t.acl),
  },
  {
    method: 'DELETE',
    path: '/v1/targets/:target/acl',
    handler: (c, p, _b, q) =>
      c
        .unbindAcl(
          ref(p),
          aclChange({ address: q.get('address') ?? undefined, initiator: q.get('initiator') ?? undefined }),
        )
        .then((t) => t.acl),
  },
  {
    method: 'POST',
    path: '/v1/targets/:target/accounts',
    handler: async (c, p, b) => {
      await c.bindAccount(ref(p), str(b['user']) ?? '', bool(b['outgoing']));
      return c.target(ref(p)).accounts;
    },
  },
  {
    method: 'DELETE',
    path: '/v1/targets/:target/accounts/:user',
    handler: async (c, p) => {
      await c.unbindAccount(ref(p), p['user'] ?? '');
      return c.target(ref(p)).accounts;
    },
  },
  { method: 'GET', path: '/v1/targets/:target/sessions', handler: (c, p) => c.target(ref(p)).sessions },
  { method: 'GET', path: '/v1/accounts', handler: (c) => c.accounts() },
  {
    method: 'POST',
    path: '/v1/accounts',
    status: 201,
    handler: async (c, _p, b) => {
      await c.createAccount(str(b['user']) ?? '', str(b['secret']) ?? '');
      return { user: b['user'] };
    },
  },
  {
    method: 'DELETE',
    path: '/v1/accounts/:user',
    handler: async (c, p) => {
      await c.deleteAccount(p['user'] ?? '');
      return { deleted: p['user'] };
    },
  },
  { method: 'GET', path: '/v1/portals', handler: (c) => c.portals() },
  {
    method: 'POST',
    path: '/v1/portals',
    status: 201,
    handler: async (c, _p, b) => {
      await c.addPortal(str(b['listen']) ?? '', b['group'] === undefined ? 1 : Number(b['group']));
      return c.portals();
    },
  },
  {
    method: 'DELETE',
    path: '/v1/portals/:listen',
    handler: async (c, p) => {
      await c.removePortal(p['listen'] ?? '');
      return c.portals();
    },
  },
  {
    method: 'GET',
    path: '/v1/sessions',
    handler: (c, _p, _b, q) => c.sessions(q.get('target') ?? undefined),
  },
  {
    method: 'DELETE',
    path: '/v1/sessions/:tsih',
    handler: (c, p) => {
      c.dropSession(int(p['tsih'], 'session'));
      return { dropped: Number(p['tsih']) };
    },
  },
  { method: 'GET', path: '/v1/replication', handler: (c) => repl(() => replicationStatus(c.replication)) },
  {
    method: 'GET',
    path: '/v1/replication/:res',
    handler: (c, p) => repl(() => replicationStatus(c.replication, p['res'] ?? '')[0]),
  },
  {
    method: 'GET',
    path: '/v1/replication/:res/proc',
    handler: (c, p) =>
      repl(() => ({
        text: replicationProc(c.replication, p['res'] === '-' ? undefined : (p['res'] ?? '')),
      })),
  },
  {
    method: 'GET',
    path: '/v1/replication/:res/events',
    handler: () => ({}),
    stream: (c, p, res) => {
      const r = resourceOf(c.replication, p['res'] ?? '').resource;
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' });
      for (const l of r.stateLines().values()) res.write(`exists ${l}\n`);
      res.write('exists -\n');
      const on = (l: string): void => {
        res.write(`${l}\n`);
      };
      r.on('event', on);
      res.on('close', () => r.off('event', on));
    },
  },
  {
    method: 'POST',
    path: '/v1/replication/:res/:verb',
    handler: (c, p, b) =>
      repl(async () => ({
        result: await replicationVerb(c.replication, p['res'] ?? '', p['verb'] ?? '', b),
      })),
  },
  {
    method: 'POST',
    path: '/v1/stop',
    status: 202,
    handler: (c, _p, b) =>
      c.stop({
        force: bool(b['force']),
        ...(b['timeoutMs'] !== undefined ? { timeoutMs: Number(b['timeoutMs']) } : {}),
      }),
  },
];

function aclChange(b: Record<string, unknown>): { address?: string; initiator?: string } {
  const address = str(b['address']);
  const initiator = str(b['initiator']);
  return { ...(address !== undefined ? { address } : {}), ...(initiator !== undefined ? { initiator } : {}) };
}

/** Finds the route for a method and path; `allowed` lists methods of a path that exists. */
export function matchRoute(
  method: string,
  path: string,
): { route?: Route; params: Params; allowed: string[] } {
  const parts = path.split('/').filter(Boolean);
  const allowed: string[] = [];
  for (const r of ROUTES) {
    const rp = r.path.split('/').filter(Boolean);
    if (rp.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < rp.length; i++) {
      const seg = rp[i] ?? '';
      const got = parts[i] ?? '';
      if (seg.startsWith(':')) params[seg.slice(1)] = decodeURIComponent(got);
      else if (seg !== got) {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    if (r.method === method) return { route: r, params, allowed };
    allowed.push(r.method);
  }
  return { params: {}, allowed };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 1 << 20) {
        reject(new ControlError('invalid', 'body', 'request body larger than 1 MiB'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (!text) return resolve({});
      try {
        const v: unknown = JSON.parse(text);
        if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
        resolve(v as Record<string, unknown>);
      } catch (err) {
        reject(
          new ControlError('invalid', 'body', `request body is not a JSON object: ${(err as Error).message}`),
        );
      }
    });
    req.on('error', reject);
  });
}

export interface ControlServerOptions {
  readonly controller: Controller;
  /** Unix socket path (DATA/lunar.sock). */
  readonly socketPath: string;
  /** Optional loopback TCP listener, e.g. { host: '127.0.0.1', port: 3261 }, with a bearer token. */
  readonly tcp?: { readonly host: string; readonly port: number };
  /** Token file (DATA/token); generated (0600) when missing. */
  readonly tokenFile?: string;
}

export interface ControlServer {
  readonly socketPath: string;
  readonly tcpPort?: number;
  close(): Promise<void>;
}

/** Reads DATA/token, creating it (32 random bytes, hex, mode 0600) when missing. */
export function ensureToken(file: string): string {
  if (existsSync(file)) {
    const t = readFileSync(file, 'utf8').trim();
    if (t) return t;
  }
  const token = randomBytes(32).toString('hex');
  writeFileAtomic(file, `${token}\n`);
  chmodSync(file, 0o600);
  return token;
}

function tokenOk(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  if (!m?.[1]) return false;
  const a = Buffer.from(m[1]);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Is a unix socket answered by a live daemon? (A stale one is left by kill -9.) */
function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function listen(server: Server, target: string | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = () => {
      server.off('error', reject);
      resolve();
    };
    if (typeof target === 'string') server.listen(target, done);
    else server.listen({ host: target.host, port: target.port, exclusive: true }, done);
  });
}

export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const token = opts.tcp ? ensureToken(opts.tokenFile ?? `${opts.socketPath}.token`) : undefined;
  const handle = (needToken: boolean) => async (req: IncomingMessage, res: ServerResponse) => {
    try {
      if (needToken && !tokenOk(req.headers.authorization, token ?? '')) {
        send(res, 401, {
          error: { code: 'unauthorized', message: 'missing or wrong bearer token (see DATA/token)' },
        });
        return;
      }
      const url = new URL(req.url ?? '/', 'http://lunar');
      const { route, params, allowed } = matchRoute(req.method ?? 'GET', url.pathname);
      if (!route) {
        if (allowed.length)
          send(res, 405, {
            error: {
              code: 'invalid',
              message: `${req.method} not allowed on ${url.pathname} (allowed: ${allowed.join(', ')})`,
            },
          });
        else send(res, 404, { error: { code: 'not_found', message: `no such endpoint ${url.pathname}` } });
        return;
      }
      if (route.stream !== undefined) {
        try {
          route.stream(opts.controller, params, res);
        } catch (err) {
          throw err instanceof ReplicationAdminError
            ? new ControlError(err.code, 'resource', err.message)
            : err;
        }
        return;
      }
      const body = req.method === 'GET' || req.method === 'DELETE' ? {} : await readBody(req);
      const out = await route.handler(opts.controller, params, body, url.searchParams);
      send(res, route.status ?? 200, out ?? {});
    } catch (err) {
      if (err instanceof ControlError) {
        send(res, HTTP_STATUS[err.code], {
          error: {
            code: err.code,
            subject: err.subject,
            message: err.message,
            ...(err.details !== undefined ? { details: err.details } : {}),
          },
        });
      } else {
        send(res, 500, { error: { code: 'internal', message: (err as Error).message } });
      }
    }
  };
  if (existsSync(opts.socketPath)) {
    if (await socketAlive(opts.socketPath))
      throw new Error(`control socket ${opts.socketPath} is in use by a running lunar`);
    if (statSync(opts.socketPath).isSocket()) unlinkSync(opts.socketPath);
  }
  const unixServer = createServer(handle(false));
  await listen(unixServer, opts.socketPath);
  chmodSync(opts.socketPath, 0o600);
  let tcpServer: Server | undefined;
  let tcpPort: number | undefined;
  if (opts.tcp) {
    tcpServer = createServer(handle(true));
    try {
      await listen(tcpServer, opts.tcp);
    } catch (err) {
      unixServer.close();
      throw err;
    }
    const a = tcpServer.address();
    tcpPort = a && typeof a === 'object' ? a.port : opts.tcp.port;
  }
  const closeOne = (s: Server) =>
    new Promise<void>((r) => {
      s.close(() => r());
      s.closeAllConnections();
    });
  return {
    socketPath: opts.socketPath,
    ...(tcpPort !== undefined ? { tcpPort } : {}),
    async close() {
      await Promise.all([closeOne(unixServer), ...(tcpServer ? [closeOne(tcpServer)] : [])]);
      try {
        unlinkSync(opts.socketPath);
      } catch {
        // gone already
      }
    },
  };
}
