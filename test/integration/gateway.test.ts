import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { encodeData, encodeError, encodeRequest, ErrorCode, Opcode } from '../../src/tftp/protocol/packet.js';
import { getObject, listUploads, putObject, testS3, type TestS3 } from '../support/s3.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { tftpGet, tftpPut } from '../support/tftp-client.js';
import { UdpPeer } from '../support/udp-peer.js';
import { eventually } from '../support/wait.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('gateway against a real S3-compatible server', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;
  const files = new Map<string, Buffer>();

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    for (const size of [0, 511, 512, 513, 1024 * 1024 + 7]) {
      const body = randomBytes(size);
      files.set(`boot/f${size}`, body);
      await putObject(s3, bucket, `images/boot/f${size}`, body);
    }
    gw = await startTestGateway(s3, bucket, ['--s3-prefix', 'images', '--allow-write', '--upload-part-size', '5MiB', '--range-size', '256KiB']);
  });

  after(async () => {
    await gw?.stop();
    await s3?.cleanup();
  });

  for (const size of [0, 511, 512, 513, 1024 * 1024 + 7]) {
    for (const blksize of [512, 1468]) {
      test(`reads a ${size}-byte object at blksize ${blksize}`, async () => {
        const want = files.get(`boot/f${size}`)!;
        const got = await tftpGet(`boot/f${size}`, { port: gw.port, options: { blksize: String(blksize), tsize: '0' } });
        assert.equal(got.error, undefined);
        assert.equal(sha(got.data), sha(want));
        // tsize is answered with the object size (left out for an empty object, see src/tftp/requests.ts).
        assert.equal(got.oack?.get('tsize'), size > 0 ? String(size) : undefined);
        assert.equal(got.oack?.get('blksize'), String(blksize));
      });
    }
  }

  test('reads with windowsize 16 across range boundaries', async () => {
    const want = files.get(`boot/f${1024 * 1024 + 7}`)!;
    const got = await tftpGet(`/boot/f${1024 * 1024 + 7}`, { port: gw.port, options: { blksize: '1000', windowsize: '16' } });
    assert.equal(got.error, undefined);
    assert.equal(got.oack?.get('windowsize'), '16');
    assert.equal(sha(got.data), sha(want));
  });

  test('clamps blksize to --max-blksize and ignores unknown options', async () => {
    const got = await tftpGet('boot/f513', { port: gw.port, options: { blksize: '65464', multicast: '', 'x-vendor': '7' } });
    assert.equal(got.error, undefined);
    assert.equal(got.oack?.get('blksize'), '1468');
    assert.equal(got.oack?.has('multicast'), false);
    assert.equal(got.oack?.has('x-vendor'), false);
  });

  test('a missing object is ERROR 1', async () => {
    const got = await tftpGet('boot/nope', { port: gw.port });
    assert.equal(got.error?.code, ErrorCode.FileNotFound);
  });

  test('parent references and control characters are ERROR 2', async () => {
    for (const name of ['../secret', 'boot/../../x', '..\\x', 'a\u0001b']) {
      const got = await tftpGet(name, { port: gw.port });
      assert.equal(got.error?.code, ErrorCode.AccessViolation, name);
    }
  });

  test('mode mail is refused', async () => {
    const got = await tftpGet('boot/f512', { port: gw.port, mode: 'mail' as 'octet' });
    assert.equal(got.error?.code, ErrorCode.IllegalOperation);
  });

  test('uploads a small file (single PUT) and a multipart file; objects match', async () => {
    for (const size of [3000, 11 * 1024 * 1024 + 5]) {
      const body = randomBytes(size);
      const put = await tftpPut(`up/w${size}`, body, { port: gw.port, options: { blksize: '1468', tsize: String(size) } });
      assert.equal(put.error, undefined);
      // The final ACK came only after the object was stored: it must be there now.
      const stored = await getObject(s3, bucket, `images/up/w${size}`);
      assert.ok(stored, 'object exists when the client sees success');
      assert.equal(sha(stored), sha(body));
      const back = await tftpGet(`up/w${size}`, { port: gw.port, options: { blksize: '1468' } });
      assert.equal(sha(back.data), sha(body));
    }
  });

  test('an upload onto an existing key is ERROR 6 by default', async () => {
    const got = await tftpPut('boot/f512', randomBytes(10), { port: gw.port });
    assert.equal(got.error?.code, ErrorCode.FileExists);
    assert.equal(sha((await getObject(s3, bucket, 'images/boot/f512'))!), sha(files.get('boot/f512')!));
  });

  test('netascii upload converts CR LF to LF', async () => {
    const wire = Buffer.from('line one\r\nline two\r\nbare\r\0cr\r\n');
    const got = await tftpPut('up/text.txt', wire, { port: gw.port, mode: 'netascii' });
    assert.equal(got.error, undefined);
    assert.equal((await getObject(s3, bucket, 'images/up/text.txt'))!.toString(), 'line one\nline two\nbare\rcr\n');
    const back = await tftpGet('up/text.txt', { port: gw.port, mode: 'netascii' });
    assert.equal(back.data.toString(), wire.toString());
  });

  test('an upload abandoned mid-transfer leaves no object and no multipart parts', async (t) => {
    if (s3.kind !== 'rgw') return t.skip('needs Ceph RGW (multipart abort semantics)');
    const peer = await UdpPeer.open();
    try {
      peer.send(encodeRequest(Opcode.WRQ, 'up/abandoned', 'octet', new Map([['blksize', '1468']])), gw.port);
      // The OACK tells the transfer's port.
      const oack = await peer.next(3000);
      assert.equal(oack?.packet.opcode, Opcode.OACK, 'the WRQ was answered');
      const serverPort = oack.port;
      const block = randomBytes(1468);
      // 12 MiB: past two 5 MiB parts, so lib-storage has created a multipart upload and sent a part.
      for (let n = 1; n <= 8600; n++) {
        peer.send(encodeData(n & 0xffff, block), serverPort);
        const ack = await peer.next(2000, (r) => r.packet.opcode !== Opcode.ACK || r.packet.block === (n & 0xffff));
        assert.deepEqual(ack?.packet, { opcode: Opcode.ACK, block: n & 0xffff }, `ACK ${n}`);
      }
      // The test means something only if there is a multipart upload to abort.
      await eventually(async () => (await listUploads(s3, bucket)) > 0, 5000);
      assert.equal(await listUploads(s3, bucket), 1, 'a multipart upload is in progress before the client gives up');
      peer.send(encodeError(0, 'user cancelled'), serverPort);
    } finally {
      await peer.close();
    }
    await eventually(() => gw.gateway.dispatcher.activeSessions === 0, 5000);
    assert.equal(gw.gateway.dispatcher.activeSessions, 0, 'the ERROR ended the session');
    await gw.gateway.dispatcher.settled();
    assert.equal(await getObject(s3, bucket, 'images/up/abandoned'), undefined);
    assert.equal(await listUploads(s3, bucket), 0);
  });
});
