#!/usr/bin/env node
// Launcher, in CommonJS on purpose: Node 20's ESM loader starts libuv's thread pool before the
// first line of an ESM entry runs, so UV_THREADPOOL_SIZE must be set here, before any import.
// The pool carries block I/O when io_uring is unavailable (docs/native.md).
'use strict';
process.env.UV_THREADPOOL_SIZE = process.env.UV_THREADPOOL_SIZE || '64';
import('../dist/src/cli/lunar.js').catch((err) => {
  process.stderr.write(`lunar: cannot start (${err && err.message}); did \`npm ci\` build dist/?\n`);
  process.exit(1);
});
