/** A tiny in-memory ScsiTarget for transport tests: READ(10)/WRITE(10), TUR, INQUIRY, a slow opcode. */
import type {
  Nexus,
  ScsiCommand,
  ScsiResult,
  ScsiTarget,
  TmfFunction,
  TmfResponse,
} from '../../src/scsi/types.js';

export class FakeScsi implements ScsiTarget {
  readonly blockSize = 512;
  readonly disk: Buffer;
  readonly created: string[] = [];
  readonly lost: string[] = [];
  readonly tmfs: { fn: number; lun: number }[] = [];
  readonly executed: ScsiCommand[] = [];
  /** Resolvers of commands held by opcode 0xC0 (tests release them). */
  readonly held: ((r: ScsiResult) => void)[] = [];

  constructor(blocks = 2048) {
    this.disk = Buffer.alloc(blocks * this.blockSize);
  }

  luns(): readonly number[] {
    return [0];
  }
  nexusCreated(n: Nexus): void {
    this.created.push(n.key);
  }
  nexusLost(n: Nexus): void {
    this.lost.push(n.key);
  }
  taskManagement(fn: TmfFunction, _nexus: Nexus, lun: number): TmfResponse {
    this.tmfs.push({ fn, lun });
    return 0;
  }

  async execute(cmd: ScsiCommand): Promise<ScsiResult> {
    this.executed.push(cmd);
    const cdb = cmd.cdb;
    const bad = (asc: number): ScsiResult => {
      const sense = Buffer.alloc(18);
      sense[0] = 0x70;
      sense[2] = 0x05;
      sense[7] = 10;
      sense[12] = asc;
      return { status: 0x02, sense };
    };
    if (cmd.lun !== 0) return bad(0x25);
    switch (cdb[0]) {
      case 0x00:
        return { status: 0 };
      case 0x12: {
        const d = Buffer.alloc(36);
        d[4] = 31;
        d.write('LUNAR   FAKE', 8);
        return { status: 0, dataIn: d.subarray(0, Math.min(36, cdb.readUInt16BE(3))) };
      }
      case 0x28: {
        const lba = cdb.readUInt32BE(2);
        const n = cdb.readUInt16BE(7);
        if ((lba + n) * this.blockSize > this.disk.length) return bad(0x21);
        return { status: 0, dataIn: Buffer.from(this.disk.subarray(lba * 512, (lba + n) * 512)) };
      }
      case 0x2a: {
        const lba = cdb.readUInt32BE(2);
        const n = cdb.readUInt16BE(7);
        if ((lba + n) * this.blockSize > this.disk.length) return bad(0x21);
        const want = n * 512;
        cmd.dataOut.copy(this.disk, lba * 512, 0, Math.min(want, cmd.dataOut.length));
        return { status: 0, dataOutWanted: want, dataOutReusable: true }; // copied into the disk
      }
      case 0xc0:
        return new Promise((res) => {
          this.held.push(res);
          const poll = setInterval(() => {
            if (cmd.signal?.aborted) {
              clearInterval(poll);
              res({ status: 0x40 });
            }
          }, 5);
          poll.unref();
        });
      default:
        return bad(0x20);
    }
  }
}
