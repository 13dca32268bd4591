/** Small helpers shared by the benches. */
import { spawnSync } from 'node:child_process';
import { statfsSync } from 'node:fs';

/** Parses "1G", "512M", "64k", "4096" (binary units) into bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?B)?$/.exec(s.trim());
  if (m === null) throw new Error(`bad size '${s}' (examples: 1G, 512M, 65536)`);
  const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Math.floor(Number(m[1]) * mult);
}

export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** Whether a program is on PATH (runs `prog --version`). */
export function have(prog: string): boolean {
  const r = spawnSync(prog, ['--version'], { stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
}

const TMPFS_MAGIC = 0x01021994;

export function isTmpfs(dir: string): boolean {
  try {
    return statfsSync(dir).type === TMPFS_MAGIC;
  } catch {
    return false;
  }
}

/** A right-aligned text table. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) {
    for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  }
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '))
    .join('\n');
}
