import { describe, expect, it } from 'vitest';
import { openBackstore } from '../../src/backstore/index.js';
import { backstoreConformance } from './conformance.js';

backstoreConformance('null', {
  stores: false,
  open: (blockSize) => openBackstore({ kind: 'null', size: 8192 * blockSize, blockSize }),
});

describe('null backstore', () => {
  it('discards writes and reads zeros', async () => {
    const b = await openBackstore({ kind: 'null', size: 1 << 30 });
    await b.write(0, Buffer.alloc(4096, 0xff));
    expect((await b.read(0, 8)).every((x) => x === 0)).toBe(true);
    expect(await b.isMapped(0)).toBe(false);
    expect(b.capabilities.persistent).toBe(false);
    await b.close();
  });
});
