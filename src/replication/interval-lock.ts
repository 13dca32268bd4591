/**
 * Conflict detection for writes in flight: a request waits for every earlier request whose byte
 * range overlaps its own, in the order `acquire` was called (the order writes were submitted on the
 * primary, or arrived on the replication stream on a secondary). Non-overlapping requests run in
 * parallel. This is what keeps overlapping writes ordered identically on every replica.
 */

interface Entry {
  readonly start: number;
  readonly end: number;
  /** Made only when a later request has to wait for this one (most never conflict). */
  done: Promise<void> | null;
  resolve: (() => void) | null;
  released: boolean;
}

function doneOf(e: Entry): Promise<void> {
  if (e.done === null) {
    e.done = new Promise<void>((r) => {
      e.resolve = r;
    });
  }
  return e.done;
}

export class IntervalLock {
  /** Insertion order = acquisition order; a request only ever waits for entries already here. */
  readonly #entries = new Set<Entry>();
  /** Requests that had to wait for an overlapping one (status counter). */
  conflicts = 0;

  get held(): number {
    return this.#entries.size;
  }

  /**
   * Enqueues [offset, offset+length) synchronously (order is fixed at call time) and resolves with
   * the release function once every earlier overlapping request has released.
   */
  acquire(offset: number, length: number): Promise<() => void> {
    const r = this.enter(offset, length);
    return typeof r === 'function' ? Promise.resolve(r) : r;
  }

  /**
   * acquire() that hands back the release function at once when nothing overlaps (no promise to
   * await: at QD32 every await is one more round through the microtask queue behind the other
   * writes of the burst), else the promise of it. A request that overlaps nothing allocates no
   * promise at all.
   */
  enter(offset: number, length: number): (() => void) | Promise<() => void> {
    const start = offset;
    const end = offset + Math.max(length, 1);
    let waits: Promise<void>[] | null = null;
    for (const e of this.#entries) {
      if (e.start < end && start < e.end) (waits ??= []).push(doneOf(e));
    }
    const entry: Entry = { start, end, done: null, resolve: null, released: false };
    const release = (): void => {
      if (entry.released) return;
      entry.released = true;
      this.#entries.delete(entry);
      entry.resolve?.();
    };
    this.#entries.add(entry);
    if (waits === null) return release;
    this.conflicts++;
    return Promise.all(waits).then(() => release);
  }

  /** Resolves when every request enqueued so far has released. */
  async drain(): Promise<void> {
    await Promise.all([...this.#entries].map(doneOf));
  }
}
