/**
 * Resource configuration (one replicated volume on 2–3 nodes), loaded from JSON or YAML and
 * validated with messages that name the field. Documented in docs/replication.md.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { PROTOCOLS, type Protocol, type QuorumSetting } from './states.js';
import {
  AFTER_SB_0PRI,
  AFTER_SB_1PRI,
  AFTER_SB_2PRI,
  type AfterSb0pri,
  type AfterSb1pri,
  type AfterSb2pri,
} from './uuid.js';

export interface NodeConfig {
  readonly id: number;
  readonly name: string;
  /** host:port for replication traffic. */
  readonly address: string;
  /** Backing file path, or 'none' for a diskless (tiebreaker) node. */
  readonly disk: string;
  /** 'internal' (sidecar file `<disk>.md`) or a path. */
  readonly metaDisk: string;
  /** Control socket path (unix). Default `<disk>.ctl`, or /tmp/lunar-<res>-<id>.ctl when diskless. */
  readonly control: string;
}

export const FENCING = ['dont-care', 'resource-only', 'resource-and-stonith'] as const;
export type Fencing = (typeof FENCING)[number];
export const ON_NO_QUORUM = ['suspend-io', 'io-error'] as const;
export type OnNoQuorum = (typeof ON_NO_QUORUM)[number];
export const VERIFY_ALGS = ['sha256', 'sha1', 'md5', 'crc32c'] as const;
export type VerifyAlg = (typeof VERIFY_ALGS)[number];

export interface NetConfig {
  readonly protocol: Protocol;
  readonly pingIntMs: number;
  readonly pingTimeoutMs: number;
  /** A peer that leaves a write unacknowledged for timeoutMs × koCount is dropped. */
  readonly timeoutMs: number;
  readonly koCount: number;
  readonly connectIntMs: number;
  readonly afterSb0pri: AfterSb0pri;
  readonly afterSb1pri: AfterSb1pri;
  readonly afterSb2pri: AfterSb2pri;
  /** Checksum-based resync (csums-alg): digest first, data only when it differs. */
  readonly csums: boolean;
  readonly verifyAlg: VerifyAlg;
  /** Largest frame accepted (bytes). */
  readonly maxFrame: number;
}

export interface DiskConfig {
  /** Resync rate limit in KiB/s (0 = unlimited). */
  readonly resyncRateKiB: number;
  readonly alExtents: number;
  /** O_DIRECT on the backing file. */
  readonly direct: boolean;
  /** Bytes per resync request. */
  readonly resyncChunk: number;
}

export interface ResourceConfig {
  readonly name: string;
  readonly cluster: string;
  readonly secret: string;
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly nodes: readonly NodeConfig[];
  readonly net: NetConfig;
  readonly disk: DiskConfig;
  readonly quorum: QuorumSetting;
  readonly onNoQuorum: OnNoQuorum;
  readonly fencing: Fencing;
  /** Shell command run as the fence-peer handler (env LUNAR_RESOURCE, LUNAR_PEER_ID, LUNAR_PEER_ADDRESS). */
  readonly fencePeer: string | null;
}

export const DEFAULT_NET: NetConfig = {
  protocol: 'C',
  pingIntMs: 10_000,
  pingTimeoutMs: 5_000,
  timeoutMs: 6_000,
  koCount: 7,
  connectIntMs: 1_000,
  afterSb0pri: 'disconnect',
  afterSb1pri: 'disconnect',
  afterSb2pri: 'disconnect',
  csums: false,
  verifyAlg: 'sha256',
  maxFrame: 16 * 1024 * 1024 + 64 * 1024,
};

export const DEFAULT_DISK: DiskConfig = {
  resyncRateKiB: 0,
  alExtents: 127,
  direct: false,
  resyncChunk: 1024 * 1024,
};

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Obj = Record<string, unknown>;

function obj(v: unknown, where: string): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new ConfigError(`${where}: must be an object`);
  return v as Obj;
}
function str(o: Obj, k: string, where: string, def?: string): string {
  const v = o[k];
  if (v === undefined && def !== undefined) return def;
  if (typeof v !== 'string' || v.length === 0)
    throw new ConfigError(`${where}.${k}: must be a non-empty string`);
  return v;
}
function num(
  o: Obj,
  k: string,
  where: string,
  def: number | undefined,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const v = o[k];
  if (v === undefined && def !== undefined) return def;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new ConfigError(`${where}.${k}: must be an integer in [${min}, ${max}] (got ${String(v)})`);
  }
  return v;
}
function oneOf<T extends string>(o: Obj, k: string, where: string, allowed: readonly T[], def: T): T {
  const v = o[k];
  if (v === undefined) return def;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new ConfigError(`${where}.${k}: must be one of ${allowed.join(', ')} (got ${String(v)})`);
  }
  return v as T;
}
function bool(o: Obj, k: string, where: string, def: boolean): boolean {
  const v = o[k];
  if (v === undefined) return def;
  if (typeof v !== 'boolean') throw new ConfigError(`${where}.${k}: must be true or false`);
  return v;
}

/** Parses a size like 1073741824, "64M", "1G", "512K". */
export function parseSize(v: unknown, where: string): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return v;
  if (typeof v === 'string') {
    const m = /^(\d+)\s*([KMGT]i?B?)?$/i.exec(v.trim());
    if (m !== null) {
      const unit = (m[2] ?? '').charAt(0).toUpperCase();
      const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[unit] ?? 1;
      return Number(m[1]) * mult;
    }
  }
  throw new ConfigError(`${where}: must be a size in bytes or like "64M" (got ${String(v)})`);
}

/** Validates a parsed config object; relative paths resolve against `baseDir`. */
export function parseResourceConfig(raw: unknown, baseDir = process.cwd()): ResourceConfig {
  const r = obj(raw, 'resource');
  const name = str(r, 'name', 'resource');
  const blockSize = num(r, 'blockSize', 'resource', 4096, 512, 4096);
  if (blockSize !== 512 && blockSize !== 4096)
    throw new ConfigError('resource.blockSize: must be 512 or 4096');
  const sizeBytes = parseSize(r['size'], 'resource.size');
  if (sizeBytes % 4096 !== 0) throw new ConfigError('resource.size: must be a multiple of 4096');
  const nodesRaw = r['nodes'];
  if (!Array.isArray(nodesRaw) || nodesRaw.length < 1 || nodesRaw.length > 3) {
    throw new ConfigError('resource.nodes: must list 1 to 3 nodes');
  }
  const nodes = nodesRaw.map((n, i): NodeConfig => {
    const w = `resource.nodes[${i}]`;
    const o = obj(n, w);
    const id = num(o, 'id', w, undefined, 0, 3);
    const address = str(o, 'address', w);
    if (!/^[^:]+:\d+$/.test(address))
      throw new ConfigError(`${w}.address: must be host:port (got ${address})`);
    const diskRaw = str(o, 'disk', w);
    const disk = diskRaw === 'none' ? 'none' : resolve(baseDir, diskRaw);
    const metaRaw = str(o, 'metaDisk', w, 'internal');
    const metaDisk = metaRaw === 'internal' ? 'internal' : resolve(baseDir, metaRaw);
    const control = str(o, 'control', w, disk === 'none' ? `/tmp/lunar-${name}-${id}.ctl` : `${disk}.ctl`);
    return {
      id,
      name: str(o, 'name', w, `node${id}`),
      address,
      disk,
      metaDisk,
      control: resolve(baseDir, control),
    };
  });
  const ids = new Set(nodes.map((n) => n.id));
  if (ids.size !== nodes.length) throw new ConfigError('resource.nodes: node ids must be unique');
  const netRaw = obj(r['net'] ?? {}, 'resource.net');
  const W = 'resource.net';
  const net: NetConfig = {
    protocol: oneOf(netRaw, 'protocol', W, PROTOCOLS, DEFAULT_NET.protocol),
    pingIntMs: num(netRaw, 'pingIntMs', W, DEFAULT_NET.pingIntMs, 10),
    pingTimeoutMs: num(netRaw, 'pingTimeoutMs', W, DEFAULT_NET.pingTimeoutMs, 10),
    timeoutMs: num(netRaw, 'timeoutMs', W, DEFAULT_NET.timeoutMs, 10),
    koCount: num(netRaw, 'koCount', W, DEFAULT_NET.koCount, 1),
    connectIntMs: num(netRaw, 'connectIntMs', W, DEFAULT_NET.connectIntMs, 10),
    afterSb0pri: oneOf(netRaw, 'afterSb0pri', W, AFTER_SB_0PRI, DEFAULT_NET.afterSb0pri),
    afterSb1pri: oneOf(netRaw, 'afterSb1pri', W, AFTER_SB_1PRI, DEFAULT_NET.afterSb1pri),
    afterSb2pri: oneOf(netRaw, 'afterSb2pri', W, AFTER_SB_2PRI, DEFAULT_NET.afterSb2pri),
    csums: bool(netRaw, 'csums', W, DEFAULT_NET.csums),
    verifyAlg: oneOf(netRaw, 'verifyAlg', W, VERIFY_ALGS, DEFAULT_NET.verifyAlg),
    maxFrame: num(netRaw, 'maxFrame', W, DEFAULT_NET.maxFrame, 1024 * 1024),
  };
  const diskRaw = obj(r['disk'] ?? {}, 'resource.disk');
  const D = 'resource.disk';
  const disk: DiskConfig = {
    resyncRateKiB: num(diskRaw, 'resyncRateKiB', D, DEFAULT_DISK.resyncRateKiB, 0),
    alExtents: num(diskRaw, 'alExtents', D, DEFAULT_DISK.alExtents, 7, 1020),
    direct: bool(diskRaw, 'direct', D, DEFAULT_DISK.direct),
    resyncChunk: num(diskRaw, 'resyncChunk', D, DEFAULT_DISK.resyncChunk, 4096, 4 * 1024 * 1024),
  };
  if (disk.resyncChunk % 4096 !== 0) throw new ConfigError(`${D}.resyncChunk: must be a multiple of 4096`);
  const quorum = oneOf(r, 'quorum', 'resource', ['off', 'majority'] as const, 'off');
  const onNoQuorum = oneOf(r, 'onNoQuorum', 'resource', ON_NO_QUORUM, 'suspend-io');
  const fencing = oneOf(r, 'fencing', 'resource', FENCING, 'dont-care');
  const fencePeer = r['fencePeer'] === undefined ? null : str(r, 'fencePeer', 'resource');
  if (fencing !== 'dont-care' && fencePeer === null) {
    throw new ConfigError(`resource.fencePeer: required with fencing ${fencing}`);
  }
  return {
    name,
    cluster: str(r, 'cluster', 'resource', 'lunar'),
    secret: str(r, 'secret', 'resource'),
    sizeBytes,
    blockSize,
    nodes,
    net,
    disk,
    quorum,
    onNoQuorum,
    fencing,
    fencePeer,
  };
}

/** Loads a resource file (.json, or YAML for anything else). */
export function loadResourceConfig(path: string): ResourceConfig {
  const text = readFileSync(path, 'utf8');
  let raw: unknown;
  try {
    raw = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new ConfigError(`${path}: ${(e as Error).message}`);
  }
  return parseResourceConfig(raw, dirname(resolve(path)));
}

export function metaPath(n: NodeConfig): string {
  return n.metaDisk === 'internal' ? `${n.disk}.md` : n.metaDisk;
}
