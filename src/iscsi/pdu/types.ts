/** Typed iSCSI PDUs (RFC 7143 §11). `data` is the data segment without padding or digest. */

interface Base {
  /** I bit (initiator PDUs only; always false on target PDUs). */
  readonly immediate: boolean;
  readonly data: Buffer;
}

export interface NopOut extends Base {
  readonly opcode: 0x00;
  readonly lun: bigint;
  readonly itt: number;
  readonly ttt: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
}

export interface ScsiCommandPdu extends Base {
  readonly opcode: 0x01;
  readonly final: boolean;
  readonly read: boolean;
  readonly write: boolean;
  readonly attr: number;
  readonly lun: bigint;
  readonly itt: number;
  readonly edtl: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
  /** Whole CDB: 16 BHS bytes plus the extended-CDB AHS when present. */
  readonly cdb: Buffer;
  /** Bidirectional read expected length (AHS type 2), when present. */
  readonly bidiReadLength?: number;
}

export interface TmfRequest extends Base {
  readonly opcode: 0x02;
  readonly fn: number;
  readonly lun: bigint;
  readonly itt: number;
  readonly rtt: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
  readonly refCmdSN: number;
  readonly expDataSN: number;
}

export interface LoginRequest extends Base {
  readonly opcode: 0x03;
  readonly transit: boolean;
  readonly cont: boolean;
  readonly csg: number;
  readonly nsg: number;
  readonly versionMax: number;
  readonly versionMin: number;
  /** 6-byte ISID as 12 lowercase hex digits. */
  readonly isid: string;
  readonly tsih: number;
  readonly itt: number;
  readonly cid: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
}

export interface TextRequest extends Base {
  readonly opcode: 0x04;
  readonly final: boolean;
  readonly cont: boolean;
  readonly lun: bigint;
  readonly itt: number;
  readonly ttt: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
}

export interface DataOut extends Base {
  readonly opcode: 0x05;
  readonly final: boolean;
  readonly lun: bigint;
  readonly itt: number;
  readonly ttt: number;
  readonly expStatSN: number;
  readonly dataSN: number;
  readonly bufferOffset: number;
}

export interface LogoutRequest extends Base {
  readonly opcode: 0x06;
  readonly reason: number;
  readonly itt: number;
  readonly cid: number;
  readonly cmdSN: number;
  readonly expStatSN: number;
}

export interface Snack extends Base {
  readonly opcode: 0x10;
  readonly type: number;
  readonly lun: bigint;
  readonly itt: number;
  readonly ttt: number;
  readonly expStatSN: number;
  readonly begRun: number;
  readonly runLength: number;
}

export interface NopIn extends Base {
  readonly opcode: 0x20;
  readonly lun: bigint;
  readonly itt: number;
  readonly ttt: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
}

export interface ScsiResponsePdu extends Base {
  readonly opcode: 0x21;
  readonly bidiOverflow: boolean;
  readonly bidiUnderflow: boolean;
  readonly overflow: boolean;
  readonly underflow: boolean;
  readonly response: number;
  readonly status: number;
  readonly itt: number;
  readonly snackTag: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
  readonly expDataSN: number;
  readonly bidiResidual: number;
  readonly residual: number;
}

export interface TmfResponsePdu extends Base {
  readonly opcode: 0x22;
  readonly response: number;
  readonly itt: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
}

export interface LoginResponse extends Base {
  readonly opcode: 0x23;
  readonly transit: boolean;
  readonly cont: boolean;
  readonly csg: number;
  readonly nsg: number;
  readonly versionMax: number;
  readonly versionActive: number;
  readonly isid: string;
  readonly tsih: number;
  readonly itt: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
  /** class << 8 | detail */
  readonly status: number;
}

export interface TextResponse extends Base {
  readonly opcode: 0x24;
  readonly final: boolean;
  readonly cont: boolean;
  readonly lun: bigint;
  readonly itt: number;
  readonly ttt: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
}

export interface DataIn extends Base {
  readonly opcode: 0x25;
  readonly final: boolean;
  readonly ack: boolean;
  readonly overflow: boolean;
  readonly underflow: boolean;
  readonly hasStatus: boolean;
  readonly status: number;
  readonly lun: bigint;
  readonly itt: number;
  readonly ttt: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
  readonly dataSN: number;
  readonly bufferOffset: number;
  readonly residual: number;
}

export interface LogoutResponsePdu extends Base {
  readonly opcode: 0x26;
  readonly response: number;
  readonly itt: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
  readonly time2Wait: number;
  readonly time2Retain: number;
}

export interface R2t extends Base {
  readonly opcode: 0x31;
  readonly lun: bigint;
  readonly itt: number;
  readonly ttt: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
  readonly r2tSN: number;
  readonly bufferOffset: number;
  readonly desiredLength: number;
}

export interface AsyncMessage extends Base {
  readonly opcode: 0x32;
  readonly lun: bigint;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
  readonly event: number;
  readonly vcode: number;
  readonly param1: number;
  readonly param2: number;
  readonly param3: number;
}

export interface Reject extends Base {
  readonly opcode: 0x3f;
  readonly reason: number;
  readonly statSN: number;
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
  readonly dataSN: number;
}

export type InitiatorPdu =
  NopOut | ScsiCommandPdu | TmfRequest | LoginRequest | TextRequest | DataOut | LogoutRequest | Snack;
export type TargetPdu =
  | NopIn
  | ScsiResponsePdu
  | TmfResponsePdu
  | LoginResponse
  | TextResponse
  | DataIn
  | LogoutResponsePdu
  | R2t
  | AsyncMessage
  | Reject;
export type Pdu = InitiatorPdu | TargetPdu;

/** Why a PDU could not be decoded, and what the receiver must do about it. */
export interface DecodeError {
  readonly ok: false;
  readonly code:
    | 'header-digest'
    | 'data-digest'
    | 'oversized-segment'
    | 'bad-ahs'
    | 'unknown-opcode'
    | 'invalid-field'
    | 'wrong-direction';
  /** Reject reason to send, when the connection can survive this (the header was trustworthy). */
  readonly reject?: number;
  /** The connection must be dropped (framing can no longer be trusted). */
  readonly fatal: boolean;
  readonly message: string;
  /** The raw 48-byte BHS of the offending PDU, for the Reject data segment. */
  readonly bhs?: Buffer;
  /** Opcode and ITT of the offending PDU when known. */
  readonly opcode?: number;
  readonly itt?: number;
}

export type DecodeResult<T> = { readonly ok: true; readonly pdu: T } | DecodeError;
