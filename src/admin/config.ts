/**
 * The lunar configuration file: YAML, validated by a JSON Schema (ajv), errors naming the file,
 * the line and the field. See docs/config.md for the format.
 *
 * Loading is pure apart from reading the file; saving is atomic (temp file, fsync, rename, fsync
 * of the directory) so a crash leaves the old or the new file, never a torn one.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { totalmem } from 'node:os';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { loadResourceConfig, parseResourceConfig, type ResourceConfig } from '../replication/config.js';
import { MAX_WINDOW_US } from '../net/busy-poll.js';
import { type Document, isMap, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';

export interface PortalSpec {
  readonly host: string;
  readonly port: number;
  readonly group: number;
}

export interface ChapUser {
  readonly user: string;
  readonly secret: string;
}

export interface LunSpec {
  readonly lun: number;
  readonly backstore: 'file' | 'memory' | 'null' | 'replicated';
  /** Replicated backstore: name of a resource of the `resources:` section. */
  readonly resource?: string;
  readonly path?: string;
  /** Bytes. */
  readonly size?: number;
  readonly blockSize: 512 | 4096;
  /** Physical block size reported to initiators (READ CAPACITY 16 LBPPB exponent); default = blockSize. */
  readonly physicalBlockSize?: number;
  readonly readOnly: boolean;
  readonly removable: boolean;
  readonly direct: boolean;
  readonly writeCache: boolean;
  /**
   * Reads go through the process's block cache (`cache:` section). Default: on for `file` LUNs
   * with `direct: true` when the cache is on; off otherwise (never on for replicated LUNs).
   * Always set by parseConfig; absent (hand-built specs) = off.
   */
  readonly cache?: boolean;
  /** 16 hex digits; generated when missing (see {@link ensureLunIds}). */
  readonly id?: string;
  readonly serial?: string;
  readonly vendor?: string;
  readonly product?: string;
  /** Free-form SCSI id shown by the tgtadm front end (tgt's scsi_id); the NAA comes from `id`. */
  readonly scsiId?: string;
}

export interface TargetSpec {
  /** Target id for the tgtadm front end (tgt's tid); generated and saved when missing. */
  readonly tid?: number;
  readonly name: string;
  readonly alias?: string;
  readonly portalGroups?: readonly number[];
  readonly acl: {
    readonly initiators: 'ALL' | readonly string[];
    readonly addresses: 'ALL' | readonly string[];
  };
  readonly chap?: { readonly users: readonly ChapUser[]; readonly mutual?: ChapUser };
  readonly params?: Readonly<Record<string, string>>;
  readonly redirect?: { readonly host: string; readonly port: number; readonly permanent: boolean };
  readonly queueDepth?: number;
  /** ALUA: access state per target port group (= portal group tag); explicit = SET TARGET PORT GROUPS. */
  readonly alua?: AluaSpec;
  readonly luns: readonly LunSpec[];
}

export type AluaStateSpec =
  'active-optimized' | 'active-non-optimized' | 'standby' | 'unavailable' | 'transitioning';

export interface AluaSpec {
  readonly groups?: Readonly<Record<string, AluaStateSpec>>;
  readonly explicit?: boolean;
}

/**
 * A replicated resource run by this daemon (docs/config.md, docs/replication.md): either a
 * reference to a resource file (`file:`) or the resource inline (same fields as the file).
 */
export interface ResourceRef {
  readonly name: string;
  /** Absolute path of the resource file, when the resource is not inline. */
  readonly file?: string;
  /** Inline resource object (relative disk paths resolve against the data directory). */
  readonly inline?: Readonly<Record<string, unknown>>;
  /** This daemon's node id in the resource (else --node, else the node whose address is local). */
  readonly node?: number;
  /** Block size of the resource (for the LUN). */
  readonly blockSize: number;
}

/** The process-wide read block cache (src/backstore/cache.ts). */
export interface CacheSpec {
  /** Byte budget shared by every cached LUN, whole 4 KiB pages; 0 = no cache. */
  readonly size: number;
}

export interface LunarConfig {
  readonly portals: readonly PortalSpec[];
  /** Read block cache; filled in by parseConfig (default {@link defaultCacheSize}). */
  readonly cache?: CacheSpec;
  /**
   * Busy polling after iSCSI I/O, in µs (src/net/busy-poll.ts); 0 = off. Filled in by parseConfig
   * (default {@link DEFAULT_BUSY_POLL_US}).
   */
  readonly busyPoll?: number;
  /** Replicated resources (DRBD-like) this daemon runs; LUNs use them with `backstore: replicated`. */
  readonly resources?: readonly ResourceRef[];
  readonly targets: readonly TargetSpec[];
  readonly discovery?: { readonly chap?: { readonly users: readonly ChapUser[] } };
  /** CHAP accounts (tgtadm's account list); a target uses the ones copied into its `chap`. */
  readonly accounts?: readonly ChapUser[];
}

export const DEFAULT_PORT = 3260;

/** Default busy-poll window (µs): covers a QD1 initiator's turnaround on loopback and a disk read. */
export const DEFAULT_BUSY_POLL_US = 100;

/** Block cache page size: sizes are rounded down to it. */
export const CACHE_PAGE = 4096;

/** Memory this process may use: the machine's, or the cgroup limit (a container) when lower. */
export function availableMemory(): number {
  const total = totalmem();
  const limit = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() : 0;
  return limit > 0 && limit < total ? limit : total;
}

/**
 * Default block cache budget: 1 GiB, or an eighth of the memory ({@link availableMemory}) when
 * that is less (a 2 GiB VM or container gets 256 MiB). The cache's arenas are allocated as it
 * fills, so an idle LUN costs nothing; the budget only bounds what a hot working set may take.
 */
export function defaultCacheSize(memory: number = availableMemory()): number {
  const bytes = Math.min(2 ** 30, Math.floor(memory / 8));
  return bytes - (bytes % CACHE_PAGE);
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

const IQN_RE =
  '^(iqn\\.[0-9]{4}-[0-9]{2}(\\.[a-z0-9-]+)+(:[^\\s]+)?|eui\\.[0-9A-Fa-f]{16}|naa\\.[0-9A-Fa-f]{16,32})$';
const SIZE_RE = '^[0-9]+(\\.[0-9]+)?\\s*([KMGTP](i?B)?|B)?$';
const chapUser = {
  type: 'object',
  additionalProperties: false,
  required: ['user', 'secret'],
  properties: {
    user: { type: 'string', minLength: 1, maxLength: 255, pattern: '^[^\\s=]+$' },
    secret: { type: 'string', minLength: 12, maxLength: 255 },
  },
} as const;

/** The JSON Schema of the file (before defaults are applied). */
export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    portals: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['listen'],
        properties: {
          listen: { type: 'string', minLength: 1 },
          group: { type: 'integer', minimum: 1, maximum: 65535 },
        },
      },
    },
    accounts: { type: 'array', items: chapUser },
    busyPoll: { type: 'integer', minimum: 0, maximum: MAX_WINDOW_US },
    cache: {
      type: 'object',
      additionalProperties: false,
      properties: {
        size: {
          anyOf: [
            { type: 'integer', minimum: 0 },
            { type: 'string', pattern: SIZE_RE },
          ],
        },
      },
    },
    resources: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          file: { type: 'string', minLength: 1 },
          node: { type: 'integer', minimum: 0, maximum: 3 },
        },
      },
    },
    discovery: {
      type: 'object',
      additionalProperties: false,
      properties: {
        chap: {
          type: 'object',
          additionalProperties: false,
          required: ['users'],
          properties: { users: { type: 'array', minItems: 1, items: chapUser } },
        },
      },
    },
    targets: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'luns'],
        properties: {
          tid: { type: 'integer', minimum: 1, maximum: 2147483647 },
          name: { type: 'string', maxLength: 223, pattern: IQN_RE },
          alias: { type: 'string', maxLength: 255 },
          portalGroups: {
            type: 'array',
            items: { type: 'integer', minimum: 1, maximum: 65535 },
            minItems: 1,
          },
          acl: {
            type: 'object',
            additionalProperties: false,
            properties: {
              initiators: {
                anyOf: [{ const: 'ALL' }, { type: 'array', items: { type: 'string', minLength: 1 } }],
              },
              addresses: {
                anyOf: [{ const: 'ALL' }, { type: 'array', items: { type: 'string', minLength: 1 } }],
              },
            },
          },
          chap: {
            type: 'object',
            additionalProperties: false,
            required: ['users'],
            properties: { users: { type: 'array', items: chapUser }, mutual: chapUser },
          },
          params: {
            type: 'object',
            additionalProperties: { type: ['string', 'number', 'boolean'] },
          },
          redirect: {
            type: 'object',
            additionalProperties: false,
            required: ['to'],
            properties: { to: { type: 'string', minLength: 1 }, permanent: { type: 'boolean' } },
          },
          queueDepth: { type: 'integer', minimum: 1, maximum: 4096 },
          alua: {
            type: 'object',
            additionalProperties: false,
            properties: {
              groups: {
                type: 'object',
                propertyNames: { pattern: '^[1-9][0-9]{0,4}$' },
                additionalProperties: {
                  enum: [
                    'active-optimized',
                    'active-non-optimized',
                    'standby',
                    'unavailable',
                    'transitioning',
                  ],
                },
              },
              explicit: { type: 'boolean' },
            },
          },
          luns: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['lun', 'backstore'],
              properties: {
                lun: { type: 'integer', minimum: 0, maximum: 16383 },
                backstore: { enum: ['file', 'memory', 'null', 'replicated'] },
                resource: { type: 'string', minLength: 1 },
                path: { type: 'string', minLength: 1 },
                size: {
                  anyOf: [
                    { type: 'integer', minimum: 1 },
                    { type: 'string', pattern: SIZE_RE },
                  ],
                },
                blockSize: { enum: [512, 4096] },
                physicalBlockSize: { enum: [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536] },
                readOnly: { type: 'boolean' },
                removable: { type: 'boolean' },
                direct: { type: 'boolean' },
                writeCache: { type: 'boolean' },
                cache: { type: 'boolean' },
                id: { type: 'string', pattern: '^[0-9a-fA-F]{16}$' },
                serial: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[\\x21-\\x7e]+$' },
                vendor: { type: 'string', minLength: 1, maxLength: 8, pattern: '^[\\x20-\\x7e]+$' },
                product: { type: 'string', minLength: 1, maxLength: 16, pattern: '^[\\x20-\\x7e]+$' },
                scsiId: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[\\x21-\\x7e]+$' },
              },
            },
          },
        },
      },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validate = ajv.compile(CONFIG_SCHEMA);

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  B: 1,
  K: 2 ** 10,
  M: 2 ** 20,
  G: 2 ** 30,
  T: 2 ** 40,
  P: 2 ** 50,
};

/** Parses `512`, `64M`, `1G`, `1.5GiB`, `2T` (binary units) into bytes; throws on anything else. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value <= 0)
      throw new Error(`size ${value} is not a positive whole number of bytes`);
    return value;
  }
  const m =
    /^([0-9]+(?:\.[0-9]+)?)\s*([KMGTP])?(?:i?B)?$/i.exec(value.trim()) ??
    /^([0-9]+)\s*B$/i.exec(value.trim());
  if (!m) throw new Error(`size "${value}" is not a size (examples: 4096, 64M, 1G, 2T)`);
  const bytes = Number(m[1]) * (UNITS[(m[2] ?? '').toUpperCase()] ?? 1);
  if (!Number.isSafeInteger(Math.round(bytes)) || bytes <= 0)
    throw new Error(`size "${value}" is out of range`);
  return Math.round(bytes);
}

/** Formats bytes the way parseSize reads them back (exact: 1G, 512M, 4096). */
export function formatSize(bytes: number): string {
  for (const [unit, mult] of [
    ['T', 2 ** 40],
    ['G', 2 ** 30],
    ['M', 2 ** 20],
    ['K', 2 ** 10],
  ] as const) {
    if (bytes >= mult && bytes % mult === 0) return `${bytes / mult}${unit}`;
  }
  return String(bytes);
}

/** Parses "host:port", "[v6]:port", "host" (default port). */
export function parseHostPort(text: string, defaultPort = DEFAULT_PORT): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  let host: string;
  let portText: string | undefined;
  if (v6) {
    host = v6[1] ?? '';
    portText = v6[2];
  } else {
    const idx = text.lastIndexOf(':');
    if (idx >= 0 && text.indexOf(':') === idx) {
      host = text.slice(0, idx);
      portText = text.slice(idx + 1);
    } else {
      host = text;
    }
  }
  if (!host) throw new Error(`"${text}" has no host (example: 127.0.0.1:3260, 0.0.0.0:3260, [::1]:3260)`);
  const port = portText === undefined ? defaultPort : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`"${text}": port must be 1..65535`);
  return { host, port };
}

interface Located {
  line(path: readonly (string | number)[]): number | undefined;
}

function locator(doc: Document, counter: LineCounter): Located {
  return {
    line(path) {
      for (let n = path.length; n >= 0; n--) {
        const node = n === 0 ? doc.contents : (doc.getIn(path.slice(0, n), true) as YamlNode | undefined);
        const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
        if (range) return counter.linePos(range[0]).line;
      }
      return undefined;
    },
  };
}

function pathOf(instancePath: string): (string | number)[] {
  if (!instancePath) return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((p) => (/^\d+$/.test(p) ? Number(p) : p));
}

function fieldName(path: readonly (string | number)[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out || '(top level)';
}

function describe(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return `unknown field "${String(p['additionalProperty'])}"`;
    case 'required':
      return `missing required field "${String(p['missingProperty'])}"`;
    case 'enum':
      return `must be one of ${(p['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'pattern':
      return `${e.message ?? 'has a bad format'}`;
    default:
      return e.message ?? e.keyword;
  }
}

export interface LoadedConfig {
  readonly config: LunarConfig;
  /** The parsed document, kept to write back changes with comments intact. */
  readonly document: Document;
  readonly file: string;
}

/** Parses and validates YAML text; `file` is used in messages only. */
export function parseConfig(text: string, file: string): LoadedConfig {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  const problems: string[] = [];
  for (const err of doc.errors) {
    const line = err.linePos?.[0]?.line ?? counter.linePos(err.pos[0]).line;
    problems.push(`${file}:${line}: YAML syntax: ${err.message.split('\n')[0]}`);
  }
  if (problems.length) throw new ConfigError(problems);
  const raw: unknown = doc.toJS() ?? {};
  // `backstore: null` is YAML's null, not the string: read it as the null backstore it names.
  for (const t of (raw as RawConfig).targets ?? []) {
    for (const l of Array.isArray(t?.luns) ? t.luns : []) {
      if (l && typeof l === 'object' && 'backstore' in l && l.backstore === null)
        (l as { backstore: string }).backstore = 'null';
    }
  }
  const where = locator(doc, counter);
  const at = (path: readonly (string | number)[]): string => `${file}:${where.line(path) ?? 1}`;
  if (!validate(raw)) {
    // anyOf produces one error per branch plus the anyOf itself: keep the most specific useful ones.
    const seen = new Set<string>();
    for (const e of validate.errors ?? []) {
      if (e.keyword === 'anyOf' || e.keyword === 'const') continue;
      const path = pathOf(e.instancePath);
      const msg = `${at(path)}: ${fieldName(path)}: ${describe(e)}`;
      if (!seen.has(msg)) {
        seen.add(msg);
        problems.push(msg);
      }
    }
    if (!problems.length) {
      for (const e of validate.errors ?? []) {
        const path = pathOf(e.instancePath);
        problems.push(`${at(path)}: ${fieldName(path)}: must be "ALL" or a list of strings`);
      }
    }
    throw new ConfigError([...new Set(problems)]);
  }
  const config = normalise(raw as RawConfig, at, problems, dirname(resolvePath(file)));
  if (problems.length) throw new ConfigError(problems);
  return { config, document: doc, file };
}

/** Reads and validates a config file. */
export function loadConfig(file: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError([
      code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot read: ${(err as Error).message}`,
    ]);
  }
  return parseConfig(text, file);
}

interface RawLun {
  lun: number;
  backstore: 'file' | 'memory' | 'null' | 'replicated';
  resource?: string;
  path?: string;
  size?: number | string;
  blockSize?: 512 | 4096;
  physicalBlockSize?: number;
  readOnly?: boolean;
  removable?: boolean;
  direct?: boolean;
  writeCache?: boolean;
  cache?: boolean;
  id?: string;
  serial?: string;
  vendor?: string;
  product?: string;
  scsiId?: string;
}
interface RawTarget {
  tid?: number;
  name: string;
  alias?: string;
  portalGroups?: number[];
  acl?: { initiators?: 'ALL' | string[]; addresses?: 'ALL' | string[] };
  chap?: { users: ChapUser[]; mutual?: ChapUser };
  params?: Record<string, string | number | boolean>;
  redirect?: { to: string; permanent?: boolean };
  queueDepth?: number;
  alua?: { groups?: Record<string, AluaStateSpec>; explicit?: boolean };
  luns: RawLun[];
}
interface RawConfig {
  busyPoll?: number;
  cache?: { size?: number | string };
  resources?: (Record<string, unknown> & { file?: string; node?: number })[];
  accounts?: ChapUser[];
  portals?: { listen: string; group?: number }[];
  discovery?: { chap?: { users: ChapUser[] } };
  targets?: RawTarget[];
}

/** Validates the `resources:` section (a referenced file is read and checked too). */
function normaliseResources(
  raw: RawConfig,
  at: (p: (string | number)[]) => string,
  problems: string[],
  baseDir: string,
): ResourceRef[] {
  const out: ResourceRef[] = [];
  (raw.resources ?? []).forEach((r, i) => {
    const where = `${at(['resources', i])}: resources[${i}]`;
    const { file, node, ...inline } = r;
    let cfg: ResourceConfig;
    let abs: string | undefined;
    try {
      if (file !== undefined) {
        if (Object.keys(inline).length > 0)
          throw new Error(
            `give either file: or the resource inline, not both (${Object.keys(inline).join(', ')})`,
          );
        abs = isAbsolute(file) ? file : resolvePath(baseDir, file);
        cfg = loadResourceConfig(abs);
      } else cfg = parseResourceConfig(inline, baseDir);
    } catch (err) {
      problems.push(`${where}: ${(err as Error).message}`);
      return;
    }
    if (node !== undefined && !cfg.nodes.some((n) => n.id === node))
      problems.push(`${where}.node: resource ${cfg.name} has no node ${node}`);
    if (out.some((o) => o.name === cfg.name))
      problems.push(`${where}: resource ${cfg.name} is defined twice`);
    out.push({
      name: cfg.name,
      ...(abs !== undefined ? { file: abs } : { inline }),
      ...(node !== undefined ? { node } : {}),
      blockSize: cfg.blockSize,
    });
  });
  return out;
}

function normalise(
  raw: RawConfig,
  at: (p: (string | number)[]) => string,
  problems: string[],
  baseDir = process.cwd(),
): LunarConfig {
  const resources = normaliseResources(raw, at, problems, baseDir);
  let cacheSize = defaultCacheSize();
  if (raw.cache?.size !== undefined) {
    const v = raw.cache.size;
    const where = `${at(['cache', 'size'])}: cache.size`;
    if (v === 0 || (typeof v === 'string' && /^0+(\.0+)?\s*([KMGTP](i?B)?|B)?$/i.test(v.trim())))
      cacheSize = 0;
    else {
      try {
        const bytes = parseSize(v);
        if (bytes < CACHE_PAGE)
          problems.push(
            `${where}: ${bytes} bytes is less than one ${CACHE_PAGE}-byte page (use 0 to turn the cache off)`,
          );
        cacheSize = bytes - (bytes % CACHE_PAGE);
      } catch (err) {
        problems.push(`${where}: ${(err as Error).message}`);
      }
    }
  }
  const portals: PortalSpec[] = [];
  const seenListen = new Set<string>();
  (raw.portals ?? [{ listen: `127.0.0.1:${DEFAULT_PORT}` }]).forEach((p, i) => {
    try {
      const { host, port } = parseHostPort(p.listen);
      const key = `${host}:${port}`;
      if (seenListen.has(key))
        problems.push(`${at(['portals', i, 'listen'])}: portals[${i}].listen: ${key} is listed twice`);
      seenListen.add(key);
      portals.push({ host, port, group: p.group ?? 1 });
    } catch (err) {
      problems.push(`${at(['portals', i, 'listen'])}: portals[${i}].listen: ${(err as Error).message}`);
    }
  });
  const groups = new Set(portals.map((p) => p.group));
  const names = new Set<string>();
  const tids = new Map<number, string>();
  const users = new Set<string>();
  (raw.accounts ?? []).forEach((a, i) => {
    if (users.has(a.user))
      problems.push(`${at(['accounts', i, 'user'])}: accounts[${i}].user: "${a.user}" is defined twice`);
    users.add(a.user);
  });
  const targets: TargetSpec[] = (raw.targets ?? []).map((t, ti) => {
    const tp = (...rest: (string | number)[]) => ['targets', ti, ...rest];
    if (names.has(t.name.toLowerCase()))
      problems.push(`${at(tp('name'))}: targets[${ti}].name: "${t.name}" is defined twice`);
    names.add(t.name.toLowerCase());
    if (t.tid !== undefined) {
      const other = tids.get(t.tid);
      if (other) problems.push(`${at(tp('tid'))}: targets[${ti}].tid: tid ${t.tid} is also used by ${other}`);
      tids.set(t.tid, t.name);
    }
    for (const g of t.portalGroups ?? []) {
      if (!groups.has(g))
        problems.push(`${at(tp('portalGroups'))}: targets[${ti}].portalGroups: no portal has group ${g}`);
    }
    for (const g of Object.keys(t.alua?.groups ?? {})) {
      if (!groups.has(Number(g)))
        problems.push(`${at(tp('alua', 'groups', g))}: targets[${ti}].alua.groups: no portal has group ${g}`);
    }
    for (const a of t.acl?.addresses === 'ALL' ? [] : (t.acl?.addresses ?? [])) {
      // A word with letters (a host name, an IQN given as an address) is kept, as tgtadm keeps
      // it, but never matches: lunar compares addresses. Digits-only garbage is an error.
      if (a !== 'ALL' && !isAddressPattern(a) && !(/[A-Za-z]/.test(a) && /^\S+$/.test(a)))
        problems.push(
          `${at(tp('acl', 'addresses'))}: targets[${ti}].acl.addresses: "${a}" is not an IP address or CIDR`,
        );
    }
    const lunNumbers = new Set<number>();
    const luns: LunSpec[] = t.luns.map((l, li) => {
      const lp = (f: string) => `${at(tp('luns', li, f))}: targets[${ti}].luns[${li}].${f}`;
      if (lunNumbers.has(l.lun)) problems.push(`${lp('lun')}: LUN ${l.lun} is defined twice`);
      lunNumbers.add(l.lun);
      let size: number | undefined;
      if (l.size !== undefined) {
        try {
          size = parseSize(l.size);
        } catch (err) {
          problems.push(`${lp('size')}: ${(err as Error).message}`);
        }
      }
      const res = l.backstore === 'replicated' ? resources.find((r) => r.name === l.resource) : undefined;
      if (l.backstore === 'replicated') {
        if (l.resource === undefined)
          problems.push(`${lp('resource')}: a replicated backstore needs a resource`);
        else if (res === undefined)
          problems.push(`${lp('resource')}: no resource "${l.resource}" in the resources: section`);
        if (l.size !== undefined)
          problems.push(`${lp('size')}: a replicated LUN has the size of its resource`);
        if (res !== undefined && l.blockSize !== undefined && l.blockSize !== res.blockSize)
          problems.push(`${lp('blockSize')}: resource ${res.name} has block size ${res.blockSize}`);
      } else if (l.resource !== undefined)
        problems.push(`${lp('resource')}: only a replicated backstore has a resource`);
      const blockSize = l.blockSize ?? (res?.blockSize as 512 | 4096 | undefined) ?? 512;
      if (l.physicalBlockSize !== undefined && l.physicalBlockSize < blockSize)
        problems.push(
          `${lp('physicalBlockSize')}: ${l.physicalBlockSize} is smaller than the block size ${blockSize}`,
        );
      if (size !== undefined && size % blockSize !== 0)
        problems.push(`${lp('size')}: ${size} bytes is not a multiple of the block size ${blockSize}`);
      if (l.backstore === 'file' && !l.path) problems.push(`${lp('path')}: a file backstore needs a path`);
      if (l.backstore !== 'file' && l.path) problems.push(`${lp('path')}: only a file backstore has a path`);
      if (
        l.backstore !== 'file' &&
        l.backstore !== 'replicated' &&
        size === undefined &&
        l.size === undefined
      )
        problems.push(`${lp('size')}: a ${l.backstore} backstore needs a size`);
      const direct = l.direct ?? true;
      if (l.cache === true && l.backstore === 'replicated')
        problems.push(
          `${lp('cache')}: replicated LUNs are not cached (reads must see the resource's disk, which a peer's resync or a promotion elsewhere changes)`,
        );
      else if (l.cache === true && cacheSize === 0)
        problems.push(`${lp('cache')}: the block cache is off (cache.size: 0 at the top level)`);
      return {
        lun: l.lun,
        backstore: l.backstore,
        ...(l.resource !== undefined ? { resource: l.resource } : {}),
        ...(l.path !== undefined ? { path: l.path } : {}),
        ...(size !== undefined ? { size } : {}),
        blockSize,
        ...(l.physicalBlockSize !== undefined ? { physicalBlockSize: l.physicalBlockSize } : {}),
        readOnly: l.readOnly ?? false,
        removable: l.removable ?? false,
        direct,
        writeCache: l.writeCache ?? true,
        cache: l.cache ?? (l.backstore === 'file' && direct && cacheSize > 0),
        ...(l.id !== undefined ? { id: l.id.toLowerCase() } : {}),
        ...(l.serial !== undefined ? { serial: l.serial } : {}),
        ...(l.vendor !== undefined ? { vendor: l.vendor } : {}),
        ...(l.product !== undefined ? { product: l.product } : {}),
        ...(l.scsiId !== undefined ? { scsiId: l.scsiId } : {}),
      };
    });
    let redirect: TargetSpec['redirect'];
    if (t.redirect) {
      try {
        const hp = parseHostPort(t.redirect.to);
        redirect = { ...hp, permanent: t.redirect.permanent ?? false };
      } catch (err) {
        problems.push(`${at(tp('redirect', 'to'))}: targets[${ti}].redirect.to: ${(err as Error).message}`);
      }
    }
    const params = t.params
      ? Object.fromEntries(
          Object.entries(t.params).map(([k, v]) => [
            k,
            typeof v === 'boolean' ? (v ? 'Yes' : 'No') : String(v),
          ]),
        )
      : undefined;
    return {
      ...(t.tid !== undefined ? { tid: t.tid } : {}),
      name: t.name,
      ...(t.alias !== undefined ? { alias: t.alias } : {}),
      ...(t.portalGroups !== undefined ? { portalGroups: t.portalGroups } : {}),
      acl: { initiators: t.acl?.initiators ?? 'ALL', addresses: t.acl?.addresses ?? 'ALL' },
      ...(t.chap !== undefined ? { chap: t.chap } : {}),
      ...(params !== undefined ? { params } : {}),
      ...(redirect !== undefined ? { redirect } : {}),
      ...(t.queueDepth !== undefined ? { queueDepth: t.queueDepth } : {}),
      ...(t.alua !== undefined
        ? {
            alua: {
              ...(t.alua.groups !== undefined ? { groups: { ...t.alua.groups } } : {}),
              ...(t.alua.explicit !== undefined ? { explicit: t.alua.explicit } : {}),
            },
          }
        : {}),
      luns,
    };
  });
  const ids = new Map<string, string>();
  targets.forEach((t, ti) =>
    t.luns.forEach((l, li) => {
      if (!l.id) return;
      const prev = ids.get(l.id);
      if (prev)
        problems.push(
          `${at(['targets', ti, 'luns', li, 'id'])}: targets[${ti}].luns[${li}].id: ${l.id} is also used by ${prev}`,
        );
      ids.set(l.id, `${t.name} LUN ${l.lun}`);
    }),
  );
  return {
    portals,
    cache: { size: cacheSize },
    busyPoll: raw.busyPoll ?? DEFAULT_BUSY_POLL_US,
    ...(resources.length > 0 ? { resources } : {}),
    targets,
    ...(raw.discovery?.chap ? { discovery: { chap: { users: raw.discovery.chap.users } } } : {}),
    ...(raw.accounts !== undefined ? { accounts: raw.accounts } : {}),
  };
}

function isAddressPattern(a: string): boolean {
  const [ip, bits, extra] = a.split('/');
  if (extra !== undefined || !ip) return false;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  const isV4 = v4 !== null && v4.slice(1).every((o) => Number(o) <= 255);
  const isV6 = !isV4 && /^[0-9a-fA-F:.]+$/.test(ip) && ip.includes(':');
  if (!isV4 && !isV6) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n <= (isV4 ? 32 : 128);
}

/** A fresh random LU id (16 hex digits). */
export function newLunId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * Gives every LUN without an `id` a new one, in the document too, so that saving keeps it.
 * Returns the new config and whether anything changed.
 */
export function ensureLunIds(loaded: LoadedConfig): { loaded: LoadedConfig; changed: boolean } {
  let changed = false;
  const targets = loaded.config.targets.map((t, ti) => ({
    ...t,
    luns: t.luns.map((l, li) => {
      if (l.id) return l;
      changed = true;
      const id = newLunId();
      const node = loaded.document.getIn(['targets', ti, 'luns', li], true);
      if (isMap(node)) node.set('id', id);
      return { ...l, id };
    }),
  }));
  return { loaded: { ...loaded, config: { ...loaded.config, targets } }, changed };
}

/** Gives every target without a `tid` the next free one (in the document too). */
export function ensureTids(loaded: LoadedConfig): { loaded: LoadedConfig; changed: boolean } {
  let changed = false;
  let next = Math.max(0, ...loaded.config.targets.map((t) => t.tid ?? 0)) + 1;
  const targets = loaded.config.targets.map((t, ti) => {
    if (t.tid !== undefined) return t;
    changed = true;
    const tid = next++;
    const node = loaded.document.getIn(['targets', ti], true);
    if (isMap(node)) {
      node.set('tid', tid);
      // keep `tid` first, next to the name, for readers of the file
      const item = node.items.pop();
      if (item) node.items.unshift(item);
    }
    return { tid, ...t };
  });
  return { loaded: { ...loaded, config: { ...loaded.config, targets } }, changed };
}

/** Writes `text` to `file` atomically: temp file in the same directory, fsync, rename, fsync dir. */
export function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  try {
    const dfd = openSync(dirname(file), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Directory fsync is best effort (not every filesystem allows opening a directory).
  }
}

/** Serialises the loaded document (comments preserved) back to its file. */
export function saveConfig(loaded: LoadedConfig): void {
  writeFileAtomic(loaded.file, loaded.document.toString());
}

/** The document of the default set-up: one target, LUN 0 on a sparse file in the data directory. */
export function defaultConfigText(opts: { iqn: string; listen: string; size: string; id: string }): string {
  return `# lunar configuration (see docs/config.md). Written by \`lunar serve\` on first start.
portals:
  - listen: ${opts.listen}        # use 0.0.0.0:3260 to serve the network
    group: 1
targets:
  - name: ${opts.iqn}
    acl:
      initiators: ALL
      addresses: ALL
    luns:
      - lun: 0
        backstore: file
        path: disk0.img
        size: ${opts.size}
        blockSize: 512
        id: ${opts.id}
`;
}
