import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clientRepeats, slowerThanAllowed, storeWaitMs, type TraceEntry } from './lib.js';

/** Trace entries from printed trace lines ("<ms> ms <dir> <packet> <fate>"), as the suite prints them. */
const entries = (lines: readonly string[]): TraceEntry[] =>
  lines.map((line) => {
    const w = line.trim().split(/\s+/);
    return { ms: Number(w[0]), dir: w[2] as 'up' | 'down', packet: w.slice(3, -1).join(' '), fate: w[w.length - 1]! };
  });

/** The loss suite's comparison rule on its own (seed 808 of curl's download, as the relay traced it). */
const trace = entries([
  '     25 ms up   RRQ          dropped',
  '   5231 ms up   RRQ          forwarded',
  '   5236 ms down OACK         forwarded',
  '   5236 ms up   ACK 0        forwarded',
  '   5236 ms down DATA 1       forwarded',
  '   5236 ms up   ACK 1        forwarded',
  '   5240 ms down DATA 1       forwarded',
  '   5241 ms up   ACK 1        forwarded',
]);

test('client repeats: packets the client sent again, not the server', () => {
  assert.equal(clientRepeats(trace), 2);
  assert.equal(clientRepeats([]), 0);
});

test("curl's whole-second timer: one second of slack for each packet it sent again, other clients none", () => {
  // curl repeated its lost RRQ after 5.2 s against tftpd-hpa and 6.2 s against the gateway.
  assert.equal(slowerThanAllowed(6300, 5300, 'curl', 1), false);
  assert.equal(slowerThanAllowed(6300, 5300, 'curl', 0), true);
  assert.equal(slowerThanAllowed(6300, 5300, 'atftp', 1), true);
  assert.equal(slowerThanAllowed(5800, 5300), false, '× 1.05 + 0.5 s for any client');
});

test("an upload's wait for its store: from the final DATA's arrival to the server's first ACK of it", () => {
  const upload = entries([
    '      3 ms up   WRQ          forwarded',
    '     20 ms down OACK         forwarded',
    '     21 ms up   DATA 1       forwarded',
    '     22 ms down ACK 1        forwarded',
    '     23 ms up   DATA 2       dropped',
    '   5023 ms up   DATA 2       forwarded',
    '   5310 ms down ACK 2        dropped',
    '   5400 ms up   DATA 2       forwarded',
    '   5401 ms down ACK 2        forwarded',
  ]);
  assert.equal(storeWaitMs(upload, 'put'), 287, 'lost copies before it count as loss recovery; a lost final ACK after it too');
  assert.equal(storeWaitMs(upload, 'get'), 0);
  assert.equal(storeWaitMs(upload.slice(0, 6), 'put'), 0, 'never acknowledged: nothing to take off');
});
