#!/usr/bin/env node
/**
 * `lunar-tgtadm` / `lunar tgtadm`: accepts tgtadm's arguments for `--lld iscsi` and drives lunar
 * through the control API. Output of `--op show`, messages and exit codes follow what tgtadm
 * 1.0.85 prints (observed against a real tgtd; test/cli/tgtadm.test.ts holds the shapes):
 * results on stdout, errors on stderr as "tgtadm: …", exit 22 for refused requests, 1 for an
 * unknown operation or mode, 107 when the daemon cannot be reached. When lunar knows more than
 * tgtadm would say ("invalid request"), the reason follows on a second stderr line.
 */
import { ApiError, ControlClient, UnreachableError } from '../admin/client.js';
import type { LunView, SessionView, TargetView } from '../admin/control.js';
import { quietOnClosedPipe } from './exit.js';

export const TGTADM_EXIT = { OK: 0, UNKNOWN: 1, EINVAL: 22, UNREACHABLE: 107 } as const;

interface OptDef {
  readonly long: string;
  readonly short?: string;
  readonly arg: boolean;
  readonly key: string;
}

/** tgtadm's options. Short letters as tgtadm 1.0.85 takes them (observed: -f is bsoflags, -S bsopts). */
export const TGTADM_OPTIONS: readonly OptDef[] = [
  { long: 'lld', short: 'L', arg: true, key: 'lld' },
  { long: 'op', short: 'o', arg: true, key: 'op' },
  { long: 'mode', short: 'm', arg: true, key: 'mode' },
  { long: 'tid', short: 't', arg: true, key: 'tid' },
  { long: 'sid', short: 's', arg: true, key: 'sid' },
  { long: 'cid', short: 'c', arg: true, key: 'cid' },
  { long: 'lun', short: 'l', arg: true, key: 'lun' },
  { long: 'name', short: 'n', arg: true, key: 'name' },
  { long: 'value', short: 'v', arg: true, key: 'value' },
  { long: 'backing-store', short: 'b', arg: true, key: 'backingStore' },
  { long: 'bstype', short: 'E', arg: true, key: 'bstype' },
  { long: 'bsoflags', short: 'f', arg: true, key: 'bsoflags' },
  { long: 'bsopts', short: 'S', arg: true, key: 'bsopts' },
  { long: 'blocksize', short: 'y', arg: true, key: 'blocksize' },
  { long: 'targetname', short: 'T', arg: true, key: 'targetname' },
  { long: 'initiator-address', short: 'I', arg: true, key: 'initiatorAddress' },
  { long: 'initiator-name', short: 'Q', arg: true, key: 'initiatorName' },
  { long: 'user', short: 'u', arg: true, key: 'user' },
  { long: 'password', short: 'p', arg: true, key: 'password' },
  { long: 'host', short: 'H', arg: true, key: 'host' },
  { long: 'force', short: 'F', arg: false, key: 'force' },
  { long: 'params', short: 'P', arg: true, key: 'params' },
  { long: 'bus', short: 'B', arg: true, key: 'bus' },
  { long: 'device-type', short: 'Y', arg: true, key: 'deviceType' },
  { long: 'outgoing', short: 'O', arg: false, key: 'outgoing' },
  { long: 'control-port', short: 'C', arg: true, key: 'controlPort' },
  { long: 'help', short: 'h', arg: false, key: 'help' },
  { long: 'version', short: 'V', arg: false, key: 'version' },
  { long: 'debug', short: 'd', arg: false, key: 'debug' },
];

/** Short letters tgtadm's getopt string gives an argument even where the long form takes none. */
const SHORT_WITH_ARG = new Set(['F', 'O']);

export type TgtadmOpts = Partial<Record<string, string>> & {
  force?: string;
  outgoing?: string;
  help?: string;
  version?: string;
};

export interface ParsedArgs {
  readonly opts: TgtadmOpts;
  /** Letters given, for the per-mode "option '-X' is not allowed" check. */
  readonly given: readonly string[];
}

export class TgtadmError extends Error {
  override readonly name = 'TgtadmError';
  readonly rc: number;
  /** Printed as is (getopt messages have their own shape). */
  readonly raw: boolean;
  readonly detail?: string;
  constructor(
    message: string,
    rc: number = TGTADM_EXIT.EINVAL,
    opts: { raw?: boolean; detail?: string } = {},
  ) {
    super(message);
    this.rc = rc;
    this.raw = opts.raw ?? false;
    if (opts.detail !== undefined) this.detail = opts.detail;
  }
}

const TRY = "Try `tgtadm --help' for more information.";

/** getopt_long-like parsing (long options by unique prefix, `--x=v`, `-xv`, `-x v`). */
export function parseTgtadmArgs(argv: readonly string[]): ParsedArgs {
  const opts: Record<string, string> = {};
  const given: string[] = [];
  const set = (d: OptDef, v: string) => {
    if ((d.key === 'tid' || d.key === 'sid' || d.key === 'cid' || d.key === 'lun') && !/^[0-9]+$/.test(v)) {
      throw new TgtadmError(
        `-${d.short ?? d.long} argument value '${v}' invalid\n${TRY}`,
        TGTADM_EXIT.EINVAL,
        { raw: true },
      );
    }
    opts[d.key] = v;
    given.push(d.short ?? d.long);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') break;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq >= 0 ? eq : undefined);
      const exact = TGTADM_OPTIONS.find((o) => o.long === name);
      const prefixed = TGTADM_OPTIONS.filter((o) => o.long.startsWith(name));
      const d = exact ?? (prefixed.length === 1 ? prefixed[0] : undefined);
      if (!d || !name) {
        if (prefixed.length > 1 && name)
          throw new TgtadmError(`tgtadm: option '--${name}' is ambiguous\n${TRY}`, TGTADM_EXIT.EINVAL, {
            raw: true,
          });
        throw new TgtadmError(`tgtadm: unrecognized option '${a}'\n${TRY}`, TGTADM_EXIT.EINVAL, {
          raw: true,
        });
      }
      if (d.arg) {
        if (eq >= 0) set(d, a.slice(eq + 1));
        else {
          const v = argv[i + 1];
          if (v === undefined)
            throw new TgtadmError(
              `tgtadm: option '--${d.long}' requires an argument\n${TRY}`,
              TGTADM_EXIT.EINVAL,
              { raw: true },
            );
          set(d, v);
          i++;
        }
      } else {
        if (eq >= 0)
          throw new TgtadmError(
            `tgtadm: option '--${d.long}' doesn't allow an argument\n${TRY}`,
            TGTADM_EXIT.EINVAL,
            { raw: true },
          );
        set(d, '1');
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j] ?? '';
        const d = TGTADM_OPTIONS.find((o) => o.short === c);
        if (!d)
          throw new TgtadmError(`tgtadm: invalid option -- '${c}'\n${TRY}`, TGTADM_EXIT.EINVAL, {
            raw: true,
          });
        if (d.arg || SHORT_WITH_ARG.has(c)) {
          const rest = a.slice(j + 1);
          if (rest) set(d, rest);
          else {
            const v = argv[i + 1];
            if (v === undefined)
              throw new TgtadmError(
                `tgtadm: option requires an argument -- '${c}'\n${TRY}`,
                TGTADM_EXIT.EINVAL,
                { raw: true },
              );
            set(d, v);
            i++;
          }
          break;
        }
        set(d, '1');
      }
    }
    // tgtadm ignores stray words
  }
  return { opts, given };
}

const OPS = ['new', 'delete', 'show', 'bind', 'unbind', 'update', 'stat', 'start', 'stop'] as const;
const MODES = [
  'sys',
  'system',
  'target',
  'logicalunit',
  'account',
  'session',
  'conn',
  'connection',
  'lld',
  'portal',
] as const;

/** Letters each mode accepts (others: "<mode> mode: option '-X' is not allowed/supported"). */
const COMMON = ['L', 'o', 'm', 'C', 'h', 'V', 'd'];
const MODE_LETTERS: Readonly<Record<string, readonly string[]>> = {
  sys: [...COMMON, 'n', 'v'],
  target: [...COMMON, 't', 'T', 'I', 'Q', 'n', 'v', 'F', 'B'],
  logicalunit: [...COMMON, 't', 'l', 'b', 'E', 'f', 'S', 'y', 'Y', 'P'],
  account: [...COMMON, 't', 'u', 'p', 'O'],
  conn: [...COMMON, 't', 's', 'c', 'F'],
  session: [...COMMON, 't', 's', 'F'],
  lld: [...COMMON],
  portal: [...COMMON, 'P'],
};

function modeName(m: string): string {
  return m === 'system' ? 'sys' : m === 'connection' ? 'conn' : m;
}

function letterOf(key: string): string {
  const d = TGTADM_OPTIONS.find((o) => o.key === key);
  return d?.short ?? key;
}

/** Checks what tgtadm checks before talking to the daemon. Returns the normalised mode. */
export function validateTgtadm(p: ParsedArgs): { op: string; mode: string } {
  const { opts } = p;
  if (opts['op'] === undefined) throw new TgtadmError('tgtadm: specify the operation type');
  const op = opts['op'];
  if (!(OPS as readonly string[]).includes(op))
    throw new TgtadmError(`tgtadm: unknown operation: ${op}`, TGTADM_EXIT.UNKNOWN);
  const rawMode = opts['mode'] ?? '';
  if (!(MODES as readonly string[]).includes(rawMode)) {
    if (opts['mode'] === undefined) throw new TgtadmError('tgtadm: specify the mode');
    throw new TgtadmError(`tgtadm: unknown mode: ${rawMode}`, TGTADM_EXIT.UNKNOWN);
  }
  const mode = modeName(rawMode);
  const lld = opts['lld'];
  if (mode !== 'sys' && lld === undefined && mode !== 'lld') {
    // tgtadm defaults the driver to iscsi
  } else if (lld !== undefined && lld !== 'iscsi') {
    throw new TgtadmError("tgtadm: can't find the driver", TGTADM_EXIT.EINVAL, {
      detail: `lunar serves iSCSI only (--lld iscsi), not "${lld}"`,
    });
  }
  const allowed = MODE_LETTERS[mode] ?? COMMON;
  for (const g of p.given) {
    const letter = g.length === 1 ? g : letterOf(g);
    if (letter === 'F' && (mode === 'target' || mode === 'conn' || mode === 'session')) continue;
    if (!allowed.includes(letter))
      throw new TgtadmError(
        `tgtadm: ${mode === 'sys' ? 'system' : mode} mode: option '-${letter}' is not allowed/supported`,
      );
  }
  if (mode === 'account' && op === 'show' && opts['tid'] !== undefined)
    throw new TgtadmError("tgtadm: account mode: option '-t' is not allowed/supported");
  if (mode === 'target' && op === 'show' && opts['targetname'] !== undefined)
    throw new TgtadmError("tgtadm: target mode: option '-T' is not allowed/supported");
  const needTid =
    (mode === 'target' && op !== 'show') ||
    mode === 'logicalunit' ||
    (mode === 'account' && (op === 'bind' || op === 'unbind'));
  if (needTid && opts['tid'] === undefined) throw new TgtadmError("tgtadm: 'tid' option is necessary");
  if (opts['tid'] === '0' && mode !== 'sys') throw new TgtadmError("tgtadm: 'tid' cannot be 0");
  if (mode === 'target' && op === 'new' && opts['targetname'] === undefined)
    throw new TgtadmError('tgtadm: creating new target requires a name, use --targetname');
  if (mode === 'logicalunit' && opts['lun'] === undefined)
    throw new TgtadmError("tgtadm: 'lun' option is necessary");
  if (mode === 'logicalunit' && op === 'show')
    throw new TgtadmError('tgtadm: operation show not supported in logicalunit mode');
  if (mode === 'logicalunit' && op === 'new' && opts['params'] !== undefined)
    throw new TgtadmError("tgtadm: logicalunit mode: option '-P' is not allowed/supported");
  if (
    mode === 'target' &&
    (op === 'bind' || op === 'unbind') &&
    opts['initiatorAddress'] === undefined &&
    opts['initiatorName'] === undefined
  ) {
    throw new TgtadmError('tgtadm: bind operation requires initiator-address, initiator-nameor bus');
  }
  if (mode === 'account' && op === 'new' && (opts['user'] === undefined || opts['password'] === undefined)) {
    throw new TgtadmError("tgtadm: 'user' and 'password' options are required");
  }
  if (
    mode === 'account' &&
    (op === 'delete' || op === 'bind' || op === 'unbind') &&
    opts['user'] === undefined
  ) {
    throw new TgtadmError("tgtadm: 'user' option is necessary");
  }
  if (mode === 'sys' && op === 'start')
    throw new TgtadmError('tgtadm: operation start not supported in system mode');
  return { op, mode };
}

// ------------------------------------------------------------------ output shapes

const I1 = '    ';
const I2 = '        ';
const I3 = '            ';
const I4 = '                ';

function bstype(l: LunView): string {
  return l.backstore === 'file' ? 'rdwr' : l.backstore;
}

/** Decimal megabytes, truncated, as tgtadm prints Size. */
export function sizeMb(bytes: number): number {
  return Math.floor(bytes / 1_000_000);
}

function controllerLun(tid: number): string[] {
  return [
    `${I2}LUN: 0`,
    `${I3}Type: controller`,
    `${I3}SCSI ID: IET     ${tid.toString(16).padStart(4, '0')}0000`,
    `${I3}SCSI SN: beaf${tid}0`,
    `${I3}Size: 0 MB, Block size: 1`,
    `${I3}Online: Yes`,
    `${I3}Removable media: No`,
    `${I3}Prevent removal: No`,
    `${I3}Readonly: No`,
    `${I3}SWP: No`,
    `${I3}Thin-provisioning: No`,
    `${I3}Backing store type: null`,
    `${I3}Backing store path: None`,
    `${I3}Backing store flags: `,
  ];
}

function lunLines(l: LunView): string[] {
  const flags = [l.direct ? 'direct' : '', l.writeCache ? '' : 'sync'].filter(Boolean).join(':');
  return [
    `${I2}LUN: ${l.lun}`,
    `${I3}Type: disk`,
    `${I3}SCSI ID: ${l.scsiId ?? l.id ?? ''}`,
    `${I3}SCSI SN: ${l.serial ?? l.id ?? ''}`,
    `${I3}Size: ${sizeMb(l.bytes)} MB, Block size: ${l.blockSize}`,
    `${I3}Online: ${l.online ? 'Yes' : 'No'}`,
    `${I3}Removable media: ${l.removable ? 'Yes' : 'No'}`,
    `${I3}Prevent removal: No`,
    `${I3}Readonly: ${l.readOnly ? 'Yes' : 'No'}`,
    `${I3}SWP: No`,
    `${I3}Thin-provisioning: No`,
    `${I3}Backing store type: ${bstype(l)}`,
    `${I3}Backing store path: ${l.backstore === 'file' ? (l.path ?? 'None') : 'None'}`,
    `${I3}Backing store flags: ${flags}`,
  ];
}

/** `--op show --mode target`: every target with nexuses, LUNs, accounts and ACL. */
export function formatTargets(targets: readonly TargetView[]): string {
  const lines: string[] = [];
  for (const t of [...targets].sort((a, b) => a.tid - b.tid)) {
    lines.push(`Target ${t.tid}: ${t.name}`);
    lines.push(`${I1}System information:`, `${I2}Driver: iscsi`, `${I2}State: ${t.state}`);
    lines.push(`${I1}I_T nexus information:`);
    for (const s of t.sessions) {
      lines.push(`${I2}I_T nexus: ${s.tsih}`);
      lines.push(`${I3}Initiator: ${s.initiator} alias: ${s.alias ?? 'none'}`);
      lines.push(`${I3}Connection: ${s.cid}`);
      lines.push(`${I4}IP Address: ${s.address}`);
    }
    lines.push(`${I1}LUN information:`);
    const luns = [...t.luns].sort((a, b) => a.lun - b.lun);
    if (!luns.some((l) => l.lun === 0)) lines.push(...controllerLun(t.tid));
    for (const l of luns) lines.push(...lunLines(l));
    lines.push(`${I1}Account information:`);
    for (const a of t.accounts) lines.push(`${I2}${a.user}${a.outgoing ? ' (outgoing)' : ''}`);
    lines.push(`${I1}ACL information:`);
    const addresses = t.acl.addresses === 'ALL' ? ['ALL'] : t.acl.addresses;
    for (const a of addresses) lines.push(`${I2}${a}`);
    if (t.acl.initiators !== 'ALL') for (const n of t.acl.initiators) lines.push(`${I2}${n}`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** Target parameters in the order tgtadm lists them; lunar's values where it has them. */
export const PARAM_DEFAULTS: readonly (readonly [string, string])[] = [
  ['nop_interval', '0'],
  ['nop_count', '0'],
  ['MaxRecvDataSegmentLength', '262144'],
  ['HeaderDigest', 'None'],
  ['DataDigest', 'None'],
  ['InitialR2T', 'No'],
  ['MaxOutstandingR2T', '8'],
  ['ImmediateData', 'Yes'],
  ['FirstBurstLength', '262144'],
  ['MaxBurstLength', '1048576'],
  ['DataPDUInOrder', 'Yes'],
  ['DataSequenceInOrder', 'Yes'],
  ['ErrorRecoveryLevel', '0'],
  ['IFMarker', 'No'],
  ['OFMarker', 'No'],
  ['DefaultTime2Wait', '2'],
  ['DefaultTime2Retain', '20'],
  ['OFMarkInt', 'Reject'],
  ['IFMarkInt', 'Reject'],
  ['MaxConnections', '1'],
  ['RDMAExtensions', 'No'],
  ['TargetRecvDataSegmentLength', '262144'],
  ['InitiatorRecvDataSegmentLength', '262144'],
  ['MaxOutstandingUnexpectedPDUs', '0'],
  ['MaxXmitDataSegmentLength', '8192'],
  ['MaxQueueCmd', '128'],
];

/** `--op show --mode target --tid N`: KEY=VALUE lines, then the redirect keys when set. */
export function formatTargetParams(t: TargetView): string {
  const lines = PARAM_DEFAULTS.map(([k, d]) => {
    if (k === 'MaxQueueCmd') return `${k}=${t.queueDepth ?? d}`;
    let v = t.params[k] ?? d;
    // tgtadm shows the first digest of a list (the preferred one)
    if (k === 'HeaderDigest' || k === 'DataDigest') v = v.split(',')[0] ?? v;
    return `${k}=${v}`;
  });
  if (t.redirect) {
    lines.push(
      `RedirectAddress=${t.redirect.host}`,
      `RedirectPort=${t.redirect.port}`,
      `RedirectReason=${t.redirect.permanent ? 'Permanent' : 'Temporary'}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** `--op show --mode conn --tid N [--sid S]`. */
export function formatConnections(sessions: readonly SessionView[]): string {
  const lines: string[] = [];
  for (const s of sessions) {
    lines.push(
      `Session: ${s.tsih}`,
      `${I1}Connection: ${s.cid}`,
      `${I2}Initiator: ${s.initiator}`,
      `${I2}IP Address: ${s.address}`,
    );
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

export function formatAccounts(users: readonly string[]): string {
  return `Account list:\n${users.map((u) => `${I1}${u}\n`).join('')}`;
}

export function formatSystem(state: string): string {
  return [
    'System:',
    `${I1}State: ${state}`,
    `${I1}debug: off`,
    'LLDs:',
    `${I1}iscsi: ready`,
    'Backing stores:',
    `${I1}rdwr (bsoflags sync:direct)`,
    `${I1}aio`,
    `${I1}null`,
    `${I1}memory`,
    'Device types:',
    `${I1}disk`,
    'iSNS:',
    `${I1}iSNS=Off`,
    `${I1}iSNSServerIP=`,
    `${I1}iSNSServerPort=3205`,
    `${I1}iSNSAccessControl=Off`,
    '',
  ].join('\n');
}

export function formatPortals(portals: readonly { listen: string; group: number }[]): string {
  return portals.map((p) => `Portal: ${p.listen},${p.group}\n`).join('');
}

// ------------------------------------------------------------------ requests

/** What each lunar error becomes in tgtadm's words. */
export function tgtMessage(err: ApiError): string {
  const key = `${err.code}/${err.subject}`;
  const table: Readonly<Record<string, string>> = {
    'not_found/target': "can't find the target",
    'not_found/lun': "can't find the logical unit",
    'not_found/acl': 'this access control rule does not exist',
    'not_found/account': "can't find the account",
    'not_found/session': "can't find the session",
    'exists/target': 'this target already exists',
    'exists/lun': 'this logical unit number already exists',
    'exists/account': 'this account already exists',
    'exists/acl': 'this access control rule already exists',
    'busy/target': 'this target is still active',
  };
  return table[key] ?? 'invalid request';
}

const BSTYPES: Readonly<Record<string, 'file' | 'null'>> = {
  rdwr: 'file',
  aio: 'file',
  sync: 'file',
  rdwr_sync: 'file',
  null: 'file',
};
const BSOFLAGS = new Set(['direct', 'sync']);

/** tgt's LU parameters (--params) → lunar LUN fields. */
export function lunParams(text: string): Record<string, string | boolean> {
  const out: Record<string, string | boolean> = {};
  for (const item of text.split(',').filter(Boolean)) {
    const i = item.indexOf('=');
    const k = i < 0 ? item : item.slice(0, i);
    const v = i < 0 ? '' : item.slice(i + 1);
    switch (k) {
      case 'scsi_sn':
        out['serial'] = v;
        break;
      case 'scsi_id':
        out['scsiId'] = v;
        break;
      case 'vendor_id':
        out['vendor'] = v;
        break;
      case 'product_id':
        out['product'] = v;
        break;
      case 'readonly':
        if (v !== '0' && v !== '1')
          throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
            detail: `readonly=${v}: must be 0 or 1`,
          });
        out['readOnly'] = v === '1';
        break;
      case 'removable':
        if (v !== '0' && v !== '1')
          throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
            detail: `removable=${v}: must be 0 or 1`,
          });
        out['removable'] = v === '1';
        break;
      case 'product_rev':
      case 'sense_format':
      case 'online':
      case 'mode_page':
      case 'path':
        // accepted and ignored: lunar fixes these (product_rev, sense format, medium state)
        break;
      default:
        throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
          detail: `unknown logical unit parameter "${k}" (lunar takes scsi_id, scsi_sn, vendor_id, product_id, readonly, removable)`,
        });
    }
  }
  return out;
}

interface Io {
  out(s: string): void;
  err(s: string): void;
}

async function request(
  io: Io,
  client: ControlClient,
  p: ParsedArgs,
  op: string,
  mode: string,
): Promise<number> {
  const o = p.opts;
  const tid = o['tid'];
  const t = tid !== undefined ? `/v1/targets/${tid}` : '';
  switch (`${mode}/${op}`) {
    case 'target/new': {
      await client.post('/v1/targets', {
        tid: Number(tid),
        name: o['targetname'],
        acl: { initiators: 'ALL', addresses: [] },
      });
      return 0;
    }
    case 'target/delete':
      await client.delete(`${t}${o['force'] ? '?force=1' : ''}`);
      return 0;
    case 'target/show':
      if (tid !== undefined) io.out(formatTargetParams(await client.get<TargetView>(t)));
      else io.out(formatTargets(await client.get<TargetView[]>('/v1/targets')));
      return 0;
    case 'target/bind':
    case 'target/unbind': {
      const body =
        o['initiatorAddress'] !== undefined
          ? { address: o['initiatorAddress'] }
          : { initiator: o['initiatorName'] ?? '' };
      if (op === 'bind') await client.post(`${t}/acl`, body);
      else {
        const q =
          'address' in body
            ? `address=${encodeURIComponent(body.address)}`
            : `initiator=${encodeURIComponent(body.initiator)}`;
        await client.delete(`${t}/acl?${q}`);
      }
      return 0;
    }
    case 'target/update': {
      const name = o['name'];
      const value = o['value'];
      if (name === undefined || value === undefined)
        throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
          detail: 'update needs --name and --value',
        });
      await client.patch(t, await targetUpdate(client, t, name, value));
      return 0;
    }
    case 'logicalunit/new': {
      const bsType = o['bstype'] ?? 'rdwr';
      if (BSTYPES[bsType] === undefined) {
        throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
          detail: `backing store type "${bsType}" (lunar takes rdwr, aio, sync, null)`,
        });
      }
      const dt = o['deviceType'];
      if (dt !== undefined && dt !== 'disk') {
        if (['cd', 'changer', 'osd', 'controller', 'pt', 'tape', 'ssc', 'passthrough'].includes(dt)) {
          throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
            detail: `device type "${dt}": lunar serves disks only`,
          });
        }
        throw new TgtadmError(`tgtadm: unknown target type: ${dt}`);
      }
      const flags = (o['bsoflags'] ?? '').split(':').filter(Boolean);
      const bad = flags.find((f) => !BSOFLAGS.has(f));
      if (bad !== undefined)
        throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
          detail: `bsoflags "${bad}" (sync, direct or sync:direct)`,
        });
      const bs = o['blocksize'];
      if (bs !== undefined && bs !== '512' && bs !== '4096') {
        throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
          detail: `block size ${bs}: lunar takes 512 or 4096`,
        });
      }
      const path = o['backingStore'];
      if (bsType !== 'null' && path === undefined) {
        throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
          detail: 'lunar needs a backing store (-b PATH) for a logical unit',
        });
      }
      await client.post(`${t}/luns`, {
        lun: Number(o['lun']),
        ...(bsType === 'null' ? { backstore: 'null', size: '1G' } : { backstore: 'file', path }),
        direct: flags.includes('direct') || bsType === 'aio',
        ...(flags.includes('sync') || bsType === 'sync' || bsType === 'rdwr_sync'
          ? { writeCache: false }
          : {}),
        ...(bs !== undefined ? { blockSize: Number(bs) } : {}),
      });
      return 0;
    }
    case 'logicalunit/delete':
      if (o['lun'] === '0') {
        const view = await client.get<TargetView>(t);
        if (!view.luns.some((l) => l.lun === 0))
          throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
            detail: 'LUN 0 is the controller',
          });
      }
      await client.delete(`${t}/luns/${o['lun']}`);
      return 0;
    case 'logicalunit/update':
      if (o['params'] === undefined)
        throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
          detail: 'update needs --params KEY=VALUE,...',
        });
      await client.patch(`${t}/luns/${o['lun']}`, lunParams(o['params']));
      return 0;
    case 'account/new':
      await client.post('/v1/accounts', { user: o['user'], secret: o['password'] });
      return 0;
    case 'account/delete':
      await client.delete(`/v1/accounts/${encodeURIComponent(o['user'] ?? '')}`);
      return 0;
    case 'account/bind':
      await client.post(`${t}/accounts`, { user: o['user'], outgoing: o['outgoing'] !== undefined });
      return 0;
    case 'account/unbind': {
      const view = await client.get<TargetView>(t);
      const user = o['user'] ?? '';
      const outgoing = o['outgoing'] !== undefined;
      if (!view.accounts.some((a) => a.user === user && a.outgoing === outgoing))
        throw new TgtadmError("tgtadm: can't find the account");
      await client.delete(`${t}/accounts/${encodeURIComponent(user)}`);
      return 0;
    }
    case 'account/show': {
      const as = await client.get<{ user: string }[]>('/v1/accounts');
      // tgtd lists the newest account first
      io.out(formatAccounts(as.map((a) => a.user).reverse()));
      return 0;
    }
    case 'conn/show':
    case 'session/show': {
      if (tid === undefined) throw new TgtadmError("tgtadm: can't find the target");
      const view = await client.get<TargetView>(t);
      const sid = o['sid'];
      io.out(formatConnections(view.sessions.filter((s) => sid === undefined || String(s.tsih) === sid)));
      return 0;
    }
    case 'conn/delete':
    case 'session/delete': {
      if (tid === undefined) throw new TgtadmError("tgtadm: can't find the target");
      const sid = o['sid'];
      if (sid === undefined) throw new TgtadmError("tgtadm: can't find the session");
      const view = await client.get<TargetView>(t);
      if (!view.sessions.some((s) => String(s.tsih) === sid))
        throw new TgtadmError("tgtadm: can't find the session");
      await client.delete(`/v1/sessions/${sid}`);
      return 0;
    }
    case 'sys/show': {
      const st = await client.get<{ state: string }>('/v1/system');
      io.out(formatSystem(st.state));
      return 0;
    }
    case 'sys/update': {
      if (o['name'] !== 'State' || (o['value'] !== 'ready' && o['value'] !== 'offline')) {
        throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
          detail: 'system update takes --name State --value ready|offline',
        });
      }
      await client.patch('/v1/system', { state: o['value'] });
      return 0;
    }
    case 'portal/show':
      io.out(formatPortals(await client.get<{ listen: string; group: number }[]>('/v1/portals')));
      return 0;
    case 'portal/new':
    case 'portal/delete': {
      const m = /(?:^|,)portal=([^,]+)/.exec(o['params'] ?? '');
      if (!m?.[1])
        throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
          detail: 'give --params portal=HOST:PORT',
        });
      if (op === 'new') await client.post('/v1/portals', { listen: m[1], group: 1 });
      else await client.delete(`/v1/portals/${encodeURIComponent(m[1])}`);
      return 0;
    }
    case 'lld/start':
    case 'lld/stop':
      return 0;
    default:
      throw new TgtadmError(
        `tgtadm: operation ${op} not supported in ${mode === 'sys' ? 'system' : mode} mode`,
      );
  }
}

/** `--op update --mode target --name N --value V` → a PATCH body. */
async function targetUpdate(
  client: ControlClient,
  t: string,
  name: string,
  value: string,
): Promise<Record<string, unknown>> {
  const lower = name.toLowerCase();
  if (lower === 'state') {
    if (value !== 'ready' && value !== 'offline')
      throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
        detail: `state "${value}" must be ready or offline`,
      });
    return { state: value };
  }
  if (name === 'MaxQueueCmd') {
    if (!/^[0-9]+$/.test(value))
      throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
        detail: `MaxQueueCmd "${value}" is not a number`,
      });
    return { queueDepth: Number(value) };
  }
  if (name === 'RedirectAddress' || name === 'RedirectPort' || name === 'RedirectReason') {
    const view = await client.get<TargetView>(t);
    const cur = view.redirect ?? { host: '', port: 3260, permanent: false };
    let { host, port, permanent } = cur;
    if (name === 'RedirectAddress') {
      if (value === '') return { redirect: null };
      host = value;
    } else if (name === 'RedirectPort') {
      if (!/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > 65535) {
        throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
          detail: `RedirectPort "${value}" must be 1..65535`,
        });
      }
      port = Number(value);
    } else {
      if (value !== 'Temporary' && value !== 'Permanent') {
        throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
          detail: `RedirectReason "${value}" must be Temporary or Permanent`,
        });
      }
      permanent = value === 'Permanent';
    }
    if (!host) {
      // tgtd keeps a port/reason without an address; lunar stores a redirect only with an address
      throw new TgtadmError('tgtadm: invalid request', TGTADM_EXIT.EINVAL, {
        detail: 'set RedirectAddress first',
      });
    }
    const h = host.includes(':') ? `[${host}]` : host;
    return { redirect: { to: `${h}:${port}`, permanent } };
  }
  return { params: { [name]: value } };
}

export const TGTADM_HELP = `NAME
  lunar-tgtadm - tgtadm-compatible administration of a lunar iSCSI target

SYNOPSIS
  lunar-tgtadm --lld iscsi --mode MODE --op OP [OPTIONS]
  lunar tgtadm ...

DESCRIPTION
  Takes tgtadm's arguments and applies them to a running \`lunar serve\` through its control
  API. Unlike tgtd, every change is saved in lunar's config file and survives a restart.
  The daemon is found through $LUNAR_SOCKET, $LUNAR_DATA/lunar.sock, ./lunar-data/lunar.sock
  or /var/lib/lunar/lunar.sock; -C/--control-port is accepted and ignored.

MODES AND OPERATIONS
  target       new -t TID -T NAME | delete -t TID [--force] | show [-t TID]
               bind|unbind -t TID (-I ADDRESS|ALL | -Q INITIATOR-NAME)
               update -t TID -n KEY -v VALUE   (iSCSI keys, MaxQueueCmd, state,
                                                RedirectAddress, RedirectPort, RedirectReason)
  logicalunit  new -t TID -l LUN -b PATH [-E rdwr|aio|sync|null] [-f direct|sync|sync:direct]
                   [-y 512|4096] [-Y disk]
               delete -t TID -l LUN | update -t TID -l LUN -P scsi_id=..,scsi_sn=..,vendor_id=..,
                                                  product_id=..,readonly=0|1,removable=0|1
  account      new -u USER -p PASSWORD | delete -u USER | show
               bind|unbind -t TID -u USER [--outgoing]
  conn         show -t TID [-s SID] | delete -t TID -s SID -c CID
  session      show -t TID [-s SID] | delete -t TID -s SID   (lunar extension)
  sys          show | update -n State -v ready|offline
  portal       show | new|delete -P portal=HOST:PORT

OPTIONS
  -L, --lld DRIVER          only iscsi
  -o, --op OP               -m, --mode MODE
  -t, --tid N               -T, --targetname NAME
  -l, --lun N               -b, --backing-store PATH
  -E, --bstype TYPE         -f, --bsoflags FLAGS        -S, --bsopts OPTS (ignored)
  -y, --blocksize N         -Y, --device-type TYPE
  -I, --initiator-address A -Q, --initiator-name NAME
  -u, --user USER           -p, --password PASS         --outgoing
  -n, --name KEY            -v, --value VALUE           -P, --params LIST
  -s, --sid N               -c, --cid N                 --force
  -C, --control-port N      -h, --help                  -V, --version

EXIT STATUS
  0 success; 22 request refused (the message says why, as tgtadm does); 1 unknown operation or
  mode; 107 the lunar daemon cannot be reached.
`;

export async function tgtadmMain(
  argv: readonly string[],
  io: Io = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) },
): Promise<number> {
  try {
    const parsed = parseTgtadmArgs(argv);
    if (parsed.opts['help'] !== undefined) {
      io.out(TGTADM_HELP);
      return 0;
    }
    if (parsed.opts['version'] !== undefined) {
      io.out('1.0.85 (lunar)\n');
      return 0;
    }
    const { op, mode } = validateTgtadm(parsed);
    const client = new ControlClient({ timeoutMs: 60_000 });
    return await request(io, client, parsed, op, mode);
  } catch (err) {
    if (err instanceof TgtadmError) {
      io.err(`${err.message}\n`);
      if (err.detail) io.err(`  (lunar: ${err.detail})\n`);
      return err.rc;
    }
    if (err instanceof ApiError) {
      const msg = tgtMessage(err);
      io.err(`tgtadm: ${msg}\n`);
      if (msg === 'invalid request' || err.code === 'busy') io.err(`  (lunar: ${err.message})\n`);
      return TGTADM_EXIT.EINVAL;
    }
    if (err instanceof UnreachableError) {
      io.err('tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is not connected\n');
      io.err(`  (lunar: ${err.message})\n`);
      return TGTADM_EXIT.UNREACHABLE;
    }
    io.err(`tgtadm: ${(err as Error).message}\n`);
    return TGTADM_EXIT.EINVAL;
  }
}

/** Entry point of the `lunar-tgtadm` bin. */
export async function runTgtadmBin(): Promise<void> {
  process.exitCode = await tgtadmMain(process.argv.slice(2));
}

if (
  process.argv[1] &&
  /(?:^|[/\\])(?:lunar-)?tgtadm(?:\.js)?$/.test(process.argv[1]) &&
  import.meta.url.endsWith('/tgtadm.js')
) {
  quietOnClosedPipe();
  await runTgtadmBin();
}
