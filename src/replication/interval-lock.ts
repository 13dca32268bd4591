/**
 * Conflict detection for writes in flight: a request waits for every earlier request whose byte
 * range overlaps its own, in the order `acquire` was called (the order writes were submitted on the
 * primary, or arrived on the replication stream on a secondary). Non-overlapping requests run in
 * parallel. This is what keeps overlapping writes ordered identically on every replica.
 */

/**
 * One request's range, held or queued. Entries form a doubly linked ring in acquisition order
 * around the lock's sentinel (no Set entry added and deleted per write, no closure per request).
 */
export class LockEntry {
  readonly start: number;
  readonly end: number;
  prev: LockEntry;
  next: LockEntry;
  /** Made only when a later request has to wait for this one (most never conflict). */
  done: Promise<void> | null = null;
  resolve: (() => void) | null = null;
  released = false;
  /** The lock's sentinel (holds the count). */
  readonly #ring: LockEntry | null;
  /** On the sentinel: entries in the ring. */
  count = 0;

  constructor(start: number, end: number, ring: LockEntry | null) {
    this.start = start;
    this.end = end;
    this.prev = this;
    this.next = this;
    this.#ring = ring;
  }

  /** Lets later overlapping requests go; releasing twice is harmless. */
  release(): void {
    if (this.released || this.#ring === null) return;
    this.released = true;
    this.prev.next = this.next;
    this.next.prev = this.prev;
    this.#ring.count--;
    this.resolve?.();
  }
}

function doneOf(e: LockEntry): Promise<void> {
  if (e.done === null) {
    e.done = new Promise<void>((r) => {
      e.resolve = r;
    });
  }
  return e.done;
}

export class IntervalLock {
  /** Ring sentinel: next = oldest entry, prev = newest (insertion order = acquisition order). */
  readonly #ring = new LockEntry(0, 0, null);
  /** Requests that had to wait for an overlapping one (status counter). */
  conflicts = 0;

  get held(): number {
    return this.#ring.count;
  }

  /**
   * Enqueues [offset, offset+length) synchronously (order is fixed at call time) and resolves with
   * the release function once every earlier overlapping request has released.
   */
  acquire(offset: number, length: number): Promise<() => void> {
    const e = this.#add(offset, length);
    const release = (): void => e.release();
    const waits = this.#waits(e);
    return waits === null ? Promise.resolve(release) : Promise.all(waits).then(() => release);
  }

  /**
   * acquire() that hands back the entry (release() it when done) at once when nothing overlaps
   * (no promise to await: at QD32 every await is one more round through the microtask queue
   * behind the other writes of the burst), else the promise of it. A request that overlaps
   * nothing allocates nothing but its entry.
   */
  enter(offset: number, length: number): LockEntry | Promise<LockEntry> {
    const e = this.#add(offset, length);
    const waits = this.#waits(e);
    return waits === null ? e : Promise.all(waits).then(() => e);
  }

  /** Resolves when every request enqueued so far has released. */
  async drain(): Promise<void> {
    const all: Promise<void>[] = [];
    const ring = this.#ring;
    for (let e = ring.next; e !== ring; e = e.next) all.push(doneOf(e));
    await Promise.all(all);
  }

  /** Appends the entry of [offset, offset+length) at the newest end of the ring. */
  #add(offset: number, length: number): LockEntry {
    const ring = this.#ring;
    const e = new LockEntry(offset, offset + Math.max(length, 1), ring);
    e.prev = ring.prev;
    e.next = ring;
    ring.prev.next = e;
    ring.prev = e;
    ring.count++;
    return e;
  }

  /** What the new entry `e` waits for: the earlier entries it overlaps (null: none). */
  #waits(e: LockEntry): Promise<void>[] | null {
    const ring = this.#ring;
    let waits: Promise<void>[] | null = null;
    for (let o = ring.next; o !== e; o = o.next) {
      if (o.start < e.end && e.start < o.end) (waits ??= []).push(doneOf(o));
    }
    if (waits !== null) this.conflicts++;
    return waits;
  }
}
