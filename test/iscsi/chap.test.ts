import { describe, expect, it } from 'vitest';
import { chapResponse, chapVerify, decodeBinaryValue, decodeNumber } from '../../src/iscsi/session/chap.js';

// Vectors computed with Python hashlib: H(0x07 ‖ "secret-123456" ‖ 00 01 … 0f).
const VECTORS: [number, string][] = [
  [5, 'd88919fd098dc0a52f314d154cf8091b'],
  [6, '0887f9ed4d7ce14b6c320d3a6a01b03bd8ce6bfb'],
  [7, 'c4197d60148e0637729f7c0ca4ea7b802768c269ab7b78d7a2457d12a41baf39'],
  [8, '6d45862cef4edc85762f086cc551ec02f2824c3dd62b3b6c908dc0c8b67c3102'],
];

describe('CHAP', () => {
  const challenge = Buffer.from([...Array(16).keys()]);
  it.each(VECTORS)('CHAP_A=%i vector', (alg, hex) => {
    expect(chapResponse(alg, 7, 'secret-123456', challenge).toString('hex')).toBe(hex);
    expect(chapVerify(alg, 7, 'secret-123456', challenge, Buffer.from(hex, 'hex'))).toBe(true);
    expect(chapVerify(alg, 8, 'secret-123456', challenge, Buffer.from(hex, 'hex'))).toBe(false);
  });
  it('decodes hex and base64 binary values', () => {
    expect(decodeBinaryValue('0x0102ff')?.toString('hex')).toBe('0102ff');
    expect(decodeBinaryValue('0X102')?.toString('hex')).toBe('0102');
    expect(decodeBinaryValue('0bAQL/')?.toString('hex')).toBe('0102ff');
    expect(decodeBinaryValue('0xZZ')).toBeUndefined();
    expect(decodeBinaryValue('1234')).toBeUndefined();
    expect(decodeNumber('0x10')).toBe(16);
    expect(decodeNumber('255')).toBe(255);
  });
});
