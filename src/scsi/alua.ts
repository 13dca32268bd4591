/**
 * Asymmetric logical unit access (SPC-4 §5.16): one target port group per iSCSI portal group
 * (target port group id = portal group tag), each with an access state that applies to every LU
 * of the target. REPORT TARGET PORT GROUPS, SET TARGET PORT GROUPS (explicit ALUA), and the
 * per-state command filter dispatch runs before the reservation checks.
 */
import { type CommandContext, dataIn, GOOD, type Outcome } from './command.js';
import { Asc, check, illegal, invalidField, invalidParam, SenseKey } from './sense.js';

export const AluaState = {
  ACTIVE_OPTIMIZED: 0x0,
  ACTIVE_NON_OPTIMIZED: 0x1,
  STANDBY: 0x2,
  UNAVAILABLE: 0x3,
  TRANSITIONING: 0xf,
} as const;
export type AluaState = (typeof AluaState)[keyof typeof AluaState];

/** Config spelling of the states. */
export const ALUA_STATE_NAMES = {
  'active-optimized': AluaState.ACTIVE_OPTIMIZED,
  'active-non-optimized': AluaState.ACTIVE_NON_OPTIMIZED,
  standby: AluaState.STANDBY,
  unavailable: AluaState.UNAVAILABLE,
  transitioning: AluaState.TRANSITIONING,
} as const;
export type AluaStateName = keyof typeof ALUA_STATE_NAMES;

export const aluaStateName = (s: AluaState): AluaStateName =>
  (Object.entries(ALUA_STATE_NAMES).find(([, v]) => v === s)?.[0] ?? 'active-optimized') as AluaStateName;

/** A target port: relative target port identifier and its portal group tag (= target port group). */
export interface TargetPort {
  readonly relativeTargetPortId: number;
  readonly portalGroupTag: number;
}

export interface AluaConfig {
  /** State per target port group (portal group tag); groups not listed are active/optimized. */
  readonly groups?: Readonly<Record<number, AluaStateName | AluaState>>;
  /** SET TARGET PORT GROUPS accepted (TPGS 11b); default false (implicit only, TPGS 01b). */
  readonly explicit?: boolean;
  /** Implicit transition time reported in the extended header, seconds (default 10). */
  readonly transitionTimeSec?: number;
}

/** What changed a group's state last (REPORT TARGET PORT GROUPS status code). */
const STATUS_EXPLICIT = 0x01;
const STATUS_IMPLICIT = 0x02;

/** The target's view of ALUA, shared by all its LUs. */
export interface AluaView {
  readonly explicit: boolean;
  readonly transitionTimeSec: number;
  state(tpgt: number): AluaState;
  /** Every target port group with its ports, sorted by id. */
  groups(): readonly { readonly id: number; readonly ports: readonly number[] }[];
  statusCode(tpgt: number): number;
  /** Changes states (SET TARGET PORT GROUPS or admin); raises the unit attentions. */
  setStates(changes: ReadonlyMap<number, AluaState>, by: { explicit: boolean; nexusKey?: string }): void;
}

export function toAluaState(s: AluaStateName | AluaState | number): AluaState {
  if (typeof s === 'string') {
    const v = ALUA_STATE_NAMES[s];
    if (v === undefined) throw new RangeError(`unknown ALUA state '${s}'`);
    return v;
  }
  if (!Object.values(AluaState).includes(s as AluaState)) throw new RangeError(`unknown ALUA state ${s}`);
  return s as AluaState;
}

export { STATUS_EXPLICIT, STATUS_IMPLICIT };

// ---------------------------------------------------------------------------------------------
// command filter per state (SPC-4 §5.16.2.4)

/** Allowed in every state (unavailable, transitioning): INQUIRY, REPORT LUNS, REQUEST SENSE, TPG commands. */
const ALWAYS = new Set<string>(['12', '03', 'a0', 'a3/0a', 'a4/0a', 'a3/0c', 'a3/0d']);
/** Additionally allowed in standby: MODE SENSE/SELECT, LOG, diagnostics, PR IN/OUT, TUR/READ CAPACITY… */
const STANDBY = new Set<string>([
  '15',
  '55',
  '1a',
  '5a',
  '4c',
  '4d',
  '1c',
  '1d',
  '5e',
  '5f',
  // SBC-3 adds nothing mandatory; TEST UNIT READY is not in the list (it reports the state).
]);

const opKey = (opcode: number, sa: number | undefined): string =>
  sa === undefined
    ? opcode.toString(16).padStart(2, '0')
    : `${opcode.toString(16).padStart(2, '0')}/${sa.toString(16).padStart(2, '0')}`;

/** Throws the NOT READY sense for a command the port group's state refuses. */
export function aluaCheck(state: AluaState, opcode: number, sa: number | undefined): void {
  if (state === AluaState.ACTIVE_OPTIMIZED || state === AluaState.ACTIVE_NON_OPTIMIZED) return;
  const k = opKey(opcode, sa);
  if (ALWAYS.has(k) || (sa !== undefined && ALWAYS.has(opKey(opcode, undefined)))) return;
  if (state === AluaState.STANDBY) {
    if (STANDBY.has(opKey(opcode, undefined))) return;
    throw check(SenseKey.NOT_READY, Asc.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE);
  }
  if (state === AluaState.UNAVAILABLE)
    throw check(SenseKey.NOT_READY, Asc.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE);
  throw check(SenseKey.NOT_READY, Asc.LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION);
}

// ---------------------------------------------------------------------------------------------
// REPORT TARGET PORT GROUPS / SET TARGET PORT GROUPS

export function reportTargetPortGroups(ctx: CommandContext): Outcome {
  const { cdb, target } = ctx;
  const format = (cdb[1] ?? 0) >> 5;
  if (format > 1) throw invalidField(1, 7);
  const alloc = cdb.readUInt32BE(6);
  const alua = target.alua;
  const descs = alua.groups().map((g) => {
    const d = Buffer.alloc(8 + 4 * g.ports.length);
    const state = alua.state(g.id);
    d[0] = (state === AluaState.ACTIVE_OPTIMIZED ? 0x80 : 0) | state; // PREF on the optimized group
    d[1] = 0x80 | 0x08 | 0x04 | 0x02 | 0x01; // T_SUP U_SUP S_SUP AN_SUP AO_SUP
    d.writeUInt16BE(g.id & 0xffff, 2);
    d[5] = alua.statusCode(g.id);
    d[7] = g.ports.length & 0xff;
    g.ports.forEach((p, i) => {
      d.writeUInt16BE(p & 0xffff, 8 + 4 * i + 2);
    });
    return d;
  });
  const body = Buffer.concat(descs);
  let head: Buffer;
  if (format === 1) {
    head = Buffer.alloc(8);
    head.writeUInt32BE(body.length + 4, 0);
    head[4] = 0x10; // format type 001b: extended header
    head[5] = Math.min(255, alua.transitionTimeSec);
  } else {
    head = Buffer.alloc(4);
    head.writeUInt32BE(body.length, 0);
  }
  return dataIn(Buffer.concat([head, body]), alloc);
}

export function setTargetPortGroups(ctx: CommandContext): Outcome {
  const { cdb, target, nexus } = ctx;
  const alua = target.alua;
  if (!alua.explicit) throw illegal(Asc.INVALID_COMMAND_OPERATION_CODE);
  const length = cdb.readUInt32BE(6);
  const p = ctx.cmd.dataOut;
  if (length === 0) return GOOD;
  if (length < 4 || (length - 4) % 4 !== 0 || p.length < length)
    throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const known = new Set(alua.groups().map((g) => g.id));
  const changes = new Map<number, AluaState>();
  for (let off = 4; off < length; off += 4) {
    const raw = (p[off] ?? 0) & 0x0f;
    if ((p[off] ?? 0) & 0xf0) throw invalidParam(off, 7);
    if (
      raw !== AluaState.ACTIVE_OPTIMIZED &&
      raw !== AluaState.ACTIVE_NON_OPTIMIZED &&
      raw !== AluaState.STANDBY &&
      raw !== AluaState.UNAVAILABLE
    )
      throw invalidParam(off, 3);
    const id = p.readUInt16BE(off + 2);
    if (!known.has(id) || changes.has(id)) throw invalidParam(off + 2);
    changes.set(id, raw as AluaState);
  }
  alua.setStates(changes, { explicit: true, nexusKey: nexus.key });
  return GOOD;
}
