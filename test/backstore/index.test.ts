import { describe, expect, it } from 'vitest';
import { BackstoreError, type BackstoreSpec, openBackstore } from '../../src/backstore/index.js';
import { rejection } from '../native/helpers.js';

describe('openBackstore validation', () => {
  const bad: Array<[unknown, RegExp]> = [
    [null, /^spec/],
    [{ kind: 'tape', size: 512 }, /^kind/],
    [{ kind: 'memory' }, /^size/],
    [{ kind: 'memory', size: 1000 }, /^size/],
    [{ kind: 'memory', size: -512 }, /^size/],
    [{ kind: 'memory', size: '1G' }, /^size/],
    [{ kind: 'null', size: 4096, blockSize: 1024 }, /^blockSize/],
    [{ kind: 'memory', size: 4096, readOnly: 'yes' }, /^readOnly/],
    [{ kind: 'file' }, /^path/],
    [{ kind: 'file', path: '' }, /^path/],
    [{ kind: 'file', path: '/x', direct: 1 }, /^direct/],
    [{ kind: 'file', path: '/x', create: 'true' }, /^create/],
    [{ kind: 'file', path: '/x', size: 100 }, /^size/],
    [{ kind: 'file', path: '/x', blockSize: 2048 }, /^blockSize/],
    [{ kind: 'file', path: '/x', engine: 'aio' }, /^engine/],
  ];
  for (const [spec, msg] of bad) {
    it(`rejects ${JSON.stringify(spec)}`, async () => {
      const e = await rejection(openBackstore(spec as BackstoreSpec));
      expect(e).toBeInstanceOf(BackstoreError);
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toMatch(msg);
    });
  }

  it('builds memory and null stores with default block size 512', async () => {
    const m = await openBackstore({ kind: 'memory', size: 1 << 20 });
    expect([m.kind, m.blockSize, m.blockCount]).toEqual(['memory', 512, 2048]);
    const n = await openBackstore({ kind: 'null', size: 1 << 20, blockSize: 4096 });
    expect([n.kind, n.blockSize, n.blockCount]).toEqual(['null', 4096, 256]);
    await Promise.all([m.close(), n.close()]);
  });
});
