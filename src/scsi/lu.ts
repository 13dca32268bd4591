/**
 * Logical unit state: configuration, mode parameters, medium/prevent state, SPC-2 reservation,
 * unit attentions per I_T nexus, task ordering.
 */
import type { Backstore } from '../backstore/types.js';
import { PersistentReservations } from './pr.js';
import { TaskScheduler } from './scheduler.js';
import { Asc } from './sense.js';

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
  /** Pending unit attentions per I_T nexus key, oldest first. */
  readonly #ua = new Map<string, number[]>();

  constructor(config: LogicalUnitConfig) {
    this.config = config;
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
