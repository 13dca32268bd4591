/**
 * Activity log: the set of "hot" extents (4 MiB by default) that may hold writes in flight. Before
 * a write touches an extent that is not active, an AL transaction (the new active set) is written
 * to the metadata; extents leave the set only when idle, after the bitmap pages covering them are
 * on disk. After a crash, only the AL extents (plus the bitmap) need resync — never the whole device.
 *
 * `ActivityLogCore` is the pure bookkeeping (tested alone); `ActivityLog` adds the async
 * transaction writer and waiting for an idle victim.
 */

export const AL_EXTENT_SHIFT = 22;
export const AL_EXTENT_BYTES = 1 << AL_EXTENT_SHIFT;

/** Bytes per extent (2 ** shift is a Math.pow call per write). */
function extentSize(shift: number): number {
  return shift < 31 ? 1 << shift : 2 ** shift;
}

export function extentsOf(offset: number, length: number, shift = AL_EXTENT_SHIFT): number[] {
  if (length <= 0) return [];
  const size = extentSize(shift);
  const first = Math.floor(offset / size);
  const last = Math.floor((offset + length - 1) / size);
  const out: number[] = [];
  for (let e = first; e <= last; e++) out.push(e);
  return out;
}

export interface AlPlan {
  readonly add: readonly number[];
  readonly evict: readonly number[];
}

/** An active extent: writes in flight on it, and when it was last used (LRU order). */
interface AlSlot {
  refs: number;
  used: number;
}

export class ActivityLogCore {
  readonly maxExtents: number;
  /**
   * extent → its slot. LRU order is the slots' `used` stamps (a hit stamps its extents, instead
   * of moving them to the end of the Map: no Map entry deleted and re-added per write).
   */
  readonly #active = new Map<number, AlSlot>();
  #clock = 0;

  constructor(maxExtents: number, initial: readonly number[] = []) {
    if (maxExtents < 1) throw new RangeError('al-extents must be at least 1');
    this.maxExtents = maxExtents;
    for (const e of initial.slice(0, maxExtents)) this.#active.set(e, { refs: 0, used: ++this.#clock });
  }

  /** Active extents, least recently used first. */
  get active(): number[] {
    return this.#lru().map(([e]) => e);
  }

  get size(): number {
    return this.#active.size;
  }

  refs(e: number): number {
    return this.#active.get(e)?.refs ?? 0;
  }

  #lru(): [number, AlSlot][] {
    return [...this.#active].sort((a, b) => a[1].used - b[1].used);
  }

  /** Takes references when every extent is active (no transaction needed); false otherwise. */
  tryFastPath(extents: readonly number[]): boolean {
    for (const e of extents) if (!this.#active.has(e)) return false;
    for (const e of extents) {
      const s = this.#active.get(e) as AlSlot;
      s.refs++;
      s.used = ++this.#clock;
    }
    return true;
  }

  /**
   * tryFastPath(extentsOf(offset, length, shift)) without the array: references on extents
   * first..last when all are active.
   */
  tryFastPathRange(offset: number, length: number, shift: number): boolean {
    if (length <= 0) return true;
    const size = extentSize(shift);
    const first = Math.floor(offset / size);
    const last = Math.floor((offset + length - 1) / size);
    for (let e = first; e <= last; e++) if (!this.#active.has(e)) return false;
    for (let e = first; e <= last; e++) {
      const s = this.#active.get(e) as AlSlot;
      s.refs++;
      s.used = ++this.#clock;
    }
    return true;
  }

  /**
   * Plans a transaction adding the missing extents and evicting idle least-recently-used ones;
   * null when not enough idle extents exist (the caller waits for a release).
   */
  plan(extents: readonly number[]): AlPlan | null {
    if (extents.length > this.maxExtents)
      throw new RangeError('request spans more extents than the AL holds');
    const add = extents.filter((e) => !this.#active.has(e));
    const need = this.#active.size + add.length - this.maxExtents;
    const evict: number[] = [];
    if (need > 0) {
      for (const [e, s] of this.#lru()) {
        if (evict.length >= need) break;
        if (s.refs === 0 && !extents.includes(e)) evict.push(e);
      }
      if (evict.length < need) return null;
    }
    return { add, evict };
  }

  /** Applies a plan (after its transaction is on disk) and takes references. */
  commit(plan: AlPlan, extents: readonly number[]): void {
    for (const e of plan.evict) this.#active.delete(e);
    for (const e of plan.add) this.#active.set(e, { refs: 0, used: ++this.#clock });
    this.tryFastPath(extents);
  }

  /** The active set after applying `plan` (what the transaction writes), LRU first. */
  after(plan: AlPlan): number[] {
    const s = new Set(this.active);
    for (const e of plan.evict) s.delete(e);
    for (const e of plan.add) s.add(e);
    return [...s];
  }

  release(extents: readonly number[]): void {
    for (const e of extents) {
      const s = this.#active.get(e);
      if (s !== undefined && s.refs > 0) s.refs--;
    }
  }

  /** release(extentsOf(offset, length, shift)) without the array. */
  releaseRange(offset: number, length: number, shift: number): void {
    if (length <= 0) return;
    const size = extentSize(shift);
    const last = Math.floor((offset + length - 1) / size);
    for (let e = Math.floor(offset / size); e <= last; e++) {
      const s = this.#active.get(e);
      if (s !== undefined && s.refs > 0) s.refs--;
    }
  }
}

export interface AlWriter {
  /** Makes the bitmap pages covering `evicted` durable, then writes the new active set durably. */
  transaction(active: readonly number[], evicted: readonly number[]): Promise<void>;
}

export class ActivityLog {
  readonly core: ActivityLogCore;
  readonly shift: number;
  readonly #writer: AlWriter;
  #chain: Promise<void> = Promise.resolve();
  #waiters: (() => void)[] = [];
  /** AL transactions written (the `al:` counter). */
  transactions = 0;

  constructor(
    maxExtents: number,
    writer: AlWriter,
    initial: readonly number[] = [],
    shift = AL_EXTENT_SHIFT,
  ) {
    this.core = new ActivityLogCore(maxExtents, initial);
    this.#writer = writer;
    this.shift = shift;
  }

  /** The extents of a byte range when all are active already (references taken), else null. */
  tryAcquire(offset: number, length: number): number[] | null {
    const ex = extentsOf(offset, length, this.shift);
    return this.core.tryFastPath(ex) ? ex : null;
  }

  /** Activates the extents of a byte range (writing a transaction if needed); returns them for release(). */
  async acquire(offset: number, length: number): Promise<number[]> {
    const ex = extentsOf(offset, length, this.shift);
    if (this.core.tryFastPath(ex)) return ex;
    // Transactions are serialised.
    const run = this.#chain.then(() => this.#slow(ex));
    this.#chain = run.catch(() => {});
    await run;
    return ex;
  }

  /**
   * tryAcquire() for a caller that keeps no extents array: true when every extent of the range
   * was active (references taken; give them back with releaseRange()), false otherwise (none
   * taken; use acquire()).
   */
  tryAcquireRange(offset: number, length: number): boolean {
    return this.core.tryFastPathRange(offset, length, this.shift);
  }

  release(extents: readonly number[]): void {
    this.core.release(extents);
    this.#wake();
  }

  /** Gives back what tryAcquireRange() (or acquire() of the same range) took. */
  releaseRange(offset: number, length: number): void {
    if (length <= 0) return;
    this.core.releaseRange(offset, length, this.shift);
    this.#wake();
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  async #slow(ex: readonly number[]): Promise<void> {
    for (;;) {
      if (this.core.tryFastPath(ex)) return;
      const plan = this.core.plan(ex);
      if (plan === null) {
        await new Promise<void>((r) => this.#waiters.push(r));
        continue;
      }
      await this.#writer.transaction(this.core.after(plan), plan.evict);
      this.transactions++;
      this.core.commit(plan, ex);
      return;
    }
  }
}
