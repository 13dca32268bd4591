/** Fixtures for the SCSI core tests: a tiny in-memory Backstore, nexuses, CDB builders. */
import type { Backstore, BackstoreCapabilities, WriteOptions } from '../../src/backstore/types.js';
import { BackstoreError } from '../../src/backstore/types.js';
import { createScsiTarget, type LunarScsiTarget } from '../../src/scsi/index.js';
import type { LogicalUnitConfig } from '../../src/scsi/lu.js';
import { parseSense } from '../../src/scsi/sense.js';
import {
  type Nexus,
  type ScsiCommand,
  type ScsiResult,
  ScsiStatus,
  TaskAttribute,
} from '../../src/scsi/types.js';

export interface OpLog {
  readonly op: 'read' | 'write' | 'flush' | 'unmap' | 'writeSame';
  readonly lba?: number;
  readonly blocks?: number;
  readonly fua?: boolean;
  readonly tag?: number;
}

export interface TestStoreOptions {
  readonly blockSize?: number;
  readonly blockCount?: number;
  readonly thin?: boolean;
  readonly readOnly?: boolean;
}

/** Flat in-memory store; thin mode tracks mapped blocks. Optional gate delays writes. */
export class TestStore implements Backstore {
  readonly kind = 'test';
  readonly description = 'test';
  readonly blockSize: number;
  blockCount: number;
  readonly capabilities: BackstoreCapabilities;
  data: Buffer;
  readonly mapped = new Set<number>();
  readonly log: OpLog[] = [];
  /** When set, called before each write resolves (to hold writes and reorder completions). */
  writeGate: ((lba: number, data: Buffer) => Promise<void>) | undefined;
  /** When set, the next backstore call rejects with this error code. */
  failNext: BackstoreError['code'] | undefined;

  constructor(o: TestStoreOptions = {}) {
    this.blockSize = o.blockSize ?? 512;
    this.blockCount = o.blockCount ?? 1024;
    this.data = Buffer.alloc(this.blockSize * this.blockCount);
    this.capabilities = {
      directIo: false,
      thin: o.thin === true,
      readOnly: o.readOnly === true,
      persistent: false,
      volatileCache: true,
    };
    if (!o.thin) for (let i = 0; i < this.blockCount; i++) this.mapped.add(i);
  }

  #fail(): void {
    const code = this.failNext;
    if (code) {
      this.failNext = undefined;
      throw new BackstoreError(code, 'injected');
    }
  }
  #range(lba: number, blocks: number): void {
    if (lba < 0 || blocks < 0 || lba + blocks > this.blockCount)
      throw new BackstoreError('OUT_OF_RANGE', 'range');
  }

  async read(lba: number, blocks: number): Promise<Buffer> {
    this.#fail();
    this.#range(lba, blocks);
    this.log.push({ op: 'read', lba, blocks });
    return Buffer.from(this.data.subarray(lba * this.blockSize, (lba + blocks) * this.blockSize));
  }
  async write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    this.#fail();
    const blocks = data.length / this.blockSize;
    this.#range(lba, blocks);
    if (this.writeGate) await this.writeGate(lba, data);
    data.copy(this.data, lba * this.blockSize);
    for (let i = 0; i < blocks; i++) this.mapped.add(lba + i);
    this.log.push({ op: 'write', lba, blocks, fua: opts?.fua === true, tag: data[0] ?? 0 });
  }
  async flush(): Promise<void> {
    this.#fail();
    this.log.push({ op: 'flush' });
  }
  async unmap(lba: number, blocks: number): Promise<void> {
    this.#fail();
    this.#range(lba, blocks);
    this.data.fill(0, lba * this.blockSize, (lba + blocks) * this.blockSize);
    for (let i = 0; i < blocks; i++) this.mapped.delete(lba + i);
    this.log.push({ op: 'unmap', lba, blocks });
  }
  async writeSame(lba: number, blocks: number, pattern: Buffer | null, opts?: WriteOptions): Promise<void> {
    this.#fail();
    this.#range(lba, blocks);
    for (let i = 0; i < blocks; i++) {
      if (pattern) pattern.copy(this.data, (lba + i) * this.blockSize);
      else this.data.fill(0, (lba + i) * this.blockSize, (lba + i + 1) * this.blockSize);
      this.mapped.add(lba + i);
    }
    this.log.push({ op: 'writeSame', lba, blocks, fua: opts?.fua === true });
  }
  async isMapped(lba: number): Promise<boolean> {
    this.#range(lba, 1);
    return this.mapped.has(lba);
  }
  async resize(blocks: number): Promise<void> {
    const d = Buffer.alloc(blocks * this.blockSize);
    this.data.copy(d, 0, 0, Math.min(d.length, this.data.length));
    this.data = d;
    if (!this.capabilities.thin) for (let i = this.blockCount; i < blocks; i++) this.mapped.add(i);
    this.blockCount = blocks;
  }
  async close(): Promise<void> {}
}

export function makeNexus(
  initiator = 'iqn.2026-11.test:init1',
  isid = '400001370000',
  tpgt = 1,
  port = 1,
): Nexus {
  const targetName = 'iqn.2026-11.io.lunar:t1';
  return {
    initiatorName: initiator,
    isid,
    targetName,
    portalGroupTag: tpgt,
    relativeTargetPortId: port,
    key: `${initiator},i,0x${isid}|${targetName},t,0x${tpgt.toString(16).padStart(4, '0')}`,
  };
}

export const N1 = makeNexus();
export const N2 = makeNexus('iqn.2026-11.test:init2', '400001370001');

export interface CmdOptions {
  readonly lun?: number;
  readonly data?: Buffer;
  readonly attr?: TaskAttribute;
  readonly nexus?: Nexus;
  readonly signal?: AbortSignal;
  readonly allocIn?: number;
}

let tag = 1;
export function makeCmd(cdb: readonly number[] | Buffer, o: CmdOptions = {}): ScsiCommand {
  const c = Buffer.alloc(16);
  Buffer.from(cdb as number[]).copy(c);
  const base = {
    nexus: o.nexus ?? N1,
    lun: o.lun ?? 0,
    cdb: c,
    expectedDataOutLength: o.data?.length ?? 0,
    expectedDataInLength: o.allocIn ?? 65536,
    dataOut: o.data ?? Buffer.alloc(0),
    taskAttribute: o.attr ?? TaskAttribute.SIMPLE,
    taskTag: tag++,
  };
  return o.signal ? { ...base, signal: o.signal } : base;
}

export interface Fixture {
  readonly target: LunarScsiTarget;
  readonly store: TestStore;
  run(cdb: readonly number[] | Buffer, o?: CmdOptions): Promise<ScsiResult>;
}

export interface FixtureOptions extends TestStoreOptions {
  readonly lu?: Partial<Omit<LogicalUnitConfig, 'backstore' | 'lun'>>;
  /** Leave the POWER ON unit attentions pending. */
  readonly keepUa?: boolean;
}

export const LU_ID = '0123456789abcdef';

export async function fixture(o: FixtureOptions = {}): Promise<Fixture> {
  const store = new TestStore(o);
  const target = createScsiTarget({
    name: 'iqn.2026-11.io.lunar:t1',
    luns: [{ lun: 0, backstore: store, id: LU_ID, ...o.lu }],
  });
  const run = (cdb: readonly number[] | Buffer, co: CmdOptions = {}) => target.execute(makeCmd(cdb, co));
  target.nexusCreated(N1);
  target.nexusCreated(N2);
  if (!o.keepUa) {
    await clearUa(run, N1);
    await clearUa(run, N2);
  }
  return { target, store, run };
}

export async function clearUa(
  run: (cdb: readonly number[], o?: CmdOptions) => Promise<ScsiResult>,
  nexus: Nexus,
  lun = 0,
): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const r = await run([0x03, 0, 0, 0, 252, 0], { nexus, lun });
    const s = r.dataIn ? parseSense(r.dataIn) : undefined;
    if (s?.key !== 6) return;
  }
}

/** key/asc-ascq of a CHECK CONDITION (throws if the status is something else). */
export function senseOf(r: ScsiResult): { key: number; code: number; information?: number; field?: unknown } {
  if (r.status !== ScsiStatus.CHECK_CONDITION || !r.sense)
    throw new Error(`expected CHECK CONDITION, got ${r.status}`);
  const s = parseSense(r.sense);
  if (!s) throw new Error('unparseable sense');
  return s;
}

export const u16 = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
export const u32 = (n: number): number[] => [(n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
export const u64 = (n: number | bigint): number[] => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return [...b];
};

export const cdb = {
  tur: () => [0x00, 0, 0, 0, 0, 0],
  requestSense: (alloc = 252, desc = false) => [0x03, desc ? 1 : 0, 0, 0, alloc, 0],
  read6: (lba: number, n: number) => [0x08, (lba >> 16) & 0x1f, (lba >> 8) & 0xff, lba & 0xff, n, 0],
  write6: (lba: number, n: number) => [0x0a, (lba >> 16) & 0x1f, (lba >> 8) & 0xff, lba & 0xff, n, 0],
  inquiry: (evpd: boolean, page: number, alloc: number) => [0x12, evpd ? 1 : 0, page, ...u16(alloc), 0],
  modeSense6: (page: number, opts: { pc?: number; dbd?: boolean; sub?: number; alloc?: number } = {}) => [
    0x1a,
    opts.dbd ? 0x08 : 0,
    ((opts.pc ?? 0) << 6) | page,
    opts.sub ?? 0,
    opts.alloc ?? 255,
    0,
  ],
  modeSense10: (
    page: number,
    opts: { pc?: number; dbd?: boolean; llbaa?: boolean; sub?: number; alloc?: number } = {},
  ) => [
    0x5a,
    (opts.dbd ? 0x08 : 0) | (opts.llbaa ? 0x10 : 0),
    ((opts.pc ?? 0) << 6) | page,
    opts.sub ?? 0,
    0,
    0,
    0,
    ...u16(opts.alloc ?? 1024),
    0,
  ],
  modeSelect6: (len: number, pf = true, sp = false) => [0x15, (pf ? 0x10 : 0) | (sp ? 1 : 0), 0, 0, len, 0],
  modeSelect10: (len: number) => [0x55, 0x10, 0, 0, 0, 0, 0, ...u16(len), 0],
  reserve6: () => [0x16, 0, 0, 0, 0, 0],
  release6: () => [0x17, 0, 0, 0, 0, 0],
  reserve10: () => [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0],
  release10: () => [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0],
  startStop: (loej: boolean, start: boolean, pc = 0) => [
    0x1b,
    0,
    0,
    0,
    (pc << 4) | (loej ? 2 : 0) | (start ? 1 : 0),
    0,
  ],
  preventAllow: (prevent: number) => [0x1e, 0, 0, 0, prevent, 0],
  readCapacity10: () => [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
  readCapacity16: (alloc = 32) => [0x9e, 0x10, ...u64(0), ...u32(alloc), 0, 0],
  rw10: (op: number, lba: number, n: number, b1 = 0) => [op, b1, ...u32(lba), 0, ...u16(n), 0],
  rw12: (op: number, lba: number, n: number, b1 = 0) => [op, b1, ...u32(lba), ...u32(n), 0, 0],
  rw16: (op: number, lba: number | bigint, n: number, b1 = 0) => [op, b1, ...u64(lba), ...u32(n), 0, 0],
  reportLuns: (alloc = 1024, select = 0) => [0xa0, 0, select, 0, 0, 0, ...u32(alloc), 0, 0],
  rsoc: (options: number, opcode = 0, sa = 0, rctd = false, alloc = 65535) => [
    0xa3,
    0x0c,
    (rctd ? 0x80 : 0) | options,
    opcode,
    ...u16(sa),
    ...u32(alloc),
    0,
    0,
  ],
  rstmf: (repd = false, alloc = 16) => [0xa3, 0x0d, repd ? 0x80 : 0, 0, 0, 0, ...u32(alloc), 0, 0],
  getLbaStatus: (lba: number | bigint, alloc = 24) => [0x9e, 0x12, ...u64(lba), ...u32(alloc), 0, 0],
  unmap: (len: number) => [0x42, 0, 0, 0, 0, 0, 0, ...u16(len), 0],
  writeSame10: (lba: number, n: number, b1 = 0) => [0x41, b1, ...u32(lba), 0, ...u16(n), 0],
  writeSame16: (lba: number, n: number, b1 = 0) => [0x93, b1, ...u64(lba), ...u32(n), 0, 0],
  caw: (lba: number, n: number, b1 = 0) => [0x89, b1, ...u64(lba), 0, 0, 0, n, 0, 0],
  syncCache10: (lba = 0, n = 0) => [0x35, 0, ...u32(lba), 0, ...u16(n), 0],
};

export const fill = (blocks: number, byte: number, bs = 512): Buffer => Buffer.alloc(blocks * bs, byte);
