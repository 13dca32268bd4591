#!/usr/bin/env node
// Builds the N-API addon with node-gyp from binding.gyp, offline, against local Node headers.
// Run by `npm ci` (the package's install script). Headers: /usr/include/node (Debian nodejs-dev
// or the image's own) when present, else node-gyp's default lookup. If the build fails the
// pure-TS fallbacks in src/native/ still work; we say so loudly, and under CI=true we fail.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
let gyp;
try {
  gyp = join(dirname(require.resolve('node-gyp/package.json')), 'bin', 'node-gyp.js');
} catch {
  console.warn('lunar: node-gyp is not installed (production install?); using the pure-TS fallbacks');
  process.exit(0);
}
const args = [gyp, 'rebuild', '--jobs=max'];
const nodedir = process.env.npm_config_nodedir || (existsSync('/usr/include/node/node.h') ? '/usr' : '');
if (nodedir) args.push(`--nodedir=${nodedir}`);
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (r.status !== 0) {
  const msg = 'lunar: the native addon did not build; lunar will run on the pure-TS fallbacks (slower)';
  if (process.env.CI === 'true' || process.argv.includes('--force')) {
    console.error(msg);
    process.exit(1);
  }
  console.warn(msg);
}
