/**
 * Builds a running target from a validated config: backstores, SCSI targets, the iSCSI server.
 * The only place that knows all three layers; each layer stays ignorant of the others.
 */
import { isIP } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { CachedBackstore, openBackstore, PageCache } from '../backstore/index.js';
import type { Backstore } from '../backstore/types.js';
import { IscsiServer, type IscsiServerConfig, type IscsiTargetConfig } from '../iscsi/index.js';
import { type AluaStateName, toAluaState } from '../scsi/alua.js';
import { createScsiTarget, type LogicalUnitConfig, type LunarScsiTarget } from '../scsi/index.js';
import { FileAtomicJournal } from '../scsi/atomic.js';
import { FilePrStore } from '../scsi/pr-store.js';
import { ReplicatedBackstore } from '../replication/backstore.js';
import type { Logger } from '../util/log.js';
import { busyPoll } from '../net/busy-poll.js';
import {
  availableMemory,
  DEFAULT_BUSY_POLL_US,
  defaultCacheSize,
  formatSize,
  type LunarConfig,
  type LunSpec,
  type TargetSpec,
} from './config.js';
import { openResources, type ResourceHandle, resourcesOfTarget } from './replication.js';

/** Fields whose change needs the backing store reopened. */
const BACKSTORE_FIELDS = ['backstore', 'path', 'size', 'blockSize', 'readOnly', 'direct', 'cache'] as const;

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

interface SessionEvent {
  readonly tsih?: number;
  readonly initiator?: string;
  readonly address?: string;
  readonly target?: string;
  readonly discovery?: boolean;
  readonly headerDigest?: string;
  readonly dataDigest?: string;
  readonly reason?: string;
}

function describeSession(s: SessionEvent): string {
  const what = s.discovery ? 'discovery' : (s.target ?? '?');
  const digests = s.headerDigest && s.headerDigest !== 'None' ? ` hd=${s.headerDigest}` : '';
  const dd = s.dataDigest && s.dataDigest !== 'None' ? ` dd=${s.dataDigest}` : '';
  return `${s.initiator ?? '?'} from ${s.address ?? '?'} -> ${what} tsih ${s.tsih ?? '?'}${digests}${dd}`;
}

export interface Runtime {
  readonly server: IscsiServer;
  readonly backstores: ReadonlyMap<string, Backstore>;
  stop(opts?: { logoutTimeoutMs?: number }): Promise<void>;
  /**
   * Applies the difference between two configs to the running server: targets added/removed,
   * LUNs added/removed/changed (REPORTED LUNS DATA HAS CHANGED via the SCSI target), target
   * settings (ACL, CHAP, params, redirect), portals. `force` drops sessions of removed targets.
   */
  reconcile(from: LunarConfig, to: LunarConfig, opts?: { force?: boolean; portals?: boolean }): Promise<void>;
  /** The SCSI target of a target name (status output). */
  scsiTarget(name: string): LunarScsiTarget | undefined;
  /**
   * Takes a target (or, with `name` undefined, the whole system) offline: new logins are refused
   * (its ACL admits nobody); sessions already in stay. Kept in memory (tgtadm's state), not saved.
   */
  setOffline(name: string | undefined, offline: boolean): void;
  /** Replicated resources this daemon runs (`resources:` in the config), by name. */
  readonly resources: ReadonlyMap<string, ResourceHandle>;
  /** The read block cache shared by the cached LUNs (absent with `cache: { size: 0 }`). */
  readonly cache?: PageCache;
}

export interface RuntimeOptions {
  /** This node's id in every replicated resource (`lunar serve --node`). */
  readonly nodeId?: number;
}

/**
 * Opens a LUN's backstore; with `spec.cache` and a block cache, its reads go through the cache
 * (never for replicated LUNs: see docs/config.md).
 */
export async function openLun(
  spec: LunSpec,
  dataDir: string,
  resources?: ReadonlyMap<string, ResourceHandle>,
  cache?: PageCache,
): Promise<Backstore> {
  if (spec.backstore === 'replicated' || spec.cache !== true || cache === undefined)
    return openPlainLun(spec, dataDir, resources);
  return new CachedBackstore(await openPlainLun(spec, dataDir, resources), cache);
}

async function openPlainLun(
  spec: LunSpec,
  dataDir: string,
  resources?: ReadonlyMap<string, ResourceHandle>,
): Promise<Backstore> {
  switch (spec.backstore) {
    case 'replicated': {
      const h = resources?.get(spec.resource ?? '');
      if (h === undefined)
        throw new Error(`LUN ${spec.lun}: resource ${spec.resource ?? '?'} is not running`);
      return new ReplicatedBackstore(h.resource);
    }
    case 'file': {
      const path = isAbsolute(spec.path ?? '') ? (spec.path as string) : join(dataDir, spec.path ?? '');
      return openBackstore({
        kind: 'file',
        path,
        blockSize: spec.blockSize,
        readOnly: spec.readOnly,
        direct: spec.direct,
        create: true,
        ...(spec.size !== undefined ? { size: spec.size } : {}),
      });
    }
    case 'memory':
      return openBackstore({ kind: 'memory', size: spec.size ?? 0, blockSize: spec.blockSize });
    case 'null':
      return openBackstore({ kind: 'null', size: spec.size ?? 0, blockSize: spec.blockSize });
  }
}

/**
 * WRITE ATOMIC(16) journal of a persistent LU (DATA/journal/<lu-id>.wal); a record left by a crash
 * is replayed here, before the LU is served.
 */
async function atomicJournal(
  l: LunSpec,
  bs: Backstore,
  dataDir: string,
): Promise<FileAtomicJournal | undefined> {
  if (!bs.capabilities.persistent || bs.capabilities.readOnly || !l.id) return undefined;
  // A node-local journal cannot follow a replicated LUN to the other node: not used there.
  if (bs.kind === 'replicated') return undefined;
  const j = new FileAtomicJournal(join(dataDir, 'journal'), l.id);
  await j.recover(bs);
  return j;
}

function luConfig(l: LunSpec, bs: Backstore, journal?: FileAtomicJournal): LogicalUnitConfig {
  return {
    ...(journal ? { atomicJournal: journal } : {}),
    lun: l.lun,
    backstore: bs,
    id: l.id ?? '',
    readOnly: l.readOnly,
    removable: l.removable,
    writeCache: l.writeCache,
    ...(l.physicalBlockSize !== undefined ? { physicalBlockSize: l.physicalBlockSize } : {}),
    ...(l.serial !== undefined ? { serial: l.serial } : {}),
    ...(l.vendor !== undefined ? { vendor: l.vendor } : {}),
    ...(l.product !== undefined ? { product: l.product } : {}),
  };
}

/**
 * Target ports of a target as the iSCSI server numbers them: the portal groups exposing it,
 * sorted, relative target port id = 1-based index (see IscsiServer.loginComplete).
 */
function targetPorts(t: TargetSpec, portals: readonly { group: number }[]) {
  const tags = [...new Set(portals.map((p) => p.group))]
    .filter((g) => !t.portalGroups || t.portalGroups.length === 0 || t.portalGroups.includes(g))
    .sort((a, b) => a - b);
  return tags.map((portalGroupTag, i) => ({ relativeTargetPortId: i + 1, portalGroupTag }));
}

async function buildTarget(
  t: TargetSpec,
  dataDir: string,
  opened: Map<string, Backstore>,
  portals: readonly { group: number }[] = [],
  resources?: ReadonlyMap<string, ResourceHandle>,
  cache?: PageCache,
): Promise<IscsiTargetConfig> {
  const luns = [];
  for (const l of t.luns) {
    const bs = await openLun(l, dataDir, resources, cache);
    opened.set(`${t.name}/${l.lun}`, bs);
    luns.push(luConfig(l, bs, await atomicJournal(l, bs, dataDir)));
  }
  const alua = t.alua;
  const scsi = createScsiTarget({
    name: t.name,
    luns,
    // APTPL persistent reservations: DATA/pr/<lu-id>.json
    prStore: new FilePrStore(join(dataDir, 'pr')),
    ports: targetPorts(t, portals),
    ...(alua !== undefined
      ? {
          alua: {
            ...(alua.groups !== undefined
              ? { groups: Object.fromEntries(Object.entries(alua.groups).map(([g, st]) => [Number(g), st])) }
              : {}),
            ...(alua.explicit !== undefined ? { explicit: alua.explicit } : {}),
          },
        }
      : {}),
  });
  return iscsiTargetConfig(t, scsi);
}

function iscsiTargetConfig(t: TargetSpec, scsi: LunarScsiTarget): IscsiTargetConfig {
  return {
    name: t.name,
    ...(t.alias !== undefined ? { alias: t.alias } : {}),
    scsi,
    ...(t.portalGroups !== undefined ? { portalGroupTags: [...t.portalGroups] } : {}),
    acl: {
      initiators: t.acl.initiators === 'ALL' ? 'ALL' : [...t.acl.initiators],
      // tgtadm's "bind -I ALL" next to single addresses: ALL wins
      // host names (accepted as tgtadm does) never match an initiator's address: left out
      addresses:
        t.acl.addresses === 'ALL' || t.acl.addresses.includes('ALL')
          ? 'ALL'
          : t.acl.addresses.filter((a) => isIP(a.split('/')[0] ?? '') !== 0),
    },
    ...(t.chap !== undefined
      ? {
          chap: {
            users: t.chap.users.map((u) => ({ ...u })),
            ...(t.chap.mutual ? { mutual: { ...t.chap.mutual } } : {}),
          },
        }
      : {}),
    ...(t.redirect !== undefined ? { redirect: { ...t.redirect } } : {}),
    ...(t.params !== undefined ? { params: { ...t.params } } : {}),
    ...(t.queueDepth !== undefined ? { queueDepth: t.queueDepth } : {}),
  };
}

/** Opens every backstore and starts listening. On failure, closes what it opened. */
export async function startRuntime(
  config: LunarConfig,
  dataDir: string,
  log: Logger,
  ropts: RuntimeOptions = {},
): Promise<Runtime> {
  const opened = new Map<string, Backstore>();
  // One block cache for the whole process (a global budget, as the kernel's page cache).
  const cacheSize = config.cache?.size ?? defaultCacheSize();
  const pageCache = cacheSize > 0 ? new PageCache({ bytes: cacheSize }) : undefined;
  busyPoll.windowUs = config.busyPoll ?? DEFAULT_BUSY_POLL_US;
  const resources = await openResources(config, dataDir, log, ropts.nodeId);
  const closeAll = async () => {
    await Promise.allSettled([...opened.values()].map((b) => b.close()));
    for (const h of resources.values()) await h.resource.down().catch(() => undefined);
  };
  let server: IscsiServer;
  const scsiTargets = new Map<string, LunarScsiTarget>();
  const specs = new Map(config.targets.map((t) => [t.name, t]));
  const offline = new Set<string>();
  let systemOffline = false;
  /**
   * A target exporting a replicated resource is offered only while that resource is Primary here
   * (as tgtd on DRBD: the target runs where the device is Primary). Otherwise it is hidden from
   * SendTargets and logins are refused, like an offline target.
   */
  const notPrimary = (t: TargetSpec): boolean =>
    resourcesOfTarget(t).some((n) => resources.get(n)?.resource.role !== 'Primary');
  /** The iSCSI settings of a target as they apply now (offline: nobody may log in). */
  const effective = (t: TargetSpec, scsi: LunarScsiTarget): IscsiTargetConfig => {
    const cfg = iscsiTargetConfig(t, scsi);
    return systemOffline || offline.has(t.name) || notPrimary(t)
      ? { ...cfg, acl: { initiators: [], addresses: [] } }
      : cfg;
  };
  try {
    const targets: IscsiTargetConfig[] = [];
    for (const t of config.targets) {
      const built = await buildTarget(t, dataDir, opened, config.portals, resources, pageCache);
      scsiTargets.set(t.name, built.scsi as LunarScsiTarget);
      targets.push(notPrimary(t) ? effective(t, built.scsi as LunarScsiTarget) : built);
    }
    const cfg: IscsiServerConfig = {
      portals: config.portals.map((p) => ({ host: p.host, port: p.port, portalGroupTag: p.group })),
      targets,
      ...(config.discovery?.chap
        ? { discoveryChap: { users: config.discovery.chap.users.map((u) => ({ ...u })) } }
        : {}),
    };
    server = new IscsiServer(cfg);
    server.on('session-up', (s: SessionEvent) => log.info(`session up: ${describeSession(s)}`));
    server.on('session-down', (s: SessionEvent) =>
      log.info(`session down: ${describeSession(s)}${s.reason ? ` (${s.reason})` : ''}`),
    );
    server.on('login-failed', (s: unknown) => log.warn({ login: s }, 'login refused'));
    await server.start();
  } catch (err) {
    await closeAll();
    throw err;
  }
  // Role changes of a resource show or hide the targets exporting it.
  const primaryNow = new Map<string, boolean>();
  for (const [name, h] of resources) {
    primaryNow.set(name, h.resource.role === 'Primary');
    h.resource.on('event', () => {
      const p = h.resource.role === 'Primary';
      if (primaryNow.get(name) === p) return;
      primaryNow.set(name, p);
      for (const [n, t] of specs) {
        if (!resourcesOfTarget(t).includes(name)) continue;
        const scsi = scsiTargets.get(n);
        if (scsi === undefined) continue;
        server.updateTarget(effective(t, scsi));
        log.info(`target ${n}: resource ${name} is ${h.resource.role}: ${p ? 'offered' : 'hidden'}`);
        if (!p) for (const s of server.sessions()) if (s.target === n) server.dropSession(s.tsih);
      }
    });
  }
  if (pageCache && pageCache.capacityBytes > availableMemory() / 2)
    log.warn(
      `block cache: cache.size ${formatSize(pageCache.capacityBytes)} is more than half of this machine's memory (${formatSize(availableMemory())}); it is taken as the cache fills`,
    );
  const cachedLuns = [...opened.values()].filter((b) => b instanceof CachedBackstore).length;
  log.info(
    pageCache
      ? `block cache: ${formatSize(pageCache.capacityBytes)} for ${cachedLuns} LUN(s), allocated as it fills`
      : 'block cache: off',
  );
  log.info(
    busyPoll.windowUs > 0
      ? `busy poll: ${busyPoll.windowUs} µs after I/O, while it catches work (busyPoll: 0 turns it off)`
      : 'busy poll: off',
  );
  for (const [name, bs] of opened) {
    if (bs.kind === 'file' && !bs.capabilities.directIo) {
      log.warn(`${name}: ${bs.description}: the filesystem refused O_DIRECT; using buffered I/O`);
    }
  }
  const closeLun = async (key: string) => {
    const bs = opened.get(key);
    opened.delete(key);
    if (bs) {
      await bs.flush().catch(() => undefined);
      await bs.close().catch(() => undefined);
    }
  };
  return {
    server,
    backstores: opened,
    resources,
    ...(pageCache !== undefined ? { cache: pageCache } : {}),
    scsiTarget: (name) => scsiTargets.get(name),
    setOffline(name, value) {
      if (name === undefined) systemOffline = value;
      else if (value) offline.add(name);
      else offline.delete(name);
      for (const [n, t] of specs) {
        const scsi = scsiTargets.get(n);
        if (scsi && (name === undefined || name === n)) server.updateTarget(effective(t, scsi));
      }
    },
    async reconcile(from, to, opts = {}) {
      const pollOf = (c: LunarConfig) => c.busyPoll ?? DEFAULT_BUSY_POLL_US;
      if (pollOf(from) !== pollOf(to)) {
        busyPoll.windowUs = pollOf(to);
        log.info(`busy poll: ${pollOf(to) > 0 ? `${pollOf(to)} µs after I/O` : 'off'}`);
      }
      const sizeOf = (c: LunarConfig) => c.cache?.size ?? defaultCacheSize();
      if (sizeOf(from) !== sizeOf(to))
        log.warn(
          `block cache: cache.size ${formatSize(sizeOf(to))} applies at the next start (now ${pageCache ? formatSize(pageCache.capacityBytes) : 'off'})`,
        );
      const before = new Map(from.targets.map((t) => [t.name, t]));
      const after = new Map(to.targets.map((t) => [t.name, t]));
      for (const [name, t] of before) {
        if (after.has(name)) continue;
        server.removeTarget(name, { force: opts.force ?? false });
        scsiTargets.delete(name);
        for (const l of t.luns) await closeLun(`${name}/${l.lun}`);
        log.info(`target ${name} removed`);
      }
      for (const [name, t] of after) {
        const old = before.get(name);
        if (!old) {
          const fresh = new Map<string, Backstore>();
          let built: IscsiTargetConfig;
          try {
            built = await buildTarget(t, dataDir, fresh, to.portals, resources, pageCache);
            server.addTarget(
              systemOffline || notPrimary(t) ? effective(t, built.scsi as LunarScsiTarget) : built,
            );
          } catch (err) {
            await Promise.allSettled([...fresh.values()].map((b) => b.close()));
            throw err;
          }
          for (const [k, v] of fresh) opened.set(k, v);
          scsiTargets.set(name, built.scsi as LunarScsiTarget);
          log.info(`target ${name} added`);
          continue;
        }
        const scsi = scsiTargets.get(name);
        if (!scsi) throw new Error(`target ${name}: no SCSI target (internal)`);
        const oldLuns = new Map(old.luns.map((l) => [l.lun, l]));
        const newLuns = new Map(t.luns.map((l) => [l.lun, l]));
        for (const [n] of oldLuns) {
          if (newLuns.has(n)) continue;
          scsi.removeLun(n);
          await closeLun(`${name}/${n}`);
          log.info(`target ${name} LUN ${n} removed`);
        }
        for (const [n, l] of newLuns) {
          const was = oldLuns.get(n);
          if (was && sameJson(was, l)) continue;
          const key = `${name}/${n}`;
          let bs = opened.get(key);
          const reopen = !was || !bs || BACKSTORE_FIELDS.some((f) => !sameJson(was[f], l[f]));
          if (reopen) {
            const nbs = await openLun(l, dataDir, resources, pageCache);
            if (was) {
              scsi.removeLun(n);
              await closeLun(key);
            }
            bs = nbs;
            opened.set(key, bs);
          } else if (was) {
            scsi.removeLun(n);
          }
          if (!bs) throw new Error(`target ${name} LUN ${n}: no backstore (internal)`);
          scsi.addLun(luConfig(l, bs, await atomicJournal(l, bs, dataDir)));
          log.info(`target ${name} LUN ${n} ${was ? 'updated' : 'added'}`);
        }
        const { luns: _a, ...restOld } = old;
        const { luns: _b, ...restNew } = t;
        if (!sameJson(old.alua, t.alua)) {
          // ALUA state changes apply live (ASYMMETRIC ACCESS STATE CHANGED); `explicit` needs a restart
          const groups = {
            ...Object.fromEntries(Object.keys(old.alua?.groups ?? {}).map((g) => [g, 'active-optimized'])),
            ...t.alua?.groups,
          };
          for (const [g, st] of Object.entries(groups))
            scsi.setAluaState(Number(g), toAluaState(st as AluaStateName));
        }
        if (!sameJson(restOld, restNew)) {
          server.updateTarget(effective(t, scsi));
          log.info(`target ${name} settings updated`);
        }
      }
      specs.clear();
      for (const t of to.targets) specs.set(t.name, t);
      for (const n of [...offline]) if (!specs.has(n)) offline.delete(n);
      if (opts.portals !== false) {
        const key = (p: { host: string; port: number }) => `${p.host}|${p.port}`;
        const was = new Set(from.portals.map(key));
        const now = new Set(to.portals.map(key));
        for (const p of from.portals) if (!now.has(key(p))) server.removePortal(p.host, p.port);
        for (const p of to.portals) {
          if (!was.has(key(p)))
            await server.addPortal({ host: p.host, port: p.port, portalGroupTag: p.group });
        }
      }
    },
    async stop(opts) {
      await server.stop(opts);
      await Promise.allSettled([...opened.values()].map((b) => b.flush()));
      await closeAll();
    },
  };
}
