/**
 * Logical unit state: configuration, mode parameters, medium/prevent state, SPC-2 reservation,
 * unit attentions per I_T nexus, task ordering.
 */
import type { Backstore } from '../backstore/types.js';
import type { AtomicJournal } from './atomic.js';
import { PersistentReservations } from './pr.js';
import type { PrStore } from './pr-store.js';
import { TaskScheduler } from './scheduler.js';
import { Asc } from './sense.js';
import type { CopyResult } from './xcopy.js';

export interface LogicalUnitConfig {
  readonly lun: number;
  readonly backstore: Backstore;
  /** Persistent per-LU id, 16 hex digits: NAA designator and default serial. */
  readonly id: string;
  readonly serial?: string;
  /** Default 'LUNAR'. */
  readonly vendor?: string;
  /** Default 'VIRTUAL-DISK'. */
  readonly product?: string;
  readonly revision?: string;
  readonly readOnly?: boolean;
  readonly removable?: boolean;
  /** WCE default (write-back cache enabled); default true. */
  readonly writeCache?: boolean;
  /** Write-ahead journal making WRITE ATOMIC(16) power-loss atomic on a persistent backstore. */
  readonly atomicJournal?: AtomicJournal;
  /** Physical block size reported (READ CAPACITY 16 LBPPB exponent, VPD B0h granularities); default blockSize. */
  readonly physicalBlockSize?: number;
  /** SANITIZE OVERWRITE throttle in bytes per second (default 8 MiB/s; 0 = unthrottled). */
  readonly sanitizeRate?: number;
}

/** Mode parameters the core keeps (current values; one set per LU, shared by all nexuses). */
export interface ModeState {
  wce: boolean;
  dSense: boolean;
  swp: boolean;
}

export const LU_ID_RE = /^[0-9a-fA-F]{16}$/;

/** Unit attention priority (SAM-5 §5.14: lower sorts first). */
const uaPriority = (code: number): number => {
  if (code >> 8 === 0x29) return 0; // power on / reset
  if (code === Asc.REPORTED_LUNS_DATA_HAS_CHANGED) return 2;
  return 1;
};

export class LogicalUnit {
  readonly config: LogicalUnitConfig;
  readonly backstore: Backstore;
  readonly lun: number;
  readonly mode: ModeState;
  readonly defaults: ModeState;
  readonly scheduler = new TaskScheduler();
  /** Medium loaded (only removable LUs can be ejected). */
  loaded = true;
  /** I_T nexus keys that hold PREVENT MEDIUM REMOVAL. */
  readonly preventers = new Set<string>();
  /** SPC-2 RESERVE holder (I_T nexus key). */
  reservedBy: string | undefined;
  /** Persistent reservations (registrations survive nexus loss and resets). */
  readonly pr = new PersistentReservations();
  /** Where APTPL state goes (undefined: APTPL still accepted, kept in memory only). */
  readonly prStore: PrStore | undefined;
  /** A sanitize operation is running (settles true on success). */
  sanitizing: Promise<boolean> | undefined;
  /** EXTENDED COPY results held for RECEIVE COPY RESULTS, by `${nexus key}#${list id}`. */
  readonly copyResults = new Map<string, CopyResult>();
  /** Serialises journaled atomic writes. */
  atomicChain: Promise<void> = Promise.resolve();
  /** Sanitize failure mode (after a failed sanitize); `ause` as the failed SANITIZE had it. */
  sanitizeFailure: { readonly ause: boolean } | undefined;
  /** Progress of the running sanitize, 0–65535 (sense key specific progress indication). */
  sanitizeProgress = 0;
  /** The target accepts SET TARGET PORT GROUPS (explicit ALUA). */
  aluaExplicit = false;
  /** Pending unit attentions per I_T nexus key, oldest first. */
  readonly #ua = new Map<string, number[]>();

  constructor(config: LogicalUnitConfig, prStore?: PrStore) {
    this.config = config;
    this.prStore = prStore;
    const saved = prStore?.load(config.id);
    if (saved?.aptpl) this.pr.restore(saved);
    this.backstore = config.backstore;
    this.lun = config.lun;
    this.defaults = { wce: config.writeCache ?? true, dSense: false, swp: false };
    this.mode = { ...this.defaults };
  }

  get blockSize(): number {
    return this.backstore.blockSize;
  }
  get blockCount(): number {
    return this.backstore.blockCount;
  }
  /** log2(physical block size / logical block size). */
  get lbppbExponent(): number {
    const p = this.config.physicalBlockSize ?? this.blockSize;
    return p > this.blockSize ? Math.round(Math.log2(p / this.blockSize)) : 0;
  }
  get thin(): boolean {
    return this.backstore.capabilities.thin;
  }
  get removable(): boolean {
    return this.config.removable === true;
  }
  /** Writes refused: config, backstore opened read-only, or software write protect (SWP). */
  get writeProtected(): boolean {
    return this.config.readOnly === true || this.backstore.capabilities.readOnly || this.mode.swp;
  }
  get vendor(): string {
    return this.config.vendor ?? 'LUNAR';
  }
  get product(): string {
    return this.config.product ?? 'VIRTUAL-DISK';
  }
  get revision(): string {
    return this.config.revision ?? '0001';
  }
  get serial(): string {
    return this.config.serial ?? this.config.id.toLowerCase();
  }

  /** Establishes a unit attention for one nexus (deduplicated). */
  addUa(nexusKey: string, code: number): void {
    let q = this.#ua.get(nexusKey);
    if (!q) {
      q = [];
      this.#ua.set(nexusKey, q);
    }
    if (uaPriority(code) === 0) {
      // A reset supersedes everything else pending (SAM-5: reset clears other UAs).
      for (let i = q.length - 1; i >= 0; i--) if (uaPriority(q[i] ?? 0) !== 0) q.splice(i, 1);
    }
    if (!q.includes(code)) q.push(code);
    q.sort((a, b) => uaPriority(a) - uaPriority(b));
  }

  peekUa(nexusKey: string): number | undefined {
    return this.#ua.get(nexusKey)?.[0];
  }

  /** Removes and returns the highest-priority pending unit attention. */
  takeUa(nexusKey: string): number | undefined {
    const q = this.#ua.get(nexusKey);
    const code = q?.shift();
    if (q && q.length === 0) this.#ua.delete(nexusKey);
    return code;
  }

  pendingUas(nexusKey: string): readonly number[] {
    return this.#ua.get(nexusKey) ?? [];
  }

  clearUas(nexusKey: string): void {
    this.#ua.delete(nexusKey);
  }

  /** Reset side effects shared by LU reset, target reset and power on. */
  reset(): void {
    this.reservedBy = undefined;
    this.preventers.clear();
  }

  /** The I_T nexus is gone: drops what it held. */
  forgetNexus(nexusKey: string): void {
    if (this.reservedBy === nexusKey) this.reservedBy = undefined;
    this.preventers.delete(nexusKey);
    this.#ua.delete(nexusKey);
  }
}
