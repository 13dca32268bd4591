/**
 * The iSCSI server: portals, target registry, sessions. Owns the policy a login needs (targets,
 * ACLs, CHAP, TSIH allocation, session/connection reinstatement) and the SendTargets answers.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Nexus, ScsiTarget } from '../scsi/types.js';
import { Acl, normalizeAddress } from './acl.js';
import { type ConnectionOwner, IscsiConnection } from './connection.js';
import type { StaticReads } from '../net/static-reads.js';
import { Portal, type PortalConfig } from './portal.js';
import type {
  LiveSessionInfo,
  LoginContext,
  LoginMachine,
  LoginResult,
  LoginTarget,
} from './session/login.js';
import { type DigestName, offerFromParams, paramsToKeys, type SessionParams } from './session/params.js';
import { IscsiSession, type SessionHooks } from './session/session.js';

export interface IscsiTargetConfig {
  name: string;
  alias?: string;
  scsi: ScsiTarget;
  portalGroupTags?: number[];
  acl: { initiators: 'ALL' | string[]; addresses: 'ALL' | string[] };
  chap?: { users: { user: string; secret: string }[]; mutual?: { user: string; secret: string } };
  redirect?: { host: string; port: number; permanent?: boolean };
  params?: Partial<Record<string, string>>;
  queueDepth?: number;
}

export interface IscsiServerConfig {
  portals: PortalConfig[];
  targets: IscsiTargetConfig[];
  discoveryChap?: { users: { user: string; secret: string }[] };
  nopInIntervalSec?: number;
  nopInTimeoutSec?: number;
  digests?: DigestName[];
}

export interface SessionInfo {
  readonly tsih: number;
  readonly initiator: string;
  readonly initiatorAlias?: string;
  readonly isid: string;
  readonly target: string;
  readonly discovery: boolean;
  readonly address: string;
  readonly portal: string;
  readonly portalGroupTag: number;
  readonly cid: number;
  readonly headerDigest: 'None' | 'CRC32C';
  readonly dataDigest: 'None' | 'CRC32C';
  readonly params: Record<string, string>;
  readonly user?: string;
}

export interface LoginFailedEvent {
  readonly initiator: string;
  readonly target?: string;
  readonly address: string;
  readonly status: number;
  readonly reason: string;
}

interface TargetEntry {
  readonly cfg: IscsiTargetConfig;
  readonly acl: Acl;
  readonly login: LoginTarget;
}

interface SessionMeta {
  conn: IscsiConnection;
  alias?: string;
  user?: string;
}

const DEFAULT_QUEUE_DEPTH = 128;

export class IscsiServer extends EventEmitter implements ConnectionOwner {
  readonly #cfg: IscsiServerConfig;
  readonly #targets = new Map<string, TargetEntry>();
  readonly #portals: Portal[] = [];
  readonly #sessions = new Map<number, IscsiSession>();
  readonly #meta = new WeakMap<IscsiSession, SessionMeta>();
  readonly #connections = new Set<IscsiConnection>();
  /** Unsubscribers of the SCSI targets' abort notifications (PREEMPT AND ABORT), per target. */
  readonly #abortSubs = new Map<string, () => void>();
  #nextTsih = 1;
  #started = false;
  #stopping = false;
  readonly nopInIntervalMs: number;
  readonly nopInTimeoutMs: number;

  constructor(cfg: IscsiServerConfig) {
    super();
    this.#cfg = cfg;
    this.nopInIntervalMs = (cfg.nopInIntervalSec ?? 10) * 1000;
    this.nopInTimeoutMs = (cfg.nopInTimeoutSec ?? 30) * 1000;
    for (const t of cfg.targets) this.addTarget(t);
  }

  // ------------------------------------------------------------------ lifecycle

  async start(): Promise<void> {
    if (this.#started) return;
    const seen = new Set<string>();
    for (const p of this.#cfg.portals) {
      const key = `${p.host}|${p.port}`;
      if (seen.has(key)) throw new Error(`iSCSI portal ${p.host}:${p.port} listed twice`);
      seen.add(key);
    }
    try {
      for (const p of this.#cfg.portals) {
        const portal = new Portal(p, (s, pt, reads) => this.#accept(s, pt, reads));
        await portal.listen();
        this.#portals.push(portal);
      }
    } catch (e) {
      await Promise.all(this.#portals.map((p) => p.close()));
      this.#portals.length = 0;
      throw e;
    }
    this.#started = true;
  }

  /** Listening portals with their bound ports (port 0 in the config picks a free one). */
  portals(): { host: string; port: number; portalGroupTag: number }[] {
    return this.#portals.map((p) => ({
      host: p.config.host,
      port: p.port,
      portalGroupTag: p.config.portalGroupTag,
    }));
  }

  /** Ask every initiator to log out (Async Message), wait up to `logoutTimeoutMs`, then close. */
  async stop(opts: { logoutTimeoutMs?: number } = {}): Promise<void> {
    this.#stopping = true;
    // Stop accepting now; net.Server.close() resolves once every connection has ended.
    const closing = Promise.all(this.#portals.map((p) => p.close()));
    this.#portals.length = 0;
    const timeout = opts.logoutTimeoutMs ?? 5000;
    const normal = [...this.#sessions.values()];
    if (normal.length && timeout > 0) {
      for (const s of normal) s.requestLogout(Math.ceil(timeout / 1000));
      const deadline = Date.now() + timeout;
      while (this.#sessions.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    for (const c of [...this.#connections]) c.close('target shutting down');
    await closing;
    this.#started = false;
    this.#stopping = false;
  }

  // ------------------------------------------------------------------ targets

  addTarget(t: IscsiTargetConfig): void {
    if (this.#targets.has(t.name)) throw new Error(`target ${t.name} already exists`);
    if (!/^(iqn\.|eui\.|naa\.)/i.test(t.name))
      throw new Error(`target name ${t.name}: not an iqn./eui./naa. name`);
    const login: LoginTarget = {
      name: t.name,
      ...(t.alias !== undefined ? { alias: t.alias } : {}),
      ...(t.chap ? { chap: t.chap } : {}),
      ...(t.redirect ? { redirect: t.redirect } : {}),
      offer: offerFromParams(t.params, this.#cfg.digests),
      queueDepth: t.queueDepth ?? DEFAULT_QUEUE_DEPTH,
    };
    this.#targets.set(t.name, { cfg: t, acl: new Acl(t.acl), login });
    // The SCSI core aborts tasks of other I_T nexuses (PREEMPT AND ABORT): abort them here, as
    // ABORT TASK SET from each of those nexuses would (no response; TAS 0).
    this.#abortSubs.get(t.name)?.();
    const unsub = t.scsi.onAbortTasks?.((keys, lun) => {
      for (const s of this.#sessions.values()) {
        if (s.targetName === t.name && s.nexus && keys.includes(s.nexus.key)) void s.abortTasks(lun);
      }
    });
    if (unsub) this.#abortSubs.set(t.name, unsub);
  }

  /** Remove a target; refuses while sessions exist unless `force` (which drops them). */
  removeTarget(name: string, opts: { force?: boolean } = {}): void {
    if (!this.#targets.has(name)) throw new Error(`no target ${name}`);
    const live = [...this.#sessions.values()].filter((s) => s.targetName === name);
    if (live.length && !opts.force) {
      throw new Error(`target ${name}: ${live.length} initiator session(s) still connected (use force)`);
    }
    this.#targets.delete(name);
    this.#abortSubs.get(name)?.();
    this.#abortSubs.delete(name);
    for (const s of live) this.#dropSession(s, 'target removed');
  }

  targets(): string[] {
    return [...this.#targets.keys()];
  }

  // ------------------------------------------------------------------ sessions

  sessions(): SessionInfo[] {
    const out: SessionInfo[] = [];
    for (const s of this.#sessions.values()) out.push(this.#info(s));
    return out;
  }

  dropSession(tsih: number): boolean {
    const s = this.#sessions.get(tsih);
    if (!s) return false;
    this.#dropSession(s, 'dropped by administrator');
    return true;
  }

  /** Send a SCSI asynchronous event (sense) to every session of a target. */
  notifyScsiEvent(targetName: string, lun: bigint, sense: Buffer): void {
    for (const s of this.#sessions.values()) if (s.targetName === targetName) s.scsiAsyncEvent(lun, sense);
  }

  #dropSession(s: IscsiSession, reason: string, afterFlush = false): void {
    const m = this.#meta.get(s);
    if (m) m.conn.close(reason, afterFlush);
    else s.close(reason);
  }

  #info(s: IscsiSession): SessionInfo {
    const m = this.#meta.get(s);
    const p = s.params;
    return {
      tsih: s.tsih,
      initiator: s.initiatorName,
      ...(m?.alias !== undefined ? { initiatorAlias: m.alias } : {}),
      isid: s.isid,
      target: s.targetName,
      discovery: s.discovery,
      address: m?.conn.address ?? '',
      portal: m ? `${m.conn.localAddress}:${m.conn.localPort}` : '',
      portalGroupTag: s.portalGroupTag,
      cid: s.cid,
      headerDigest: p.headerDigest ? 'CRC32C' : 'None',
      dataDigest: p.dataDigest ? 'CRC32C' : 'None',
      params: paramsToKeys(p),
      ...(m?.user !== undefined ? { user: m.user } : {}),
    };
  }

  // ------------------------------------------------------------------ connections

  #accept(socket: Socket, portal: Portal, reads?: StaticReads): void {
    if (this.#stopping) {
      socket.destroy();
      return;
    }
    try {
      const conn = new IscsiConnection(socket, this, portal.config.portalGroupTag, reads);
      this.#connections.add(conn);
    } catch {
      socket.destroy();
    }
  }

  #exposed(t: TargetEntry, tpgt: number): boolean {
    const tags = t.cfg.portalGroupTags;
    return !tags || tags.length === 0 || tags.includes(tpgt);
  }

  loginContext(conn: IscsiConnection): LoginContext {
    const discoveryUsers = this.#cfg.discoveryChap;
    return {
      portalGroupTag: conn.portalGroupTag,
      initiatorAddress: conn.remoteAddress,
      findTarget: (name) => this.#targets.get(name)?.login,
      exposedOnPortalGroup: (t) => {
        const e = this.#targets.get(t.name);
        return !!e && this.#exposed(e, conn.portalGroupTag);
      },
      allowed: (t, iname) => this.#targets.get(t.name)?.acl.allows(iname, conn.remoteAddress) ?? false,
      ...(discoveryUsers ? { discoveryChap: discoveryUsers } : {}),
      discoveryOffer: offerFromParams(undefined, this.#cfg.digests),
      findSession: (tsih) => {
        const s = this.#sessions.get(tsih);
        if (!s) return undefined;
        const info: LiveSessionInfo = {
          tsih: s.tsih,
          initiatorName: s.initiatorName,
          isid: s.isid,
          targetName: s.targetName,
          discovery: s.discovery,
          portalGroupTag: s.portalGroupTag,
          cids: [s.cid],
          expCmdSN: s.expCmdSN,
          maxCmdSN: s.maxCmdSN,
        };
        return info;
      },
      allocateTsih: () => this.#allocateTsih(),
    };
  }

  #allocateTsih(): number | undefined {
    for (let i = 0; i < 0xffff; i++) {
      const t = this.#nextTsih;
      this.#nextTsih = this.#nextTsih >= 0xffff ? 1 : this.#nextTsih + 1;
      if (!this.#sessions.has(t)) return t;
    }
    return undefined;
  }

  loginComplete(conn: IscsiConnection, r: LoginResult): IscsiSession | string {
    if (r.existingTsih !== undefined) {
      // Connection reinstatement: the new connection replaces the old one (same CID).
      const s = this.#sessions.get(r.existingTsih);
      if (!s) return 'session vanished during login';
      const m = this.#meta.get(s);
      if (m && m.conn !== conn) m.conn.detach('connection reinstated');
      void s.reinstateConnection();
      s.attach(conn, r.cid, r.nextStatSN);
      this.#meta.set(s, {
        conn,
        ...(m?.alias !== undefined ? { alias: m.alias } : {}),
        ...(m?.user !== undefined ? { user: m.user } : {}),
      });
      return s;
    }
    // Session reinstatement: same initiator port (name + ISID) on the same target, TSIH 0.
    const targetName = r.target?.name ?? '';
    for (const old of [...this.#sessions.values()]) {
      if (
        old.initiatorName === r.initiatorName &&
        old.isid === r.isid &&
        old.targetName === targetName &&
        old.discovery === r.discovery
      ) {
        this.#dropSession(old, 'session reinstated');
      }
    }
    const entry = r.target ? this.#targets.get(r.target.name) : undefined;
    if (r.target && !entry) return 'target removed during login';
    let nexus: Nexus | undefined;
    if (entry) {
      const tags = [...new Set(this.#portals.map((p) => p.config.portalGroupTag))]
        .filter((t) => this.#exposed(entry, t))
        .sort((a, b) => a - b);
      const rtpi = Math.max(1, tags.indexOf(conn.portalGroupTag) + 1);
      const tpgtHex = conn.portalGroupTag.toString(16).padStart(4, '0');
      nexus = {
        initiatorName: r.initiatorName,
        isid: r.isid,
        targetName: entry.cfg.name,
        portalGroupTag: conn.portalGroupTag,
        relativeTargetPortId: rtpi,
        key: `${r.initiatorName},i,0x${r.isid}|${entry.cfg.name},t,0x${tpgtHex}`,
        address: conn.address,
      };
    }
    const hooks: SessionHooks = {
      sendTargets: (value, s) => this.#sendTargets(value, s),
      peers: (s) => [...this.#sessions.values()].filter((x) => x.targetName === s.targetName && !x.discovery),
      coldReset: (s) => {
        const all = [...this.#sessions.values()].filter((x) => x.targetName === s.targetName);
        setImmediate(() => {
          for (const x of all) this.#dropSession(x, 'target cold reset', true);
        });
      },
      closed: (s, reason) => {
        if (this.#sessions.get(s.tsih) === s) this.#sessions.delete(s.tsih);
        this.emit('session-down', { ...this.#info(s), reason });
      },
    };
    const session = new IscsiSession({
      tsih: r.tsih,
      initiatorName: r.initiatorName,
      isid: r.isid,
      discovery: r.discovery,
      targetName,
      ...(entry ? { scsi: entry.cfg.scsi } : {}),
      ...(nexus ? { nexus } : {}),
      params: r.params,
      cmdSN: r.cmdSN,
      queueDepth: r.target?.queueDepth ?? 4,
      portalGroupTag: conn.portalGroupTag,
      hooks,
    });
    session.attach(conn, r.cid, r.nextStatSN);
    this.#sessions.set(r.tsih, session);
    this.#meta.set(session, {
      conn,
      ...(r.initiatorAlias !== undefined ? { alias: r.initiatorAlias } : {}),
      ...(r.authenticatedUser !== undefined ? { user: r.authenticatedUser } : {}),
    });
    if (entry && nexus) {
      try {
        entry.cfg.scsi.nexusCreated(nexus);
      } catch {
        // core must not throw
      }
    }
    this.emit('session-up', this.#info(session));
    return session;
  }

  loginFailed(conn: IscsiConnection, status: number, reason: string, login: LoginMachine): void {
    const ev: LoginFailedEvent = {
      initiator: login.initiatorName,
      ...(login.targetName !== undefined ? { target: login.targetName } : {}),
      address: conn.address,
      status,
      reason,
    };
    this.emit('login-failed', ev);
  }

  connectionClosed(conn: IscsiConnection, _reason: string): void {
    this.#connections.delete(conn);
  }

  // ------------------------------------------------------------------ discovery

  #sendTargets(value: string, s: IscsiSession): [string, string][] {
    const m = this.#meta.get(s);
    const conn = m?.conn;
    const address = conn?.remoteAddress ?? '';
    let names: string[];
    if (value === 'All') {
      names = s.discovery ? [...this.#targets.keys()] : [s.targetName];
      if (s.discovery) names = [...this.#targets.keys()];
    } else if (value === '') {
      names = s.discovery ? [] : [s.targetName];
    } else {
      names = [value];
    }
    const out: [string, string][] = [];
    for (const name of names) {
      const e = this.#targets.get(name);
      if (!e?.acl.allows(s.initiatorName, address)) continue;
      out.push(['TargetName', name]);
      for (const p of this.#portals) {
        const tpgt = p.config.portalGroupTag;
        if (!this.#exposed(e, tpgt)) continue;
        let host = p.config.host;
        if ((host === '0.0.0.0' || host === '::' || host === '') && conn)
          host = normalizeAddress(conn.localAddress);
        const h = host.includes(':') ? `[${host}]` : host;
        out.push(['TargetAddress', `${h}:${p.port},${tpgt}`]);
      }
    }
    return out;
  }

  /** Sessions as live objects (tests). */
  liveSessions(): readonly IscsiSession[] {
    return [...this.#sessions.values()];
  }

  // ------------------------------------------------------------------ run-time changes (control plane)

  /**
   * Replaces a target's settings (ACL, CHAP, redirect, params, alias, portal groups, queue depth)
   * at run time, keeping its place in the registry; new logins see the change, live sessions stay.
   */
  updateTarget(t: IscsiTargetConfig): void {
    const old = this.#targets.get(t.name);
    if (!old) throw new Error(`no target ${t.name}`);
    const order = [...this.#targets.keys()];
    this.#targets.delete(t.name);
    try {
      this.addTarget(t);
    } catch (err) {
      this.#targets.set(t.name, old);
      throw err;
    } finally {
      const entries = new Map(this.#targets);
      this.#targets.clear();
      for (const k of order) {
        const e = entries.get(k);
        if (e) this.#targets.set(k, e);
      }
    }
  }

  /** Starts listening on one more portal (when the server is running) and keeps it in the config. */
  async addPortal(p: PortalConfig): Promise<void> {
    if (this.#cfg.portals.some((x) => x.host === p.host && x.port === p.port)) {
      throw new Error(`iSCSI portal ${p.host}:${p.port} already exists`);
    }
    if (this.#started) {
      const portal = new Portal(p, (s, pt, reads) => this.#accept(s, pt, reads));
      await portal.listen();
      this.#portals.push(portal);
    }
    this.#cfg.portals.push(p);
  }

  /** Stops listening on a portal; sessions that came through it stay. */
  removePortal(host: string, port: number): void {
    const i = this.#cfg.portals.findIndex((x) => x.host === host && x.port === port);
    if (i < 0) throw new Error(`no iSCSI portal ${host}:${port}`);
    this.#cfg.portals.splice(i, 1);
    const j = this.#portals.findIndex((x) => x.config.host === host && x.config.port === port);
    const portal = j >= 0 ? this.#portals.splice(j, 1)[0] : undefined;
    // close() stops accepting at once; its promise waits for connections that came through it.
    if (portal) void portal.close();
  }
}

export type { SessionParams };
