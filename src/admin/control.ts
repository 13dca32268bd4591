/**
 * The control plane: every run-time change (targets, LUNs, ACLs, CHAP accounts, portals, target
 * parameters) goes through here. A change edits a copy of the YAML document (comments kept), is
 * validated by the same schema as the file, applied to the running server, then saved atomically.
 * If validation or the live change fails, nothing is saved and the old state stays.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { type Document, isMap, isSeq } from 'yaml';
import { CachedBackstore, type CachedBackstoreStats } from '../backstore/index.js';
import { busyPoll } from '../net/busy-poll.js';
import type { Logger } from '../util/log.js';
import {
  type ChapUser,
  ConfigError,
  type LoadedConfig,
  type LunarConfig,
  type LunSpec,
  newLunId,
  parseConfig,
  parseHostPort,
  parseSize,
  type TargetSpec,
  writeFileAtomic,
} from './config.js';
import { type ReplicationContext, resourcesOfTarget } from './replication.js';
import type { Runtime } from './runtime.js';

export const ERROR_CODES = ['not_found', 'exists', 'invalid', 'busy', 'unsupported', 'internal'] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** HTTP status of each error code (docs/control-api.md). */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  not_found: 404,
  exists: 409,
  invalid: 400,
  busy: 409,
  unsupported: 501,
  internal: 500,
};

export class ControlError extends Error {
  override readonly name = 'ControlError';
  readonly code: ErrorCode;
  /** Which thing was not found / already exists / is busy (tgtadm messages key on it). */
  readonly subject: string;
  readonly details?: unknown;
  constructor(code: ErrorCode, subject: string, message: string, details?: unknown) {
    super(message);
    this.code = code;
    this.subject = subject;
    if (details !== undefined) this.details = details;
  }
}

export interface SessionView {
  readonly tsih: number;
  readonly initiator: string;
  readonly alias?: string;
  readonly target: string;
  readonly tid?: number;
  /** Initiator IP address. */
  readonly address: string;
  /** Initiator address and port. */
  readonly remote: string;
  readonly portal: string;
  readonly cid: number;
  readonly isid: string;
  readonly headerDigest: string;
  readonly dataDigest: string;
  readonly user?: string;
}

export interface LunView extends LunSpec {
  /** Bytes (from the open backstore). */
  readonly bytes: number;
  readonly online: boolean;
  /** Read block cache counters of this LUN (when its reads go through the cache). */
  readonly cacheStats?: CachedBackstoreStats;
}

export interface TargetView {
  readonly tid: number;
  readonly name: string;
  readonly alias?: string;
  readonly state: 'ready' | 'offline';
  readonly acl: TargetSpec['acl'];
  readonly accounts: { readonly user: string; readonly outgoing: boolean }[];
  readonly params: Readonly<Record<string, string>>;
  readonly redirect?: TargetSpec['redirect'];
  readonly queueDepth?: number;
  readonly portalGroups?: readonly number[];
  readonly luns: LunView[];
  readonly sessions: SessionView[];
}

export interface NewLun {
  readonly lun: number;
  readonly backstore?: LunSpec['backstore'];
  readonly path?: string;
  readonly size?: number | string;
  readonly blockSize?: 512 | 4096;
  readonly readOnly?: boolean;
  readonly removable?: boolean;
  readonly direct?: boolean;
  readonly writeCache?: boolean;
  /** Reads through the block cache (docs/config.md); changing it reopens the LUN. */
  readonly cache?: boolean;
  readonly serial?: string;
  readonly vendor?: string;
  readonly product?: string;
  readonly scsiId?: string;
  readonly id?: string;
}

export type LunPatch = Omit<NewLun, 'lun' | 'backstore' | 'path' | 'size' | 'blockSize' | 'id'>;

/** LUN fields a PATCH may change (a new LUN may also set these, and its block size). */
const LUN_CHANGEABLE = [
  'readOnly',
  'removable',
  'direct',
  'writeCache',
  'cache',
  'serial',
  'vendor',
  'product',
  'scsiId',
] as const satisfies readonly (keyof LunPatch)[];

export interface TargetPatch {
  readonly alias?: string | null;
  /** iSCSI keys; null removes the override. */
  readonly params?: Readonly<Record<string, string | null>>;
  readonly redirect?: { readonly to: string; readonly permanent?: boolean } | null;
  readonly queueDepth?: number | null;
  readonly state?: 'ready' | 'offline';
}

export interface AclChange {
  readonly address?: string;
  readonly initiator?: string;
}

interface ControllerOptions {
  readonly loaded: LoadedConfig;
  readonly runtime: Runtime;
  readonly dataDir: string;
  readonly log: Logger;
  /** Portals came from --listen: portal changes are refused (they would not match the file). */
  readonly portalsOverridden?: boolean;
  readonly version?: string;
  /** Called by POST /stop after the checks. */
  readonly onStop?: (timeoutMs: number) => void;
}

/** iSCSI keys a target may override (tgtadm --op update --mode target --name KEY). */
export const TARGET_KEYS = [
  'MaxRecvDataSegmentLength',
  'HeaderDigest',
  'DataDigest',
  'InitialR2T',
  'MaxOutstandingR2T',
  'ImmediateData',
  'FirstBurstLength',
  'MaxBurstLength',
  'DataPDUInOrder',
  'DataSequenceInOrder',
  'ErrorRecoveryLevel',
  'IFMarker',
  'OFMarker',
  'DefaultTime2Wait',
  'DefaultTime2Retain',
  'OFMarkInt',
  'IFMarkInt',
  'MaxConnections',
  'RDMAExtensions',
  'TargetRecvDataSegmentLength',
  'InitiatorRecvDataSegmentLength',
  'MaxOutstandingUnexpectedPDUs',
  'MaxXmitDataSegmentLength',
  'nop_interval',
  'nop_count',
] as const;

const NUMERIC_KEYS: Readonly<Record<string, readonly [number, number]>> = {
  MaxRecvDataSegmentLength: [512, 16777215],
  MaxOutstandingR2T: [1, 65535],
  FirstBurstLength: [512, 16777215],
  MaxBurstLength: [512, 16777215],
  ErrorRecoveryLevel: [0, 2],
  DefaultTime2Wait: [0, 3600],
  DefaultTime2Retain: [0, 3600],
  MaxConnections: [1, 65535],
  TargetRecvDataSegmentLength: [512, 16777215],
  InitiatorRecvDataSegmentLength: [512, 16777215],
  MaxOutstandingUnexpectedPDUs: [0, 65535],
  MaxXmitDataSegmentLength: [512, 16777215],
  OFMarkInt: [1, 65535],
  IFMarkInt: [1, 65535],
  nop_interval: [0, 3600],
  nop_count: [0, 65535],
};
const BOOL_KEYS = new Set([
  'InitialR2T',
  'ImmediateData',
  'DataPDUInOrder',
  'DataSequenceInOrder',
  'IFMarker',
  'OFMarker',
  'RDMAExtensions',
]);

/** Checks one target key/value; returns the value to store or throws ControlError('invalid'). */
export function checkTargetParam(key: string, value: string): string {
  if (!(TARGET_KEYS as readonly string[]).includes(key)) {
    throw new ControlError(
      'invalid',
      'param',
      `unknown target parameter "${key}" (known: ${TARGET_KEYS.join(', ')})`,
    );
  }
  const range = NUMERIC_KEYS[key];
  if (range) {
    if (!/^[0-9]+$/.test(value) || Number(value) < range[0] || Number(value) > range[1]) {
      throw new ControlError(
        'invalid',
        'param',
        `${key}: "${value}" is not a number in ${range[0]}..${range[1]}`,
      );
    }
    return value;
  }
  if (BOOL_KEYS.has(key)) {
    if (value !== 'Yes' && value !== 'No')
      throw new ControlError('invalid', 'param', `${key}: "${value}" must be Yes or No`);
    return value;
  }
  if (key === 'HeaderDigest' || key === 'DataDigest') {
    const items = value.split(',');
    if (!items.length || items.some((i) => i !== 'None' && i !== 'CRC32C')) {
      throw new ControlError('invalid', 'param', `${key}: "${value}" must be None, CRC32C or a list of them`);
    }
    return value;
  }
  return value;
}

/** "1.2.3.4:5678" → "1.2.3.4", "[::1]:5678" → "::1". */
export function hostOf(address: string): string {
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(address);
  if (v6?.[1]) return v6[1];
  const m = /^([^:]+):\d+$/.exec(address);
  return m?.[1] ?? address;
}

function lunKey(l: { lun: number }): number {
  return l.lun;
}

export class Controller {
  #loaded: LoadedConfig;
  readonly #runtime: Runtime;
  readonly #dataDir: string;
  readonly #log: Logger;
  readonly #opts: ControllerOptions;
  readonly #offline = new Set<string>();
  readonly #started = Date.now();
  #systemState: 'ready' | 'offline' = 'ready';
  #queue: Promise<unknown> = Promise.resolve();
  /** The file's text as lunar last read or wrote it: a hand edit made since is not overwritten. */
  #onDisk: string | undefined;

  constructor(opts: ControllerOptions) {
    this.#loaded = opts.loaded;
    this.#onDisk = this.#readFile();
    this.#runtime = opts.runtime;
    this.#dataDir = opts.dataDir;
    this.#log = opts.log;
    this.#opts = opts;
  }

  get config(): LunarConfig {
    return this.#loaded.config;
  }
  get file(): string {
    return this.#loaded.file;
  }

  // ------------------------------------------------------------------ reads

  sessions(target?: string): SessionView[] {
    const tids = new Map(this.config.targets.map((t) => [t.name, t.tid]));
    return this.#runtime.server
      .sessions()
      .filter((s) => !s.discovery && (target === undefined || s.target === target))
      .map((s) => {
        const tid = tids.get(s.target);
        return {
          tsih: s.tsih,
          initiator: s.initiator,
          ...(s.initiatorAlias !== undefined ? { alias: s.initiatorAlias } : {}),
          target: s.target,
          ...(tid !== undefined ? { tid } : {}),
          address: hostOf(s.address),
          remote: s.address,
          portal: s.portal,
          cid: s.cid,
          isid: s.isid,
          headerDigest: s.headerDigest,
          dataDigest: s.dataDigest,
          ...(s.user !== undefined ? { user: s.user } : {}),
        };
      });
  }

  targets(): TargetView[] {
    return this.config.targets.map((t) => this.#view(t));
  }

  target(ref: string | number): TargetView {
    return this.#view(this.#find(ref).spec);
  }

  accounts(): { user: string; targets: { tid: number; name: string; outgoing: boolean }[] }[] {
    const out = new Map<string, { tid: number; name: string; outgoing: boolean }[]>();
    for (const a of this.config.accounts ?? []) out.set(a.user, []);
    for (const t of this.config.targets) {
      for (const u of t.chap?.users ?? [])
        out.get(u.user)?.push({ tid: t.tid ?? 0, name: t.name, outgoing: false });
      const m = t.chap?.mutual;
      if (m) out.get(m.user)?.push({ tid: t.tid ?? 0, name: t.name, outgoing: true });
    }
    return [...out].map(([user, targets]) => ({ user, targets }));
  }

  portals(): { listen: string; host: string; port: number; group: number; listening: boolean }[] {
    const live = this.#runtime.server.portals();
    const show = (h: string, p: number) => (h.includes(':') ? `[${h}]:${p}` : `${h}:${p}`);
    if (this.#opts.portalsOverridden) {
      return live.map((p) => ({
        listen: show(p.host, p.port),
        host: p.host,
        port: p.port,
        group: p.portalGroupTag,
        listening: true,
      }));
    }
    return this.config.portals.map((p) => ({
      listen: show(p.host, p.port),
      host: p.host,
      port: p.port,
      group: p.group,
      listening: live.some((l) => l.host === p.host && (l.port === p.port || p.port === 0)),
    }));
  }

  status(): Record<string, unknown> {
    return {
      pid: process.pid,
      version: this.#opts.version ?? 'unknown',
      uptimeSec: Math.round((Date.now() - this.#started) / 1000),
      state: this.#systemState,
      config: this.file,
      dataDir: this.#dataDir,
      portals: this.portals(),
      targets: this.config.targets.length,
      luns: this.config.targets.reduce((n, t) => n + t.luns.length, 0),
      sessions: this.sessions().length,
      // Read block cache: budget, use and hit counters (null when `cache: { size: 0 }`).
      cache: this.#runtime.cache?.stats() ?? null,
      // Busy polling after I/O: window, windows opened, hits/misses, whether it is polling now.
      busyPoll: busyPoll.stats(),
    };
  }

  /** Replicated resources of the daemon, for `lunar repl …` (routes /v1/replication/…). */
  get replication(): ReplicationContext {
    return {
      resources: this.#runtime.resources,
      sessionsUsing: (name) =>
        this.config.targets
          .filter((t) => resourcesOfTarget(t).includes(name))
          .flatMap((t) => this.sessions(t.name)),
    };
  }

  get systemState(): 'ready' | 'offline' {
    return this.#systemState;
  }

  // ------------------------------------------------------------------ target changes

  createTarget(req: {
    name: string;
    tid?: number;
    alias?: string;
    acl?: Partial<TargetSpec['acl']>;
  }): Promise<TargetView> {
    return this.#change(async () => {
      if (typeof req.name !== 'string' || !req.name)
        throw new ControlError(
          'invalid',
          'target',
          'a target needs a name (an iqn.YYYY-MM.reversed.domain:id)',
        );
      if (this.config.targets.some((t) => t.name.toLowerCase() === req.name.toLowerCase())) {
        throw new ControlError('exists', 'target', `target ${req.name} already exists`);
      }
      if (req.tid !== undefined) {
        if (!Number.isInteger(req.tid) || req.tid < 1)
          throw new ControlError('invalid', 'tid', `tid ${req.tid} must be a whole number ≥ 1`);
        const other = this.config.targets.find((t) => t.tid === req.tid);
        if (other)
          throw new ControlError('exists', 'target', `tid ${req.tid} is already used by ${other.name}`);
      }
      const tid = req.tid ?? Math.max(0, ...this.config.targets.map((t) => t.tid ?? 0)) + 1;
      const node: Record<string, unknown> = {
        tid,
        name: req.name,
        ...(req.alias !== undefined ? { alias: req.alias } : {}),
        acl: { initiators: req.acl?.initiators ?? 'ALL', addresses: req.acl?.addresses ?? [] },
        luns: [],
      };
      await this.#apply((doc) => {
        const seq = doc.getIn(['targets'], true);
        if (isSeq(seq)) {
          seq.flow = false;
          seq.add(doc.createNode(node));
        } else doc.setIn(['targets'], doc.createNode([node]));
      });
      return this.target(tid);
    });
  }

  deleteTarget(ref: string | number, opts: { force?: boolean } = {}): Promise<void> {
    return this.#change(async () => {
      const { spec, index } = this.#find(ref);
      const live = this.sessions(spec.name);
      if (live.length && !opts.force) {
        throw new ControlError(
          'busy',
          'target',
          `target ${spec.name} has ${live.length} session(s): ${live.map((s) => `${s.initiator} from ${s.address}`).join(', ')}; use force to drop them`,
          { sessions: live },
        );
      }
      await this.#apply((doc) => doc.deleteIn(['targets', index]), { force: true });
      this.#offline.delete(spec.name);
    });
  }

  updateTarget(ref: string | number, patch: TargetPatch): Promise<TargetView> {
    return this.#change(async () => {
      const { spec, index } = this.#find(ref);
      const params: Record<string, string> = { ...(spec.params ?? {}) };
      for (const [k, v] of Object.entries(patch.params ?? {})) {
        if (v === null) delete params[k];
        else params[k] = checkTargetParam(k, String(v));
      }
      if (patch.queueDepth !== undefined && patch.queueDepth !== null) {
        if (!Number.isInteger(patch.queueDepth) || patch.queueDepth < 1 || patch.queueDepth > 4096) {
          throw new ControlError('invalid', 'param', `queue depth ${patch.queueDepth} must be 1..4096`);
        }
      }
      if (patch.state !== undefined && patch.state !== 'ready' && patch.state !== 'offline') {
        throw new ControlError('invalid', 'state', `state "${String(patch.state)}" must be ready or offline`);
      }
      await this.#apply((doc) => {
        const at = ['targets', index];
        if (patch.alias !== undefined) {
          if (patch.alias === null) doc.deleteIn([...at, 'alias']);
          else doc.setIn([...at, 'alias'], patch.alias);
        }
        if (patch.params !== undefined) {
          if (Object.keys(params).length) doc.setIn([...at, 'params'], doc.createNode(params));
          else doc.deleteIn([...at, 'params']);
        }
        if (patch.redirect !== undefined) {
          if (patch.redirect === null) doc.deleteIn([...at, 'redirect']);
          else
            doc.setIn(
              [...at, 'redirect'],
              doc.createNode({ to: patch.redirect.to, permanent: patch.redirect.permanent ?? false }),
            );
        }
        if (patch.queueDepth !== undefined) {
          if (patch.queueDepth === null) doc.deleteIn([...at, 'queueDepth']);
          else doc.setIn([...at, 'queueDepth'], patch.queueDepth);
        }
      });
      if (patch.state === 'offline') this.#offline.add(spec.name);
      if (patch.state === 'ready') this.#offline.delete(spec.name);
      if (patch.state !== undefined) this.#runtime.setOffline(spec.name, patch.state === 'offline');
      return this.target(spec.name);
    });
  }

  setSystemState(state: 'ready' | 'offline'): void {
    if (state !== 'ready' && state !== 'offline')
      throw new ControlError('invalid', 'state', `state "${String(state)}" must be ready or offline`);
    this.#systemState = state;
    this.#runtime.setOffline(undefined, state === 'offline');
  }

  // ------------------------------------------------------------------ LUNs

  addLun(ref: string | number, req: NewLun): Promise<LunView> {
    return this.#change(async () => {
      const { spec, index } = this.#find(ref);
      if (!Number.isInteger(req.lun) || req.lun < 0 || req.lun > 16383) {
        throw new ControlError('invalid', 'lun', `LUN ${String(req.lun)} must be a whole number 0..16383`);
      }
      if (spec.luns.some((l) => l.lun === req.lun))
        throw new ControlError('exists', 'lun', `target ${spec.name} already has LUN ${req.lun}`);
      const backstore = req.backstore ?? 'file';
      const node: Record<string, unknown> = { lun: req.lun, backstore };
      if (backstore === 'file') {
        if (!req.path) throw new ControlError('invalid', 'path', 'a file LUN needs a path (backing store)');
        const full = isAbsolute(req.path) ? req.path : join(this.#dataDir, req.path);
        if (req.size === undefined && !existsSync(full)) {
          throw new ControlError(
            'invalid',
            'path',
            `backing store ${full} does not exist (give a size to create it)`,
          );
        }
        if (existsSync(full) && statSync(full).isDirectory())
          throw new ControlError('invalid', 'path', `backing store ${full} is a directory`);
        node['path'] = req.path;
      } else if (req.path) {
        throw new ControlError('invalid', 'path', `a ${backstore} LUN has no path`);
      }
      if (req.size !== undefined) {
        try {
          parseSize(req.size);
        } catch (err) {
          throw new ControlError('invalid', 'size', (err as Error).message);
        }
        node['size'] = req.size;
      } else if (backstore !== 'file') {
        throw new ControlError('invalid', 'size', `a ${backstore} LUN needs a size`);
      }
      for (const k of ['blockSize', ...LUN_CHANGEABLE] as const) {
        if (req[k] !== undefined) node[k] = req[k];
      }
      node['id'] = req.id ?? newLunId();
      await this.#apply((doc) => {
        const seq = doc.getIn(['targets', index, 'luns'], true);
        if (isSeq(seq)) {
          seq.flow = false;
          seq.add(doc.createNode(node));
        } else doc.setIn(['targets', index, 'luns'], doc.createNode([node]));
      });
      const view = this.target(spec.name).luns.find((l) => l.lun === req.lun);
      if (!view) throw new ControlError('internal', 'lun', 'LUN vanished after adding it');
      return view;
    });
  }

  deleteLun(ref: string | number, lun: number): Promise<void> {
    return this.#change(async () => {
      const { spec, index } = this.#find(ref);
      const li = spec.luns.findIndex((l) => l.lun === lun);
      if (li < 0) throw new ControlError('not_found', 'lun', `target ${spec.name} has no LUN ${lun}`);
      await this.#apply((doc) => doc.deleteIn(['targets', index, 'luns', li]));
    });
  }

  updateLun(ref: string | number, lun: number, patch: LunPatch): Promise<LunView> {
    return this.#change(async () => {
      const { spec, index } = this.#find(ref);
      const li = spec.luns.findIndex((l) => l.lun === lun);
      if (li < 0) throw new ControlError('not_found', 'lun', `target ${spec.name} has no LUN ${lun}`);
      const allowed: readonly string[] = LUN_CHANGEABLE;
      for (const k of Object.keys(patch)) {
        if (!allowed.includes(k))
          throw new ControlError(
            'invalid',
            'param',
            `LUN field "${k}" cannot be changed (changeable: ${allowed.join(', ')})`,
          );
      }
      await this.#apply((doc) => {
        for (const [k, v] of Object.entries(patch)) {
          if (v === undefined) continue;
          if (v === null) doc.deleteIn(['targets', index, 'luns', li, k]);
          else doc.setIn(['targets', index, 'luns', li, k], v);
        }
      });
      const view = this.target(spec.name).luns.find((l) => l.lun === lun);
      if (!view) throw new ControlError('internal', 'lun', 'LUN vanished after updating it');
      return view;
    });
  }

  // ------------------------------------------------------------------ ACL (tgtadm semantics)

  /**
   * Adds an address ("ALL", an IP or a CIDR) or an initiator name. A target made by the
   * control API starts with no address (nobody may log in, as with tgtd) and any initiator name.
   */
  bindAcl(ref: string | number, change: AclChange): Promise<TargetView> {
    return this.#change(async () => {
      const { spec, index } = this.#find(ref);
      const acl = this.#aclLists(spec);
      const dup = () =>
        new ControlError(
          'exists',
          'acl',
          `target ${spec.name} already has ACL entry ${change.address ?? change.initiator ?? ''}`,
        );
      if (change.address !== undefined) {
        if (acl.addresses.includes(change.address)) throw dup();
        acl.addresses.push(change.address);
      } else if (change.initiator !== undefined) {
        if (!change.initiator) throw new ControlError('invalid', 'acl', 'empty initiator name');
        if (acl.initiators.includes(change.initiator)) throw dup();
        acl.initiators.push(change.initiator);
      } else throw new ControlError('invalid', 'acl', 'bind needs an initiator address or an initiator name');
      await this.#setAcl(index, acl);
      return this.target(spec.name);
    });
  }

  unbindAcl(ref: string | number, change: AclChange): Promise<TargetView> {
    return this.#change(async () => {
      const { spec, index } = this.#find(ref);
      const acl = this.#aclLists(spec);
      const list =
        change.address !== undefined
          ? acl.addresses
          : change.initiator !== undefined
            ? acl.initiators
            : undefined;
      const value = change.address ?? change.initiator;
      if (!list || value === undefined)
        throw new ControlError('invalid', 'acl', 'unbind needs an initiator address or an initiator name');
      const i = list.indexOf(value);
      if (i < 0) throw new ControlError('not_found', 'acl', `target ${spec.name} has no ACL entry ${value}`);
      list.splice(i, 1);
      await this.#setAcl(index, acl);
      return this.target(spec.name);
    });
  }

  #aclLists(spec: TargetSpec): { addresses: string[]; initiators: string[] } {
    return {
      addresses: spec.acl.addresses === 'ALL' ? ['ALL'] : [...spec.acl.addresses],
      initiators: spec.acl.initiators === 'ALL' ? [] : [...spec.acl.initiators],
    };
  }

  async #setAcl(index: number, acl: { addresses: string[]; initiators: string[] }): Promise<void> {
    // An empty name list means any initiator (tgtadm's meaning); addresses keep their list.
    const addresses = acl.addresses.length === 1 && acl.addresses[0] === 'ALL' ? 'ALL' : acl.addresses;
    await this.#apply((doc) =>
      doc.setIn(
        ['targets', index, 'acl'],
        doc.createNode({ initiators: acl.initiators.length ? acl.initiators : 'ALL', addresses }),
      ),
    );
  }

  // ------------------------------------------------------------------ CHAP accounts

  createAccount(user: string, secret: string): Promise<void> {
    return this.#change(async () => {
      if (!user || !secret)
        throw new ControlError('invalid', 'account', 'an account needs a user and a password');
      if ((this.config.accounts ?? []).some((a) => a.user === user))
        throw new ControlError('exists', 'account', `account ${user} already exists`);
      await this.#apply((doc) => {
        const seq = doc.getIn(['accounts'], true);
        if (isSeq(seq)) {
          seq.flow = false;
          seq.add(doc.createNode({ user, secret }));
        } else doc.setIn(['accounts'], doc.createNode([{ user, secret }]));
      });
    });
  }

  deleteAccount(user: string): Promise<void> {
    return this.#change(async () => {
      const accounts = this.config.accounts ?? [];
      const ai = accounts.findIndex((a) => a.user === user);
      if (ai < 0) throw new ControlError('not_found', 'account', `no account ${user}`);
      await this.#apply((doc) => {
        // unbind it from every target first, then drop it
        this.config.targets.forEach((t, ti) => {
          this.#writeChap(doc, ti, t, (users, mutual) => ({
            users: users.filter((u) => u.user !== user),
            mutual: mutual?.user === user ? undefined : mutual,
          }));
        });
        doc.deleteIn(['accounts', ai]);
      });
    });
  }

  bindAccount(ref: string | number, user: string, outgoing = false): Promise<void> {
    return this.#change(async () => {
      const { spec, index } = this.#find(ref);
      const account = (this.config.accounts ?? []).find((a) => a.user === user);
      if (!account) throw new ControlError('not_found', 'account', `no account ${user}`);
      if (!outgoing && spec.chap?.users.some((u) => u.user === user))
        throw new ControlError('exists', 'account', `account ${user} is already bound to ${spec.name}`);
      await this.#apply((doc) =>
        this.#writeChap(doc, index, spec, (users, mutual) =>
          outgoing ? { users, mutual: { ...account } } : { users: [...users, { ...account }], mutual },
        ),
      );
    });
  }

  unbindAccount(ref: string | number, user: string): Promise<void> {
    return this.#change(async () => {
      const { spec, index } = this.#find(ref);
      const bound = spec.chap?.users.some((u) => u.user === user) || spec.chap?.mutual?.user === user;
      if (!bound)
        throw new ControlError('not_found', 'account', `account ${user} is not bound to ${spec.name}`);
      await this.#apply((doc) =>
        this.#writeChap(doc, index, spec, (users, mutual) => ({
          users: users.filter((u) => u.user !== user),
          mutual: mutual?.user === user ? undefined : mutual,
        })),
      );
    });
  }

  #writeChap(
    doc: Document,
    index: number,
    spec: TargetSpec,
    edit: (
      users: ChapUser[],
      mutual: ChapUser | undefined,
    ) => { users: ChapUser[]; mutual: ChapUser | undefined },
  ): void {
    const before = { users: [...(spec.chap?.users ?? [])], mutual: spec.chap?.mutual };
    const after = edit(before.users, before.mutual);
    if (JSON.stringify(after) === JSON.stringify(before)) return;
    if (!after.users.length && !after.mutual) doc.deleteIn(['targets', index, 'chap']);
    else
      doc.setIn(
        ['targets', index, 'chap'],
        doc.createNode({ users: after.users, ...(after.mutual ? { mutual: after.mutual } : {}) }),
      );
  }

  // ------------------------------------------------------------------ portals

  addPortal(listen: string, group = 1): Promise<void> {
    return this.#change(async () => {
      this.#portalsEditable();
      let hp: { host: string; port: number };
      try {
        hp = parseHostPort(listen);
      } catch (err) {
        throw new ControlError('invalid', 'portal', (err as Error).message);
      }
      if (this.config.portals.some((p) => p.host === hp.host && p.port === hp.port)) {
        throw new ControlError('exists', 'portal', `portal ${listen} already exists`);
      }
      await this.#apply((doc) => {
        const node = { listen, group };
        const seq = doc.getIn(['portals'], true);
        if (isSeq(seq)) {
          seq.flow = false;
          seq.add(doc.createNode(node));
        } else {
          // the file relied on the default portal: write it out, then the new one
          const current = this.config.portals.map((p) => ({
            listen: p.host.includes(':') ? `[${p.host}]:${p.port}` : `${p.host}:${p.port}`,
            group: p.group,
          }));
          doc.setIn(['portals'], doc.createNode([...current, node]));
        }
      });
    });
  }

  removePortal(listen: string): Promise<void> {
    return this.#change(async () => {
      this.#portalsEditable();
      let hp: { host: string; port: number };
      try {
        hp = parseHostPort(listen);
      } catch (err) {
        throw new ControlError('invalid', 'portal', (err as Error).message);
      }
      const i = this.config.portals.findIndex((p) => p.host === hp.host && p.port === hp.port);
      if (i < 0) throw new ControlError('not_found', 'portal', `no portal ${listen}`);
      if (this.config.portals.length === 1)
        throw new ControlError('invalid', 'portal', `${listen} is the last portal; add another first`);
      await this.#apply((doc) => {
        if (isSeq(doc.getIn(['portals'], true))) doc.deleteIn(['portals', i]);
      });
    });
  }

  #portalsEditable(): void {
    if (this.#opts.portalsOverridden)
      throw new ControlError(
        'unsupported',
        'portal',
        'portals were given with --listen; change them in the config file and restart without --listen',
      );
  }

  // ------------------------------------------------------------------ sessions and stop

  dropSession(tsih: number): void {
    if (!this.#runtime.server.dropSession(tsih))
      throw new ControlError('not_found', 'session', `no session ${tsih}`);
  }

  /** POST /stop: refuses while initiators are connected unless `force`. */
  stop(opts: { force?: boolean; timeoutMs?: number }): { sessions: SessionView[] } {
    const live = this.sessions();
    if (live.length && !opts.force) {
      throw new ControlError(
        'busy',
        'sessions',
        `initiators are still connected: ${live.map((s) => `${s.initiator} (${s.address}) on ${s.target}`).join(', ')}; use --force to log them out`,
        { sessions: live },
      );
    }
    const timeoutMs = opts.timeoutMs ?? 5000;
    setImmediate(() => this.#opts.onStop?.(timeoutMs));
    return { sessions: live };
  }

  // ------------------------------------------------------------------ internals

  #find(ref: string | number): { spec: TargetSpec; index: number } {
    const targets = this.config.targets;
    const asNumber = typeof ref === 'number' ? ref : /^[0-9]+$/.test(ref) ? Number(ref) : undefined;
    const index =
      asNumber !== undefined
        ? targets.findIndex((t) => t.tid === asNumber)
        : targets.findIndex((t) => t.name.toLowerCase() === String(ref).toLowerCase());
    const spec = targets[index];
    if (!spec)
      throw new ControlError(
        'not_found',
        'target',
        `no target ${asNumber !== undefined ? `with tid ${asNumber}` : String(ref)}`,
      );
    return { spec, index };
  }

  #view(t: TargetSpec): TargetView {
    const scsi = this.#runtime.scsiTarget(t.name);
    return {
      tid: t.tid ?? 0,
      name: t.name,
      ...(t.alias !== undefined ? { alias: t.alias } : {}),
      state: this.#offline.has(t.name) ? 'offline' : 'ready',
      acl: t.acl,
      accounts: [
        ...(t.chap?.users ?? []).map((u) => ({ user: u.user, outgoing: false })),
        ...(t.chap?.mutual ? [{ user: t.chap.mutual.user, outgoing: true }] : []),
      ],
      params: t.params ?? {},
      ...(t.redirect !== undefined ? { redirect: t.redirect } : {}),
      ...(t.queueDepth !== undefined ? { queueDepth: t.queueDepth } : {}),
      ...(t.portalGroups !== undefined ? { portalGroups: t.portalGroups } : {}),
      luns: [...t.luns]
        .sort((a, b) => lunKey(a) - lunKey(b))
        .map((l) => {
          const lu = scsi?.logicalUnit(l.lun);
          const bs = this.#runtime.backstores.get(`${t.name}/${l.lun}`);
          const bytes = bs ? Number(bs.blockCount) * bs.blockSize : (l.size ?? 0);
          return {
            ...l,
            bytes,
            online: lu ? lu.loaded : false,
            ...(bs instanceof CachedBackstore ? { cacheStats: bs.stats() } : {}),
          };
        }),
      sessions: this.sessions(t.name),
    };
  }

  /** Runs changes one at a time. */
  #change<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #readFile(): string | undefined {
    try {
      return readFileSync(this.#loaded.file, 'utf8');
    } catch {
      return undefined;
    }
  }

  /** Edits a copy of the document, validates it, applies it live, then saves it atomically. */
  async #apply(edit: (doc: Document) => void, opts: { force?: boolean } = {}): Promise<void> {
    const now = this.#readFile();
    if (this.#onDisk !== undefined && now !== undefined && now !== this.#onDisk) {
      throw new ControlError(
        'busy',
        'config',
        `${this.#loaded.file} was edited by hand while lunar runs; not overwriting it: restart lunar to load the edit (or undo it), then retry`,
      );
    }
    const doc = this.#loaded.document.clone();
    edit(doc);
    if (!isMap(doc.contents) && doc.contents !== null)
      throw new ControlError('internal', 'config', 'config document is not a map');
    const text = doc.toString();
    let next: LoadedConfig;
    try {
      next = parseConfig(text, this.#loaded.file);
    } catch (err) {
      if (err instanceof ConfigError)
        throw new ControlError('invalid', 'config', err.problems.join('; '), { problems: err.problems });
      throw err;
    }
    try {
      await this.#runtime.reconcile(this.#loaded.config, next.config, {
        ...(opts.force !== undefined ? { force: opts.force } : {}),
        portals: !this.#opts.portalsOverridden,
      });
    } catch (err) {
      if (err instanceof ControlError) throw err;
      throw new ControlError('invalid', 'runtime', (err as Error).message);
    }
    writeFileAtomic(this.#loaded.file, text);
    this.#onDisk = text;
    this.#loaded = next;
    this.#log.debug(`saved ${this.#loaded.file}`);
  }
}
