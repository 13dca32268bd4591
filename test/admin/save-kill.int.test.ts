/**
 * A kill during save leaves the old or the new config file, never a torn one: a child process
 * saves two different documents in a loop (writeFileAtomic: temp file, fsync, rename) and is
 * killed with SIGKILL at random moments; after every kill the file parses and is one of the two.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/admin/config.js';
import { ensureBuilt, ROOT, tmp } from '../cli/daemon.js';

const doc = (n: number, luns: number) =>
  `# config ${n}\nportals:\n  - listen: 127.0.0.1:3260\ntargets:\n  - tid: 1\n    name: iqn.2026-11.com.example:t${n}\n    luns:\n${Array.from(
    { length: luns },
    (_, i) =>
      `      - lun: ${i}\n        backstore: memory\n        size: 1M\n        id: "${(n * 1000 + i).toString(16).padStart(16, '0')}"\n`,
  ).join('')}`;

describe('atomic save', () => {
  beforeAll(() => ensureBuilt(), 120_000);

  it('SIGKILL in the middle of a save loop never leaves a torn file', async () => {
    const dir = tmp('lunar-save-');
    const file = join(dir, 'lunar.yaml');
    // big documents so a write takes a while and kills land inside writes
    const a = doc(1, 400);
    const b = doc(2, 900);
    writeFileSync(file, a);
    const script = `
      import { writeFileAtomic } from ${JSON.stringify(join(ROOT, 'dist/src/admin/config.js'))};
      const docs = ${JSON.stringify([a, b])};
      process.stdout.write('ready\\n');
      for (let i = 0; ; i++) writeFileAtomic(${JSON.stringify(file)}, docs[i % 2]);
    `;
    for (let round = 0; round < 25; round++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((r) => child.stdout?.once('data', () => r()));
      await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 40)));
      process.kill(child.pid ?? 0, 'SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const text = readFileSync(file, 'utf8');
      expect(text === a || text === b).toBe(true);
      const { config } = parseConfig(text, file);
      expect(config.targets[0]?.luns.length === 400 || config.targets[0]?.luns.length === 900).toBe(true);
    }
    // kills landed inside saves (their temp files are left), yet the config was never torn
    expect(readdirSync(dir).filter((f) => f.startsWith('lunar.yaml.tmp-')).length).toBeGreaterThan(0);
    expect(readdirSync(dir).filter((f) => !f.startsWith('lunar.yaml.tmp-') && f !== 'lunar.yaml')).toEqual(
      [],
    );
  });
});
