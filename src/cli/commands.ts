/**
 * `lunar target|lun|acl|chap|session|portal|status|stop|tgtadm`: clients of the control API.
 * Read commands print tables (or `--json`); change commands print one line; errors go to stderr
 * with the exit codes of ./exit.ts.
 */
import { type Command, Option } from 'commander';
import { ApiError, ControlClient, UnreachableError } from '../admin/client.js';
import type { LunView, SessionView, TargetView } from '../admin/control.js';
import { EXIT, EXIT_HELP } from './exit.js';

interface ConnOpts {
  data?: string;
  socket?: string;
  url?: string;
  token?: string;
  json?: boolean;
}

/** Maps an API error code to an exit code. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof UnreachableError) return EXIT.UNREACHABLE;
  if (err instanceof ApiError) {
    switch (err.code) {
      case 'not_found':
        return EXIT.NOT_FOUND;
      case 'exists':
      case 'busy':
        return EXIT.CONFLICT;
      case 'invalid':
      case 'unsupported':
        return EXIT.USAGE;
      default:
        return EXIT.FAILURE;
    }
  }
  if (err instanceof UsageError) return EXIT.USAGE;
  return EXIT.FAILURE;
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Fixed-width table with a header row; empty tables print the header only. */
export function table(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return `${cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

function clientOf(cmd: Command): ControlClient {
  const o = cmd.optsWithGlobals<ConnOpts>();
  return new ControlClient({
    ...(o.data !== undefined ? { data: o.data } : {}),
    ...(o.socket !== undefined ? { socket: o.socket } : {}),
    ...(o.url !== undefined ? { url: o.url } : {}),
    ...(o.token !== undefined ? { token: o.token } : {}),
  });
}

function conn(cmd: Command): Command {
  return cmd
    .option('-d, --data <dir>', 'data directory of the daemon (its socket is DIR/lunar.sock)')
    .option(
      '--socket <path>',
      'control socket path (default: $LUNAR_SOCKET, $LUNAR_DATA/lunar.sock, ./lunar-data/lunar.sock, /var/lib/lunar/lunar.sock)',
    )
    .option('--url <url>', 'control API over TCP instead, e.g. http://127.0.0.1:3261 (needs the token)')
    .option('--token <token>', 'bearer token for --url (default: $LUNAR_TOKEN or DIR/token)');
}

function reader(cmd: Command): Command {
  return conn(cmd).option('--json', 'print JSON instead of a table');
}

function out(text: string): void {
  process.stdout.write(text);
}

function json(v: unknown): void {
  out(`${JSON.stringify(v, null, 2)}\n`);
}

const enc = encodeURIComponent;

function man(cmd: Command, text: string): Command {
  return cmd.addHelpText('after', `\n${text.trim()}\n\n${EXIT_HELP}\n`);
}

/** Runs an action, mapping errors to messages and exit codes. */
function act<A extends unknown[]>(
  program: Command,
  fn: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const code = exitCodeOf(err);
      process.stderr.write(`lunar: ${(err as Error).message}\n`);
      const details =
        err instanceof ApiError ? (err.details as { sessions?: SessionView[] } | undefined) : undefined;
      for (const s of details?.sessions ?? []) {
        process.stderr.write(`  session ${s.tsih}: ${s.initiator} from ${s.address} on ${s.target}\n`);
      }
      program.setOptionValue('exit', code);
    }
  };
}

function formatBytes(n: number): string {
  for (const [u, m] of [
    ['T', 2 ** 40],
    ['G', 2 ** 30],
    ['M', 2 ** 20],
    ['K', 2 ** 10],
  ] as const) {
    if (n >= m) return `${Number((n / m).toFixed(1))}${u}`;
  }
  return `${n}`;
}

function aclText(acl: TargetView['acl']): string {
  const a =
    acl.addresses === 'ALL' ? 'ALL' : acl.addresses.length ? acl.addresses.join(',') : '(none: no access)';
  const i = acl.initiators === 'ALL' ? 'any' : acl.initiators.join(',');
  return `addresses ${a}; initiators ${i}`;
}

/** Parses KEY=VALUE words. */
export function parseAssignments(words: readonly string[]): Record<string, string> {
  const outp: Record<string, string> = {};
  for (const w of words) {
    const i = w.indexOf('=');
    if (i <= 0) throw new UsageError(`"${w}" is not KEY=VALUE`);
    outp[w.slice(0, i)] = w.slice(i + 1);
  }
  return outp;
}

export function parseLunNumber(v: string): number {
  if (!/^[0-9]+$/.test(v) || Number(v) > 16383)
    throw new UsageError(`LUN "${v}" must be a whole number 0..16383`);
  return Number(v);
}

export function registerCommands(program: Command): void {
  // ---------------------------------------------------------------- status
  man(
    reader(program.command('status').description('show the daemon: pid, portals, targets, LUNs, sessions')),
    `EXAMPLES\n  lunar status\n  lunar status --json | jq .sessions`,
  ).action(
    act(program, async (_o: unknown, cmd: Command) => {
      const c = clientOf(cmd);
      const st = await c.get<
        Record<string, unknown> & { portals: { listen: string; group: number; listening: boolean }[] }
      >('/v1/status');
      if (cmd.optsWithGlobals<ConnOpts>().json) return json(st);
      out(
        `lunar ${String(st['version'])} pid ${String(st['pid'])}, up ${String(st['uptimeSec'])}s, state ${String(st['state'])}\n` +
          `config ${String(st['config'])}\n` +
          `portals: ${st.portals.map((p) => `${p.listen},${p.group}${p.listening ? '' : ' (not listening)'}`).join(' ')}\n` +
          `targets ${String(st['targets'])}, LUNs ${String(st['luns'])}, sessions ${String(st['sessions'])}\n`,
      );
    }),
  );

  // ---------------------------------------------------------------- stop
  man(
    conn(
      program
        .command('stop')
        .description(
          'stop the daemon: refuses while initiators are connected (naming them) unless --force; then sends Async logout requests and waits up to --timeout seconds',
        ),
    )
      .option('-f, --force', 'stop even with initiators connected (they are asked to log out)')
      .option('-t, --timeout <seconds>', 'how long to wait for initiators to log out', '5')
      .option('--no-wait', 'return once the daemon accepted the request, without waiting for it to exit'),
    `EXAMPLES\n  lunar stop\n  lunar stop --force --timeout 10\n  lunar stop --force && lunar serve ...`,
  ).action(
    act(program, async (o: { force?: boolean; timeout: string; wait?: boolean }, cmd: Command) => {
      const secs = Number(o.timeout);
      if (!Number.isFinite(secs) || secs < 0)
        throw new UsageError(`--timeout "${o.timeout}" is not a number of seconds`);
      const c = clientOf(cmd);
      const r = await c.post<{ sessions: SessionView[] }>('/v1/stop', {
        force: !!o.force,
        timeoutMs: secs * 1000,
      });
      out(`stopping${r.sessions.length ? ` (asking ${r.sessions.length} initiator(s) to log out)` : ''}\n`);
      if (o.wait === false) return;
      // wait until the daemon is gone, so `lunar stop && lunar serve` works in scripts
      const deadline = Date.now() + secs * 1000 + 15_000;
      while (Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 200));
        try {
          await c.get('/v1/status');
        } catch (err) {
          if (err instanceof UnreachableError) {
            out('stopped\n');
            return;
          }
        }
      }
      throw new Error(`lunar is still running ${secs + 15}s after the stop request`);
    }),
  );

  // ---------------------------------------------------------------- target
  const target = program.command('target').description('iSCSI targets: list, show, new, delete, set, unset');
  man(reader(target.command('list').description('list targets')), 'EXAMPLES\n  lunar target list').action(
    act(program, async (_o: unknown, cmd: Command) => {
      const ts = await clientOf(cmd).get<TargetView[]>('/v1/targets');
      if (cmd.optsWithGlobals<ConnOpts>().json) return json(ts);
      out(
        table(
          ['TID', 'NAME', 'LUNS', 'SESSIONS', 'STATE', 'ACL'],
          ts.map((t) => [t.tid, t.name, t.luns.length, t.sessions.length, t.state, aclText(t.acl)]),
        ),
      );
    }),
  );
  man(
    reader(
      target
        .command('show')
        .argument('<target>', 'tid or name')
        .description('show one target: LUNs, ACL, accounts, params, sessions'),
    ),
    'EXAMPLES\n  lunar target show 1',
  ).action(
    act(program, async (ref: string, _o: unknown, cmd: Command) => {
      const t = await clientOf(cmd).get<TargetView>(`/v1/targets/${enc(ref)}`);
      if (cmd.optsWithGlobals<ConnOpts>().json) return json(t);
      out(`target ${t.tid}: ${t.name}${t.alias ? ` (${t.alias})` : ''}, ${t.state}\n`);
      out(`acl: ${aclText(t.acl)}\n`);
      out(
        `chap: ${t.accounts.length ? t.accounts.map((a) => `${a.user}${a.outgoing ? ' (outgoing)' : ''}`).join(', ') : 'none'}\n`,
      );
      const params = Object.entries(t.params);
      if (params.length) out(`params: ${params.map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
      if (t.redirect)
        out(
          `redirect: ${t.redirect.host}:${t.redirect.port} ${t.redirect.permanent ? 'permanent' : 'temporary'}\n`,
        );
      out(table(['LUN', 'BACKSTORE', 'PATH', 'SIZE', 'BLOCK', 'RO', 'ID'], t.luns.map(lunRow)));
      if (t.sessions.length)
        out(
          table(
            ['TSIH', 'INITIATOR', 'ADDRESS'],
            t.sessions.map((s) => [s.tsih, s.initiator, s.address]),
          ),
        );
    }),
  );
  man(
    conn(
      target
        .command('new')
        .argument('<name>', 'target name (iqn.YYYY-MM.reversed.domain:id)')
        .description('create a target; nobody may log in until `lunar acl add` (as with tgtd)'),
    )
      .option('--tid <n>', 'target id (default: next free)')
      .option('--alias <alias>', 'TargetAlias')
      .option('--allow-all', 'let any address and initiator log in (acl ALL)'),
    'EXAMPLES\n  lunar target new iqn.2026-11.com.example:disk1 --tid 1\n  lunar target new iqn.2026-11.com.example:scratch --allow-all',
  ).action(
    act(
      program,
      async (name: string, o: { tid?: string; alias?: string; allowAll?: boolean }, cmd: Command) => {
        if (o.tid !== undefined && !/^[1-9][0-9]*$/.test(o.tid))
          throw new UsageError(`--tid "${o.tid}" must be a whole number ≥ 1`);
        const t = await clientOf(cmd).post<TargetView>('/v1/targets', {
          name,
          ...(o.tid !== undefined ? { tid: Number(o.tid) } : {}),
          ...(o.alias !== undefined ? { alias: o.alias } : {}),
          ...(o.allowAll ? { acl: { initiators: 'ALL', addresses: 'ALL' } } : {}),
        });
        out(`target ${t.tid} ${t.name} created${o.allowAll ? '' : ' (no access yet: lunar acl add)'}\n`);
      },
    ),
  );
  man(
    conn(
      target
        .command('delete')
        .argument('<target>', 'tid or name')
        .description('delete a target; refuses while initiators are connected unless --force'),
    ).option('-f, --force', 'drop its sessions'),
    'EXAMPLES\n  lunar target delete 2 --force',
  ).action(
    act(program, async (ref: string, o: { force?: boolean }, cmd: Command) => {
      await clientOf(cmd).delete(`/v1/targets/${enc(ref)}${o.force ? '?force=1' : ''}`);
      out(`target ${ref} deleted\n`);
    }),
  );
  man(
    conn(
      target
        .command('set')
        .argument('<target>', 'tid or name')
        .argument(
          '<assignments...>',
          'KEY=VALUE: iSCSI keys (MaxRecvDataSegmentLength, HeaderDigest, ...), alias, queueDepth, redirect=HOST:PORT[,permanent], state=ready|offline',
        )
        .description('change target settings (applied live, saved to the config)'),
    ),
    'EXAMPLES\n  lunar target set 1 MaxBurstLength=1048576 HeaderDigest=CRC32C,None\n  lunar target set 1 redirect=10.0.0.2:3260',
  ).action(
    act(program, async (ref: string, words: string[], _o: unknown, cmd: Command) => {
      await clientOf(cmd).patch(`/v1/targets/${enc(ref)}`, targetPatch(parseAssignments(words)));
      out(`target ${ref} updated\n`);
    }),
  );
  man(
    conn(
      target
        .command('unset')
        .argument('<target>', 'tid or name')
        .argument('<keys...>', 'keys to reset to defaults (iSCSI keys, alias, queueDepth, redirect)')
        .description('reset target settings'),
    ),
    'EXAMPLES\n  lunar target unset 1 MaxBurstLength redirect',
  ).action(
    act(program, async (ref: string, keys: string[], _o: unknown, cmd: Command) => {
      const patch: Record<string, unknown> = {};
      const params: Record<string, null> = {};
      for (const k of keys) {
        if (k === 'alias' || k === 'redirect' || k === 'queueDepth') patch[k] = null;
        else params[k] = null;
      }
      if (Object.keys(params).length) patch['params'] = params;
      await clientOf(cmd).patch(`/v1/targets/${enc(ref)}`, patch);
      out(`target ${ref} updated\n`);
    }),
  );

  // ---------------------------------------------------------------- lun
  const lun = program.command('lun').description('logical units of a target: list, new, delete, set');
  man(
    reader(lun.command('list').argument('<target>', 'tid or name').description('list the LUNs of a target')),
    'EXAMPLES\n  lunar lun list 1',
  ).action(
    act(program, async (ref: string, _o: unknown, cmd: Command) => {
      const ls = await clientOf(cmd).get<LunView[]>(`/v1/targets/${enc(ref)}/luns`);
      if (cmd.optsWithGlobals<ConnOpts>().json) return json(ls);
      out(table(['LUN', 'BACKSTORE', 'PATH', 'SIZE', 'BLOCK', 'RO', 'ID'], ls.map(lunRow)));
    }),
  );
  man(
    conn(
      lun
        .command('new')
        .argument('<target>', 'tid or name')
        .argument('<lun>', 'LUN number 0..16383')
        .description('add a LUN (initiators get REPORTED LUNS DATA HAS CHANGED)'),
    )
      .option('-p, --path <file>', 'backing file or block device (relative: to the data directory)')
      .option(
        '-s, --size <size>',
        'size (512, 64M, 1G...): creates a sparse file when missing; needed for memory/null',
      )
      .addOption(
        new Option('-b, --backstore <kind>', 'backstore').choices(['file', 'memory', 'null']).default('file'),
      )
      .addOption(new Option('--block-size <bytes>', 'logical block size').choices(['512', '4096']))
      .option('--read-only', 'write-protected')
      .option('--removable', 'removable medium')
      .option('--no-direct', 'use the page cache instead of O_DIRECT')
      .option('--no-write-cache', 'report the write cache disabled (WCE=0)')
      .option('--serial <sn>', 'unit serial number (VPD 0x80)')
      .option('--vendor <id>', 'INQUIRY vendor (8 chars)')
      .option('--product <id>', 'INQUIRY product (16 chars)'),
    'EXAMPLES\n  lunar lun new 1 1 --path /dev/sdb1\n  lunar lun new 1 2 --path disk2.img --size 10G\n  lunar lun new 1 3 --backstore memory --size 256M',
  ).action(
    act(program, async (ref: string, n: string, o: Record<string, unknown>, cmd: Command) => {
      const body = {
        lun: parseLunNumber(n),
        backstore: o['backstore'],
        ...(o['path'] !== undefined ? { path: o['path'] } : {}),
        ...(o['size'] !== undefined ? { size: o['size'] } : {}),
        ...(o['blockSize'] !== undefined ? { blockSize: Number(o['blockSize']) } : {}),
        ...(o['readOnly'] ? { readOnly: true } : {}),
        ...(o['removable'] ? { removable: true } : {}),
        ...(o['direct'] === false ? { direct: false } : {}),
        ...(o['writeCache'] === false ? { writeCache: false } : {}),
        ...(o['serial'] !== undefined ? { serial: o['serial'] } : {}),
        ...(o['vendor'] !== undefined ? { vendor: o['vendor'] } : {}),
        ...(o['product'] !== undefined ? { product: o['product'] } : {}),
      };
      const l = await clientOf(cmd).post<LunView>(`/v1/targets/${enc(ref)}/luns`, body);
      out(`target ${ref} LUN ${l.lun} added (${formatBytes(l.bytes)}, id ${l.id ?? '?'})\n`);
    }),
  );
  man(
    conn(
      lun
        .command('delete')
        .argument('<target>', 'tid or name')
        .argument('<lun>', 'LUN number')
        .description('remove a LUN'),
    ),
    'EXAMPLES\n  lunar lun delete 1 2',
  ).action(
    act(program, async (ref: string, n: string, _o: unknown, cmd: Command) => {
      await clientOf(cmd).delete(`/v1/targets/${enc(ref)}/luns/${parseLunNumber(n)}`);
      out(`target ${ref} LUN ${n} deleted\n`);
    }),
  );
  man(
    conn(
      lun
        .command('set')
        .argument('<target>', 'tid or name')
        .argument('<lun>', 'LUN number')
        .argument(
          '<assignments...>',
          'serial=, vendor=, product=, scsiId=, readOnly=true|false, writeCache=true|false, removable=, direct=, cache=true|false',
        )
        .description('change LUN settings (applied live)'),
    ),
    'EXAMPLES\n  lunar lun set 1 1 serial=DISK0001 vendor=ACME',
  ).action(
    act(program, async (ref: string, n: string, words: string[], _o: unknown, cmd: Command) => {
      const raw = parseAssignments(words);
      const patch: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(raw)) {
        if (['readOnly', 'writeCache', 'removable', 'direct', 'cache'].includes(k)) {
          if (v !== 'true' && v !== 'false') throw new UsageError(`${k}=${v}: must be true or false`);
          patch[k] = v === 'true';
        } else patch[k] = v;
      }
      await clientOf(cmd).patch(`/v1/targets/${enc(ref)}/luns/${parseLunNumber(n)}`, patch);
      out(`target ${ref} LUN ${n} updated\n`);
    }),
  );

  // ---------------------------------------------------------------- acl
  const acl = program
    .command('acl')
    .description('who may log in to a target: list, add, remove (addresses and initiator names)');
  man(
    reader(acl.command('list').argument('<target>', 'tid or name').description('show the ACL of a target')),
    'EXAMPLES\n  lunar acl list 1',
  ).action(
    act(program, async (ref: string, _o: unknown, cmd: Command) => {
      const a = await clientOf(cmd).get<TargetView['acl']>(`/v1/targets/${enc(ref)}/acl`);
      if (cmd.optsWithGlobals<ConnOpts>().json) return json(a);
      const rows: string[][] = [];
      for (const x of a.addresses === 'ALL' ? ['ALL'] : a.addresses) rows.push(['address', x]);
      for (const x of a.initiators === 'ALL' ? ['ALL'] : a.initiators) rows.push(['initiator', x]);
      out(table(['KIND', 'VALUE'], rows));
    }),
  );
  for (const [verb, desc] of [
    ['add', 'allow an address (ALL, IP or CIDR) or an initiator name'],
    ['remove', 'remove an address or an initiator name'],
  ] as const) {
    man(
      conn(acl.command(verb).argument('<target>', 'tid or name').description(desc))
        .option('-a, --address <addr>', 'ALL, an IP address or a CIDR')
        .option('-i, --initiator <iqn>', 'an initiator name'),
      `EXAMPLES\n  lunar acl ${verb} 1 --address 192.168.1.0/24\n  lunar acl ${verb} 1 --initiator iqn.1994-05.com.redhat:node1`,
    ).action(
      act(program, async (ref: string, o: { address?: string; initiator?: string }, cmd: Command) => {
        if ((o.address === undefined) === (o.initiator === undefined))
          throw new UsageError('give exactly one of --address or --initiator');
        const c = clientOf(cmd);
        if (verb === 'add') await c.post(`/v1/targets/${enc(ref)}/acl`, o);
        else
          await c.delete(
            `/v1/targets/${enc(ref)}/acl?${o.address !== undefined ? `address=${enc(o.address)}` : `initiator=${enc(o.initiator ?? '')}`}`,
          );
        out(`target ${ref} acl ${verb === 'add' ? 'added' : 'removed'} ${o.address ?? o.initiator ?? ''}\n`);
      }),
    );
  }

  // ---------------------------------------------------------------- chap
  const chap = program
    .command('chap')
    .description('CHAP accounts: list, new, delete, bind to a target, unbind');
  man(
    reader(chap.command('list').description('list accounts and the targets they are bound to')),
    'EXAMPLES\n  lunar chap list',
  ).action(
    act(program, async (_o: unknown, cmd: Command) => {
      const as =
        await clientOf(cmd).get<
          { user: string; targets: { tid: number; name: string; outgoing: boolean }[] }[]
        >('/v1/accounts');
      if (cmd.optsWithGlobals<ConnOpts>().json) return json(as);
      out(
        table(
          ['USER', 'TARGETS'],
          as.map((a) => [
            a.user,
            a.targets.map((t) => `${t.tid}${t.outgoing ? '(outgoing)' : ''}`).join(',') || '-',
          ]),
        ),
      );
    }),
  );
  man(
    conn(
      chap
        .command('new')
        .argument('<user>', 'CHAP user name')
        .description('create an account (the secret: --secret, $LUNAR_CHAP_SECRET, or one line on stdin)'),
    ).option(
      '--secret <secret>',
      'CHAP secret, 12..255 characters (visible in ps: prefer $LUNAR_CHAP_SECRET or stdin)',
    ),
    'EXAMPLES\n  echo MySecret123456 | lunar chap new alice\n  lunar chap bind 1 alice',
  ).action(
    act(program, async (user: string, o: { secret?: string }, cmd: Command) => {
      const secret = o.secret ?? process.env['LUNAR_CHAP_SECRET'] ?? (await readStdinLine());
      if (!secret) throw new UsageError('no secret: give --secret, $LUNAR_CHAP_SECRET or a line on stdin');
      await clientOf(cmd).post('/v1/accounts', { user, secret });
      out(`account ${user} created\n`);
    }),
  );
  man(
    conn(
      chap
        .command('delete')
        .argument('<user>', 'CHAP user')
        .description('delete an account (unbinds it everywhere)'),
    ),
    'EXAMPLES\n  lunar chap delete alice',
  ).action(
    act(program, async (user: string, _o: unknown, cmd: Command) => {
      await clientOf(cmd).delete(`/v1/accounts/${enc(user)}`);
      out(`account ${user} deleted\n`);
    }),
  );
  man(
    conn(
      chap
        .command('bind')
        .argument('<target>', 'tid or name')
        .argument('<user>', 'CHAP user')
        .description('require CHAP with this account on a target'),
    ).option('--outgoing', "use it as the target's own credentials (mutual CHAP)"),
    'EXAMPLES\n  lunar chap bind 1 alice\n  lunar chap bind 1 tgtuser --outgoing',
  ).action(
    act(program, async (ref: string, user: string, o: { outgoing?: boolean }, cmd: Command) => {
      await clientOf(cmd).post(`/v1/targets/${enc(ref)}/accounts`, { user, outgoing: !!o.outgoing });
      out(`account ${user} bound to target ${ref}${o.outgoing ? ' (outgoing)' : ''}\n`);
    }),
  );
  man(
    conn(
      chap
        .command('unbind')
        .argument('<target>', 'tid or name')
        .argument('<user>', 'CHAP user')
        .description('stop using an account on a target'),
    ),
    'EXAMPLES\n  lunar chap unbind 1 alice',
  ).action(
    act(program, async (ref: string, user: string, _o: unknown, cmd: Command) => {
      await clientOf(cmd).delete(`/v1/targets/${enc(ref)}/accounts/${enc(user)}`);
      out(`account ${user} unbound from target ${ref}\n`);
    }),
  );

  // ---------------------------------------------------------------- session
  const session = program.command('session').description('initiator sessions: list, drop');
  man(
    reader(session.command('list').description('list sessions')).option(
      '--target <target>',
      'only this target (name)',
    ),
    'EXAMPLES\n  lunar session list',
  ).action(
    act(program, async (o: { target?: string }, cmd: Command) => {
      const ss = await clientOf(cmd).get<SessionView[]>(
        `/v1/sessions${o.target ? `?target=${enc(o.target)}` : ''}`,
      );
      if (cmd.optsWithGlobals<ConnOpts>().json) return json(ss);
      out(
        table(
          ['TSIH', 'TID', 'TARGET', 'INITIATOR', 'ADDRESS', 'DIGESTS'],
          ss.map((s) => [
            s.tsih,
            s.tid ?? '-',
            s.target,
            s.initiator,
            s.address,
            `${s.headerDigest}/${s.dataDigest}`,
          ]),
        ),
      );
    }),
  );
  man(
    conn(
      session
        .command('drop')
        .argument('<tsih>', 'session id (TSIH, as listed)')
        .description('close a session at once'),
    ),
    'EXAMPLES\n  lunar session drop 3',
  ).action(
    act(program, async (tsih: string, _o: unknown, cmd: Command) => {
      if (!/^[0-9]+$/.test(tsih)) throw new UsageError(`session "${tsih}" is not a TSIH number`);
      await clientOf(cmd).delete(`/v1/sessions/${tsih}`);
      out(`session ${tsih} dropped\n`);
    }),
  );

  // ---------------------------------------------------------------- portal
  const portal = program.command('portal').description('listening addresses: list, add, remove');
  man(reader(portal.command('list').description('list portals')), 'EXAMPLES\n  lunar portal list').action(
    act(program, async (_o: unknown, cmd: Command) => {
      const ps =
        await clientOf(cmd).get<{ listen: string; group: number; listening: boolean }[]>('/v1/portals');
      if (cmd.optsWithGlobals<ConnOpts>().json) return json(ps);
      out(
        table(
          ['PORTAL', 'GROUP', 'LISTENING'],
          ps.map((p) => [p.listen, p.group, p.listening ? 'yes' : 'no']),
        ),
      );
    }),
  );
  man(
    conn(
      portal.command('add').argument('<listen>', 'host:port').description('listen on one more address'),
    ).option('-g, --group <tag>', 'portal group tag', '1'),
    'EXAMPLES\n  lunar portal add 0.0.0.0:3260',
  ).action(
    act(program, async (listen: string, o: { group: string }, cmd: Command) => {
      if (!/^[0-9]+$/.test(o.group)) throw new UsageError(`--group "${o.group}" is not a number`);
      await clientOf(cmd).post('/v1/portals', { listen, group: Number(o.group) });
      out(`portal ${listen} added\n`);
    }),
  );
  man(
    conn(
      portal.command('remove').argument('<listen>', 'host:port').description('stop listening on an address'),
    ),
    'EXAMPLES\n  lunar portal remove 0.0.0.0:3260',
  ).action(
    act(program, async (listen: string, _o: unknown, cmd: Command) => {
      await clientOf(cmd).delete(`/v1/portals/${enc(listen)}`);
      out(`portal ${listen} removed\n`);
    }),
  );

  // ---------------------------------------------------------------- tgtadm
  program
    .command('tgtadm')
    .description('tgtadm-compatible front end (same as lunar-tgtadm); see lunar tgtadm --help')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      const { tgtadmMain } = await import('./tgtadm.js');
      program.setOptionValue('exit', await tgtadmMain(args));
    });
  program
    .command('tgt-admin')
    .description('tgt-admin-compatible front end (same as lunar-tgt-admin); see lunar tgt-admin --help')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      const { tgtAdminMain } = await import('./tgt-admin.js');
      program.setOptionValue('exit', await tgtAdminMain(args));
    });
}

function lunRow(l: LunView): (string | number)[] {
  return [
    l.lun,
    l.backstore,
    l.path ?? '-',
    formatBytes(l.bytes),
    l.blockSize,
    l.readOnly ? 'yes' : 'no',
    l.id ?? '-',
  ];
}

/** Target settings from KEY=VALUE words. */
export function targetPatch(kv: Record<string, string>): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  const params: Record<string, string> = {};
  for (const [k, v] of Object.entries(kv)) {
    if (k === 'alias') patch['alias'] = v;
    else if (k === 'state') patch['state'] = v;
    else if (k === 'queueDepth' || k === 'MaxQueueCmd') {
      if (!/^[0-9]+$/.test(v)) throw new UsageError(`${k}=${v}: must be a number`);
      patch['queueDepth'] = Number(v);
    } else if (k === 'redirect') {
      const [to, kind] = v.split(',');
      if (!to) throw new UsageError('redirect=HOST:PORT[,permanent]');
      if (kind !== undefined && kind !== 'permanent' && kind !== 'temporary')
        throw new UsageError(`redirect kind "${kind}" must be permanent or temporary`);
      patch['redirect'] = { to, permanent: kind === 'permanent' };
    } else params[k] = v;
  }
  if (Object.keys(params).length) patch['params'] = params;
  return patch;
}

async function readStdinLine(): Promise<string | undefined> {
  if (process.stdin.isTTY) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const line = Buffer.concat(chunks).toString('utf8').split('\n')[0]?.trim();
  return line || undefined;
}
