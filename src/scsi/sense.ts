/**
 * Sense data (SPC-4 §4.5): sense keys, the one table of ASC/ASCQ codes the core uses, builders for
 * fixed (0x70) and descriptor (0x72) formats, and the internal error the handlers throw.
 */

export const SenseKey = {
  NO_SENSE: 0x0,
  RECOVERED_ERROR: 0x1,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  BLANK_CHECK: 0x8,
  VENDOR_SPECIFIC: 0x9,
  COPY_ABORTED: 0xa,
  ABORTED_COMMAND: 0xb,
  VOLUME_OVERFLOW: 0xd,
  MISCOMPARE: 0xe,
} as const;
export type SenseKey = (typeof SenseKey)[keyof typeof SenseKey];

/** Additional sense codes as `asc << 8 | ascq`, with their SPC-4 names. */
export const Asc = {
  NO_ADDITIONAL_SENSE: 0x0000,
  LOGICAL_UNIT_NOT_READY_CAUSE_NOT_REPORTABLE: 0x0400,
  LOGICAL_UNIT_NOT_READY_INITIALIZING_COMMAND_REQUIRED: 0x0402,
  LOGICAL_UNIT_NOT_READY_MANUAL_INTERVENTION_REQUIRED: 0x0403,
  LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION: 0x040a,
  LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE: 0x040b,
  LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE: 0x040c,
  LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS: 0x041b,
  UNREACHABLE_COPY_TARGET: 0x0804,
  COPY_TARGET_DEVICE_DATA_UNDERRUN: 0x0d04,
  WRITE_ERROR: 0x0c00,
  UNRECOVERED_READ_ERROR: 0x1100,
  MISCOMPARE_DURING_VERIFY_OPERATION: 0x1d00,
  PARAMETER_LIST_LENGTH_ERROR: 0x1a00,
  INVALID_COMMAND_OPERATION_CODE: 0x2000,
  LBA_OUT_OF_RANGE: 0x2100,
  INVALID_FIELD_IN_CDB: 0x2400,
  LOGICAL_UNIT_NOT_SUPPORTED: 0x2500,
  INVALID_FIELD_IN_PARAMETER_LIST: 0x2600,
  PARAMETER_NOT_SUPPORTED: 0x2601,
  PARAMETER_VALUE_INVALID: 0x2602,
  INVALID_RELEASE_OF_PERSISTENT_RESERVATION: 0x2604,
  TOO_MANY_TARGET_DESCRIPTORS: 0x2606,
  UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: 0x2607,
  TOO_MANY_SEGMENT_DESCRIPTORS: 0x2608,
  UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: 0x2609,
  INLINE_DATA_LENGTH_EXCEEDED: 0x260b,
  INVALID_OPERATION_FOR_COPY_SOURCE_OR_DESTINATION: 0x260c,
  WRITE_PROTECTED: 0x2700,
  HARDWARE_WRITE_PROTECTED: 0x2701,
  LOGICAL_UNIT_SOFTWARE_WRITE_PROTECTED: 0x2702,
  POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED: 0x2900,
  POWER_ON_OCCURRED: 0x2901,
  SCSI_BUS_RESET_OCCURRED: 0x2902,
  BUS_DEVICE_RESET_FUNCTION_OCCURRED: 0x2903,
  I_T_NEXUS_LOSS_OCCURRED: 0x2907,
  PARAMETERS_CHANGED: 0x2a00,
  MODE_PARAMETERS_CHANGED: 0x2a01,
  RESERVATIONS_PREEMPTED: 0x2a03,
  ASYMMETRIC_ACCESS_STATE_CHANGED: 0x2a06,
  RESERVATIONS_RELEASED: 0x2a04,
  REGISTRATIONS_PREEMPTED: 0x2a05,
  CAPACITY_DATA_HAS_CHANGED: 0x2a09,
  COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: 0x2f00,
  SANITIZE_COMMAND_FAILED: 0x3103,
  SAVING_PARAMETERS_NOT_SUPPORTED: 0x3900,
  MEDIUM_NOT_PRESENT: 0x3a00,
  MEDIUM_NOT_PRESENT_TRAY_CLOSED: 0x3a01,
  MEDIUM_NOT_PRESENT_TRAY_OPEN: 0x3a02,
  REPORTED_LUNS_DATA_HAS_CHANGED: 0x3f0e,
  INTERNAL_TARGET_FAILURE: 0x4400,
  INVALID_MESSAGE_ERROR: 0x4900,
  MEDIUM_REMOVAL_PREVENTED: 0x5302,
  SPACE_ALLOCATION_FAILED_WRITE_PROTECT: 0x2707,
  INSUFFICIENT_RESOURCES: 0x5503,
  OPERATION_IN_PROGRESS: 0x0016,
} as const;
export type Asc = (typeof Asc)[keyof typeof Asc];

const ascNames = new Map<number, string>(Object.entries(Asc).map(([name, code]) => [code, name]));

/** Name of an ASC/ASCQ pair (e.g. `INVALID_FIELD_IN_CDB`), or `ASC_0x....` when unknown. */
export function ascName(code: number): string {
  return ascNames.get(code) ?? `ASC_0x${code.toString(16).padStart(4, '0')}`;
}

export const senseKeyName = (key: number): string =>
  Object.entries(SenseKey).find(([, v]) => v === key)?.[0] ?? `KEY_0x${key.toString(16)}`;

/** Sense-key-specific field pointer (SPC-4 §4.5.2.4.2). */
export interface FieldPointer {
  /** true: the error is in the CDB; false: in the parameter list (Data-Out). */
  readonly cdb: boolean;
  readonly byte: number;
  /** Bit 0–7 within the byte, when a specific bit is at fault. */
  readonly bit?: number;
}

export interface SenseInfo {
  readonly key: SenseKey;
  /** `asc << 8 | ascq` */
  readonly code: number;
  /** INFORMATION field (e.g. the first bad LBA, or the miscompare offset). */
  readonly information?: number;
  readonly field?: FieldPointer;
  /** Deferred error (0x71/0x73) instead of current (0x70/0x72). */
  readonly deferred?: boolean;
}

export const FIXED_SENSE_LENGTH = 18;

function sksBytes(field: FieldPointer): [number, number, number] {
  let b0 = 0x80; // SKSV
  if (field.cdb) b0 |= 0x40;
  if (field.bit !== undefined) b0 |= 0x08 | (field.bit & 0x07);
  return [b0, (field.byte >> 8) & 0xff, field.byte & 0xff];
}

/** Builds sense data in fixed or descriptor format. */
export function buildSense(info: SenseInfo, descriptor: boolean): Buffer {
  const asc = (info.code >> 8) & 0xff;
  const ascq = info.code & 0xff;
  if (!descriptor) {
    const b = Buffer.alloc(FIXED_SENSE_LENGTH);
    b[0] = info.deferred ? 0x71 : 0x70;
    b[2] = info.key & 0x0f;
    if (info.information !== undefined) {
      b[0] = (b[0] ?? 0) | 0x80; // VALID
      b.writeUInt32BE(info.information >>> 0, 3);
    }
    b[7] = FIXED_SENSE_LENGTH - 8;
    b[12] = asc;
    b[13] = ascq;
    if (info.field) {
      const [x, y, z] = sksBytes(info.field);
      b[15] = x;
      b[16] = y;
      b[17] = z;
    }
    return b;
  }
  const parts: Buffer[] = [];
  if (info.information !== undefined) {
    const d = Buffer.alloc(12);
    d[0] = 0x00; // information descriptor
    d[1] = 0x0a;
    d[2] = 0x80; // VALID
    d.writeBigUInt64BE(BigInt(Math.max(0, Math.trunc(info.information))), 4);
    parts.push(d);
  }
  if (info.field) {
    const d = Buffer.alloc(8);
    d[0] = 0x02; // sense key specific descriptor
    d[1] = 0x06;
    const [x, y, z] = sksBytes(info.field);
    d[4] = x;
    d[5] = y;
    d[6] = z;
    parts.push(d);
  }
  const body = Buffer.concat(parts);
  const h = Buffer.alloc(8);
  h[0] = info.deferred ? 0x73 : 0x72;
  h[1] = info.key & 0x0f;
  h[2] = asc;
  h[3] = ascq;
  h[7] = body.length;
  return Buffer.concat([h, body]);
}

export interface ParsedSense {
  readonly responseCode: number;
  readonly key: number;
  readonly code: number;
  readonly information?: number;
  readonly field?: FieldPointer;
}

/** Decodes fixed or descriptor sense (for logs and tests). */
export function parseSense(b: Buffer): ParsedSense | undefined {
  if (b.length < 8) return undefined;
  const rc = (b[0] ?? 0) & 0x7f;
  const decodeSks = (x: number, y: number, z: number): FieldPointer | undefined => {
    if (!(x & 0x80)) return undefined;
    const fp: { cdb: boolean; byte: number; bit?: number } = { cdb: (x & 0x40) !== 0, byte: (y << 8) | z };
    if (x & 0x08) fp.bit = x & 0x07;
    return fp;
  };
  if (rc === 0x70 || rc === 0x71) {
    const out: {
      responseCode: number;
      key: number;
      code: number;
      information?: number;
      field?: FieldPointer;
    } = {
      responseCode: rc,
      key: (b[2] ?? 0) & 0x0f,
      code: ((b[12] ?? 0) << 8) | (b[13] ?? 0),
    };
    if ((b[0] ?? 0) & 0x80) out.information = b.readUInt32BE(3);
    if (b.length >= 18) {
      const f = decodeSks(b[15] ?? 0, b[16] ?? 0, b[17] ?? 0);
      if (f) out.field = f;
    }
    return out;
  }
  if (rc === 0x72 || rc === 0x73) {
    const out: {
      responseCode: number;
      key: number;
      code: number;
      information?: number;
      field?: FieldPointer;
    } = {
      responseCode: rc,
      key: (b[1] ?? 0) & 0x0f,
      code: ((b[2] ?? 0) << 8) | (b[3] ?? 0),
    };
    const end = Math.min(b.length, 8 + (b[7] ?? 0));
    let p = 8;
    while (p + 2 <= end) {
      const type = b[p] ?? 0;
      const len = b[p + 1] ?? 0;
      if (type === 0x00 && p + 12 <= end) out.information = Number(b.readBigUInt64BE(p + 4));
      if (type === 0x02 && p + 8 <= end) {
        const f = decodeSks(b[p + 4] ?? 0, b[p + 5] ?? 0, b[p + 6] ?? 0);
        if (f) out.field = f;
      }
      p += 2 + len;
    }
    return out;
  }
  return undefined;
}

/**
 * What a handler throws to end a command with CHECK CONDITION. It never leaves the core: dispatch
 * turns it into sense data in the LU's current format.
 */
export class CheckCondition extends Error {
  override readonly name = 'CheckCondition';
  readonly sense: SenseInfo;
  constructor(sense: SenseInfo) {
    super(`${senseKeyName(sense.key)} ${ascName(sense.code)}`);
    this.sense = sense;
  }
}

export const check = (key: SenseKey, code: number, extra?: Omit<SenseInfo, 'key' | 'code'>): CheckCondition =>
  new CheckCondition({ key, code, ...extra });

/** ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at `byte` (and `bit`) of the CDB. */
export const invalidField = (byte: number, bit?: number): CheckCondition =>
  new CheckCondition({
    key: SenseKey.ILLEGAL_REQUEST,
    code: Asc.INVALID_FIELD_IN_CDB,
    field: bit === undefined ? { cdb: true, byte } : { cdb: true, byte, bit },
  });

/** ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST pointing into the Data-Out. */
export const invalidParam = (byte: number, bit?: number): CheckCondition =>
  new CheckCondition({
    key: SenseKey.ILLEGAL_REQUEST,
    code: Asc.INVALID_FIELD_IN_PARAMETER_LIST,
    field: bit === undefined ? { cdb: false, byte } : { cdb: false, byte, bit },
  });

export const illegal = (code: number): CheckCondition =>
  new CheckCondition({ key: SenseKey.ILLEGAL_REQUEST, code });

export const lbaOutOfRange = (): CheckCondition => illegal(Asc.LBA_OUT_OF_RANGE);
