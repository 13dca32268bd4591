/**
 * Persistent reservations (SPC-4 §5.9): PERSISTENT RESERVE IN (READ KEYS, READ RESERVATION,
 * REPORT CAPABILITIES, READ FULL STATUS) and OUT (REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT,
 * PREEMPT AND ABORT, REGISTER AND IGNORE EXISTING KEY), plus the access check dispatch runs for
 * every command. State lives in memory per LU: registrations survive I_T nexus loss and resets,
 * not a restart (PTPL_C = 0, so APTPL is refused).
 */
import { type CommandContext, dataIn, GOOD, type Outcome } from './command.js';
import type { LogicalUnit } from './lu.js';
import { Asc, illegal, invalidField, invalidParam } from './sense.js';
import { type Nexus, type ScsiResult, ScsiStatus } from './types.js';

export const PrType = {
  WRITE_EXCLUSIVE: 1,
  EXCLUSIVE_ACCESS: 3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 8,
} as const;
export type PrType = (typeof PrType)[keyof typeof PrType];

const SUPPORTED_TYPES: ReadonlySet<number> = new Set(Object.values(PrType));

export const PrOutAction = {
  REGISTER: 0,
  RESERVE: 1,
  RELEASE: 2,
  CLEAR: 3,
  PREEMPT: 4,
  PREEMPT_AND_ABORT: 5,
  REGISTER_AND_IGNORE_EXISTING_KEY: 6,
} as const;

export const PrInAction = {
  READ_KEYS: 0,
  READ_RESERVATION: 1,
  REPORT_CAPABILITIES: 2,
  READ_FULL_STATUS: 3,
} as const;

/** How a command relates to a persistent reservation (SPC-4 table 66 / SBC-3 table 13). */
export type PrAccess = 'allowed' | 'read' | 'write';

interface Registration {
  key: bigint;
  readonly nexus: Nexus;
}

interface Reservation {
  /** Holder nexus key (ignored for the all-registrants types: every registrant holds it). */
  holder: string;
  type: PrType;
}

const allRegistrants = (t: number): boolean =>
  t === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS || t === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
const registrantsOnly = (t: number): boolean =>
  t === PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY || t === PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY;

const CONFLICT: ScsiResult = { status: ScsiStatus.RESERVATION_CONFLICT };

export class PersistentReservations {
  generation = 0;
  readonly registrations = new Map<string, Registration>();
  reservation: Reservation | undefined;

  isHolder(nexusKey: string): boolean {
    const r = this.reservation;
    if (!r) return false;
    return allRegistrants(r.type) ? this.registrations.has(nexusKey) : r.holder === nexusKey;
  }

  /** RESERVATION CONFLICT when the reservation bars this nexus from a command of class `access`. */
  conflicts(nexusKey: string, access: PrAccess): boolean {
    const r = this.reservation;
    if (!r || access === 'allowed' || this.isHolder(nexusKey)) return false;
    const registered = this.registrations.has(nexusKey);
    switch (r.type) {
      case PrType.WRITE_EXCLUSIVE:
        return access === 'write';
      case PrType.EXCLUSIVE_ACCESS:
        return true;
      case PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY:
      case PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS:
        return access === 'write' && !registered;
      default:
        return !registered;
    }
  }

  /** Power on (cold reset): nothing persists through it (PTPL_C = 0). */
  clear(): void {
    this.registrations.clear();
    this.reservation = undefined;
    this.generation = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// PERSISTENT RESERVE IN

/** iSCSI TransportID, format 01b (initiator port: name + ",i,0x" + ISID), SPC-4 §7.6.4.6. */
export function iscsiTransportId(n: Nexus): Buffer {
  const name = Buffer.from(`${n.initiatorName},i,0x${n.isid.toLowerCase()}`, 'utf8');
  const len = Math.max(20, (name.length + 1 + 3) & ~3);
  const b = Buffer.alloc(4 + len);
  b[0] = 0x40 | 0x05;
  b.writeUInt16BE(len, 2);
  name.copy(b, 4);
  return b;
}

function prIn(ctx: CommandContext, action: number): Outcome {
  const { lu, cdb } = ctx;
  const pr = lu.pr;
  const alloc = cdb.readUInt16BE(7);
  const header = (additional: number): Buffer => {
    const h = Buffer.alloc(8);
    h.writeUInt32BE(pr.generation >>> 0, 0);
    h.writeUInt32BE(additional, 4);
    return h;
  };
  switch (action) {
    case PrInAction.READ_KEYS: {
      const keys = [...pr.registrations.values()].map((r) => {
        const b = Buffer.alloc(8);
        b.writeBigUInt64BE(r.key);
        return b;
      });
      return dataIn(Buffer.concat([header(8 * keys.length), ...keys]), alloc);
    }
    case PrInAction.READ_RESERVATION: {
      const r = pr.reservation;
      if (!r) return dataIn(header(0), alloc);
      const d = Buffer.alloc(16);
      const key = allRegistrants(r.type) ? 0n : (pr.registrations.get(r.holder)?.key ?? 0n);
      d.writeBigUInt64BE(key, 0);
      d[13] = r.type; // scope 0 (LU)
      return dataIn(Buffer.concat([header(16), d]), alloc);
    }
    case PrInAction.REPORT_CAPABILITIES: {
      const b = Buffer.alloc(8);
      b.writeUInt16BE(8, 0);
      b[2] = 0x10; // CRH: RESERVE/RELEASE conflict with registrations (SPC-4 §5.9.3)
      b[3] = 0x80; // TMV: the type mask is valid; ALLOW COMMANDS 000b
      b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
      b[5] = 0x01; // EX_AC_AR
      return dataIn(b, alloc);
    }
    default: {
      // READ FULL STATUS
      const descs = [...pr.registrations.entries()].map(([k, reg]) => {
        const tid = iscsiTransportId(reg.nexus);
        const d = Buffer.alloc(24);
        d.writeBigUInt64BE(reg.key, 0);
        const holder = pr.isHolder(k);
        d[12] = holder ? 0x01 : 0x00; // R_HOLDER (ALL_TG_PT 0)
        d[13] = holder && pr.reservation ? pr.reservation.type : 0;
        d.writeUInt16BE(reg.nexus.relativeTargetPortId & 0xffff, 18);
        d.writeUInt32BE(tid.length, 20);
        return Buffer.concat([d, tid]);
      });
      const body = Buffer.concat(descs);
      return dataIn(Buffer.concat([header(body.length), body]), alloc);
    }
  }
}

export const prInHandler =
  (action: number) =>
  (ctx: CommandContext): Outcome =>
    prIn(ctx, action);

// ---------------------------------------------------------------------------------------------
// PERSISTENT RESERVE OUT

const PARAMETER_LIST_LENGTH = 24;

function uaOthers(lu: LogicalUnit, keys: Iterable<string>, except: string, code: number): void {
  for (const k of keys) if (k !== except) lu.addUa(k, code);
}

/** The holder leaves (unregistered or preempted): release, with UAs for registrants-only types. */
function dropHolderIfGone(lu: LogicalUnit, leaving: string): void {
  const pr = lu.pr;
  const r = pr.reservation;
  if (!r) return;
  if (allRegistrants(r.type)) {
    if (pr.registrations.size === 0) pr.reservation = undefined;
    return;
  }
  if (r.holder !== leaving) return;
  pr.reservation = undefined;
  if (registrantsOnly(r.type)) uaOthers(lu, pr.registrations.keys(), leaving, Asc.RESERVATIONS_RELEASED);
}

function prOut(ctx: CommandContext, action: number): Outcome {
  const { lu, cdb, nexus } = ctx;
  const pr = lu.pr;
  const scope = (cdb[2] ?? 0) >> 4;
  const type = (cdb[2] ?? 0) & 0x0f;
  const length = cdb.readUInt32BE(5);
  if (length !== PARAMETER_LIST_LENGTH || ctx.cmd.dataOut.length < length) {
    throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  }
  const p = ctx.cmd.dataOut;
  const key = p.readBigUInt64BE(0);
  const saKey = p.readBigUInt64BE(8);
  const flags = p[20] ?? 0;
  if (flags & 0x08) throw invalidParam(20, 3); // SPEC_I_PT: SIP_C = 0
  if (flags & 0x04) throw invalidParam(20, 2); // ALL_TG_PT: ATP_C = 0
  if (flags & 0x01) throw invalidParam(20, 0); // APTPL: PTPL_C = 0
  const needsType =
    action === PrOutAction.RESERVE ||
    action === PrOutAction.RELEASE ||
    action === PrOutAction.PREEMPT ||
    action === PrOutAction.PREEMPT_AND_ABORT;
  if (needsType) {
    if (scope !== 0) throw invalidField(2, 7);
    if (!SUPPORTED_TYPES.has(type)) throw invalidField(2, 3);
  }
  const me = nexus.key;
  const mine = pr.registrations.get(me);

  switch (action) {
    case PrOutAction.REGISTER:
    case PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY: {
      const ignore = action === PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY;
      if (!mine) {
        if (!ignore && key !== 0n) return CONFLICT;
        if (saKey === 0n) return GOOD;
        pr.registrations.set(me, { key: saKey, nexus });
      } else {
        if (!ignore && key !== mine.key) return CONFLICT;
        if (saKey === 0n) {
          pr.registrations.delete(me);
          dropHolderIfGone(lu, me);
        } else {
          mine.key = saKey;
        }
      }
      pr.generation++;
      return GOOD;
    }
    case PrOutAction.RESERVE: {
      if (!mine || mine.key !== key) return CONFLICT;
      const r = pr.reservation;
      if (r) {
        if (!pr.isHolder(me) || r.type !== type) return CONFLICT;
        return GOOD;
      }
      pr.reservation = { holder: me, type: type as PrType };
      return GOOD;
    }
    case PrOutAction.RELEASE: {
      if (!mine || mine.key !== key) return CONFLICT;
      const r = pr.reservation;
      if (!r || !pr.isHolder(me)) return GOOD;
      if (r.type !== type) throw illegal(Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION);
      pr.reservation = undefined;
      if (r.type !== PrType.WRITE_EXCLUSIVE && r.type !== PrType.EXCLUSIVE_ACCESS) {
        uaOthers(lu, pr.registrations.keys(), me, Asc.RESERVATIONS_RELEASED);
      }
      return GOOD;
    }
    case PrOutAction.CLEAR: {
      if (!mine || mine.key !== key) return CONFLICT;
      const others = [...pr.registrations.keys()];
      pr.registrations.clear();
      pr.reservation = undefined;
      pr.generation++;
      uaOthers(lu, others, me, Asc.RESERVATIONS_PREEMPTED);
      return GOOD;
    }
    default: {
      // PREEMPT, PREEMPT AND ABORT (aborting the preempted nexuses' tasks is the transport's job)
      if (!mine || mine.key !== key) return CONFLICT;
      const r = pr.reservation;
      const removeWithKey = (victimKey: bigint | undefined): string[] => {
        const removed: string[] = [];
        for (const [k, reg] of pr.registrations) {
          if (k === me) continue;
          if (victimKey === undefined || reg.key === victimKey) removed.push(k);
        }
        for (const k of removed) pr.registrations.delete(k);
        return removed;
      };
      let removed: string[];
      if (!r) {
        if (saKey === 0n) throw invalidParam(8);
        removed = removeWithKey(saKey);
        if (removed.length === 0) return CONFLICT;
      } else if (allRegistrants(r.type)) {
        if (saKey === 0n) {
          removed = removeWithKey(undefined);
          pr.reservation = { holder: me, type: type as PrType };
        } else {
          removed = removeWithKey(saKey);
          if (removed.length === 0) return CONFLICT;
        }
      } else {
        const holderKey = pr.registrations.get(r.holder)?.key;
        if (saKey === holderKey) {
          removed = removeWithKey(saKey);
          const changed = r.type !== type || r.holder !== me;
          pr.reservation = { holder: me, type: type as PrType };
          if (changed) {
            uaOthers(
              lu,
              [...pr.registrations.keys()].filter((k) => !removed.includes(k)),
              me,
              Asc.RESERVATIONS_RELEASED,
            );
          }
        } else {
          if (saKey === 0n) throw invalidParam(8);
          removed = removeWithKey(saKey);
          if (removed.length === 0) return CONFLICT;
        }
      }
      for (const k of removed) lu.addUa(k, Asc.REGISTRATIONS_PREEMPTED);
      pr.generation++;
      return GOOD;
    }
  }
}

export const prOutHandler =
  (action: number) =>
  (ctx: CommandContext): Outcome =>
    prOut(ctx, action);
