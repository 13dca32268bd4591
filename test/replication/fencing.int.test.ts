import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Resource } from '../../src/replication/resource.js';
import { resourceStatus } from '../../src/replication/status.js';
import { backstoreOf, clusterConfig, MiB, startCluster, stopAll, tempDir } from './helpers.js';

const t = tempDir('lunar-repl-fence-');
afterAll(() => t.cleanup());
let running: Resource[] = [];
afterEach(async () => {
  await stopAll(running);
  running = [];
});

async function pair(dir: string, port: number, exitCode: number) {
  mkdirSync(dir);
  const mark = join(dir, 'fenced');
  const cfg = clusterConfig(dir, {
    basePort: port,
    size: 8 * MiB,
    extra: {
      fencing: 'resource-and-stonith',
      fencePeer: `sleep 0.3; echo "$LUNAR_RESOURCE $LUNAR_PEER_ID" > ${mark}; exit ${exitCode}`,
    },
  });
  running = await startCluster(cfg);
  const [a, b] = running as [Resource, Resource];
  await a.waitConnect(5000);
  await a.newCurrentUuidClearBitmap();
  await a.primary();
  await b.waitSync(5000);
  return { a, b, mark };
}

describe('fencing resource-and-stonith', () => {
  it('freezes I/O when the peer is lost and resumes when fence-peer reports success (exit 7)', async () => {
    const { a, b, mark } = await pair(join(t.dir, 'ok'), 7897, 7);
    const events: string[] = [];
    a.on('event', (l) => events.push(l));
    await b.down();
    const t0 = Date.now();
    await backstoreOf(a).write(0, Buffer.alloc(4096, 1));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(readFileSync(mark, 'utf8').trim()).toBe('r0 1');
    expect(events.some((l) => l.startsWith('call helper') && l.includes('fence-peer'))).toBe(true);
    expect(events).toContain('response helper name:r0 peer-node-id:1 helper:fence-peer status:7');
    expect(resourceStatus(a).suspended).toEqual([]);
  });

  it('stays frozen when fence-peer fails, until resume-io', async () => {
    const { a, b, mark } = await pair(join(t.dir, 'fail'), 7897, 1);
    await b.down();
    let done = false;
    const w = backstoreOf(a)
      .write(0, Buffer.alloc(4096, 2))
      .then(() => {
        done = true;
      });
    await new Promise((r) => setTimeout(r, 800));
    expect(existsSync(mark)).toBe(true);
    expect(done).toBe(false);
    expect(resourceStatus(a).suspended).toContain('fencing');
    a.resumeIo();
    await w;
    expect(done).toBe(true);
  });
});
