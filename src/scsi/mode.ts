/**
 * MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-4 §6.11–6.14, §7.5) with the caching (0x08),
 * control (0x0A) and informational exceptions control (0x1C) pages.
 */
import { type CommandContext, dataIn, GOOD, type Outcome } from './command.js';
import type { LogicalUnit, ModeState } from './lu.js';
import { Asc, illegal, invalidField, invalidParam } from './sense.js';

export const ModePage = { CACHING: 0x08, CONTROL: 0x0a, INFORMATIONAL_EXCEPTIONS: 0x1c, ALL: 0x3f } as const;

const PageControl = { CURRENT: 0, CHANGEABLE: 1, DEFAULT: 2, SAVED: 3 } as const;

interface PageDef {
  readonly code: number;
  /** Page bytes (including the 2-byte header) for a set of values. */
  build(m: ModeState): Buffer;
  /** Changeable-bits mask (same length as the page). */
  readonly changeable: Buffer;
  /** Reads the changeable values back from a page the initiator sent. */
  apply(page: Buffer, m: ModeState): void;
}

function caching(m: ModeState): Buffer {
  const p = Buffer.alloc(20);
  p[0] = ModePage.CACHING;
  p[1] = 0x12;
  p[2] = m.wce ? 0x04 : 0x00; // WCE; RCD = 0 (read cache enabled)
  return p;
}
const cachingMask = (() => {
  const p = Buffer.alloc(20);
  p[2] = 0x04;
  return p;
})();

function control(m: ModeState): Buffer {
  const p = Buffer.alloc(12);
  p[0] = ModePage.CONTROL;
  p[1] = 0x0a;
  p[2] = m.dSense ? 0x04 : 0x00; // TST 0, D_SENSE
  p[3] = 0x00; // QUEUE ALGORITHM MODIFIER 0 (restricted reordering), QERR 0
  p[4] = m.swp ? 0x08 : 0x00; // SWP
  p[5] = 0x00; // ATO 0, TAS 0
  p.writeUInt16BE(0xffff, 8); // BUSY TIMEOUT PERIOD: unlimited
  return p;
}
const controlMask = (() => {
  const p = Buffer.alloc(12);
  p[2] = 0x04;
  p[4] = 0x08;
  return p;
})();

function informationalExceptions(): Buffer {
  const p = Buffer.alloc(12);
  p[0] = ModePage.INFORMATIONAL_EXCEPTIONS;
  p[1] = 0x0a;
  p[2] = 0x08; // DEXCPT: informational exception operations disabled
  p[3] = 0x00; // MRIE 0
  return p;
}

const PAGES: readonly PageDef[] = [
  {
    code: ModePage.CACHING,
    build: caching,
    changeable: cachingMask,
    apply: (p, m) => {
      m.wce = ((p[2] ?? 0) & 0x04) !== 0;
    },
  },
  {
    code: ModePage.CONTROL,
    build: control,
    changeable: controlMask,
    apply: (p, m) => {
      m.dSense = ((p[2] ?? 0) & 0x04) !== 0;
      m.swp = ((p[4] ?? 0) & 0x08) !== 0;
    },
  },
  {
    code: ModePage.INFORMATIONAL_EXCEPTIONS,
    build: informationalExceptions,
    changeable: Buffer.alloc(12),
    apply: () => {},
  },
];

function pageBytes(def: PageDef, pc: number, lu: LogicalUnit): Buffer {
  switch (pc) {
    case PageControl.CHANGEABLE: {
      const p = Buffer.from(def.changeable);
      p[0] = def.code;
      p[1] = p.length - 2;
      return p;
    }
    case PageControl.DEFAULT:
      return def.build(lu.defaults);
    default:
      return def.build(lu.mode);
  }
}

/** Device-specific parameter of the mode parameter header (SBC-3 §6.4.1): WP and DPOFUA. */
const deviceSpecific = (lu: LogicalUnit): number => (lu.writeProtected ? 0x80 : 0) | 0x10;

function blockDescriptor(lu: LogicalUnit, long: boolean): Buffer {
  if (long) {
    const d = Buffer.alloc(16);
    d.writeBigUInt64BE(BigInt(lu.blockCount), 0);
    d.writeUInt32BE(lu.blockSize, 12);
    return d;
  }
  const d = Buffer.alloc(8);
  d.writeUInt32BE(Math.min(lu.blockCount, 0xffffffff), 0);
  d.writeUIntBE(lu.blockSize, 5, 3);
  return d;
}

export function modeSense(ctx: CommandContext, ten: boolean): Outcome {
  const { cdb, lu } = ctx;
  const dbd = ((cdb[1] ?? 0) & 0x08) !== 0;
  const llbaa = ten && ((cdb[1] ?? 0) & 0x10) !== 0;
  const pc = (cdb[2] ?? 0) >> 6;
  const page = (cdb[2] ?? 0) & 0x3f;
  const subpage = cdb[3] ?? 0;
  const alloc = ten ? cdb.readUInt16BE(7) : (cdb[4] ?? 0);
  if (pc === PageControl.SAVED) throw illegal(Asc.SAVING_PARAMETERS_NOT_SUPPORTED);
  let pages: Buffer[];
  if (page === ModePage.ALL) {
    if (subpage !== 0x00 && subpage !== 0xff) throw invalidField(3);
    pages = PAGES.map((d) => pageBytes(d, pc, lu));
  } else {
    const def = PAGES.find((d) => d.code === page);
    if (!def) throw invalidField(2, 5);
    if (subpage !== 0x00 && subpage !== 0xff) throw invalidField(3);
    pages = [pageBytes(def, pc, lu)];
  }
  let bd = dbd ? Buffer.alloc(0) : blockDescriptor(lu, llbaa);
  if (pc === PageControl.CHANGEABLE) bd = Buffer.alloc(bd.length); // nothing in it is changeable
  const body = Buffer.concat([bd, ...pages]);
  let header: Buffer;
  if (ten) {
    header = Buffer.alloc(8);
    header.writeUInt16BE(6 + body.length, 0);
    header[3] = deviceSpecific(lu);
    header[4] = llbaa && !dbd ? 0x01 : 0x00; // LONGLBA
    header.writeUInt16BE(bd.length, 6);
  } else {
    header = Buffer.alloc(4);
    header[0] = Math.min(255, 3 + body.length);
    header[2] = deviceSpecific(lu);
    header[3] = bd.length;
  }
  return dataIn(Buffer.concat([header, body]), alloc);
}

/**
 * MODE SELECT: validates the whole parameter list first, then applies it. Returns whether any
 * current value changed (the caller raises MODE PARAMETERS CHANGED for the other nexuses).
 */
export function modeSelect(ctx: CommandContext, ten: boolean): { outcome: Outcome; changed: boolean } {
  const { cdb, lu } = ctx;
  const sp = ((cdb[1] ?? 0) & 0x01) !== 0;
  const length = ten ? cdb.readUInt16BE(7) : (cdb[4] ?? 0);
  if (sp) throw invalidField(1, 0);
  if (length === 0) return { outcome: GOOD, changed: false };
  const headerLength = ten ? 8 : 4;
  if (length < headerLength) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  if (ctx.cmd.dataOut.length < length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  const data = ctx.cmd.dataOut.subarray(0, length);
  const bdLength = ten ? data.readUInt16BE(6) : (data[3] ?? 0);
  const longLba = ten && ((data[4] ?? 0) & 0x01) !== 0;
  let p = headerLength;
  if (p + bdLength > length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
  // Block descriptors: accepted only when they restate the current block length.
  const bdSize = longLba ? 16 : 8;
  if (bdLength % bdSize !== 0) throw invalidParam(ten ? 6 : 3);
  for (let off = p; off < p + bdLength; off += bdSize) {
    const bl = longLba ? data.readUInt32BE(off + 12) : data.readUIntBE(off + 5, 3);
    if (bl !== lu.blockSize) throw invalidParam(longLba ? off + 12 : off + 5);
  }
  p += bdLength;
  const next: ModeState = { ...lu.mode };
  while (p < length) {
    const b0 = data[p] ?? 0;
    const code = b0 & 0x3f;
    if (b0 & 0x40) throw invalidParam(p, 6); // SPF: we have no subpages
    if (b0 & 0x80) throw invalidParam(p, 7); // PS is reserved in MODE SELECT
    if (p + 2 > length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
    const def = PAGES.find((d) => d.code === code);
    if (!def) throw invalidParam(p, 5);
    const pageLength = (data[p + 1] ?? 0) + 2;
    if (pageLength !== def.changeable.length) throw invalidParam(p + 1);
    if (p + pageLength > length) throw illegal(Asc.PARAMETER_LIST_LENGTH_ERROR);
    const sent = data.subarray(p, p + pageLength);
    const current = def.build(next);
    for (let i = 2; i < pageLength; i++) {
      const mask = def.changeable[i] ?? 0;
      const diff = ((sent[i] ?? 0) ^ (current[i] ?? 0)) & ~mask & 0xff;
      if (diff) throw invalidParam(p + i, 31 - Math.clz32(diff));
    }
    def.apply(sent, next);
    p += pageLength;
  }
  const changed = next.wce !== lu.mode.wce || next.dSense !== lu.mode.dSense || next.swp !== lu.mode.swp;
  Object.assign(lu.mode, next);
  return { outcome: GOOD, changed };
}
