import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Opcode, type Packet } from '../../src/tftp/protocol/packet.js';
import { ackBytes, FakeNetwork, MemorySink, MemorySource, mulberry32, VirtualClock } from '../support/fake/index.js';

describe('VirtualClock', () => {
  test('fires timers in time order, FIFO among equals, and counts pending ones by tag', async () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    const view = clock.tagged('session');
    view.setTimeout(() => fired.push('b@20'), 20);
    clock.setTimeout(() => fired.push('a@10'), 10);
    view.setTimeout(() => fired.push('c@20'), 20);
    const cancelled = clock.setTimeout(() => fired.push('never'), 15);
    assert.equal(clock.pending(), 4);
    assert.equal(clock.pending('session'), 2);
    clock.clearTimeout(cancelled);
    clock.clearTimeout(cancelled); // idempotent
    assert.equal(clock.pending(), 3);
    await clock.advance(15);
    assert.deepEqual(fired, ['a@10']);
    assert.equal(clock.now(), 15);
    await clock.run(100);
    assert.deepEqual(fired, ['a@10', 'b@20', 'c@20']);
    assert.equal(clock.now(), 100);
    assert.equal(clock.pending('session'), 0);
  });

  test('promise chains settle between timers', async () => {
    const clock = new VirtualClock();
    const seen: number[] = [];
    clock.setTimeout(() => {
      void Promise.resolve()
        .then(() => Promise.resolve())
        .then(() => seen.push(clock.now()));
    }, 5);
    clock.setTimeout(() => seen.push(-clock.now()), 6);
    await clock.runUntilIdle();
    assert.deepEqual(seen, [5, -6]);
  });

  test('runUntilIdle refuses to spin forever', async () => {
    const clock = new VirtualClock();
    const tick = (): void => void clock.setTimeout(tick, 1000);
    tick();
    await assert.rejects(clock.runUntilIdle(60_000), /still busy/);
  });
});

describe('FakeNetwork', () => {
  function blast(seed: number, config: { loss?: number; duplicate?: number; reorder?: number }) {
    const clock = new VirtualClock();
    const net = new FakeNetwork(clock, { seed, toServer: config });
    const got: number[] = [];
    net.connect({ handle: (p: Packet) => p.opcode === Opcode.ACK && got.push(p.block) }, undefined);
    for (let i = 0; i < 2000; i++) net.clientSend(ackBytes(i));
    return { clock, net, got };
  }

  test('same seed, same fate; different seed, different fate', async () => {
    const a = blast(9, { loss: 0.2, duplicate: 0.1, reorder: 0.1 });
    const b = blast(9, { loss: 0.2, duplicate: 0.1, reorder: 0.1 });
    const c = blast(10, { loss: 0.2, duplicate: 0.1, reorder: 0.1 });
    await Promise.all([a.clock.runUntilIdle(), b.clock.runUntilIdle(), c.clock.runUntilIdle()]);
    assert.deepEqual(a.got, b.got);
    assert.notDeepEqual(a.got, c.got);
  });

  test('loss, duplication and reordering happen at about the configured rates', async () => {
    const { clock, net, got } = blast(3, { loss: 0.2, duplicate: 0.1, reorder: 0.3 });
    await clock.runUntilIdle();
    const lost = net.trace.filter((e) => e.fate === 'lost').length;
    const dup = net.trace.filter((e) => e.fate === 'duplicated').length;
    assert.ok(lost > 300 && lost < 500, `lost ${lost}`);
    assert.ok(dup > 120 && dup < 240, `dup ${dup}`);
    assert.equal(got.length, 2000 - lost + dup);
    let inversions = 0;
    for (let i = 1; i < got.length; i++) if (got[i]! < got[i - 1]!) inversions++;
    assert.ok(inversions > 0, 'nothing was reordered');
  });

  test('a perfect link delivers everything once, in order, after the latency', async () => {
    const { clock, got } = blast(1, {});
    await clock.run(4);
    assert.equal(got.length, 0);
    await clock.runUntilIdle();
    assert.deepEqual(got, Array.from({ length: 2000 }, (_, i) => i & 0xffff));
  });

  test('mulberry32 is deterministic and roughly uniform', () => {
    const r1 = mulberry32(42);
    const r2 = mulberry32(42);
    let sum = 0;
    for (let i = 0; i < 10_000; i++) {
      const x = r1();
      assert.equal(x, r2());
      assert.ok(x >= 0 && x < 1);
      sum += x;
    }
    assert.ok(Math.abs(sum / 10_000 - 0.5) < 0.02);
  });
});

describe('storage fakes', () => {
  test('MemorySource: slices only after load when delayed, clipped at the end', async () => {
    const clock = new VirtualClock();
    const src = new MemorySource(Buffer.from('0123456789'), clock, { loadDelayMs: 50, rangeSize: 4 });
    assert.equal(src.slice(0, 4), undefined);
    const loaded = src.load(0, 6);
    await clock.run(49);
    assert.equal(src.slice(0, 4), undefined);
    await clock.run(50);
    await loaded;
    assert.deepEqual(Buffer.concat(src.slice(2, 4)!), Buffer.from('2345'));
    assert.equal(src.slice(6, 4), undefined);
    assert.deepEqual(src.slice(10, 4), []);
  });

  test('MemorySink: backpressure promises settle on the virtual clock', async () => {
    const clock = new VirtualClock();
    const sink = new MemorySink(clock, { writeDelayMs: 30, finishDelayMs: 10 });
    let settled = false;
    void sink.write(Buffer.from('ab'))!.then(() => (settled = true));
    await clock.run(29);
    assert.equal(settled, false);
    await clock.run(30);
    assert.equal(settled, true);
    const f = sink.finish();
    await clock.run(40);
    await f;
    assert.equal(sink.finishedAt, 40);
    assert.deepEqual(sink.data, Buffer.from('ab'));
  });
});
