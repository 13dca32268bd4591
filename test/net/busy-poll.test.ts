import { describe, expect, it } from 'vitest';
import {
  BUSY_HOLDOFF_MS,
  BusyPoll,
  type BusyPollClock,
  MAX_BUSY,
  MIN_HIT_RATE,
  PROBE_EVERY,
} from '../../src/net/busy-poll.js';

/** A clock the test moves by hand, and a loop whose turns the test runs one by one. */
function fakeLoop() {
  let t = 0;
  const queue: (() => void)[] = [];
  const clock: BusyPollClock = { now: () => t, defer: (fn) => queue.push(fn) };
  return {
    clock,
    advance: (ms: number) => {
      t += ms;
    },
    /** Runs one turn of the loop (the deferred callbacks queued so far); returns how many ran. */
    turn: () => {
      const due = queue.splice(0);
      for (const fn of due) fn();
      return due.length;
    },
    pending: () => queue.length,
  };
}

/** Turns the loop in steps of `stepMs` until nothing is deferred any more (the window ended). */
function runOut(l: ReturnType<typeof fakeLoop>, stepMs = 0.01) {
  let turns = 0;
  while (l.pending() > 0 && turns < 100_000) {
    l.advance(stepMs);
    l.turn();
    turns++;
  }
  return turns;
}

describe('BusyPoll', () => {
  it('is off with a zero window: arm() schedules nothing', () => {
    const l = fakeLoop();
    const p = new BusyPoll(0, l.clock);
    p.arm();
    expect(l.pending()).toBe(0);
    expect(p.stats()).toMatchObject({ windowUs: 0, windows: 0, active: false });
  });

  it('keeps the loop turning for the window after an arm, then stops (a miss)', () => {
    const l = fakeLoop();
    const p = new BusyPoll(100, l.clock);
    p.arm();
    expect(l.pending()).toBe(1);
    const turns = runOut(l, 0.01);
    expect(turns).toBeGreaterThanOrEqual(9); // ~100 µs in 10 µs steps
    expect(turns).toBeLessThanOrEqual(11);
    expect(p.stats()).toMatchObject({ windows: 1, hits: 0, misses: 1 });
  });

  it('work arriving inside a window counts as a hit and extends the polling', () => {
    const l = fakeLoop();
    const p = new BusyPoll(100, l.clock);
    p.arm();
    for (let i = 0; i < 5; i++) {
      l.advance(0.06);
      l.turn();
      p.arm(); // the next command, 60 µs after the last: inside the window
      l.turn();
    }
    runOut(l);
    const s = p.stats();
    expect(s.hits).toBe(5);
    expect(s.misses).toBe(1); // the last window ran out
    expect(s.windows).toBe(6);
    expect(s.active).toBe(true);
  });

  it('stops polling when windows keep running out, but probes every PROBE_EVERY arms', () => {
    const l = fakeLoop();
    const p = new BusyPoll(50, l.clock);
    let opened = 0;
    for (let i = 0; i < 40; i++) {
      p.arm();
      if (l.pending() > 0) opened++;
      runOut(l);
      l.advance(5); // sparse I/O: one command every 5 ms
    }
    const s = p.stats();
    expect(s.hitRate).toBeLessThan(MIN_HIT_RATE);
    expect(s.active).toBe(false);
    expect(opened).toBeLessThan(20); // it stopped after the hit rate fell
    const before = s.windows;
    for (let i = 0; i < PROBE_EVERY; i++) {
      p.arm();
      runOut(l);
    }
    expect(p.stats().windows).toBe(before + 1); // one probe in PROBE_EVERY arms
  });

  it('a steady load after a sparse one turns polling back on through the probes', () => {
    const l = fakeLoop();
    const p = new BusyPoll(100, l.clock);
    for (let i = 0; i < 40; i++) {
      p.arm();
      runOut(l);
      l.advance(5);
    }
    expect(p.stats().active).toBe(false);
    // QD1 steady: a command every 50 µs for a long while.
    for (let i = 0; i < 20 * PROBE_EVERY; i++) {
      p.arm();
      l.advance(0.05);
      l.turn();
    }
    expect(p.stats().active).toBe(true);
    expect(p.stats().hitRate).toBeGreaterThan(0.9);
  });

  it('a window during which the process was descheduled counts as several misses', () => {
    const l = fakeLoop();
    const p = new BusyPoll(100, l.clock);
    p.arm();
    l.advance(2); // 2 ms without a turn: another process had the CPU
    l.turn();
    expect(l.pending()).toBe(0); // the window ended at once
    const s = p.stats();
    expect(s.preempted).toBe(1);
    expect(s.misses).toBe(1);
    expect(s.hitRate).toBeLessThan(0.7); // four misses' worth
  });

  it('validates the window and can be turned off while polling', () => {
    const l = fakeLoop();
    expect(() => new BusyPoll(-1, l.clock)).toThrow(/0 to 1000/);
    expect(() => new BusyPoll(1.5, l.clock)).toThrow(RangeError);
    const p = new BusyPoll(100, l.clock);
    expect(() => {
      p.windowUs = 5000;
    }).toThrow(/busy poll window: 5000/);
    p.arm();
    p.windowUs = 0;
    expect(runOut(l)).toBeLessThanOrEqual(1);
    p.arm();
    expect(l.pending()).toBe(0);
  });
});

describe('BusyPoll under load', () => {
  it('opens no window while, or shortly after, the caller has more than MAX_BUSY commands in flight', () => {
    const l = fakeLoop();
    const p = new BusyPoll(100, l.clock);
    p.arm(MAX_BUSY + 1);
    expect(l.pending()).toBe(0);
    // The count dipped: still no window until BUSY_HOLDOFF_MS passed without a busy arm.
    l.advance(BUSY_HOLDOFF_MS / 2);
    p.arm(MAX_BUSY);
    expect(l.pending()).toBe(0);
    l.advance(BUSY_HOLDOFF_MS / 2 - 0.01);
    p.arm(1);
    expect(l.pending()).toBe(0);
    l.advance(0.02);
    p.arm(MAX_BUSY);
    expect(l.pending()).toBe(1);
  });

  it('ends an open window at the next turn when the load rises, and counts it a hit', () => {
    const l = fakeLoop();
    const p = new BusyPoll(100, l.clock);
    p.arm(1);
    expect(l.pending()).toBe(1);
    l.advance(0.01);
    l.turn(); // nothing arrived yet: the window goes on
    expect(l.pending()).toBe(1);
    l.advance(0.01);
    p.arm(32); // work arrived, but the caller is busy now
    l.advance(0.001);
    l.turn();
    expect(l.pending()).toBe(0);
    expect(p.stats()).toMatchObject({ hits: 1, misses: 0, windows: 1 });
    // Arms under the same load open nothing, and neither does a dip right after it.
    p.arm(32);
    p.arm(0);
    expect(l.pending()).toBe(0);
  });

  it('keeps polling a steady QD2 load (never over MAX_BUSY)', () => {
    const l = fakeLoop();
    const p = new BusyPoll(100, l.clock);
    p.arm(MAX_BUSY);
    for (let i = 0; i < 50; i++) {
      l.advance(0.03);
      p.arm(MAX_BUSY);
      l.turn();
      expect(l.pending()).toBe(1);
    }
    expect(p.stats().misses).toBe(0);
  });
});
