import { describe, expect, it } from 'vitest';
import { ConfigError, parseResourceConfig, parseSize } from '../../src/replication/config.js';
import { IntervalLock, LockEntry } from '../../src/replication/interval-lock.js';
import { legacyConnName } from '../../src/replication/states.js';
import { progressBar, statusText } from '../../src/replication/status.js';

describe('IntervalLock', () => {
  it('orders overlapping requests by submission, lets disjoint ones run', async () => {
    const lock = new IntervalLock();
    const order: string[] = [];
    const r1 = await lock.acquire(0, 8192);
    const p2 = lock.acquire(4096, 4096).then((rel) => {
      order.push('2');
      return rel;
    });
    const p3 = lock.acquire(100000, 4096).then((rel) => {
      order.push('3');
      return rel;
    });
    const p4 = lock.acquire(0, 8192).then((rel) => {
      order.push('4');
      return rel;
    });
    const r3 = await p3;
    expect(order).toEqual(['3']);
    r1();
    const r2 = await p2;
    expect(order).toEqual(['3', '2']);
    r2();
    (await p4)();
    r3();
    expect(order).toEqual(['3', '2', '4']);
    expect(lock.conflicts).toBe(2);
    await lock.drain();
    expect(lock.held).toBe(0);
  });

  it('enter() hands out the entry at once when nothing overlaps, a promise of it otherwise', async () => {
    const lock = new IntervalLock();
    const r1 = lock.enter(0, 4096);
    expect(r1).toBeInstanceOf(LockEntry);
    const r2 = lock.enter(8192, 4096); // disjoint
    expect(r2).toBeInstanceOf(LockEntry);
    const r3 = lock.enter(0, 8192); // overlaps r1: queued behind it
    expect(r3).toBeInstanceOf(Promise);
    expect(lock.held).toBe(3);
    let got = false;
    void (r3 as Promise<LockEntry>).then(() => {
      got = true;
    });
    await new Promise((r) => setTimeout(r, 5));
    expect(got).toBe(false);
    (r1 as LockEntry).release();
    (await r3).release();
    expect(got).toBe(true);
    (r2 as LockEntry).release();
    expect(lock.held).toBe(0);
    expect(lock.conflicts).toBe(1);
  });

  it('an entry in the middle of the queue releases without disturbing the others; later ones wait only for overlaps', async () => {
    const lock = new IntervalLock();
    const a = lock.enter(0, 4096) as LockEntry;
    const b = lock.enter(4096, 4096) as LockEntry;
    const c = lock.enter(8192, 4096) as LockEntry;
    b.release(); // unlinked from the middle
    b.release();
    expect(lock.held).toBe(2);
    // Overlaps a and c (not the released b): waits for both.
    const d = lock.enter(0, 3 * 4096) as Promise<LockEntry>;
    let got = false;
    void d.then(() => {
      got = true;
    });
    a.release();
    await new Promise((r) => setTimeout(r, 5));
    expect(got).toBe(false);
    c.release();
    (await d).release();
    expect(lock.held).toBe(0);
    const e = lock.enter(4096, 4096);
    expect(e).toBeInstanceOf(LockEntry);
    (e as LockEntry).release();
  });

  it('drain() waits for entries that nobody waited on; releasing twice is harmless', async () => {
    const lock = new IntervalLock();
    const r1 = lock.enter(0, 4096) as LockEntry;
    const r2 = lock.enter(4096, 4096) as LockEntry;
    let drained = false;
    const d = lock.drain().then(() => {
      drained = true;
    });
    r1.release();
    r1.release(); // a second release must not free anyone else's entry
    expect(lock.held).toBe(1);
    await new Promise((r) => setTimeout(r, 5));
    expect(drained).toBe(false);
    r2.release();
    await d;
    expect(drained).toBe(true);
    // Entries taken after a release that overlap only released ones do not wait.
    expect(lock.enter(0, 8192)).toBeInstanceOf(LockEntry);
  });
});

describe('config', () => {
  const base = {
    name: 'r0',
    secret: 's',
    size: '64M',
    nodes: [
      { id: 0, address: '127.0.0.1:7789', disk: 'a.img' },
      { id: 1, address: '127.0.0.1:7790', disk: 'b.img' },
    ],
  };
  it('applies defaults and resolves paths', () => {
    const c = parseResourceConfig(base, '/data');
    expect(c.sizeBytes).toBe(64 * 1024 * 1024);
    expect(c.net.protocol).toBe('C');
    expect(c.nodes[0]?.disk).toBe('/data/a.img');
    expect(c.nodes[0]?.control).toBe('/data/a.img.ctl');
    expect(c.quorum).toBe('off');
  });
  it('names the bad field', () => {
    expect(() => parseResourceConfig({ ...base, net: { protocol: 'D' } })).toThrow(
      /resource\.net\.protocol: must be one of A, B, C/,
    );
    expect(() => parseResourceConfig({ ...base, nodes: [base.nodes[0], base.nodes[0]] })).toThrow(/unique/);
    expect(() => parseResourceConfig({ ...base, fencing: 'resource-only' })).toThrow(/fencePeer/);
    expect(() => parseResourceConfig({ ...base, size: 1000 })).toThrow(ConfigError);
    expect(() => parseResourceConfig({ ...base, nodes: [{ ...base.nodes[0], address: 'nope' }] })).toThrow(
      /host:port/,
    );
    expect(parseSize('1G', 'x')).toBe(1024 ** 3);
  });
});

describe('status formatting', () => {
  it('legacy connection names and progress bars', () => {
    expect(legacyConnName('Connecting', 'Off')).toBe('WFConnection');
    expect(legacyConnName('Connected', 'Established')).toBe('Connected');
    expect(legacyConnName('Connected', 'SyncSource')).toBe('SyncSource');
    expect(legacyConnName('StandAlone', 'Off')).toBe('StandAlone');
    expect(progressBar(0)).toBe('[....................]');
    expect(progressBar(50)).toBe('[=========>..........]');
    expect(progressBar(100)).toBe('[===================>]');
  });
  it('drbdsetup-status-like text', () => {
    const text = statusText({
      name: 'r0',
      nodeId: 0,
      up: true,
      role: 'Primary',
      disk: 'UpToDate',
      suspended: [],
      quorum: true,
      protocol: 'C',
      sizeBytes: 1,
      uuids: null,
      stats: {
        readKiB: 0,
        writtenKiB: 0,
        alWrites: 0,
        bmWrites: 0,
        lowerPending: 0,
        upperPending: 0,
        conflicts: 0,
      },
      peers: [
        {
          nodeId: 1,
          name: 'beta',
          address: 'x',
          connection: 'Connected',
          role: 'Secondary',
          peerDisk: 'Inconsistent',
          replication: 'SyncSource',
          outOfSyncKiB: 512,
          sentKiB: 0,
          receivedKiB: 0,
          wireBytesSent: 0,
          wireBytesReceived: 0,
          pending: 0,
          unacked: 0,
          sync: {
            direction: 'source',
            full: true,
            paused: false,
            percent: 50,
            totalKiB: 1024,
            remainingKiB: 512,
            speedKiBps: 100,
            etaSec: 5,
            elapsedSec: 5,
            dataBytes: 0,
            digestBytes: 0,
            equalBlocks: 0,
          },
          lastSync: null,
          verify: null,
          lastVerify: null,
          lastDecision: '',
          lastError: '',
        },
      ],
    });
    expect(text).toContain('r0 node-id:0 role:Primary');
    expect(text).toContain('beta node-id:1 connection:Connected role:Secondary');
    expect(text).toContain(
      'replication:SyncSource peer-disk:Inconsistent out-of-sync:512K done:50.0 speed:100K/s eta:5s',
    );
  });
});
