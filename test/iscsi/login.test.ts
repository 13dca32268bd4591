import { describe, expect, it } from 'vitest';
import { encodeText, parseText } from '../../src/iscsi/pdu/text.js';
import type { LoginRequest } from '../../src/iscsi/pdu/types.js';
import { chapResponse, decodeBinaryValue } from '../../src/iscsi/session/chap.js';
import {
  type LiveSessionInfo,
  type LoginAction,
  type LoginContext,
  LoginMachine,
  type LoginTarget,
} from '../../src/iscsi/session/login.js';
import { DEFAULT_OFFER } from '../../src/iscsi/session/params.js';

const T: LoginTarget = { name: 'iqn.t:a', alias: 'A', offer: DEFAULT_OFFER, queueDepth: 32 };
const TCHAP: LoginTarget = {
  name: 'iqn.t:chap',
  offer: DEFAULT_OFFER,
  queueDepth: 32,
  chap: { users: [{ user: 'u', secret: 's3cret-s3cret' }], mutual: { user: 'tgt', secret: 'tgt-secret-12' } },
};
const TREDIR: LoginTarget = {
  name: 'iqn.t:moved',
  offer: DEFAULT_OFFER,
  queueDepth: 1,
  redirect: { host: '10.0.0.2', port: 3260 },
};

function ctx(over: Partial<LoginContext> = {}, sessions: LiveSessionInfo[] = []): LoginContext {
  let tsih = 10;
  return {
    portalGroupTag: 3,
    initiatorAddress: '127.0.0.1',
    findTarget: (n) => [T, TCHAP, TREDIR].find((t) => t.name === n),
    exposedOnPortalGroup: () => true,
    allowed: (_t, i) => i !== 'iqn.i:evil',
    discoveryOffer: DEFAULT_OFFER,
    findSession: (t) => sessions.find((s) => s.tsih === t),
    allocateTsih: () => tsih++,
    random: (n) => Buffer.alloc(n, 0x5a),
    ...over,
  };
}

function req(o: Partial<LoginRequest> & { keys?: [string, string][] }): LoginRequest {
  return {
    opcode: 0x03,
    immediate: true,
    data: encodeText(o.keys ?? []),
    transit: o.transit ?? true,
    cont: o.cont ?? false,
    csg: o.csg ?? 0,
    nsg: o.nsg ?? 1,
    versionMax: 0,
    versionMin: o.versionMin ?? 0,
    isid: o.isid ?? '400000000001',
    tsih: o.tsih ?? 0,
    itt: 1,
    cid: o.cid ?? 0,
    cmdSN: 100,
    expStatSN: 7,
  };
}

const sent = (a: LoginAction[]) => a.flatMap((x) => (x.type === 'send' ? [x.pdu] : []));
const keys = (a: LoginAction[]) => {
  const p = sent(a).at(-1);
  const r = p ? parseText(p.data) : undefined;
  return new Map(r?.ok ? r.pairs : []);
};
const status = (a: LoginAction[]) => sent(a).at(-1)?.status;
const first = (target = 'iqn.t:a', extra: [string, string][] = []): [string, string][] => [
  ['InitiatorName', 'iqn.i:one'],
  ['SessionType', 'Normal'],
  ['TargetName', target],
  ...extra,
];

describe('login state machine', () => {
  it('security (None) → operational → full feature', () => {
    const m = new LoginMachine(ctx());
    const a1 = m.receive(req({ keys: first('iqn.t:a', [['AuthMethod', 'None']]) }));
    expect(sent(a1)[0]).toMatchObject({
      transit: true,
      csg: 0,
      nsg: 1,
      status: 0,
      statSN: 7,
      expCmdSN: 100,
      maxCmdSN: 131,
    });
    expect(keys(a1).get('AuthMethod')).toBe('None');
    expect(keys(a1).get('TargetPortalGroupTag')).toBe('3');
    expect(keys(a1).get('TargetAlias')).toBe('A');
    const a2 = m.receive(
      req({
        csg: 1,
        nsg: 3,
        keys: [
          ['HeaderDigest', 'None'],
          ['MaxRecvDataSegmentLength', '65536'],
          ['MaxBurstLength', '262144'],
        ],
      }),
    );
    const complete = a2.find((x) => x.type === 'complete');
    expect(complete?.type === 'complete' && complete.result).toMatchObject({
      tsih: 10,
      cmdSN: 100,
      nextStatSN: 9,
      params: {
        initiatorMaxRecvDataSegmentLength: 65536,
        maxBurstLength: 262144,
        targetMaxRecvDataSegmentLength: 262144,
      },
    });
    expect(sent(a2)[0]).toMatchObject({ transit: true, csg: 1, nsg: 3, tsih: 10, statSN: 8 });
    expect(keys(a2).get('MaxRecvDataSegmentLength')).toBe('262144');
    expect(m.done).toBe(true);
  });

  it('starting in the operational stage is fine without CHAP', () => {
    const m = new LoginMachine(ctx());
    const a = m.receive(req({ csg: 1, nsg: 3, keys: first() }));
    expect(a.some((x) => x.type === 'complete')).toBe(true);
  });

  it.each([
    ['missing InitiatorName', [['TargetName', 'iqn.t:a']], 0x0207],
    ['missing TargetName', [['InitiatorName', 'iqn.i:one']], 0x0207],
    ['unknown target', first('iqn.t:nope'), 0x0203],
    [
      'ACL',
      [
        ['InitiatorName', 'iqn.i:evil'],
        ['TargetName', 'iqn.t:a'],
      ],
      0x0202,
    ],
    ['redirect', first('iqn.t:moved'), 0x0101],
    [
      'bad SessionType',
      [
        ['InitiatorName', 'iqn.i:one'],
        ['SessionType', 'Weird'],
      ],
      0x0209,
    ],
    ['CHAP required, None offered', first('iqn.t:chap', [['AuthMethod', 'None']]), 0x0201],
    [
      'duplicate key',
      [
        ['InitiatorName', 'iqn.i:one'],
        ['InitiatorName', 'iqn.i:two'],
      ],
      0x0200,
    ],
  ] as [string, [string, string][], number][])('%s → 0x%s', (_n, k, st) => {
    const m = new LoginMachine(ctx());
    const a = m.receive(req({ keys: k }));
    expect(status(a)).toBe(st);
    expect(a.at(-1)).toMatchObject({ type: 'fail', status: st });
  });

  it('redirect carries TargetAddress', () => {
    const a = new LoginMachine(ctx()).receive(req({ keys: first('iqn.t:moved') }));
    expect(keys(a).get('TargetAddress')).toBe('10.0.0.2:3260,3');
  });

  it('CHAP required but security stage skipped → 0x0201', () => {
    const a = new LoginMachine(ctx()).receive(req({ csg: 1, nsg: 3, keys: first('iqn.t:chap') }));
    expect(status(a)).toBe(0x0201);
  });

  it('version, invalid transitions, changed ISID', () => {
    expect(status(new LoginMachine(ctx()).receive(req({ versionMin: 1, keys: first() })))).toBe(0x0205);
    expect(status(new LoginMachine(ctx()).receive(req({ nsg: 2, keys: first() })))).toBe(0x0200);
    expect(status(new LoginMachine(ctx()).receive(req({ csg: 1, nsg: 1, keys: first() })))).toBe(0x0200);
    const m = new LoginMachine(ctx());
    m.receive(req({ transit: false, keys: first('iqn.t:a', [['AuthMethod', 'None']]) }));
    expect(status(m.receive(req({ isid: '400000000002' })))).toBe(0x0200);
  });

  it('mutual CHAP with SHA-256; reflected challenge refused', () => {
    for (const reflect of [false, true]) {
      const m = new LoginMachine(ctx());
      const a1 = m.receive(req({ transit: false, keys: first('iqn.t:chap', [['AuthMethod', 'CHAP,None']]) }));
      expect(keys(a1).get('AuthMethod')).toBe('CHAP');
      const a2 = m.receive(req({ transit: false, keys: [['CHAP_A', '7,5']] }));
      const k2 = keys(a2);
      expect(k2.get('CHAP_A')).toBe('7');
      const id = Number(k2.get('CHAP_I'));
      const c = decodeBinaryValue(k2.get('CHAP_C')!)!;
      expect(c.length).toBe(32);
      const myC = reflect ? c : Buffer.alloc(16, 1);
      const a3 = m.receive(
        req({
          keys: [
            ['CHAP_N', 'u'],
            ['CHAP_R', `0x${chapResponse(7, id, 's3cret-s3cret', c).toString('hex')}`],
            ['CHAP_I', '9'],
            ['CHAP_C', `0x${myC.toString('hex')}`],
          ],
        }),
      );
      if (reflect) {
        expect(status(a3)).toBe(0x0201);
        continue;
      }
      const k3 = keys(a3);
      expect(status(a3)).toBe(0);
      expect(k3.get('CHAP_N')).toBe('tgt');
      expect(k3.get('CHAP_R')).toBe(`0x${chapResponse(7, 9, 'tgt-secret-12', myC).toString('hex')}`);
      expect(sent(a3)[0]).toMatchObject({ transit: true, nsg: 1 });
    }
  });

  it('wrong CHAP secret and unsupported CHAP_A → 0x0201', () => {
    const m = new LoginMachine(ctx());
    m.receive(req({ transit: false, keys: first('iqn.t:chap', [['AuthMethod', 'CHAP']]) }));
    const a2 = m.receive(req({ transit: false, keys: [['CHAP_A', '5']] }));
    const id = Number(keys(a2).get('CHAP_I'));
    const bad = chapResponse(5, id, 'wrong', decodeBinaryValue(keys(a2).get('CHAP_C')!)!);
    expect(
      status(
        m.receive(
          req({
            keys: [
              ['CHAP_N', 'u'],
              ['CHAP_R', `0x${bad.toString('hex')}`],
            ],
          }),
        ),
      ),
    ).toBe(0x0201);
    const m2 = new LoginMachine(ctx());
    m2.receive(req({ transit: false, keys: first('iqn.t:chap', [['AuthMethod', 'CHAP']]) }));
    expect(status(m2.receive(req({ transit: false, keys: [['CHAP_A', '1,2']] })))).toBe(0x0201);
  });

  it('TSIH ≠ 0: unknown session 0x020a, other CID 0x0206, same CID reinstates', () => {
    const live: LiveSessionInfo = {
      tsih: 5,
      initiatorName: 'iqn.i:one',
      isid: '400000000001',
      targetName: 'iqn.t:a',
      discovery: false,
      portalGroupTag: 3,
      cids: [0],
      expCmdSN: 500,
      maxCmdSN: 531,
    };
    expect(status(new LoginMachine(ctx({}, [live])).receive(req({ tsih: 6, keys: first() })))).toBe(0x020a);
    expect(status(new LoginMachine(ctx({}, [live])).receive(req({ tsih: 5, cid: 1, keys: first() })))).toBe(
      0x0206,
    );
    expect(
      status(
        new LoginMachine(ctx({}, [{ ...live, discovery: true }])).receive(req({ tsih: 5, keys: first() })),
      ),
    ).toBe(0x0208);
    const a = new LoginMachine(ctx({}, [live])).receive(req({ tsih: 5, csg: 1, nsg: 3, keys: first() }));
    const c = a.find((x) => x.type === 'complete');
    expect(c?.type === 'complete' && c.result.existingTsih).toBe(5);
    expect(sent(a)[0]).toMatchObject({ tsih: 5, expCmdSN: 500 });
  });

  it('C bit: text split over two PDUs', () => {
    const m = new LoginMachine(ctx());
    const whole = encodeText(first('iqn.t:a', [['AuthMethod', 'None']]));
    const p1 = { ...req({ transit: false, cont: true }), data: whole.subarray(0, 20) };
    const a1 = m.receive(p1);
    expect(sent(a1)[0]).toMatchObject({ status: 0, transit: false });
    expect(sent(a1)[0]?.data.length).toBe(0);
    const a2 = m.receive({ ...req({}), data: whole.subarray(20) });
    expect(keys(a2).get('AuthMethod')).toBe('None');
  });

  it('discovery session: no TargetName needed, no TPGT, session keys Irrelevant; out of TSIHs → 0x0302', () => {
    const m = new LoginMachine(ctx());
    const a = m.receive(
      req({
        csg: 1,
        nsg: 3,
        keys: [
          ['InitiatorName', 'iqn.i:one'],
          ['SessionType', 'Discovery'],
          ['MaxBurstLength', '4096'],
        ],
      }),
    );
    expect(keys(a).get('MaxBurstLength')).toBe('Irrelevant');
    expect(keys(a).has('TargetPortalGroupTag')).toBe(false);
    const full = new LoginMachine(ctx({ allocateTsih: () => undefined }));
    expect(status(full.receive(req({ csg: 1, nsg: 3, keys: first() })))).toBe(0x0302);
  });
});
