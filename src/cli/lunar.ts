#!/usr/bin/env node
// Entry point. The libuv thread pool carries the block I/O (see docs/native.md): size it before
// anything can touch it, then load the real CLI.
process.env['UV_THREADPOOL_SIZE'] ??= '64';
const { main } = await import('./main.js');
process.exitCode = await main(process.argv.slice(2));
