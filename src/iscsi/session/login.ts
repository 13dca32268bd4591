/**
 * The login phase of one connection as a state machine: `receive(pdu)` consumes a Login Request
 * and returns actions (send a Login Response, fail, complete). No I/O; everything the machine needs
 * to know about targets and live sessions comes through {@link LoginContext}.
 */
import { randomBytes } from 'node:crypto';
import { LoginStage, LoginStatus } from '../pdu/constants.js';
import { encodeText, parseText } from '../pdu/text.js';
import type { LoginRequest, LoginResponse } from '../pdu/types.js';
import {
  CHAP_HASHES,
  chapResponse,
  chapVerify,
  DEFAULT_CHAP_PREFERENCE,
  decodeBinaryValue,
  decodeNumber,
  encodeHexValue,
} from './chap.js';
import {
  mergeParams,
  type NegotiationResult,
  negotiate,
  RFC_DEFAULTS,
  type SessionParams,
  type TargetOffer,
} from './params.js';

export interface ChapUsers {
  readonly users: readonly { readonly user: string; readonly secret: string }[];
  readonly mutual?: { readonly user: string; readonly secret: string };
}

/** What the login machine knows of a target. */
export interface LoginTarget {
  readonly name: string;
  readonly alias?: string;
  readonly chap?: ChapUsers;
  readonly redirect?: { readonly host: string; readonly port: number; readonly permanent?: boolean };
  readonly offer: TargetOffer;
  readonly queueDepth: number;
}

/** A live session, as seen by a login that names its TSIH or ISID. */
export interface LiveSessionInfo {
  readonly tsih: number;
  readonly initiatorName: string;
  readonly isid: string;
  readonly targetName: string;
  readonly discovery: boolean;
  readonly portalGroupTag: number;
  readonly cids: readonly number[];
  readonly expCmdSN: number;
  readonly maxCmdSN: number;
}

export interface LoginContext {
  readonly portalGroupTag: number;
  readonly initiatorAddress: string;
  findTarget(name: string): LoginTarget | undefined;
  /** Is the target exposed on this portal group? */
  exposedOnPortalGroup(target: LoginTarget): boolean;
  /** ACL check (initiator name and address). */
  allowed(target: LoginTarget, initiatorName: string): boolean;
  readonly discoveryChap?: ChapUsers;
  readonly discoveryOffer: TargetOffer;
  findSession(tsih: number): LiveSessionInfo | undefined;
  /** A fresh TSIH, or undefined when none is free. */
  allocateTsih(): number | undefined;
  random?(n: number): Buffer;
}

export type LoginAction =
  | { readonly type: 'send'; readonly pdu: LoginResponse }
  | { readonly type: 'fail'; readonly status: number; readonly reason: string }
  | { readonly type: 'complete'; readonly result: LoginResult };

export interface LoginResult {
  readonly initiatorName: string;
  readonly initiatorAlias?: string;
  readonly isid: string;
  readonly tsih: number;
  readonly cid: number;
  readonly discovery: boolean;
  readonly target?: LoginTarget;
  /** The session this connection joins (connection reinstatement), or undefined for a new one. */
  readonly existingTsih?: number;
  /** The initial CmdSN (ExpCmdSN of a new session). */
  readonly cmdSN: number;
  /** StatSN the next response on this connection carries. */
  readonly nextStatSN: number;
  readonly params: SessionParams;
  readonly authenticatedUser?: string;
}

type AuthStep = 'none' | 'method' | 'challenged' | 'done';

const enc = (pairs: [string, string][]) => encodeText(pairs);

export class LoginMachine {
  readonly #ctx: LoginContext;
  #first = true;
  #stage: number = LoginStage.SECURITY;
  #done = false;
  #pending: Buffer[] = [];
  #isid = '';
  #tsih = 0;
  #cid = 0;
  #cmdSN = 0;
  #statSN = 0;
  #initiatorName = '';
  #initiatorAlias: string | undefined;
  #discovery = false;
  #target: LoginTarget | undefined;
  #existing: LiveSessionInfo | undefined;
  #auth: AuthStep = 'none';
  #authRequired = false;
  #chapAlg = 0;
  #chapId = 0;
  #chapChallenge: Buffer = Buffer.alloc(0);
  #authUser: string | undefined;
  #params: SessionParams;
  #keysSeen = new Set<string>();
  #sentFirstOperational = false;
  #sentTpgt = false;

  constructor(ctx: LoginContext) {
    this.#ctx = ctx;
    this.#params = { ...RFC_DEFAULTS };
  }

  get done(): boolean {
    return this.#done;
  }
  get initiatorName(): string {
    return this.#initiatorName;
  }
  get targetName(): string | undefined {
    return this.#target?.name;
  }

  #offer(): TargetOffer {
    return this.#target?.offer ?? this.#ctx.discoveryOffer;
  }

  #response(
    pdu: LoginRequest,
    data: Buffer,
    flags: { transit: boolean; csg: number; nsg: number; status?: number; tsih?: number; cont?: boolean },
  ): LoginResponse {
    const expCmdSN = this.#existing ? this.#existing.expCmdSN : this.#cmdSN;
    const depth = this.#target?.queueDepth ?? 1;
    const r: LoginResponse = {
      opcode: 0x23,
      immediate: false,
      data,
      transit: flags.transit,
      cont: flags.cont ?? false,
      csg: flags.csg,
      nsg: flags.nsg,
      versionMax: 0,
      versionActive: 0,
      isid: this.#isid || pdu.isid,
      tsih: flags.tsih ?? (this.#existing ? this.#existing.tsih : 0),
      itt: pdu.itt,
      statSN: this.#statSN,
      expCmdSN,
      maxCmdSN: this.#existing ? this.#existing.maxCmdSN : (expCmdSN + depth - 1) >>> 0,
      status: flags.status ?? 0,
    };
    this.#statSN = (this.#statSN + 1) >>> 0;
    return r;
  }

  #fail(pdu: LoginRequest, status: number, reason: string, extra: [string, string][] = []): LoginAction[] {
    this.#done = true;
    const resp = this.#response(pdu, enc(extra), {
      transit: false,
      csg: this.#stage === LoginStage.FULL_FEATURE ? 0 : this.#stage,
      nsg: 0,
      status,
      tsih: 0,
    });
    return [
      { type: 'send', pdu: resp },
      { type: 'fail', status, reason },
    ];
  }

  /** Consume one Login Request. */
  receive(pdu: LoginRequest): LoginAction[] {
    if (this.#done) return [];
    if (this.#first) {
      this.#isid = pdu.isid;
      this.#tsih = pdu.tsih;
      this.#cid = pdu.cid;
      this.#cmdSN = pdu.cmdSN;
      this.#statSN = pdu.expStatSN;
      if (pdu.versionMin > 0) return this.#fail(pdu, LoginStatus.UNSUPPORTED_VERSION, 'unsupported version');
    } else if (pdu.isid !== this.#isid || pdu.tsih !== this.#tsih || pdu.cid !== this.#cid) {
      return this.#fail(pdu, LoginStatus.INITIATOR_ERROR, 'ISID/TSIH/CID changed during login');
    }
    // C bit: the text continues in the next PDU; acknowledge with an empty response.
    if (pdu.cont) {
      if (pdu.transit) return this.#fail(pdu, LoginStatus.INITIATOR_ERROR, 'C and T both set');
      this.#pending.push(pdu.data);
      if (this.#pending.reduce((s, b) => s + b.length, 0) > 65536) {
        return this.#fail(pdu, LoginStatus.OUT_OF_RESOURCES, 'login text too long');
      }
      return [
        {
          type: 'send',
          pdu: this.#response(pdu, Buffer.alloc(0), { transit: false, csg: pdu.csg, nsg: pdu.nsg }),
        },
      ];
    }
    const text = this.#pending.length ? Buffer.concat([...this.#pending, pdu.data]) : pdu.data;
    this.#pending = [];
    const parsed = parseText(text);
    if (!parsed.ok) return this.#fail(pdu, LoginStatus.INITIATOR_ERROR, `bad login text: ${parsed.message}`);
    const keys = new Map(parsed.pairs);

    if (pdu.csg !== LoginStage.SECURITY && pdu.csg !== LoginStage.OPERATIONAL) {
      return this.#fail(pdu, LoginStatus.INITIATOR_ERROR, `invalid CSG ${pdu.csg}`);
    }
    if (pdu.transit && (pdu.nsg === 2 || pdu.nsg <= pdu.csg)) {
      return this.#fail(pdu, LoginStatus.INITIATOR_ERROR, `invalid transition ${pdu.csg}→${pdu.nsg}`);
    }

    if (this.#first) {
      this.#first = false;
      const r = this.#leading(pdu, keys);
      if (r) return r;
      this.#stage = pdu.csg;
    } else if (pdu.csg !== this.#stage) {
      return this.#fail(pdu, LoginStatus.INITIATOR_ERROR, `CSG ${pdu.csg} but stage is ${this.#stage}`);
    }

    for (const k of keys.keys()) {
      if (k === 'CHAP_A' || k === 'CHAP_N' || k === 'CHAP_R' || k === 'CHAP_I' || k === 'CHAP_C') continue;
      if (this.#keysSeen.has(k) && k !== 'InitiatorName' && k !== 'TargetName' && k !== 'SessionType') {
        return this.#fail(pdu, LoginStatus.INITIATOR_ERROR, `key ${k} negotiated twice`);
      }
      this.#keysSeen.add(k);
    }

    if (this.#stage === LoginStage.SECURITY) return this.#security(pdu, keys, parsed.pairs);
    return this.#operational(pdu, parsed.pairs);
  }

  /** Checks on the first PDU: names, target, ACL, redirect, TSIH. */
  #leading(pdu: LoginRequest, keys: Map<string, string>): LoginAction[] | undefined {
    const ctx = this.#ctx;
    const iname = keys.get('InitiatorName');
    if (!iname) return this.#fail(pdu, LoginStatus.MISSING_PARAMETER, 'InitiatorName missing');
    this.#initiatorName = iname;
    this.#initiatorAlias = keys.get('InitiatorAlias');
    const st = keys.get('SessionType') ?? 'Normal';
    if (st !== 'Normal' && st !== 'Discovery') {
      return this.#fail(pdu, LoginStatus.SESSION_TYPE_NOT_SUPPORTED, `SessionType ${st}`);
    }
    this.#discovery = st === 'Discovery';
    if (!this.#discovery) {
      const tname = keys.get('TargetName');
      if (!tname) return this.#fail(pdu, LoginStatus.MISSING_PARAMETER, 'TargetName missing');
      const t = ctx.findTarget(tname);
      if (!t || !ctx.exposedOnPortalGroup(t)) {
        return this.#fail(pdu, LoginStatus.NOT_FOUND, `no target ${tname}`);
      }
      if (!ctx.allowed(t, iname)) {
        return this.#fail(pdu, LoginStatus.AUTHORIZATION_FAILURE, `ACL refuses ${iname} for ${tname}`);
      }
      if (t.redirect) {
        const r = t.redirect;
        const host = r.host.includes(':') ? `[${r.host}]` : r.host;
        return this.#fail(
          pdu,
          r.permanent ? LoginStatus.TARGET_MOVED_PERMANENTLY : LoginStatus.TARGET_MOVED_TEMPORARILY,
          'redirected',
          [['TargetAddress', `${host}:${r.port},${ctx.portalGroupTag}`]],
        );
      }
      this.#target = t;
      this.#authRequired = (t.chap?.users.length ?? 0) > 0;
    } else {
      this.#authRequired = (ctx.discoveryChap?.users.length ?? 0) > 0;
    }
    if (pdu.tsih !== 0) {
      const s = ctx.findSession(pdu.tsih);
      if (!s || s.initiatorName !== iname || s.isid !== pdu.isid) {
        return this.#fail(pdu, LoginStatus.SESSION_DOES_NOT_EXIST, `no session with TSIH ${pdu.tsih}`);
      }
      if (s.discovery !== this.#discovery || s.targetName !== (this.#target?.name ?? '')) {
        return this.#fail(pdu, LoginStatus.CANT_INCLUDE_IN_SESSION, 'connection does not match the session');
      }
      if (s.portalGroupTag !== ctx.portalGroupTag) {
        return this.#fail(pdu, LoginStatus.CANT_INCLUDE_IN_SESSION, 'other portal group');
      }
      if (!s.cids.includes(pdu.cid)) {
        return this.#fail(pdu, LoginStatus.TOO_MANY_CONNECTIONS, 'MaxConnections=1');
      }
      this.#existing = s;
    }
    if (pdu.csg === LoginStage.OPERATIONAL && this.#authRequired) {
      return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, 'authentication required');
    }
    return undefined;
  }

  #security(pdu: LoginRequest, keys: Map<string, string>, pairs: [string, string][]): LoginAction[] {
    const answers: [string, string][] = [];
    const chapCfg = this.#target ? this.#target.chap : this.#ctx.discoveryChap;
    const am = keys.get('AuthMethod');
    if (am !== undefined) {
      if (this.#auth !== 'none') return this.#fail(pdu, LoginStatus.INITIATOR_ERROR, 'AuthMethod twice');
      const offered = am.split(',');
      if (this.#authRequired) {
        if (!offered.includes('CHAP')) {
          return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, 'CHAP required', [
            ['AuthMethod', 'Reject'],
          ]);
        }
        answers.push(['AuthMethod', 'CHAP']);
        this.#auth = 'method';
      } else if (offered.includes('None')) {
        answers.push(['AuthMethod', 'None']);
        this.#auth = 'done';
      } else {
        return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, 'no acceptable AuthMethod', [
          ['AuthMethod', 'Reject'],
        ]);
      }
    }
    const chapA = keys.get('CHAP_A');
    if (chapA !== undefined) {
      if (this.#auth !== 'method') return this.#fail(pdu, LoginStatus.INITIATOR_ERROR, 'CHAP_A out of order');
      const offered = chapA
        .split(',')
        .map((v) => decodeNumber(v))
        .filter((n): n is number => n !== undefined && CHAP_HASHES[n] !== undefined);
      // The first algorithm in the initiator's list we support (RFC 7143 §6.2 list rule).
      const alg = offered[0] ?? DEFAULT_CHAP_PREFERENCE.find((a) => offered.includes(a));
      if (alg === undefined) {
        return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, `no supported CHAP_A in ${chapA}`, [
          ['CHAP_A', 'Reject'],
        ]);
      }
      const rnd = this.#ctx.random ?? randomBytes;
      this.#chapAlg = alg;
      this.#chapId = rnd(1)[0]!;
      this.#chapChallenge = rnd(Math.max(16, CHAP_HASHES[alg]!.length));
      answers.push(['CHAP_A', String(alg)]);
      answers.push(['CHAP_I', String(this.#chapId)]);
      answers.push(['CHAP_C', encodeHexValue(this.#chapChallenge)]);
      this.#auth = 'challenged';
    }
    const chapN = keys.get('CHAP_N');
    const chapR = keys.get('CHAP_R');
    if (chapN !== undefined || chapR !== undefined) {
      if (this.#auth !== 'challenged' || chapN === undefined || chapR === undefined) {
        return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, 'CHAP_N/CHAP_R out of order');
      }
      const resp = decodeBinaryValue(chapR);
      if (!resp) return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, 'malformed CHAP_R');
      const ok = (chapCfg?.users ?? []).some(
        (u) =>
          u.user === chapN && chapVerify(this.#chapAlg, this.#chapId, u.secret, this.#chapChallenge, resp),
      );
      if (!ok) return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, `CHAP failed for user ${chapN}`);
      this.#authUser = chapN;
      const ci = keys.get('CHAP_I');
      const cc = keys.get('CHAP_C');
      if (ci !== undefined || cc !== undefined) {
        const id = ci !== undefined ? decodeNumber(ci) : undefined;
        const ch = cc !== undefined ? decodeBinaryValue(cc) : undefined;
        if (id === undefined || id > 255 || !ch || ch.length === 0) {
          return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, 'malformed mutual CHAP challenge');
        }
        if (ch.equals(this.#chapChallenge)) {
          return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, 'reflected CHAP challenge');
        }
        const mutual = chapCfg?.mutual;
        if (!mutual) return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, 'mutual CHAP not configured');
        answers.push(['CHAP_N', mutual.user]);
        answers.push(['CHAP_R', encodeHexValue(chapResponse(this.#chapAlg, id, mutual.secret, ch))]);
      }
      this.#auth = 'done';
    } else if (keys.has('CHAP_I') || keys.has('CHAP_C')) {
      return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, 'CHAP_I/CHAP_C without CHAP_N/CHAP_R');
    }
    // Operational keys may ride along in the security stage.
    const nonSec = pairs.filter(([k]) => !k.startsWith('CHAP_') && k !== 'AuthMethod');
    const neg = negotiate(nonSec, this.#offer(), { discovery: this.#discovery });
    this.#absorb(neg);
    answers.push(...neg.answers);
    this.#firstResponseKeys(answers);

    if (pdu.transit && this.#auth === 'done') {
      this.#stage = pdu.nsg;
      if (pdu.nsg === LoginStage.FULL_FEATURE) return this.#finish(pdu, answers, LoginStage.SECURITY);
      return [
        { type: 'send', pdu: this.#response(pdu, enc(answers), { transit: true, csg: 0, nsg: pdu.nsg }) },
      ];
    }
    if (pdu.transit && this.#auth === 'none') {
      return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, 'AuthMethod not negotiated');
    }
    return [
      { type: 'send', pdu: this.#response(pdu, enc(answers), { transit: false, csg: 0, nsg: pdu.nsg }) },
    ];
  }

  #operational(pdu: LoginRequest, pairs: [string, string][]): LoginAction[] {
    if (this.#authRequired && this.#auth !== 'done') {
      return this.#fail(pdu, LoginStatus.AUTHENTICATION_FAILURE, 'authentication required');
    }
    const sec = pairs.filter(([k]) => k.startsWith('CHAP_') || k === 'AuthMethod');
    if (sec.length) return this.#fail(pdu, LoginStatus.INITIATOR_ERROR, 'security key in operational stage');
    const neg = negotiate(pairs, this.#offer(), { discovery: this.#discovery });
    this.#absorb(neg);
    const answers: [string, string][] = [...neg.answers];
    this.#firstResponseKeys(answers);
    if (!this.#sentFirstOperational) {
      this.#sentFirstOperational = true;
      answers.push(['MaxRecvDataSegmentLength', String(this.#offer().maxRecvDataSegmentLength)]);
    }
    if (pdu.transit) {
      this.#stage = LoginStage.FULL_FEATURE;
      return this.#finish(pdu, answers, LoginStage.OPERATIONAL);
    }
    return [
      { type: 'send', pdu: this.#response(pdu, enc(answers), { transit: false, csg: 1, nsg: pdu.nsg }) },
    ];
  }

  /** Keys the target declares in its first response (TargetPortalGroupTag, TargetAlias). */
  #firstResponseKeys(answers: [string, string][]): void {
    if (this.#sentTpgt || this.#discovery) return;
    this.#sentTpgt = true;
    answers.push(['TargetPortalGroupTag', String(this.#ctx.portalGroupTag)]);
    if (this.#target?.alias) answers.push(['TargetAlias', this.#target.alias]);
  }

  #absorb(neg: NegotiationResult): void {
    this.#params = mergeParams(this.#params, neg.values);
  }

  #finish(pdu: LoginRequest, answers: [string, string][], csg: number): LoginAction[] {
    let tsih = this.#existing?.tsih;
    if (tsih === undefined) {
      tsih = this.#ctx.allocateTsih();
      if (tsih === undefined) return this.#fail(pdu, LoginStatus.OUT_OF_RESOURCES, 'no free TSIH');
    }
    this.#params = {
      ...this.#params,
      targetMaxRecvDataSegmentLength: this.#sentFirstOperational
        ? this.#offer().maxRecvDataSegmentLength
        : RFC_DEFAULTS.targetMaxRecvDataSegmentLength,
      errorRecoveryLevel: 0,
      maxConnections: 1,
    };
    const resp = this.#response(pdu, enc(answers), { transit: true, csg, nsg: 3, tsih });
    this.#done = true;
    const result: LoginResult = {
      initiatorName: this.#initiatorName,
      ...(this.#initiatorAlias !== undefined ? { initiatorAlias: this.#initiatorAlias } : {}),
      isid: this.#isid,
      tsih,
      cid: this.#cid,
      discovery: this.#discovery,
      ...(this.#target ? { target: this.#target } : {}),
      ...(this.#existing ? { existingTsih: this.#existing.tsih } : {}),
      cmdSN: this.#cmdSN,
      nextStatSN: this.#statSN,
      params: this.#params,
      ...(this.#authUser !== undefined ? { authenticatedUser: this.#authUser } : {}),
    };
    return [
      { type: 'complete', result },
      { type: 'send', pdu: resp },
    ];
  }
}
