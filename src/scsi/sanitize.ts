/**
 * SANITIZE (SBC-4 §5.30, §4.11): OVERWRITE, BLOCK ERASE (thin LUs: every block deallocated, reads
 * zeros), EXIT FAILURE MODE. CRYPTO ERASE does not apply (no backstore encrypts its data), so it is
 * not supported: REPORT SUPPORTED OPERATION CODES leaves it out and dispatch answers INVALID FIELD
 * IN CDB for that service action.
 *
 * A sanitize runs in the background of the LU: it waits for the tasks already in the task set,
 * then the LU is in the sanitize state until it ends — every command except the few SBC-4 allows
 * ends with NOT READY / SANITIZE IN PROGRESS (04/1B), and no task management function, reset or
 * I_T nexus loss stops it (IMMED=0: the SANITIZE completes when it does). A failed sanitize leaves
 * the LU in failure mode: medium access ends with MEDIUM ERROR / SANITIZE COMMAND FAILED (31/03)
 * until a sanitize succeeds, or EXIT FAILURE MODE when the failed one had AUSE=1.
 *
 * OVERWRITE writes at most `sanitizeRate` bytes per second (LU option; 8 MiB/s by default, 0 =
 * unthrottled) so a sanitize does not starve the other LUs sharing the disk.
 */
import { type CommandContext, GOOD, io, type Outcome } from './command.js';
import type { LogicalUnit } from './lu.js';
import { Asc, check, invalidField, SenseKey } from './sense.js';
import { ScsiStatus, TaskAttribute } from './types.js';

export const SanitizeAction = {
  OVERWRITE: 0x01,
  BLOCK_ERASE: 0x02,
  CRYPTO_ERASE: 0x03,
  EXIT_FAILURE_MODE: 0x1f,
} as const;

export const DEFAULT_SANITIZE_RATE = 8 * 1024 * 1024;
const CHUNK_BYTES = 1024 * 1024;

/** Opcodes (and opcode/SA) a LU answers while sanitizing (SBC-4 §4.11.2). */
const ALLOWED_WHILE_SANITIZING = new Set<string>(['12', '03', 'a0', '4d', 'a3/0c', 'a3/0d', 'a3/0a']);

export function allowedWhileSanitizing(opcode: number, sa: number | undefined): boolean {
  const op = opcode.toString(16).padStart(2, '0');
  return (
    ALLOWED_WHILE_SANITIZING.has(op) ||
    (sa !== undefined && ALLOWED_WHILE_SANITIZING.has(`${op}/${sa.toString(16).padStart(2, '0')}`))
  );
}

export const sanitizeInProgress = () =>
  check(SenseKey.NOT_READY, Asc.LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS);
export const sanitizeFailed = () => check(SenseKey.MEDIUM_ERROR, Asc.SANITIZE_COMMAND_FAILED);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Starts a sanitize operation on the LU; the promise settles when it ends (never rejects). */
function start(lu: LogicalUnit, ause: boolean, op: () => Promise<void>): Promise<boolean> {
  const admission = lu.scheduler.admit(TaskAttribute.SIMPLE, { lba: 0, blocks: lu.blockCount, write: true });
  lu.sanitizeProgress = 0;
  const job = (async (): Promise<boolean> => {
    try {
      if (admission.ready) await admission.ready;
      await op();
      lu.sanitizeFailure = undefined;
      return true;
    } catch {
      lu.sanitizeFailure = { ause };
      return false;
    } finally {
      admission.release();
      lu.sanitizing = undefined;
    }
  })();
  lu.sanitizing = job;
  return job;
}

async function overwrite(lu: LogicalUnit, pattern: Buffer, passes: number, invert: boolean): Promise<void> {
  const bs = lu.blockSize;
  const block = Buffer.alloc(bs);
  for (let i = 0; i < bs; i += pattern.length) pattern.copy(block, i, 0, Math.min(pattern.length, bs - i));
  const inverted = Buffer.from(block.map((b) => b ^ 0xff));
  const chunkBlocks = Math.max(1, Math.floor(CHUNK_BYTES / bs));
  const total = lu.blockCount * passes;
  const rate = lu.config.sanitizeRate ?? DEFAULT_SANITIZE_RATE;
  const started = Date.now();
  let done = 0;
  for (let pass = 0; pass < passes; pass++) {
    // INVERT: the pattern is inverted between consecutive passes; the last pass writes it as given.
    const pat = invert && (passes - 1 - pass) % 2 === 1 ? inverted : block;
    for (let lba = 0; lba < lu.blockCount; lba += chunkBlocks) {
      const n = Math.min(chunkBlocks, lu.blockCount - lba);
      await io('write', () => lu.backstore.writeSame(lba, n, pat));
      done += n;
      lu.sanitizeProgress = Math.floor((done / total) * 65536) & 0xffff;
      if (rate > 0) {
        const due = started + ((done * bs) / rate) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await sleep(wait);
      }
    }
  }
  await io('write', () => lu.backstore.flush());
}

async function blockErase(lu: LogicalUnit): Promise<void> {
  const step = 1 << 20;
  for (let lba = 0; lba < lu.blockCount; lba += step) {
    const n = Math.min(step, lu.blockCount - lba);
    await io('write', () => lu.backstore.unmap(lba, n));
    lu.sanitizeProgress = Math.floor(((lba + n) / lu.blockCount) * 65536) & 0xffff;
  }
  await io('write', () => lu.backstore.flush());
}

export function sanitize(action: number) {
  return (ctx: CommandContext): Outcome => {
    const { lu, cdb } = ctx;
    const immed = ((cdb[1] ?? 0) & 0x80) !== 0;
    const ause = ((cdb[1] ?? 0) & 0x20) !== 0;
    const length = cdb.readUInt16BE(7);
    const p = ctx.cmd.dataOut;
    let op: () => Promise<void>;
    switch (action) {
      case SanitizeAction.OVERWRITE: {
        const bs = lu.blockSize;
        if (length < 5 || length > bs + 4) throw invalidField(7);
        if (p.length < length) throw invalidField(7);
        const passes = (p[0] ?? 0) & 0x1f;
        const invert = ((p[0] ?? 0) & 0x80) !== 0;
        const test = ((p[0] ?? 0) >> 5) & 0x03;
        const patLen = p.readUInt16BE(2);
        // libiscsi and SBC-4 differ on the ASC here; the parameter list checks are reported as
        // INVALID FIELD IN CDB (the parameter list length in the CDB does not fit the pattern).
        if (passes === 0 || test !== 0 || patLen === 0 || patLen > bs || patLen + 4 > length)
          throw invalidField(7);
        const pattern = Buffer.from(p.subarray(4, 4 + patLen));
        op = () => overwrite(lu, pattern, passes, invert);
        break;
      }
      case SanitizeAction.BLOCK_ERASE:
        if (length !== 0) throw invalidField(7);
        op = () => blockErase(lu);
        break;
      default: {
        // EXIT FAILURE MODE
        if (length !== 0) throw invalidField(7);
        if (lu.sanitizeFailure && !lu.sanitizeFailure.ause) throw sanitizeFailed();
        lu.sanitizeFailure = undefined;
        return GOOD;
      }
    }
    const job = start(lu, ause, op);
    if (immed) return GOOD;
    // IMMED=0: the command ends with the operation; an abort (TMF, reset, nexus loss) ends the
    // command at once but not the sanitize, which goes on in the background.
    const signal = ctx.cmd.signal;
    return {
      run: async () => {
        let timer: ReturnType<typeof setInterval> | undefined;
        const aborted = new Promise<'aborted'>((resolve) => {
          timer = setInterval(() => {
            if (signal?.aborted) resolve('aborted');
          }, 50);
        });
        const outcome = await Promise.race([job, aborted]).finally(() => clearInterval(timer));
        if (outcome === 'aborted') return { status: ScsiStatus.TASK_ABORTED };
        if (!outcome) throw sanitizeFailed();
        return GOOD;
      },
    };
  };
}
