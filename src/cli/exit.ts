/**
 * Exit codes of every lunar command (docs/cli.md). Scripts can rely on them:
 * 0 ok; 1 runtime failure; 2 usage or invalid input/configuration; 3 conflict (already exists,
 * busy — initiators connected —, already running, address in use); 4 not found; 5 daemon unreachable.
 */
export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, CONFLICT: 3, NOT_FOUND: 4, UNREACHABLE: 5 } as const;

export const EXIT_HELP = `EXIT STATUS
  0  success
  1  runtime failure
  2  usage error, invalid input or configuration
  3  conflict: already exists, busy (initiators connected), already running, address in use
  4  not found (target, LUN, account, ACL entry, session)
  5  the daemon cannot be reached (not running, wrong --data/--socket)`;

/** A reader that stops early (`| head`, `| grep -q`) must not turn into a stack trace. */
export function quietOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
      throw err;
    });
  }
}
