import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { seededBytes } from '../support/prng.js';
import { putObject, testS3, type TestS3 } from '../support/s3.js';
import { sleep, until } from '../support/wait.js';
import { bootTarget, hold, orTimeout, httpResponseLogs, metric, parseResponses, urlOf, type HeldConnection, type Target } from './http-helpers.js';

/**
 * Slow and idle HTTP clients are cut off: a client dribbling its request head (slowloris) or
 * sending nothing at all by --http-header-timeout, an idle keep-alive connection by
 * --http-keepalive-timeout, and a client that asks for a large object and never reads by
 * --http-send-timeout (its response logged as not ok). Node checks the header deadline once a
 * second, so "cut off" is within the timeout plus that second plus a margin.
 */

const MiB = 1024 * 1024;
const HEADER_TIMEOUT_S = 1;
const KEEPALIVE_TIMEOUT_S = 1;
const SEND_TIMEOUT_S = 2;

describe('HTTP boot: header, keep-alive and send timeouts', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;
  let target: Target;
  const open: HeldConnection[] = [];
  const big = seededBytes(0x7173, 32 * MiB);

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'small.bin', Buffer.from('small'));
    await putObject(s3, bucket, 'big32.bin', big);
    gw = await startTestGateway(s3, bucket, [
      '--http-boot-listen', '127.0.0.1:0',
      '--http-header-timeout', String(HEADER_TIMEOUT_S),
      '--http-keepalive-timeout', String(KEEPALIVE_TIMEOUT_S),
      '--http-send-timeout', String(SEND_TIMEOUT_S),
    ]);
    target = bootTarget(gw);
  });

  after(async () => {
    for (const c of open) c.socket.destroy();
    await gw?.stop();
    await s3?.cleanup();
  });

  test('slowloris: a client dribbling its request head a byte every 300 ms is cut off within 3 s (408)', async () => {
    const head = 'GET /small.bin HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\nX-Padding: ' + 'p'.repeat(200) + '\r\n\r\n';
    const c = await hold(target);
    open.push(c);
    const t0 = performance.now();
    let sent = 0;
    let closedAt: number | undefined;
    void c.closed.then(() => (closedAt = performance.now()));
    while (closedAt === undefined && sent < head.length && performance.now() - t0 < 10_000) {
      if (!c.socket.destroyed) c.socket.write(head[sent++]!);
      await sleep(300);
    }
    await c.closed;
    const ms = (closedAt ?? performance.now()) - t0;
    assert.ok(sent < head.length, 'the head was never finished');
    assert.ok(ms < 3000, `cut off after ${Math.round(ms)} ms (${sent} bytes dribbled)`);
    assert.ok(ms >= HEADER_TIMEOUT_S * 1000 - 50, `not before the header timeout (${Math.round(ms)} ms)`);
    const answers = parseResponses(c.received());
    assert.equal(answers.problem, undefined);
    assert.deepEqual(answers.responses.map((r) => r.status), [408]);
  });

  test('a client that connects and sends nothing is cut off within 3 s too', async () => {
    const t0 = performance.now();
    const c = await hold(target);
    open.push(c);
    await orTimeout(c.closed, 10_000);
    const ms = performance.now() - t0;
    assert.ok(c.socket.destroyed, 'closed');
    assert.ok(ms < 3000, `cut off after ${Math.round(ms)} ms`);
    assert.deepEqual(parseResponses(c.received()).responses.map((r) => r.status), [408]);
  });

  test('an idle keep-alive connection is closed after --http-keepalive-timeout', async () => {
    const c = await hold(target, 'GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n');
    open.push(c);
    await until(() => parseResponses(c.received()).responses.length === 1, 10_000, 'the answer');
    const answeredAt = performance.now();
    const [answer] = parseResponses(c.received()).responses;
    assert.equal(answer!.status, 200);
    assert.match(answer!.headers.connection ?? '', /keep-alive/i, 'the connection was kept open for another request');
    await orTimeout(c.closed, 10_000);
    const idleMs = performance.now() - answeredAt;
    assert.ok(c.socket.destroyed, 'closed');
    assert.ok(idleMs < KEEPALIVE_TIMEOUT_S * 1000 + 2000, `closed ${Math.round(idleMs)} ms after the answer`);
    const all = parseResponses(c.received());
    assert.deepEqual([all.responses.length, all.rest.length], [1, 0], 'nothing but the one answer was sent');
  });

  test('a client that asks for 32 MiB and never reads is cut off within a few seconds; the response is logged as not ok', async () => {
    // Warm the object first: the time measured is the send timeout, not a cold fill from S3 on a busy machine.
    const warm = await fetch(urlOf(target, '/big32.bin'));
    assert.equal(Buffer.from(await warm.arrayBuffer()).length, big.length);
    const logsFrom = gw.logs.length;
    const t0 = performance.now();
    // Paused: the socket reads nothing, the kernel's buffers fill, the gateway's writes stop.
    const c = await hold(target, 'GET /big32.bin HTTP/1.1\r\nHost: x\r\n\r\n', { paused: true });
    open.push(c);
    // This connection's line only: the warm-up GET's line may reach the log pipe after it returned.
    const heldLines = (): Record<string, unknown>[] => httpResponseLogs(gw.logs.slice(logsFrom)).filter((l) => l.port === c.socket.localPort);
    await until(() => heldLines().length > 0, 15_000, 'the response to be logged');
    const ms = performance.now() - t0;
    const [line] = heldLines();
    assert.equal(line!.file, '/big32.bin');
    assert.equal(line!.status, 200);
    assert.notEqual(line!.result, 'ok', JSON.stringify(line));
    assert.equal(line!.level, 40, 'a response cut short is a warning');
    assert.ok(Number(line!.bytes) < big.length, `only part of the object was handed over (${String(line!.bytes)} bytes)`);
    assert.ok(ms < SEND_TIMEOUT_S * 1000 + 4000, `cut off after ${Math.round(ms)} ms`);
    // The client, reading now, finds the connection closed and the body short.
    let received = 0;
    c.socket.on('data', (d: Buffer) => (received += d.length));
    assert.notEqual(await orTimeout(c.closed, 10_000), 'timeout', 'the connection was closed');
    assert.ok(received < big.length, `the client got ${received} bytes of ${big.length} (Content-Length not met)`);
    await until(async () => (await metric(gw, 'tftp_gateway_http_connections')) === 0, 5000, 'no HTTP connection left');
  });
});
