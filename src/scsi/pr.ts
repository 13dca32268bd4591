/**
 * Persistent reservations (SPC-4 §5.9): PERSISTENT RESERVE IN (READ KEYS, READ RESERVATION,
 * REPORT CAPABILITIES, READ FULL STATUS) and OUT (REGISTER, REGISTER AND IGNORE EXISTING KEY,
 * RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT AND ABORT, REGISTER AND MOVE), plus the access check
 * dispatch runs for every command.
 *
 * A registration belongs to an initiator port (iSCSI name + ISID) on one target port (portal
 * group), or on every target port (ALL_TG_PT); a registration made through SPEC_I_PT with an
 * iSCSI TransportID of format 00b (name only) covers every ISID of that initiator name.
 * Registrations survive I_T nexus loss and resets; with APTPL they survive power loss too, through
 * the LU's {@link PrStore}.
 */
import { type CommandContext, dataIn, GOOD, type Outcome } from './command.js';
import type { LogicalUnit } from './lu.js';
import type { PrRegistrationSnapshot, PrSnapshot } from './pr-store.js';
import { Asc, check, illegal, invalidField, invalidParam, SenseKey } from './sense.js';
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
  REGISTER_AND_MOVE: 7,
} as const;

export const PrInAction = {
  READ_KEYS: 0,
  READ_RESERVATION: 1,
  REPORT_CAPABILITIES: 2,
  READ_FULL_STATUS: 3,
} as const;

/** How a command relates to a persistent reservation (SPC-4 table 66 / SBC-3 table 13). */
export type PrAccess = 'allowed' | 'read' | 'write';

export interface Registration {
  key: bigint;
  readonly initiatorName: string;
  /** Lower-case ISID; undefined: every ISID of the name (TransportID format 00b). */
  readonly isid: string | undefined;
  readonly targetName: string;
  /** undefined: every target port (ALL_TG_PT). */
  readonly portalGroupTag: number | undefined;
  /** Relative target port identifier (0 with ALL_TG_PT). */
  readonly relativeTargetPortId: number;
}

interface Reservation {
  /** Holder registration (ignored for the all-registrants types: every registrant holds it). */
  holder: Registration;
  type: PrType;
}

const allRegistrants = (t: number): boolean =>
  t === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS || t === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;

const CONFLICT: ScsiResult = { status: ScsiStatus.RESERVATION_CONFLICT };

/** Whether a registration covers an I_T nexus. */
export function covers(r: Registration, n: Nexus): boolean {
  return (
    r.initiatorName.toLowerCase() === n.initiatorName.toLowerCase() &&
    (r.isid === undefined || r.isid === n.isid.toLowerCase()) &&
    r.targetName === n.targetName &&
    (r.portalGroupTag === undefined || r.portalGroupTag === n.portalGroupTag)
  );
}

/** Whether two registrations could cover a common I_T nexus. */
function intersects(a: Registration, b: Registration): boolean {
  return (
    a.initiatorName.toLowerCase() === b.initiatorName.toLowerCase() &&
    (a.isid === undefined || b.isid === undefined || a.isid === b.isid) &&
    a.targetName === b.targetName &&
    (a.portalGroupTag === undefined ||
      b.portalGroupTag === undefined ||
      a.portalGroupTag === b.portalGroupTag)
  );
}

/** The nexus key a transport would give this initiator port on this target port. */
export function nexusKey(initiatorName: string, isid: string, targetName: string, tpgt: number): string {
  return `${initiatorName},i,0x${isid}|${targetName},t,0x${tpgt.toString(16).padStart(4, '0')}`;
}

export class PersistentReservations {
  generation = 0;
  /** Activate persist through power loss (last valid APTPL received). */
  aptpl = false;
  /** Registrations in registration order. */
  readonly registrations: Registration[] = [];
  reservation: Reservation | undefined;

  /** The registration covering this nexus. */
  find(n: Nexus): Registration | undefined {
    return this.registrations.find((r) => covers(r, n));
  }

  isHolder(n: Nexus): boolean {
    const r = this.reservation;
    if (!r) return false;
    const reg = this.find(n);
    if (!reg) return false;
    return allRegistrants(r.type) || r.holder === reg;
  }

  /** Whether a registration holds the reservation. */
  holds(reg: Registration): boolean {
    const r = this.reservation;
    return !!r && (allRegistrants(r.type) || r.holder === reg);
  }

  /** RESERVATION CONFLICT when the reservation bars this nexus from a command of class `access`. */
  conflicts(n: Nexus, access: PrAccess): boolean {
    const r = this.reservation;
    if (!r || access === 'allowed' || this.isHolder(n)) return false;
    const registered = this.find(n) !== undefined;
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

  remove(reg: Registration): void {
    const i = this.registrations.indexOf(reg);
    if (i >= 0) this.registrations.splice(i, 1);
  }

  /** Power on (cold reset) without APTPL: nothing persists. */
  clear(): void {
    this.registrations.length = 0;
    this.reservation = undefined;
    this.generation = 0;
    this.aptpl = false;
  }

  snapshot(): PrSnapshot {
    const registrations = this.registrations.map((r): PrRegistrationSnapshot => ({
      key: r.key.toString(16).padStart(16, '0'),
      initiatorName: r.initiatorName,
      ...(r.isid !== undefined ? { isid: r.isid } : {}),
      targetName: r.targetName,
      ...(r.portalGroupTag !== undefined ? { portalGroupTag: r.portalGroupTag } : {}),
      relativeTargetPortId: r.relativeTargetPortId,
    }));
    const res = this.reservation;
    return {
      version: 1,
      generation: this.generation,
      aptpl: this.aptpl,
      registrations,
      ...(res ? { reservation: { holder: this.registrations.indexOf(res.holder), type: res.type } } : {}),
    };
  }

  restore(s: PrSnapshot): void {
    this.clear();
    this.generation = s.generation >>> 0;
    this.aptpl = s.aptpl;
    for (const r of s.registrations) {
      this.registrations.push({
        key: BigInt(`0x${r.key}`),
        initiatorName: r.initiatorName,
        isid: r.isid?.toLowerCase(),
        targetName: r.targetName,
        portalGroupTag: r.portalGroupTag,
        relativeTargetPortId: r.relativeTargetPortId,
      });
    }
    const res = s.reservation;
    const holder = res ? this.registrations[res.holder] : undefined;
    if (res && holder && SUPPORTED_TYPES.has(res.type))
      this.reservation = { holder, type: res.type as PrType };
  }
}

// ---------------------------------------------------------------------------------------------
// TransportIDs (SPC-4 §7.6.4.6, iSCSI)

const ISCSI_PROTOCOL = 0x05;

/** iSCSI TransportID: format 01b (initiator port: name + ",i,0x" + ISID), or 00b (name only). */
export function iscsiTransportId(initiatorName: string, isid: string | undefined): Buffer {
  const text = isid === undefined ? initiatorName : `${initiatorName},i,0x${isid.toLowerCase()}`;
  const name = Buffer.from(text, 'utf8');
  const len = Math.max(20, (name.length + 1 + 3) & ~3);
  const b = Buffer.alloc(4 + len);
  b[0] = (isid === undefined ? 0x00 : 0x40) | ISCSI_PROTOCOL;
  b.writeUInt16BE(len, 2);
  name.copy(b, 4);
  return b;
}

export interface TransportId {
  readonly initiatorName: string;
  readonly isid: string | undefined;
  /** Bytes the TransportID takes in the parameter list. */
  readonly length: number;
}

/**
 * Parses an iSCSI TransportID at `off` of a parameter list; INVALID FIELD IN PARAMETER LIST
 * (pointing at the bad byte) when it is not one.
 */
export function parseTransportId(p: Buffer, off: number, end: number): TransportId {
  if (off + 4 > end) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const b0 = p[off] ?? 0;
  if ((b0 & 0x0f) !== ISCSI_PROTOCOL) throw invalidParam(off, 0);
  const format = b0 >> 6;
  if (format > 1 || (b0 & 0x30) !== 0) throw invalidParam(off, 6);
  const len = p.readUInt16BE(off + 2);
  if (len < 4 || len % 4 !== 0) throw invalidParam(off + 2);
  if (off + 4 + len > end) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const raw = p.subarray(off + 4, off + 4 + len);
  const nul = raw.indexOf(0);
  if (nul <= 0) throw invalidParam(off + 4);
  const text = raw.subarray(0, nul).toString('utf8');
  if (format === 0) {
    if (text.includes(',')) throw invalidParam(off + 4);
    return { initiatorName: text, isid: undefined, length: 4 + len };
  }
  const m = /^(.+),i,0x([0-9a-f]{12})$/i.exec(text);
  if (!m?.[1] || !m[2]) throw invalidParam(off + 4);
  return { initiatorName: m[1], isid: m[2].toLowerCase(), length: 4 + len };
}

// ---------------------------------------------------------------------------------------------
// PERSISTENT RESERVE IN

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
      const keys = pr.registrations.map((r) => {
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
      d.writeBigUInt64BE(allRegistrants(r.type) ? 0n : r.holder.key, 0);
      d[13] = r.type; // scope 0 (LU)
      return dataIn(Buffer.concat([header(16), d]), alloc);
    }
    case PrInAction.REPORT_CAPABILITIES: {
      const b = Buffer.alloc(8);
      b.writeUInt16BE(8, 0);
      // CRH (RESERVE/RELEASE conflict with registrations), SIP_C, ATP_C, PTPL_C
      b[2] = 0x10 | 0x08 | 0x04 | 0x01;
      b[3] = 0x80 | (pr.aptpl ? 0x01 : 0); // TMV, ALLOW COMMANDS 000b, PTPL_A
      b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
      b[5] = 0x01; // EX_AC_AR
      return dataIn(b, alloc);
    }
    default: {
      // READ FULL STATUS
      const descs = pr.registrations.map((reg) => {
        // Name-only TransportID (format 00b), as Linux LIO reports and sg_persist decodes
        // ("iSCSI name: …"); the descriptor's RELATIVE TARGET PORT and the key tell nexuses apart.
        const tid = iscsiTransportId(reg.initiatorName, undefined);
        const d = Buffer.alloc(24);
        d.writeBigUInt64BE(reg.key, 0);
        const holder = pr.holds(reg);
        d[12] = (reg.portalGroupTag === undefined ? 0x02 : 0) | (holder ? 0x01 : 0); // ALL_TG_PT, R_HOLDER
        d[13] = holder && pr.reservation ? pr.reservation.type : 0;
        d.writeUInt16BE(reg.portalGroupTag === undefined ? 0 : reg.relativeTargetPortId & 0xffff, 18);
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

const BASIC_LENGTH = 24;

/** Live I_T nexus keys a registration covers (plus its own key when it names one port). */
function nexusKeysOf(ctx: CommandContext, reg: Registration): string[] {
  const keys = new Set<string>();
  for (const n of ctx.target.nexuses()) if (covers(reg, n)) keys.add(n.key);
  if (reg.isid !== undefined && reg.portalGroupTag !== undefined)
    keys.add(nexusKey(reg.initiatorName, reg.isid, reg.targetName, reg.portalGroupTag));
  return [...keys];
}

function ua(
  ctx: CommandContext,
  regs: Iterable<Registration>,
  except: Registration | undefined,
  code: number,
): void {
  for (const r of regs) if (r !== except) for (const k of nexusKeysOf(ctx, r)) ctx.lu.addUa(k, code);
}

/** A registration goes away (unregistered or preempted): release what it held. */
function dropHolderIfGone(ctx: CommandContext, leaving: Registration): void {
  const pr = ctx.lu.pr;
  const r = pr.reservation;
  if (!r) return;
  if (allRegistrants(r.type)) {
    if (pr.registrations.length === 0) pr.reservation = undefined;
    else if (r.holder === leaving) r.holder = pr.registrations[0] as Registration;
    return;
  }
  if (r.holder !== leaving) return;
  pr.reservation = undefined;
  if (
    r.type === PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY ||
    r.type === PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
  )
    ua(ctx, pr.registrations, leaving, Asc.RESERVATIONS_RELEASED);
}

/** GOOD once the state is durable (APTPL, or APTPL just turned off); otherwise GOOD at once. */
function persisted(lu: LogicalUnit, wasAptpl: boolean): Outcome {
  const store = lu.prStore;
  if (!store || (!lu.pr.aptpl && !wasAptpl)) return GOOD;
  const snap = lu.pr.aptpl ? lu.pr.snapshot() : undefined;
  return {
    run: async () => {
      try {
        await store.save(lu.config.id, snap);
      } catch {
        throw check(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE);
      }
      return GOOD;
    },
  };
}

function prOut(ctx: CommandContext, action: number): Outcome {
  const { lu } = ctx;
  const wasAptpl = lu.pr.aptpl;
  const out = prOutInner(ctx, action);
  if (out.status !== ScsiStatus.GOOD) return out;
  return persisted(lu, wasAptpl);
}

function prOutInner(ctx: CommandContext, action: number): ScsiResult {
  const { lu, cdb, nexus } = ctx;
  const pr = lu.pr;
  const scope = (cdb[2] ?? 0) >> 4;
  const type = (cdb[2] ?? 0) & 0x0f;
  const length = cdb.readUInt32BE(5);
  const p = ctx.cmd.dataOut;
  if (action === PrOutAction.REGISTER_AND_MOVE) return registerAndMove(ctx, length);
  if (length < BASIC_LENGTH || p.length < length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const key = p.readBigUInt64BE(0);
  const saKey = p.readBigUInt64BE(8);
  const flags = p[20] ?? 0;
  const specIPt = (flags & 0x08) !== 0;
  const allTgPt = (flags & 0x04) !== 0;
  const aptpl = (flags & 0x01) !== 0;
  const register = action === PrOutAction.REGISTER || action === PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY;
  if (specIPt) {
    if (action !== PrOutAction.REGISTER) throw invalidParam(20, 3);
  } else if (length !== BASIC_LENGTH) {
    throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  }
  if (!register && action !== PrOutAction.CLEAR) {
    if (scope !== 0) throw invalidField(2, 7);
    if (!SUPPORTED_TYPES.has(type)) throw invalidField(2, 3);
  }
  const mine = pr.find(nexus);

  if (register) {
    const ignore = action === PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY;
    if (!mine) {
      if (!ignore && key !== 0n) return CONFLICT;
      const extra = specIPt ? specifiedPorts(ctx, length, allTgPt) : [];
      if (saKey === 0n) return GOOD;
      const own: Registration = {
        key: saKey,
        initiatorName: nexus.initiatorName,
        isid: nexus.isid.toLowerCase(),
        targetName: nexus.targetName,
        portalGroupTag: allTgPt ? undefined : nexus.portalGroupTag,
        relativeTargetPortId: allTgPt ? 0 : nexus.relativeTargetPortId,
      };
      if (pr.registrations.some((r) => intersects(r, own))) return CONFLICT;
      pr.registrations.push(own);
      for (const r of extra) pr.registrations.push({ ...r, key: saKey });
      pr.aptpl = aptpl;
    } else {
      if (!ignore && key !== mine.key) return CONFLICT;
      if (specIPt) throw invalidParam(20, 3);
      if (saKey === 0n) {
        pr.remove(mine);
        dropHolderIfGone(ctx, mine);
      } else {
        mine.key = saKey;
        pr.aptpl = aptpl;
      }
    }
    pr.generation++;
    return GOOD;
  }

  if (!mine || mine.key !== key) return CONFLICT;
  switch (action) {
    case PrOutAction.RESERVE: {
      const r = pr.reservation;
      if (r) {
        if (!pr.holds(mine) || r.type !== type) return CONFLICT;
        return GOOD;
      }
      pr.reservation = { holder: mine, type: type as PrType };
      return GOOD;
    }
    case PrOutAction.RELEASE: {
      const r = pr.reservation;
      if (!r || !pr.holds(mine)) return GOOD;
      if (r.type !== type) throw illegal(Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION);
      pr.reservation = undefined;
      if (r.type !== PrType.WRITE_EXCLUSIVE && r.type !== PrType.EXCLUSIVE_ACCESS)
        ua(ctx, pr.registrations, mine, Asc.RESERVATIONS_RELEASED);
      return GOOD;
    }
    case PrOutAction.CLEAR: {
      const others = [...pr.registrations];
      pr.registrations.length = 0;
      pr.reservation = undefined;
      pr.generation++;
      ua(ctx, others, mine, Asc.RESERVATIONS_PREEMPTED);
      return GOOD;
    }
    default:
      return preempt(ctx, mine, saKey, type as PrType, action === PrOutAction.PREEMPT_AND_ABORT);
  }
}

/** SPEC_I_PT: the extra initiator ports of a REGISTER (validated all before any is added). */
function specifiedPorts(ctx: CommandContext, length: number, allTgPt: boolean): Registration[] {
  const p = ctx.cmd.dataOut;
  if (length < BASIC_LENGTH + 4) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const tidLen = p.readUInt32BE(BASIC_LENGTH);
  const end = BASIC_LENGTH + 4 + tidLen;
  if (end > length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const n = ctx.nexus;
  const out: Registration[] = [];
  let off = BASIC_LENGTH + 4;
  while (off < end) {
    const t = parseTransportId(p, off, end);
    const reg: Registration = {
      key: 0n,
      initiatorName: t.initiatorName,
      isid: t.isid,
      targetName: n.targetName,
      portalGroupTag: allTgPt ? undefined : n.portalGroupTag,
      relativeTargetPortId: allTgPt ? 0 : n.relativeTargetPortId,
    };
    // Already registered, named twice, or the issuing port itself: invalid (SPC-4 §5.9.7).
    const self: Registration = { ...reg, initiatorName: n.initiatorName, isid: n.isid.toLowerCase() };
    if (
      ctx.lu.pr.registrations.some((r) => intersects(r, reg)) ||
      out.some((r) => intersects(r, reg)) ||
      intersects(self, reg)
    ) {
      throw invalidParam(off);
    }
    out.push(reg);
    off += t.length;
  }
  return out;
}

function preempt(
  ctx: CommandContext,
  mine: Registration,
  saKey: bigint,
  type: PrType,
  abort: boolean,
): ScsiResult {
  const { lu, nexus } = ctx;
  const pr = lu.pr;
  const r = pr.reservation;
  const removeWithKey = (victimKey: bigint | undefined): Registration[] => {
    const removed = pr.registrations.filter(
      (x) => x !== mine && (victimKey === undefined || x.key === victimKey),
    );
    for (const x of removed) pr.remove(x);
    return removed;
  };
  let removed: Registration[];
  if (!r) {
    if (saKey === 0n) throw invalidParam(8);
    removed = removeWithKey(saKey);
    if (removed.length === 0) return CONFLICT;
  } else if (allRegistrants(r.type)) {
    if (saKey === 0n) {
      removed = removeWithKey(undefined);
      pr.reservation = { holder: mine, type };
    } else {
      removed = removeWithKey(saKey);
      if (removed.length === 0) return CONFLICT;
    }
  } else if (saKey === r.holder.key) {
    removed = removeWithKey(saKey);
    const changed = r.type !== type || r.holder !== mine;
    pr.reservation = { holder: mine, type };
    if (changed) ua(ctx, pr.registrations, mine, Asc.RESERVATIONS_RELEASED);
  } else {
    if (saKey === 0n) throw invalidParam(8);
    removed = removeWithKey(saKey);
    if (removed.length === 0) return CONFLICT;
  }
  ua(ctx, removed, undefined, Asc.REGISTRATIONS_PREEMPTED);
  if (abort) {
    const keys = new Set<string>();
    for (const x of removed) for (const k of nexusKeysOf(ctx, x)) if (k !== nexus.key) keys.add(k);
    if (keys.size > 0) ctx.target.abortNexusTasks([...keys], lu.lun);
  }
  pr.generation++;
  return GOOD;
}

/** REGISTER AND MOVE (SPC-4 §5.9.9): the holder hands its reservation to another I_T nexus. */
function registerAndMove(ctx: CommandContext, length: number): ScsiResult {
  const { lu, cdb, nexus } = ctx;
  const pr = lu.pr;
  const p = ctx.cmd.dataOut;
  const scope = (cdb[2] ?? 0) >> 4;
  const type = (cdb[2] ?? 0) & 0x0f;
  if (length < BASIC_LENGTH || p.length < length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const key = p.readBigUInt64BE(0);
  const saKey = p.readBigUInt64BE(8);
  const unreg = ((p[17] ?? 0) & 0x02) !== 0;
  const aptpl = ((p[17] ?? 0) & 0x01) !== 0;
  const rtpi = p.readUInt16BE(18);
  const tidLen = p.readUInt32BE(20);
  if (BASIC_LENGTH + tidLen > length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const mine = pr.find(nexus);
  if (!mine || mine.key !== key) return CONFLICT;
  const r = pr.reservation;
  if (!r || !pr.holds(mine) || allRegistrants(r.type)) return CONFLICT;
  if (scope !== 0) throw invalidField(2, 7);
  if (type !== r.type) throw invalidField(2, 3);
  if (saKey === 0n) throw invalidParam(8);
  const t = parseTransportId(p, BASIC_LENGTH, BASIC_LENGTH + tidLen);
  if (t.isid === undefined) throw invalidParam(BASIC_LENGTH, 6); // must name an initiator port
  const tpgt = ctx.target.portalGroupOf(rtpi);
  if (tpgt === undefined) throw invalidParam(18);
  const dest: Registration = {
    key: saKey,
    initiatorName: t.initiatorName,
    isid: t.isid,
    targetName: nexus.targetName,
    portalGroupTag: tpgt,
    relativeTargetPortId: rtpi,
  };
  const destNexus: Nexus = {
    initiatorName: t.initiatorName,
    isid: t.isid,
    targetName: nexus.targetName,
    portalGroupTag: tpgt,
    relativeTargetPortId: rtpi,
    key: nexusKey(t.initiatorName, t.isid, nexus.targetName, tpgt),
  };
  if (covers(mine, destNexus)) throw invalidParam(BASIC_LENGTH);
  let target = pr.find(destNexus);
  if (!target) {
    target = dest;
    pr.registrations.push(target);
  }
  pr.reservation = { holder: target, type: r.type };
  if (unreg) pr.remove(mine);
  pr.aptpl = aptpl;
  pr.generation++;
  return GOOD;
}

export const prOutHandler =
  (action: number) =>
  (ctx: CommandContext): Outcome =>
    prOut(ctx, action);
