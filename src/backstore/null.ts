/** Null backstore: discards writes, reads zeros. For measuring protocol overhead. */
import { BackstoreBase } from './common.js';
import type { Backstore, BackstoreCapabilities, WriteOptions } from './types.js';

export interface NullBackstoreOptions {
  readonly blockSize: number;
  readonly blockCount: number;
}

export class NullBackstore extends BackstoreBase implements Backstore {
  readonly kind = 'null';
  /** write() is done with its data when it settles (copied, or the I/O completed). */
  readonly doneWithWriteData = true;
  readonly description: string;
  readonly capabilities: BackstoreCapabilities = {
    directIo: false,
    thin: true,
    readOnly: false,
    persistent: false,
    volatileCache: false,
  };

  constructor(opts: NullBackstoreOptions) {
    super(opts.blockSize, opts.blockCount);
    this.description = `null (${opts.blockCount} × ${opts.blockSize} B, discards writes)`;
  }

  async read(lba: number, blocks: number): Promise<Buffer> {
    this.checkOpen('read');
    const { length } = this.checkRange('read', lba, blocks);
    return Buffer.alloc(length);
  }

  async write(lba: number, data: Buffer, _opts?: WriteOptions): Promise<void> {
    this.checkOpen('write');
    this.checkRange('write', lba, this.checkData('write', data));
  }

  async flush(): Promise<void> {
    this.checkOpen('flush');
  }

  async unmap(lba: number, blocks: number): Promise<void> {
    this.checkOpen('unmap');
    this.checkRange('unmap', lba, blocks);
  }

  async writeSame(lba: number, blocks: number, pattern: Buffer | null, _opts?: WriteOptions): Promise<void> {
    this.checkOpen('writeSame');
    this.checkPattern('writeSame', pattern);
    this.checkRange('writeSame', lba, blocks);
  }

  async isMapped(lba: number): Promise<boolean> {
    this.checkOpen('isMapped');
    this.checkLba('isMapped', lba);
    return false;
  }

  async resize(blocks: number): Promise<void> {
    this.checkOpen('resize');
    this.setBlockCount(this.checkNewSize('resize', blocks));
  }

  async close(): Promise<void> {
    this.markClosed();
  }
}
