import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Opcode, type Packet } from '../../src/tftp/protocol/packet.js';
import {
  ackBytes,
  errorBytes,
  firstMatches,
  isAck,
  isData,
  isOack,
  readHarness,
  seededBytes,
  storageError,
  TEST_POLICY,
  type PacketHandler,
  type ReadHarness,
  type VirtualClock,
} from '../support/fake/index.js';

/** Blocks the session put on the wire, in order (absolute numbers are not on the wire: 16-bit). */
function dataSent(h: ReadHarness): number[] {
  return h.net.fromServer(Opcode.DATA).map((e) => (e.packet as Extract<Packet, { opcode: Opcode.DATA }>).block);
}

function assertCleanEnd(h: ReadHarness): void {
  assert.equal(h.ends.length, 1, `onEnd called ${h.ends.length} times`);
  assert.equal(h.clock.pending('session'), 0, 'session timers left behind');
  assert.equal(h.net.sentAfterEnd, 0, 'session sent packets after it ended');
  assert.equal(h.session.isEnded, true);
  assert.ok(h.source.closeCalls >= 1, 'source not closed');
  assert.equal(h.source.slicesAfterClose, 0, 'source read after close');
}

function assertOk(h: ReadHarness, data: Buffer): void {
  assertCleanEnd(h);
  assert.equal(h.ends[0]!.result, 'ok', JSON.stringify(h.ends[0]));
  assert.equal(h.client.state, 'done');
  assert.ok(h.client.data.equals(data), `client got ${h.client.data.length} bytes, want ${data.length}`);
  assert.equal(h.ends[0]!.errorSent, undefined);
}

async function transfer(h: ReadHarness): Promise<ReadHarness> {
  h.start();
  await h.runToIdle();
  return h;
}

describe('ReadSession: basic transfers', () => {
  test('a small file without options (RFC 1350)', async () => {
    const data = seededBytes(1, 1300);
    const h = await transfer(readHarness(data));
    assertOk(h, data);
    assert.equal(h.oack.size, 0);
    assert.deepEqual(dataSent(h), [1, 2, 3]);
    assert.equal(h.ends[0]!.blocks, 3);
    assert.equal(h.ends[0]!.bytes, 1300);
    assert.equal(h.ends[0]!.retransmits, 0);
    assert.equal(h.ends[0]!.timeouts, 0);
  });

  test('with an OACK: blksize, windowsize and tsize', async () => {
    const data = seededBytes(2, 10_000);
    const h = await transfer(readHarness(data, { request: { tsize: '0', blksize: '1024', windowsize: '4' } }));
    assertOk(h, data);
    assert.deepEqual([...h.client.oack!], [
      ['tsize', '10000'],
      ['blksize', '1024'],
      ['windowsize', '4'],
    ]);
    assert.equal(h.net.sent('toClient')[0], 'OACK');
    assert.deepEqual(dataSent(h), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // The client ACKs once per window (and the last block).
    assert.deepEqual(h.net.sent('toServer'), ['ACK 0', 'ACK 4', 'ACK 8', 'ACK 10']);
  });

  test('a file whose size is a multiple of blksize ends with an empty DATA', async () => {
    const data = seededBytes(3, 1024);
    const h = await transfer(readHarness(data));
    assertOk(h, data);
    const datas = h.net.fromServer(Opcode.DATA);
    assert.deepEqual(datas.map((e) => e.bytes.length - 4), [512, 512, 0]);
  });

  test('an empty file is one empty DATA', async () => {
    const h = await transfer(readHarness(Buffer.alloc(0)));
    assertOk(h, Buffer.alloc(0));
    assert.deepEqual(h.net.sent('toClient'), ['DATA 1']);
    assert.equal(h.net.fromServer(Opcode.DATA)[0]!.bytes.length, 4);
  });

  test('a source of unknown size (netascii) ends at the first short block', async () => {
    const data = seededBytes(4, 2048);
    const h = await transfer(readHarness(data, { source: { unknownSize: true }, request: { windowsize: '3' } }));
    assertOk(h, data);
    assert.deepEqual(dataSent(h), [1, 2, 3, 4, 5]);
  });

  test('multi-segment slices are sent as one datagram', async () => {
    const data = seededBytes(5, 3000);
    const h = await transfer(readHarness(data, { source: { splitSegments: true } }));
    assertOk(h, data);
    assert.equal(h.net.fromServer(Opcode.DATA)[0]!.bytes.length, 516);
  });

  test('blksize 8 (the minimum) works', async () => {
    const data = seededBytes(6, 100);
    const h = await transfer(readHarness(data, { request: { blksize: '8' } }));
    assertOk(h, data);
    assert.equal(dataSent(h).length, 13);
  });

  test('the window is capped by bytes in flight', async () => {
    const data = seededBytes(7, 64 * 1024);
    const h = readHarness(data, { request: { blksize: '1024', windowsize: '64' }, maxBytesInFlight: 8 * 1024 });
    h.start();
    await h.clock.run(2); // OACK on its way
    await h.clock.run(12); // ACK 0 arrived, first burst sent
    assert.equal(dataSent(h).length, 8);
    await h.runToIdle();
    assertOk(h, data);
  });

  test('storage loads asynchronously (virtual delay) without spurious retransmissions', async () => {
    const data = seededBytes(8, 20_000);
    const h = await transfer(
      readHarness(data, { request: { blksize: '512', windowsize: '4' }, source: { loadDelayMs: 30, rangeSize: 2048 } }),
    );
    assertOk(h, data);
    assert.equal(h.ends[0]!.retransmits, 0);
    assert.ok(h.source.loads >= 10);
    assert.ok(h.source.releasedTo > 0, 'acknowledged bytes never released');
  });

  test('storage slower than the client timeout: the client re-ACKs, the session just waits', async () => {
    const data = seededBytes(9, 4096);
    const h = await transfer(readHarness(data, { source: { loadDelayMs: 1500, rangeSize: 1024 } }));
    assertOk(h, data);
    assert.equal(h.ends[0]!.timeouts, 0);
  });
});

describe('ReadSession: loss', () => {
  test('lost first DATA: resent after the timeout', async () => {
    const data = seededBytes(10, 1500);
    const h = await transfer(readHarness(data, { toClient: { drop: firstMatches(isData(1)) } }));
    assertOk(h, data);
    assert.deepEqual(dataSent(h), [1, 1, 2, 3]);
    assert.equal(h.ends[0]!.timeouts, 1);
    assert.equal(h.ends[0]!.retransmits, 1);
    const sends = h.net.fromServer(Opcode.DATA);
    assert.equal(sends[1]!.time - sends[0]!.time, TEST_POLICY.initialMs);
  });

  test('lost OACK: resent when the client repeats its request, and the transfer proceeds', async () => {
    const data = seededBytes(11, 700);
    const h = await transfer(readHarness(data, { request: { blksize: '1024' }, toClient: { drop: firstMatches(isOack) } }));
    assertOk(h, data);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'OACK', 'DATA 1']);
    assert.equal(h.net.fromClient(Opcode.RRQ).length, 1, 'the second OACK answers the repeated RRQ');
  });

  test('lost ACK 0: no second OACK (atftp aborts on one); the client resends ACK 0', async () => {
    const data = seededBytes(12, 700);
    const h = await transfer(readHarness(data, { request: { blksize: '1024' }, toServer: { drop: firstMatches(isAck(0)) } }));
    assertOk(h, data);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'DATA 1']);
    assert.deepEqual(h.net.sent('toServer'), ['ACK 0', 'ACK 0', 'ACK 1']);
  });

  test('lost last ACK: the last DATA is resent and the lingering client ACKs it again', async () => {
    const data = seededBytes(13, 1100);
    const h = await transfer(readHarness(data, { toServer: { drop: firstMatches(isAck(3)) } }));
    assertOk(h, data);
    assert.deepEqual(dataSent(h), [1, 2, 3, 3]);
    assert.deepEqual(h.net.sent('toServer'), ['ACK 1', 'ACK 2', 'ACK 3', 'ACK 3']);
  });

  test('lost ACK in the middle of a window-1 transfer', async () => {
    const data = seededBytes(14, 2000);
    const h = await transfer(readHarness(data, { toServer: { drop: firstMatches(isAck(2)) } }));
    assertOk(h, data);
    assert.deepEqual(dataSent(h), [1, 2, 2, 3, 4]);
  });
});

describe("ReadSession: Sorcerer's Apprentice", () => {
  test('every ACK duplicated by the network: no DATA is sent twice', async () => {
    const data = seededBytes(20, 10 * 512 + 1);
    const h = await transfer(readHarness(data, { toServer: { duplicate: 1 } }));
    assertOk(h, data);
    assert.deepEqual(dataSent(h), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert.equal(h.ends[0]!.retransmits, 0);
  });

  test('a delayed ACK with a client that ACKs every duplicate: one retransmission, not a cascade', async () => {
    // Long enough that the late ACK arrives mid-transfer.
    const data = seededBytes(21, 200 * 512 + 100);
    const h = await transfer(
      readHarness(data, {
        client: { ackEveryDuplicate: true },
        toServer: { extraDelay: (() => { let done = false; return (p: Packet | undefined) => (!done && p?.opcode === Opcode.ACK && p.block === 3 ? ((done = true), 600) : 0); })() },
      }),
    );
    assertOk(h, data);
    const sent = dataSent(h);
    // Block 3 went out again after the timeout; every other block exactly once: the client's
    // duplicate ACK 3 and the late original ACK 3 trigger nothing.
    const counts = new Map<number, number>();
    for (const b of sent) counts.set(b, (counts.get(b) ?? 0) + 1);
    for (const [block, n] of counts) assert.equal(n, block === 3 ? 2 : 1, `block ${block} sent ${n} times`);
    assert.equal(sent.length, 202);
    assert.equal(h.net.fromClient(Opcode.ACK).filter((e) => (e.packet as { block: number }).block === 3).length, 2);
  });

  test('duplicate ACKs within a window never trigger a resend', async () => {
    const data = seededBytes(22, 16 * 512 + 5);
    const h = await transfer(readHarness(data, { request: { windowsize: '4' }, toServer: { duplicate: 1 } }));
    assertOk(h, data);
    assert.deepEqual(dataSent(h), Array.from({ length: 17 }, (_, i) => i + 1));
  });
});

describe('ReadSession: windows (RFC 7440)', () => {
  test('an ACK for an earlier block restarts the window right after it', async () => {
    const data = seededBytes(30, 16 * 512 + 10);
    const h = await transfer(readHarness(data, { request: { windowsize: '8' }, toClient: { drop: firstMatches(isData(3)) } }));
    assertOk(h, data);
    const sent = dataSent(h);
    assert.deepEqual(sent.slice(0, 8), [1, 2, 3, 4, 5, 6, 7, 8]);
    // The client saw a gap at 4 and ACKed 2: the next DATA is 3, and nothing at or below 2 is resent.
    assert.equal(sent[8], 3);
    assert.ok(sent.slice(8).every((b) => b >= 3), sent.join(','));
    assert.ok(h.net.sent('toServer').includes('ACK 2'));
  });

  test('scripted: ACK inside the window → resend from the next block, nothing earlier', async () => {
    const data = seededBytes(31, 20 * 512);
    const h = readHarness(data, { request: { windowsize: '4' } });
    h.net.connect(h.session, undefined); // no client: we script it
    h.session.start();
    h.net.clientSend(ackBytes(0));
    await h.clock.run(20);
    assert.deepEqual(dataSent(h), [1, 2, 3, 4]);
    h.net.clientSend(ackBytes(2));
    await h.clock.run(40);
    const after = dataSent(h).slice(4);
    assert.ok(after.length >= 1, 'nothing sent after ACK 2');
    assert.equal(after[0], 3);
    assert.ok(after.every((b) => b >= 3), after.join(','));
    h.session.abort('shutdown', false);
    assertCleanEnd(h);
  });

  test('after a timeout rewind, an ACK for a block sent before the rewind is honoured', async () => {
    // Window 4: blocks 1-4 sent, 4 lost. The session times out and resends from 1 with a smaller window;
    // the client, which holds 1-3, answers the duplicate with ACK 3. That ACK covers blocks already
    // sent once and must move the window on (not be ignored as "never sent").
    const data = seededBytes(32, 12 * 512 + 1);
    const h = await transfer(readHarness(data, { request: { windowsize: '4' }, toClient: { drop: firstMatches(isData(4)) } }));
    assertOk(h, data);
  });

  test('windowed transfer survives heavy reordering', async () => {
    const data = seededBytes(33, 64 * 512 + 3);
    const h = await transfer(
      readHarness(data, { seed: 77, request: { windowsize: '8' }, toClient: { reorder: 0.3, reorderDelayMs: 8 } }),
    );
    assertOk(h, data);
  });
});

describe('ReadSession: stray and bogus packets', () => {
  test('ACKs for blocks never sent, stale ACKs and junk are ignored', async () => {
    const data = seededBytes(40, 10 * 512);
    const h = readHarness(data);
    h.net.connect(h.session, undefined);
    h.session.start();
    await h.clock.run(10);
    assert.deepEqual(h.net.sent('toClient'), ['DATA 1']);
    for (const block of [999, 2, 65535, 40000, 0]) h.net.clientSend(ackBytes(block));
    h.net.clientSend(Buffer.from([0, 3, 0, 1, 1, 2, 3])); // DATA to a sender
    h.net.clientSend(Buffer.from([0, 6])); // OACK to a sender
    h.net.clientSend(Buffer.from([0, 9, 1])); // malformed
    await h.clock.run(30);
    assert.deepEqual(h.net.sent('toClient'), ['DATA 1'], 'bogus packets drew an answer');
    assert.equal(h.session.isEnded, false);
    assert.equal(h.session.hasProgressed, false);
    h.net.clientSend(ackBytes(1));
    await h.clock.run(50);
    assert.deepEqual(h.net.sent('toClient'), ['DATA 1', 'DATA 2']);
    assert.equal(h.session.hasProgressed, true);
    h.session.abort('replaced', false);
    assertCleanEnd(h);
    assert.equal(h.ends[0]!.result, 'replaced');
  });

  test('ACK 0 after the OACK was answered is a harmless duplicate', async () => {
    const data = seededBytes(41, 3000);
    const h = await transfer(readHarness(data, { request: { blksize: '1024' }, toServer: { duplicate: 1 } }));
    assertOk(h, data);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'DATA 1', 'DATA 2', 'DATA 3']);
  });

  test('an ACK other than 0 while the OACK is outstanding is ignored', async () => {
    const h = readHarness(seededBytes(42, 2000), { request: { blksize: '1024' } });
    h.net.connect(h.session, undefined);
    h.session.start();
    h.net.clientSend(ackBytes(1));
    await h.clock.run(30);
    assert.deepEqual(h.net.sent('toClient'), ['OACK']);
    h.session.abort('shutdown', true);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'ERROR 0']);
    assertCleanEnd(h);
    assert.equal(h.ends[0]!.result, 'shutdown');
    assert.equal(h.ends[0]!.errorSent, 0);
    h.session.abort('shutdown', true); // idempotent
    assert.equal(h.ends.length, 1);
  });
});

describe('ReadSession: rollover', () => {
  test('70,000 blocks at blksize 8 wrap 65535 → 0, with a loss right at the wrap', async () => {
    const blocks = 70_000;
    const data = seededBytes(50, blocks * 8 - 3);
    const h = await transfer(
      readHarness(data, {
        request: { blksize: '8', windowsize: '16' },
        toClient: { latencyMs: 1, drop: firstMatches(isData(65536)) },
      }),
    );
    assertOk(h, data);
    assert.equal(h.ends[0]!.blocks, blocks);
    const sent = dataSent(h);
    assert.ok(sent.includes(0) && sent.includes(65535));
    assert.equal(Math.max(...sent.slice(-10)), blocks - 65536);
    assert.ok(h.ends[0]!.retransmits > 0);
  });
});

describe('ReadSession: giving up and errors', () => {
  test('retries are bounded: ERROR 0 then result timeout, with exponential backoff', async () => {
    const data = seededBytes(60, 5000);
    const h = await transfer(readHarness(data, { toServer: { loss: 1 } }));
    assertCleanEnd(h);
    assert.equal(h.ends[0]!.result, 'timeout');
    assert.equal(h.ends[0]!.errorSent, 0);
    const sent = h.net.sent('toClient');
    assert.deepEqual(sent, [...Array<string>(TEST_POLICY.maxRetries + 1).fill('DATA 1'), 'ERROR 0']);
    const times = h.net.fromServer().map((e) => e.time);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    assert.deepEqual(gaps, [200, 400, 800, 1600, 2000, 2000]);
    assert.equal(h.ends[0]!.timeouts, TEST_POLICY.maxRetries + 1);
  });

  test('waiting for ACK 0 of an OACK is bounded, and the OACK is not repeated meanwhile', async () => {
    const h = await transfer(readHarness(seededBytes(61, 100), { request: { tsize: '0' }, toServer: { loss: 1 } }));
    assertCleanEnd(h);
    assert.equal(h.ends[0]!.result, 'timeout');
    assert.equal(h.ends[0]!.timeouts, TEST_POLICY.maxRetries + 1);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'ERROR 0']);
  });

  test('a client-pinned timeout is used as is (no backoff)', async () => {
    const h = await transfer(readHarness(seededBytes(62, 3000), { request: { timeout: '3' }, toServer: { drop: (p) => p?.opcode === Opcode.ACK && p.block === 1 } }));
    const times = h.net.fromServer(Opcode.DATA).map((e) => e.time);
    assert.ok(times.length >= 3);
    assert.ok(times.slice(2).every((t, i) => t - times[i + 1]! === 3000), times.join(','));
  });

  test('ERROR 8 after the OACK is a size probe: quiet end, nothing sent back', async () => {
    const h = await transfer(readHarness(seededBytes(63, 5000), { request: { tsize: '0', blksize: '1468' }, client: { refuseOack: true } }));
    assertCleanEnd(h);
    assert.equal(h.ends[0]!.result, 'size-probe');
    assert.equal(h.ends[0]!.errorSent, undefined);
    assert.deepEqual(h.net.sent('toClient'), ['OACK']);
    assert.equal(h.client.oack, undefined);
  });

  test('a client ERROR mid-transfer ends the session as client-error, without answering', async () => {
    const h = await transfer(
      readHarness(seededBytes(64, 5000), { client: { errorAfterBlock: { block: 3, code: 0, message: 'disk full here' } } }),
    );
    assertCleanEnd(h);
    assert.equal(h.ends[0]!.result, 'client-error');
    assert.equal(h.ends[0]!.errorSent, undefined);
    assert.deepEqual(h.net.sent('toClient'), ['DATA 1', 'DATA 2', 'DATA 3']);
  });

  test('ERROR 8 after transfer started is a client error, not a probe', async () => {
    const h = readHarness(seededBytes(65, 5000));
    h.net.connect(h.session, undefined);
    h.session.start();
    h.net.clientSend(ackBytes(1));
    await h.clock.run(20);
    h.net.clientSend(errorBytes(8, 'late'));
    await h.runToIdle();
    assertCleanEnd(h);
    assert.equal(h.ends[0]!.result, 'client-error');
  });

  for (const [code, wire, result] of [
    ['NOT_FOUND', 1, 'not-found'],
    ['ACCESS_DENIED', 2, 'denied'],
    ['STORAGE_UNAVAILABLE', 0, 'storage-error'],
    ['OBJECT_CHANGED', 0, 'storage-error'],
  ] as const) {
    test(`storage failure ${code} mid-transfer → ERROR ${wire}, result ${result}`, async () => {
      const h = await transfer(
        readHarness(seededBytes(66, 8000), {
          request: { windowsize: '2' },
          source: { loadDelayMs: 10, rangeSize: 1024, failAt: { offset: 3000, error: storageError(code) } },
        }),
      );
      assertCleanEnd(h);
      assert.equal(h.ends[0]!.result, result);
      assert.equal(h.ends[0]!.errorSent, wire);
      assert.equal(h.client.error?.code, wire);
      assert.equal(h.net.sent('toClient').at(-1), `ERROR ${wire}`);
      // The client got an intact prefix.
      assert.ok(h.client.data.equals(seededBytes(66, 8000).subarray(0, h.client.data.length)));
    });
  }

  test('a plain Error from storage is a generic storage error (code 0, no detail on the wire)', async () => {
    const h = await transfer(
      readHarness(seededBytes(67, 3000), { source: { loadDelayMs: 5, failAt: { offset: 0, error: new Error('secret bucket detail') } } }),
    );
    assertCleanEnd(h);
    assert.equal(h.ends[0]!.result, 'storage-error');
    assert.equal(h.client.error?.code, 0);
    assert.ok(!h.client.error?.message.includes('secret'));
    assert.match(h.ends[0]!.detail ?? '', /secret bucket detail/);
  });

  test('storage failing after the session ended changes nothing', async () => {
    const h = readHarness(seededBytes(68, 3000), { source: { loadDelayMs: 100, failAt: { offset: 0, error: storageError('NOT_FOUND') } } });
    h.start();
    await h.clock.run(10);
    h.session.abort('replaced', false);
    await h.runToIdle();
    assertCleanEnd(h);
    assert.equal(h.ends[0]!.result, 'replaced');
    assert.deepEqual(h.net.sent('toClient'), []);
  });
});

describe('ReadSession: window pacing', () => {
  // An RFC 7440 client ACKs only after `windowsize` blocks: a session that sends fewer (bytes-in-flight
  // cap, or a window halved after a loss) must not leave every window to end by a retransmission timeout.
  test('a window capped by bytes in flight costs no timeouts', async () => {
    const data = seededBytes(70, 64 * 1024);
    const h = await transfer(readHarness(data, { request: { blksize: '1024', windowsize: '64' }, maxBytesInFlight: 8 * 1024 }));
    assertOk(h, data);
    assert.equal(h.ends[0]!.timeouts, 0);
  });

  test('after one loss in a window, the shrunken window does not cost a timeout per window', async () => {
    const data = seededBytes(71, 64 * 1024);
    const h = await transfer(readHarness(data, { request: { blksize: '1024', windowsize: '8' }, toClient: { drop: firstMatches(isData(3)) } }));
    assertOk(h, data);
    assert.ok(h.ends[0]!.timeouts <= 1, `${h.ends[0]!.timeouts} timeouts for 65 blocks`);
  });
});

describe('ReadSession: randomised lossy networks', () => {
  const seeds = [1, 2, 3, 4, 5, 6];
  for (const rate of [0.05, 0.2]) {
    for (const windowsize of [1, 4, 16]) {
      for (const seed of seeds) {
        test(`loss/dup/reorder ${rate * 100}% windowsize=${windowsize} seed=${seed}`, async () => {
          const sizeRng = seededBytes(seed * 1000 + windowsize, 4);
          const size = sizeRng.readUInt16BE(0) % 30_000;
          const blksize = [512, 1024, 1468][sizeRng[2]! % 3]!;
          const data = seededBytes(seed, size);
          const link = { loss: rate, duplicate: rate, reorder: rate, latencyMs: 2 + (seed % 5) };
          const h = await transfer(
            readHarness(data, {
              seed,
              request: { blksize: String(blksize), windowsize: String(windowsize), tsize: '0' },
              toClient: link,
              toServer: link,
              source: sizeRng[3]! % 2 === 0 ? { loadDelayMs: 20, rangeSize: 8192 } : {},
            }),
          );
          assertCleanEnd(h);
          const stats = h.ends[0]!;
          // Whatever the client holds is an intact prefix of the file.
          assert.ok(data.subarray(0, h.client.data.length).equals(h.client.data), 'client data corrupted');
          if (stats.result === 'ok') {
            assert.ok(h.client.data.equals(data), 'ok but the client does not have the file');
          } else if (stats.result === 'unconfirmed') {
            // Every block was sent; only the final ACK never came back (no ERROR for that).
            assert.ok(h.client.data.equals(data) || h.client.state !== 'done', JSON.stringify(stats));
            assert.equal(stats.errorSent, undefined);
          } else {
            // The other acceptable failure on a lossy path: patience used up, and the client told so.
            assert.equal(stats.result, 'timeout', JSON.stringify(stats));
            assert.equal(stats.errorSent, 0);
            assert.equal(h.net.sent('toClient').at(-1), 'ERROR 0');
          }
          if (rate <= 0.05) assert.equal(stats.result, 'ok', JSON.stringify(stats));
        });
      }
    }
  }
});

/**
 * A strict RFC 7440 receiver: it ACKs only when a whole window has arrived in order (or the last
 * block), ignores anything out of order, and otherwise ACKs its last in-order block on its own
 * 1 s timer. It can be made deaf for a while (a pause on its side).
 */
class StrictWindowReader implements PacketHandler {
  readonly chunks: Buffer[] = [];
  done = false;
  private sinceAck = 0;
  private timer: ReturnType<VirtualClock['setTimeout']> | undefined;
  deafUntil = 0;

  constructor(
    private readonly clock: VirtualClock,
    private readonly send: (b: Buffer) => void,
    private readonly windowsize: number,
    private readonly blksize: number,
  ) {}

  handle(p: Packet): void {
    if (this.clock.now() < this.deafUntil) return;
    if (p.opcode === Opcode.OACK) {
      this.send(ackBytes(0));
      this.arm();
      return;
    }
    if (p.opcode !== Opcode.DATA || this.done) return;
    if (p.block !== this.chunks.length + 1) return;
    this.chunks.push(Buffer.from(p.data));
    this.sinceAck++;
    const last = p.data.length < this.blksize;
    if (last) this.done = true;
    if (this.sinceAck >= this.windowsize || last) this.ack();
    else this.arm();
  }

  private ack(): void {
    this.sinceAck = 0;
    this.send(ackBytes(this.chunks.length));
    if (this.done) {
      if (this.timer) this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    } else this.arm();
  }

  private arm(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.schedule(() => {
      this.timer = undefined;
      if (!this.done) this.ack();
    }, 1000, 'client');
  }
}

describe('ReadSession: strict windowed receivers', () => {
  test('a pause keeps the negotiated window: a strict receiver finishes at once, no block twice in one window', async () => {
    const data = seededBytes(90, 100 * 1024);
    const h = readHarness(data, { request: { blksize: '1024', windowsize: '16' }, toClient: { latencyMs: 1 }, toServer: { latencyMs: 1 } });
    const client = new StrictWindowReader(h.clock, (b) => h.net.clientSend(b), 16, 1024);
    h.net.connect(h.session, client);
    h.session.start();
    // After block 40 the receiver is deaf for 0.3 s (blocks in flight then are lost to it).
    let paused = false;
    const origHandle = client.handle.bind(client);
    client.handle = (p) => {
      if (!paused && p.opcode === Opcode.DATA && p.block === 40) {
        paused = true;
        client.deafUntil = h.clock.now() + 300;
      }
      origHandle(p);
    };
    await h.runToIdle(120_000);
    assert.ok(client.done, 'the receiver has every block');
    assert.deepEqual(Buffer.concat(client.chunks), data);
    const took = h.ends[0]!.durationMs;
    assert.ok(took < 2000, `took ${took} ms of virtual time (a collapsed window took seconds)`);
    // Within one window no DATA block goes out twice: a window is a run of rising blocks, started
    // afresh by an ACK or by a timeout that resends from the oldest unacknowledged block.
    let runStart: number | undefined;
    let prev = 0;
    for (const e of h.net.trace) {
      if (e.dir === 'toServer') {
        runStart = undefined;
        continue;
      }
      if (e.packet?.opcode !== Opcode.DATA) continue;
      const b = e.packet.block;
      if (runStart === undefined || b <= runStart) runStart = b;
      else assert.equal(b, prev + 1, `DATA ${b} after DATA ${prev} within one window (at ${e.time} ms)`);
      prev = b;
    }
  });

  test('a timeout resends the full window from the oldest unacknowledged block', async () => {
    const data = seededBytes(91, 20 * 1024);
    // Every ACK of the first window is lost once: the session must resend blocks 1-8, all 8.
    const h = readHarness(data, { request: { blksize: '1024', windowsize: '8' }, toServer: { drop: firstMatches(isAck(8)) } });
    h.start();
    await h.runToIdle(60_000);
    assertOk(h, data);
    const sends = h.net.sent('toClient');
    const firstRound = sends.slice(1, 9);
    const secondRound = sends.slice(9, 17);
    assert.deepEqual(firstRound, secondRound, `resent window: ${sends.slice(0, 20).join(',')}`);
  });
});
