import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { encodeAck, encodeError, encodeRequest, ErrorCode, Opcode } from '../../src/tftp/protocol/packet.js';
import { CLIENT_NAMES, describeRun, download, sha256, upload, type ClientName, type Endpoint } from '../support/clients.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { getObject, putObject, testS3, type TestS3 } from '../support/s3.js';
import { tftpGet } from '../support/tftp-client.js';
import { UdpPeer } from '../support/udp-peer.js';
import { finishedLine, hasIpv6Loopback, ipv6Endpoint, logMark, expectPacket, receiveFile, specFor, startedLine, toNetascii } from './helpers.js';
import { GATEWAY_FLAGS, MiB } from './matrix.js';

/**
 * Everything beside the blksize/windowsize matrix: netascii with tftp-hpa, IPv6, per-transfer
 * ports (RFC 1350 TIDs) and the UEFI PXE size probe (tsize, ERROR 8, request again).
 */

/** The largest blksize (and windowsize 16 where possible) each client can ask. */
const BEST: Record<ClientName, { blksize: number; windowsize: number }> = {
  'tftp-hpa': { blksize: 512, windowsize: 1 },
  atftp: { blksize: 1468, windowsize: 16 },
  curl: { blksize: 1468, windowsize: 1 },
  busybox: { blksize: 1468, windowsize: 1 },
};

/** Unix text that exercises netascii: LF, bare CR, a literal CR LF, and a CR LF split across blocks on the wire. */
function netasciiText(): Buffer {
  const parts = [
    'a'.repeat(511), '\n', // on the wire CR is byte 511 (end of block 1), LF starts block 2
    'line two\n', 'bare\rcr\n', 'crlf already\r\n', '\n\n', 'tab\there\n',
    'b'.repeat(1000), '\r', // CR NUL straddles another block boundary somewhere
    'x'.repeat(700), '\n', 'ends with a bare CR\r',
  ];
  return Buffer.from(parts.join(''), 'latin1');
}

describe('interop: modes, address families, ports and the PXE size probe', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;
  let perTransfer: TestGateway;
  let v6: boolean;
  const mib = randomBytes(MiB);
  const small = randomBytes(513);

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'm/1mib.bin', mib);
    await putObject(s3, bucket, 'm/513.bin', small);
    await putObject(s3, bucket, 'm/text.txt', netasciiText());
    v6 = await hasIpv6Loopback();
    const listen6 = v6 ? ['--listen', '[::1]:0'] : [];
    gw = await startTestGateway(s3, bucket, [...GATEWAY_FLAGS, ...listen6]);
    perTransfer = await startTestGateway(s3, bucket, [...GATEWAY_FLAGS, '--port-mode', 'per-transfer', ...listen6]);
  });

  after(async () => {
    await gw?.stop();
    await perTransfer?.stop();
    await s3?.cleanup();
  });

  const v4 = (g: TestGateway): Endpoint => ({ host: g.host, port: g.port });

  async function checkDownload(g: TestGateway, ep: Endpoint, client: ClientName, key: string, want: Buffer): Promise<void> {
    const mark = logMark(g);
    const r = await download(client, ep, key, specFor({ client, ...BEST[client] }, { timeoutMs: 30_000 }));
    assert.ok(r.ok, `client failed: ${describeRun(r)}`);
    assert.equal(r.sha256, sha256(want), `sha256 of the downloaded file; ${describeRun(r)}`);
    const started = startedLine(g, mark, key, 'read');
    assert.equal(started.client, ep.host, 'client address family as the gateway saw it');
    assert.equal(started.blksize, BEST[client].blksize);
    assert.equal((await finishedLine(g, mark, started)).result, 'ok');
  }

  async function checkUpload(g: TestGateway, ep: Endpoint, client: ClientName, key: string, body: Buffer): Promise<void> {
    const mark = logMark(g);
    const r = await upload(client, ep, key, body, specFor({ client, ...BEST[client] }, { timeoutMs: 30_000 }));
    assert.ok(r.ok, `client failed: ${describeRun(r)}`);
    const stored = await getObject(s3, bucket, key);
    assert.ok(stored, `no object ${key}; ${describeRun(r)}`);
    assert.equal(sha256(stored), sha256(body), 'sha256 of the stored object');
    assert.equal(startedLine(g, mark, key, 'write').client, ep.host);
  }

  describe('netascii with tftp-hpa (-m netascii)', () => {
    test('download: the gateway sends CR LF / CR NUL, tftp-hpa turns it back into the stored text', async () => {
      const text = netasciiText();
      const wire = toNetascii(text);
      assert.notEqual(wire.length, text.length); // the file really needs converting
      const mark = logMark(gw);
      const r = await download('tftp-hpa', v4(gw), 'm/text.txt', { mode: 'netascii', timeoutMs: 20_000 });
      assert.ok(r.ok, describeRun(r));
      assert.equal(r.sha256, sha256(text), `tftp-hpa's local file is the stored Unix text; got ${JSON.stringify(r.data.toString('latin1').slice(-40))}`);
      const started = startedLine(gw, mark, 'm/text.txt', 'read');
      assert.equal(started.mode, 'netascii');
      const finished = await finishedLine(gw, mark, started);
      assert.equal(finished.result, 'ok');
      assert.equal(finished.bytes, wire.length, 'bytes on the wire = the netascii form');
      // The wire form itself, byte for byte, against the independent encoder.
      const raw = await tftpGet('m/text.txt', { port: gw.port, mode: 'netascii' });
      assert.equal(raw.error, undefined);
      assert.equal(sha256(raw.data), sha256(wire), 'netascii wire bytes');
    });

    test('upload: tftp-hpa sends netascii, the object holds the Unix text', async () => {
      const text = Buffer.concat([netasciiText(), Buffer.from('\nupload\r\n', 'latin1')]);
      const key = 'm/up/text.txt';
      const mark = logMark(gw);
      const r = await upload('tftp-hpa', v4(gw), key, text, { mode: 'netascii', timeoutMs: 20_000 });
      assert.ok(r.ok, describeRun(r));
      const stored = await getObject(s3, bucket, key);
      assert.ok(stored, 'object stored');
      assert.equal(sha256(stored), sha256(text), `stored text; got ${JSON.stringify(stored.toString('latin1').slice(-40))}`);
      const started = startedLine(gw, mark, key, 'write');
      assert.equal(started.mode, 'netascii');
      const finished = await finishedLine(gw, mark, started, 10_000);
      assert.equal(finished.bytes, toNetascii(text).length, 'bytes received = the netascii form');
    });
  });

  describe('IPv6 (--listen [::1]:0)', () => {
    for (const client of CLIENT_NAMES) {
      test(`${client} downloads 1 MiB and uploads 513 B over ::1`, { timeout: 70_000 }, async (t) => {
        if (!v6) return t.skip('no IPv6 loopback on this host (::1 cannot be bound)');
        const ep = ipv6Endpoint(gw);
        assert.ok(ep, 'gateway listens on ::1');
        await checkDownload(gw, ep, client, 'm/1mib.bin', mib);
        await checkUpload(gw, ep, client, `m/up/v6-${client}.bin`, randomBytes(513));
      });
    }
  });

  describe('per-transfer ports (--port-mode per-transfer)', () => {
    test('the gateway really answers from a new port', async () => {
      const peer = await UdpPeer.open('127.0.0.1');
      try {
        peer.send(encodeRequest(Opcode.RRQ, 'm/513.bin', 'octet'), perTransfer.port);
        const first = await expectPacket(peer, 3000, 'DATA 1');
        assert.equal(first.packet.opcode, Opcode.DATA);
        assert.notEqual(first.port, perTransfer.port, 'DATA comes from a fresh transfer port');
        peer.send(encodeError(0, 'done'), first.port);
      } finally {
        await peer.close();
      }
    });

    for (const client of CLIENT_NAMES) {
      test(`${client}: 513 B and 1 MiB down, 300 KB up`, { timeout: 100_000 }, async () => {
        await checkDownload(perTransfer, v4(perTransfer), client, 'm/513.bin', small);
        await checkDownload(perTransfer, v4(perTransfer), client, 'm/1mib.bin', mib);
        await checkUpload(perTransfer, v4(perTransfer), client, `m/up/pt-${client}.bin`, randomBytes(300_000));
      });
    }

    for (const client of ['tftp-hpa', 'atftp'] as const) {
      test(`${client} over IPv6: 1 MiB down, 513 B up`, { timeout: 70_000 }, async (t) => {
        if (!v6) return t.skip('no IPv6 loopback on this host (::1 cannot be bound)');
        const ep = ipv6Endpoint(perTransfer);
        assert.ok(ep);
        await checkDownload(perTransfer, ep, client, 'm/1mib.bin', mib);
        await checkUpload(perTransfer, ep, client, `m/up/pt6-${client}.bin`, randomBytes(513));
      });
    }
  });

  describe('PXE size probe (UEFI: tsize 0 blksize 1468, OACK, ERROR 8, request again without tsize)', () => {
    for (const samePort of [true, false]) {
      test(`second request from ${samePort ? 'the same' : 'a new'} client port`, { timeout: 30_000 }, async () => {
        const key = 'm/1mib.bin';
        const mark = logMark(gw);
        const probe = await UdpPeer.open('127.0.0.1');
        const fetcher = samePort ? probe : await UdpPeer.open('127.0.0.1');
        try {
          probe.send(encodeRequest(Opcode.RRQ, key, 'octet', new Map([['tsize', '0'], ['blksize', '1468']])), gw.port);
          const oack = await expectPacket(probe, 3000, 'OACK to the probe');
          assert.equal(oack.packet.opcode, Opcode.OACK, `got ${JSON.stringify(oack.packet)}`);
          assert.equal(oack.port, gw.port, 'single-port mode answers from the listening port');
          assert.deepEqual([...oack.packet.options], [['tsize', String(MiB)], ['blksize', '1468']]);
          probe.send(encodeError(ErrorCode.OptionRefused, 'size probe only'), oack.port);

          fetcher.send(encodeRequest(Opcode.RRQ, key, 'octet', new Map([['blksize', '1468']])), gw.port);
          const oack2 = await expectPacket(fetcher, 3000, 'OACK to the real request');
          assert.equal(oack2.packet.opcode, Opcode.OACK, `got ${JSON.stringify(oack2.packet)}`);
          assert.deepEqual([...oack2.packet.options], [['blksize', '1468']], 'no tsize when not asked');
          fetcher.send(encodeAck(0), oack2.port);
          const data = await receiveFile(fetcher, oack2.port, 1468);
          assert.equal(sha256(data), sha256(mib));

          const starts = gw.logs.slice(mark).filter((l) => l.msg === 'transfer started' && l.key === key);
          assert.equal(starts.length, 2, 'probe and fetch are two transfers');
          assert.equal((await finishedLine(gw, mark, starts[0]!)).result, 'size-probe', 'the probe counts as a size probe, not a failure');
          assert.equal((await finishedLine(gw, mark, starts[1]!)).result, 'ok');
        } finally {
          await probe.close();
          await fetcher.close();
        }
      });
    }
  });
});
