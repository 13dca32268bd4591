#!/usr/bin/env node
// Entry point. The libuv thread pool carries the block I/O (see docs/native.md): size it before
// anything can touch it, then load the real CLI.
process.env['UV_THREADPOOL_SIZE'] ??= '64';
// `lunar … | head` / `| grep -q`: a closed pipe ends the output quietly, as for other tools.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}
const { main } = await import('./main.js');
process.exitCode = await main(process.argv.slice(2));
