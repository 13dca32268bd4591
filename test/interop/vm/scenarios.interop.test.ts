/**
 * The open-iscsi kernel initiator (in a qemu guest, ../shared/vm-initiator) against lunar.
 * Slow (about 1–2 min a scenario under TCG): `npm run test:interop -- test/interop/vm`.
 * Pick scenarios with VM_SCENARIOS=basic,auth-mutual,… (default: all below).
 * Needs the guest built once: ../shared/vm-initiator/build.sh (about 2 min).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
const vmi = resolve(root, '../shared/vm-initiator');
const hook = join(here, 'lunar-private.sh');
const cache = process.env['VMI_CACHE'] ?? '/var/cache/vm-initiator';

interface Case {
  readonly name: string;
  readonly scenario: string;
  readonly env?: Record<string, string>;
  readonly args?: readonly string[];
  readonly faultHook?: string;
  /** Serve a second portal (group 2) on port+1 and pass it as --portal2. */
  readonly portal2?: boolean;
  /** A scenario file of ours (test/interop/vm/NAME.sh) instead of a built-in scenario. */
  readonly file?: string;
}

const CHAP = { LUNAR_CHAP_USER: 'vmiuser', LUNAR_CHAP_SECRET: 'Secret12345678' };
const MUTUAL = { ...CHAP, LUNAR_MUTUAL_USER: 'vmitarget', LUNAR_MUTUAL_SECRET: 'TgtSecret98765' };
const CASES: readonly Case[] = [
  { name: 'basic', scenario: 'basic' },
  {
    name: 'basic-crc32c',
    scenario: 'basic',
    env: { LUNAR_DIGEST: 'CRC32C,None' },
    args: ['--header-digest', 'CRC32C', '--data-digest', 'CRC32C'],
  },
  {
    name: 'auth-chap',
    scenario: 'auth',
    env: CHAP,
    args: ['--chap-user', 'vmiuser', '--chap-secret', 'Secret12345678'],
  },
  {
    name: 'auth-mutual',
    scenario: 'auth',
    env: { ...MUTUAL, LUNAR_DIGEST: 'None,CRC32C' },
    args: [
      '--chap-user',
      'vmiuser',
      '--chap-secret',
      'Secret12345678',
      '--mutual-user',
      'vmitarget',
      '--mutual-secret',
      'TgtSecret98765',
      '--header-digest',
      'CRC32C',
      '--data-digest',
      'CRC32C',
    ],
  },
  { name: 'reconnect-kill9', scenario: 'reconnect', faultHook: 'kill9-restart' },
  { name: 'xfs-stress', scenario: 'xfs-stress' },
  { name: 'multipath', scenario: 'multipath', portal2: true },
  {
    name: 'multipath-alua',
    scenario: 'multipath-alua',
    file: 'multipath-alua.sh',
    portal2: true,
    env: { LUNAR_ALUA: '{ groups: { 1: active-optimized, 2: active-non-optimized }, explicit: true }' },
  },
  { name: 'pr2', scenario: 'pr2' },
  { name: 'pr-aptpl', scenario: 'pr-aptpl', file: 'pr-aptpl.sh', faultHook: 'restart' },
];

const wanted = (process.env['VM_SCENARIOS'] ?? '').split(',').filter(Boolean);
const ready = existsSync(join(cache, 'build.env')) && existsSync(join(root, 'dist/src/cli/lunar.js'));

describe.skipIf(!ready)('open-iscsi VM scenarios against lunar', () => {
  CASES.filter((c) => wanted.length === 0 || wanted.includes(c.name)).forEach((c, i) => {
    it(c.name, () => {
      const port = 3461 + i * 2;
      const dir = `/tmp/lunar-vm-${c.name}`;
      const env = {
        ...process.env,
        LUNAR_PORT: String(port),
        LUNAR_DIR: dir,
        LUNAR_IQN: 'iqn.2026-11.test:lunar-vm',
        ...(c.portal2 ? { LUNAR_PORT2: String(port + 1) } : {}),
        ...c.env,
      };
      spawnSync(hook, ['clean'], { env, stdio: 'inherit' });
      const up = spawnSync(hook, ['start'], { env, encoding: 'utf8' });
      expect(up.status, up.stdout + up.stderr).toBe(0);
      try {
        const outDir = join(root, '.bench-out/vm');
        mkdirSync(outDir, { recursive: true });
        const log = join(outDir, `${c.name}.serial.log`);
        const args = [
          '--portal',
          `127.0.0.1:${port}`,
          '--target',
          'iqn.2026-11.test:lunar-vm',
          '--lun',
          '1',
          ...(c.file ? ['--scenario-file', join(here, c.file)] : ['--scenario', c.scenario]),
          '--log',
          log,
          ...(c.args ?? []),
        ];
        if (c.faultHook) args.push('--fault-hook', `${hook} ${c.faultHook}`);
        if (c.portal2) args.push('--portal2', `127.0.0.1:${port + 1}`);
        const r = spawnSync(join(vmi, 'run.sh'), args, { env, encoding: 'utf8', timeout: 20 * 60_000 });
        writeFileSync(join(outDir, `${c.name}.out`), r.stdout + r.stderr);
        expect(r.status, `${c.name}: run.sh said\n${r.stdout}\n${r.stderr}`).toBe(0);
        expect(r.stdout).toMatch(/RESULT PASS/);
      } finally {
        spawnSync(hook, ['stop'], { env, stdio: 'inherit' });
      }
    });
  });
});
