#!/usr/bin/env node
/**
 * `lunar-tgt-admin` / `lunar tgt-admin`: reads tgt's /etc/tgt/targets.conf syntax and applies it
 * by running tgtadm requests through lunar's tgtadm front end (so through the control API; every
 * change is persisted in lunar's config). Options as tgt-admin's: -e/--execute, --update,
 * --delete, --offline, --ready, -s/--show, --dump, -c/--conf, -f/--force, -p/--pretend,
 * -v/--verbose, --ignore-errors, -C/--control-port (ignored).
 *
 * LUN numbering follows tgt-admin: backing-store entries first (LUN 1, 2, …), then direct-store
 * entries, unless a `lun N` says otherwise. A target with no initiator-address and no
 * initiator-name is open to ALL addresses (as tgt-admin binds it). `write-cache off` becomes the
 * bsoflag `sync` (lunar reports WCE=0 and writes through).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { ApiError, ControlClient, UnreachableError } from '../admin/client.js';
import { TARGET_KEYS as LIVE_ISCSI_KEYS, type TargetView } from '../admin/control.js';
import { quietOnClosedPipe } from './exit.js';
import { tgtadmMain } from './tgtadm.js';

export interface ConfLun {
  readonly path: string;
  readonly direct: boolean;
  readonly opts: Readonly<Record<string, string>>;
  readonly line: number;
}

export interface ConfTarget {
  readonly name: string;
  readonly file: string;
  readonly line: number;
  readonly luns: readonly ConfLun[];
  /** Single-valued options (last wins). */
  readonly opts: Readonly<Record<string, string>>;
  readonly initiatorAddresses: readonly string[];
  readonly initiatorNames: readonly string[];
  readonly incoming: readonly { user: string; password: string }[];
  readonly outgoing?: { user: string; password: string };
}

export interface TargetsConf {
  readonly defaultDriver: string;
  readonly targets: readonly ConfTarget[];
}

export class ConfError extends Error {
  override readonly name = 'ConfError';
}

/** Options a LUN takes (in a <backing-store> block, or at target level as a default for all). */
const LUN_KEYS = new Set([
  'write-cache',
  'vendor_id',
  'product_id',
  'product_rev',
  'scsi_id',
  'scsi_sn',
  'removable',
  'device-type',
  'readonly',
  'bs-type',
  'bsoflags',
  'bsopts',
  'block-size',
  'lun',
  'params',
  'allow-in-use',
  'mode_page',
  'sense_format',
  'online',
  'lbppbe',
  'la_lba',
  'optimal_xfer_gran',
  'optimal_xfer_len',
  'path',
]);
const TARGET_KEYS = new Set([
  'backing-store',
  'direct-store',
  'initiator-address',
  'initiator-name',
  'incominguser',
  'outgoinguser',
  'controller_tid',
  'driver',
  'tid',
  ...LUN_KEYS,
]);
/** iSCSI keys targets.conf may set on a target (applied with tgtadm --op update --mode target). */
const ISCSI_KEYS = new Set<string>([...LIVE_ISCSI_KEYS, 'MaxQueueCmd']);

interface Raw {
  key: string;
  value: string;
  line: number;
}

/** Parses targets.conf text (and its includes, read through `read`). */
export function parseTargetsConf(
  text: string,
  file: string,
  read: (pattern: string, from: string) => { file: string; text: string }[] = readIncludes,
): TargetsConf {
  let defaultDriver = 'iscsi';
  const targets: ConfTarget[] = [];
  const walk = (src: string, name: string, depth: number) => {
    if (depth > 8) throw new ConfError(`${name}: includes nested too deep`);
    const lines = src.split('\n');
    let cur: { name: string; line: number; items: Raw[]; luns: ConfLun[] } | undefined;
    let sub: { path: string; direct: boolean; line: number; items: Raw[] } | undefined;
    for (let i = 0; i < lines.length; i++) {
      const n = i + 1;
      const text0 = (lines[i] ?? '').replace(/(^|\s)#.*$/, '').trim();
      if (!text0) continue;
      const open = /^<\s*(target|backing-store|direct-store)\s+(.+?)\s*>$/i.exec(text0);
      const close = /^<\/\s*(target|backing-store|direct-store)\s*>$/i.exec(text0);
      if (open) {
        const tag = (open[1] ?? '').toLowerCase();
        const arg = open[2] ?? '';
        if (tag === 'target') {
          if (cur)
            throw new ConfError(
              `${name}:${n}: <target ${arg}> inside <target ${cur.name}> (missing </target>?)`,
            );
          cur = { name: arg, line: n, items: [], luns: [] };
        } else {
          if (!cur) throw new ConfError(`${name}:${n}: <${tag}> outside a <target> block`);
          if (sub)
            throw new ConfError(
              `${name}:${n}: <${tag}> inside <${sub.direct ? 'direct' : 'backing'}-store> (missing close tag?)`,
            );
          sub = { path: arg, direct: tag === 'direct-store', line: n, items: [] };
        }
        continue;
      }
      if (close) {
        const tag = (close[1] ?? '').toLowerCase();
        if (tag === 'target') {
          if (!cur) throw new ConfError(`${name}:${n}: </target> without <target>`);
          if (sub)
            throw new ConfError(
              `${name}:${n}: </target> while <${sub.direct ? 'direct' : 'backing'}-store ${sub.path}> is open`,
            );
          targets.push(finishTarget(cur, name));
          cur = undefined;
        } else {
          if (!sub || (tag === 'direct-store') !== sub.direct)
            throw new ConfError(`${name}:${n}: </${tag}> without <${tag}>`);
          const opts: Record<string, string> = {};
          for (const it of sub.items) {
            if (!LUN_KEYS.has(it.key))
              throw new ConfError(`${name}:${it.line}: unknown option "${it.key}" in <${tag} ${sub.path}>`);
            opts[it.key] = it.value;
          }
          cur?.luns.push({ path: sub.path, direct: sub.direct, opts, line: sub.line });
          sub = undefined;
        }
        continue;
      }
      if (text0.startsWith('<'))
        throw new ConfError(
          `${name}:${n}: cannot read "${text0}" (expected <target NAME>, <backing-store PATH>, <direct-store PATH> or a close tag)`,
        );
      const m = /^(\S+?)(?:\s*=\s*|\s+)(.*)$/.exec(text0) ?? [text0, text0, ''];
      const key = m[1] ?? '';
      const value = (m[2] ?? '').trim();
      if (sub) {
        sub.items.push({ key, value, line: n });
        continue;
      }
      if (cur) {
        cur.items.push({ key, value, line: n });
        continue;
      }
      if (key === 'default-driver') {
        if (value !== 'iscsi')
          throw new ConfError(`${name}:${n}: default-driver ${value}: lunar serves iscsi only`);
        defaultDriver = value;
      } else if (key === 'include') {
        for (const inc of read(value, name)) walk(inc.text, inc.file, depth + 1);
      } else if (
        key === 'ignore-errors' ||
        key === 'control-port' ||
        key === 'iSNSServerIP' ||
        key === 'iSNSAccessControl' ||
        key === 'iSNS' ||
        key === 'iSNSServerPort'
      ) {
        // global options lunar has no use for
      } else {
        throw new ConfError(
          `${name}:${n}: unknown global option "${key}" (expected <target NAME>, include, default-driver)`,
        );
      }
    }
    if (sub)
      throw new ConfError(
        `${name}:${sub.line}: <${sub.direct ? 'direct' : 'backing'}-store ${sub.path}> is never closed`,
      );
    if (cur) throw new ConfError(`${name}:${cur.line}: <target ${cur.name}> is never closed`);
  };
  walk(text, file, 0);
  const seen = new Set<string>();
  for (const t of targets) {
    if (seen.has(t.name)) throw new ConfError(`${t.file}:${t.line}: target ${t.name} is defined twice`);
    seen.add(t.name);
  }
  return { defaultDriver, targets };
}

function finishTarget(
  cur: { name: string; line: number; items: Raw[]; luns: ConfLun[] },
  file: string,
): ConfTarget {
  const opts: Record<string, string> = {};
  const luns = [...cur.luns];
  const initiatorAddresses: string[] = [];
  const initiatorNames: string[] = [];
  const incoming: { user: string; password: string }[] = [];
  let outgoing: { user: string; password: string } | undefined;
  if (!/^(iqn\.|eui\.|naa\.)/i.test(cur.name))
    throw new ConfError(`${file}:${cur.line}: target name "${cur.name}" must start with iqn., eui. or naa.`);
  for (const it of cur.items) {
    const where = `${file}:${it.line}`;
    switch (it.key) {
      case 'backing-store':
      case 'direct-store':
        if (!it.value) throw new ConfError(`${where}: ${it.key} needs a path`);
        luns.push({ path: it.value, direct: it.key === 'direct-store', opts: {}, line: it.line });
        break;
      case 'initiator-address':
        initiatorAddresses.push(...it.value.split(/[\s,]+/).filter(Boolean));
        break;
      case 'initiator-name':
        initiatorNames.push(...it.value.split(/[\s,]+/).filter(Boolean));
        break;
      case 'incominguser':
      case 'outgoinguser': {
        const [user, password, extra] = it.value.split(/\s+/);
        if (!user || !password || extra !== undefined)
          throw new ConfError(`${where}: ${it.key} takes a user and a password`);
        if (it.key === 'incominguser') incoming.push({ user, password });
        else outgoing = { user, password };
        break;
      }
      default:
        if (!TARGET_KEYS.has(it.key) && !ISCSI_KEYS.has(it.key))
          throw new ConfError(`${where}: unknown option "${it.key}" in <target ${cur.name}>`);
        if (it.key === 'write-cache' && it.value !== 'on' && it.value !== 'off')
          throw new ConfError(`${where}: write-cache ${it.value}: must be on or off`);
        opts[it.key] = it.value;
    }
  }
  for (const l of luns) {
    const wc = l.opts['write-cache'];
    if (wc !== undefined && wc !== 'on' && wc !== 'off')
      throw new ConfError(`${file}:${l.line}: write-cache ${wc}: must be on or off`);
    const lun = l.opts['lun'];
    if (lun !== undefined && !/^[0-9]+$/.test(lun))
      throw new ConfError(`${file}:${l.line}: lun ${lun}: must be a number`);
  }
  return {
    name: cur.name,
    file,
    line: cur.line,
    luns,
    opts,
    initiatorAddresses,
    initiatorNames,
    incoming,
    ...(outgoing ? { outgoing } : {}),
  };
}

/** Expands `*` and `?` in the last path segment (what include lines use: conf.d/*.conf). */
export function expandGlob(pattern: string): string[] {
  const dir = dirname(pattern);
  const re = new RegExp(
    `^${basename(pattern)
      .replace(/[.+^${}()|\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  try {
    return readdirSync(dir)
      .filter((f) => re.test(f))
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

function readIncludes(pattern: string, from: string): { file: string; text: string }[] {
  const full = isAbsolute(pattern) ? pattern : join(dirname(from), pattern);
  const files = /[*?[]/.test(full) ? expandGlob(full).sort() : [full];
  return files
    .filter((f) => {
      try {
        return statSync(f).isFile();
      } catch {
        if (!/[*?[]/.test(full)) throw new ConfError(`${from}: include ${pattern}: no such file`);
        return false;
      }
    })
    .map((f) => ({ file: f, text: readFileSync(f, 'utf8') }));
}

/** LUN numbers as tgt-admin gives them: explicit `lun`, else backing-stores then direct-stores from 1. */
export function numberLuns(t: ConfTarget): { lun: number; entry: ConfLun }[] {
  const used = new Set<number>();
  for (const l of t.luns) if (l.opts['lun'] !== undefined) used.add(Number(l.opts['lun']));
  const out: { lun: number; entry: ConfLun }[] = [];
  let next = 1;
  const take = () => {
    while (used.has(next)) next++;
    used.add(next);
    return next;
  };
  for (const direct of [false, true]) {
    for (const l of t.luns) {
      if (l.direct !== direct) continue;
      out.push({ lun: l.opts['lun'] !== undefined ? Number(l.opts['lun']) : take(), entry: l });
    }
  }
  return out.sort((a, b) => a.lun - b.lun);
}

type Argv = string[];

function lunOpt(t: ConfTarget, l: ConfLun, key: string): string | undefined {
  return l.opts[key] ?? t.opts[key];
}

/** The tgtadm requests that create one LUN. */
export function lunCommands(t: ConfTarget, tid: number, lun: number, l: ConfLun): Argv[] {
  const base = ['--lld', 'iscsi', '--mode', 'logicalunit', '--tid', String(tid), '--lun', String(lun)];
  const create = [...base.slice(0, 2), '--op', 'new', ...base.slice(2), '-b', l.path];
  const bstype = lunOpt(t, l, 'bs-type');
  if (bstype) create.push('--bstype', bstype);
  const flags = new Set((lunOpt(t, l, 'bsoflags') ?? '').split(':').filter(Boolean));
  if (lunOpt(t, l, 'write-cache') === 'off') flags.add('sync');
  if (flags.size) create.push('--bsoflags', [...flags].join(':'));
  const bs = lunOpt(t, l, 'block-size');
  if (bs) create.push('--blocksize', bs);
  const dt = lunOpt(t, l, 'device-type');
  if (dt) create.push('--device-type', dt);
  const out: Argv[] = [create];
  const params: string[] = [];
  for (const k of ['scsi_id', 'scsi_sn', 'vendor_id', 'product_id', 'product_rev', 'removable', 'readonly']) {
    const v = lunOpt(t, l, k);
    if (v !== undefined) params.push(`${k}=${v}`);
  }
  if (params.length)
    out.push([...base.slice(0, 2), '--op', 'update', ...base.slice(2), '--params', params.join(',')]);
  return out;
}

/** The tgtadm line that binds a CHAP account to a target or unbinds it (incoming, or outgoing). */
function accountBinding(op: 'bind' | 'unbind', tid: string, user: string, outgoing: boolean): Argv {
  return [
    '--lld',
    'iscsi',
    '--op',
    op,
    '--mode',
    'account',
    '--tid',
    tid,
    '--user',
    user,
    ...(outgoing ? ['--outgoing'] : []),
  ];
}

/** tgtadm lines that create a CHAP account and bind it to a target (incoming, or outgoing). */
function accountCommands(a: { user: string; password: string }, tid: string, outgoing: boolean): Argv[] {
  const T = ['--lld', 'iscsi'];
  return [
    [...T, '--op', 'new', '--mode', 'account', '--user', a.user, '--password', a.password],
    accountBinding('bind', tid, a.user, outgoing),
  ];
}

/** The tgtadm requests that create a whole target. */
export function targetCommands(t: ConfTarget, tid: number): Argv[] {
  const T = ['--lld', 'iscsi'];
  const out: Argv[] = [[...T, '--op', 'new', '--mode', 'target', '--tid', String(tid), '-T', t.name]];
  for (const { lun, entry } of numberLuns(t)) out.push(...lunCommands(t, tid, lun, entry));
  for (const [k, v] of Object.entries(t.opts)) {
    if (ISCSI_KEYS.has(k))
      out.push([...T, '--op', 'update', '--mode', 'target', '--tid', String(tid), '--name', k, '--value', v]);
  }
  for (const u of t.incoming) out.push(...accountCommands(u, String(tid), false));
  if (t.outgoing) out.push(...accountCommands(t.outgoing, String(tid), true));
  const addresses = t.initiatorAddresses.length || t.initiatorNames.length ? t.initiatorAddresses : ['ALL'];
  for (const a of addresses)
    out.push([...T, '--op', 'bind', '--mode', 'target', '--tid', String(tid), '-I', a]);
  if (!t.initiatorAddresses.length && t.initiatorNames.length)
    out.push([...T, '--op', 'bind', '--mode', 'target', '--tid', String(tid), '-I', 'ALL']);
  for (const n of t.initiatorNames)
    out.push([...T, '--op', 'bind', '--mode', 'target', '--tid', String(tid), '-Q', n]);
  return out;
}

/** `--dump`: the running targets in targets.conf syntax. */
export function dumpTargets(
  targets: readonly TargetView[],
  secrets: ReadonlyMap<string, string> = new Map(),
): string {
  const lines = ['default-driver iscsi', ''];
  for (const t of [...targets].sort((a, b) => a.tid - b.tid)) {
    lines.push(`<target ${t.name}>`);
    for (const l of t.luns) {
      if (l.backstore !== 'file' || !l.path) continue;
      const extra: string[] = [];
      if (l.lun !== 0) extra.push(`\t\tlun ${l.lun}`);
      if (l.serial) extra.push(`\t\tscsi_sn ${l.serial}`);
      if (l.scsiId) extra.push(`\t\tscsi_id ${l.scsiId}`);
      if (l.vendor) extra.push(`\t\tvendor_id ${l.vendor}`);
      if (l.product) extra.push(`\t\tproduct_id ${l.product}`);
      if (l.readOnly) extra.push('\t\treadonly 1');
      if (!l.writeCache) extra.push('\t\twrite-cache off');
      if (l.direct) extra.push('\t\tbsoflags direct');
      lines.push(`\t<backing-store ${l.path}>`, ...extra, '\t</backing-store>');
    }
    for (const [k, v] of Object.entries(t.params)) lines.push(`\t${k} ${v}`);
    for (const a of t.accounts)
      lines.push(
        `\t${a.outgoing ? 'outgoinguser' : 'incominguser'} ${a.user} ${secrets.get(a.user) ?? 'PLEASE_CORRECT_THE_PASSWORD'}`,
      );
    const addresses = t.acl.addresses === 'ALL' ? ['ALL'] : t.acl.addresses;
    for (const a of addresses) lines.push(`\tinitiator-address ${a}`);
    if (t.acl.initiators !== 'ALL') for (const n of t.acl.initiators) lines.push(`\tinitiator-name ${n}`);
    lines.push('</target>', '');
  }
  return `${lines.join('\n')}`;
}

/** Which targets a --delete/--update/--offline/--ready value selects: ALL, tid=N, or a name. */
export function selectTargets<T extends { name: string; tid?: number }>(
  value: string,
  targets: readonly T[],
): T[] {
  if (value === 'ALL') return [...targets];
  const m = /^tid=([0-9]+)$/.exec(value);
  if (m) return targets.filter((t) => t.tid === Number(m[1]));
  if (/^[0-9]+$/.test(value)) return targets.filter((t) => t.tid === Number(value));
  return targets.filter((t) => t.name === value);
}

interface AdminOpts {
  execute?: boolean;
  delete?: string;
  offline?: string;
  ready?: string;
  update?: string;
  show?: boolean;
  conf: string;
  ignoreErrors?: boolean;
  force?: boolean;
  pretend?: boolean;
  dump?: boolean;
  verbose?: boolean;
  controlPort?: string;
}

export const TGT_ADMIN_HELP_AFTER = `
DESCRIPTION
  Reads tgt's targets.conf (<target NAME> blocks: backing-store, direct-store, <backing-store
  PATH> sub-blocks, lun, initiator-address, initiator-name, incominguser, outgoinguser,
  write-cache, vendor_id, product_id, scsi_id, scsi_sn, readonly, removable, bs-type, bsoflags,
  block-size, iSCSI keys; include and default-driver at top level) and applies it to a running
  lunar through lunar-tgtadm. Changes are saved in lunar's config and survive restarts.

  --delete, --update, --offline and --ready take ALL, tid=N or a target name.

EXIT STATUS
  0 success; 1 a tgtadm request failed (unless --ignore-errors) or the file is wrong;
  2 usage error; 107 the lunar daemon cannot be reached.
`;

export async function tgtAdminMain(
  argv: readonly string[],
  io = { out: (s: string) => process.stdout.write(s), err: (s: string) => process.stderr.write(s) },
): Promise<number> {
  const program = new Command('tgt-admin')
    .description('configure lunar targets from a tgt targets.conf file')
    .option('-e, --execute', 'read the config file and create the targets it has that are not running')
    .option('--delete <value>', 'delete targets (ALL, tid=N, NAME); refuses targets in use unless --force')
    .option('--offline <value>', 'put targets offline (ALL, tid=N, NAME)')
    .option('--ready <value>', 'put targets back in ready state (ALL, tid=N, NAME)')
    .option(
      '--update <value>',
      'apply the config file to running targets (ALL, tid=N, NAME); in use: only with --force',
    )
    .option('-s, --show', 'show all the targets (as tgtadm --op show --mode target)')
    .option('-C, --control-port <port>', 'accepted for compatibility; ignored')
    .option('-c, --conf <file>', 'config file', '/etc/tgt/targets.conf')
    .option('--ignore-errors', 'continue when a tgtadm request fails')
    .option('-f, --force', 'act on targets even when initiators are connected')
    .option('-p, --pretend', 'only print the tgtadm commands')
    .option('--dump', 'print the running targets in targets.conf syntax')
    .option('-v, --verbose', 'print each tgtadm command before running it')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .addHelpText('after', TGT_ADMIN_HELP_AFTER);
  let o: AdminOpts;
  try {
    program.parse([...argv], { from: 'user' });
    o = program.opts<AdminOpts>();
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    throw err;
  }
  const client = new ControlClient({ timeoutMs: 60_000 });
  const run = async (args: Argv): Promise<boolean> => {
    const shown = `tgtadm ${args.map((a) => (/[\s'"]/.test(a) ? `'${a}'` : a)).join(' ')}`;
    if (o.pretend || o.verbose) io.out(`${shown}\n`);
    if (o.pretend) return true;
    const rc = await tgtadmMain(args, io);
    if (rc !== 0 && !o.ignoreErrors) {
      io.err(`tgt-admin: command failed (exit ${rc}): ${shown}\n`);
      return false;
    }
    return true;
  };
  try {
    if (o.show) return await tgtadmMain(['--lld', 'iscsi', '--op', 'show', '--mode', 'target'], io);
    if (o.dump) {
      const ts = await client.get<TargetView[]>('/v1/targets');
      io.out(dumpTargets(ts));
      return 0;
    }
    for (const [value, state] of [
      [o.offline, 'offline'],
      [o.ready, 'ready'],
    ] as const) {
      if (value === undefined) continue;
      const ts = await client.get<TargetView[]>('/v1/targets');
      for (const t of selectTargets(value, ts)) {
        if (
          !(await run([
            '--lld',
            'iscsi',
            '--op',
            'update',
            '--mode',
            'target',
            '--tid',
            String(t.tid),
            '--name',
            'state',
            '--value',
            state,
          ]))
        )
          return 1;
      }
      return 0;
    }
    if (o.delete !== undefined) {
      const ts = await client.get<TargetView[]>('/v1/targets');
      const chosen = selectTargets(o.delete, ts);
      if (!chosen.length && o.delete !== 'ALL') {
        io.err(`tgt-admin: no target ${o.delete}\n`);
        return 1;
      }
      for (const t of chosen) {
        if (t.sessions.length && !o.force) {
          io.err(
            `tgt-admin: target ${t.tid} (${t.name}) is in use by ${t.sessions.map((s) => `${s.initiator} (${s.address})`).join(', ')}; use --force to delete it\n`,
          );
          if (!o.ignoreErrors) return 1;
          continue;
        }
        if (
          !(await run([
            '--lld',
            'iscsi',
            '--op',
            'delete',
            '--mode',
            'target',
            '--tid',
            String(t.tid),
            ...(o.force ? ['--force'] : []),
          ]))
        )
          return 1;
      }
      return 0;
    }
    if (!o.execute && o.update === undefined) {
      io.err(
        'tgt-admin: nothing to do: give -e, --update, --delete, --offline, --ready, --show or --dump (see --help)\n',
      );
      return 2;
    }
    let conf: TargetsConf;
    try {
      conf = parseTargetsConf(readFileSync(o.conf, 'utf8'), o.conf);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        io.err(`tgt-admin: config file ${o.conf} not found\n`);
        return 1;
      }
      if (err instanceof ConfError) {
        io.err(`tgt-admin: ${err.message}\n`);
        return 1;
      }
      throw err;
    }
    const running = o.pretend
      ? await client.get<TargetView[]>('/v1/targets').catch(() => [] as TargetView[])
      : await client.get<TargetView[]>('/v1/targets');
    const byName = new Map(running.map((t) => [t.name, t]));
    let nextTid = Math.max(0, ...running.map((t) => t.tid)) + 1;
    const chosen =
      o.update !== undefined
        ? selectTargets(
            o.update,
            conf.targets.map((t) => ({ ...t, tid: byName.get(t.name)?.tid ?? -1 })),
          )
        : conf.targets;
    if (o.update !== undefined && !chosen.length && o.update !== 'ALL') {
      io.err(`tgt-admin: no target ${o.update} in ${o.conf} (or it is not running)\n`);
      return 1;
    }
    for (const t of chosen) {
      const live = byName.get(t.name);
      if (!live) {
        const tidOpt = t.opts['tid'];
        const tid = tidOpt !== undefined && /^[0-9]+$/.test(tidOpt) ? Number(tidOpt) : nextTid++;
        for (const cmd of targetCommands(t, tid)) if (!(await run(cmd))) return 1;
        continue;
      }
      if (o.update === undefined) {
        if (o.verbose)
          io.out(`# target ${t.name} is already running (tid ${live.tid}); use --update to change it\n`);
        continue;
      }
      if (live.sessions.length && !o.force) {
        io.err(
          `tgt-admin: target ${live.tid} (${t.name}) is in use by ${live.sessions.map((s) => s.initiator).join(', ')}; not updating it without --force\n`,
        );
        if (!o.ignoreErrors) return 1;
        continue;
      }
      for (const cmd of updateCommands(t, live)) if (!(await run(cmd))) return 1;
    }
    return 0;
  } catch (err) {
    if (err instanceof UnreachableError) {
      io.err(`tgt-admin: ${err.message}\n`);
      return 107;
    }
    if (err instanceof ApiError) {
      io.err(`tgt-admin: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

/**
 * The tgtadm requests that bring a running target to what the file says, keeping LUNs whose
 * path is unchanged (so their LU ids — the VPD 0x83 NAA — stay).
 */
export function updateCommands(t: ConfTarget, live: TargetView): Argv[] {
  const T = ['--lld', 'iscsi'];
  const tid = String(live.tid);
  const out: Argv[] = [];
  const want = numberLuns(t);
  for (const l of live.luns) {
    const w = want.find((x) => x.lun === l.lun);
    if (!w || w.entry.path !== l.path)
      out.push([...T, '--op', 'delete', '--mode', 'logicalunit', '--tid', tid, '--lun', String(l.lun)]);
  }
  for (const { lun, entry } of want) {
    const l = live.luns.find((x) => x.lun === lun);
    if (l && l.path === entry.path) {
      const upd = lunCommands(t, live.tid, lun, entry)[1];
      if (upd) out.push(upd);
      continue;
    }
    out.push(...lunCommands(t, live.tid, lun, entry));
  }
  for (const [k, v] of Object.entries(t.opts)) {
    if (ISCSI_KEYS.has(k) && live.params[k] !== v)
      out.push([...T, '--op', 'update', '--mode', 'target', '--tid', tid, '--name', k, '--value', v]);
  }
  const wantAddr =
    t.initiatorAddresses.length || t.initiatorNames.length ? [...t.initiatorAddresses] : ['ALL'];
  if (!t.initiatorAddresses.length && t.initiatorNames.length) wantAddr.push('ALL');
  const haveAddr = live.acl.addresses === 'ALL' ? ['ALL'] : [...live.acl.addresses];
  for (const a of haveAddr)
    if (!wantAddr.includes(a)) out.push([...T, '--op', 'unbind', '--mode', 'target', '--tid', tid, '-I', a]);
  for (const a of wantAddr)
    if (!haveAddr.includes(a)) out.push([...T, '--op', 'bind', '--mode', 'target', '--tid', tid, '-I', a]);
  const haveNames = live.acl.initiators === 'ALL' ? [] : [...live.acl.initiators];
  for (const n of haveNames)
    if (!t.initiatorNames.includes(n))
      out.push([...T, '--op', 'unbind', '--mode', 'target', '--tid', tid, '-Q', n]);
  for (const n of t.initiatorNames)
    if (!haveNames.includes(n)) out.push([...T, '--op', 'bind', '--mode', 'target', '--tid', tid, '-Q', n]);
  const wantUsers = new Set(t.incoming.map((u) => u.user));
  for (const a of live.accounts) {
    if (a.outgoing ? t.outgoing?.user !== a.user : !wantUsers.has(a.user)) {
      out.push(accountBinding('unbind', tid, a.user, a.outgoing));
    }
  }
  for (const u of t.incoming) {
    if (live.accounts.some((a) => !a.outgoing && a.user === u.user)) continue;
    out.push(...accountCommands(u, tid, false));
  }
  if (t.outgoing && !live.accounts.some((a) => a.outgoing && a.user === t.outgoing?.user))
    out.push(...accountCommands(t.outgoing, tid, true));
  return out;
}

if (
  process.argv[1] &&
  /(?:^|[/\\])(?:lunar-)?tgt-admin(?:\.js)?$/.test(process.argv[1]) &&
  import.meta.url.endsWith('/tgt-admin.js')
) {
  quietOnClosedPipe();
  process.exitCode = await tgtAdminMain(process.argv.slice(2));
}
