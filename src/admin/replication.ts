/**
 * Replicated resources inside the lunar daemon: opening the resources of the `resources:` section
 * (docs/config.md), choosing this node's id, and the `lunar repl …` verbs behind the control API
 * (routes /v1/replication/… in api.ts). The replication engine itself is src/replication.
 */
import { networkInterfaces } from 'node:os';
import { loadResourceConfig, parseResourceConfig, type ResourceConfig } from '../replication/config.js';
import { type ControlRequest, execute } from '../replication/control.js';
import { Resource } from '../replication/resource.js';
import { procText, type ResourceStatus, resourceStatus } from '../replication/status.js';
import type { Logger } from '../util/log.js';
import type { LunarConfig, ResourceRef } from './config.js';

/** Verbs of `lunar repl` (POST /v1/replication/:res/:verb). */
export const REPL_VERBS = [
  'up',
  'down',
  'primary',
  'secondary',
  'connect',
  'disconnect',
  'invalidate',
  'invalidate-remote',
  'new-current-uuid',
  'verify',
  'pause-sync',
  'resume-sync',
  'resume-io',
  'wait-connect',
  'wait-sync',
  'adjust',
] as const;

/** Addresses of this host's interfaces (plus loopback names). */
function localAddresses(): Set<string> {
  const out = new Set<string>(['localhost']);
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) out.add(a.address);
  }
  return out;
}

/** Resolves the resource config of a ref (a file, or inline with paths relative to the data directory). */
export function resourceConfigOf(ref: ResourceRef, dataDir: string): ResourceConfig {
  if (ref.file !== undefined) return loadResourceConfig(ref.file);
  return parseResourceConfig(ref.inline ?? {}, dataDir);
}

/**
 * This node's id in a resource: the ref's `node`, else `--node`, else the one node whose address
 * is on a local interface. Several local candidates (every node on 127.0.0.1) need --node.
 */
export function chooseNodeId(cfg: ResourceConfig, ref: ResourceRef, nodeOpt?: number): number {
  const pick = ref.node ?? nodeOpt;
  if (pick !== undefined) {
    if (!cfg.nodes.some((n) => n.id === pick))
      throw new Error(
        `resource ${cfg.name}: no node with id ${pick} (nodes: ${cfg.nodes.map((n) => n.id).join(', ')})`,
      );
    return pick;
  }
  const local = localAddresses();
  const mine = cfg.nodes.filter((n) => local.has(n.address.slice(0, n.address.lastIndexOf(':'))));
  if (mine.length === 1) return (mine[0] as { id: number }).id;
  throw new Error(
    mine.length === 0
      ? `resource ${cfg.name}: no node address is on this host; pass --node ID (or node: in resources:)`
      : `resource ${cfg.name}: nodes ${mine.map((n) => n.id).join(', ')} all have local addresses; pass --node ID (or node: in resources:)`,
  );
}

export interface ResourceHandle {
  readonly resource: Resource;
  readonly ref: ResourceRef;
  readonly dataDir: string;
}

/** Opens and brings up every resource of the config (downs those already up on failure). */
export async function openResources(
  config: LunarConfig,
  dataDir: string,
  log: Logger,
  nodeOpt?: number,
): Promise<Map<string, ResourceHandle>> {
  const out = new Map<string, ResourceHandle>();
  try {
    for (const ref of config.resources ?? []) {
      const cfg = resourceConfigOf(ref, dataDir);
      const nodeId = chooseNodeId(cfg, ref, nodeOpt);
      const resource = new Resource({ config: cfg, nodeId, logger: log });
      resource.on('event', (l) => log.debug({ event: l }, 'replication event'));
      await resource.up();
      log.info(
        `resource ${cfg.name}: node ${nodeId} (${resource.me.name}) on ${resource.me.address}, disk ${resource.me.disk}, protocol ${cfg.net.protocol}, ${resource.disk}`,
      );
      out.set(cfg.name, { resource, ref, dataDir });
    }
  } catch (err) {
    for (const h of out.values()) await h.resource.down().catch(() => undefined);
    throw err;
  }
  return out;
}

/** Names of the resources a target's LUNs replicate through. */
export function resourcesOfTarget(t: LunarConfig['targets'][number]): string[] {
  return t.luns.filter((l) => l.backstore === 'replicated' && l.resource).map((l) => l.resource as string);
}

export class ReplicationAdminError extends Error {
  override readonly name = 'ReplicationAdminError';
  readonly code: 'not_found' | 'invalid' | 'busy';
  constructor(code: 'not_found' | 'invalid' | 'busy', message: string) {
    super(message);
    this.code = code;
  }
}

/** What a verb needs from the daemon besides the resource. */
export interface ReplicationContext {
  readonly resources: ReadonlyMap<string, ResourceHandle>;
  /** iSCSI sessions (target names) using LUNs of a resource. */
  sessionsUsing(resource: string): { tsih: number; initiator: string; target: string }[];
}

export function resourceOf(ctx: ReplicationContext, name: string): ResourceHandle {
  const h = ctx.resources.get(name);
  if (h === undefined) {
    const known = [...ctx.resources.keys()];
    throw new ReplicationAdminError(
      'not_found',
      `no resource "${name}"${known.length ? ` (this daemon runs: ${known.join(', ')})` : ' (this daemon runs no replicated resource)'}`,
    );
  }
  return h;
}

export function replicationStatus(ctx: ReplicationContext, name?: string): ResourceStatus[] {
  const names = name === undefined ? [...ctx.resources.keys()] : [name];
  return names.map((n) => resourceStatus(resourceOf(ctx, n).resource));
}

export function replicationProc(ctx: ReplicationContext, name?: string): string {
  const names = name === undefined ? [...ctx.resources.keys()] : [name];
  const parts = names.map((n) => procText(resourceOf(ctx, n).resource));
  if (parts.length === 0) return 'version: lunar-repl 1 (api:1/proto:1-1)\n';
  // one version line, then every resource's block(s)
  return `${parts[0]?.split('\n')[0] ?? ''}\n${parts.map((p) => p.split('\n').slice(1).join('\n')).join('')}`;
}

/** Runs one `lunar repl` verb. */
export async function replicationVerb(
  ctx: ReplicationContext,
  name: string,
  verb: string,
  body: Record<string, unknown>,
): Promise<unknown> {
  if (!(REPL_VERBS as readonly string[]).includes(verb))
    throw new ReplicationAdminError(
      'invalid',
      `unknown replication command "${verb}" (known: ${REPL_VERBS.join(', ')})`,
    );
  const h = resourceOf(ctx, name);
  const r = h.resource;
  if ((verb === 'secondary' || verb === 'down') && r.role === 'Primary') {
    // DRBD refuses to demote a device held open ("Device is held open by someone"): here the
    // holders are iSCSI sessions on targets exporting the resource.
    const users = ctx.sessionsUsing(name);
    if (users.length > 0 && body['force'] !== true) {
      throw new ReplicationAdminError(
        'busy',
        `resource ${name} is in use by ${users.length} iSCSI session(s) (${users.map((s) => `${s.initiator} on ${s.target}`).join(', ')}); log them out first (or --force)`,
      );
    }
  }
  const req: ControlRequest = { ...body, cmd: verb };
  const reload = (): ResourceConfig => resourceConfigOf(h.ref, h.dataDir);
  return execute(r, req, { reloadConfig: reload });
}
