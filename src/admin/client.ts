/**
 * Client of the control API, used by every CLI (`lunar …`, `lunar-tgtadm`, `lunar-tgt-admin`).
 *
 * Where the daemon is: --socket, $LUNAR_SOCKET, $LUNAR_DATA/lunar.sock, ./lunar-data/lunar.sock,
 * /var/lib/lunar/lunar.sock (first that exists), or --url http://127.0.0.1:3261 with a token
 * (--token, $LUNAR_TOKEN, or the token file next to the socket).
 */
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join, resolve } from 'node:path';

export interface ClientOptions {
  readonly socket?: string;
  readonly url?: string;
  readonly token?: string;
  readonly data?: string;
  readonly timeoutMs?: number;
}

export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly status: number;
  readonly code: string;
  readonly subject: string;
  readonly details?: unknown;
  constructor(status: number, code: string, subject: string, message: string, details?: unknown) {
    super(message);
    this.status = status;
    this.code = code;
    this.subject = subject;
    if (details !== undefined) this.details = details;
  }
}

/** The daemon could not be reached (not running, wrong socket). */
export class UnreachableError extends Error {
  override readonly name = 'UnreachableError';
}

export function defaultSocketCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const out: string[] = [];
  if (env['LUNAR_SOCKET']) out.push(env['LUNAR_SOCKET']);
  if (env['LUNAR_DATA']) out.push(join(env['LUNAR_DATA'], 'lunar.sock'));
  out.push(resolve('lunar-data', 'lunar.sock'), '/var/lib/lunar/lunar.sock');
  return out;
}

export function resolveSocket(opts: ClientOptions, env: NodeJS.ProcessEnv = process.env): string {
  if (opts.socket) return opts.socket;
  if (opts.data) return join(opts.data, 'lunar.sock');
  const all = defaultSocketCandidates(env);
  return all.find((p) => existsSync(p)) ?? all[0] ?? 'lunar-data/lunar.sock';
}

export class ControlClient {
  readonly #opts: ClientOptions;
  readonly where: string;
  readonly #socket?: string;
  readonly #token?: string;

  constructor(opts: ClientOptions = {}) {
    this.#opts = opts;
    if (opts.url) {
      this.where = opts.url;
      const token =
        opts.token ??
        process.env['LUNAR_TOKEN'] ??
        (opts.data && existsSync(join(opts.data, 'token'))
          ? readFileSync(join(opts.data, 'token'), 'utf8').trim()
          : undefined);
      if (token !== undefined) this.#token = token;
    } else {
      this.#socket = resolveSocket(opts);
      this.where = this.#socket;
    }
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }
  post<T = unknown>(path: string, body: unknown = {}): Promise<T> {
    return this.call<T>('POST', path, body);
  }
  patch<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.call<T>('PATCH', path, body);
  }
  delete<T = unknown>(path: string): Promise<T> {
    return this.call<T>('DELETE', path);
  }

  call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    if (this.#token) headers['authorization'] = `Bearer ${this.#token}`;
    const base = this.#opts.url ? new URL(this.#opts.url) : undefined;
    return new Promise<T>((done, fail) => {
      const req = request(
        {
          method,
          path,
          headers,
          ...(base
            ? { host: base.hostname, port: Number(base.port || 3261) }
            : { socketPath: this.#socket as string }),
          timeout: this.#opts.timeoutMs ?? 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = text ? JSON.parse(text) : {};
            } catch {
              fail(
                new ApiError(
                  res.statusCode ?? 500,
                  'internal',
                  'reply',
                  `daemon sent a non-JSON reply: ${text.slice(0, 200)}`,
                ),
              );
              return;
            }
            const status = res.statusCode ?? 500;
            if (status >= 400) {
              const e =
                (json as { error?: { code?: string; subject?: string; message?: string; details?: unknown } })
                  .error ?? {};
              fail(
                new ApiError(
                  status,
                  e.code ?? 'internal',
                  e.subject ?? '',
                  e.message ?? `HTTP ${status}`,
                  e.details,
                ),
              );
              return;
            }
            done(json as T);
          });
        },
      );
      req.on('timeout', () =>
        req.destroy(
          new Error(
            `no answer from the daemon at ${this.where} within ${(this.#opts.timeoutMs ?? 30_000) / 1000}s`,
          ),
        ),
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
          fail(
            new UnreachableError(
              `cannot reach lunar at ${this.where} (${err.code}): is \`lunar serve\` running? (select it with --data DIR, --socket PATH or $LUNAR_SOCKET)`,
            ),
          );
        } else if (err.code === 'EACCES') {
          fail(
            new UnreachableError(
              `permission denied on ${this.where}: run as the user that runs lunar (or root)`,
            ),
          );
        } else fail(new UnreachableError(err.message));
      });
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }
}

/** The data directory of a socket path (for the token file). */
export function dataDirOf(socket: string): string {
  return dirname(socket);
}
