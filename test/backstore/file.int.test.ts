import { spawnSync } from 'node:child_process';
import { chmod, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BackstoreError,
  FileBackstore,
  openBackstore,
  openFileBackstore,
} from '../../src/backstore/index.js';
import { nativeLoaded } from '../../src/native/index.js';
import { diskScratch, patternBytes, rejection, tmpfsScratch } from '../native/helpers.js';
import { backstoreConformance } from './conformance.js';

let dir = '';
let cleanup: () => Promise<void> = async () => {};
let counter = 0;
const fresh = (name: string) => join(dir, `${name}-${++counter}.img`);

beforeAll(async () => {
  ({ dir, cleanup } = await diskScratch('backstore'));
});
afterAll(async () => {
  await cleanup();
});

for (const engine of ['io_uring', 'threadpool'] as const) {
  describe(`engine ${engine}`, () => {
    backstoreConformance('file', {
      stores: true,
      open: (blockSize) =>
        openBackstore({
          kind: 'file',
          path: fresh('conf'),
          size: 8192 * blockSize,
          blockSize,
          create: true,
          engine,
        }),
    });
  });
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  const e = await rejection(p);
  expect(e).toBeInstanceOf(BackstoreError);
  return e.code;
}

describe('file backstore', () => {
  it('uses O_DIRECT on a disk filesystem and says so', async () => {
    const b = await openBackstore({ kind: 'file', path: fresh('direct'), size: 1 << 20, create: true });
    expect(b.capabilities.directIo).toBe(nativeLoaded);
    expect(b.capabilities.persistent).toBe(true);
    expect(b.capabilities.volatileCache).toBe(true);
    expect(b.capabilities.thin).toBe(nativeLoaded);
    expect(b.description).toMatch(nativeLoaded ? /O_DIRECT/ : /buffered/);
    await b.close();
  });

  it('release(): a read buffer is reused by the next read of its size class; foreign or twice-released buffers are ignored', async () => {
    const b = await openBackstore({ kind: 'file', path: fresh('release'), size: 8 << 20, create: true });
    const big = patternBytes(1 << 20, 7);
    await b.write(0, big);
    await b.write(2048, patternBytes(1 << 20, 8));
    const first = await b.read(0, 2048);
    expect(first.equals(big)).toBe(true);
    const memory = first.buffer;
    b.release?.(first);
    b.release?.(first); // twice: ignored
    const second = await b.read(2048, 2048);
    expect(second.buffer).toBe(memory); // the same memory, refilled with the new range
    expect(second.equals(patternBytes(1 << 20, 8))).toBe(true);
    // A buffer still lent out is never handed out again.
    const third = await b.read(0, 2048);
    expect(third.buffer).not.toBe(memory);
    expect(second.equals(patternBytes(1 << 20, 8))).toBe(true);
    expect(third.equals(big)).toBe(true);
    // Small reads are pooled too; a foreign buffer is ignored and never handed out.
    const small = await b.read(0, 8);
    expect(small.equals(big.subarray(0, 4096))).toBe(true);
    const smallMemory = small.buffer;
    b.release?.(small);
    const foreign = Buffer.alloc(4096);
    b.release?.(foreign);
    const small2 = await b.read(8, 8);
    expect(small2.buffer).toBe(smallMemory);
    expect(small2.equals(big.subarray(4096, 8192))).toBe(true);
    expect((await b.read(16, 8)).buffer).not.toBe(foreign.buffer);
    await b.close();
  });

  it('creates a sparse file of the given size; data survives reopen', async () => {
    const p = fresh('persist');
    const b = await openBackstore({ kind: 'file', path: p, size: 64 << 20, create: true });
    expect(b.blockCount).toBe((64 << 20) / 512);
    const st = await stat(p);
    expect(st.size).toBe(64 << 20);
    expect(st.blocks * 512).toBeLessThan(1 << 20); // sparse
    const data = patternBytes(8192, 42);
    await b.write(777, data, { fua: true });
    await b.close();
    const again = await openBackstore({ kind: 'file', path: p });
    expect((await again.read(777, 16)).equals(data)).toBe(true);
    await again.close();
  });

  it('grows an existing smaller file to `size`, never shrinks', async () => {
    const p = fresh('grow');
    await writeFile(p, Buffer.alloc(1 << 20, 3));
    const b = await openBackstore({ kind: 'file', path: p, size: 4 << 20 });
    expect(b.blockCount).toBe((4 << 20) / 512);
    expect((await b.read(0, 1))[0]).toBe(3);
    await b.close();
    const c = await openBackstore({ kind: 'file', path: p, size: 1 << 20 });
    expect(c.blockCount).toBe((4 << 20) / 512);
    await c.close();
  });

  it.runIf(nativeLoaded)('unmap punches holes (space is freed)', async () => {
    const p = fresh('thin');
    const b = await openBackstore({ kind: 'file', path: p, size: 16 << 20, create: true });
    await b.writeSame(0, (8 << 20) / 512, patternBytes(512, 1));
    await b.flush();
    const full = (await stat(p)).blocks;
    expect(full * 512).toBeGreaterThanOrEqual(8 << 20);
    await b.unmap(0, (8 << 20) / 512);
    const after = (await stat(p)).blocks;
    expect(after * 512).toBeLessThan(1 << 20);
    expect(await b.isMapped(0)).toBe(false);
    await b.writeSame(100, 10, patternBytes(512, 2));
    expect(await b.isMapped(105)).toBe(true);
    await b.writeSame(0, 4096, null); // null pattern: punched, not written
    expect(await b.isMapped(105)).toBe(false);
    await b.close();
  });

  it('missing file without create → NOT_FOUND naming the path', async () => {
    const p = fresh('nope');
    const e = await rejection(openBackstore({ kind: 'file', path: p }));
    expect(e.code).toBe('NOT_FOUND');
    expect(e.message).toContain(p);
    expect(await code(openBackstore({ kind: 'file', path: p, readOnly: true, create: true }))).toBe(
      'NOT_FOUND',
    );
  });

  it('create without a size → INVALID_ARGUMENT naming size', async () => {
    const e = await rejection(openBackstore({ kind: 'file', path: fresh('nosize'), create: true }));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/^size/);
  });

  it('a directory or a too-small file is refused', async () => {
    expect(await code(openBackstore({ kind: 'file', path: dir }))).toBe('INVALID_ARGUMENT');
    const p = fresh('tiny');
    await writeFile(p, Buffer.alloc(100));
    expect(await code(openBackstore({ kind: 'file', path: p }))).toBe('INVALID_ARGUMENT');
  });

  it('readOnly open: reads work, every write is READ_ONLY', async () => {
    const p = fresh('ro');
    const w = await openBackstore({ kind: 'file', path: p, size: 1 << 20, create: true });
    await w.write(0, Buffer.alloc(512, 9));
    await w.close();
    await chmod(p, 0o444);
    const b = await openBackstore({ kind: 'file', path: p, readOnly: true });
    expect(b.capabilities.readOnly).toBe(true);
    expect((await b.read(0, 1))[0]).toBe(9);
    expect(await code(b.write(0, Buffer.alloc(512)))).toBe('READ_ONLY');
    expect(await code(b.write(0, Buffer.alloc(512), { fua: true }))).toBe('READ_ONLY');
    expect(await code(b.unmap(0, 1))).toBe('READ_ONLY');
    expect(await code(b.writeSame(0, 1, null))).toBe('READ_ONLY');
    expect(await code(b.resize(10))).toBe('READ_ONLY');
    await b.flush();
    await b.close();
  });

  it('a 0444 file opened for writing by a non-root user is served read-only', async () => {
    // Tests run as root, which ignores mode bits: run the check as `nobody` in a child process.
    const p = fresh('perm');
    await writeFile(p, Buffer.alloc(1 << 20));
    await chmod(p, 0o444);
    await chmod(dir, 0o755);
    if (process.getuid?.() !== 0) {
      const b = await openBackstore({ kind: 'file', path: p });
      expect(b.capabilities.readOnly).toBe(true);
      expect(await code(b.write(0, Buffer.alloc(512)))).toBe('READ_ONLY');
      await b.close();
      return;
    }
    // As root: the kernel's own answer for an unprivileged writer is what the fallback relies on.
    const r = spawnSync(process.execPath, ['-e', `require('fs').openSync(${JSON.stringify(p)}, 'r+')`], {
      uid: 65534,
      gid: 65534,
      encoding: 'utf8',
    });
    if (r.error === undefined) expect(r.stderr).toMatch(/EACCES/);
  });

  it('closed backstore → CLOSED; requests in flight at close complete', async () => {
    const b = await openBackstore({ kind: 'file', path: fresh('close'), size: 8 << 20, create: true });
    const reads = Array.from({ length: 32 }, (_, i) => b.read(i * 128, 128));
    const closing = b.close();
    const done = await Promise.all(reads);
    await closing;
    expect(done.every((r) => r.length === 65_536)).toBe(true);
    expect(await code(b.read(0, 1))).toBe('CLOSED');
  });

  it('4096-byte blocks', async () => {
    const b = await openFileBackstore({ path: fresh('4k'), size: 16 << 20, blockSize: 4096, create: true });
    expect(b).toBeInstanceOf(FileBackstore);
    expect(b.blockCount).toBe(4096);
    const d = patternBytes(3 * 4096, 5);
    await b.write(4095 - 2, d);
    expect((await b.read(4093, 3)).equals(d)).toBe(true);
    expect(await code(b.write(0, Buffer.alloc(512)))).toBe('MISALIGNED');
    await b.close();
  });

  it('direct: false opens buffered', async () => {
    const b = await openBackstore({
      kind: 'file',
      path: fresh('buffered'),
      size: 1 << 20,
      create: true,
      direct: false,
    });
    expect(b.capabilities.directIo).toBe(false);
    await b.write(1, Buffer.alloc(512, 1));
    expect((await b.read(1, 1))[0]).toBe(1);
    await b.close();
  });

  it('on tmpfs O_DIRECT is reported as not in use', async () => {
    const s = await tmpfsScratch('backstore');
    if (s === null) return;
    try {
      const b = await openBackstore({
        kind: 'file',
        path: join(s.dir, 'x.img'),
        size: 1 << 20,
        create: true,
      });
      expect(b.capabilities.directIo).toBe(false);
      expect(b.description).toMatch(/buffered/);
      await b.write(2, patternBytes(1024, 1));
      expect((await b.read(2, 2)).equals(patternBytes(1024, 1))).toBe(true);
      await b.close();
    } finally {
      await s.cleanup();
    }
  });
});
