/** Test helpers: a scratch directory on a real (non-tmpfs) disk so O_DIRECT is exercised. */
import { statfsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

function isMemoryFs(dir: string): boolean {
  try {
    const t = statfsSync(dir).type;
    return t === TMPFS_MAGIC || t === RAMFS_MAGIC;
  } catch {
    return true;
  }
}

/** A fresh directory on a disk-backed filesystem (os.tmpdir() unless it is tmpfs, else the repo). */
export async function diskScratch(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const base = isMemoryFs(tmpdir()) ? repo : tmpdir();
  const dir = await mkdtemp(join(base, `.lunar-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A fresh directory on tmpfs (/dev/shm), or null when there is none. */
export async function tmpfsScratch(
  prefix: string,
): Promise<{ dir: string; cleanup: () => Promise<void> } | null> {
  if (!isMemoryFs('/dev/shm')) return null;
  const dir = await mkdtemp(join('/dev/shm', `lunar-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Runs `fn` in a fresh tmpfs directory and removes the directory afterwards; nothing without tmpfs. */
export async function inTmpfs(prefix: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const s = await tmpfsScratch(prefix);
  if (s === null) return;
  try {
    await fn(s.dir);
  } finally {
    await s.cleanup();
  }
}

/** Deterministic pseudo-random bytes. */
export function patternBytes(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** Runs fn and returns the rejection (fails when it resolves). */
export async function rejection(
  p: Promise<unknown> | (() => Promise<unknown>),
): Promise<Error & { code?: string }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection, got a resolution');
}
