#!/usr/bin/env node
// tgt-admin front end launcher (see bin/lunar.cjs for why this is CommonJS).
'use strict';
process.env.UV_THREADPOOL_SIZE = process.env.UV_THREADPOOL_SIZE || '64';
Promise.all([import('../dist/src/cli/exit.js'), import('../dist/src/cli/tgt-admin.js')]).then(async ([exit, m]) => {
  exit.quietOnClosedPipe();
  process.exitCode = await m.tgtAdminMain(process.argv.slice(2));
});
