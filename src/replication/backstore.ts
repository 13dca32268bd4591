/**
 * The Backstore face of a replicated resource, so an iSCSI LUN can sit on it: reads are served
 * from the local disk on the Primary; writes, unmap, write-same and flush go through the
 * replication write path (resource.ts).
 */
import { BackstoreBase } from '../backstore/common.js';
import {
  type Backstore,
  type BackstoreCapabilities,
  BackstoreError,
  BackstoreErrorCode,
  type WriteOptions,
} from '../backstore/types.js';
import type { Resource } from './resource.js';

/** Largest single replicated write (bigger requests are split; frames stay below the max frame). */
const MAX_IO = 1024 * 1024;

export class ReplicatedBackstore extends BackstoreBase implements Backstore {
  readonly kind = 'replicated';
  readonly resource: Resource;

  constructor(resource: Resource) {
    super(resource.blockSize, resource.sizeBytes / resource.blockSize);
    this.resource = resource;
  }

  get description(): string {
    const r = this.resource;
    return `replicated ${r.name} (node ${r.me.id}, protocol ${r.cfg.net.protocol}, ${r.backing?.description ?? 'diskless'})`;
  }

  get capabilities(): BackstoreCapabilities {
    return {
      directIo: this.resource.backing?.capabilities.directIo ?? false,
      thin: false,
      readOnly: false,
      persistent: true,
      volatileCache: true,
    };
  }

  async read(lba: number, blocks: number): Promise<Buffer> {
    this.checkOpen('read');
    const { offset, length } = this.checkRange('read', lba, blocks);
    return this.resource.read(offset, length);
  }

  /** Read buffers come from the local backing store: they go back to it. */
  release(buffer: Buffer): void {
    this.resource.backing?.release?.(buffer);
  }

  /** Not async: the common single request hands the resource's promise through (no extra hops). */
  write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    let offset: number;
    let length: number;
    try {
      this.checkOpen('write');
      const blocks = this.checkData('write', data);
      ({ offset, length } = this.checkRange('write', lba, blocks));
    } catch (e) {
      return Promise.reject(e as Error);
    }
    const fua = opts?.fua === true;
    if (length <= MAX_IO) return this.resource.write(offset, length, data, fua);
    return this.#writeParts(offset, length, data, fua);
  }

  async #writeParts(offset: number, length: number, data: Buffer, fua: boolean): Promise<void> {
    const parts: Promise<void>[] = [];
    for (let at = 0; at < length; at += MAX_IO) {
      const n = Math.min(MAX_IO, length - at);
      parts.push(this.resource.write(offset + at, n, data.subarray(at, at + n), fua));
    }
    await Promise.all(parts);
  }

  async flush(): Promise<void> {
    this.checkOpen('flush');
    await this.resource.flush();
  }

  async unmap(lba: number, blocks: number): Promise<void> {
    this.checkOpen('unmap');
    const { offset, length } = this.checkRange('unmap', lba, blocks);
    await this.#zeroes(offset, length, false);
  }

  async writeSame(lba: number, blocks: number, pattern: Buffer | null, opts?: WriteOptions): Promise<void> {
    this.checkOpen('writeSame');
    const p = this.checkPattern('writeSame', pattern);
    const { offset, length } = this.checkRange('writeSame', lba, blocks);
    const fua = opts?.fua === true;
    if (p === null || p.every((b) => b === 0)) return this.#zeroes(offset, length, fua);
    const chunk = Buffer.alloc(Math.min(MAX_IO, length));
    for (let at = 0; at < chunk.length; at += p.length) p.copy(chunk, at);
    const parts: Promise<void>[] = [];
    for (let at = 0; at < length; at += chunk.length) {
      const n = Math.min(chunk.length, length - at);
      parts.push(this.resource.write(offset + at, n, chunk.subarray(0, n), fua));
    }
    await Promise.all(parts);
  }

  async #zeroes(offset: number, length: number, fua: boolean): Promise<void> {
    const step = 16 * MAX_IO;
    const parts: Promise<void>[] = [];
    for (let at = 0; at < length; at += step) {
      parts.push(this.resource.write(offset + at, Math.min(step, length - at), null, fua));
    }
    await Promise.all(parts);
  }

  async isMapped(lba: number): Promise<boolean> {
    this.checkOpen('isMapped');
    const l = this.checkLba('isMapped', lba);
    const b = this.resource.backing;
    return b === null ? true : b.isMapped(l);
  }

  async resize(_blocks: number): Promise<void> {
    throw new BackstoreError(
      BackstoreErrorCode.INVALID_ARGUMENT,
      'resize: online resize of a replicated resource is not supported',
    );
  }

  /** Closes the Backstore face; the resource itself stays up (use resource.down()). */
  async close(): Promise<void> {
    this.markClosed();
  }
}
