/**
 * Per-LU task ordering (SAM-5 §8 task attributes, plus data-integrity ordering of SIMPLE tasks).
 *
 * `admit` is called synchronously in submission order. A task waits for:
 * - HEAD OF QUEUE: nothing;
 * - ORDERED: every task admitted before it;
 * - SIMPLE/UNTAGGED/ACA: earlier ORDERED tasks, and earlier tasks whose LBA range overlaps its own
 *   when either of the two writes (so overlapping writes apply in submission order, a read sees
 *   the writes submitted before it, and a read-modify-write range is atomic against other writes).
 */
import { TaskAttribute } from './types.js';

export interface LbaRange {
  readonly lba: number;
  readonly blocks: number;
  /** Modifies the medium (write, write same, unmap, compare and write…). */
  readonly write: boolean;
}

interface Slot {
  readonly ranges: readonly LbaRange[];
  readonly ordered: boolean;
  readonly done: Promise<void>;
}

export interface Admission {
  /** Resolves when the task may start (undefined: start at once). */
  readonly ready: Promise<void> | undefined;
  /** Must be called exactly once when the task ends (success, error or abort). */
  release(): void;
}

const overlaps = (a: LbaRange, b: LbaRange): boolean =>
  a.blocks > 0 && b.blocks > 0 && a.lba < b.lba + b.blocks && b.lba < a.lba + a.blocks;

/** Whether two tasks must not run concurrently: some pair of their ranges overlaps and one writes. */
const clash = (a: readonly LbaRange[], b: readonly LbaRange[]): boolean =>
  a.some((x) => b.some((y) => (x.write || y.write) && overlaps(x, y)));

export class TaskScheduler {
  readonly #active = new Set<Slot>();

  get size(): number {
    return this.#active.size;
  }

  /**
   * Admits a task touching `ranges` (none for commands that do not access the medium; several
   * for commands that read one range and write another, e.g. a future EXTENDED COPY).
   */
  admit(attribute: TaskAttribute, range: LbaRange | readonly LbaRange[] | undefined): Admission {
    const ranges: readonly LbaRange[] = range === undefined ? [] : 'lba' in range ? [range] : range;
    const deps: Promise<void>[] = [];
    if (attribute !== TaskAttribute.HEAD_OF_QUEUE) {
      for (const s of this.#active) {
        if (attribute === TaskAttribute.ORDERED || s.ordered || clash(ranges, s.ranges)) deps.push(s.done);
      }
    }
    let resolve!: () => void;
    const done = new Promise<void>((r) => {
      resolve = r;
    });
    const slot: Slot = { ranges, ordered: attribute === TaskAttribute.ORDERED, done };
    this.#active.add(slot);
    let released = false;
    return {
      ready: deps.length === 0 ? undefined : Promise.all(deps).then(() => undefined),
      release: () => {
        if (released) return;
        released = true;
        this.#active.delete(slot);
        resolve();
      },
    };
  }
}
