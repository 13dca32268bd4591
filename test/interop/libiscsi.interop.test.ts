/**
 * libiscsi's conformance suite (iscsi-test-cu) against lunar with two portals (so the
 * MultipathIO tests run), through ../shared/conformance/libiscsi-suite.mjs.
 *
 *   npm run build && npx vitest run --project interop test/interop/libiscsi.interop.test.ts
 *
 * Fails on any regression against test/interop/libiscsi-baseline.json (a test that passed there
 * and does not pass now). When the baseline file is missing, this run's results are written there
 * (review and commit it) and the test fails if the suite had any failure at all.
 * Env: LIBISCSI_SUITE (path of libiscsi-suite.mjs), LIBISCSI_TESTS (default ALL), LIBISCSI_BASELINE
 * (another baseline file).
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningTarget, repoRoot, run, startLunar } from '../../bench/iscsi-procs.js';

const PORTS = [Number(process.env['INTEROP_PORT'] ?? 3371), Number(process.env['INTEROP_PORT2'] ?? 3372)];
const IQN = 'iqn.2026-11.io.lunar.interop:libiscsi';
const SUITE =
  process.env['LIBISCSI_SUITE'] ?? join(repoRoot(), '..', 'shared', 'conformance', 'libiscsi-suite.mjs');
const BASELINE =
  process.env['LIBISCSI_BASELINE'] ?? join(repoRoot(), 'test', 'interop', 'libiscsi-baseline.json');

interface SuiteOut {
  count: { pass: number; skip: number; fail: number };
  tests: Record<string, { status: 'pass' | 'skip' | 'fail'; reason: string }>;
}

describe('libiscsi conformance suite against lunar', () => {
  let dir = '';
  let target: RunningTarget | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lunar-interop-libiscsi-'));
    target = await startLunar({
      dir: join(dir, 'lunar'),
      iqn: IQN,
      ports: PORTS,
      luns: [{ lun: 0, backstore: 'file', path: 'disk0.img', size: '128M' }],
    });
  });

  afterAll(async () => {
    await target?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('passes everything the baseline passes', async () => {
    const t = target!;
    expect(existsSync(SUITE), `libiscsi-suite.mjs not found at ${SUITE} (set LIBISCSI_SUITE)`).toBe(true);
    const out = join(dir, 'libiscsi.json');
    const haveBaseline = existsSync(BASELINE);
    const args = [
      SUITE,
      '--url',
      t.urls[0]!,
      '--url2',
      t.urls[1]!,
      '--out',
      out,
      '--log',
      join(dir, 'suite.log'),
    ];
    args.push('--tests', process.env['LIBISCSI_TESTS'] ?? 'ALL');
    if (haveBaseline) args.push('--baseline', BASELINE);
    const r = await run(process.execPath, args, { timeoutMs: 1_200_000, allowFail: true });
    console.log(r.stdout.trim().split('\n').slice(-40).join('\n'));
    if (r.stderr.trim()) console.error(r.stderr.trim());
    expect(t.exited(), `lunar died during the suite:\n${t.output()}`).toBeUndefined();
    expect(r.code, 'exit 2 = no test ran (target unreachable?)').not.toBe(2);
    const res = JSON.parse(readFileSync(out, 'utf8')) as SuiteOut;
    if (!haveBaseline) {
      copyFileSync(out, BASELINE);
      console.warn(
        `\n*** ${BASELINE} did not exist: wrote this run's results there ` +
          `(${res.count.pass} passed, ${res.count.skip} skipped, ${res.count.fail} failed). ` +
          'Review and commit it; later runs fail on any regression against it. ***\n',
      );
      const failed = Object.entries(res.tests)
        .filter(([, v]) => v.status === 'fail')
        .map(([k, v]) => `${k}: ${v.reason}`);
      expect(failed, 'suite failures (no baseline to compare with)').toEqual([]);
    } else {
      const regressions = r.stdout.split('\n').filter((l) => l.startsWith('REGRESSION '));
      expect(regressions, `regressions against ${BASELINE}`).toEqual([]);
      expect(r.code).toBe(0);
    }
  });
});
