import { describe, expect, it } from 'vitest';
import { Asc, ascName, buildSense, parseSense, SenseKey } from '../../src/scsi/sense.js';

describe('sense data', () => {
  const cases = [
    { key: SenseKey.ILLEGAL_REQUEST, code: Asc.INVALID_FIELD_IN_CDB, field: { cdb: true, byte: 1, bit: 7 } },
    {
      key: SenseKey.ILLEGAL_REQUEST,
      code: Asc.INVALID_FIELD_IN_PARAMETER_LIST,
      field: { cdb: false, byte: 300 },
    },
    { key: SenseKey.MISCOMPARE, code: Asc.MISCOMPARE_DURING_VERIFY_OPERATION, information: 1234 },
    { key: SenseKey.UNIT_ATTENTION, code: Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED },
  ] as const;

  it.each(cases)('round-trips fixed and descriptor formats: %o', (info) => {
    for (const desc of [false, true]) {
      const b = buildSense(info, desc);
      expect(b[0]! & 0x7f).toBe(desc ? 0x72 : 0x70);
      const p = parseSense(b)!;
      expect(p.key).toBe(info.key);
      expect(p.code).toBe(info.code);
      expect(p.information).toBe('information' in info ? info.information : undefined);
      expect(p.field).toEqual('field' in info ? info.field : undefined);
    }
  });

  it('fixed format layout (SPC-4 §4.5.3)', () => {
    const b = buildSense(
      { key: 5, code: 0x2400, field: { cdb: true, byte: 2, bit: 5 }, information: 7 },
      false,
    );
    expect(b.length).toBe(18);
    expect([b[0], b[2], b[7], b[12], b[13], b[15], b[16], b[17]]).toEqual([0xf0, 5, 10, 0x24, 0, 0xcd, 0, 2]);
    expect(b.readUInt32BE(3)).toBe(7);
  });

  it('descriptor format layout (SPC-4 §4.5.2)', () => {
    const b = buildSense({ key: 0xe, code: 0x1d00, information: 9 }, true);
    expect([b[0], b[1], b[2], b[3], b[7]]).toEqual([0x72, 0xe, 0x1d, 0, 12]);
    expect([b[8], b[9], b[10]]).toEqual([0, 0x0a, 0x80]);
    expect(Number(b.readBigUInt64BE(12))).toBe(9);
  });

  it('names every ASC in the table', () => {
    expect(ascName(0x2400)).toBe('INVALID_FIELD_IN_CDB');
    expect(ascName(0x9999)).toBe('ASC_0x9999');
    expect(new Set(Object.values(Asc)).size).toBe(Object.values(Asc).length);
  });
});
