/**
 * Conflict detection for writes in flight: a request waits for every earlier request whose byte
 * range overlaps its own, in the order `acquire` was called (the order writes were submitted on the
 * primary, or arrived on the replication stream on a secondary). Non-overlapping requests run in
 * parallel. This is what keeps overlapping writes ordered identically on every replica.
 */

interface Entry {
  readonly start: number;
  readonly end: number;
  readonly done: Promise<void>;
  release: () => void;
}

export class IntervalLock {
  #entries: Entry[] = [];
  /** Requests that had to wait for an overlapping one (status counter). */
  conflicts = 0;

  get held(): number {
    return this.#entries.length;
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
   * writes of the burst), else the promise of it.
   */
  enter(offset: number, length: number): (() => void) | Promise<() => void> {
    const start = offset;
    const end = offset + Math.max(length, 1);
    const waits: Promise<void>[] = [];
    for (const e of this.#entries) if (e.start < end && start < e.end) waits.push(e.done);
    let release!: () => void;
    const done = new Promise<void>((r) => {
      release = r;
    });
    const entry: Entry = { start, end, done, release: () => {} };
    entry.release = () => {
      const i = this.#entries.indexOf(entry);
      if (i >= 0) this.#entries.splice(i, 1);
      release();
    };
    this.#entries.push(entry);
    if (waits.length === 0) return entry.release;
    this.conflicts++;
    return Promise.all(waits).then(() => entry.release);
  }

  /** Resolves when every request enqueued so far has released. */
  async drain(): Promise<void> {
    await Promise.all(this.#entries.map((e) => e.done));
  }
}
