/**
 * qemu-img (libiscsi through qemu's iscsi driver) against lunar: a 256 MiB random raw image is
 * converted onto the LUN and back, byte-identical.
 *
 *   npm run build && npx vitest run --project integration test/conformance/qemu-img.int.test.ts
 */
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningTarget, run, startLunar } from '../../bench/iscsi-procs.js';

const PORT = Number(process.env['INTEROP_PORT'] ?? 3370);
const IQN = 'iqn.2026-11.io.lunar.interop:qemu';
const IMAGE = 256 << 20;

function sha256(file: string, bytes: number): Promise<string> {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(file, { start: 0, end: bytes - 1 })
      .on('data', (d) => h.update(d))
      .on('error', rej)
      .on('end', () => res(h.digest('hex')));
  });
}

describe('qemu-img convert to and from a lunar LUN', () => {
  let dir = '';
  let target: RunningTarget | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lunar-interop-qemu-'));
    await run('dd', [
      'if=/dev/urandom',
      `of=${join(dir, 'src.img')}`,
      'bs=1M',
      `count=${IMAGE >> 20}`,
      'status=none',
    ]);
    target = await startLunar({
      dir: join(dir, 'lunar'),
      iqn: IQN,
      ports: [PORT],
      // A file LUN larger than the image, with lunar's default I/O settings (O_DIRECT).
      luns: [{ lun: 0, backstore: 'file', path: 'disk0.img', size: '320M' }],
    });
  });

  afterAll(async () => {
    await target?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('round-trips 256 MiB of random data byte for byte', async () => {
    const t = target!;
    const src = join(dir, 'src.img');
    const out = join(dir, 'out.img');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', '-n', src, t.url], { timeoutMs: 600_000 });
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', t.url, out], { timeoutMs: 600_000 });
    expect(statSync(out).size).toBeGreaterThanOrEqual(IMAGE);
    const [a, b] = await Promise.all([sha256(src, IMAGE), sha256(out, IMAGE)]);
    expect(b).toBe(a);
    expect(t.exited(), t.output()).toBeUndefined();
  });
});
