/**
 * Operational key negotiation (RFC 7143 §13), as a table: each key has a kind that fixes the
 * negotiation rule (declarative, list, boolean AND/OR, numerical min/max), a range, its default
 * and whether it is irrelevant in discovery sessions.
 */

export type DigestName = 'None' | 'CRC32C';

export interface SessionParams {
  readonly headerDigest: boolean;
  readonly dataDigest: boolean;
  /** What the initiator declared: the largest data segment we may send it. */
  readonly initiatorMaxRecvDataSegmentLength: number;
  /** What we declared: the largest data segment the initiator may send us. */
  readonly targetMaxRecvDataSegmentLength: number;
  readonly maxBurstLength: number;
  readonly firstBurstLength: number;
  readonly initialR2T: boolean;
  readonly immediateData: boolean;
  readonly maxOutstandingR2T: number;
  readonly dataPDUInOrder: boolean;
  readonly dataSequenceInOrder: boolean;
  readonly defaultTime2Wait: number;
  readonly defaultTime2Retain: number;
  readonly errorRecoveryLevel: number;
  readonly maxConnections: number;
}

export const RFC_DEFAULTS: SessionParams = {
  headerDigest: false,
  dataDigest: false,
  initiatorMaxRecvDataSegmentLength: 8192,
  targetMaxRecvDataSegmentLength: 8192,
  maxBurstLength: 262144,
  firstBurstLength: 65536,
  initialR2T: true,
  immediateData: true,
  maxOutstandingR2T: 1,
  dataPDUInOrder: true,
  dataSequenceInOrder: true,
  defaultTime2Wait: 2,
  defaultTime2Retain: 20,
  errorRecoveryLevel: 0,
  maxConnections: 1,
};

type Kind = 'declarative' | 'digest' | 'and' | 'or' | 'min' | 'max';

interface KeyDef {
  readonly kind: Kind;
  readonly field?: keyof SessionParams;
  readonly min?: number;
  readonly max?: number;
  /** Answered Irrelevant in discovery sessions. */
  readonly discoveryIrrelevant?: boolean;
}

const U24 = 16777215;

/** Every operational key of RFC 7143 §13 (plus RFC 7144's) this target negotiates. */
export const OPERATIONAL_KEYS: Readonly<Record<string, KeyDef>> = {
  HeaderDigest: { kind: 'digest', field: 'headerDigest' },
  DataDigest: { kind: 'digest', field: 'dataDigest' },
  MaxConnections: { kind: 'min', field: 'maxConnections', min: 1, max: 65535, discoveryIrrelevant: true },
  InitialR2T: { kind: 'or', field: 'initialR2T', discoveryIrrelevant: true },
  ImmediateData: { kind: 'and', field: 'immediateData', discoveryIrrelevant: true },
  MaxRecvDataSegmentLength: {
    kind: 'declarative',
    field: 'initiatorMaxRecvDataSegmentLength',
    min: 512,
    max: U24,
  },
  MaxBurstLength: { kind: 'min', field: 'maxBurstLength', min: 512, max: U24, discoveryIrrelevant: true },
  FirstBurstLength: { kind: 'min', field: 'firstBurstLength', min: 512, max: U24, discoveryIrrelevant: true },
  DefaultTime2Wait: { kind: 'max', field: 'defaultTime2Wait', min: 0, max: 3600 },
  DefaultTime2Retain: { kind: 'min', field: 'defaultTime2Retain', min: 0, max: 3600 },
  MaxOutstandingR2T: {
    kind: 'min',
    field: 'maxOutstandingR2T',
    min: 1,
    max: 65535,
    discoveryIrrelevant: true,
  },
  DataPDUInOrder: { kind: 'or', field: 'dataPDUInOrder', discoveryIrrelevant: true },
  DataSequenceInOrder: { kind: 'or', field: 'dataSequenceInOrder', discoveryIrrelevant: true },
  ErrorRecoveryLevel: { kind: 'min', field: 'errorRecoveryLevel', min: 0, max: 2 },
  IFMarker: { kind: 'and' },
  OFMarker: { kind: 'and' },
  iSCSIProtocolLevel: { kind: 'min', min: 0, max: 31 },
};

/** Keys only a target may send: an initiator sending them gets Irrelevant. */
const TARGET_ONLY_KEYS: ReadonlySet<string> = new Set([
  'TargetAlias',
  'TargetAddress',
  'TargetPortalGroupTag',
  'SendTargets',
]);
/** Declarative keys from the initiator that need no answer. */
const SILENT_KEYS: ReadonlySet<string> = new Set([
  'InitiatorName',
  'InitiatorAlias',
  'TargetName',
  'SessionType',
]);
/** Irrelevant once markers are No. */
const MARKER_INTERVAL_KEYS: ReadonlySet<string> = new Set(['IFMarkInt', 'OFMarkInt']);
/** Security-stage keys. */
export const SECURITY_KEYS: ReadonlySet<string> = new Set([
  'AuthMethod',
  'CHAP_A',
  'CHAP_I',
  'CHAP_C',
  'CHAP_N',
  'CHAP_R',
]);

/** The target's side of the negotiation. */
export interface TargetOffer {
  /** Our MaxRecvDataSegmentLength (declared). */
  readonly maxRecvDataSegmentLength: number;
  readonly maxBurstLength: number;
  readonly firstBurstLength: number;
  readonly initialR2T: boolean;
  readonly immediateData: boolean;
  readonly maxOutstandingR2T: number;
  readonly defaultTime2Wait: number;
  readonly defaultTime2Retain: number;
  /** Digests this target allows (the initiator's order decides among them, RFC 7143 §6.2). */
  readonly digests: readonly DigestName[];
  readonly headerDigests?: readonly DigestName[];
  readonly dataDigests?: readonly DigestName[];
}

export const DEFAULT_OFFER: TargetOffer = {
  maxRecvDataSegmentLength: 262144,
  maxBurstLength: 1048576,
  firstBurstLength: 262144,
  initialR2T: false,
  immediateData: true,
  maxOutstandingR2T: 8,
  defaultTime2Wait: 2,
  defaultTime2Retain: 20,
  digests: ['None', 'CRC32C'],
};

function parseBool(v: string): boolean | undefined {
  return v === 'Yes' ? true : v === 'No' ? false : undefined;
}
function parseNum(v: string): number | undefined {
  if (/^[0-9]{1,10}$/.test(v)) return Number(v);
  if (/^0[xX][0-9a-fA-F]{1,8}$/.test(v)) return Number.parseInt(v.slice(2), 16);
  return undefined;
}
function parseDigestList(v: string): DigestName[] | undefined {
  const out: DigestName[] = [];
  for (const item of v.split(',')) {
    if (item === 'None' || item === 'CRC32C') out.push(item);
    else if (!/^[A-Za-z0-9.\-_]+$/.test(item)) return undefined;
  }
  return out;
}
const yn = (b: boolean) => (b ? 'Yes' : 'No');

/** Build a target offer from per-target `params` overrides (unknown / bad ones are ignored). */
export function offerFromParams(
  params: Partial<Record<string, string>> | undefined,
  digests: readonly DigestName[] | undefined,
): TargetOffer {
  const o: { -readonly [K in keyof TargetOffer]: TargetOffer[K] } = { ...DEFAULT_OFFER };
  if (digests?.length) o.digests = [...digests];
  if (!params) return o;
  const num = (k: string, min: number, max: number) => {
    const v = params[k];
    if (v === undefined) return undefined;
    const n = parseNum(String(v));
    return n !== undefined && n >= min && n <= max ? n : undefined;
  };
  const bool = (k: string) => {
    const v = params[k];
    return v === undefined ? undefined : parseBool(String(v));
  };
  o.maxRecvDataSegmentLength = num('MaxRecvDataSegmentLength', 512, U24) ?? o.maxRecvDataSegmentLength;
  o.maxBurstLength = num('MaxBurstLength', 512, U24) ?? o.maxBurstLength;
  o.firstBurstLength = num('FirstBurstLength', 512, U24) ?? o.firstBurstLength;
  o.maxOutstandingR2T = num('MaxOutstandingR2T', 1, 65535) ?? o.maxOutstandingR2T;
  o.defaultTime2Wait = num('DefaultTime2Wait', 0, 3600) ?? o.defaultTime2Wait;
  o.defaultTime2Retain = num('DefaultTime2Retain', 0, 3600) ?? o.defaultTime2Retain;
  o.initialR2T = bool('InitialR2T') ?? o.initialR2T;
  o.immediateData = bool('ImmediateData') ?? o.immediateData;
  const hd = params['HeaderDigest'];
  const dd = params['DataDigest'];
  if (hd !== undefined) {
    const l = parseDigestList(String(hd));
    if (l?.length) o.headerDigests = l;
  }
  if (dd !== undefined) {
    const l = parseDigestList(String(dd));
    if (l?.length) o.dataDigests = l;
  }
  return o;
}

export interface NegotiationResult {
  /** Answers, in the order the keys came. */
  readonly answers: [string, string][];
  /** Values fixed by this round (merge into the session's parameters). */
  readonly values: Partial<Record<keyof SessionParams, number | boolean>>;
}

/**
 * Negotiate one request's operational keys. `already` holds keys negotiated earlier in this login
 * (a key offered twice is answered Reject; RFC 7143 §6.2 makes it a protocol error).
 */
export function negotiate(
  pairs: readonly (readonly [string, string])[],
  offer: TargetOffer,
  ctx: { readonly discovery: boolean; readonly already?: ReadonlySet<string> },
): NegotiationResult {
  const answers: [string, string][] = [];
  const values: Partial<Record<keyof SessionParams, number | boolean>> = {};
  let fblIndex = -1;
  let fblAsked = 0;
  for (const [key, raw] of pairs) {
    if (SILENT_KEYS.has(key) || SECURITY_KEYS.has(key)) continue;
    if (TARGET_ONLY_KEYS.has(key)) {
      answers.push([key, 'Irrelevant']);
      continue;
    }
    if (MARKER_INTERVAL_KEYS.has(key)) {
      answers.push([key, 'Irrelevant']);
      continue;
    }
    if (key === 'TaskReporting') {
      answers.push([key, raw.split(',').includes('RFC3720') ? 'RFC3720' : 'Reject']);
      continue;
    }
    const def = OPERATIONAL_KEYS[key];
    if (!def) {
      answers.push([key, 'NotUnderstood']);
      continue;
    }
    if (ctx.discovery && def.discoveryIrrelevant) {
      answers.push([key, 'Irrelevant']);
      continue;
    }
    switch (def.kind) {
      case 'declarative': {
        const n = parseNum(raw);
        if (n === undefined || n < (def.min ?? 0) || n > (def.max ?? U24)) {
          answers.push([key, 'Reject']);
        } else if (def.field) {
          values[def.field] = n;
        }
        break;
      }
      case 'digest': {
        const list = parseDigestList(raw);
        const pref = (key === 'HeaderDigest' ? offer.headerDigests : offer.dataDigests) ?? offer.digests;
        // RFC 7143 §6.2: the first value of the initiator's list that this target allows; the
        // target's configured list is the allowed set (e.g. CRC32C only to require digests).
        const pick = list?.find((d) => pref.includes(d));
        if (!pick) {
          answers.push([key, 'Reject']);
        } else {
          answers.push([key, pick]);
          if (def.field) values[def.field] = pick === 'CRC32C';
        }
        break;
      }
      case 'and':
      case 'or': {
        const b = parseBool(raw);
        if (b === undefined) {
          answers.push([key, 'Reject']);
          break;
        }
        let ours: boolean;
        if (key === 'InitialR2T') ours = offer.initialR2T;
        else if (key === 'ImmediateData') ours = offer.immediateData;
        else if (key === 'IFMarker' || key === 'OFMarker') ours = false;
        else ours = true; // DataPDUInOrder / DataSequenceInOrder: we only do in-order
        const res = def.kind === 'and' ? b && ours : b || ours;
        answers.push([key, yn(res)]);
        if (def.field) values[def.field] = res;
        break;
      }
      case 'min':
      case 'max': {
        const n = parseNum(raw);
        if (n === undefined || n < (def.min ?? 0) || n > (def.max ?? U24)) {
          answers.push([key, 'Reject']);
          break;
        }
        let ours: number;
        switch (key) {
          case 'MaxConnections':
            ours = 1;
            break;
          case 'MaxBurstLength':
            ours = offer.maxBurstLength;
            break;
          case 'FirstBurstLength':
            ours = offer.firstBurstLength;
            break;
          case 'DefaultTime2Wait':
            ours = offer.defaultTime2Wait;
            break;
          case 'DefaultTime2Retain':
            ours = offer.defaultTime2Retain;
            break;
          case 'MaxOutstandingR2T':
            ours = offer.maxOutstandingR2T;
            break;
          case 'ErrorRecoveryLevel':
            ours = 0;
            break;
          case 'iSCSIProtocolLevel':
            ours = 1;
            break;
          default:
            ours = n;
        }
        const res = def.kind === 'min' ? Math.min(n, ours) : Math.max(n, ours);
        if (key === 'FirstBurstLength') {
          fblIndex = answers.length;
          fblAsked = res;
        }
        answers.push([key, String(res)]);
        if (def.field) values[def.field] = res;
        break;
      }
    }
  }
  // FirstBurstLength must not exceed MaxBurstLength (RFC 7143 §13.14).
  if (fblIndex >= 0) {
    const mbl = (values.maxBurstLength as number | undefined) ?? RFC_DEFAULTS.maxBurstLength;
    if (fblAsked > mbl) {
      answers[fblIndex] = ['FirstBurstLength', String(mbl)];
      values.firstBurstLength = mbl;
    }
  }
  return { answers, values };
}

export function mergeParams(
  base: SessionParams,
  values: Partial<Record<keyof SessionParams, number | boolean>>,
): SessionParams {
  return { ...base, ...values } as SessionParams;
}

/** Render negotiated parameters as RFC key names (for status output). */
export function paramsToKeys(p: SessionParams): Record<string, string> {
  return {
    HeaderDigest: p.headerDigest ? 'CRC32C' : 'None',
    DataDigest: p.dataDigest ? 'CRC32C' : 'None',
    MaxRecvDataSegmentLength: String(p.targetMaxRecvDataSegmentLength),
    'MaxRecvDataSegmentLength(initiator)': String(p.initiatorMaxRecvDataSegmentLength),
    MaxBurstLength: String(p.maxBurstLength),
    FirstBurstLength: String(p.firstBurstLength),
    InitialR2T: yn(p.initialR2T),
    ImmediateData: yn(p.immediateData),
    MaxOutstandingR2T: String(p.maxOutstandingR2T),
    DataPDUInOrder: yn(p.dataPDUInOrder),
    DataSequenceInOrder: yn(p.dataSequenceInOrder),
    DefaultTime2Wait: String(p.defaultTime2Wait),
    DefaultTime2Retain: String(p.defaultTime2Retain),
    ErrorRecoveryLevel: String(p.errorRecoveryLevel),
    MaxConnections: String(p.maxConnections),
  };
}
