/**
 * PDU fuzzing over real loopback sockets against a lunar target running as a child process
 * (memory LUN). ≥ 100,000 generated and mutated PDUs on many connections; the target must stay
 * up, keep answering a control session opened before the storm, keep its RSS bounded, and still
 * serve a clean login + WRITE/READ + logout afterwards.
 *
 *   npx vitest run --project integration test/fuzz
 *
 * Env: FUZZ_SEED (repeat a run; default fixed under CI=true, random otherwise), FUZZ_PDUS
 * (default 100000), FUZZ_SECONDS (storm time cap, default 140), FUZZ_TARGET=tgtd (sanity-check
 * the fuzzer against tgtd; not for CI), FUZZ_PORT (default 3360), FUZZ_EXCLUDE (PDU classes to
 * leave out, e.g. tmf,snack), FUZZ_PHASES (subset of login,ffp-1,framing,random,ffp-2),
 * FUZZ_LUNAR_NODE_ARGS (node flags for lunar, e.g. --max-old-space-size=48 to tell a leak from
 * lazy GC), FUZZ_DIAG=1 (adds a test printing, per PDU class, how often one PDU gets a
 * connection dropped, and the hex of a PDU that killed the target).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST, type RunningTarget, rssBytes, run, startLunar, startTgtd } from '../../bench/iscsi-procs.js';
import {
  ALL_FF,
  type Bhs,
  Conn,
  type ConnStats,
  dataOut,
  frame,
  isid,
  loginReq,
  logoutReq,
  newStats,
  nopOut,
  OP,
  read10,
  scsiCmd,
  snack,
  textKeys,
  textReq,
  tmf,
  write10,
} from './pdu.js';

const TARGET = process.env['FUZZ_TARGET'] === 'tgtd' ? 'tgtd' : 'lunar';
const PDUS = Number(process.env['FUZZ_PDUS'] ?? 100_000);
const STORM_MS = Number(process.env['FUZZ_SECONDS'] ?? 140) * 1000;
// A fixed seed under CI (reproducible runs), a fresh one elsewhere (more ground covered); always printed.
const SEED = Number(
  process.env['FUZZ_SEED'] ?? (process.env['CI'] ? 20261123 : Math.floor(Math.random() * 2 ** 31)),
);
const PORT = Number(process.env['FUZZ_PORT'] ?? 3360);
const IQN = 'iqn.2026-11.io.lunar.fuzz:target';
const INIT = 'iqn.2026-11.io.lunar.fuzz:storm';
const CONTROL_INIT = 'iqn.2026-11.io.lunar.fuzz:control';
const LUN_BYTES = 64 << 20;
const RSS_LIMIT = 300 << 20;

// ------------------------------------------------------------------ PRNG

function mulberry32(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = mulberry32(SEED);
const int = (n: number) => Math.floor(rnd() * n);
const chance = (p: number) => rnd() < p;
const u32 = () => (int(0x10000) * 0x10000 + int(0x10000)) >>> 0;
function pick<T>(xs: readonly T[]): T {
  return xs[int(xs.length)]!;
}
function bytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = int(256);
  return b;
}

// ------------------------------------------------------------------ counters

const stats: ConnStats = newStats();
const count = {
  connections: 0,
  loggedIn: 0,
  loginFailures: 0,
  droppedByTarget: 0,
  answered: 0,
  silent: 0,
  reconnects: 0,
  pingsAfterMutation: 0,
  pingsAnswered: 0,
  /** PDUs known to have been processed: followed on their connection by an answered ping. */
  confirmed: 0,
};

/**
 * CDBs the storm must not send: they could legitimately make the LU unusable for the final check
 * (reservations, write protect via MODE SELECT, stop, format, sanitize, ALUA state changes,
 * microcode download).
 */
const HAZARDOUS_CDB = new Set([0x04, 0x15, 0x16, 0x1b, 0x3b, 0x48, 0x55, 0x56, 0x5f, 0xa4]);

/** Keep the storm from doing things that legitimately affect other sessions. */
function sanitize(p: Bhs): Bhs {
  const op = p.bhs[0]! & 0x3f;
  // TARGET COLD RESET drops every connection of every session, the control one included.
  if (op === OP.TMF && (p.bhs[1]! & 0x7f) === 7) p.bhs[1] = (p.bhs[1]! & 0x80) | 6;
  if (op === OP.SCSI_CMD && HAZARDOUS_CDB.has(p.bhs[32]!)) p.bhs[32] = 0x00;
  // Never an initiator name that could reinstate the control session.
  return p;
}

// ------------------------------------------------------------------ target

let target: RunningTarget;
let dir: string;
let lun = 0;

async function connect(): Promise<Conn> {
  count.connections++;
  const c = await Conn.open(HOST, PORT, stats);
  c.lun = lun;
  return c;
}

let isidSeq = 0x100;
async function loginConn(digests: boolean): Promise<Conn | undefined> {
  let c: Conn;
  try {
    c = await connect();
  } catch {
    count.loginFailures++;
    return undefined;
  }
  try {
    await c.doLogin({ initiator: INIT, target: IQN, isid: isid(isidSeq++), digests, timeoutMs: 5000 });
    count.loggedIn++;
    return c;
  } catch {
    count.loginFailures++;
    c.destroy();
    return undefined;
  }
}

// ------------------------------------------------------------------ generators: login phase

function garbageLoginText(): Buffer {
  const base: (string | [string, string])[] = [
    ['InitiatorName', INIT],
    ['TargetName', IQN],
    ['SessionType', 'Normal'],
    ['AuthMethod', 'None'],
  ];
  switch (int(12)) {
    case 0:
      return bytes(1 + int(2000)); // random, mostly invalid UTF-8
    case 1: // huge key
      return Buffer.concat([textKeys(base), Buffer.from('X'.repeat(200 + int(70_000)) + '=1\0')]);
    case 2: // huge value
      return textKeys([...base, ['X-Huge', 'v'.repeat(200 + int(70_000))]]);
    case 3: // missing '='
      return Buffer.from(`InitiatorName${INIT}\0TargetName=${IQN}\0JustAKey\0=\0==\0`);
    case 4: // duplicate keys
      return textKeys([
        ...base,
        ['InitiatorName', 'iqn.2026-11.other:x'],
        ['AuthMethod', 'CHAP,None'],
        ['SessionType', 'Discovery'],
      ]);
    case 5: // non-UTF8 inside a value and key
      return Buffer.concat([
        Buffer.from('InitiatorName='),
        Buffer.from([0xc3, 0x28, 0xff, 0xfe]),
        Buffer.from('\0\xff\xfe=\xc0\x80\0'),
      ]);
    case 6: // no NUL terminator
      return Buffer.from(`InitiatorName=${INIT}\0TargetName=${IQN}`);
    case 7: // out of range numbers and bad list syntax in the security stage
      return textKeys([
        ...base,
        ['MaxRecvDataSegmentLength', pick(['0', '-1', '99999999999999999999999', '0x', '1e9', ''])],
        ['HeaderDigest', pick(['CRC32C,,,', ',', 'CRC64', 'None,None,None'])],
        ['MaxConnections', '0'],
      ]);
    case 8: // wrong / missing target name, discovery with a name
      return textKeys(
        pick([
          [
            ['InitiatorName', INIT],
            ['TargetName', 'iqn.2026-11.io.lunar.fuzz:nope'],
          ],
          [['InitiatorName', INIT]],
          [['TargetName', IQN]],
          [
            ['InitiatorName', INIT],
            ['SessionType', 'Discovery'],
            ['TargetName', IQN],
            ['AuthMethod', 'CHAP'],
          ],
          [
            ['InitiatorName', ''],
            ['TargetName', IQN],
          ],
        ] as [string, string][][]),
      );
    case 9: // many keys
      return textKeys(
        Array.from({ length: 500 + int(3000) }, (_, i) => [`X-k${i}`, String(i)] as [string, string]),
      );
    case 10: // NULs only
      return Buffer.alloc(1 + int(4096));
    default: // CHAP with garbage
      return textKeys([
        ...base.slice(0, 2),
        ['AuthMethod', 'CHAP'],
        ['CHAP_A', pick(['5', '7,5', 'x'])],
        ['CHAP_N', 'a'.repeat(int(600))],
      ]);
  }
}

function mutatedLogin(i: number): Buffer[] {
  const data = chance(0.6)
    ? garbageLoginText()
    : textKeys([
        ['InitiatorName', INIT],
        ['TargetName', IQN],
        ['AuthMethod', 'None'],
      ]);
  const p = loginReq({
    isid: isid(0x10000 + i),
    itt: u32(),
    cmdSN: u32(),
    expStatSN: 0,
    csg: 0,
    nsg: 1,
    transit: true,
    data,
  });
  const kind = int(10);
  if (kind === 0) p.bhs[1] = int(256); // random T/C/CSG/NSG incl. reserved stage 2
  if (kind === 1) p.bhs[1] = 0xc0 | 1; // T and C together
  if (kind === 2) {
    p.bhs[2] = int(256);
    p.bhs[3] = int(256); // version
  }
  if (kind === 3) p.bhs.writeUInt16BE(1 + int(0xffff), 14); // unknown TSIH
  if (kind === 4)
    p.bhs[0] = 0x40 | pick([OP.NOP_OUT, OP.SCSI_CMD, OP.TEXT, OP.LOGOUT, OP.TMF, OP.DATA_OUT, 0x1f]);
  if (kind === 5)
    return [frame(p, { dlen: data.length + 1 + int(100_000) }).subarray(0, 48 + int(data.length + 1))];
  if (kind === 6) return [frame(p, { dlen: Math.max(0, data.length - 1 - int(20)) })];
  if (kind === 7) return [frame(p, { ahsWords: 1 + int(255) })];
  if (kind === 8) {
    // Endless continuation (C bit) of partial text: the target must bound what it accumulates.
    const out: Buffer[] = [];
    for (let n = 0; n < 4 + int(16); n++) {
      const q = loginReq({
        isid: isid(0x10000 + i),
        itt: 7,
        cmdSN: 0,
        expStatSN: 0,
        csg: 0,
        nsg: 1,
        transit: false,
        cont: true,
        data: Buffer.from(`X-long=${'y'.repeat(8000)}`),
      });
      out.push(frame(q));
    }
    return out;
  }
  if (kind === 9) return [bytes(1 + int(47))]; // truncated header
  return [frame(p)];
}

async function loginStorm(quota: number, deadline: number) {
  const start = stats.pdusSent;
  let i = 0;
  const worker = async () => {
    while (stats.pdusSent - start < quota && Date.now() < deadline) {
      let c: Conn;
      try {
        c = await connect();
      } catch {
        continue;
      }
      const pdus = mutatedLogin(i++);
      let got = false;
      c.onPdu = () => {
        got = true;
      };
      for (const b of pdus) c.writeRaw(b, 1);
      // A short exchange: optionally a second, valid-looking login after garbage.
      if (chance(0.3)) for (const b of mutatedLogin(i++)) c.writeRaw(b, 1);
      await c.whenClosed(150 + int(150));
      if (got) count.answered++;
      if (c.peerClosed) count.droppedByTarget++;
      c.destroy();
    }
  };
  await Promise.all(Array.from({ length: 24 }, worker));
}

// ------------------------------------------------------------------ generators: full feature phase

const UNKNOWN_OPS = [
  0x07, 0x08, 0x0b, 0x0f, 0x11, 0x1a, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x25, 0x3f, 0x31,
];

function randomCdb(): Buffer {
  const n = pick([6, 10, 12, 16]);
  const c = bytes(16);
  const r = int(10);
  if (r < 3)
    c[0] = pick([
      0x28, 0x2a, 0x88, 0x8a, 0x08, 0x0a, 0xa8, 0xaa, 0x2f, 0x8f, 0x35, 0x91, 0x41, 0x93, 0x42, 0x89,
    ]);
  else if (r < 6)
    c[0] = pick([
      0x00, 0x12, 0x25, 0x9e, 0x1a, 0x5a, 0xa0, 0x03, 0x4d, 0x1e, 0xa3, 0x5e, 0x83, 0x84, 0x17, 0x57,
    ]);
  if (n < 16) c.fill(0, n);
  return c;
}

function randomLun(): number {
  return chance(0.9) ? lun : pick([1, 2, 7, 255, 0x3fff]);
}

/** PDU classes of ffpPdu() with their share (out of 100); FUZZ_EXCLUDE=tmf,snack,... drops classes. */
const FFP_CLASSES: [string, number][] = [
  ['nop', 18],
  ['cdb', 32],
  ['rw', 12],
  ['dataout', 10],
  ['tmf', 6],
  ['text', 7],
  ['snack', 4],
  ['unknown', 6],
  ['ahs', 3],
  ['login', 1],
  ['logout', 1],
];
const EXCLUDE = new Set((process.env['FUZZ_EXCLUDE'] ?? '').split(',').filter(Boolean));
/** Class of the last PDU ffpPdu() built. */
let lastClass = '';
/** A number in [0, 100) that lands only in the ranges of classes not excluded. */
function ffpRoll(): number {
  const r = ffpRollRaw();
  let at = 0;
  for (const [name, w] of FFP_CLASSES) {
    if (r < at + w) {
      lastClass = name;
      break;
    }
    at += w;
  }
  return r;
}
function ffpRollRaw(): number {
  const ranges: [number, number][] = [];
  let at = 0;
  let total = 0;
  for (const [name, w] of FFP_CLASSES) {
    if (!EXCLUDE.has(name)) {
      ranges.push([at, w]);
      total += w;
    }
    at += w;
  }
  let x = rnd() * total;
  for (const [start, w] of ranges) {
    if (x < w) return start + x;
    x -= w;
  }
  return 0;
}

/** One well-framed but semantically hostile PDU for a logged-in connection. */
function ffpPdu(c: Conn): Bhs {
  const r = ffpRoll();
  const inWindow = chance(0.85);
  const nextCmdSN = () => {
    if (!inWindow) return pick([u32(), (c.cmdSN - 1 - int(100)) >>> 0, (c.maxCmdSN + 1 + int(1000)) >>> 0]);
    const s = c.cmdSN;
    c.cmdSN = (c.cmdSN + 1) >>> 0;
    return s;
  };
  if (r < 18) {
    const data = chance(0.3) ? bytes(int(4096)) : undefined;
    const p = nopOut({
      itt: chance(0.8) ? c.itt() : ALL_FF,
      cmdSN: c.cmdSN,
      expStatSN: c.expStatSN,
      ...(data ? { data } : {}),
    });
    if (chance(0.1)) p.bhs.writeUInt32BE(u32(), 20); // TTT that answers no NOP-In
    if (chance(0.1)) p.bhs[0] = OP.NOP_OUT; // non-immediate
    return p;
  }
  if (r < 50) {
    const cdb = randomCdb();
    const write = chance(0.3);
    const read = chance(0.5);
    const edtl = chance(0.8) ? int(65536) : u32();
    const data =
      write && chance(0.7) ? bytes(Math.min(int(8192), 8192)) : chance(0.05) ? bytes(int(512)) : undefined;
    return scsiCmd({
      itt: c.itt(),
      cmdSN: nextCmdSN(),
      expStatSN: chance(0.9) ? c.expStatSN : u32(),
      lun: randomLun(),
      cdb,
      edtl,
      read,
      write,
      final: chance(0.9),
      immediate: chance(0.05),
      attr: int(8),
      ...(data ? { data } : {}),
    });
  }
  if (r < 62) {
    // Valid-looking READ/WRITE, some beyond the end of the LU.
    const blocks = 1 + int(16);
    const lba = chance(0.9) ? int(LUN_BYTES / 512 - blocks) : LUN_BYTES / 512 - int(8);
    const write = chance(0.5);
    const data = write ? bytes(blocks * 512) : undefined;
    return scsiCmd({
      itt: c.itt(),
      cmdSN: nextCmdSN(),
      expStatSN: c.expStatSN,
      lun,
      cdb: write ? write10(lba, blocks, chance(0.2)) : read10(lba, blocks),
      edtl: blocks * 512,
      read: !write,
      write,
      ...(data ? { data } : {}),
    });
  }
  if (r < 72) {
    return dataOut({
      itt: chance(0.5) ? (c.nextItt - 1 - int(5)) >>> 0 : u32(),
      ttt: chance(0.5) ? ALL_FF : u32(),
      expStatSN: c.expStatSN,
      lun,
      dataSN: int(4),
      offset: chance(0.7) ? int(16) * 512 : u32(),
      final: chance(0.7),
      data: bytes(1 + int(8192)),
    });
  }
  if (r < 78) {
    return tmf({
      itt: c.itt(),
      cmdSN: c.cmdSN,
      expStatSN: c.expStatSN,
      lun: randomLun(),
      fn: pick([1, 1, 1, 2, 3, 4, 5, 6, 8, 9, 14, 15, 127]),
      rtt: chance(0.5) ? (c.nextItt - 1 - int(20)) >>> 0 : u32(),
      refCmdSN: c.cmdSN - int(10),
    });
  }
  if (r < 85) {
    const data = pick([
      () => textKeys(['SendTargets=All']),
      () => textKeys([['SendTargets', IQN]]),
      () => bytes(1 + int(1024)),
      () => Buffer.from('SendTargets\0=\0MaxRecvDataSegmentLength=0\0'),
      () => textKeys([['X-big', 'z'.repeat(int(8000))]]),
      () =>
        textKeys([
          ['HeaderDigest', 'CRC32C'],
          ['MaxBurstLength', '1'],
        ]),
    ])();
    return textReq({
      itt: c.itt(),
      cmdSN: c.cmdSN,
      expStatSN: c.expStatSN,
      final: chance(0.8),
      cont: chance(0.2),
      ttt: chance(0.9) ? ALL_FF : u32(),
      data,
    });
  }
  if (r < 89)
    return snack({ itt: u32(), expStatSN: c.expStatSN, type: int(16), begrun: int(10), runlen: int(10) });
  if (r < 95) {
    const b = bytes(48);
    b[0] = (b[0]! & 0x40) | pick(UNKNOWN_OPS);
    const data = chance(0.5) ? bytes(int(2048)) : undefined;
    return data ? { bhs: b, data } : { bhs: b };
  }
  if (r < 98) {
    // AHS on a SCSI command: extended CDB (type 1), bidi read length (type 2), unknown types.
    const p = scsiCmd({
      itt: c.itt(),
      cmdSN: nextCmdSN(),
      expStatSN: c.expStatSN,
      lun,
      cdb: randomCdb(),
      edtl: int(4096),
      read: true,
    });
    const len = pick([1, 5, 17, 253]);
    const ahs = Buffer.alloc(4 + len + ((4 - ((4 + len) & 3)) & 3));
    ahs.writeUInt16BE(len, 0);
    ahs[2] = pick([1, 2, 0, 3, 0x3f, 0x40, 0xff]);
    bytes(len).copy(ahs, 4);
    p.ahs = ahs;
    return p;
  }
  if (r < 99) {
    // Login request in full feature phase.
    return loginReq({
      isid: isid(u32()),
      itt: c.itt(),
      cmdSN: c.cmdSN,
      expStatSN: c.expStatSN,
      csg: 1,
      nsg: 3,
      transit: true,
      data: textKeys(['HeaderDigest=None']),
    });
  }
  // Logout (connection or session; sometimes a foreign CID): usually ends the connection.
  return logoutReq({
    itt: c.itt(),
    cmdSN: c.cmdSN,
    expStatSN: c.expStatSN,
    reason: int(4),
    cid: chance(0.5) ? 0 : int(65536),
  });
}

/** Runs until `quota` PDUs are confirmed processed (sent PDUs lost to dropped connections don't count). */
async function ffpStorm(quota: number, deadline: number, workers: number) {
  const start = count.confirmed;
  const worker = async () => {
    let c: Conn | undefined;
    let first = true;
    while (count.confirmed - start < quota && Date.now() < deadline) {
      if (!c || c.closed) {
        if (c) {
          if (c.peerClosed) count.droppedByTarget++;
          count.reconnects++;
        }
        c = await loginConn(first ? false : chance(0.5));
        first = false;
        if (!c) continue;
      }
      let n = 0;
      for (; n < 16 && !c.closed; n++) c.send(sanitize(ffpPdu(c)));
      await c.drain();
      // Resynchronize after every burst: an immediate NOP-Out must still be answered, and once it
      // is, the whole burst has been processed (the target handles a connection's PDUs in order).
      count.pingsAfterMutation++;
      try {
        await c.ping(5000);
        count.pingsAnswered++;
        count.confirmed += n;
      } catch {
        if (!c.closed) count.silent++;
        c.destroy();
      }
    }
    if (c) {
      if (c.peerClosed) count.droppedByTarget++;
      c.destroy();
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
}

// ------------------------------------------------------------------ framing mutations

function framingMutation(c: Conn): { buf: Buffer; pdus: number; trickle?: boolean } {
  const benign = () =>
    nopOut({ itt: c.itt(), cmdSN: c.cmdSN, expStatSN: c.expStatSN, data: Buffer.alloc(int(64), 0x41) });
  const k = int(11);
  switch (k) {
    case 0: {
      // Truncated header followed by a whole PDU: everything after is misframed.
      const full = frame(benign(), { hd: c.hd, dd: c.dd });
      return {
        buf: Buffer.concat([full.subarray(0, 1 + int(47)), frame(benign(), { hd: c.hd, dd: c.dd })]),
        pdus: 2,
      };
    }
    case 1: {
      // DataSegmentLength larger than what follows.
      const p = benign();
      return {
        buf: frame(p, { hd: c.hd, dd: c.dd, dlen: (p.data?.length ?? 0) + 1 + int(65_536) }),
        pdus: 1,
      };
    }
    case 2: {
      // DataSegmentLength smaller than what follows: the rest is read as a header.
      const p = nopOut({
        itt: c.itt(),
        cmdSN: c.cmdSN,
        expStatSN: c.expStatSN,
        data: Buffer.alloc(200, 0x41),
      });
      return { buf: frame(p, { hd: c.hd, dd: c.dd, dlen: int(100) }), pdus: 1 };
    }
    case 3: // TotalAHSLength lie
      return { buf: frame(benign(), { hd: c.hd, dd: c.dd, ahsWords: 1 + int(255) }), pdus: 1 };
    case 4: {
      // Oversized data segment (beyond any MaxRecvDataSegmentLength), sent in full.
      const size = pick([300_000, 1 << 20, (1 << 24) - 4]);
      const sent = Math.min(size, 1 << 20);
      const p = nopOut({
        itt: c.itt(),
        cmdSN: c.cmdSN,
        expStatSN: c.expStatSN,
        data: Buffer.alloc(sent, 0x41),
      });
      return { buf: frame(p, { hd: c.hd, dd: c.dd, dlen: size }), pdus: 1 };
    }
    case 5: // bad header digest (or, without digests, a stray 4 bytes)
      return { buf: frame(benign(), { hd: true, dd: c.dd, corruptHd: true }), pdus: 1 };
    case 6: {
      // bad data digest on a NOP-Out and on a WRITE's immediate data
      const p = chance(0.5)
        ? nopOut({ itt: c.itt(), cmdSN: c.cmdSN, expStatSN: c.expStatSN, data: Buffer.alloc(512, 0x42) })
        : scsiCmd({
            itt: c.itt(),
            cmdSN: c.cmdSN++,
            expStatSN: c.expStatSN,
            lun,
            cdb: write10(100, 1),
            edtl: 512,
            write: true,
            data: Buffer.alloc(512, 0x43),
          });
      return { buf: frame(p, { hd: c.hd, dd: true, corruptDd: true }), pdus: 1 };
    }
    case 7: // random bytes
      return { buf: bytes(1 + int(2048)), pdus: 1 };
    case 8: // all-ones header
      return { buf: Buffer.alloc(48, 0xff), pdus: 1 };
    case 9: {
      // Data segment length at the 24-bit maximum, nothing sent after the header.
      return {
        buf: frame(benign(), { hd: c.hd, dd: c.dd, dlen: 0xffffff }).subarray(0, 48 + (c.hd ? 4 : 0)),
        pdus: 1,
      };
    }
    default: {
      // A whole PDU delivered one byte per write.
      return { buf: frame(benign(), { hd: c.hd, dd: c.dd }), pdus: 1, trickle: true };
    }
  }
}

async function framingStorm(quota: number, deadline: number) {
  const start = stats.pdusSent;
  const worker = async () => {
    while (stats.pdusSent - start < quota && Date.now() < deadline) {
      const c = await loginConn(chance(0.7));
      if (!c) continue;
      const before = stats.pdusSent;
      for (let n = int(20); n > 0; n--) {
        const p = ffpPdu(c);
        const op = p.bhs[0]! & 0x3f;
        if (op === OP.LOGOUT || op === OP.LOGIN) continue;
        c.send(sanitize(p));
      }
      const m = framingMutation(c);
      if (m.trickle || (m.buf.length <= 64 && chance(0.5))) {
        for (let i = 0; i < m.buf.length; i++) c.writeRaw(m.buf.subarray(i, i + 1), i === 0 ? m.pdus : 0);
      } else {
        c.writeRaw(m.buf, m.pdus);
      }
      await c.drain();
      count.pingsAfterMutation++;
      try {
        await c.ping(400);
        count.pingsAnswered++;
        count.answered++;
        count.confirmed += stats.pdusSent - before;
      } catch {
        if (c.peerClosed || c.closed) count.droppedByTarget++;
        else count.silent++;
      }
      c.destroy();
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
}

async function randomStorm(quota: number, deadline: number) {
  const start = stats.pdusSent;
  const worker = async () => {
    while (stats.pdusSent - start < quota && Date.now() < deadline) {
      let c: Conn;
      try {
        c = await connect();
      } catch {
        continue;
      }
      const n = 1 + int(20);
      const parts: Buffer[] = [];
      for (let i = 0; i < n; i++) {
        const b = bytes(48 + int(200));
        if (chance(0.5)) b[0] = 0x43; // looks like a login
        b[4] = chance(0.5) ? 0 : b[4]!;
        if (chance(0.5)) b.fill(0, 5, 8);
        parts.push(b);
      }
      c.writeRaw(Buffer.concat(parts), n);
      await c.whenClosed(100);
      if (c.peerClosed) count.droppedByTarget++;
      c.destroy();
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

// ------------------------------------------------------------------ the test

/** FUZZ_DIAG=1: per PDU class, how often one such PDU gets the connection dropped (prints a table). */
async function diagnose() {
  const rows: string[] = [];
  for (const [name] of FFP_CLASSES) {
    const r = { answered: 0, dropped: 0, silent: 0 };
    for (let i = 0; i < 60; i++) {
      const c = await loginConn(chance(0.5));
      if (!c) continue;
      let p: Bhs;
      do p = ffpPdu(c);
      while (lastClass !== name);
      const wire = frame(sanitize(p), { hd: c.hd, dd: c.dd });
      c.writeRaw(wire);
      try {
        await c.ping(500);
        r.answered++;
      } catch {
        if (c.closed) r.dropped++;
        else r.silent++;
      }
      c.destroy();
      if (target.exited()) {
        rows.push(
          `target died (${JSON.stringify(target.exited())}) after this ${name} PDU: ${wire.toString('hex')}`,
        );
        break;
      }
    }
    rows.push(`${name.padEnd(8)} answered ${r.answered} dropped ${r.dropped} silent ${r.silent}`);
    if (target.exited()) break;
  }
  console.log(rows.join('\n'));
}

describe(`PDU fuzz against ${TARGET}`, () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lunar-fuzz-'));
    if (TARGET === 'tgtd') {
      const file = join(dir, 'lun.img');
      await run('truncate', ['-s', String(LUN_BYTES), file]);
      target = await startTgtd({ iqn: IQN, port: PORT, file });
      lun = 1;
    } else {
      target = await startLunar({
        dir,
        iqn: IQN,
        ports: [PORT],
        luns: [{ lun: 0, backstore: 'memory', size: LUN_BYTES }],
        params: { HeaderDigest: 'CRC32C,None', DataDigest: 'CRC32C,None' },
        nodeArgs: (process.env['FUZZ_LUNAR_NODE_ARGS'] ?? '').split(' ').filter(Boolean),
      });
      lun = 0;
    }
  });

  afterAll(async () => {
    await target?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.runIf(process.env['FUZZ_DIAG'] === '1')(
    'diagnostics: drop rate per PDU class',
    { timeout: 300_000 },
    diagnose,
  );

  it(`survives ≥ ${PDUS} hostile PDUs (seed ${SEED})`, { timeout: STORM_MS + 90_000 }, async () => {
    const pid = target.pid;
    const t0 = Date.now();
    // Control session, logged in before the storm, pinged all along.
    const control = new Conn();
    await new Promise<void>((res, rej) => {
      control.sock.once('connect', () => res());
      control.sock.once('error', rej);
      control.sock.connect(PORT, HOST);
    });
    control.lun = lun;
    const cl = await control.doLogin({
      initiator: CONTROL_INIT,
      target: IQN,
      isid: isid(0x7e57),
      digests: true,
    });
    await control.ping();
    let pings = 0;
    const pingFailures: string[] = [];
    let maxPingMs = 0;
    const rss: { t: number; phase: string; rss: number }[] = [];
    let phase = 'start';
    let stop = false;
    const pinger = (async () => {
      while (!stop) {
        const s = Date.now();
        try {
          await control.ping(10_000, Buffer.from(`ping ${pings}`));
          pings++;
          maxPingMs = Math.max(maxPingMs, Date.now() - s);
        } catch (e) {
          pingFailures.push(`${phase}: ${(e as Error).message}`);
          if (control.closed) return;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const sampler = setInterval(() => {
      const v = rssBytes(pid);
      if (v !== undefined) rss.push({ t: Date.now() - t0, phase, rss: v });
    }, 200);
    const phaseEnd: Record<string, number> = {};
    const settle = async (name: string) => {
      await new Promise((r) => setTimeout(r, 600));
      phaseEnd[name] = rssBytes(pid) ?? -1;
    };

    const stormEnd = Date.now() + STORM_MS;
    const plan: [string, number, number, (q: number, d: number) => Promise<void>][] = [
      // name, share of PDUs, share of time
      ['login', 0.1, 0.16, loginStorm],
      ['ffp-1', 0.35, 0.28, (q, d) => ffpStorm(q, d, 8)],
      ['framing', 0.1, 0.18, framingStorm],
      ['random', 0.05, 0.06, randomStorm],
      ['ffp-2', 0.4, 0.32, (q, d) => ffpStorm(q, d, 8)],
    ];
    const perPhase: Record<string, { pdus: number; ms: number }> = {};
    const only = process.env['FUZZ_PHASES']?.split(',');
    for (const [name, share, tshare, fn] of plan) {
      if (only && !only.includes(name)) continue;
      phase = name;
      const s0 = stats.pdusSent;
      const ts = Date.now();
      const deadline = Math.min(stormEnd, ts + STORM_MS * tshare * 1.5);
      await fn(Math.ceil(PDUS * share), deadline);
      perPhase[name] = { pdus: stats.pdusSent - s0, ms: Date.now() - ts };
      await settle(name);
      expect(target.exited(), `target died during phase ${name}:\n${target.output()}`).toBeUndefined();
    }
    // Top up to the PDU count with more full-feature traffic if the phases ended early on time.
    if (stats.pdusSent < PDUS && Date.now() < stormEnd) {
      phase = 'top-up';
      const s0 = stats.pdusSent;
      const ts = Date.now();
      await ffpStorm(Math.ceil((PDUS - stats.pdusSent) / 2), stormEnd, 8);
      perPhase['top-up'] = { pdus: stats.pdusSent - s0, ms: Date.now() - ts };
      await settle('top-up');
    }
    phase = 'after';
    const stormPdus = stats.pdusSent;

    // The target is alive, the control session still answers.
    expect(target.exited(), `target exited:\n${target.output()}`).toBeUndefined();
    expect(() => process.kill(pid, 0)).not.toThrow();
    await control.ping(5000);

    // A clean session: login, WRITE, READ back, logout.
    const clean = await loginConn(false);
    expect(clean, 'clean login after the storm').toBeDefined();
    const c = clean!;
    for (let i = 0; i < 8; i++) {
      const tur = await c.scsi(Buffer.alloc(6));
      if (tur.status === 0) break; // unit attentions from the storm's resets clear one by one
    }
    const pattern = Buffer.alloc(8 * 512);
    for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7 + SEED) & 0xff;
    const lba = 4242;
    let w = await c.scsi(write10(lba, 8), { write: pattern });
    if (w.status !== 0) w = await c.scsi(write10(lba, 8), { write: pattern });
    expect(w.status, `WRITE status, sense ${w.sense.toString('hex')}`).toBe(0);
    const r = await c.scsi(read10(lba, 8), { read: pattern.length });
    expect(r.status).toBe(0);
    expect(r.data.equals(pattern)).toBe(true);
    const lo = await c.logout();
    expect(lo.bhs[2]).toBe(0);
    c.destroy();

    await control.ping(5000);
    stop = true;
    await pinger;
    clearInterval(sampler);
    await control.logout().catch(() => undefined);
    control.destroy();

    const mib = (b: number) => (b / 1048576).toFixed(1);
    const maxRss = Math.max(...rss.map((x) => x.rss));
    const byOp = [...stats.byOp].map(([op, n]) => `0x${op.toString(16)}:${n}`).join(' ');
    const summary = [
      `fuzz ${TARGET} seed=${SEED} control digests hd=${cl.hd} dd=${cl.dd}`,
      `PDUs sent ${stormPdus}, confirmed processed ${count.confirmed} (${(stats.bytesSent / 1048576).toFixed(1)} MiB) in ${((Date.now() - t0) / 1000).toFixed(1)} s; per phase ${JSON.stringify(perPhase)}`,
      `connections ${count.connections}, logged in ${count.loggedIn}, login failures ${count.loginFailures}, reconnects ${count.reconnects}`,
      `received ${stats.pdusReceived} PDUs: Reject ${stats.rejects}; by opcode ${byOp}`,
      `connections dropped by target ${count.droppedByTarget}, answered ${count.answered}, silent ${count.silent}; pings after mutation ${count.pingsAnswered}/${count.pingsAfterMutation} answered`,
      `control pings ${pings} ok, ${pingFailures.length} failed, max ${maxPingMs} ms`,
      `RSS max ${mib(maxRss)} MiB; at phase ends ${Object.entries(phaseEnd)
        .map(([k, v]) => `${k}=${mib(v)}`)
        .join(' ')}`,
    ].join('\n');
    console.log(summary);

    expect(pingFailures, 'control session pings').toEqual([]);
    expect(stormPdus).toBeGreaterThanOrEqual(PDUS);
    expect(maxRss).toBeLessThan(RSS_LIMIT);
    // No monotonic growth across the last phases: the same workload (ffp-1, ffp-2) must not leave
    // the process much bigger, and the last three phase ends must not climb steadily.
    const ends = Object.values(phaseEnd);
    const last3 = ends.slice(-3);
    const climbing = last3.length === 3 && last3[0]! < last3[1]! && last3[1]! < last3[2]!;
    expect(
      climbing && last3[2]! - last3[0]! > 32 << 20,
      `RSS climbing: ${ends.map(mib).join(' → ')} MiB`,
    ).toBe(false);
    expect((phaseEnd['ffp-2'] ?? 0) - (phaseEnd['ffp-1'] ?? 0)).toBeLessThan(64 << 20);
    expect(target.exited()).toBeUndefined();
    if (TARGET === 'lunar') {
      // And it still shuts down cleanly on SIGTERM.
      await target.stop();
      expect(target.exited(), target.output()).toEqual({ code: 0, signal: null });
    }
  });
});
