/**
 * One pid/lock file per data directory, checked for liveness: a daemon killed with SIGKILL leaves
 * its file behind, and the next start sees that the pid is gone (or is now another program) and
 * takes the file over, instead of refusing to start as tgtd does with its stale lock.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';

export class AlreadyRunningError extends Error {
  override readonly name = 'AlreadyRunningError';
  readonly pid: number;
  constructor(file: string, pid: number) {
    super(
      `lunar is already running with this data directory (pid ${pid}, ${file}); stop it with \`kill ${pid}\` or use another --data`,
    );
    this.pid = pid;
  }
}

/** Whether `pid` is a live process whose command line mentions `marker`. */
export function isLiveProcess(pid: number, marker = 'lunar'): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(marker);
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

/** Takes the pid file or throws {@link AlreadyRunningError}; returns a release function. */
export function acquirePidFile(file: string): () => void {
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number.parseInt(readFileSafe(file).trim(), 10);
      if (pid !== process.pid && isLiveProcess(pid)) throw new AlreadyRunningError(file, pid);
      try {
        unlinkSync(file); // stale: the process that wrote it is gone
      } catch {
        // raced with another starter: try again
      }
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    return () => {
      try {
        if (Number.parseInt(readFileSafe(file), 10) === process.pid) unlinkSync(file);
      } catch {
        // already gone
      }
    };
  }
  throw new Error(`cannot take the pid file ${file}: another lunar keeps starting with this data directory`);
}

function readFileSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
