/**
 * libiscsi's conformance suite (iscsi-test-cu, Debian libiscsi-bin) against lunar, through
 * ../shared/conformance/libiscsi-suite.mjs, in the configurations that enable each command set:
 *
 *   default    file LUN, two portals (MultipathIO runs), -t ALL
 *   removable  memory LUN (thin provisioned) with removable media, two portals, -t ALL
 *   sanitize   file LUN, one portal, -t ALL.Sanitize (see below)
 *   readonly   read-only LUN, -t ALL.ReadOnly (a full run on a read-only LUN fails every write
 *              test by design)
 *   lbppb-*    thin LUN of 512-byte logical blocks on 4096-byte physical blocks: the WriteSame10,
 *              WriteSame16 and CompareAndWrite suites, whose LBPPB tests skip elsewhere
 *
 * A test counts as passed if it passes in a configuration that enables it; a test that fails in
 * every configuration it ran in fails here. Why Sanitize gets its own one-portal run: with a second
 * URL, libiscsi 1.19's Sanitize.Reservations takes RESERVE(6) through the second portal's session
 * and keeps that session open, so the next test's SANITIZE gets RESERVATION CONFLICT, which is the
 * correct answer under SPC-2 reservations (Sanitize.Reset then fails); with one URL the suite passes.
 *
 * Fails on any failure, and on any regression against test/conformance/libiscsi-baseline.json (a test
 * that passed there and does not now). LIBISCSI_WRITE_BASELINE=1 rewrites the baseline from this run.
 * LIBISCSI_CONFIGS=default,readonly picks configurations. Needs `npm run build` (CI runs `npm ci`).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type LunarLun, repoRoot, run, startLunar } from '../../bench/iscsi-procs.js';

type Status = 'pass' | 'skip' | 'fail';
interface SuiteOut {
  count: { pass: number; skip: number; fail: number };
  tests: Record<string, { status: Status; reason: string }>;
}

const SUITE =
  process.env['LIBISCSI_SUITE'] ?? join(repoRoot(), '..', 'shared', 'conformance', 'libiscsi-suite.mjs');
const BASELINE = join(repoRoot(), 'test', 'conformance', 'libiscsi-baseline.json');
const IQN = 'iqn.2026-11.io.lunar.test:conformance';
const HAVE_TOOL = spawnable('iscsi-test-cu');

interface Config {
  readonly name: string;
  readonly lun: LunarLun;
  readonly tests: string;
  readonly twoPortals: boolean;
}
const CONFIGS: readonly Config[] = [
  {
    name: 'default',
    lun: { lun: 0, backstore: 'file', path: 'disk0.img', size: '128M' },
    tests: 'ALL',
    twoPortals: true,
  },
  {
    name: 'removable',
    lun: { lun: 0, backstore: 'memory', size: '64M', removable: true },
    tests: 'ALL',
    twoPortals: true,
  },
  {
    name: 'sanitize',
    lun: { lun: 0, backstore: 'file', path: 'disk0.img', size: '64M' },
    tests: 'ALL.Sanitize',
    twoPortals: false,
  },
  {
    name: 'readonly',
    lun: { lun: 0, backstore: 'memory', size: '16M', readOnly: true },
    tests: 'ALL.ReadOnly',
    twoPortals: false,
  },
  // 512-byte logical blocks on 4096-byte physical ones (LBPPB 8), thin: the tests that need LBPPB ≥ 2.
  ...['WriteSame10', 'WriteSame16', 'CompareAndWrite'].map((suite) => ({
    name: `lbppb-${suite}`,
    lun: { lun: 0, backstore: 'memory', size: '16M', physicalBlockSize: 4096 } as const,
    tests: `ALL.${suite}`,
    twoPortals: false,
  })),
];
const wanted = (process.env['LIBISCSI_CONFIGS'] ?? '').split(',').filter(Boolean);

function spawnable(cmd: string): boolean {
  return (process.env['PATH'] ?? '').split(':').some((d) => d && existsSync(join(d, cmd)));
}

const rank: Record<Status, number> = { fail: 0, skip: 1, pass: 2 };
const merged = new Map<string, { status: Status; reason: string; config: string }>();
const dir = mkdtempSync(join(tmpdir(), 'lunar-conformance-'));

describe.skipIf(!HAVE_TOOL)('libiscsi conformance (iscsi-test-cu)', () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  CONFIGS.filter((c) => wanted.length === 0 || wanted.includes(c.name)).forEach((c, i) => {
    it(`runs ${c.tests} on the ${c.name} LUN`, { timeout: 1_200_000 }, async () => {
      const ports = c.twoPortals ? [3381 + i * 2, 3382 + i * 2] : [3381 + i * 2];
      const target = await startLunar({ dir: join(dir, c.name), iqn: IQN, ports, luns: [c.lun] });
      try {
        const out = join(dir, `${c.name}.json`);
        const args = [
          SUITE,
          '--url',
          target.urls[0]!,
          '--tests',
          c.tests,
          '--out',
          out,
          '--log',
          join(dir, `${c.name}.log`),
        ];
        if (c.twoPortals) args.push('--url2', target.urls[1]!);
        const r = await run(process.execPath, args, { timeoutMs: 1_100_000, allowFail: true });
        console.log(`[${c.name}] ${r.stdout.trim().split('\n').slice(-3).join(' | ')}`);
        expect(target.exited(), `lunar died during the suite:\n${target.output()}`).toBeUndefined();
        expect(r.code, `no test ran:\n${r.stdout}\n${r.stderr}`).not.toBe(2);
        const res = JSON.parse(readFileSync(out, 'utf8')) as SuiteOut;
        for (const [name, t] of Object.entries(res.tests)) {
          const prev = merged.get(name);
          if (!prev || rank[t.status] > rank[prev.status]) merged.set(name, { ...t, config: c.name });
        }
      } finally {
        await target.stop();
      }
    });
  });

  it('0 failed across configurations, and no regression against the baseline', () => {
    const tests = Object.fromEntries([...merged].sort(([a], [b]) => a.localeCompare(b)));
    const count = { pass: 0, skip: 0, fail: 0 };
    for (const t of merged.values()) count[t.status]++;
    console.log(
      `libiscsi, all configurations: ${merged.size} tests, ${count.pass} passed, ${count.skip} skipped, ${count.fail} failed`,
    );
    writeFileSync(join(dir, 'merged.json'), JSON.stringify({ count, tests }, null, 1));
    if (process.env['LIBISCSI_WRITE_BASELINE'] === '1')
      writeFileSync(BASELINE, `${JSON.stringify({ count, tests }, null, 1)}\n`);
    const failed = Object.entries(tests)
      .filter(([, t]) => t.status === 'fail')
      .map(([n, t]) => `${n} [${t.config}]: ${t.reason}`);
    expect(failed).toEqual([]);
    if (wanted.length === 0 && existsSync(BASELINE)) {
      const base = (
        JSON.parse(readFileSync(BASELINE, 'utf8')) as { tests: Record<string, { status: Status }> }
      ).tests;
      const regressions = Object.entries(base)
        .filter(([n, b]) => b.status === 'pass' && tests[n]?.status !== 'pass')
        .map(([n]) => `${n}: pass -> ${tests[n]?.status ?? 'missing'}`);
      expect(regressions).toEqual([]);
    }
  });
});
