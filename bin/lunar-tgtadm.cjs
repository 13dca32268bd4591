#!/usr/bin/env node
// tgtadm front end launcher (see bin/lunar.cjs for why this is CommonJS).
'use strict';
process.env.UV_THREADPOOL_SIZE = process.env.UV_THREADPOOL_SIZE || '64';
Promise.all([import('../dist/src/cli/exit.js'), import('../dist/src/cli/tgtadm.js')]).then(([exit, m]) => {
  exit.quietOnClosedPipe();
  return m.runTgtadmBin();
});
