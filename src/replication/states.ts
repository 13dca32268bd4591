/**
 * Replication state vocabularies (names as DRBD shows them) and the pure rules over them:
 * promotion checks and majority quorum. Tables are `as const` arrays; the wire carries indices.
 */

export const ROLES = ['Unknown', 'Secondary', 'Primary'] as const;
export type Role = (typeof ROLES)[number];

export const DISK_STATES = [
  'Diskless',
  'Attaching',
  'Detaching',
  'Failed',
  'Negotiating',
  'Inconsistent',
  'Outdated',
  'DUnknown',
  'Consistent',
  'UpToDate',
] as const;
export type DiskState = (typeof DISK_STATES)[number];

export const CONN_STATES = [
  'StandAlone',
  'Disconnecting',
  'Unconnected',
  'Timeout',
  'BrokenPipe',
  'NetworkFailure',
  'ProtocolError',
  'TearDown',
  'Connecting',
  'Connected',
] as const;
export type ConnState = (typeof CONN_STATES)[number];

export const REPL_STATES = [
  'Off',
  'Established',
  'StartingSyncS',
  'StartingSyncT',
  'WFBitMapS',
  'WFBitMapT',
  'SyncSource',
  'SyncTarget',
  'PausedSyncS',
  'PausedSyncT',
  'VerifyS',
  'VerifyT',
  'Ahead',
  'Behind',
] as const;
export type ReplState = (typeof REPL_STATES)[number];

export const PROTOCOLS = ['A', 'B', 'C'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export function roleIndex(r: Role): number {
  return ROLES.indexOf(r);
}
export function diskIndex(d: DiskState): number {
  return DISK_STATES.indexOf(d);
}
export function roleAt(i: number): Role {
  return ROLES[i] ?? 'Unknown';
}
export function diskAt(i: number): DiskState {
  return DISK_STATES[i] ?? 'DUnknown';
}

/** Disk states a peer can receive replicated writes in. */
export function receivesWrites(d: DiskState): boolean {
  return d === 'Inconsistent' || d === 'Outdated' || d === 'Consistent' || d === 'UpToDate';
}

/** The 8.4 /proc/drbd `cs:` name for a connection + replication state. */
export function legacyConnName(cs: ConnState, rs: ReplState): string {
  if (cs === 'Connecting') return 'WFConnection';
  if (cs !== 'Connected') return cs;
  return rs === 'Established' || rs === 'Off' ? 'Connected' : rs;
}

export type QuorumSetting = 'off' | 'majority';

export interface QuorumInput {
  readonly setting: QuorumSetting;
  /** Nodes in the resource, this one included (diskless tiebreakers included). */
  readonly nodes: number;
  /** Peers currently connected (handshake done). */
  readonly connectedPeers: number;
}

/** Majority quorum: this node plus the peers it reaches must be more than half of all nodes. */
export function hasQuorum(q: QuorumInput): boolean {
  if (q.setting === 'off') return true;
  return 1 + q.connectedPeers > q.nodes / 2;
}

export interface PromoteInput {
  readonly role: Role;
  readonly disk: DiskState;
  readonly force: boolean;
  readonly quorum: boolean;
  /** Any connected peer is Primary. */
  readonly peerPrimary: boolean;
  /** Any connected peer's disk is UpToDate. */
  readonly peerUpToDate: boolean;
  readonly syncTarget: boolean;
}

/** Why promotion is refused, or null when allowed (DRBD's checks, simplified). */
export function promoteRefusal(p: PromoteInput): string | null {
  if (p.role === 'Primary') return null;
  if (p.peerPrimary) return 'a peer is Primary (single-primary resource; demote it first)';
  if (!p.quorum) return 'no quorum: a minority partition cannot be promoted';
  if (p.disk === 'Diskless') return 'no local disk (diskless node)';
  if (p.syncTarget && !p.force) return 'local disk is a SyncTarget (Inconsistent); wait for the resync';
  if (p.disk === 'UpToDate') return null;
  if (p.force && p.peerUpToDate) {
    return `local disk is ${p.disk} and a connected peer is UpToDate: resync from it (invalidate) instead of forcing`;
  }
  if (p.force) return p.disk === 'Failed' ? 'local disk failed' : null;
  if (p.disk === 'Consistent' && !p.peerUpToDate) return null;
  return `local disk is ${p.disk}; use primary --force to overwrite the peers' data`;
}
