import { describe, expect, it } from 'vitest';
import { TaskScheduler } from '../../src/scsi/scheduler.js';
import { ScsiStatus, TaskAttribute } from '../../src/scsi/types.js';
import { cdb, fill, fixture } from './helpers.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('write ordering', () => {
  it('overlapping writes apply in submission order even when the backstore completes out of order', async () => {
    const f = await fixture();
    const held: (() => void)[] = [];
    f.store.writeGate = () => new Promise<void>((r) => held.push(r));
    const a = f.run(cdb.rw10(0x2a, 0, 4), { data: fill(4, 0xa1) });
    const b = f.run(cdb.rw10(0x2a, 2, 4), { data: fill(4, 0xb2) });
    const c = f.run(cdb.rw10(0x2a, 100, 1), { data: fill(1, 0xc3) }); // disjoint: runs concurrently
    await tick();
    expect(held.length).toBe(2); // a and c started, b waits for a
    held[1]!(); // complete c first
    await tick();
    held[0]!(); // then a
    await tick();
    await tick();
    expect(held.length).toBe(3); // b started after a finished
    held[2]!();
    expect((await Promise.all([a, b, c])).map((r) => r.status)).toEqual([0, 0, 0]);
    expect(f.store.data[0]).toBe(0xa1);
    expect(f.store.data[2 * 512]).toBe(0xb2);
    expect(f.store.log.filter((l) => l.op === 'write').map((l) => l.tag)).toEqual([0xc3, 0xa1, 0xb2]);
  });

  it('a read overlapping an earlier write sees it; reads do not wait for each other', async () => {
    const f = await fixture();
    let release!: () => void;
    f.store.writeGate = () => new Promise<void>((r) => (release = r));
    const w = f.run(cdb.rw10(0x2a, 0, 1), { data: fill(1, 0x55) });
    const r = f.run(cdb.rw10(0x28, 0, 1));
    const r2 = f.run(cdb.rw10(0x28, 10, 1));
    expect((await r2).status).toBe(ScsiStatus.GOOD);
    release();
    await w;
    expect((await r).dataIn![0]).toBe(0x55);
  });

  it('ORDERED waits for every earlier task; HEAD OF QUEUE does not wait', async () => {
    const s = new TaskScheduler();
    const a = s.admit(TaskAttribute.SIMPLE, { lba: 0, blocks: 1, write: true });
    const o = s.admit(TaskAttribute.ORDERED, undefined);
    const later = s.admit(TaskAttribute.SIMPLE, { lba: 50, blocks: 1, write: false });
    const hoq = s.admit(TaskAttribute.HEAD_OF_QUEUE, { lba: 0, blocks: 1, write: true });
    expect(a.ready).toBeUndefined();
    expect(hoq.ready).toBeUndefined();
    const order: string[] = [];
    const po = o.ready!.then(() => order.push('ordered'));
    const pl = later.ready!.then(() => order.push('later'));
    await tick();
    expect(order).toEqual([]);
    a.release();
    hoq.release();
    await po;
    expect(order).toEqual(['ordered']);
    o.release();
    await pl;
    expect(order).toEqual(['ordered', 'later']);
    later.release();
    expect(s.size).toBe(0);
  });

  it('COMPARE AND WRITE is atomic against concurrent writes to its range', async () => {
    const f = await fixture();
    await f.run(cdb.rw10(0x2a, 0, 1), { data: fill(1, 1) });
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        f.run(cdb.caw(0, 1), { data: Buffer.concat([fill(1, 1), fill(1, 10 + i)]) }),
      ),
    );
    expect(results.filter((r) => r.status === ScsiStatus.GOOD)).toHaveLength(1);
    expect(results.filter((r) => r.status === ScsiStatus.CHECK_CONDITION)).toHaveLength(7);
  });

  it('an aborted task does not run', async () => {
    const f = await fixture();
    let release!: () => void;
    f.store.writeGate = () => new Promise<void>((r) => (release = r));
    const w = f.run(cdb.rw10(0x2a, 0, 1), { data: fill(1, 1) });
    const ac = new AbortController();
    const w2 = f.run(cdb.rw10(0x2a, 0, 1), { data: fill(1, 2), signal: ac.signal });
    ac.abort();
    release();
    await w;
    expect((await w2).status).toBe(ScsiStatus.TASK_ABORTED);
    expect(f.store.data[0]).toBe(1);
  });
});

describe('scheduler ranges', () => {
  it('multi-range tasks wait only for tasks overlapping one of their ranges', () => {
    const s = new TaskScheduler();
    const w = s.admit(TaskAttribute.SIMPLE, { lba: 100, blocks: 10, write: true });
    const multi = s.admit(TaskAttribute.SIMPLE, [
      { lba: 0, blocks: 5, write: false },
      { lba: 105, blocks: 1, write: true },
    ]);
    const disjoint = s.admit(TaskAttribute.SIMPLE, [
      { lba: 0, blocks: 5, write: false },
      { lba: 50, blocks: 1, write: true },
    ]);
    expect(multi.ready).toBeDefined();
    expect(disjoint.ready).toBeUndefined();
    for (const a of [w, multi, disjoint]) a.release();
  });
});
