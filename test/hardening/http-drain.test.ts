import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { httpGet } from '../observability/helpers.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { seededBytes } from '../support/prng.js';
import { putObject, testS3, type TestS3 } from '../support/s3.js';
import { until } from '../support/wait.js';
import { bootTarget, exchange, hold, orTimeout, parseResponses, sha256, type HeldConnection } from './http-helpers.js';

/**
 * Drain over HTTP (gateway.stop, as on SIGTERM), on one thread and on two workers: a download in
 * progress when the drain starts completes whole; an idle keep-alive connection is closed at
 * once; a new connection is refused; /readyz on the ops port answers 503 at once.
 */

const MiB = 1024 * 1024;
const DRAIN_MS = 5000;

describe('HTTP boot drain', () => {
  let s3: TestS3;
  let bucket: string;
  const big = seededBytes(0xd4a1, 16 * MiB + 5);

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'big.bin', big);
    await putObject(s3, bucket, 'small.bin', Buffer.from('small'));
  });

  after(async () => {
    await s3?.cleanup();
  });

  for (const workers of [1, 2]) {
    test(`--workers ${workers}: a download in progress completes, an idle keep-alive connection closes, new connections are refused, /readyz is 503 at once`, { timeout: 60_000 }, async (t) => {
      const gw: TestGateway = await startTestGateway(s3, bucket, ['--http-boot-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--workers', String(workers)]);
      const target = bootTarget(gw);
      const ops = gw.gateway.httpAddress!;
      const open: HeldConnection[] = [];
      try {
        // A download that has started and is held back by its client (it stops reading).
        const download = await hold(target, 'GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n');
        open.push(download);
        await until(() => download.receivedBytes() > 64 * 1024, 10_000, 'the download to start');
        const head = download.received();
        const headLength = head.indexOf('\r\n\r\n') + 4;
        assert.match(head.toString('latin1', 0, headLength), /^HTTP\/1\.1 200 /);
        download.socket.pause();
        // An idle keep-alive connection: one answer, then nothing.
        const idle = await hold(target, 'GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n');
        open.push(idle);
        await until(() => parseResponses(idle.received()).responses.length === 1, 10_000, 'the keep-alive answer');
        assert.match(parseResponses(idle.received()).responses[0]!.headers.connection ?? '', /keep-alive/i);
        assert.equal((await httpGet(`http://${ops}/readyz`)).status, 200, 'ready before the drain');

        const t0 = performance.now();
        const stopping = gw.gateway.stop(DRAIN_MS);
        let stopped = false;
        let stoppedMs = 0;
        void stopping.then(() => {
          stopped = true;
          stoppedMs = performance.now() - t0;
        });

        const ready = await httpGet(`http://${ops}/readyz`);
        const readyMs = performance.now() - t0;
        assert.equal(ready.status, 503, ready.body);
        assert.ok(readyMs < 500, `/readyz answered 503 after ${Math.round(readyMs)} ms`);

        // The idle connection is closed at drain start (its keep-alive timeout is 15 s).
        assert.notEqual(await orTimeout(idle.closed, 2000), 'timeout', 'the idle keep-alive connection was closed');
        t.diagnostic(`idle keep-alive connection closed ${Math.round(performance.now() - t0)} ms after the drain started`);

        // A new connection is refused: no listener (ECONNREFUSED), reset in a closing listener's
        // queue (ECONNRESET: SO_REUSEPORT listeners on workers), or a 503 and a close.
        const late = await exchange(target, [Buffer.from('GET /small.bin HTTP/1.1\r\nHost: x\r\n\r\n')], { end: false, timeoutMs: 3000, answers: { count: 1, methods: ['GET'] } });
        const lateAnswers = parseResponses(late.data).responses.map((r) => r.status);
        assert.ok(
          ((late.error === 'ECONNREFUSED' || late.error === 'ECONNRESET') && late.data.length === 0) || (lateAnswers.length === 1 && lateAnswers[0] === 503),
          `a connection after the drain started: ${late.end} ${late.error ?? ''} ${JSON.stringify(late.data.toString('latin1').slice(0, 80))}`,
        );
        assert.equal(stopped, false, 'the drain waits for the download');

        // The held download resumes and completes whole; then its connection is closed.
        download.socket.resume();
        await until(() => download.receivedBytes() >= headLength + big.length || download.socket.destroyed, DRAIN_MS, 'the download to complete').catch((err: unknown) => {
          const lines = gw.logs.filter((l) => typeof l.msg === 'string' && !/malformed/.test(l.msg)).map((l) => `${String(l.time)} ${String(l.msg)} ${JSON.stringify(l.result ?? '')}`);
          throw new Error(`${String(err)}: ${download.receivedBytes()} bytes received, destroyed ${download.socket.destroyed}; ${JSON.stringify(lines)}`);
        });
        const body = download.received().subarray(headLength);
        assert.equal(body.length, big.length, 'the whole body');
        assert.equal(sha256(body), sha256(big));
        assert.notEqual(await orTimeout(download.closed, 2000), 'timeout', 'the connection is closed once its response is done');

        await stopping;
        const drainMs = stoppedMs;
        const drainLines = gw.logs.filter((l) => typeof l.msg === 'string' && !/malformed/.test(l.msg)).map((l) => `${String(l.time)} ${String(l.msg)}`);
        assert.ok(drainMs < DRAIN_MS, `the drain ended with the download (${Math.round(drainMs)} ms), not at its deadline: ${JSON.stringify(drainLines)}`);
        assert.equal(gw.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('drain deadline reached')).length, 0);
      } finally {
        for (const c of open) c.socket.destroy();
        await gw.stop(0);
      }
    });
  }
});
