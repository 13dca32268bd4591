/**
 * The SCSI target device: LUN map, I_T nexus bookkeeping, and the dispatch pipeline
 *
 *   lookup (opcode [+ SA]) → LU exists? → unit attention → supported? → CDB usage check →
 *   access check (SPC-2 reservation; PR and ALUA plug in here) → medium present → write protect →
 *   handler (validates, returns a result or deferred work) → task ordering → run.
 *
 * Nothing an initiator sends makes `execute` reject: every failure is a CHECK CONDITION.
 */

import {
  type AluaConfig,
  AluaState,
  type AluaView,
  aluaCheck,
  STATUS_EXPLICIT,
  STATUS_IMPLICIT,
  type TargetPort,
  toAluaState,
} from './alua.js';
import {
  type BaseContext,
  type CommandContext,
  type CommandDescriptor,
  isDeferred,
  type Outcome,
  type TargetView,
} from './command.js';
import { LogicalUnit, type LogicalUnitConfig, LU_ID_RE } from './lu.js';
import { COMMANDS, SERVICE_ACTION_OPCODES } from './opcodes.js';
import { allowedWhileSanitizing, sanitizeFailed, sanitizeInProgress } from './sanitize.js';

const SANITIZE_OPCODE = 0x48;

import type { PrStore } from './pr-store.js';
import { Asc, buildSense, CheckCondition, check, illegal, invalidField, SenseKey } from './sense.js';
import {
  type AbortTasksListener,
  type Nexus,
  type ScsiCommand,
  type ScsiResult,
  ScsiStatus,
  type ScsiTarget,
  TmfFunction,
  TmfResponse,
} from './types.js';

export interface ScsiTargetConfig {
  /** Target name (iSCSI target node name). */
  readonly name: string;
  readonly luns: readonly LogicalUnitConfig[];
  /** Where APTPL persistent reservations are saved (see pr-store.ts). */
  readonly prStore?: PrStore;
  /** The target ports (for REPORT TARGET PORT GROUPS and REGISTER AND MOVE); nexuses add theirs. */
  readonly ports?: readonly TargetPort[];
  readonly alua?: AluaConfig;
}

/** {@link ScsiTarget} plus what the admin side needs. */
export interface LunarScsiTarget extends ScsiTarget {
  readonly name: string;
  /** The LU's backstore changed size: CAPACITY DATA HAS CHANGED for every nexus. */
  lunResized(lun: number): void;
  /** Adds a LU: REPORTED LUNS DATA HAS CHANGED for every nexus on the other LUs. */
  addLun(config: LogicalUnitConfig): void;
  /** Removes a LU (returns its config): REPORTED LUNS DATA HAS CHANGED on the others. */
  removeLun(lun: number): LogicalUnitConfig | undefined;
  /** State of one LU (mode values, reservation, medium) for status output and tests. */
  logicalUnit(lun: number): LogicalUnit | undefined;
  /** ALUA state of a target port group (portal group tag). */
  aluaState(tpgt: number): AluaState;
  /**
   * Admin-side ALUA change (implicit transition): ASYMMETRIC ACCESS STATE CHANGED for every nexus.
   * Unknown groups are added.
   */
  setAluaState(tpgt: number, state: AluaState): void;
  /** The target ports known (configured plus seen in logins). */
  ports(): readonly TargetPort[];
  onAbortTasks(listener: AbortTasksListener): () => void;
}

/** Highest LUN we can encode (flat space addressing). */
export const MAX_LUN = 16383;

const CDB_SIZE = 16;
const CONFLICT: ScsiResult = { status: ScsiStatus.RESERVATION_CONFLICT };

type Entry = CommandDescriptor | Map<number, CommandDescriptor>;

function buildIndex(commands: readonly CommandDescriptor[]): Map<number, Entry> {
  const index = new Map<number, Entry>();
  for (const d of commands) {
    if (d.sa === undefined) {
      if (index.has(d.opcode)) throw new Error(`duplicate opcode 0x${d.opcode.toString(16)}`);
      index.set(d.opcode, d);
    } else {
      let m = index.get(d.opcode);
      if (m === undefined) {
        m = new Map();
        index.set(d.opcode, m);
      }
      if (!(m instanceof Map) || m.has(d.sa))
        throw new Error(`duplicate opcode/SA 0x${d.opcode.toString(16)}`);
      m.set(d.sa, d);
    }
  }
  return index;
}

const INDEX = buildIndex(COMMANDS);
const SORTED = [...COMMANDS].sort((a, b) => a.opcode - b.opcode || (a.sa ?? -1) - (b.sa ?? -1));

/** Rejects a CDB that sets a bit its usage data does not allow (INVALID FIELD IN CDB). */
export function checkUsage(d: CommandDescriptor, cdb: Buffer): void {
  for (let i = 1; i < d.cdbLength; i++) {
    const bad = (cdb[i] ?? 0) & ~(d.usage[i] ?? 0) & 0xff;
    if (bad) throw invalidField(i, 31 - Math.clz32(bad));
  }
}

function validateConfig(c: LogicalUnitConfig): void {
  if (!Number.isInteger(c.lun) || c.lun < 0 || c.lun > MAX_LUN) throw new RangeError(`invalid LUN ${c.lun}`);
  if (!LU_ID_RE.test(c.id)) throw new RangeError(`LUN ${c.lun}: id must be 16 hex digits, got '${c.id}'`);
}

class Target implements LunarScsiTarget, TargetView {
  readonly name: string;
  readonly #luns = new Map<number, LogicalUnit>();
  readonly #nexuses = new Map<string, Nexus>();
  readonly #prStore: PrStore | undefined;
  /** relative target port id → portal group tag */
  readonly #ports = new Map<number, number>();
  readonly #aluaStates = new Map<number, AluaState>();
  readonly #aluaStatus = new Map<number, number>();
  readonly #abortListeners = new Set<AbortTasksListener>();
  /** Initiator names × target ports that logged in since the last power on (cold reset). */
  readonly #seenPorts = new Set<string>();
  readonly alua: AluaView;

  constructor(config: ScsiTargetConfig) {
    this.name = config.name;
    this.#prStore = config.prStore;
    for (const p of config.ports ?? []) this.#ports.set(p.relativeTargetPortId, p.portalGroupTag);
    for (const [g, st] of Object.entries(config.alua?.groups ?? {})) {
      const id = Number(g);
      if (!Number.isInteger(id) || id < 1 || id > 0xffff)
        throw new RangeError(`ALUA group ${g}: not a portal group tag`);
      this.#aluaStates.set(id, toAluaState(st));
    }
    const explicit = config.alua?.explicit === true;
    const transitionTimeSec = config.alua?.transitionTimeSec ?? 10;
    this.alua = {
      explicit,
      transitionTimeSec,
      state: (tpgt) => this.aluaState(tpgt),
      groups: () => this.#groups(),
      statusCode: (tpgt) => this.#aluaStatus.get(tpgt) ?? 0,
      setStates: (changes, by) => this.#setStates(changes, by.explicit, by.nexusKey),
    };
    for (const c of config.luns) {
      validateConfig(c);
      if (this.#luns.has(c.lun)) throw new RangeError(`duplicate LUN ${c.lun}`);
      const lu = new LogicalUnit(c, this.#prStore);
      lu.aluaExplicit = explicit;
      this.#luns.set(c.lun, lu);
    }
  }

  // -- ALUA / ports -----------------------------------------------------------------------------

  aluaState(tpgt: number): AluaState {
    return this.#aluaStates.get(tpgt) ?? AluaState.ACTIVE_OPTIMIZED;
  }

  setAluaState(tpgt: number, state: AluaState): void {
    this.#setStates(new Map([[tpgt, toAluaState(state)]]), false, undefined);
  }

  ports(): readonly TargetPort[] {
    return [...this.#ports]
      .map(([relativeTargetPortId, portalGroupTag]) => ({ relativeTargetPortId, portalGroupTag }))
      .sort((a, b) => a.relativeTargetPortId - b.relativeTargetPortId);
  }

  portalGroupOf(relativeTargetPortId: number): number | undefined {
    return this.#ports.get(relativeTargetPortId);
  }

  #groups(): { id: number; ports: number[] }[] {
    const groups = new Map<number, number[]>();
    for (const id of this.#aluaStates.keys()) groups.set(id, []);
    for (const [rtpi, tpgt] of this.#ports) {
      let g = groups.get(tpgt);
      if (!g) {
        g = [];
        groups.set(tpgt, g);
      }
      g.push(rtpi);
    }
    return [...groups]
      .map(([id, ports]) => ({ id, ports: ports.sort((a, b) => a - b) }))
      .sort((a, b) => a.id - b.id);
  }

  #setStates(changes: ReadonlyMap<number, AluaState>, explicit: boolean, by: string | undefined): void {
    let changed = false;
    // One optimized group at a time: when SET TARGET PORT GROUPS (or the admin) makes a group
    // active/optimized, the other optimized groups it does not name become active/non-optimized,
    // so the initiator's path priorities keep telling the groups apart (dm-multipath's alua
    // handler sends STPG to the group it activates).
    const all = new Map(changes);
    if ([...changes.values()].includes(AluaState.ACTIVE_OPTIMIZED)) {
      for (const g of this.#groups()) {
        if (!changes.has(g.id) && this.aluaState(g.id) === AluaState.ACTIVE_OPTIMIZED)
          all.set(g.id, AluaState.ACTIVE_NON_OPTIMIZED);
      }
    }
    for (const [id, st] of all) {
      if (this.aluaState(id) !== st || !this.#aluaStates.has(id)) changed = true;
      this.#aluaStates.set(id, st);
      this.#aluaStatus.set(id, explicit ? STATUS_EXPLICIT : STATUS_IMPLICIT);
    }
    if (!changed) return;
    for (const lu of this.#luns.values())
      for (const k of this.#nexuses.keys()) if (k !== by) lu.addUa(k, Asc.ASYMMETRIC_ACCESS_STATE_CHANGED);
  }

  onAbortTasks(listener: AbortTasksListener): () => void {
    this.#abortListeners.add(listener);
    return () => {
      this.#abortListeners.delete(listener);
    };
  }

  abortNexusTasks(nexusKeys: readonly string[], lun: number): void {
    for (const l of this.#abortListeners) {
      try {
        l(nexusKeys, lun);
      } catch {
        // a transport failure must not fail the PERSISTENT RESERVE OUT
      }
    }
  }

  // -- TargetView -------------------------------------------------------------------------------

  lu(lun: number): LogicalUnit | undefined {
    return this.#luns.get(lun);
  }
  luns(): readonly number[] {
    return [...this.#luns.keys()].sort((a, b) => a - b);
  }
  nexusKeys(): readonly string[] {
    return [...this.#nexuses.keys()];
  }
  nexuses(): readonly Nexus[] {
    return [...this.#nexuses.values()];
  }
  supported(lu: LogicalUnit): readonly CommandDescriptor[] {
    return SORTED.filter((d) => !d.supportedBy || d.supportedBy(lu));
  }
  find(opcode: number, sa: number | undefined): CommandDescriptor | undefined {
    const e = INDEX.get(opcode);
    if (e instanceof Map) return sa === undefined ? undefined : e.get(sa);
    return sa === undefined ? e : undefined;
  }
  hasServiceActions(opcode: number): boolean {
    return SERVICE_ACTION_OPCODES.has(opcode);
  }
  modeParametersChanged(lu: LogicalUnit, by: Nexus): void {
    for (const k of this.#nexuses.keys()) if (k !== by.key) lu.addUa(k, Asc.MODE_PARAMETERS_CHANGED);
  }

  // -- ScsiTarget -------------------------------------------------------------------------------

  execute(cmd: ScsiCommand): Promise<ScsiResult> {
    const lu = this.#luns.get(cmd.lun);
    try {
      const out = this.#dispatch(cmd, lu);
      return out instanceof Promise
        ? out.catch((err: unknown) => this.#failure(err, lu))
        : Promise.resolve(out);
    } catch (err) {
      return Promise.resolve(this.#failure(err, lu));
    }
  }

  nexusCreated(nexus: Nexus): void {
    this.#nexuses.set(nexus.key, nexus);
    if (!this.#ports.has(nexus.relativeTargetPortId))
      this.#ports.set(nexus.relativeTargetPortId, nexus.portalGroupTag);
    // POWER ON is reported once per initiator port per power-on of the target: a port that logs
    // in again (after a logout or a dropped connection) has seen it already, and a login is no
    // reset. (Otherwise an initiator that cannot keep a session alive, e.g. one that sleeps past
    // the NOP-In timeout while polling TEST UNIT READY for the end of a sanitize, never gets GOOD.)
    // (By initiator name and target port: initiators commonly pick a new ISID when they reconnect.)
    const port = `${nexus.initiatorName}|${nexus.targetName}|${nexus.portalGroupTag}`;
    const first = !this.#seenPorts.has(port);
    this.#seenPorts.add(port);
    for (const lu of this.#luns.values()) {
      lu.clearUas(nexus.key);
      if (first) lu.addUa(nexus.key, Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED);
    }
  }

  nexusLost(nexus: Nexus): void {
    this.#nexuses.delete(nexus.key);
    for (const lu of this.#luns.values()) lu.forgetNexus(nexus.key);
  }

  taskManagement(fn: TmfFunction, _nexus: Nexus, lun: number): TmfResponse {
    const lu = this.#luns.get(lun);
    switch (fn) {
      case TmfFunction.ABORT_TASK:
      case TmfFunction.ABORT_TASK_SET:
      case TmfFunction.CLEAR_TASK_SET:
        return lu ? TmfResponse.COMPLETE : TmfResponse.LUN_DOES_NOT_EXIST;
      case TmfFunction.CLEAR_ACA:
        return TmfResponse.NOT_SUPPORTED;
      case TmfFunction.LOGICAL_UNIT_RESET:
        if (!lu) return TmfResponse.LUN_DOES_NOT_EXIST;
        this.#resetLu(lu, Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED);
        return TmfResponse.COMPLETE;
      case TmfFunction.TARGET_WARM_RESET:
        for (const l of this.#luns.values()) this.#resetLu(l, Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED);
        return TmfResponse.COMPLETE;
      case TmfFunction.TARGET_COLD_RESET:
        this.#seenPorts.clear();
        for (const n of this.#nexuses.values())
          this.#seenPorts.add(`${n.initiatorName}|${n.targetName}|${n.portalGroupTag}`);
        for (const l of this.#luns.values()) {
          this.#resetLu(l, Asc.POWER_ON_OCCURRED);
          if (!l.pr.aptpl) l.pr.clear();
          Object.assign(l.mode, l.defaults);
          l.loaded = true;
        }
        return TmfResponse.COMPLETE;
      default:
        return TmfResponse.NOT_SUPPORTED;
    }
  }

  // -- admin ------------------------------------------------------------------------------------

  lunResized(lun: number): void {
    const lu = this.#luns.get(lun);
    if (!lu) return;
    for (const k of this.#nexuses.keys()) lu.addUa(k, Asc.CAPACITY_DATA_HAS_CHANGED);
  }

  addLun(config: LogicalUnitConfig): void {
    validateConfig(config);
    if (this.#luns.has(config.lun)) throw new RangeError(`duplicate LUN ${config.lun}`);
    this.#lunsChanged();
    const lu = new LogicalUnit(config, this.#prStore);
    lu.aluaExplicit = this.alua.explicit;
    this.#luns.set(config.lun, lu);
    for (const k of this.#nexuses.keys()) lu.addUa(k, Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED);
  }

  removeLun(lun: number): LogicalUnitConfig | undefined {
    const lu = this.#luns.get(lun);
    if (!lu) return undefined;
    this.#luns.delete(lun);
    this.#lunsChanged();
    return lu.config;
  }

  logicalUnit(lun: number): LogicalUnit | undefined {
    return this.#luns.get(lun);
  }

  // -- internals --------------------------------------------------------------------------------

  #lunsChanged(): void {
    for (const lu of this.#luns.values())
      for (const k of this.#nexuses.keys()) lu.addUa(k, Asc.REPORTED_LUNS_DATA_HAS_CHANGED);
  }

  #resetLu(lu: LogicalUnit, code: number): void {
    lu.reset();
    for (const k of this.#nexuses.keys()) lu.addUa(k, code);
  }

  #dispatch(cmd: ScsiCommand, lu: LogicalUnit | undefined): ScsiResult | Promise<ScsiResult> {
    if (!this.#nexuses.has(cmd.nexus.key)) this.nexusCreated(cmd.nexus);
    const cdb =
      cmd.cdb.length >= CDB_SIZE
        ? cmd.cdb
        : Buffer.concat([cmd.cdb, Buffer.alloc(CDB_SIZE - cmd.cdb.length)]);
    const opcode = cdb[0] ?? 0;
    const hasSa = SERVICE_ACTION_OPCODES.has(opcode);
    const desc = this.find(opcode, hasSa ? (cdb[1] ?? 0) & 0x1f : undefined);
    if (!lu) {
      if (desc?.noLu) {
        checkUsage(desc, cdb);
        const base: BaseContext = { target: this, cmd, cdb, nexus: cmd.nexus };
        const out = desc.noLu(base);
        return isDeferred(out) ? out.run() : out;
      }
      throw check(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED);
    }

    // SBC-4 §4.11: while a sanitize runs, only a few commands are processed (checked before the
    // unit attentions, which stay pending until the sanitize ends).
    if (lu.sanitizing && !(desc && allowedWhileSanitizing(desc.opcode, desc.sa))) throw sanitizeInProgress();

    if (!desc?.uaExempt) {
      const ua = lu.takeUa(cmd.nexus.key);
      if (ua !== undefined) {
        return {
          status: ScsiStatus.CHECK_CONDITION,
          sense: buildSense({ key: SenseKey.UNIT_ATTENTION, code: ua }, lu.mode.dSense),
        };
      }
    }

    if (!desc || (desc.supportedBy && !desc.supportedBy(lu))) {
      if (hasSa) throw invalidField(1, 4);
      throw illegal(Asc.INVALID_COMMAND_OPERATION_CODE);
    }
    checkUsage(desc, cdb);

    const denied = this.#accessCheck(lu, desc, cmd, cdb);
    if (denied) return denied;

    if (desc.medium && !lu.loaded) throw check(SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT);
    if (lu.sanitizeFailure && desc.medium && desc.opcode !== SANITIZE_OPCODE) throw sanitizeFailed();
    if (desc.writes && lu.writeProtected) {
      throw check(
        SenseKey.DATA_PROTECT,
        lu.mode.swp ? Asc.LOGICAL_UNIT_SOFTWARE_WRITE_PROTECTED : Asc.WRITE_PROTECTED,
      );
    }

    // A plain literal, not { ...base, lu }: V8 gave each spread copy a new hidden class, so every
    // handler's property loads missed their inline caches (perf: map creation and LoadIC misses on
    // every command).
    const ctx: CommandContext = { target: this, cmd, cdb, nexus: cmd.nexus, lu };
    return this.#schedule(lu, cmd, desc.handler(ctx));
  }

  /**
   * Whether this nexus may run this command on this LU now. SPC-2 RESERVE today; persistent
   * reservations and ALUA access states plug in here.
   */
  #accessCheck(
    lu: LogicalUnit,
    desc: CommandDescriptor,
    cmd: ScsiCommand,
    cdb: Buffer,
  ): ScsiResult | undefined {
    aluaCheck(this.aluaState(cmd.nexus.portalGroupTag), desc.opcode, desc.sa);
    const me = cmd.nexus.key;
    if (lu.reservedBy !== undefined && lu.reservedBy !== me) {
      const ex = desc.reservationExempt;
      const exempt = typeof ex === 'function' ? ex(cdb) : ex === true;
      if (!exempt) return CONFLICT;
    }
    // SPC-4 §5.9.3: RESERVE/RELEASE conflict while any persistent registration exists.
    if (desc.spc2 && lu.pr.registrations.length > 0) return CONFLICT;
    const access = typeof desc.prAccess === 'function' ? desc.prAccess(cdb) : (desc.prAccess ?? 'write');
    if (lu.pr.conflicts(cmd.nexus, access)) return CONFLICT;
    return undefined;
  }

  #schedule(lu: LogicalUnit, cmd: ScsiCommand, outcome: Outcome): ScsiResult | Promise<ScsiResult> {
    const deferred = isDeferred(outcome) ? outcome : undefined;
    const admission = lu.scheduler.admit(cmd.taskAttribute, deferred?.range);
    if (!deferred && !admission.ready) {
      admission.release();
      return outcome as ScsiResult;
    }
    return (async (): Promise<ScsiResult> => {
      try {
        if (admission.ready) await admission.ready;
        if (cmd.signal?.aborted) return { status: ScsiStatus.TASK_ABORTED };
        return deferred ? await deferred.run() : (outcome as ScsiResult);
      } catch (err) {
        return this.#failure(err, lu);
      } finally {
        admission.release();
        deferred?.release?.();
      }
    })();
  }

  #failure(err: unknown, lu: LogicalUnit | undefined): ScsiResult {
    const cc =
      err instanceof CheckCondition ? err : check(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE);
    return { status: ScsiStatus.CHECK_CONDITION, sense: buildSense(cc.sense, lu?.mode.dSense ?? false) };
  }
}

/** Creates a SCSI target device. Throws (synchronously) only for an invalid configuration. */
export function createScsiTarget(config: ScsiTargetConfig): LunarScsiTarget {
  return new Target(config);
}
