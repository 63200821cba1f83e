import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { encodeAck, encodeError, encodeRequest, ErrorCode, Opcode } from '../../src/tftp/protocol/packet.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { getObject, listUploads, putObject, testS3, type TestS3 } from '../support/s3.js';
import { rawExchange, tftpGet, tftpPut } from '../support/tftp-client.js';
import { UdpPeer } from '../support/udp-peer.js';
import { controlledPut, delta, httpGet, scrape, slowGet, type Exposition } from './helpers.js';
import { until } from '../support/wait.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

describe('metrics after real transfers', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;
  let http: string;
  const small = randomBytes(3000);
  const medium = randomBytes(100_000);

  const metrics = (): Promise<Exposition> => scrape(http);
  /** Sessions end a moment after the client's last packet: wait for the table to empty. */
  const settled = async (): Promise<void> => {
    await until(() => gw.gateway.dispatcher.activeSessions === 0, 5000, 'sessions to end');
    await gw.gateway.dispatcher.settled();
  };

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'boot/small.bin', small);
    await putObject(s3, bucket, 'boot/medium.bin', medium);
    gw = await startTestGateway(s3, bucket, [
      '--http-listen', '127.0.0.1:0',
      '--allow-write',
      '--upload-part-size', '5MiB',
      '--range-size', '256KiB',
      '--retries', '2',
      '--rto-initial-ms', '200',
      '--rto-min-ms', '100',
      '--rto-max-ms', '300',
    ]);
    http = gw.gateway.httpAddress!;
  });

  after(async () => {
    await gw?.stop();
    await s3?.cleanup();
  });

  test('/metrics is Prometheus text on the gateway registry; no label carries a file name or address', async () => {
    const res = await httpGet(`http://${http}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.contentType ?? '', /^text\/plain/);
    // Series exist from the start, so dashboards see zeros rather than "no data".
    const m = await metrics();
    assert.equal(m.samples.some((s) => s.name === 'tftp_gateway_active_sessions' && s.labels.operation === 'read'), true);
    assert.equal(m.value('tftp_gateway_draining'), 0);
    const allowed = new Set(['operation', 'result', 'direction', 'protocol', 'code', 'type', 'reason', 'outcome', 'cause', 'state', 'le']);
    for (const s of m.samples) for (const label of Object.keys(s.labels)) assert.ok(allowed.has(label), `${s.name} has label ${label}`);
  });

  test('reads: transfers, bytes, packets, S3 calls and the cache move by the right amounts', async () => {
    const before = await metrics();
    // (The reads use a client that makes sure its final ACK leaves: the server's session ends on it.)
    const a = await slowGet(gw.port, 'boot/medium.bin', { ackDelayMs: 0, blksize: 1468, options: { tsize: '0' } });
    const b = await slowGet(gw.port, 'boot/small.bin', { ackDelayMs: 0 });
    assert.equal(a.error, undefined);
    assert.equal(b.error, undefined);
    assert.equal(sha(a.data), sha(medium));
    assert.equal(sha(b.data), sha(small));
    await settled();
    const after = await metrics();
    const d = delta(before, after);
    assert.equal(d('tftp_gateway_transfers_started_total', { operation: 'read' }), 2);
    assert.equal(d('tftp_gateway_transfers_finished_total', { operation: 'read', result: 'ok' }), 2);
    assert.equal(d('tftp_gateway_transfers_finished_total'), 2);
    assert.equal(d('tftp_gateway_transfer_bytes_total', { direction: 'sent' }), 103_000);
    assert.equal(d('tftp_gateway_transfer_duration_seconds_count', { operation: 'read' }), 2);
    assert.equal(after.value('tftp_gateway_active_sessions', { operation: 'read' }), 0);
    assert.equal(d('tftp_gateway_packets_received_total', { type: 'RRQ' }), 2);
    // 69 DATA at 1468 (last one short) + 6 DATA at 512; ACK 0 answers the OACK.
    const retransmitted = d('tftp_gateway_retransmissions_total');
    assert.equal(d('tftp_gateway_packets_sent_total', { type: 'DATA' }), 75 + retransmitted);
    assert.equal(d('tftp_gateway_packets_sent_total', { type: 'OACK' }), 1);
    assert.ok(d('tftp_gateway_packets_received_total', { type: 'ACK' }) >= 76);
    // Cold cache: each object read once from S3, exactly its bytes.
    assert.equal(d('tftp_gateway_s3_requests_total', { operation: 'HeadObject', outcome: 'ok' }), 2);
    assert.equal(d('tftp_gateway_s3_requests_total', { operation: 'GetObject', outcome: 'ok' }), 2);
    assert.equal(d('tftp_gateway_s3_request_duration_seconds_count', { operation: 'GetObject' }), 2);
    assert.equal(d('tftp_gateway_s3_bytes_fetched_total'), 103_000);
    assert.ok(d('tftp_gateway_cache_misses_total') >= 2);
    assert.ok(after.value('tftp_gateway_cache_bytes') >= 103_000);

    // Again: served from the cache, nothing fetched (bytes served grow, bytes fetched do not).
    const again = await slowGet(gw.port, 'boot/medium.bin', { ackDelayMs: 0, blksize: 1468 });
    assert.equal(sha(again.data), sha(medium));
    await settled();
    const third = await metrics();
    const d2 = delta(after, third);
    assert.equal(d2('tftp_gateway_transfer_bytes_total', { direction: 'sent' }), 100_000);
    assert.equal(d2('tftp_gateway_s3_bytes_fetched_total'), 0);
    assert.equal(d2('tftp_gateway_s3_requests_total', { operation: 'GetObject' }), 0);
    assert.equal(d2('tftp_gateway_cache_misses_total'), 0);
    // The one range of the object was taken from the cache by the second transfer: one hit.
    assert.equal(d2('tftp_gateway_cache_hits_total'), 1);
  });

  test('bytes sent move while a transfer runs, and add up to the file once it ends', async () => {
    const before = await metrics();
    let blocks = 0;
    const running = slowGet(gw.port, 'boot/medium.bin', { ackDelayMs: 5, blksize: 512, onBlock: (b) => (blocks = b) });
    await until(() => blocks >= 40, 5000, 'forty blocks received');
    const during = delta(before, await metrics());
    const midway = during('tftp_gateway_transfer_bytes_total', { direction: 'sent' });
    assert.ok(midway >= 40 * 512 && midway < 100_000, `bytes counted mid-transfer: ${midway}`);
    assert.equal(sha((await running).data), sha(medium));
    await settled();
    const d = delta(before, await metrics());
    assert.equal(d('tftp_gateway_transfer_bytes_total', { direction: 'sent' }), 100_000);
  });

  test('writes: single PUT and multipart upload, bytes uploaded, multipart started and completed', async () => {
    const before = await metrics();
    const one = randomBytes(3000);
    const multi = randomBytes(6 * MiB + 123);
    for (const [name, body] of [['up/one.bin', one], ['up/multi.bin', multi]] as const) {
      const put = await tftpPut(name, body, { port: gw.port, options: { blksize: '1468', tsize: String(body.length) } });
      assert.equal(put.error, undefined, name);
      assert.equal(sha((await getObject(s3, bucket, name))!), sha(body));
    }
    await settled();
    const d = delta(before, await metrics());
    assert.equal(d('tftp_gateway_transfers_started_total', { operation: 'write' }), 2);
    assert.equal(d('tftp_gateway_transfers_finished_total', { operation: 'write', result: 'ok' }), 2);
    assert.equal(d('tftp_gateway_transfer_bytes_total', { direction: 'received' }), one.length + multi.length);
    assert.equal(d('tftp_gateway_packets_received_total', { type: 'WRQ' }), 2);
    assert.ok(d('tftp_gateway_packets_received_total', { type: 'DATA' }) >= 3 + Math.floor(multi.length / 1468) + 1);
    assert.equal(d('tftp_gateway_s3_bytes_uploaded_total'), one.length + multi.length);
    assert.equal(d('tftp_gateway_s3_requests_total', { operation: 'PutObject', outcome: 'ok' }), 1);
    assert.equal(d('tftp_gateway_s3_requests_total', { operation: 'UploadPart', outcome: 'ok' }), 2);
    assert.equal(d('tftp_gateway_s3_multipart_uploads_started_total'), 1);
    assert.equal(d('tftp_gateway_s3_multipart_uploads_completed_total'), 1);
    assert.equal(d('tftp_gateway_s3_multipart_uploads_aborted_total'), 0);
    // The overwrite checks: a HEAD that finds nothing is not an S3 failure.
    assert.ok(d('tftp_gateway_s3_requests_total', { operation: 'HeadObject', outcome: 'not_found' }) >= 2);
    assert.equal(d('tftp_gateway_s3_requests_total', { operation: 'HeadObject', outcome: 'server_error' }), 0);
  });

  test('an abandoned multipart upload is aborted and counted', async (t) => {
    if (s3.kind !== 'rgw') return t.skip('needs Ceph RGW (s3rver has no AbortMultipartUpload)');
    const before = await metrics();
    const body = randomBytes(11 * MiB);
    // lib-storage creates the multipart upload once more than one part has arrived: past 10 MiB the
    // client goes silent, the session times out and the upload is aborted.
    const put = await controlledPut(gw.port, 'up/abandoned.bin', body, { blksize: 1468, stallAfter: 10 * MiB + 1468 * 10 });
    assert.equal(put.outcome, 'stalled');
    await until(() => gw.gateway.dispatcher.activeSessions === 0, 10_000, 'the upload session to time out');
    await gw.gateway.dispatcher.settled();
    const d = delta(before, await metrics());
    assert.equal(d('tftp_gateway_transfers_finished_total', { operation: 'write', result: 'timeout' }), 1);
    assert.equal(d('tftp_gateway_s3_multipart_uploads_started_total'), 1);
    assert.equal(d('tftp_gateway_s3_multipart_uploads_aborted_total'), 1);
    assert.equal(d('tftp_gateway_s3_multipart_uploads_completed_total'), 0);
    assert.equal(d('tftp_gateway_s3_requests_total', { operation: 'AbortMultipartUpload', outcome: 'ok' }), 1);
    assert.equal(await getObject(s3, bucket, 'up/abandoned.bin'), undefined);
    assert.equal(await listUploads(s3, bucket), 0);
  });

  test('errors: refusals, ERROR codes, client errors, timeouts, malformed and stray packets', async () => {
    const before = await metrics();
    // Refused before a transfer starts: missing file (ERROR 1), existing file (ERROR 6).
    assert.equal((await tftpGet('boot/missing.bin', { port: gw.port })).error?.code, ErrorCode.FileNotFound);
    assert.equal((await tftpPut('boot/small.bin', randomBytes(10), { port: gw.port })).error?.code, ErrorCode.FileExists);

    // A client that gives up with an ERROR mid-transfer.
    const quitter = await UdpPeer.open();
    quitter.send(encodeRequest(Opcode.RRQ, 'boot/medium.bin', 'octet', new Map()), gw.port);
    const first = await quitter.next(3000);
    assert.equal(first?.packet.opcode, Opcode.DATA);
    quitter.send(encodeAck(1), first.port);
    // DATA 2 shows the ACK was taken; then the client quits.
    assert.ok(await quitter.next(3000, (r) => r.packet.opcode === Opcode.DATA && r.packet.block === 2), 'DATA 2');
    quitter.send(encodeError(0, 'user cancelled'), first.port);
    // A client that stops answering: retransmissions (--retries 2), then a timeout and ERROR 0.
    const silent = await UdpPeer.open();
    silent.send(encodeRequest(Opcode.RRQ, 'boot/small.bin', 'octet', new Map()), gw.port);
    assert.ok(await silent.next(3000), 'the silent client\'s session opened');
    await settled();
    await quitter.close();
    await silent.close();

    // Junk (ignored, counted) and an ACK from a stranger (ERROR 5).
    assert.equal(await rawExchange(gw.port, Buffer.from([0xff, 0xff, 1, 2]), 300), undefined);
    const stray = await rawExchange(gw.port, encodeAck(7), 1000);
    assert.equal(stray?.opcode, Opcode.ERROR);

    const d = delta(before, await metrics());
    assert.equal(d('tftp_gateway_requests_refused_total'), 2);
    assert.equal(d('tftp_gateway_errors_sent_total', { code: String(ErrorCode.FileNotFound) }), 1);
    assert.equal(d('tftp_gateway_errors_sent_total', { code: String(ErrorCode.FileExists) }), 1);
    assert.equal(d('tftp_gateway_errors_sent_total', { code: String(ErrorCode.UnknownTransferId) }), 1);
    assert.equal(d('tftp_gateway_errors_sent_total', { code: '0' }), 1, 'the timeout ERROR');
    assert.equal(d('tftp_gateway_s3_requests_total', { operation: 'HeadObject', outcome: 'not_found' }), 1);
    assert.equal(d('tftp_gateway_transfers_started_total', { operation: 'read' }), 2);
    assert.equal(d('tftp_gateway_transfers_started_total', { operation: 'write' }), 0);
    assert.equal(d('tftp_gateway_transfers_finished_total', { operation: 'read', result: 'client-error' }), 1);
    assert.equal(d('tftp_gateway_transfers_finished_total', { operation: 'read', result: 'timeout' }), 1);
    assert.equal(d('tftp_gateway_timeouts_total'), 3);
    assert.equal(d('tftp_gateway_retransmissions_total'), 2);
    assert.equal(d('tftp_gateway_packets_received_total', { type: 'malformed' }), 1);
    assert.equal(d('tftp_gateway_packets_received_total', { type: 'ERROR' }), 1);
    // ERRORs leave through the dispatcher (refusals, stray) and through sessions (timeout).
    assert.equal(d('tftp_gateway_packets_sent_total', { type: 'ERROR' }), 4);
  });

  test('/healthz and /readyz answer 200 while serving', async () => {
    const health = await httpGet(`http://${http}/healthz`);
    assert.equal(health.status, 200);
    const ready = await httpGet(`http://${http}/readyz`);
    assert.equal(ready.status, 200, ready.body);
    assert.equal((await httpGet(`http://${http}/nope`)).status, 404);
  });
});

describe('health and readiness', () => {
  let s3: TestS3;
  let bucket: string;

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'big.bin', randomBytes(200 * 1024));
  });
  after(async () => {
    await s3?.cleanup();
  });

  test('/readyz is 503 when the bucket cannot be reached with our credentials; /healthz stays 200', async () => {
    const gw = await startTestGateway(s3, `${bucket}-missing`, ['--http-listen', '127.0.0.1:0']);
    try {
      const http = gw.gateway.httpAddress!;
      const ready = await httpGet(`http://${http}/readyz`);
      assert.equal(ready.status, 503);
      assert.match(ready.body, /S3 bucket check failed/);
      assert.equal((await httpGet(`http://${http}/healthz`)).status, 200);
      // The readiness answer is cached: a second probe does not call S3 again.
      const m1 = await scrape(http);
      await httpGet(`http://${http}/readyz`);
      const m2 = await scrape(http);
      assert.equal(delta(m1, m2)('tftp_gateway_s3_requests_total', { operation: 'HeadBucket' }), 0);
      assert.equal(m2.value('tftp_gateway_s3_requests_total', { operation: 'HeadBucket', outcome: 'ok' }), 0);
    } finally {
      await gw.stop();
    }
  });

  test('draining: /readyz 503 at once, /healthz 200 while the sockets are bound, new requests get ERROR 0', async () => {
    const gw = await startTestGateway(s3, bucket, ['--http-listen', '127.0.0.1:0']);
    const http = gw.gateway.httpAddress!;
    try {
      assert.equal((await httpGet(`http://${http}/readyz`)).status, 200);
      let blocks = 0;
      const download = slowGet(gw.port, 'big.bin', { blksize: 512, ackDelayMs: 3, onBlock: (n) => (blocks = n) });
      await until(() => blocks >= 5, 5000, 'the download to start');
      const stopping = gw.gateway.stop(10_000);
      const ready = await httpGet(`http://${http}/readyz`);
      assert.equal(ready.status, 503);
      assert.match(ready.body, /draining/);
      assert.equal((await httpGet(`http://${http}/healthz`)).status, 200);
      assert.equal((await scrape(http)).value('tftp_gateway_draining'), 1);
      const refused = await tftpGet('big.bin', { port: gw.port });
      assert.deepEqual(refused.error, { code: 0, message: 'Server shutting down' });
      const got = await download;
      assert.equal(got.error, undefined);
      assert.equal(got.data.length, 200 * 1024);
      await stopping;
    } finally {
      await gw.stop();
    }
  });
});
