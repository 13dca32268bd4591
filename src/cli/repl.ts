/**
 * `lunar repl …`: drbdadm-like administration of the replicated resources a `lunar serve` daemon
 * runs (the `resources:` section of its config), through the control API (/v1/replication/…).
 * While a resync or verify runs, commands that wait draw a progress bar when stdout is a terminal
 * (hand-written, no dependency).
 */
import { request } from 'node:http';
import type { Command } from 'commander';
import { ApiError, ControlClient, resolveSocket, UnreachableError } from '../admin/client.js';
import { type ResourceStatus, statusText } from '../replication/status.js';
import { exitCodeOf } from './commands.js';
import { EXIT_HELP } from './exit.js';

interface ConnOpts {
  data?: string;
  socket?: string;
  url?: string;
  token?: string;
  json?: boolean;
}

function client(cmd: Command, timeoutMs = 30_000): ControlClient {
  const o = cmd.optsWithGlobals<ConnOpts>();
  return new ControlClient({
    ...(o.data !== undefined ? { data: o.data } : {}),
    ...(o.socket !== undefined ? { socket: o.socket } : {}),
    ...(o.url !== undefined ? { url: o.url } : {}),
    ...(o.token !== undefined ? { token: o.token } : {}),
    timeoutMs,
  });
}

function conn(cmd: Command): Command {
  return cmd
    .option('-d, --data <dir>', 'data directory of the daemon (its socket is DIR/lunar.sock)')
    .option('--socket <path>', 'control socket path (default: as for every lunar command)')
    .option('--url <url>', 'control API over TCP instead, e.g. http://127.0.0.1:3261 (needs the token)')
    .option('--token <token>', 'bearer token for --url');
}

const enc = encodeURIComponent;
const out = (s: string): void => {
  process.stdout.write(s);
};

/** Resource names a command applies to: the one given, or every resource of the daemon ("all"). */
async function targetsOf(c: ControlClient, res: string | undefined): Promise<string[]> {
  if (res !== undefined && res !== 'all') return [res];
  const all = await c.get<ResourceStatus[]>('/v1/replication');
  if (all.length === 0)
    throw new ApiError(404, 'not_found', 'resource', 'the daemon runs no replicated resource');
  return all.map((s) => s.name);
}

function hms(sec: number | null): string {
  if (sec === null) return '--:--:--';
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = Math.floor(sec % 60);
  return `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

/** One progress line for a resource: resync or verify of the first peer that runs one. */
export function progressLine(st: ResourceStatus, width = 30): string | null {
  for (const p of st.peers) {
    const s = p.sync;
    const v = p.verify;
    if (s === null && v === null) continue;
    const pct = s !== null ? s.percent : (v?.percent ?? 0);
    const n = Math.max(0, Math.min(width, Math.round((pct / 100) * width)));
    const bar = `${'█'.repeat(n)}${'░'.repeat(width - n)}`;
    if (s !== null) {
      const what = s.direction === 'source' ? `sync → ${p.name}` : `sync ← ${p.name}`;
      return `${st.name} ${what} ${bar} ${pct.toFixed(1).padStart(5)}% ${Math.round(s.remainingKiB / 1024)}/${Math.round(s.totalKiB / 1024)} MiB left, ${(s.speedKiBps / 1024).toFixed(1)} MiB/s, eta ${hms(s.etaSec)}${s.paused ? ' (paused)' : ''}`;
    }
    return `${st.name} verify ${p.name} ${bar} ${pct.toFixed(1).padStart(5)}% out-of-sync ${v?.oosKiB ?? 0} KiB`;
  }
  return null;
}

/** Runs `work` while drawing the progress of `names` on a terminal (nothing when not a TTY). */
async function withProgress<T>(c: ControlClient, names: string[], work: Promise<T>): Promise<T> {
  if (!process.stdout.isTTY) return work;
  let shown = false;
  let stop = false;
  const draw = async (): Promise<void> => {
    while (!stop) {
      for (const n of names) {
        try {
          const st = await c.get<ResourceStatus>(`/v1/replication/${enc(n)}`);
          const line = progressLine(st, 30);
          if (line !== null && !stop) {
            const cols = process.stdout.columns ?? 120;
            process.stdout.write(
              `\r${line.slice(0, cols - 1).padEnd(Math.min(cols - 1, line.length))}\x1b[K`,
            );
            shown = true;
          }
        } catch {
          // the daemon is busy or gone: the main request reports it
        }
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const drawing = draw();
  try {
    return await work;
  } finally {
    stop = true;
    await drawing;
    if (shown) process.stdout.write('\r\x1b[K');
  }
}

async function verb(
  cmd: Command,
  res: string | undefined,
  name: string,
  body: Record<string, unknown>,
  o: { timeoutMs?: number; progress?: boolean } = {},
): Promise<unknown[]> {
  const c = client(cmd, (o.timeoutMs ?? 30_000) + 10_000);
  const names = await targetsOf(client(cmd), res);
  const results: unknown[] = [];
  for (const n of names) {
    const p = c.post<{ result: unknown }>(`/v1/replication/${enc(n)}/${name}`, body);
    const r = o.progress === true ? await withProgress(client(cmd), [n], p) : await p;
    results.push(r.result);
  }
  return results;
}

function fail(program: Command, err: unknown): void {
  process.stderr.write(`lunar: ${(err as Error).message}\n`);
  program.setOptionValue('exit', exitCodeOf(err));
}

function act<A extends unknown[]>(program: Command, fn: (...args: A) => Promise<void>) {
  return async (...args: A): Promise<void> => {
    try {
      await fn(...args);
    } catch (err) {
      fail(program, err);
    }
  };
}

function seconds(v: string | undefined, def: number): number {
  if (v === undefined) return def * 1000;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    throw new ApiError(400, 'invalid', 'timeout', `--timeout "${v}" is not a number of seconds`);
  return n * 1000;
}

function peerOf(o: { peer?: string }): Record<string, unknown> {
  if (o.peer === undefined) return {};
  if (!/^[0-3]$/.test(o.peer))
    throw new ApiError(400, 'invalid', 'peer', `--peer "${o.peer}" must be a node id 0..3`);
  return { peer: Number(o.peer) };
}

/** Streams GET /v1/replication/:res/events to stdout until interrupted. */
function streamEvents(cmd: Command, res: string): Promise<void> {
  const o = cmd.optsWithGlobals<ConnOpts>();
  if (o.url !== undefined) {
    return Promise.reject(new Error('repl events: use the unix socket (--data/--socket), not --url'));
  }
  const socketPath = resolveSocket({
    ...(o.data !== undefined ? { data: o.data } : {}),
    ...(o.socket !== undefined ? { socket: o.socket } : {}),
  });
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: `/v1/replication/${enc(res)}/events`, method: 'GET' }, (r) => {
      if ((r.statusCode ?? 500) >= 400) {
        let text = '';
        r.on('data', (c: Buffer) => {
          text += c.toString('utf8');
        });
        r.on('end', () => {
          try {
            const e = (JSON.parse(text) as { error: { code: string; message: string } }).error;
            reject(new ApiError(r.statusCode ?? 500, e.code, 'resource', e.message));
          } catch {
            reject(new Error(text));
          }
        });
        return;
      }
      r.pipe(process.stdout);
      r.on('end', resolve);
    });
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? new UnreachableError(
              `cannot reach lunar at ${socketPath} (${err.code}): is \`lunar serve\` running?`,
            )
          : err,
      ),
    );
    req.end();
  });
}

const HELP = `
DESCRIPTION
  drbdadm-like verbs for the replicated resources of the running daemon (\`resources:\` in its
  config, docs/config.md and docs/replication.md). RESOURCE defaults to every resource ("all").
  A target exporting a replicated LUN is offered only on the node where the resource is Primary;
  \`secondary\` refuses while initiators are logged in to it (as DRBD refuses while the device is
  held open) unless --force, which drops those sessions.

EXAMPLES
  lunar repl status                      # drbdsetup status-like; --json for JSON
  lunar repl wait-connect r0 && lunar repl primary r0 --force   # initial full sync to the peer
  lunar repl new-current-uuid r0 --clear-bitmap && lunar repl primary r0   # new zeroed volumes
  lunar repl wait-sync r0                # progress bar on a terminal
  lunar repl verify r0                   # online verify, prints out-of-sync blocks
  lunar repl proc                        # /proc/drbd-like
  lunar repl events r0                   # events2-like lines until Ctrl-C
  lunar repl secondary r0 --force; lunar repl connect r0 --discard-my-data   # split-brain victim
`;

export function registerReplCommands(program: Command): void {
  const repl = program
    .command('repl')
    .description('replicated resources (DRBD-like): up, down, primary, secondary, connect, status, …')
    .addHelpText('after', `${HELP}\n${EXIT_HELP}\n`);

  const simple: [string, string][] = [
    ['up', 'attach the disk, listen and connect to the peers'],
    ['down', 'demote, disconnect and close the resource'],
    ['disconnect', 'drop the connection(s) and stay StandAlone'],
    ['invalidate', "discard this node's data: full resync from the peer"],
    ['invalidate-remote', "discard the peer's data: full resync to it"],
    ['pause-sync', 'pause a running resync'],
    ['resume-sync', 'resume a paused resync'],
    ['resume-io', 'resume I/O frozen by fencing'],
    ['adjust', 're-read the resource file: apply changed options, bring up, reconnect'],
  ];
  for (const [name, desc] of simple) {
    conn(repl.command(name).argument('[resource]', 'resource name (default: all)').description(desc))
      .option('--peer <id>', 'only this peer (node id)')
      .action(
        act(program, async (res: string | undefined, o: { peer?: string }, cmd: Command) => {
          const r = await verb(cmd, res, name, peerOf(o));
          for (const x of r) if (x !== null && x !== undefined) out(`${JSON.stringify(x)}\n`);
        }),
      );
  }

  conn(repl.command('primary').argument('[resource]', 'resource name (default: all)').description('promote'))
    .option('--force', 'promote although the data is not UpToDate (initial sync: overwrite the peer)')
    .action(
      act(program, async (res: string | undefined, o: { force?: boolean }, cmd: Command) => {
        await verb(cmd, res, 'primary', o.force ? { force: true } : {});
      }),
    );
  conn(repl.command('secondary').argument('[resource]', 'resource name (default: all)').description('demote'))
    .option('--force', 'demote although initiators are logged in (their sessions are dropped)')
    .action(
      act(program, async (res: string | undefined, o: { force?: boolean }, cmd: Command) => {
        await verb(cmd, res, 'secondary', o.force ? { force: true } : {});
      }),
    );
  conn(
    repl
      .command('connect')
      .argument('[resource]', 'resource name (default: all)')
      .description('connect to the peer(s)'),
  )
    .option('--discard-my-data', "split-brain victim: this node's changes are discarded")
    .option('--peer <id>', 'only this peer (node id)')
    .action(
      act(
        program,
        async (res: string | undefined, o: { discardMyData?: boolean; peer?: string }, cmd: Command) => {
          await verb(cmd, res, 'connect', {
            ...(o.discardMyData ? { discardMyData: true } : {}),
            ...peerOf(o),
          });
        },
      ),
    );
  conn(
    repl
      .command('new-current-uuid')
      .argument('[resource]', 'resource name (default: all)')
      .description('with --clear-bitmap: skip the initial sync of new zeroed volumes'),
  )
    .requiredOption('--clear-bitmap', 'both sides become UpToDate without a sync')
    .action(
      act(program, async (res: string | undefined, _o: unknown, cmd: Command) => {
        await verb(cmd, res, 'new-current-uuid', { clearBitmap: true });
      }),
    );
  conn(
    repl
      .command('verify')
      .argument('[resource]', 'resource name (default: all)')
      .description('online verify'),
  )
    .option('--peer <id>', 'only this peer (node id)')
    .option('--json', 'print JSON')
    .action(
      act(program, async (res: string | undefined, o: { peer?: string; json?: boolean }, cmd: Command) => {
        const names = await targetsOf(client(cmd), res);
        const rows: { resource: string; outOfSyncBlocks: number }[] = [];
        for (const n of names) {
          const [r] = (await verb(cmd, n, 'verify', peerOf(o), {
            timeoutMs: 7 * 24 * 3600_000,
            progress: true,
          })) as {
            outOfSyncBlocks: number;
          }[];
          rows.push({ resource: n, outOfSyncBlocks: r?.outOfSyncBlocks ?? 0 });
        }
        if (o.json) out(`${JSON.stringify(rows, null, 2)}\n`);
        else
          for (const r of rows)
            out(
              `${r.resource}: verify done, ${r.outOfSyncBlocks} out-of-sync block(s) (${r.outOfSyncBlocks * 4} KiB)\n`,
            );
      }),
    );
  for (const [name, desc] of [
    ['wait-connect', 'wait until every peer is connected'],
    ['wait-sync', 'wait until connected and resynced (progress bar on a terminal)'],
  ] as const) {
    conn(repl.command(name).argument('[resource]', 'resource name (default: all)').description(desc))
      .option('--peer <id>', 'only this peer (node id)')
      .option('-t, --timeout <seconds>', 'give up after this long (default 60; exit 3)')
      .action(
        act(
          program,
          async (res: string | undefined, o: { peer?: string; timeout?: string }, cmd: Command) => {
            const timeoutMs = seconds(o.timeout, 60);
            await verb(
              cmd,
              res,
              name,
              { timeoutMs, ...peerOf(o) },
              { timeoutMs, progress: name === 'wait-sync' },
            );
          },
        ),
      );
  }
  conn(
    repl
      .command('status')
      .argument('[resource]', 'resource name (default: all)')
      .description('drbdsetup status-like view'),
  )
    .option('--json', 'print JSON')
    .action(
      act(program, async (res: string | undefined, o: { json?: boolean }, cmd: Command) => {
        const c = client(cmd);
        const sts =
          res === undefined || res === 'all'
            ? await c.get<ResourceStatus[]>('/v1/replication')
            : [await c.get<ResourceStatus>(`/v1/replication/${enc(res)}`)];
        if (o.json)
          return out(`${JSON.stringify(res === undefined || res === 'all' ? sts : sts[0], null, 2)}\n`);
        for (const st of sts) out(statusText(st));
      }),
    );
  conn(
    repl
      .command('proc')
      .argument('[resource]', 'resource name (default: all)')
      .description('/proc/drbd-like view'),
  )
    .option('--json', 'print JSON ({"text": …})')
    .action(
      act(program, async (res: string | undefined, o: { json?: boolean }, cmd: Command) => {
        const r = await client(cmd).get<{ text: string }>(
          `/v1/replication/${res === undefined || res === 'all' ? '-' : enc(res)}/proc`,
        );
        out(o.json ? `${JSON.stringify(r, null, 2)}\n` : r.text);
      }),
    );
  conn(
    repl
      .command('events')
      .argument('[resource]', 'resource name (default: the only one)')
      .description('events2-like lines: the current state (exists …), then one line per change'),
  ).action(
    act(program, async (res: string | undefined, _o: unknown, cmd: Command) => {
      const names = await targetsOf(client(cmd), res);
      await Promise.all(names.map((n) => streamEvents(cmd, n)));
    }),
  );
}

/** `lunar bench <name> [options]`: runs a bench of bench/run.ts (e.g. `lunar bench repl`). */
export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('run a benchmark: repl (replication cost, see bench/repl.ts), backstore, iscsi, crc')
    .argument('<name>', 'bench name')
    .argument('[options...]', 'options of that bench (e.g. --size 256M --seconds 4 --svg out.svg)')
    .allowUnknownOption(true)
    .action(async (name: string, opts: string[]) => {
      const { spawnSync } = await import('node:child_process');
      const { fileURLToPath } = await import('node:url');
      const run = fileURLToPath(new URL('../../bench/run.js', import.meta.url));
      const r = spawnSync(process.execPath, [run, name, ...opts], { stdio: 'inherit' });
      program.setOptionValue('exit', r.status ?? 1);
    });
}
