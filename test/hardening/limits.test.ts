import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { encodeAck, encodeData, encodeRequest, ErrorCode, Opcode } from '../../src/tftp/protocol/packet.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { getObject, listUploads, putObject, testS3, type TestS3 } from '../support/s3.js';
import { UNSOLICITED_ERRORS_BURST } from '../../src/policy/limits.js';
import type { UdpPeer } from '../support/udp-peer.js';
import { sleep, until } from '../support/wait.js';
import { drained, get, openPeer, refusalLogs, refused, sha } from './helpers.js';

const MiB = 1024 * 1024;

/** Opens a session that stays in the OACK state (the request asks for an option, no ACK follows). */
async function holdSession(port: number, bind: string, name = 'big.bin'): Promise<UdpPeer> {
  const peer = await openPeer(bind);
  peer.send(encodeRequest(Opcode.RRQ, name, 'octet', new Map([['blksize', '1024']])), port);
  const first = await peer.next(3000);
  assert.equal(first?.packet.opcode, Opcode.OACK, 'session opened');
  return peer;
}

describe('limits', () => {
  let s3: TestS3;
  let bucket: string;
  const big = randomBytes(MiB);

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'big.bin', big);
    await putObject(s3, bucket, 'small.bin', Buffer.from('small'));
  });

  after(async () => {
    await s3?.cleanup();
  });

  test('session caps: overall and per client, refused with ERROR 0 "Server busy", counted and logged', async () => {
    const gw = await startTestGateway(s3, bucket, ['--max-sessions', '3', '--max-sessions-per-client', '2']);
    const peers: UdpPeer[] = [];
    try {
      peers.push(await holdSession(gw.port, '127.0.0.1'), await holdSession(gw.port, '127.0.0.1'));
      const third = await get(gw.port, 'small.bin', { bind: '127.0.0.1' });
      assert.equal(third.error?.code, ErrorCode.NotDefined);
      assert.match(third.error.message, /busy/i);
      assert.equal(await refused(gw, 'client-busy'), 1);
      // Another client is not held back by the first one's cap...
      peers.push(await holdSession(gw.port, '127.0.0.2'));
      // ...but the overall cap holds for everyone.
      const fourth = await get(gw.port, 'small.bin', { bind: '127.0.0.3' });
      assert.equal(fourth.error?.code, ErrorCode.NotDefined);
      assert.match(fourth.error.message, /busy/i);
      assert.equal(await refused(gw, 'busy'), 1);
      assert.deepEqual(refusalLogs(gw).map((l) => l.refused), ['client-busy', 'busy']);
    } finally {
      for (const p of peers) await p.close();
      await gw.stop();
    }
  });

  test('rate limit: a flooding client is held to its bucket, others are served, replies are bounded', async () => {
    const gw = await startTestGateway(s3, bucket, ['--rate-limit', '2', '--rate-burst', '4', '--log-level', 'info']);
    // 40 requests from one address (40 ports, so none replaces another).
    const flood = await Promise.all(Array.from({ length: 40 }, () => openPeer('127.0.0.5')));
    try {
      for (const [i, p] of flood.entries()) p.send(encodeRequest(Opcode.RRQ, `nope-${i}`, 'octet'), gw.port);
      // Four requests were admitted (ERROR 1: no such file), 36 refused, at most one "busy" answered.
      const errorsSoFar = (): { code: number }[] =>
        flood.flatMap((p) => p.received.map((r) => r.packet)).filter((p) => p?.opcode === Opcode.ERROR);
      // Wait for every request to be decided (the admitted ones need an S3 round trip each) and
      // the "busy" answer to arrive; what is counted after that must be exact.
      await until(
        async () =>
          errorsSoFar().filter((p) => p.code === ErrorCode.FileNotFound).length >= 4 &&
          errorsSoFar().some((p) => p.code === ErrorCode.NotDefined) &&
          (await refused(gw, 'rate-limited')) >= 36,
        10_000,
        'four ERROR 1, one "busy" and 36 refusals',
      );
      const answers = errorsSoFar();
      assert.equal(answers.filter((p) => p.code === ErrorCode.FileNotFound).length, 4);
      assert.equal(answers.filter((p) => p.code === ErrorCode.NotDefined).length, 1);
      assert.equal(await refused(gw, 'rate-limited'), 36);
      assert.ok(refusalLogs(gw).filter((l) => l.refused === 'rate-limited').length <= 1, 'logged at info at most once a second');
      const other = await get(gw.port, 'small.bin', { bind: '127.0.0.6' });
      assert.equal(other.data.toString(), 'small');
      // The bucket refills at the configured rate (2/s: a token within 600 ms).
      await sleep(600);
      const again = await get(gw.port, 'small.bin', { bind: '127.0.0.5' });
      assert.equal(again.data.toString(), 'small');
    } finally {
      for (const p of flood) await p.close();
      await gw.stop();
    }
  });

  test('amplification: a spoofed request gets at most one packet per retry, under 100x its size, then nothing', async () => {
    const retries = 3;
    const gw = await startTestGateway(s3, bucket, ['--retries', String(retries), '--rto-initial-ms', '100', '--rto-max-ms', '200']);
    try {
      // With options: only the OACK is ever sent before the client's ACK 0 (never data).
      const withOptions = encodeRequest(Opcode.RRQ, 'big.bin', 'octet', new Map([['blksize', '1468'], ['windowsize', '64'], ['tsize', '0']]));
      // Without options (RFC 1350): one 512-byte block, the window is 1 until the client answers.
      const plain = encodeRequest(Opcode.RRQ, 'big.bin', 'octet');
      for (const request of [withOptions, plain]) {
        const victim = await openPeer('127.0.0.7');
        victim.send(request, gw.port);
        // The session is open once its first packet arrives; then it retries (100 ms, then 200 ms
        // each) until it gives up.
        assert.ok(await victim.next(3000), 'the request was answered');
        assert.ok(await drained(gw, 100 + 200 * (retries + 2) + 3000), 'the session gave up');
        const got = victim.received;
        await victim.close();
        const bytes = got.reduce((n, r) => n + r.size, 0);
        const packets = got.filter((r) => r.packet?.opcode !== Opcode.ERROR);
        assert.ok(packets.length <= retries + 1, `${packets.length} packets for ${retries} retries`);
        assert.ok(packets.every((r) => r.packet?.opcode === (request === plain ? Opcode.DATA : Opcode.OACK)));
        // One window per retry: an OACK no bigger than the request (+ the tsize digits), or one block.
        const perTry = request === plain ? 4 + 512 : request.length + 8;
        assert.ok(bytes <= (retries + 1) * perTry + 64, `${bytes} bytes before any ACK (request ${request.length} bytes)`);
        assert.ok(bytes < 100 * request.length, `${bytes} bytes for a ${request.length}-byte request`);
        // An OACK is never resent on the timer (the client repeats its request); DATA 1 is.
        if (request === plain) assert.ok(packets.length >= 2, 'DATA 1 was retried');
        else assert.equal(packets.length, 1, 'one OACK');
      }
    } finally {
      await gw.stop();
    }
  });

  test('unsolicited ERRORs (stray packets, malformed requests) are capped per address', async () => {
    const gw = await startTestGateway(s3, bucket, ['--log-level', 'info']);
    const peer = await openPeer('127.0.0.8');
    try {
      // 300 stray ACKs and 300 truncated requests: 8 bytes in, ~25 bytes out each if all were answered.
      for (let i = 0; i < 300; i++) {
        peer.send(encodeAck(i), gw.port);
        peer.send(Buffer.from([0, 1, 0x41]), gw.port);
      }
      await peer.flush();
      // Another address is answered as usual; its answer also tells that the gateway has read what
      // came before it on its socket.
      const other = await openPeer('127.0.0.9');
      other.send(encodeAck(1), gw.port);
      assert.equal((await other.next(1000))?.packet.opcode, Opcode.ERROR);
      await other.close();
      // Every ERROR the gateway sent (but the one to the other address) has arrived.
      const errorsSent = async (): Promise<number> =>
        (await gw.gateway.metricValues('tftp_gateway_errors_sent_total')).reduce((n, v) => n + v.value, 0);
      const errorsHere = (): number => peer.received.filter((r) => r.packet?.opcode === Opcode.ERROR).length;
      await until(async () => errorsHere() === (await errorsSent()) - 1, 2000, 'every ERROR sent to arrive');
      const errors = errorsHere();
      assert.ok(errors >= 20, `some are answered (${errors})`);
      assert.ok(errors <= UNSOLICITED_ERRORS_BURST + 20, `at most a burst and the rate are answered (${errors} of 600)`);
    } finally {
      await peer.close();
      await gw.stop();
    }
  });

  test('refusing the timeout option keeps the adaptive timer: a lost block is resent in well under the asked 2 s', async () => {
    const measure = async (gw: TestGateway): Promise<number> => {
      const peer = await openPeer();
      try {
        peer.send(encodeRequest(Opcode.RRQ, 'big.bin', 'octet', new Map([['blksize', '512'], ['timeout', '2']])), gw.port);
        const oack = await peer.next(3000);
        assert.equal(oack?.packet.opcode, Opcode.OACK);
        peer.send(encodeAck(0), oack.port);
        const first = await peer.next(3000);
        assert.equal(first?.packet.opcode, Opcode.DATA);
        const t0 = Date.now();
        // "Lose" block 1: do not ACK it; the server must resend it on its timer.
        const again = await peer.next(4000);
        assert.equal(again?.packet.opcode, Opcode.DATA);
        return Date.now() - t0;
      } finally {
        await peer.close();
      }
    };
    const refusing = await startTestGateway(s3, bucket, ['--refuse-options', 'timeout']);
    const pinned = await startTestGateway(s3, bucket, []);
    try {
      const adaptive = await measure(refusing);
      const fixed = await measure(pinned);
      assert.ok(adaptive < 600, `adaptive resend after ${adaptive} ms`);
      assert.ok(fixed >= 1900, `pinned resend after ${fixed} ms`);
    } finally {
      await refusing.stop();
      await pinned.stop();
    }
  });

  test('a stalled read (client pinned timeout=255, then vanished) is reaped at --stall-timeout', async () => {
    const gw = await startTestGateway(s3, bucket, ['--stall-timeout', '1']);
    try {
      const peer = await openPeer();
      peer.send(encodeRequest(Opcode.RRQ, 'big.bin', 'octet', new Map([['timeout', '255']])), gw.port);
      const oack = await peer.next(3000);
      peer.send(encodeAck(0), oack!.port);
      const t0 = Date.now();
      assert.ok(await drained(gw, 5000), 'session reaped');
      const elapsed = Date.now() - t0;
      assert.ok(elapsed < 2500, `reaped after ${elapsed} ms`);
      // The ERROR left as the session ended: wait for it to arrive, then it must be the last packet.
      await peer.next(2000, (r) => r.packet.opcode === Opcode.ERROR);
      const packets = peer.received.map((r) => r.packet);
      await peer.close();
      const last = packets[packets.length - 1];
      assert.equal(last?.opcode, Opcode.ERROR, 'the client is told');
      assert.equal(gw.transfers[0]?.result, 'timeout');
      // The gateway still serves.
      assert.equal(sha((await get(gw.port, 'big.bin', { options: { blksize: '1468', windowsize: '16' } })).data), sha(big));
    } finally {
      await gw.stop();
    }
  });

  test('a stalled upload is reaped: its multipart upload aborted, no parts left, no object', async (t) => {
    if (s3.kind !== 'rgw') return t.skip('needs Ceph RGW (ListMultipartUploads)');
    const gw = await startTestGateway(s3, bucket, ['--stall-timeout', '2', '--allow-write', '--upload-part-size', '5MiB']);
    try {
      const peer = await openPeer();
      peer.send(encodeRequest(Opcode.WRQ, 'stalled.bin', 'octet', new Map([['blksize', '1468'], ['windowsize', '32']])), gw.port);
      const oack = await peer.next(3000);
      assert.equal(oack?.packet.opcode, Opcode.OACK);
      const port = oack.port;
      const block = randomBytes(1468);
      // 11 MiB: lib-storage starts a multipart upload once it holds two parts; then the client goes silent.
      let n = 0;
      const total = 7900;
      while (n < total) {
        for (let i = 0; i < 32 && n < total; i++) peer.send(encodeData(++n & 0xffff, block), port);
        const ack = await peer.next(3000);
        assert.equal(ack?.packet.opcode, Opcode.ACK, `ACK after block ${n}`);
      }
      assert.ok(await listUploads(s3, bucket) >= 1, 'a multipart upload is in progress');
      await peer.close();
      assert.ok(await drained(gw, 8000), 'session reaped');
      assert.equal(await listUploads(s3, bucket), 0);
      assert.equal(await getObject(s3, bucket, 'stalled.bin'), undefined);
    } finally {
      await gw.stop();
    }
  });
});
