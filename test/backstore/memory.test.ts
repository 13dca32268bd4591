import { describe, expect, it } from 'vitest';
import { MEMORY_CHUNK, MemoryBackstore, openBackstore } from '../../src/backstore/index.js';
import { rejection } from '../native/helpers.js';
import { backstoreConformance } from './conformance.js';

backstoreConformance('memory', {
  stores: true,
  open: (blockSize) => openBackstore({ kind: 'memory', size: 8192 * blockSize, blockSize }),
});

describe('memory backstore', () => {
  it('is sparse: only written chunks take memory; unmap and zero writes free them', async () => {
    const b = new MemoryBackstore({ blockSize: 512, blockCount: 1 << 30 }); // 512 GiB, nothing allocated
    expect(b.allocatedBytes).toBe(0);
    await b.write(1000, Buffer.alloc(512, 1));
    expect(b.allocatedBytes).toBe(MEMORY_CHUNK);
    await b.write(5000, Buffer.alloc(4096)); // zeros into a hole stay a hole
    expect(b.allocatedBytes).toBe(MEMORY_CHUNK);
    await b.unmap(1000, 1);
    expect(b.allocatedBytes).toBe(0);
    expect(b.capabilities).toEqual({
      directIo: false,
      thin: true,
      readOnly: false,
      persistent: false,
      volatileCache: false,
    });
    await b.close();
  });

  it('read-only memory refuses writes', async () => {
    const b = await openBackstore({ kind: 'memory', size: 1 << 20, readOnly: true });
    expect(b.capabilities.readOnly).toBe(true);
    expect((await rejection(b.write(0, Buffer.alloc(512)))).code).toBe('READ_ONLY');
    expect((await rejection(b.unmap(0, 1))).code).toBe('READ_ONLY');
    expect((await rejection(b.writeSame(0, 1, null))).code).toBe('READ_ONLY');
    expect((await rejection(b.resize(1))).code).toBe('READ_ONLY');
    await b.close();
  });
});
