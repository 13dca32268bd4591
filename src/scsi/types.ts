/**
 * The contract between a SCSI transport (iSCSI today) and the transport-free SCSI core.
 *
 * The transport decodes its PDUs into a {@link ScsiCommand}, collects all Data-Out first (so the
 * core sees a whole command), and calls {@link ScsiTarget.execute}. The core never throws for
 * anything an initiator can send: every outcome is a {@link ScsiResult} (GOOD, CHECK CONDITION with
 * sense, RESERVATION CONFLICT, BUSY, TASK SET FULL…). The transport computes residuals from
 * `dataIn.length` / `dataOutWanted` against the initiator's expected transfer length.
 */

/** I_T nexus identity (SAM-5): who is talking, through which target port. */
export interface Nexus {
  /** iSCSI initiator name (+ ISID makes the SCSI initiator port name). */
  readonly initiatorName: string;
  /** ISID as 12 hex digits. */
  readonly isid: string;
  /** Target name (iSCSI target node name). */
  readonly targetName: string;
  /** Target portal group tag of the session's portal group. */
  readonly portalGroupTag: number;
  /** Relative target port identifier (1-based, unique in the target). */
  readonly relativeTargetPortId: number;
  /** Stable key for maps: `${initiatorName},i,0x${isid}` + `|${targetName},t,0x${tpgt}`. */
  readonly key: string;
  /** Initiator's transport address (e.g. "127.0.0.1:51234"), for logs and ACL by address. */
  readonly address?: string;
}

export const TaskAttribute = {
  UNTAGGED: 0,
  SIMPLE: 1,
  ORDERED: 2,
  HEAD_OF_QUEUE: 3,
  ACA: 4,
} as const;
export type TaskAttribute = (typeof TaskAttribute)[keyof typeof TaskAttribute];

export interface ScsiCommand {
  readonly nexus: Nexus;
  /** Flat LUN number decoded from the 8-byte LUN field (SAM peripheral/flat addressing). */
  readonly lun: number;
  /** CDB bytes (16 bytes from the BHS, plus any AHS extension). */
  readonly cdb: Buffer;
  /** Initiator's expected data transfer length in bytes (read direction for bidi: `expectedDataInLength`). */
  readonly expectedDataOutLength: number;
  readonly expectedDataInLength: number;
  /** All Data-Out the initiator sent for this command (length ≤ expectedDataOutLength), or empty. */
  readonly dataOut: Buffer;
  readonly taskAttribute: TaskAttribute;
  /** Transport task tag (iSCSI ITT), for TMF abort matching and logs. */
  readonly taskTag: number;
  /** Aborted by a TMF while queued/executing: the core checks it between steps and may stop early.
   *  Any object with an `aborted` flag (an AbortSignal works; the iSCSI layer passes its task). */
  readonly signal?: { readonly aborted: boolean };
}

export const ScsiStatus = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  CONDITION_MET: 0x04,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
  ACA_ACTIVE: 0x30,
  TASK_ABORTED: 0x40,
} as const;
export type ScsiStatus = (typeof ScsiStatus)[keyof typeof ScsiStatus];

export interface ScsiResult {
  readonly status: ScsiStatus;
  /** Sense data (fixed or descriptor format per the LU's D_SENSE), present with CHECK CONDITION. */
  readonly sense?: Buffer;
  /** Data for the initiator: the full amount the command produces, already cut to the CDB's
   *  allocation length; the transport cuts it again to the expected transfer length. */
  readonly dataIn?: Buffer;
  /** For commands that take Data-Out: how many bytes the CDB asked for (for residual counts). */
  readonly dataOutWanted?: number;
  /** Called by the transport once `dataIn` is no longer needed (written out, or dropped), so a
   *  backstore read buffer can be reused at once instead of waiting for the GC. */
  readonly release?: () => void;
  /** The command and its backstore keep no reference to `cmd.dataOut` now: the transport may
   *  reuse that buffer for another command at once. */
  readonly dataOutReusable?: boolean;
}

/** Task management functions the transport forwards to the core (SAM-5 §7). */
export const TmfFunction = {
  ABORT_TASK: 1,
  ABORT_TASK_SET: 2,
  CLEAR_ACA: 3,
  CLEAR_TASK_SET: 4,
  LOGICAL_UNIT_RESET: 5,
  TARGET_WARM_RESET: 6,
  TARGET_COLD_RESET: 7,
} as const;
export type TmfFunction = (typeof TmfFunction)[keyof typeof TmfFunction];

export const TmfResponse = {
  COMPLETE: 0,
  TASK_DOES_NOT_EXIST: 1,
  LUN_DOES_NOT_EXIST: 2,
  TASK_STILL_ALLEGIANT: 3,
  REASSIGNMENT_UNSUPPORTED: 4,
  NOT_SUPPORTED: 5,
  AUTHORIZATION_FAILED: 6,
  REJECTED: 255,
} as const;
export type TmfResponse = (typeof TmfResponse)[keyof typeof TmfResponse];

/**
 * One SCSI target device (an iSCSI target node): a LUN map plus per-nexus state (unit attentions,
 * RESERVE/RELEASE, later persistent reservations and ALUA).
 */
export interface ScsiTarget {
  execute(cmd: ScsiCommand): Promise<ScsiResult>;
  /** A new I_T nexus exists (session login). Establishes POWER ON/RESET unit attentions for it. */
  nexusCreated(nexus: Nexus): void;
  /** The I_T nexus is gone (logout, connection loss): releases RESERVE(6/10) it holds. */
  nexusLost(nexus: Nexus): void;
  /**
   * Side effects of a TMF in the core (unit attentions, reservation release). Aborting the
   * transport's own queued tasks is the transport's job; it calls this after doing so.
   */
  taskManagement(fn: TmfFunction, nexus: Nexus, lun: number): TmfResponse;
  /** LUNs that exist for this nexus (REPORT LUNS also uses it). */
  luns(): readonly number[];
  /**
   * Subscribes the transport to task aborts the core decides on (PREEMPT AND ABORT): the transport
   * aborts every task of those I_T nexuses on that LUN as for ABORT TASK SET from each of them
   * (no response for them: TAS is 0). Returns the unsubscribe function.
   */
  onAbortTasks?(listener: AbortTasksListener): () => void;
}

/** See {@link ScsiTarget.onAbortTasks}: nexus keys ({@link Nexus.key}) and the LUN. */
export type AbortTasksListener = (nexusKeys: readonly string[], lun: number) => void;
