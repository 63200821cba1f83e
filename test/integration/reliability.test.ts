import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { encodeRequest, Opcode } from '../../src/tftp/protocol/packet.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { putObject, testS3, type TestS3 } from '../support/s3.js';
import { rawExchange, tftpGet, tftpPut } from '../support/tftp-client.js';
import { UdpPeer } from '../support/udp-peer.js';

/**
 * Issue 9 on real sockets and a real S3 server: per-transfer refusals and end-of-session ERRORs
 * reach the client (the transfer socket closes only after its last datagram left), and a read
 * right after an upload that replaced an object sees the new bytes.
 */

describe('per-transfer mode: ERRORs reach the client on a real socket', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'exists.bin', Buffer.from('x'));
    gw = await startTestGateway(s3, bucket, ['--port-mode', 'per-transfer', '--allow-write', '--max-upload-size', '2000']);
  });
  after(async () => {
    await gw?.stop();
    await s3?.cleanup();
  });

  test('a missing file: ERROR 1 at once', async () => {
    const t0 = Date.now();
    const answer = await rawExchange(gw.port, encodeRequest(Opcode.RRQ, 'missing.bin', 'octet'), 3000);
    assert.equal(answer?.opcode, Opcode.ERROR);
    assert.equal(answer.opcode === Opcode.ERROR ? answer.code : -1, 1);
    assert.ok(Date.now() - t0 < 2000);
  });

  test('an existing key on upload: ERROR 6', async () => {
    const answer = await rawExchange(gw.port, encodeRequest(Opcode.WRQ, 'exists.bin', 'octet'), 3000);
    assert.equal(answer?.opcode === Opcode.ERROR ? answer.code : -1, 6);
  });

  test('an upload that grows past --max-upload-size: ERROR 3 mid-transfer', async () => {
    const r = await tftpPut('big.bin', randomBytes(5000), { port: gw.port, timeoutMs: 3000 });
    assert.equal(r.error?.code, 3);
  });
});

describe('reads after an upload that replaced an object', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    gw = await startTestGateway(s3, bucket, ['--allow-write', '--allow-overwrite', '--metadata-ttl-ms', '60000']);
  });
  after(async () => {
    await gw?.stop();
    await s3?.cleanup();
  });

  test('see the new bytes at once, from another client and from the uploader', async () => {
    const old = randomBytes(3000);
    await putObject(s3, bucket, 'cfg.bin', old);
    const first = await tftpGet('cfg.bin', { port: gw.port });
    assert.deepEqual(first.data, old, 'the old object is cached (metadata TTL 60 s)');
    const fresh = randomBytes(3100);
    const up = await tftpPut('cfg.bin', fresh, { port: gw.port });
    assert.equal(up.error, undefined);
    // The upload is readable from its final ACK on (its linger, answering a resent final DATA, must not delay the read).
    const again = await tftpGet('cfg.bin', { port: gw.port });
    assert.equal(again.data.length, fresh.length);
    assert.deepEqual(again.data, fresh);
  });
});

describe('stop: transfers aborted at the drain deadline are told', () => {
  for (const mode of ['single', 'per-transfer'] as const) {
    test(`${mode}: the client gets ERROR 0 "Server shutting down" before the sockets close`, async () => {
      const s3 = await testS3();
      try {
        const bucket = await s3.createBucket();
        await putObject(s3, bucket, 'big.bin', randomBytes(200_000));
        const gw = await startTestGateway(s3, bucket, ['--port-mode', mode]);
        const peer = await UdpPeer.open();
        try {
          peer.send(encodeRequest(Opcode.RRQ, 'big.bin', 'octet', new Map([['blksize', '1024']])), gw.port);
          assert.equal((await peer.next(3000))?.packet.opcode, Opcode.OACK, 'session open');
          await gw.stop(0);
          // The session is not acknowledged, so the next packet it sends is the one that ends it.
          const last = await peer.next(1000);
          assert.equal(last?.packet.opcode, Opcode.ERROR, `last packet: ${JSON.stringify(last?.packet)}`);
          assert.match(last.packet.opcode === Opcode.ERROR ? last.packet.message : '', /Server shutting down/);
        } finally {
          await peer.close();
        }
      } finally {
        await s3.cleanup();
      }
    });
  }
});
