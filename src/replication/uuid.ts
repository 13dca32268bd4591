/**
 * Generation UUIDs and the sync-direction decision at connect time, following the rules of
 * DRBD's uuid comparison (8.4 numbering, our own implementation), plus the after-split-brain
 * recovery policies. Everything here is pure and table-tested.
 *
 * UUIDs are 64-bit bigints; the lowest bit records "was Primary when this UUID was set" (used by
 * discard-younger/older-primary). Comparisons mask it off.
 */

export const UUID_JUST_CREATED = 4n;
const MASK = ~1n & 0xffffffffffffffffn;

export interface UuidSet {
  readonly current: bigint;
  /** Bitmap UUID towards the node we compare with (0 = no bitmap in use). */
  readonly bitmap: bigint;
  /** Older generations, newest first. */
  readonly history: readonly bigint[];
}

export function uuidHex(u: bigint): string {
  return u.toString(16).padStart(16, '0');
}
export function parseUuid(s: string): bigint {
  if (!/^[0-9a-fA-F]{1,16}$/.test(s)) return 0n;
  return BigInt(`0x${s}`);
}

/** A fresh random UUID with the primary bit set as asked. */
export function newUuid(primary: boolean, rand: () => bigint): bigint {
  let u = rand() & MASK;
  if (u === 0n || u === UUID_JUST_CREATED) u = 0x10n;
  return primary ? u | 1n : u;
}

/**
 * Result codes (DRBD's): 2 = become SyncSource with a full sync, 1 = SyncSource using the bitmap,
 * 0 = no sync, -1 = SyncTarget using the bitmap, -2 = SyncTarget full sync, 100 = split brain with a
 * common bitmap UUID (automatic recovery possible), -100 = split brain found through history
 * (disconnect), -1000 = unrelated data.
 */
export type CompareResult = 2 | 1 | 0 | -1 | -2 | 100 | -100 | -1000;

export interface CompareInput {
  readonly self: UuidSet;
  readonly peer: UuidSet;
  /** This node crashed while Primary (its AL must be resynced to the peer). */
  readonly selfCrashedPrimary: boolean;
  readonly peerCrashedPrimary: boolean;
  /** Tie breaker, true on exactly one of the two nodes. */
  readonly resolveConflicts: boolean;
}

export interface CompareOutput {
  readonly result: CompareResult;
  readonly rule: number;
}

export function compareUuids(i: CompareInput): CompareOutput {
  const sc = i.self.current & MASK;
  const pc = i.peer.current & MASK;
  const J = UUID_JUST_CREATED;
  if (sc === J && pc === J) return { result: 0, rule: 10 };
  if ((sc === J || sc === 0n) && pc !== J) return { result: -2, rule: 20 };
  if (sc !== J && (pc === J || pc === 0n)) return { result: 2, rule: 30 };
  if (sc === pc) {
    // Same data generation: a sync is needed only if a Primary crashed with writes in its AL.
    const rct = (i.selfCrashedPrimary ? 1 : 0) + (i.peerCrashedPrimary ? 2 : 0);
    if (rct === 0) return { result: 0, rule: 40 };
    if (rct === 1) return { result: 1, rule: 40 };
    if (rct === 2) return { result: -1, rule: 40 };
    return { result: i.resolveConflicts ? -1 : 1, rule: 40 };
  }
  if (sc === (i.peer.bitmap & MASK)) return { result: -1, rule: 50 };
  for (const h of i.peer.history) if (sc === (h & MASK)) return { result: -2, rule: 60 };
  if ((i.self.bitmap & MASK) === pc) return { result: 1, rule: 70 };
  for (const h of i.self.history) if ((h & MASK) === pc) return { result: 2, rule: 80 };
  const sb = i.self.bitmap & MASK;
  if (sb !== 0n && sb === (i.peer.bitmap & MASK)) return { result: 100, rule: 90 };
  for (const a of i.self.history) {
    if ((a & MASK) === 0n) continue;
    for (const b of i.peer.history) if ((a & MASK) === (b & MASK)) return { result: -100, rule: 100 };
  }
  return { result: -1000, rule: 110 };
}

export const AFTER_SB_0PRI = [
  'disconnect',
  'discard-younger-primary',
  'discard-older-primary',
  'discard-zero-changes',
  'discard-least-changes',
] as const;
export type AfterSb0pri = (typeof AFTER_SB_0PRI)[number];
export const AFTER_SB_1PRI = ['disconnect', 'consensus', 'discard-secondary'] as const;
export type AfterSb1pri = (typeof AFTER_SB_1PRI)[number];
export const AFTER_SB_2PRI = ['disconnect'] as const;
export type AfterSb2pri = (typeof AFTER_SB_2PRI)[number];

export interface SplitBrainInput {
  readonly afterSb0pri: AfterSb0pri;
  readonly afterSb1pri: AfterSb1pri;
  readonly afterSb2pri: AfterSb2pri;
  readonly selfPrimary: boolean;
  readonly peerPrimary: boolean;
  /** Lowest bit of the bitmap UUID: was Primary when the split began. */
  readonly selfWasPrimary: boolean;
  readonly peerWasPrimary: boolean;
  /** Blocks changed since the split (bits in the bitmap towards the other node). */
  readonly selfChanges: number;
  readonly peerChanges: number;
  readonly resolveConflicts: boolean;
}

/** 1 = this node's data wins (it becomes SyncSource), -1 = this node is the victim, null = disconnect. */
export function recover0pri(policy: AfterSb0pri, s: SplitBrainInput): 1 | -1 | null {
  const tie = (): 1 | -1 => (s.resolveConflicts ? -1 : 1);
  switch (policy) {
    case 'disconnect':
      return null;
    case 'discard-younger-primary':
      // The node that was not Primary before the split became Primary later: it is younger.
      if (!s.selfWasPrimary && s.peerWasPrimary) return -1;
      if (s.selfWasPrimary && !s.peerWasPrimary) return 1;
      return null;
    case 'discard-older-primary':
      if (!s.selfWasPrimary && s.peerWasPrimary) return 1;
      if (s.selfWasPrimary && !s.peerWasPrimary) return -1;
      return null;
    case 'discard-zero-changes':
      if (s.selfChanges === 0 && s.peerChanges === 0) return tie();
      if (s.peerChanges === 0) return 1;
      if (s.selfChanges === 0) return -1;
      return null;
    case 'discard-least-changes':
      if (s.selfChanges < s.peerChanges) return -1;
      if (s.selfChanges > s.peerChanges) return 1;
      return tie();
  }
}

/** Applies the policy for the number of primaries; 1 / -1 / null as recover0pri. */
export function recoverSplitBrain(s: SplitBrainInput): 1 | -1 | null {
  const primaries = (s.selfPrimary ? 1 : 0) + (s.peerPrimary ? 1 : 0);
  if (primaries === 0) return recover0pri(s.afterSb0pri, s);
  if (primaries === 2) return null; // after-sb-2pri: only 'disconnect'
  switch (s.afterSb1pri) {
    case 'disconnect':
      return null;
    case 'consensus': {
      const hg = recover0pri(s.afterSb0pri, s);
      if (hg === -1 && !s.selfPrimary) return -1;
      if (hg === 1 && s.selfPrimary) return 1;
      return null;
    }
    case 'discard-secondary':
      return s.selfPrimary ? 1 : -1;
  }
}

export type SyncAction = 'none' | 'source' | 'target' | 'disconnect';

export interface SyncDecision {
  readonly action: SyncAction;
  /** Whole device (true) or only the bitmap (false). */
  readonly full: boolean;
  readonly rule: number;
  readonly splitBrain: boolean;
  readonly reason: string;
}

export interface DecideInput extends CompareInput {
  readonly sb: Omit<SplitBrainInput, 'selfWasPrimary' | 'peerWasPrimary' | 'resolveConflicts'>;
  readonly selfDiscardMyData: boolean;
  readonly peerDiscardMyData: boolean;
}

/** The full connect-time decision: UUID comparison, automatic split-brain policies, discard-my-data. */
export function decideSync(i: DecideInput): SyncDecision {
  const { result, rule } = compareUuids(i);
  const mk = (action: SyncAction, full: boolean, splitBrain: boolean, reason: string): SyncDecision => ({
    action,
    full,
    rule,
    splitBrain,
    reason,
  });
  switch (result) {
    case 0:
      return mk('none', false, false, 'data generations match');
    case 1:
      return mk('source', false, false, 'peer missed changes recorded in the bitmap');
    case 2:
      return mk('source', true, false, 'peer has no usable data (full sync)');
    case -1:
      return mk('target', false, false, 'this node missed changes recorded in the bitmap');
    case -2:
      return mk('target', true, false, 'this node has no usable data (full sync)');
    case -1000:
      return mk('disconnect', false, false, 'unrelated data (no common generation): refusing to connect');
  }
  // Split brain.
  const full = result === -100;
  if (result === 100) {
    const hg = recoverSplitBrain({
      ...i.sb,
      selfWasPrimary: (i.self.bitmap & 1n) === 1n,
      peerWasPrimary: (i.peer.bitmap & 1n) === 1n,
      resolveConflicts: i.resolveConflicts,
    });
    if (hg === 1)
      return mk('source', false, true, 'split brain, automatically resolved: peer discards its changes');
    if (hg === -1)
      return mk('target', false, true, 'split brain, automatically resolved: this node discards its changes');
  }
  if (i.selfDiscardMyData && !i.peerDiscardMyData) {
    return mk(
      'target',
      full,
      true,
      'split brain, manually resolved: this node discards its data (--discard-my-data)',
    );
  }
  if (!i.selfDiscardMyData && i.peerDiscardMyData) {
    return mk(
      'source',
      full,
      true,
      'split brain, manually resolved: peer discards its data (--discard-my-data)',
    );
  }
  return mk(
    'disconnect',
    false,
    true,
    i.selfDiscardMyData
      ? 'split brain: both nodes asked to discard their data'
      : 'split brain detected: disconnecting (resolve with connect --discard-my-data on the victim)',
  );
}
