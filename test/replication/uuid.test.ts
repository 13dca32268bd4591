import { describe, expect, it } from 'vitest';
import {
  AFTER_SB_0PRI,
  type CompareInput,
  compareUuids,
  type DecideInput,
  decideSync,
  newUuid,
  parseUuid,
  recover0pri,
  recoverSplitBrain,
  type SplitBrainInput,
  UUID_JUST_CREATED,
  uuidHex,
} from '../../src/replication/uuid.js';

const J = UUID_JUST_CREATED;
const set = (current: bigint, bitmap = 0n, history: bigint[] = []) => ({ current, bitmap, history });
const cmp = (self: ReturnType<typeof set>, peer: ReturnType<typeof set>, extra: Partial<CompareInput> = {}) =>
  compareUuids({
    self,
    peer,
    selfCrashedPrimary: false,
    peerCrashedPrimary: false,
    resolveConflicts: false,
    ...extra,
  });

describe('compareUuids: one row per DRBD rule', () => {
  const rows: [
    string,
    ReturnType<typeof set>,
    ReturnType<typeof set>,
    Partial<CompareInput>,
    number,
    number,
  ][] = [
    ['both just created', set(J), set(J), {}, 0, 10],
    ['I am just created, peer has data', set(J), set(0xa0n), {}, -2, 20],
    ['I am zero (never initialised), peer has data', set(0n), set(0xa0n), {}, -2, 20],
    ['peer just created', set(0xa0n), set(J), {}, 2, 30],
    ['same current, no crash', set(0xa0n), set(0xa0n), {}, 0, 40],
    ['same current, primary bit ignored', set(0xa1n), set(0xa0n), {}, 0, 40],
    ['same current, I crashed as primary', set(0xa0n), set(0xa0n), { selfCrashedPrimary: true }, 1, 40],
    ['same current, peer crashed as primary', set(0xa0n), set(0xa0n), { peerCrashedPrimary: true }, -1, 40],
    [
      'both crashed, tie breaker set',
      set(0xa0n),
      set(0xa0n),
      { selfCrashedPrimary: true, peerCrashedPrimary: true, resolveConflicts: true },
      -1,
      40,
    ],
    [
      'both crashed, tie breaker clear',
      set(0xa0n),
      set(0xa0n),
      { selfCrashedPrimary: true, peerCrashedPrimary: true },
      1,
      40,
    ],
    ['my current = peer bitmap: I am SyncTarget', set(0xa0n), set(0xb1n, 0xa1n), {}, -1, 50],
    [
      'my current in peer history: full SyncTarget',
      set(0xa0n),
      set(0xc0n, 0xb0n, [0xb8n, 0xa0n]),
      {},
      -2,
      60,
    ],
    ['my bitmap = peer current: I am SyncSource', set(0xb1n, 0xa1n), set(0xa0n), {}, 1, 70],
    ['peer current in my history: full SyncSource', set(0xc0n, 0xb0n, [0xa0n]), set(0xa0n), {}, 2, 80],
    ['both diverged from one bitmap uuid: split brain', set(0xb1n, 0xa1n), set(0xc1n, 0xa1n), {}, 100, 90],
    [
      'common history only: split brain, disconnect',
      set(0xb0n, 0xd0n, [0xa0n]),
      set(0xc0n, 0xe0n, [0xa0n]),
      {},
      -100,
      100,
    ],
    [
      'nothing in common: unrelated data',
      set(0xb0n, 0xd0n, [0xf0n]),
      set(0xc0n, 0xe0n, [0xa0n]),
      {},
      -1000,
      110,
    ],
  ];
  for (const [name, self, peer, extra, result, rule] of rows) {
    it(name, () => {
      expect(cmp(self, peer, extra)).toEqual({ result, rule });
    });
  }

  it('is antisymmetric for every non-split-brain pair', () => {
    const pairs: [ReturnType<typeof set>, ReturnType<typeof set>][] = [
      [set(J), set(0xa0n)],
      [set(0xa0n), set(0xb1n, 0xa1n)],
      [set(0xa0n), set(0xc0n, 0xb0n, [0xa0n])],
    ];
    for (const [a, b] of pairs) expect(cmp(a, b).result).toBe(-cmp(b, a).result);
  });
});

const sb = (o: Partial<SplitBrainInput> = {}): SplitBrainInput => ({
  afterSb0pri: 'disconnect',
  afterSb1pri: 'disconnect',
  afterSb2pri: 'disconnect',
  selfPrimary: false,
  peerPrimary: false,
  selfWasPrimary: false,
  peerWasPrimary: false,
  selfChanges: 0,
  peerChanges: 0,
  resolveConflicts: false,
  ...o,
});

describe('after-split-brain policies', () => {
  it('after-sb-0pri', () => {
    expect(recover0pri('disconnect', sb())).toBeNull();
    expect(recover0pri('discard-younger-primary', sb({ selfWasPrimary: false, peerWasPrimary: true }))).toBe(
      -1,
    );
    expect(recover0pri('discard-younger-primary', sb({ selfWasPrimary: true }))).toBe(1);
    expect(recover0pri('discard-younger-primary', sb())).toBeNull();
    expect(recover0pri('discard-older-primary', sb({ peerWasPrimary: true }))).toBe(1);
    expect(recover0pri('discard-older-primary', sb({ selfWasPrimary: true }))).toBe(-1);
    expect(recover0pri('discard-zero-changes', sb({ selfChanges: 0, peerChanges: 5 }))).toBe(-1);
    expect(recover0pri('discard-zero-changes', sb({ selfChanges: 5, peerChanges: 0 }))).toBe(1);
    expect(recover0pri('discard-zero-changes', sb({ selfChanges: 5, peerChanges: 5 }))).toBeNull();
    expect(recover0pri('discard-zero-changes', sb({ resolveConflicts: true }))).toBe(-1);
    expect(recover0pri('discard-least-changes', sb({ selfChanges: 3, peerChanges: 5 }))).toBe(-1);
    expect(recover0pri('discard-least-changes', sb({ selfChanges: 7, peerChanges: 5 }))).toBe(1);
    expect(recover0pri('discard-least-changes', sb({ selfChanges: 5, peerChanges: 5 }))).toBe(1);
    expect(
      recover0pri('discard-least-changes', sb({ selfChanges: 5, peerChanges: 5, resolveConflicts: true })),
    ).toBe(-1);
  });

  it('the two nodes always reach opposite verdicts (0pri)', () => {
    for (const p of AFTER_SB_0PRI) {
      for (const [sc, pc] of [
        [0, 0],
        [0, 3],
        [3, 0],
        [2, 5],
        [5, 5],
      ] as const) {
        for (const [sw, pw] of [
          [false, false],
          [true, false],
          [false, true],
          [true, true],
        ] as const) {
          const a = recover0pri(
            p,
            sb({
              selfChanges: sc,
              peerChanges: pc,
              selfWasPrimary: sw,
              peerWasPrimary: pw,
              resolveConflicts: true,
            }),
          );
          const b = recover0pri(
            p,
            sb({
              selfChanges: pc,
              peerChanges: sc,
              selfWasPrimary: pw,
              peerWasPrimary: sw,
              resolveConflicts: false,
            }),
          );
          if (a === null) expect(b).toBeNull();
          else expect(b).toBe(-a);
        }
      }
    }
  });

  it('after-sb-1pri and 2pri', () => {
    const pri = { selfPrimary: true };
    expect(recoverSplitBrain(sb({ ...pri, afterSb1pri: 'disconnect' }))).toBeNull();
    expect(recoverSplitBrain(sb({ ...pri, afterSb1pri: 'discard-secondary' }))).toBe(1);
    expect(recoverSplitBrain(sb({ peerPrimary: true, afterSb1pri: 'discard-secondary' }))).toBe(-1);
    // consensus: accept the 0pri verdict only if it discards the secondary.
    const cons = { afterSb1pri: 'consensus' as const, afterSb0pri: 'discard-least-changes' as const };
    expect(recoverSplitBrain(sb({ ...cons, selfPrimary: true, selfChanges: 9, peerChanges: 1 }))).toBe(1);
    expect(recoverSplitBrain(sb({ ...cons, selfPrimary: true, selfChanges: 1, peerChanges: 9 }))).toBeNull();
    expect(recoverSplitBrain(sb({ ...cons, peerPrimary: true, selfChanges: 1, peerChanges: 9 }))).toBe(-1);
    expect(
      recoverSplitBrain(
        sb({ selfPrimary: true, peerPrimary: true, afterSb0pri: 'discard-least-changes', selfChanges: 5 }),
      ),
    ).toBeNull();
  });
});

describe('decideSync', () => {
  const base = (o: Partial<DecideInput>): DecideInput => ({
    self: set(0xb1n, 0xa1n),
    peer: set(0xc0n, 0xa1n),
    selfCrashedPrimary: false,
    peerCrashedPrimary: false,
    resolveConflicts: false,
    selfDiscardMyData: false,
    peerDiscardMyData: false,
    sb: {
      afterSb0pri: 'disconnect',
      afterSb1pri: 'disconnect',
      afterSb2pri: 'disconnect',
      selfPrimary: false,
      peerPrimary: false,
      selfChanges: 1,
      peerChanges: 2,
    },
    ...o,
  });
  it('split brain under disconnect: nothing discarded', () => {
    const d = decideSync(base({}));
    expect(d).toMatchObject({ action: 'disconnect', splitBrain: true });
  });
  it('automatic policy resolves to a bitmap sync', () => {
    const d = decideSync(base({ sb: { ...base({}).sb, afterSb0pri: 'discard-least-changes' } }));
    expect(d).toMatchObject({ action: 'target', full: false, splitBrain: true });
  });
  it('manual --discard-my-data', () => {
    expect(decideSync(base({ selfDiscardMyData: true }))).toMatchObject({
      action: 'target',
      splitBrain: true,
    });
    expect(decideSync(base({ peerDiscardMyData: true }))).toMatchObject({
      action: 'source',
      splitBrain: true,
    });
    expect(decideSync(base({ selfDiscardMyData: true, peerDiscardMyData: true }))).toMatchObject({
      action: 'disconnect',
    });
  });
  it('history-only split brain resolved manually is a full sync', () => {
    const d = decideSync(
      base({ self: set(0xb0n, 0xd0n, [0xa0n]), peer: set(0xc0n, 0xe0n, [0xa0n]), selfDiscardMyData: true }),
    );
    expect(d).toMatchObject({ action: 'target', full: true, rule: 100 });
  });
  it('unrelated data disconnects', () => {
    expect(decideSync(base({ self: set(0xb0n), peer: set(0xc0n) })).action).toBe('disconnect');
  });
});

describe('uuid helpers', () => {
  it('hex round trip and primary bit', () => {
    const u = newUuid(true, () => 0x123456789abcdef0n);
    expect(u & 1n).toBe(1n);
    expect(parseUuid(uuidHex(u))).toBe(u);
    expect(newUuid(false, () => 0n)).not.toBe(0n);
    expect(parseUuid('zz')).toBe(0n);
  });
});
