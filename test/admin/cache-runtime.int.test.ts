/**
 * The block cache in the running daemon: one PageCache for the process, LUNs wrapped as the config
 * says, pages dropped when a LUN goes away or is reopened uncached, status counters.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type LunarConfig, loadConfig, parseConfig } from '../../src/admin/config.js';
import { Controller } from '../../src/admin/control.js';
import { type Runtime, startRuntime } from '../../src/admin/runtime.js';
import { CachedBackstore } from '../../src/backstore/index.js';
import { silentLogger } from '../../src/util/log.js';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const addr = srv.address();
  await new Promise<void>((r) => srv.close(() => r()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

const IQN = 'iqn.2026-11.io.lunar:cache';
const configText = (port: number, cacheSize: string, luns: string) => `portals:
  - listen: 127.0.0.1:${port}
cache: { size: ${cacheSize} }
targets:
  - name: ${IQN}
    luns:
${luns.replace(/\{ lun: (\d+),/g, (_m, n: string) => `{ lun: ${n}, id: "${n.padStart(16, '0')}",`)}`;

describe('block cache in the runtime', () => {
  let runtime: Runtime | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await runtime?.stop({ logoutTimeoutMs: 100 });
    runtime = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  const start = async (cacheSize: string, luns: string): Promise<{ config: LunarConfig; port: number }> => {
    dir = mkdtempSync(join(tmpdir(), 'lunar-cache-rt-'));
    const port = await freePort();
    const { config } = parseConfig(configText(port, cacheSize, luns), join(dir, 'lunar.yaml'));
    runtime = await startRuntime(config, dir, silentLogger);
    return { config, port };
  };

  it('wraps the LUNs the config caches in one shared cache; removing or uncaching a LUN drops its pages', async () => {
    const { config, port } = await start(
      '1M',
      `      - { lun: 0, backstore: memory, size: 1M, cache: true }
      - { lun: 1, backstore: memory, size: 1M }
      - { lun: 2, backstore: file, path: d.img, size: 1M }
`,
    );
    const rt = runtime as Runtime;
    expect(rt.cache?.capacityBytes).toBe(2 ** 20);
    const b0 = rt.backstores.get(`${IQN}/0`);
    const b2 = rt.backstores.get(`${IQN}/2`);
    expect(b0).toBeInstanceOf(CachedBackstore);
    expect(rt.backstores.get(`${IQN}/1`)).not.toBeInstanceOf(CachedBackstore);
    expect(b2).toBeInstanceOf(CachedBackstore);
    expect(b2?.kind).toBe('file');
    expect(b2?.description).toMatch(/block cache on/);

    const data = Buffer.alloc(8192, 0x5a);
    await b0?.write(0, data); // write-through: its 2 pages are cached
    expect((await b0?.read(0, 16))?.equals(data)).toBe(true);
    expect((await b0?.read(0, 16))?.equals(data)).toBe(true);
    await b2?.read(0, 64);
    expect(rt.cache?.stats()).toMatchObject({ pages: 2 + 8, hits: 2, misses: 1, luns: 2 });

    // LUN 0 removed: its pages go with it.
    const without0 = parseConfig(
      configText(
        port,
        '1M',
        `      - { lun: 1, backstore: memory, size: 1M }
      - { lun: 2, backstore: file, path: d.img, size: 1M }
`,
      ),
      join(dir ?? '', 'lunar.yaml'),
    ).config;
    await rt.reconcile(config, without0);
    expect(rt.cache?.stats()).toMatchObject({ pages: 8, luns: 1 });

    // LUN 2 switched to cache: false: reopened without the cache, its pages dropped.
    const uncached = parseConfig(
      configText(
        port,
        '1M',
        `      - { lun: 1, backstore: memory, size: 1M }
      - { lun: 2, backstore: file, path: d.img, size: 1M, cache: false }
`,
      ),
      join(dir ?? '', 'lunar.yaml'),
    ).config;
    await rt.reconcile(without0, uncached);
    expect(rt.backstores.get(`${IQN}/2`)).not.toBeInstanceOf(CachedBackstore);
    expect(rt.cache?.stats()).toMatchObject({ pages: 0, luns: 0 });

    // Target removed with a cached LUN: the pages go too.
    await rt.reconcile(uncached, without0);
    await rt.backstores.get(`${IQN}/2`)?.read(0, 8);
    expect(rt.cache?.stats().pages).toBe(1);
    await rt.reconcile(without0, { ...without0, targets: [] });
    expect(rt.cache?.stats()).toMatchObject({ pages: 0, luns: 0 });
  });

  it('control API: status and LUN views show the counters; PATCH cache: false reopens the LUN uncached', async () => {
    dir = mkdtempSync(join(tmpdir(), 'lunar-cache-rt-'));
    const file = join(dir, 'lunar.yaml');
    writeFileSync(
      file,
      configText(await freePort(), '2M', `      - { lun: 0, backstore: file, path: d.img, size: 1M }\n`),
    );
    const loaded = loadConfig(file);
    runtime = await startRuntime(loaded.config, dir, silentLogger);
    const c = new Controller({ loaded, runtime, dataDir: dir, log: silentLogger });
    const b = runtime.backstores.get(`${IQN}/0`);
    await b?.read(0, 8);
    await b?.read(0, 8);
    expect(c.status()['cache']).toMatchObject({ capacityBytes: 2 * 2 ** 20, pages: 1, hits: 1, misses: 1 });
    expect(c.target(IQN).luns[0]).toMatchObject({
      cache: true,
      cacheStats: { hits: 1, misses: 1, pages: 1 },
    });
    const view = await c.updateLun(IQN, 0, { cache: false });
    expect(view.cache).toBe(false);
    expect(view.cacheStats).toBeUndefined();
    expect(runtime.backstores.get(`${IQN}/0`)).not.toBeInstanceOf(CachedBackstore);
    expect(c.status()['cache']).toMatchObject({ pages: 0, luns: 0 });
    expect(readFileSync(file, 'utf8')).toMatch(/cache: false/);
  });

  it('cache size 0: no cache, no LUN wrapped', async () => {
    await start('0', `      - { lun: 0, backstore: file, path: d.img, size: 1M }\n`);
    const rt = runtime as Runtime;
    expect(rt.cache).toBeUndefined();
    expect(rt.backstores.get(`${IQN}/0`)).not.toBeInstanceOf(CachedBackstore);
  });
});
