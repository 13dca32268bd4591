/**
 * Where persistent reservation state lives when APTPL is set (SPC-4 §5.9.5 "persist through power
 * loss"). The core keeps the live state in memory and hands a full snapshot to the store after
 * every change while APTPL is in effect (and once more when APTPL is turned off, with `undefined`,
 * so the store forgets it). Loading happens once, when the LU is created.
 *
 * The interface is deliberately snapshot-based (whole state, versioned by the PR generation) so a
 * replicated or clustered store (#6) can ship the same JSON between nodes and pick the newest.
 */
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

/** One registration, JSON-safe. `isid` / `portalGroupTag` absent: any ISID / all target ports. */
export interface PrRegistrationSnapshot {
  /** Reservation key, 16 hex digits. */
  readonly key: string;
  readonly initiatorName: string;
  readonly isid?: string;
  readonly targetName: string;
  readonly portalGroupTag?: number;
  readonly relativeTargetPortId: number;
}

export interface PrSnapshot {
  readonly version: 1;
  readonly generation: number;
  readonly aptpl: boolean;
  readonly registrations: readonly PrRegistrationSnapshot[];
  /** Holder = index into `registrations` (any registrant for the all-registrants types). */
  readonly reservation?: { readonly holder: number; readonly type: number };
}

export interface PrStore {
  /** The saved state of one LU (by its 16-hex-digit id), or undefined. Called at LU creation. */
  load(luId: string): PrSnapshot | undefined;
  /** Replaces the saved state (`undefined`: forget it). Resolves once it is durable. */
  save(luId: string, snapshot: PrSnapshot | undefined): Promise<void>;
}

/** For tests and for LUs without a data directory. */
export class MemoryPrStore implements PrStore {
  readonly saved = new Map<string, PrSnapshot>();
  load(luId: string): PrSnapshot | undefined {
    const s = this.saved.get(luId.toLowerCase());
    return s ? (JSON.parse(JSON.stringify(s)) as PrSnapshot) : undefined;
  }
  async save(luId: string, snapshot: PrSnapshot | undefined): Promise<void> {
    if (snapshot) this.saved.set(luId.toLowerCase(), JSON.parse(JSON.stringify(snapshot)) as PrSnapshot);
    else this.saved.delete(luId.toLowerCase());
  }
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // some filesystems refuse fsync on a directory: the rename is still atomic
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * `<dir>/<lu-id>.json`, replaced atomically (write temp, fsync, rename, fsync directory). Saves of
 * one LU are serialised in call order, so the file always holds the newest snapshot.
 */
export class FilePrStore implements PrStore {
  readonly dir: string;
  readonly #chains = new Map<string, Promise<void>>();

  constructor(dir: string) {
    this.dir = dir;
  }

  path(luId: string): string {
    return join(this.dir, `${luId.toLowerCase()}.json`);
  }

  load(luId: string): PrSnapshot | undefined {
    let text: string;
    try {
      text = readFileSync(this.path(luId), 'utf8');
    } catch {
      return undefined;
    }
    const s = JSON.parse(text) as PrSnapshot;
    if (s.version !== 1 || !Array.isArray(s.registrations))
      throw new Error(`${this.path(luId)}: not a PR snapshot`);
    return s;
  }

  save(luId: string, snapshot: PrSnapshot | undefined): Promise<void> {
    const id = luId.toLowerCase();
    const prev = this.#chains.get(id) ?? Promise.resolve();
    const next = prev
      .catch(() => undefined)
      .then(() => {
        const file = this.path(id);
        if (!snapshot) {
          rmSync(file, { force: true });
          fsyncDir(dirname(file));
          return;
        }
        mkdirSync(this.dir, { recursive: true });
        const tmp = `${file}.tmp-${process.pid}`;
        const fd = openSync(tmp, 'w', 0o600);
        try {
          writeSync(fd, `${JSON.stringify(snapshot, null, 1)}\n`);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        renameSync(tmp, file);
        fsyncDir(this.dir);
      });
    this.#chains.set(id, next);
    const done = (): void => {
      if (this.#chains.get(id) === next) this.#chains.delete(id);
    };
    next.then(done, done);
    return next;
  }
}
