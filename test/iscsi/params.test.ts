import { describe, expect, it } from 'vitest';
import {
  DEFAULT_OFFER,
  negotiate,
  OPERATIONAL_KEYS,
  offerFromParams,
} from '../../src/iscsi/session/params.js';

const ans = (pairs: [string, string][], offer = DEFAULT_OFFER, discovery = false) =>
  Object.fromEntries(negotiate(pairs, offer, { discovery }).answers);

describe('operational key negotiation (RFC 7143 §13)', () => {
  const offer = offerFromParams(
    {
      MaxBurstLength: '131072',
      FirstBurstLength: '65536',
      MaxOutstandingR2T: '4',
      DefaultTime2Wait: '5',
      DefaultTime2Retain: '10',
      InitialR2T: 'No',
      ImmediateData: 'Yes',
    },
    undefined,
  );
  it.each([
    // key, initiator value, answer
    ['MaxBurstLength', '262144', '131072'], // min
    ['MaxBurstLength', '4096', '4096'],
    ['FirstBurstLength', '262144', '65536'],
    ['MaxOutstandingR2T', '1', '1'],
    ['MaxOutstandingR2T', '16', '4'],
    ['DefaultTime2Wait', '2', '5'], // max
    ['DefaultTime2Wait', '9', '9'],
    ['DefaultTime2Retain', '20', '10'], // min
    ['DefaultTime2Retain', '0', '0'],
    ['ErrorRecoveryLevel', '2', '0'],
    ['MaxConnections', '8', '1'],
    ['InitialR2T', 'Yes', 'Yes'], // OR
    ['InitialR2T', 'No', 'No'],
    ['ImmediateData', 'Yes', 'Yes'], // AND
    ['ImmediateData', 'No', 'No'],
    ['DataPDUInOrder', 'No', 'Yes'], // OR with our Yes
    ['DataSequenceInOrder', 'No', 'Yes'],
    ['IFMarker', 'Yes', 'No'],
    ['OFMarker', 'No', 'No'],
    ['IFMarkInt', '2048~8192', 'Irrelevant'],
    ['OFMarkInt', '2048', 'Irrelevant'],
    ['HeaderDigest', 'CRC32C', 'CRC32C'],
    ['HeaderDigest', 'None', 'None'],
    ['HeaderDigest', 'CRC32C,None', 'CRC32C'], // RFC 7143 §6.2: the initiator's first allowed value
    ['DataDigest', 'None,CRC32C', 'None'],
    ['DataDigest', 'Foo', 'Reject'],
    ['MaxBurstLength', '100', 'Reject'], // below 512
    ['MaxBurstLength', 'abc', 'Reject'],
    ['InitialR2T', 'Maybe', 'Reject'],
    ['TargetAlias', 'x', 'Irrelevant'],
    ['X-com.example.Key', '1', 'NotUnderstood'],
    ['TaskReporting', 'RFC3720', 'RFC3720'],
    ['iSCSIProtocolLevel', '2', '1'],
  ])('%s=%s → %s', (key, value, answer) => {
    expect(ans([[key, value]], offer)[key]).toBe(answer);
  });

  it('declarative MaxRecvDataSegmentLength is recorded, not answered', () => {
    const r = negotiate([['MaxRecvDataSegmentLength', '65536']], DEFAULT_OFFER, { discovery: false });
    expect(r.answers).toEqual([]);
    expect(r.values.initiatorMaxRecvDataSegmentLength).toBe(65536);
    expect(
      negotiate([['MaxRecvDataSegmentLength', '100']], DEFAULT_OFFER, { discovery: false }).answers,
    ).toEqual([['MaxRecvDataSegmentLength', 'Reject']]);
  });

  it('declaratives of the login need no answer', () => {
    expect(
      ans([
        ['InitiatorName', 'iqn.x'],
        ['InitiatorAlias', 'a'],
        ['SessionType', 'Normal'],
        ['TargetName', 't'],
      ]),
    ).toEqual({});
  });

  it('FirstBurstLength is capped at the negotiated MaxBurstLength', () => {
    expect(
      ans([
        ['FirstBurstLength', '262144'],
        ['MaxBurstLength', '8192'],
      ]),
    ).toEqual({ FirstBurstLength: '8192', MaxBurstLength: '8192' });
  });

  it('session keys are Irrelevant in discovery sessions', () => {
    for (const [k, def] of Object.entries(OPERATIONAL_KEYS)) {
      const a = ans(
        [
          [
            k,
            k.endsWith('Digest')
              ? 'None'
              : k === 'InitialR2T' || k === 'ImmediateData' || k.includes('InOrder') || k.includes('Marker')
                ? 'Yes'
                : '1',
          ],
        ],
        DEFAULT_OFFER,
        true,
      );
      if (def.discoveryIrrelevant) expect(a[k]).toBe('Irrelevant');
      else expect(a[k]).not.toBe('Irrelevant');
    }
  });

  it('the allowed digest set is configurable; the initiator order decides within it', () => {
    const both = offerFromParams(undefined, ['CRC32C', 'None']);
    expect(ans([['HeaderDigest', 'None,CRC32C']], both)['HeaderDigest']).toBe('None');
    const crcOnly = offerFromParams(undefined, ['CRC32C']);
    expect(ans([['DataDigest', 'None']], crcOnly)['DataDigest']).toBe('Reject');
    const perTarget = offerFromParams({ HeaderDigest: 'CRC32C' }, undefined);
    expect(ans([['HeaderDigest', 'None,CRC32C']], perTarget)['HeaderDigest']).toBe('CRC32C');
  });
});
