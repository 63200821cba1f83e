// Worker thread for test/unit/shared-limits.test.ts: opens n sessions for one address, starting
// when the main thread raises the flag (so both threads run at once).
import { parentPort, workerData } from 'node:worker_threads';
import { parseClientAddress } from '../../src/policy/client-address.js';
import { SharedClientLimits } from '../../src/policy/shared-limits.js';

const { memory, n, flag } = workerData as { memory: { ints: SharedArrayBuffer; floats: SharedArrayBuffer }; n: number; flag: SharedArrayBuffer };
const limits = new SharedClientLimits(memory, { maxSessionsPerClient: 2, ratePerSecond: 0, burst: 1 });
const go = new Int32Array(flag);
parentPort!.postMessage('ready');
Atomics.wait(go, 0, 0);
for (let i = 0; i < n; i++) limits.sessionOpened(parseClientAddress('198.51.100.1'));
parentPort!.postMessage('done');
