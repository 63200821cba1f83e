import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RetransmitTimer } from '../../src/tftp/session/rto.js';
import type { RetransmitPolicy } from '../../src/tftp/session/types.js';

const policy: RetransmitPolicy = { initialMs: 1000, minMs: 100, maxMs: 5000, maxRetries: 6 };

describe('RetransmitTimer', () => {
  test('pinned by the client: fixed whatever happens', () => {
    const t = new RetransmitTimer(policy, 3000);
    assert.equal(t.timeoutMs, 3000);
    t.sample(10);
    assert.equal(t.timeoutMs, 3000);
    t.onTimeout();
    t.onTimeout();
    assert.equal(t.timeoutMs, 3000);
    t.onProgress();
    assert.equal(t.timeoutMs, 3000);
  });

  test('a pinned value outside min/max is still honoured (the client asked for it)', () => {
    assert.equal(new RetransmitTimer(policy, 255_000).timeoutMs, 255_000);
    assert.equal(new RetransmitTimer(policy, 1000).timeoutMs, 1000);
  });

  test('initial value before any sample', () => {
    assert.equal(new RetransmitTimer(policy, undefined).timeoutMs, 1000);
  });

  test('backoff doubles on each timeout and is capped by maxMs', () => {
    const t = new RetransmitTimer(policy, undefined);
    const seen: number[] = [];
    for (let i = 0; i < 6; i++) {
      t.onTimeout();
      seen.push(t.timeoutMs);
    }
    assert.deepEqual(seen, [2000, 4000, 5000, 5000, 5000, 5000]);
  });

  test('the backoff grows up to maxMs alone (no fixed multiplier cap keeps gaps under a client timer)', () => {
    const t = new RetransmitTimer({ initialMs: 10, minMs: 10, maxMs: 16_000, maxRetries: 50 }, undefined);
    const seen: number[] = [];
    for (let i = 0; i < 13; i++) {
      t.onTimeout();
      seen.push(t.timeoutMs);
    }
    assert.deepEqual(seen, [20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 16000, 16000, 16000]);
  });

  test('first sample: SRTT = R, RTTVAR = R/2, RTO = R + 4·RTTVAR', () => {
    const t = new RetransmitTimer(policy, undefined);
    t.sample(200);
    assert.equal(t.timeoutMs, 600);
  });

  test('a sample ends the backoff', () => {
    const t = new RetransmitTimer(policy, undefined);
    t.onTimeout();
    t.onTimeout();
    assert.equal(t.timeoutMs, 4000);
    t.sample(200);
    assert.equal(t.timeoutMs, 600);
  });

  test('onProgress ends the backoff without a sample', () => {
    const t = new RetransmitTimer(policy, undefined);
    t.sample(200);
    t.onTimeout();
    assert.equal(t.timeoutMs, 1200);
    t.onProgress();
    assert.equal(t.timeoutMs, 600);
  });

  test('adaptive: converges toward steady samples', () => {
    const t = new RetransmitTimer(policy, undefined);
    for (let i = 0; i < 200; i++) t.sample(300);
    // SRTT → 300, RTTVAR → 0, so the RTO approaches SRTT plus the 10 ms floor on the variance term.
    assert.ok(t.timeoutMs >= 300 && t.timeoutMs <= 311, String(t.timeoutMs));
  });

  test('adaptive: follows a change in the round trip, in both directions', () => {
    const t = new RetransmitTimer(policy, undefined);
    for (let i = 0; i < 200; i++) t.sample(150);
    const low = t.timeoutMs;
    for (let i = 0; i < 200; i++) t.sample(800);
    const high = t.timeoutMs;
    assert.ok(low < 170, String(low));
    assert.ok(high > 790 && high < 830, String(high));
    // Each sample moves the estimate only part of the way (smoothing).
    // One outlier widens the timeout (variance); a few normal samples bring it back down.
    const t2 = new RetransmitTimer(policy, undefined);
    for (let i = 0; i < 200; i++) t2.sample(150);
    t2.sample(800);
    const spiked = t2.timeoutMs;
    assert.ok(spiked > low, String(spiked));
    t2.sample(150);
    assert.ok(t2.timeoutMs < spiked, String(t2.timeoutMs));
    for (let i = 0; i < 100; i++) t2.sample(150);
    assert.ok(t2.timeoutMs < 170, String(t2.timeoutMs));
    for (let i = 0; i < 200; i++) t.sample(150);
    assert.ok(t.timeoutMs < 170, String(t.timeoutMs));
  });

  test('variance widens the timeout on a jittery path', () => {
    const steady = new RetransmitTimer(policy, undefined);
    const jittery = new RetransmitTimer(policy, undefined);
    for (let i = 0; i < 100; i++) {
      steady.sample(300);
      jittery.sample(i % 2 === 0 ? 150 : 450);
    }
    assert.ok(jittery.timeoutMs > steady.timeoutMs + 200, `${jittery.timeoutMs} vs ${steady.timeoutMs}`);
  });

  test('bounded below by minMs and above by maxMs', () => {
    const fast = new RetransmitTimer(policy, undefined);
    for (let i = 0; i < 100; i++) fast.sample(1);
    assert.equal(fast.timeoutMs, 100);
    const slow = new RetransmitTimer(policy, undefined);
    for (let i = 0; i < 100; i++) slow.sample(20_000);
    assert.equal(slow.timeoutMs, 5000);
    fast.onTimeout();
    assert.equal(fast.timeoutMs, 200); // backoff applies to the bounded value
  });
});
