import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  allocAligned,
  type BlockFile,
  fallback,
  nativeLoaded,
  openBlockFile,
  openNativeFile,
  submitHold,
} from '../../src/native/index.js';
import { diskScratch, inTmpfs, patternBytes, rejection } from './helpers.js';

let dir = '';
let cleanup: () => Promise<void> = async () => {};
let counter = 0;
const fresh = (name: string) => join(dir, `${name}-${++counter}.img`);

beforeAll(async () => {
  ({ dir, cleanup } = await diskScratch('native'));
});
afterAll(async () => {
  await cleanup();
});

const openers: Array<[string, typeof openBlockFile]> = [['fallback', fallback.openBlockFile]];
if (nativeLoaded) {
  openers.unshift(
    ['native io_uring', (p, o) => openNativeFile(p, { ...o, engine: 'io_uring' })],
    ['native threadpool', (p, o) => openNativeFile(p, { ...o, engine: 'threadpool' })],
  );
}

for (const [name, openFile] of openers) {
  describe(`${name} block file`, () => {
    it('creates, writes, reads back, sizes, truncates', async () => {
      const f = await openFile(fresh('rw'), { create: true, direct: true });
      try {
        expect(f.native).toBe(name.startsWith('native'));
        if (name === 'native threadpool') expect(f.engine).toBe('threadpool');
        if (name === 'native io_uring') expect(['io_uring', 'threadpool']).toContain(f.engine);
        if (name === 'fallback') expect(f.engine).toBe('node:fs');
        if (f.native) {
          expect(f.direct).toBe(true);
          expect(f.directNote).toBe('');
          expect(f.offsetAlign).toBeGreaterThanOrEqual(512);
        } else {
          expect(f.direct).toBe(false);
          expect(f.directNote).toMatch(/./);
        }
        expect(await f.size()).toBe(0);
        await f.truncate(1 << 20);
        expect(await f.size()).toBe(1 << 20);
        const data = allocAligned(65_536);
        patternBytes(65_536, 1).copy(data);
        expect(await f.write(data, 8192)).toBe(65_536);
        const back = allocAligned(65_536, { zero: false });
        expect(await f.read(back, 8192)).toBe(65_536);
        expect(back.equals(data)).toBe(true);
        // Reading past the end is short, not an error.
        const tail = allocAligned(8192);
        expect(await f.read(tail, (1 << 20) - 4096)).toBe(4096);
        expect(await f.read(tail, 1 << 21)).toBe(0);
        await f.datasync();
        await f.sync();
      } finally {
        await f.close();
      }
    });

    it('vectored I/O over several aligned buffers', async () => {
      const f = await openFile(fresh('vec'), { create: true, direct: true });
      try {
        const parts = [4096, 8192, 4096].map((n, i) => {
          const b = allocAligned(n);
          patternBytes(n, 10 + i).copy(b);
          return b;
        });
        expect(await f.writev(parts, 4096, true)).toBe(16_384);
        const whole = allocAligned(16_384);
        expect(await f.read(whole, 4096)).toBe(16_384);
        expect(whole.equals(Buffer.concat(parts))).toBe(true);
        const outs = [allocAligned(8192), allocAligned(8192)];
        expect(await f.readv(outs, 4096)).toBe(16_384);
        expect(Buffer.concat(outs).equals(whole)).toBe(true);
        expect(await f.writev([], 0)).toBe(0);
      } finally {
        await f.close();
      }
    });

    it('dsync write resolves after the data is durable', async () => {
      const f = await openFile(fresh('dsync'), { create: true, direct: true });
      try {
        const b = allocAligned(4096);
        b.fill(7);
        expect(await f.write(b, 0, true)).toBe(4096);
      } finally {
        await f.close();
      }
    });

    it('missing file → ENOENT with the path; create makes it', async () => {
      const p = fresh('missing');
      const e = await rejection(openFile(p, { direct: true }));
      expect(e.code).toBe('ENOENT');
      expect(e.message).toContain(p);
      const f = await openFile(p, { create: true });
      await f.close();
      expect((await stat(p)).isFile()).toBe(true);
    });

    it('a directory is refused', async () => {
      const e = await rejection(openFile(dir, {}));
      expect(e.code).toBe('EISDIR');
    });

    it('readOnly handles refuse writes, truncate and punch with EBADF', async () => {
      const p = fresh('ro');
      await writeFile(p, Buffer.alloc(8192, 1));
      const f = await openFile(p, { readOnly: true, direct: true });
      try {
        expect(f.readOnly).toBe(true);
        const b = allocAligned(4096);
        expect(await f.read(b, 0)).toBe(4096);
        expect(b[0]).toBe(1);
        for (const op of [
          () => f.write(b, 0),
          () => f.writev([b], 0),
          () => f.truncate(0),
          () => f.punchHole(0, 4096),
        ]) {
          const e = await rejection(op);
          expect(e.code).toBe('EBADF');
          expect(e.message).toMatch(/read-only/);
        }
      } finally {
        await f.close();
      }
    });

    it('closed handle → EBADF for every operation; closing twice is harmless', async () => {
      const f = await openFile(fresh('closed'), { create: true, direct: true });
      await f.close();
      expect(f.closed).toBe(true);
      await f.close();
      const b = allocAligned(4096);
      for (const op of [
        () => f.read(b, 0),
        () => f.write(b, 0),
        () => f.readv([b], 0),
        () => f.datasync(),
        () => f.size(),
        () => f.truncate(0),
        () => f.seekData(0),
      ]) {
        const e = await rejection(op);
        expect(e.code).toBe('EBADF');
        expect(e.message).toMatch(/closed/);
      }
    });

    it('close waits for requests in flight', async () => {
      const f = await openFile(fresh('inflight'), { create: true, direct: true });
      await f.truncate(4 << 20);
      const reads = Array.from({ length: 32 }, (_, i) => f.read(allocAligned(65_536), i * 65_536));
      const closing = f.close();
      const results = await Promise.all(reads);
      await closing;
      expect(results.every((n) => n === 65_536)).toBe(true);
    });

    it('600 requests in flight (beyond the io_uring ring size) all complete correctly', async () => {
      const f = await openFile(fresh('many'), { create: true, direct: true });
      try {
        await f.truncate(600 * 4096);
        await Promise.all(
          Array.from({ length: 600 }, (_, i) => {
            const b = allocAligned(4096);
            b.fill(i & 0xff);
            b.writeUInt32LE(i, 0);
            return f.write(b, i * 4096);
          }),
        );
        const bufs = Array.from({ length: 600 }, () => allocAligned(4096, { zero: false }));
        const ns = await Promise.all(bufs.map((b, i) => f.read(b, i * 4096)));
        expect(ns.every((n) => n === 4096)).toBe(true);
        for (const [i, b] of bufs.entries()) {
          expect(b.readUInt32LE(0)).toBe(i);
          expect(b[4095]).toBe(i & 0xff);
        }
        await f.datasync();
      } finally {
        await f.close();
      }
    });

    it('bad arguments are coded errors, never crashes', async () => {
      const f = await openFile(fresh('args'), { create: true });
      const any = f as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
      try {
        const cases: Array<[string, unknown[], string]> = [
          ['read', ['nope', 0], 'ERR_INVALID_ARG_TYPE'],
          ['read', [new Uint16Array(4), 0], 'ERR_INVALID_ARG_TYPE'],
          ['read', [Buffer.alloc(8), -1], 'ERR_OUT_OF_RANGE'],
          ['read', [Buffer.alloc(8), 1.5], 'ERR_OUT_OF_RANGE'],
          ['read', [Buffer.alloc(8), '0'], 'ERR_INVALID_ARG_TYPE'],
          ['write', [Buffer.alloc(8), 2 ** 53], 'ERR_OUT_OF_RANGE'],
          ['write', [Buffer.alloc(8), Number.MAX_SAFE_INTEGER], 'ERR_OUT_OF_RANGE'],
          ['readv', ['x', 0], 'ERR_INVALID_ARG_TYPE'],
          ['writev', [[Buffer.alloc(8), 5], 0], 'ERR_INVALID_ARG_TYPE'],
          ['truncate', [-5], 'ERR_OUT_OF_RANGE'],
          ['seekData', [Number.NaN], 'ERR_OUT_OF_RANGE'],
        ];
        for (const [m, args, code] of cases) {
          const e = await rejection(() => any[m]!.apply(f, args));
          expect(e.code, `${m}(${String(args)})`).toBe(code);
        }
      } finally {
        await f.close();
      }
      expect((await rejection(openFile('', {}))).code).toBe('ERR_INVALID_ARG_VALUE');
      expect((await rejection(openFile('a\0b', {}))).code).toBe('ERR_INVALID_ARG_VALUE');
      expect((await rejection(openFile(42 as unknown as string, {}))).code).toBe('ERR_INVALID_ARG_TYPE');
    });

    it('seekData/seekHole describe a sparse file', async () => {
      const f = await openFile(fresh('sparse'), { create: true, direct: true });
      try {
        await f.truncate(8 << 20);
        const b = allocAligned(65_536);
        b.fill(9);
        await f.write(b, 4 << 20);
        await f.datasync();
        const d = await f.seekData(0);
        if (f.native) {
          expect(d).toBe(4 << 20);
          expect(await f.seekHole(4 << 20)).toBeGreaterThanOrEqual((4 << 20) + 65_536);
        } else {
          expect(d).toBe(0); // no SEEK_DATA from node:fs: all data
        }
        expect(await f.seekData(8 << 20)).toBe(-1);
      } finally {
        await f.close();
      }
    });
  });
}

describe.runIf(nativeLoaded)('native-only behaviour', () => {
  let f: BlockFile;
  beforeAll(async () => {
    f = await openNativeFile(fresh('align'), { create: true, direct: true });
    await f.truncate(1 << 20);
  });
  afterAll(async () => {
    await f.close();
  });

  it('O_DIRECT misuse is EINVAL_ALIGN with a clear message', async () => {
    expect(f.direct).toBe(true);
    const aligned = allocAligned(8192);
    const cases: Array<[() => Promise<unknown>, RegExp]> = [
      [() => f.read(aligned.subarray(1, 4097), 0), /aligned to/],
      [() => f.write(aligned.subarray(8, 4104), 0), /aligned to/],
      [() => f.read(aligned.subarray(0, 100), 0), /length/],
      [() => f.write(aligned, 100), /offset/],
      [() => f.readv([aligned.subarray(0, 4096), aligned.subarray(4096, 4196)], 0), /length/],
    ];
    for (const [op, msg] of cases) {
      const e = await rejection(op);
      expect(e.code).toBe('EINVAL_ALIGN');
      expect(e.message).toMatch(msg);
    }
  });

  it('punch hole deallocates and reads zeros', async () => {
    const b = allocAligned(65_536);
    b.fill(0xab);
    await f.write(b, 0);
    await f.punchHole(0, 32_768);
    const back = allocAligned(65_536, { zero: false });
    await f.read(back, 0);
    expect(back.subarray(0, 32_768).every((x) => x === 0)).toBe(true);
    expect(back.subarray(32_768).every((x) => x === 0xab)).toBe(true);
    expect(await f.seekData(0)).toBe(32_768);
  });

  it('allocate preallocates (and extends)', async () => {
    const before = await f.size();
    await f.allocate(before, 65_536);
    expect(await f.size()).toBe(before + 65_536);
  });

  it('the native and fallback twins agree on file contents', async () => {
    const p = fresh('twin');
    const n = await openNativeFile(p, { create: true, direct: true });
    const data = allocAligned(131_072);
    patternBytes(data.length, 77).copy(data);
    await n.write(data, 65_536);
    await n.close();
    const t = await fallback.openBlockFile(p, { readOnly: true });
    const back = Buffer.alloc(131_072);
    expect(await t.read(back, 65_536)).toBe(131_072);
    expect(back.equals(data)).toBe(true);
    expect(await t.size()).toBe(196_608);
    await t.close();
  });

  it('the FileHandle class cannot be constructed from JS', async () => {
    const { createRequire } = await import('node:module');
    const { fileURLToPath } = await import('node:url');
    const require = createRequire(import.meta.url);
    const addonPath = join(
      fileURLToPath(new URL('../../', import.meta.url)),
      'build/Release/lunar_native.node',
    );
    const addon = require(addonPath) as {
      FileHandle: new (...a: unknown[]) => unknown;
      open: (...a: unknown[]) => unknown;
    };
    expect(() => new addon.FileHandle()).toThrow(
      expect.objectContaining({ code: 'ERR_ILLEGAL_CONSTRUCTOR' }),
    );
    expect(() => addon.open(42)).toThrow(TypeError);
    expect(() => addon.open('/x', 'yes')).toThrow(TypeError);
  });

  it('a file without write permission opens for read (mode bits respected unless root)', async () => {
    const p = fresh('perm');
    await writeFile(p, Buffer.alloc(4096));
    await chmod(p, 0o444);
    const ro = await openNativeFile(p, { readOnly: true, direct: true });
    expect(ro.readOnly).toBe(true);
    await ro.close();
    if (process.getuid?.() !== 0) {
      const e = await rejection(openNativeFile(p, { direct: true }));
      expect(e.code).toBe('EACCES');
    }
  });
});

describe.runIf(nativeLoaded)('tmpfs', () => {
  it('O_DIRECT on tmpfs is reported as not in use (direct: false, with the reason)', async () => {
    await inTmpfs('native', async (mem) => {
      const f = await openBlockFile(join(mem, 'x.img'), { create: true, direct: true });
      expect(f.direct).toBe(false);
      expect(f.directNote).toMatch(/tmpfs|O_DIRECT|buffered/);
      // Buffered: any alignment works.
      expect(await f.write(Buffer.from('hello'), 3)).toBe(5);
      const b = Buffer.alloc(8);
      expect(await f.read(b, 0)).toBe(8);
      expect(b.subarray(3).toString()).toBe('hello');
      await f.close();
    });
  });
});

describe.runIf(nativeLoaded)('submitHold: io_uring submissions held and released as one batch', () => {
  it('held writes complete after the release, or before the loop waits when none comes', async () => {
    const f = await openNativeFile(fresh('hold'), { create: true, direct: true, engine: 'io_uring' });
    try {
      if (f.engine !== 'io_uring') return; // no io_uring on this kernel: nothing is held
      const bufs = [1, 2, 3].map((seed) => {
        const b = allocAligned(4096);
        b.set(patternBytes(4096, seed));
        return b;
      });
      submitHold(true);
      submitHold(true); // nested
      const writes = bufs.map((b, i) => f.write(b, i * 4096));
      submitHold(false);
      submitHold(false);
      submitHold(false); // one release too many: harmless
      expect(await Promise.all(writes)).toEqual([4096, 4096, 4096]);
      // Held and never released: the loop submits before it blocks.
      submitHold(true);
      const back = allocAligned(3 * 4096);
      expect(await f.read(back, 0)).toBe(3 * 4096);
      submitHold(false);
      expect(back.equals(Buffer.concat(bufs))).toBe(true);
      expect(() => submitHold('yes' as unknown as boolean)).toThrow(/expects a boolean/);
    } finally {
      await f.close();
    }
  });
});

describe.runIf(nativeLoaded)('memory-backed files: small transfers inline', () => {
  type Native = BlockFile & { inflight: number; memoryBacked: boolean; inlineMax: number };
  for (const engine of ['io_uring', 'threadpool'] as const) {
    it(`${engine}: up to inlineMax bytes run inline (nothing in flight), larger ones through the engine`, async () => {
      await inTmpfs('native', async (mem) => {
        const f = (await openNativeFile(join(mem, 'm.img'), {
          create: true,
          direct: true,
          engine,
        })) as Native;
        expect(f.memoryBacked).toBe(true);
        expect(f.inlineMax).toBe(1024 * 1024);
        const small = patternBytes(4096, 1);
        const w = f.write(small, 8192, true);
        expect(f.inflight).toBe(0); // done before write() returned
        expect(await w).toBe(4096);
        const back = Buffer.alloc(4096);
        const r = f.read(back, 8192);
        expect(f.inflight).toBe(0);
        expect(await r).toBe(4096);
        expect(back.equals(small)).toBe(true);
        expect(await f.writev([small.subarray(0, 1000), small.subarray(1000)], 0)).toBe(4096);
        expect(await f.read(back, 20_000)).toBe(0); // past the end: 0 bytes, like the engines
        const ds = f.datasync();
        expect(f.inflight).toBe(0);
        await ds;
        // Over inlineMax: submitted to the engine. While it is in flight a small request does not
        // run inline either (it would overtake the one submitted before it).
        const big = patternBytes(2 * 1024 * 1024, 2);
        const wb = f.write(big, 0);
        expect(f.inflight).toBe(1);
        const ws = f.write(small, 4096);
        expect(f.inflight).toBe(2);
        expect(await wb).toBe(big.length);
        expect(await ws).toBe(4096);
        const all = Buffer.alloc(big.length);
        expect(await f.read(all, 0)).toBe(big.length);
        if (engine === 'io_uring') {
          // io_uring runs buffered writes to one file in submission order (io-wq hashes them per
          // inode): the small write landed last.
          expect(all.subarray(4096, 8192).equals(small)).toBe(true);
        }
        expect(all.subarray(8192).equals(big.subarray(8192))).toBe(true);
        await f.close();
        expect(await rejection(f.write(small, 0))).toMatchObject({ code: 'EBADF' });
      });
    });
  }

  type Mapped = Native & { mapped: boolean };
  const openMem = async (
    path: string,
    opts: { readOnly?: boolean; engine?: 'io_uring' | 'threadpool' } = {},
  ) => (await openNativeFile(path, { create: opts.readOnly !== true, direct: true, ...opts })) as Mapped;

  it('inline transfers copy through a shared mapping: other readers and writers see the same bytes', async () => {
    await inTmpfs('native', async (mem) => {
      const path = join(mem, 'map.img');
      await writeFile(path, patternBytes(1 << 20, 3)); // fully allocated: reads use the mapping too
      const f = await openMem(path);
      expect(f.mapped).toBe(false); // mapped at the first inline transfer
      const data = patternBytes(8192 + 100, 4);
      expect(await f.write(data, 4096 + 7)).toBe(data.length); // unaligned offset and length
      expect(f.mapped).toBe(true);
      const outside = await readFile(path);
      expect(outside.subarray(4096 + 7, 4096 + 7 + data.length).equals(data)).toBe(true);
      expect(outside.subarray(0, 4096 + 7).equals(patternBytes(1 << 20, 3).subarray(0, 4096 + 7))).toBe(true);
      // 64 KiB or more: streaming stores, here from an odd offset with an odd length.
      const large = patternBytes(200_003, 8);
      expect(await f.write(large, 300_001)).toBe(large.length);
      const seen = await readFile(path);
      expect(seen.subarray(300_001, 300_001 + large.length).equals(large)).toBe(true);
      expect(seen[300_000]).toBe(patternBytes(1 << 20, 3)[300_000]);
      expect(seen[300_001 + large.length]).toBe(patternBytes(1 << 20, 3)[300_001 + large.length]);
      // Written by someone else: our read through the mapping sees it.
      const fd = await open(path, 'r+');
      await fd.write(Buffer.from('from outside'), 0, 12, 500_000);
      await fd.close();
      const back = Buffer.alloc(12);
      expect(await f.read(back, 500_000)).toBe(12);
      expect(back.toString()).toBe('from outside');
      // writev / readv of several pieces, and a transfer that runs past the mapped size.
      const parts = [patternBytes(3000, 5), patternBytes(5192, 6)];
      expect(await f.writev(parts, 65536, true)).toBe(8192);
      const got = [Buffer.alloc(4096), Buffer.alloc(4096)];
      expect(await f.readv(got, 65536)).toBe(8192);
      expect(Buffer.concat(got).equals(Buffer.concat(parts))).toBe(true);
      expect(await f.write(patternBytes(4096, 7), (1 << 20) - 2048)).toBe(4096); // grows the file
      expect((await stat(path)).size).toBe((1 << 20) + 2048);
      const tail = Buffer.alloc(4096);
      expect(await f.read(tail, (1 << 20) - 2048)).toBe(4096);
      expect(tail.equals(patternBytes(4096, 7))).toBe(true);
      await f.close();
      expect(f.mapped).toBe(false);
    });
  });

  it('a file shrunk under the mapping: the write faults, falls back to pwrite, and lands', async () => {
    await inTmpfs('native', async (mem) => {
      const path = join(mem, 'shrink.img');
      await writeFile(path, Buffer.alloc(1 << 20));
      const f = await openMem(path);
      await f.write(patternBytes(4096, 1), 0);
      expect(f.mapped).toBe(true);
      await truncate(path, 8192); // behind lunar's back: the mapping's pages past 8 KiB are gone
      const data = patternBytes(4096, 2);
      expect(await f.write(data, 512 * 1024)).toBe(4096); // SIGBUS in the copy, caught
      expect(f.mapped).toBe(false);
      const back = Buffer.alloc(4096);
      expect(await f.read(back, 512 * 1024)).toBe(4096);
      expect(back.equals(data)).toBe(true);
      expect((await stat(path)).size).toBe(512 * 1024 + 4096);
      // A read past the new end from the mapping would fault as well: plain pread, 0 bytes.
      expect(await f.read(back, 600 * 1024)).toBe(0);
      await f.close();
    });
  });

  it('holes: writes map pages as pwrite would; reads of a sparse or punched file use pread', async () => {
    await inTmpfs('native', async (mem) => {
      const path = join(mem, 'sparse.img');
      const f = await openMem(path);
      await f.truncate(1 << 20);
      const data = patternBytes(4096, 9);
      await f.write(data, 8192);
      expect(f.mapped).toBe(true); // mapped after the truncate, over the new size
      const back = Buffer.alloc(4096);
      await f.read(back, 8192);
      expect(back.equals(data)).toBe(true);
      await f.read(back, 65536); // a hole: zeros, and no page allocated for it
      expect(back.equals(Buffer.alloc(4096))).toBe(true);
      expect((await stat(path)).blocks * 512).toBe(4096);
      await f.punchHole(8192, 4096);
      await f.read(back, 8192);
      expect(back.equals(Buffer.alloc(4096))).toBe(true);
      await f.write(data, 12288);
      expect((await stat(path)).blocks * 512).toBe(4096);
      await f.close();
    });
  });

  it('a full tmpfs: a write into a hole faults in the mapping and fails with ENOSPC, no crash', async () => {
    // Needs a tmpfs of its own (1 MiB) to fill: root, and mount allowed; otherwise nothing to test.
    const mnt = await mkdtemp(join(tmpdir(), 'lunar-full-'));
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]).status !== 0) {
      await rm(mnt, { recursive: true, force: true });
      return;
    }
    try {
      const path = join(mnt, 'full.img');
      const f = await openMem(path);
      await f.truncate(4 << 20); // sparse, larger than the filesystem
      await f.write(patternBytes(4096, 1), 0);
      expect(f.mapped).toBe(true);
      let err: (Error & { code?: string }) | null = null;
      for (let at = 65536; at < 4 << 20 && err === null; at += 65536) {
        try {
          await f.write(patternBytes(65536, 2), at);
        } catch (e) {
          err = e as Error & { code?: string };
        }
      }
      expect(err).toMatchObject({ code: 'ENOSPC' });
      expect(f.mapped).toBe(false);
      const back = Buffer.alloc(4096);
      expect(await f.read(back, 0)).toBe(4096); // the handle still works
      expect(back.equals(patternBytes(4096, 1))).toBe(true);
      await f.close();
    } finally {
      spawnSync('umount', [mnt]);
      await rm(mnt, { recursive: true, force: true });
    }
  });

  it('read-only handles map read-only; LUNAR_MEMFILE_MMAP=0 keeps pread/pwrite', async () => {
    await inTmpfs('native', async (mem) => {
      const path = join(mem, 'ro.img');
      const content = patternBytes(65536, 11);
      await writeFile(path, content);
      const ro = await openMem(path, { readOnly: true });
      const back = Buffer.alloc(4096);
      await ro.read(back, 4096);
      expect(ro.mapped).toBe(true);
      expect(back.equals(content.subarray(4096, 8192))).toBe(true);
      expect(await rejection(ro.write(back, 0))).toMatchObject({ code: 'EBADF' });
      await ro.close();
      process.env['LUNAR_MEMFILE_MMAP'] = '0';
      try {
        const f = await openMem(path);
        await f.write(back, 0);
        expect(f.mapped).toBe(false);
        expect(f.inflight).toBe(0); // still inline
        await f.close();
      } finally {
        delete process.env['LUNAR_MEMFILE_MMAP'];
      }
      expect((await readFile(path)).subarray(0, 4096).equals(content.subarray(4096, 8192))).toBe(true);
    });
  });

  it('files on a disk are not memory-backed and never run inline', async () => {
    const f = (await openNativeFile(fresh('disk'), { create: true, direct: true })) as Native;
    try {
      expect(f.memoryBacked).toBe(false);
      expect(f.inlineMax).toBe(0);
      const w = f.write(allocAligned(4096), 0);
      expect(f.inflight).toBe(1);
      await w;
    } finally {
      await f.close();
    }
  });
});
