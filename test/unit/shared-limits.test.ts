import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { ClientLimits, UNSOLICITED_ERRORS_BURST } from '../../src/policy/limits.js';
import { parseClientAddress } from '../../src/policy/client-address.js';
import { createSharedLimitMemory, SharedClientLimits } from '../../src/policy/shared-limits.js';

/** Limits shared by worker threads: one table in shared memory, the same answers as ClientLimits. */
describe('SharedClientLimits', () => {
  const options = { maxSessionsPerClient: 2, ratePerSecond: 2, burst: 4, unverifiedBytesPerSecond: 1000 };

  test('answers as ClientLimits does, on a clock both can be given', () => {
    let now = 0;
    const clock = { now: () => now };
    const local = new ClientLimits({ ...options, clock });
    const shared = new SharedClientLimits(createSharedLimitMemory(), options, () => now);
    const script: [string, (l: ClientLimits | SharedClientLimits) => unknown][] = [];
    for (let i = 0; i < 6; i++) script.push([`admit ${i}`, (l) => l.admit(parseClientAddress('10.0.0.1'))]);
    script.push(['refusal 1', (l) => l.shouldAnswerRefusal(parseClientAddress('10.0.0.1'))], ['refusal 2', (l) => l.shouldAnswerRefusal(parseClientAddress('10.0.0.1'))]);
    script.push(['unverified 600', (l) => l.spendUnverified(parseClientAddress('10.0.0.1'), 600)], ['unverified 600 again', (l) => l.spendUnverified(parseClientAddress('10.0.0.1'), 600)]);
    script.push(['open', (l) => l.sessionOpened(parseClientAddress('10.0.0.1'))], ['cap after 1', (l) => l.atSessionCap(parseClientAddress('10.0.0.1'))]);
    script.push(['open', (l) => l.sessionOpened(parseClientAddress('10.0.0.1'))], ['cap after 2', (l) => l.atSessionCap(parseClientAddress('10.0.0.1'))], ['other address', (l) => l.atSessionCap(parseClientAddress('10.0.0.2'))]);
    script.push(['total', (l) => l.totalSessions], ['close', (l) => l.sessionClosed(parseClientAddress('10.0.0.1'))], ['cap after close', (l) => l.atSessionCap(parseClientAddress('10.0.0.1'))]);
    const answers = (l: ClientLimits | SharedClientLimits): unknown[] => script.map(([, step]) => step(l));
    const a = answers(local);
    const b = answers(shared);
    assert.deepEqual(b, a);
    now += 1000; // two tokens back
    assert.deepEqual([shared.admit(parseClientAddress('10.0.0.1')), shared.admit(parseClientAddress('10.0.0.1')), shared.admit(parseClientAddress('10.0.0.1'))], ['ok', 'ok', 'rate-limited']);
    let answered = 0;
    for (let i = 0; i < UNSOLICITED_ERRORS_BURST + 10; i++) if (shared.shouldAnswerUnsolicited('::ffff:10.0.0.9')) answered++;
    assert.equal(answered, UNSOLICITED_ERRORS_BURST);
    assert.equal(shared.shouldAnswerUnsolicited('10.0.0.9'), false, 'IPv4-mapped and plain IPv4 are one address');
  });

  test('two views of one memory are one set of limits (as two workers see it)', () => {
    const memory = createSharedLimitMemory();
    const w1 = new SharedClientLimits(memory, options);
    const w2 = new SharedClientLimits(memory, options);
    const admitted = [w1, w2, w1, w2, w1, w2].map((l) => l.admit(parseClientAddress('192.0.2.7'))).filter((a) => a === 'ok').length;
    assert.equal(admitted, 4, 'one burst of 4 for the address, not 4 per worker');
    w1.sessionOpened(parseClientAddress('192.0.2.7'));
    w2.sessionOpened(parseClientAddress('192.0.2.7'));
    assert.equal(w1.atSessionCap(parseClientAddress('192.0.2.7')), true);
    assert.equal(w2.totalSessions, 2);
    w1.sessionClosed(parseClientAddress('192.0.2.7'));
    assert.equal(w2.atSessionCap(parseClientAddress('192.0.2.7')), false);
  });

  test('threads hammering one address keep an exact count', async () => {
    const memory = createSharedLimitMemory();
    // This thread and a worker thread open sessions for one address at the same time.
    const flag = new SharedArrayBuffer(4);
    const worker = new Worker(new URL('./shared-limits-worker.ts', import.meta.url), { workerData: { memory, n: 200_000, flag } });
    const local = new SharedClientLimits(memory, options);
    const messages: string[] = [];
    let wake: (() => void) | undefined;
    worker.on('message', (m: string) => {
      messages.push(m);
      wake?.();
    });
    const message = async (m: string): Promise<void> => {
      while (!messages.includes(m)) await new Promise<void>((r) => (wake = r));
    };
    await message('ready');
    Atomics.store(new Int32Array(flag), 0, 1);
    Atomics.notify(new Int32Array(flag), 0);
    for (let i = 0; i < 200_000; i++) local.sessionOpened(parseClientAddress('198.51.100.1'));
    await message('done');
    await worker.terminate();
    assert.equal(local.totalSessions, 400_000);
    for (let i = 0; i < 399_999; i++) local.sessionClosed(parseClientAddress('198.51.100.1'));
    assert.equal(local.atSessionCap(parseClientAddress('198.51.100.1')), false, 'one session left, under the cap of 2');
    local.sessionOpened(parseClientAddress('198.51.100.1'));
    assert.equal(local.atSessionCap(parseClientAddress('198.51.100.1')), true, 'exactly two now');
  });
});
