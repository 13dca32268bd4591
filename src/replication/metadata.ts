/**
 * Replication metadata, kept in its own file (for "internal" metadata: a sidecar file
 * `<backing>.md` next to the data; DRBD puts it at the end of the device instead).
 *
 * Layout (every area 4 KiB aligned):
 *   0      superblock slot 0   | magic 'LMD1' | crc32c | length | JSON (uuids, disk state, flags) |
 *   4096   superblock slot 1     written alternately with a growing seq: a torn write leaves the
 *                                other slot valid (double buffering + checksum)
 *   8192   AL slot 0           | magic 'LAL1' | crc32c | seq | count | u32 extents… |
 *   12288  AL slot 1
 *   16384  one bitmap per node id (0 … maxNodes-1), each Bitmap.storedBytes(size) long
 */
import { type FileHandle, open } from 'node:fs/promises';
import { crc32c } from '../native/index.js';
import { Bitmap, BITMAP_PAGE } from './bitmap.js';
import type { DiskState } from './states.js';
import { UUID_JUST_CREATED, uuidHex } from './uuid.js';

const SB_MAGIC = 0x4c4d4431;
const AL_MAGIC = 0x4c414c31;
const SLOT = 4096;
const SB_OFF = [0, 4096] as const;
const AL_OFF = [8192, 12288] as const;
const BM_OFF = 16384;
/** AL transactions hold at most this many extents (one 4 KiB slot). */
export const MAX_AL_EXTENTS = (SLOT - 16) / 4;

export interface Superblock {
  version: 1;
  seq: number;
  nodeId: number;
  sizeBytes: number;
  bmBlockBytes: number;
  maxNodes: number;
  current: string;
  /** peer node id → bitmap UUID towards it (hex). */
  bitmapUuids: Record<string, string>;
  history: string[];
  disk: DiskState;
  /** Set while Primary (a crash leaves it set: "crashed primary"). */
  primary: boolean;
  /** Cleared while open; set by a clean close (otherwise the AL is replayed into the bitmaps). */
  clean: boolean;
  /** Peers known to be Outdated (fencing). */
  outdatedPeers: number[];
  /** Crashed while Primary; cleared once a peer has resynced from us. */
  crashedPrimary?: boolean;
}

export interface MetadataInit {
  readonly nodeId: number;
  readonly sizeBytes: number;
  readonly bmBlockBytes?: number;
  readonly maxNodes?: number;
}

export class Metadata {
  readonly path: string;
  readonly sb: Superblock;
  readonly bitmaps: Bitmap[];
  /** AL extents as last written. */
  alExtents: number[];
  /** The previous run ended without a clean close. */
  readonly recoveredFromCrash: boolean;
  /** Was Primary when it crashed. */
  readonly crashedPrimary: boolean;
  /** Superblock / bitmap writes (status counters). */
  sbWrites = 0;
  bmWrites = 0;
  readonly #fh: FileHandle;
  #alSeq: number;
  #chain: Promise<void> = Promise.resolve();

  private constructor(
    path: string,
    fh: FileHandle,
    sb: Superblock,
    bitmaps: Bitmap[],
    al: number[],
    alSeq: number,
    crashed: boolean,
  ) {
    this.path = path;
    this.#fh = fh;
    this.sb = sb;
    this.bitmaps = bitmaps;
    this.alExtents = al;
    this.#alSeq = alSeq;
    this.recoveredFromCrash = crashed;
    this.crashedPrimary = crashed && sb.primary;
  }

  static bitmapOffset(sizeBytes: number, bmBlockBytes: number, node: number): number {
    return BM_OFF + node * Bitmap.storedBytes(sizeBytes, bmBlockBytes);
  }

  /** Opens (or creates, as "just created" + Inconsistent) the metadata file. */
  static async open(path: string, init: MetadataInit): Promise<Metadata> {
    const bmBlock = init.bmBlockBytes ?? 4096;
    const maxNodes = init.maxNodes ?? 4;
    let fh: FileHandle;
    let created = false;
    try {
      fh = await open(path, 'r+');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      fh = await open(path, 'w+');
      created = true;
    }
    try {
      let sb: Superblock | null = created ? null : await readSuperblock(fh);
      if (sb === null) {
        created = true;
        sb = {
          version: 1,
          seq: 0,
          nodeId: init.nodeId,
          sizeBytes: init.sizeBytes,
          bmBlockBytes: bmBlock,
          maxNodes,
          current: uuidHex(UUID_JUST_CREATED),
          bitmapUuids: {},
          history: [],
          disk: 'Inconsistent',
          primary: false,
          clean: true,
          outdatedPeers: [],
        };
        await fh.truncate(Metadata.bitmapOffset(init.sizeBytes, bmBlock, maxNodes));
      }
      if (sb.nodeId !== init.nodeId) {
        throw new Error(`metadata ${path} belongs to node ${sb.nodeId}, not node ${init.nodeId}`);
      }
      if (sb.sizeBytes !== init.sizeBytes) {
        throw new Error(
          `metadata ${path} describes ${sb.sizeBytes} bytes, the backing device has ${init.sizeBytes}`,
        );
      }
      const bitmaps: Bitmap[] = [];
      const bmBytes = Bitmap.storedBytes(sb.sizeBytes, sb.bmBlockBytes);
      for (let n = 0; n < sb.maxNodes; n++) {
        const buf = Buffer.alloc(bmBytes);
        if (!created) await fh.read(buf, 0, bmBytes, Metadata.bitmapOffset(sb.sizeBytes, sb.bmBlockBytes, n));
        bitmaps.push(new Bitmap(sb.sizeBytes, sb.bmBlockBytes, buf));
      }
      const al = created ? { seq: 0, extents: [] } : await readAl(fh);
      const crashed = !sb.clean;
      const md = new Metadata(path, fh, sb, bitmaps, al.extents, al.seq, crashed);
      if (crashed) md.applyAlToBitmaps();
      if (md.crashedPrimary) md.sb.crashedPrimary = true;
      md.sb.primary = false;
      md.sb.clean = false;
      await md.writeSuperblock();
      return md;
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Marks every AL extent out of sync towards every peer (crash recovery). */
  applyAlToBitmaps(extentBytes = 4 * 1024 * 1024): void {
    for (const [n, bm] of this.bitmaps.entries()) {
      if (n === this.sb.nodeId) continue;
      for (const e of this.alExtents) bm.setRange(e * extentBytes, extentBytes);
    }
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn);
    this.#chain = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  /** Writes the superblock durably into the older slot. */
  writeSuperblock(): Promise<void> {
    return this.#serial(async () => {
      this.sb.seq++;
      const json = Buffer.from(JSON.stringify(this.sb));
      if (json.length > SLOT - 12) throw new Error('superblock too large');
      const slot = Buffer.alloc(SLOT);
      slot.writeUInt32BE(SB_MAGIC, 0);
      slot.writeUInt32BE(json.length, 8);
      json.copy(slot, 12);
      slot.writeUInt32BE(crc32c(slot.subarray(8, 12 + json.length)), 4);
      await this.#fh.write(slot, 0, SLOT, SB_OFF[this.sb.seq % 2]);
      await this.#fh.datasync();
      this.sbWrites++;
    });
  }

  /** Writes an AL transaction (the whole active set) durably into the older slot. */
  writeAl(extents: readonly number[]): Promise<void> {
    return this.#serial(async () => {
      if (extents.length > MAX_AL_EXTENTS) throw new Error('too many AL extents');
      this.#alSeq++;
      const slot = Buffer.alloc(SLOT);
      slot.writeUInt32BE(AL_MAGIC, 0);
      slot.writeUInt32BE(this.#alSeq, 8);
      slot.writeUInt32BE(extents.length, 12);
      for (const [i, e] of extents.entries()) slot.writeUInt32BE(e, 16 + i * 4);
      slot.writeUInt32BE(crc32c(slot.subarray(8, 16 + extents.length * 4)), 4);
      await this.#fh.write(slot, 0, SLOT, AL_OFF[this.#alSeq % 2]);
      await this.#fh.datasync();
      this.alExtents = [...extents];
    });
  }

  /** Writes dirty bitmap pages and syncs. */
  flushBitmaps(): Promise<void> {
    return this.#serial(async () => {
      let wrote = false;
      for (const [n, bm] of this.bitmaps.entries()) {
        const pages = bm.dirtyPages;
        if (pages.length === 0) continue;
        bm.clearDirty(pages);
        const base = Metadata.bitmapOffset(this.sb.sizeBytes, this.sb.bmBlockBytes, n);
        for (const p of pages) {
          await this.#fh.write(bm.bytes, p * BITMAP_PAGE, BITMAP_PAGE, base + p * BITMAP_PAGE);
          this.bmWrites++;
        }
        wrote = true;
      }
      if (wrote) await this.#fh.datasync();
    });
  }

  /** Flushes bitmaps, marks the metadata clean and closes the file. */
  async close(clean = true): Promise<void> {
    await this.flushBitmaps();
    if (clean) {
      this.sb.clean = true;
      await this.writeSuperblock();
    }
    await this.#chain;
    await this.#fh.close();
  }
}

async function readSuperblock(fh: FileHandle): Promise<Superblock | null> {
  let best: Superblock | null = null;
  for (const off of SB_OFF) {
    const slot = Buffer.alloc(SLOT);
    const { bytesRead } = await fh.read(slot, 0, SLOT, off);
    if (bytesRead < 12 || slot.readUInt32BE(0) !== SB_MAGIC) continue;
    const len = slot.readUInt32BE(8);
    if (len > SLOT - 12) continue;
    if (crc32c(slot.subarray(8, 12 + len)) !== slot.readUInt32BE(4)) continue;
    try {
      const sb = JSON.parse(slot.subarray(12, 12 + len).toString()) as Superblock;
      if (best === null || sb.seq > best.seq) best = sb;
    } catch {
      /* a torn slot: the other one wins */
    }
  }
  return best;
}

async function readAl(fh: FileHandle): Promise<{ seq: number; extents: number[] }> {
  let best: { seq: number; extents: number[] } = { seq: 0, extents: [] };
  for (const off of AL_OFF) {
    const slot = Buffer.alloc(SLOT);
    const { bytesRead } = await fh.read(slot, 0, SLOT, off);
    if (bytesRead < 16 || slot.readUInt32BE(0) !== AL_MAGIC) continue;
    const count = slot.readUInt32BE(12);
    if (count > MAX_AL_EXTENTS) continue;
    if (crc32c(slot.subarray(8, 16 + count * 4)) !== slot.readUInt32BE(4)) continue;
    const seq = slot.readUInt32BE(8);
    if (seq <= best.seq) continue;
    const extents: number[] = [];
    for (let i = 0; i < count; i++) extents.push(slot.readUInt32BE(16 + i * 4));
    best = { seq, extents };
  }
  return best;
}
