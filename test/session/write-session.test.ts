import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Opcode, type Packet } from '../../src/tftp/protocol/packet.js';
import {
  dataBytes,
  firstMatches,
  isAck,
  isData,
  isOack,
  seededBytes,
  storageError,
  TEST_POLICY,
  writeHarness,
  type WriteHarness,
} from '../support/fake/index.js';

type AckPacket = Extract<Packet, { opcode: Opcode.ACK }>;

function acksSent(h: WriteHarness): number[] {
  return h.net.fromServer(Opcode.ACK).map((e) => (e.packet as AckPacket).block);
}

function assertCleanEnd(h: WriteHarness): void {
  assert.equal(h.ends.length, 1, `onEnd called ${h.ends.length} times`);
  assert.equal(h.clock.pending('session'), 0, 'session timers left behind');
  assert.equal(h.net.sentAfterEnd, 0, 'session sent packets after it ended');
  assert.equal(h.session.isEnded, true);
  assert.equal(h.sink.lateWrites, 0, 'sink written after finish/abort');
}

function assertOk(h: WriteHarness, local: Buffer): void {
  assertCleanEnd(h);
  assert.equal(h.ends[0]!.result, 'ok', JSON.stringify(h.ends[0]));
  assert.ok(h.sink.data.equals(local), `sink got ${h.sink.data.length} bytes, want ${local.length}`);
  assert.equal(h.sink.finishCalls, 1);
  assert.deepEqual(h.sink.aborts, []);
  assert.equal(h.client.state, 'done');
}

function assertAborted(h: WriteHarness, result: string, errorSent: number | undefined): void {
  assertCleanEnd(h);
  assert.equal(h.ends[0]!.result, result, JSON.stringify(h.ends[0]));
  assert.equal(h.ends[0]!.errorSent, errorSent);
  assert.ok(h.sink.aborts.length >= 1, 'sink not aborted');
  assert.equal(h.sink.aborts[0], result);
}

async function transfer(h: WriteHarness): Promise<WriteHarness> {
  h.start();
  await h.runToIdle();
  return h;
}

describe('WriteSession: basic uploads', () => {
  test('without options: ACK 0, one ACK per block, data stored', async () => {
    const data = seededBytes(100, 1300);
    const h = await transfer(writeHarness(data));
    assertOk(h, data);
    assert.deepEqual(acksSent(h), [0, 1, 2, 3]);
    assert.equal(h.ends[0]!.blocks, 3);
    assert.equal(h.ends[0]!.bytes, 1300);
  });

  test('with an OACK: window 4, ACK at each window end and on the last block', async () => {
    const data = seededBytes(101, 10 * 1024 + 7);
    const h = await transfer(writeHarness(data, { request: { blksize: '1024', windowsize: '4', tsize: String(10 * 1024 + 7) } }));
    assertOk(h, data);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'ACK 4', 'ACK 8', 'ACK 11']);
    assert.deepEqual([...h.client.oack!], [
      ['blksize', '1024'],
      ['windowsize', '4'],
      ['tsize', String(10 * 1024 + 7)],
    ]);
  });

  test('a size that is a multiple of blksize ends with an empty DATA', async () => {
    const data = seededBytes(102, 1024);
    const h = await transfer(writeHarness(data));
    assertOk(h, data);
    assert.deepEqual(h.net.fromClient(Opcode.DATA).map((e) => e.bytes.length - 4), [512, 512, 0]);
    assert.equal(h.sink.writes, 2, 'an empty final block is not a write');
  });

  test('an empty upload', async () => {
    const h = await transfer(writeHarness(Buffer.alloc(0)));
    assertOk(h, Buffer.alloc(0));
    assert.deepEqual(acksSent(h), [0, 1]);
  });

  test('the session ends ok with the final ACK (the dispatcher, not the session, lingers after it)', async () => {
    const h = writeHarness(seededBytes(103, 100));
    h.start();
    await h.clock.run(100);
    assert.equal(h.client.state, 'done');
    assertOk(h, seededBytes(103, 100));
    const finalAck = h.net.fromServer(Opcode.ACK).at(-1)!;
    assert.equal(h.ends[0]!.durationMs, finalAck.time, 'ended when the final ACK went out');
  });
});

describe('WriteSession: completion', () => {
  test('the final ACK is withheld until sink.finish resolves', async () => {
    const data = seededBytes(110, 2000);
    const h = await transfer(writeHarness(data, { sink: { finishDelayMs: 700 }, client: { timeoutMs: 250 } }));
    assertOk(h, data);
    const finalAcks = h.net.fromServer(Opcode.ACK).filter((e) => (e.packet as AckPacket).block === 4);
    assert.equal(finalAcks.length, 1);
    assert.ok(h.sink.finishedAt !== undefined);
    assert.ok(finalAcks[0]!.time >= h.sink.finishedAt, `final ACK at ${finalAcks[0]!.time}, finish at ${h.sink.finishedAt}`);
    // The client resent the last DATA meanwhile; the session said nothing until the object was stored.
    const lastDatas = h.net.fromClient(Opcode.DATA).filter((e) => (e.packet as { block: number }).block === 4);
    assert.ok(lastDatas.length >= 2, 'the client never retransmitted during completion');
    assert.equal(h.ends[0]!.timeouts, 0, 'completion time counted as timeouts');
  });

  test('lost final ACK: the upload has ended ok, stored once; a resent last DATA is the dispatcher linger\'s to answer', async () => {
    // The re-ACK of a resent last DATA after the session ended: test/server/dispatcher.test.ts
    // ("after an upload: ...").
    const data = seededBytes(111, 1200);
    const h = await transfer(writeHarness(data, { toClient: { drop: firstMatches(isAck(3)) } }));
    assertCleanEnd(h);
    assert.equal(h.ends[0]!.result, 'ok', JSON.stringify(h.ends[0]));
    assert.ok(h.sink.data.equals(data));
    assert.deepEqual(acksSent(h), [0, 1, 2, 3]);
    assert.equal(h.sink.finishCalls, 1);
    assert.deepEqual(h.sink.aborts, []);
    assert.ok(h.net.fromClient(Opcode.DATA).filter((e) => (e.packet as { block: number }).block === 3).length >= 2, 'the client resent its last DATA');
  });

  test('finish rejecting (object appeared: EXISTS) → ERROR 6, result exists, upload aborted', async () => {
    const h = await transfer(writeHarness(seededBytes(112, 700), { sink: { finishDelayMs: 50, failFinish: storageError('EXISTS') } }));
    assertAborted(h, 'exists', 6);
    assert.equal(h.client.error?.code, 6);
    assert.ok(!acksSent(h).includes(2), 'final ACK sent although finish failed');
  });

  for (const [code, wire, result] of [
    ['TOO_LARGE', 3, 'too-large'],
    ['ACCESS_DENIED', 2, 'denied'],
    ['STORAGE_UNAVAILABLE', 0, 'storage-error'],
  ] as const) {
    test(`a write failing with ${code} → ERROR ${wire}, result ${result}`, async () => {
      const h = await transfer(
        writeHarness(seededBytes(113, 3000), { sink: { writeDelayMs: 5, failWrite: { nth: 2, error: storageError(code) } } }),
      );
      assertAborted(h, result, wire);
      assert.equal(h.client.error?.code, wire);
      assert.equal(h.sink.finishCalls, 0);
    });
  }

  test('a write failing with a plain Error → ERROR 0 with generic text', async () => {
    const h = await transfer(
      writeHarness(seededBytes(114, 3000), { request: { windowsize: '4' }, sink: { writeDelayMs: 5, failWrite: { nth: 2, error: new Error('bucket policy xyz') } } }),
    );
    assertAborted(h, 'storage-error', 0);
    assert.ok(!h.client.error?.message.includes('xyz'));
  });
});

describe('WriteSession: backpressure', () => {
  test('a pending sink write holds the ACK, and no retransmission is counted meanwhile', async () => {
    const data = seededBytes(120, 5 * 512 + 10);
    const h = await transfer(writeHarness(data, { sink: { writeDelayMs: 400 }, client: { timeoutMs: 150 } }));
    assertOk(h, data);
    // Each ACK n (n ≥ 1, not the last) goes out no earlier than 400 ms after DATA n first arrived.
    const firstArrival = new Map<number, number>();
    for (const e of h.net.fromClient(Opcode.DATA)) {
      const b = (e.packet as { block: number }).block;
      if (!firstArrival.has(b)) firstArrival.set(b, e.time + 5);
    }
    for (const e of h.net.fromServer(Opcode.ACK)) {
      const b = (e.packet as AckPacket).block;
      if (b === 0) continue;
      assert.ok(e.time >= firstArrival.get(b)! + 400, `ACK ${b} at ${e.time}, DATA ${b} at ${firstArrival.get(b)}`);
    }
    // The client's resends while the ACK was held drew no extra ACKs.
    assert.deepEqual(acksSent(h), [0, 1, 2, 3, 4, 5, 6]);
    assert.equal(h.ends[0]!.timeouts, 0);
    assert.ok(h.client.dataSent > 6, 'client never resent: the test proves nothing');
  });

  test('backpressure with windows: ACK held at the window end', async () => {
    const data = seededBytes(121, 8 * 512 + 1);
    const h = await transfer(writeHarness(data, { request: { windowsize: '4' }, sink: { writeDelayMs: 300 } }));
    assertOk(h, data);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'ACK 4', 'ACK 8', 'ACK 9']);
  });
});

describe('WriteSession: duplicates and loss', () => {
  test('scripted: a resent window draws exactly one ACK', async () => {
    const h = writeHarness(Buffer.alloc(0), { request: { windowsize: '4' } });
    h.net.connect(h.session, undefined);
    h.session.start();
    const payload = (b: number): Buffer => Buffer.alloc(512, b);
    for (let b = 1; b <= 4; b++) h.net.clientSend(dataBytes(b, payload(b)));
    await h.clock.run(20);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'ACK 4']);
    // As if ACK 4 was lost: the client resends the whole window.
    for (let b = 1; b <= 4; b++) h.net.clientSend(dataBytes(b, payload(b)));
    await h.clock.run(40);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'ACK 4', 'ACK 4']);
    h.net.clientSend(dataBytes(5, Buffer.from('end')));
    await h.runToIdle();
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'ACK 4', 'ACK 4', 'ACK 5']);
    assert.equal(h.ends[0]!.result, 'ok');
    assert.equal(h.sink.data.length, 4 * 512 + 3);
    assertCleanEnd(h);
  });

  test('scripted: a gap in the window draws one ACK of the last good block', async () => {
    const h = writeHarness(Buffer.alloc(0), { request: { windowsize: '4' } });
    h.net.connect(h.session, undefined);
    h.session.start();
    h.net.clientSend(dataBytes(1, Buffer.alloc(512, 1)));
    h.net.clientSend(dataBytes(3, Buffer.alloc(512, 3)));
    h.net.clientSend(dataBytes(4, Buffer.alloc(512, 4)));
    await h.clock.run(20);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'ACK 1']);
    // The client restarts after block 1.
    for (let b = 2; b <= 5; b++) h.net.clientSend(dataBytes(b, Buffer.alloc(512, b)));
    await h.clock.run(40);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'ACK 1', 'ACK 5']);
    h.session.abort('shutdown', true);
    assertAborted(h, 'shutdown', 0);
    assert.deepEqual(h.net.sent('toClient').at(-1), 'ERROR 0');
  });

  test('every DATA duplicated by the network: the writer never sends a block twice', async () => {
    const data = seededBytes(130, 12 * 512 + 100);
    const h = await transfer(writeHarness(data, { toServer: { duplicate: 1 } }));
    assertOk(h, data);
    assert.equal(h.client.dataSent, 13, "duplicate ACKs caused resends (Sorcerer's Apprentice)");
    // Each block is ACKed once, and its duplicate at most once more.
    const counts = new Map<number, number>();
    for (const b of acksSent(h)) counts.set(b, (counts.get(b) ?? 0) + 1);
    for (const [b, n] of counts) assert.ok(n <= 2, `ACK ${b} sent ${n} times`);
  });

  test('lost OACK: resent when the client repeats its WRQ, never on our own timer', async () => {
    const data = seededBytes(131, 3000);
    const h = await transfer(writeHarness(data, { request: { blksize: '1024' }, toClient: { drop: firstMatches(isOack) }, client: { timeoutMs: 2500 } }));
    assertOk(h, data);
    const oacks = h.net.fromServer(Opcode.OACK);
    assert.equal(oacks.length, 2);
    const repeated = h.net.fromClient(Opcode.WRQ)[0]!;
    assert.ok(oacks[1]!.time >= repeated.time, 'the second OACK answers the repeated WRQ');
  });

  test('a repeated WRQ while our OACK is still on its way draws no second OACK (curl mis-handles one)', async () => {
    const data = seededBytes(135, 3000);
    // The OACK takes 150 ms to arrive (under the session's initial RTO, 200 ms); the client repeats
    // its WRQ every 50 ms meanwhile.
    const h = await transfer(writeHarness(data, { request: { blksize: '1024' }, toClient: { extraDelay: (p) => (p?.opcode === Opcode.OACK ? 150 : 0) }, client: { timeoutMs: 50 } }));
    assert.ok(h.net.fromClient(Opcode.WRQ).length >= 2, 'the client did repeat its WRQ');
    assertOk(h, data);
    assert.equal(h.net.fromServer(Opcode.OACK).length, 1);
  });

  test('lost ACK 0 (no options): resent when the client repeats its WRQ', async () => {
    const data = seededBytes(132, 600);
    const h = await transfer(writeHarness(data, { toClient: { drop: firstMatches(isAck(0)) } }));
    assertOk(h, data);
    assert.deepEqual(acksSent(h), [0, 0, 1, 2]);
  });

  test('lost ACK 0 (no options), twice: resent on our timer before a slow client repeats its WRQ', async () => {
    // tftp-hpa's uploader waits 5 s before it repeats its WRQ; tftpd-hpa resends ACK 0 on its own timer.
    const data = seededBytes(134, 600);
    const h = await transfer(writeHarness(data, { toClient: { drop: firstMatches(isAck(0), 2) }, client: { timeoutMs: 5000 } }));
    assertOk(h, data);
    assert.equal(h.net.fromClient(Opcode.WRQ).length, 0, 'the client never had to repeat its WRQ');
    assert.deepEqual(acksSent(h), [0, 0, 0, 1, 2]);
    assert.ok(h.clock.now() < 5000, `done at ${h.clock.now()} ms, before the client's own timer`);
  });

  test('a lost DATA: a sender that asked for options keeps getting re-ACKs (backing off), a classic one gets two', async () => {
    const data = seededBytes(135, 5 * 512 + 7);
    const reacks = async (request: Record<string, string> | undefined): Promise<number> => {
      const h = await transfer(writeHarness(data, { ...(request ? { request } : {}), toServer: { drop: firstMatches(isData(3)) }, client: { timeoutMs: 3000 } }));
      assertOk(h, data);
      return acksSent(h).filter((b) => b === 2).length - 1;
    };
    // TEST_POLICY: 200 ms, doubling; the client resends DATA 3 after 3 s.
    assert.ok((await reacks({ blksize: '512' })) >= 3, 'option-aware sender (atftp, curl): re-ACKs until it resends');
    assert.equal(await reacks(undefined), 2, 'classic sender (tftp-hpa): two re-ACKs, then quiet');
  });

  test('lost DATA inside a window: the sender restarts after the last good block', async () => {
    const data = seededBytes(133, 16 * 512 + 3);
    const h = await transfer(writeHarness(data, { request: { windowsize: '8' }, toServer: { drop: firstMatches(isData(5)) } }));
    assertOk(h, data);
    assert.ok(acksSent(h).includes(4));
  });

  test('bogus DATA far from the expected block changes nothing', async () => {
    const h = writeHarness(Buffer.alloc(0));
    h.net.connect(h.session, undefined);
    h.session.start();
    h.net.clientSend(dataBytes(1, Buffer.alloc(512, 1)));
    await h.clock.run(20);
    h.net.clientSend(dataBytes(40000, Buffer.alloc(512, 9)));
    h.net.clientSend(dataBytes(0, Buffer.alloc(512, 9)));
    h.net.clientSend(Buffer.from([0, 4, 0, 1])); // ACK to a receiver
    h.net.clientSend(Buffer.from([0, 3, 0])); // malformed
    await h.clock.run(30);
    assert.equal(h.session.isEnded, false);
    assert.ok(h.sink.data.equals(Buffer.alloc(512, 1)), 'bogus DATA reached the sink');
    h.net.clientSend(dataBytes(2, Buffer.from('x')));
    await h.runToIdle();
    assert.equal(h.ends[0]!.result, 'ok');
    assert.ok(h.sink.data.equals(Buffer.concat([Buffer.alloc(512, 1), Buffer.from('x')])));
  });
});

describe('WriteSession: netascii', () => {
  test('CR LF → LF and CR NUL → CR, across block boundaries, with a trailing CR flushed', async () => {
    const CR = 0x0d;
    const LF = 0x0a;
    // blksize 8; block 1 ends with CR whose LF opens block 2; block 2 ends with CR whose NUL opens block 3;
    // the file ends with a lone CR.
    const wire = Buffer.from([
      0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, CR, // 'abcdefg' CR
      LF, 0x68, CR, LF, 0x69, 0x6a, 0x6b, CR, //       LF 'h' CR LF 'ijk' CR
      0x00, 0x6c, CR, 0x00, 0x6d, CR, //               NUL 'l' CR NUL 'm' CR
    ]);
    const local = Buffer.from([
      0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, LF,
      0x68, LF, 0x69, 0x6a, 0x6b, CR,
      0x6c, CR, 0x6d, CR,
    ]);
    const h = await transfer(writeHarness(wire, { netascii: true, request: { blksize: '8' } }));
    assertOk(h, local);
    assert.equal(h.ends[0]!.bytes, wire.length, 'bytes are counted in wire form');
  });

  test('netascii with the final block exactly full (empty last DATA) flushes a pending CR', async () => {
    const wire = Buffer.from([0x61, 0x62, 0x63, 0x0d]);
    const h = await transfer(writeHarness(wire, { netascii: true, request: { blksize: '8' } }));
    assertOk(h, Buffer.from([0x61, 0x62, 0x63, 0x0d]));
    const wire2 = Buffer.from([0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x0d]);
    const h2 = await transfer(writeHarness(wire2, { netascii: true, request: { blksize: '8' } }));
    assertOk(h2, wire2);
  });

  test('octet mode leaves CR and LF alone', async () => {
    const wire = Buffer.from('a\r\nb\r\0c', 'latin1');
    const h = await transfer(writeHarness(wire, { request: { blksize: '8' } }));
    assertOk(h, wire);
  });
});

describe('WriteSession: limits, errors and timeouts', () => {
  test('an upload beyond maxBytes → ERROR 3, result too-large, upload aborted', async () => {
    const h = await transfer(writeHarness(seededBytes(140, 3000), { maxBytes: 1000 }));
    assertAborted(h, 'too-large', 3);
    assert.equal(h.client.error?.code, 3);
    assert.equal(h.sink.data.length, 512, 'the block over the limit reached the sink');
    assert.equal(h.sink.finishCalls, 0);
  });

  test('exactly maxBytes is fine', async () => {
    const data = seededBytes(141, 1000);
    const h = await transfer(writeHarness(data, { maxBytes: 1000 }));
    assertOk(h, data);
  });

  test('a block larger than blksize → ERROR 4, protocol-error', async () => {
    const h = writeHarness(Buffer.alloc(0), { request: { blksize: '512' } });
    h.net.connect(h.session, undefined);
    h.session.start();
    h.net.clientSend(dataBytes(1, Buffer.alloc(600)));
    await h.runToIdle();
    assertAborted(h, 'protocol-error', 4);
    assert.equal(h.sink.writes, 0);
  });

  test('a client ERROR ends the session and aborts the upload, without answering', async () => {
    const h = await transfer(writeHarness(seededBytes(142, 5000), { client: { errorAtBlock: { block: 4, code: 0, message: 'user cancelled' } } }));
    assertAborted(h, 'client-error', undefined);
    assert.deepEqual(h.net.fromServer(Opcode.ERROR), []);
    assert.equal(h.sink.finishCalls, 0);
  });

  test('the client vanishes mid-upload: bounded retries, ERROR 0, result timeout, upload aborted', async () => {
    const h = await transfer(writeHarness(seededBytes(143, 5000), { toServer: { drop: (p) => p?.opcode === Opcode.DATA && p.block >= 3 } }));
    assertAborted(h, 'timeout', 0);
    const sent = h.net.sent('toClient');
    // Two re-ACKs, then silence until the retry budget is spent (the sender owns recovery).
    assert.deepEqual(sent, ['ACK 0', 'ACK 1', 'ACK 2', ...Array<string>(Math.min(2, TEST_POLICY.maxRetries)).fill('ACK 2'), 'ERROR 0']);
    assert.equal(h.ends[0]!.timeouts, TEST_POLICY.maxRetries + 1);
  });

  test('no DATA ever: one OACK, then the give-up', async () => {
    const h = await transfer(writeHarness(seededBytes(144, 5000), { request: { blksize: '1024' }, toServer: { loss: 1 } }));
    assertAborted(h, 'timeout', 0);
    assert.deepEqual(h.net.sent('toClient'), ['OACK', 'ERROR 0']);
  });

  test('abort(replaced) mid-upload is quiet and aborts the sink', async () => {
    const h = writeHarness(seededBytes(145, 5000));
    h.start();
    await h.clock.run(30);
    h.session.abort('replaced', false);
    await h.runToIdle();
    assertAborted(h, 'replaced', undefined);
    assert.deepEqual(h.net.fromServer(Opcode.ERROR), []);
  });
});

describe('WriteSession: rollover', () => {
  test('70,000 blocks at blksize 8 wrap 65535 → 0, with a loss at the wrap', async () => {
    const blocks = 70_000;
    const data = seededBytes(150, blocks * 8 - 1);
    const h = await transfer(
      writeHarness(data, { request: { blksize: '8', windowsize: '16' }, toServer: { latencyMs: 1, drop: firstMatches(isData(65536)) }, toClient: { latencyMs: 1 } }),
    );
    assertOk(h, data);
    assert.equal(h.ends[0]!.blocks, blocks);
    const acks = acksSent(h);
    const nearWrap = acks.findIndex((b) => b >= 65500);
    assert.ok(nearWrap !== -1, 'no ACK just before the wrap');
    assert.ok(acks.slice(nearWrap).some((b) => b < 100), 'no ACK just after the wrap');
    assert.equal(acks.at(-1), blocks - 65536);
  });
});

describe('WriteSession: randomised lossy networks', () => {
  const seeds = [11, 12, 13, 14, 15, 16];
  for (const rate of [0.05, 0.2]) {
    for (const windowsize of [1, 4, 16]) {
      for (const seed of seeds) {
        test(`loss/dup/reorder ${rate * 100}% windowsize=${windowsize} seed=${seed}`, async () => {
          const r = seededBytes(seed * 1000 + windowsize, 5);
          const size = r.readUInt16BE(0) % 30_000;
          const blksize = [512, 1024, 1468][r[2]! % 3]!;
          const netascii = r[3]! % 3 === 0;
          const local = seededBytes(seed, size);
          // In netascii mode the client sends the wire form; build it by hand (LF → CR LF, CR → CR NUL).
          const wire = netascii
            ? Buffer.from([...local].flatMap((b) => (b === 0x0a ? [0x0d, 0x0a] : b === 0x0d ? [0x0d, 0x00] : [b])))
            : local;
          const link = { loss: rate, duplicate: rate, reorder: rate, latencyMs: 2 + (seed % 5) };
          const h = await transfer(
            writeHarness(wire, {
              seed,
              netascii,
              request: { blksize: String(blksize), windowsize: String(windowsize) },
              toClient: link,
              toServer: link,
              sink: r[4]! % 2 === 0 ? { writeDelayMs: 15, finishDelayMs: 40 } : {},
            }),
          );
          assertCleanEnd(h);
          const stats = h.ends[0]!;
          assert.ok(local.subarray(0, h.sink.data.length).equals(h.sink.data), 'sink data corrupted or out of order');
          if (stats.result === 'ok') {
            assert.ok(h.sink.data.equals(local), 'ok but the object is incomplete');
            assert.equal(h.sink.finishCalls, 1);
            assert.deepEqual(h.sink.aborts, []);
          } else {
            assert.equal(stats.result, 'timeout', JSON.stringify(stats));
            assert.equal(stats.errorSent, 0);
            assert.deepEqual(h.sink.aborts, ['timeout']);
            assert.equal(h.net.sent('toClient').at(-1), 'ERROR 0');
          }
          // The client reports success only when the object is stored.
          if (h.client.state === 'done') assert.equal(stats.result, 'ok');
          if (rate <= 0.05) assert.equal(stats.result, 'ok', JSON.stringify(stats));
        });
      }
    }
  }
});

describe('WriteSession: patience by time', () => {
  test('a wait on storage longer than the give-up time is not counted against the client', async () => {
    const data = seededBytes(140, 6 * 512 + 10);
    // Each sink write holds the ACK for 3 s (S3 backpressure); the client's patience budget is 1 s.
    const h = await transfer(
      writeHarness(data, { policy: { ...TEST_POLICY, maxRetries: 0, giveUpMs: 1000 }, sink: { writeDelayMs: 3000 }, client: { timeoutMs: 5000 } }),
    );
    assertOk(h, data);
  });

  test('a sender silent past the give-up time is given up with ERROR 0, whatever the retry count', async () => {
    const data = seededBytes(141, 6 * 512 + 10);
    const h = await transfer(
      writeHarness(data, { policy: { ...TEST_POLICY, maxRetries: 0, giveUpMs: 7000 }, toServer: { drop: (p) => p?.opcode === Opcode.DATA && p.block >= 3 } }),
    );
    assertAborted(h, 'timeout', 0);
    assert.match(h.ends[0]!.detail ?? '', /no progress for 7\d\d\d ms/);
  });
});
