/**
 * Busy polling of the event loop after I/O, the userspace counterpart of Linux's
 * `net.core.busy_poll`: for a short window after a socket read or a response, the loop keeps
 * turning (a chain of `setImmediate`s, so libuv polls with a zero timeout) instead of sleeping in
 * epoll_wait. The next command, or the disk completion, is then picked up by a running thread
 * instead of waking a halted CPU. On the 2-vCPU VM this project is measured on, waking a halted
 * vCPU is most of a QD1 round trip: 4K QD1 cache hits went from ~95 to ~57 µs per command with a
 * 100 µs window, O_DIRECT reads from ~180 to ~130 µs (docs/datapath.md).
 *
 * Polling costs CPU, so it adapts, per process:
 * - a window that ends with nothing arriving is a miss, one in which work arrived (another
 *   {@link BusyPoll.arm}) a hit; the hit rate is a moving average, and below {@link MIN_HIT_RATE}
 *   the loop sleeps as usual, with one probing window every {@link PROBE_EVERY} arms to notice when
 *   the load becomes steady again. Sparse I/O (one command every few milliseconds) costs at most
 *   a window per probe;
 * - a window during which the loop was held up for more than {@link PREEMPTED_MS} (another
 *   process had the CPU: polling would take CPU from it) counts as several misses, so a busy
 *   machine turns polling off quickly.
 * - with more than {@link MAX_BUSY} commands in flight no window opens, and none for
 *   {@link BUSY_HOLDOFF_MS} after that was last seen; a window open when it is seen ends at the
 *   next turn. Their completions keep the loop busy, and on a small machine a polling loop only
 *   takes CPU from the initiator and the kernel (measured: 4K QD32 random reads and writes lost
 *   10-20% with windows at any load; with the in-flight count checked only at the moment of each
 *   arm, a QD32 load whose count dipped to 2 now and then still spun the loop 60k times a second).
 */

/** Hit rate (moving average) under which windows stop, but for probes. */
export const MIN_HIT_RATE = 0.3;
/** While stopped, every this-many arms opens one probing window. */
export const PROBE_EVERY = 64;
/** A gap this long between two turns of a polling loop means the thread was descheduled. */
export const PREEMPTED_MS = 0.5;
/** Weight of the newest window in the moving hit rate. */
const ALPHA = 0.1;
/** Weight of a window cut short by preemption, in misses. */
const PREEMPTED_MISSES = 4;
/** Windows open only while at most this many commands are in flight (the caller's count). */
export const MAX_BUSY = 2;
/** After more than {@link MAX_BUSY} commands were seen in flight, no window for this long (ms). */
export const BUSY_HOLDOFF_MS = 5;
/** Largest window accepted, in µs. */
export const MAX_WINDOW_US = 1000;

export interface BusyPollStats {
  /** Window length in µs; 0 = off. */
  readonly windowUs: number;
  /** Polling windows opened (probes included). */
  readonly windows: number;
  /** Windows in which work arrived. */
  readonly hits: number;
  /** Windows that ran out with nothing arriving. */
  readonly misses: number;
  /** Windows cut short because the process was descheduled (busy machine). */
  readonly preempted: number;
  /** Moving hit rate, 0..1. */
  readonly hitRate: number;
  /** Whether windows open now (false: the hit rate is too low, only probes). */
  readonly active: boolean;
}

export interface BusyPollClock {
  /** Milliseconds, monotonic (performance.now()). */
  now(): number;
  /** Runs `fn` on the next turn of the loop, after polling for I/O (setImmediate). */
  defer(fn: () => void): void;
}

const realClock: BusyPollClock = {
  now: () => performance.now(),
  defer: (fn) => setImmediate(fn),
};

export class BusyPoll {
  #windowMs: number;
  readonly #clock: BusyPollClock;
  #until = 0;
  #polling = false;
  #arrived = false;
  #lastTurn = 0;
  #lastBusy = -Infinity;
  #rate = 1;
  #sinceProbe = 0;
  #hits = 0;
  #misses = 0;
  #preempted = 0;
  readonly #tick = () => this.#turn();

  constructor(windowUs = 0, clock: BusyPollClock = realClock) {
    this.#windowMs = checkWindow(windowUs) / 1000;
    this.#clock = clock;
  }

  get windowUs(): number {
    return Math.round(this.#windowMs * 1000);
  }

  /** Sets the window (µs, 0 = off); a RangeError names a bad value. */
  set windowUs(us: number) {
    this.#windowMs = checkWindow(us) / 1000;
    if (us === 0) this.#until = 0;
  }

  /**
   * Work arrived or went out: keep the loop turning for a window from now, unless `inFlight`
   * (commands the caller has in flight) is over {@link MAX_BUSY} now or was within the last
   * {@link BUSY_HOLDOFF_MS}.
   */
  arm(inFlight = 0): void {
    if (this.#windowMs <= 0) return;
    const now = this.#clock.now();
    const busy = inFlight > MAX_BUSY;
    if (busy) this.#lastBusy = now;
    if (this.#polling) {
      // Work arrived: a hit. Under load the window ends at the next turn.
      this.#arrived = true;
      this.#until = busy ? now : now + this.#windowMs;
      return;
    }
    if (busy || now - this.#lastBusy < BUSY_HOLDOFF_MS) return;
    if (this.#rate < MIN_HIT_RATE && ++this.#sinceProbe < PROBE_EVERY) return;
    this.#sinceProbe = 0;
    this.#polling = true;
    this.#arrived = false;
    this.#until = now + this.#windowMs;
    this.#lastTurn = now;
    this.#clock.defer(this.#tick);
  }

  stats(): BusyPollStats {
    return {
      windowUs: this.windowUs,
      // Every window ends as a hit or a miss; one may be open now.
      windows: this.#hits + this.#misses + (this.#polling ? 1 : 0),
      hits: this.#hits,
      misses: this.#misses,
      preempted: this.#preempted,
      hitRate: this.#rate,
      active: this.#windowMs > 0 && this.#rate >= MIN_HIT_RATE,
    };
  }

  #turn(): void {
    const now = this.#clock.now();
    const preempted = now - this.#lastTurn > PREEMPTED_MS;
    this.#lastTurn = now;
    if (preempted) {
      this.#preempted++;
      this.#end(false, PREEMPTED_MISSES);
      return;
    }
    if (now < this.#until) {
      // Work that arrived during the window re-armed it: count that window a hit and go on.
      if (this.#arrived) {
        this.#arrived = false;
        this.#hit();
      }
      this.#clock.defer(this.#tick);
      return;
    }
    this.#end(this.#arrived, 1);
  }

  #hit(): void {
    this.#hits++;
    this.#rate += ALPHA * (1 - this.#rate);
  }

  #end(hit: boolean, weight: number): void {
    this.#polling = false;
    this.#arrived = false;
    if (hit) this.#hit();
    else {
      this.#misses++;
      for (let i = 0; i < weight; i++) this.#rate -= ALPHA * this.#rate;
    }
  }
}

function checkWindow(us: number): number {
  if (!Number.isInteger(us) || us < 0 || us > MAX_WINDOW_US)
    throw new RangeError(`busy poll window: ${String(us)} µs is not an integer from 0 to ${MAX_WINDOW_US}`);
  return us;
}

/** The process's busy poller (the iSCSI connections arm it); off until configured. */
export const busyPoll = new BusyPoll(0);
