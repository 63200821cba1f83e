import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { seededBytes } from '../support/prng.js';
import { type S3FaultProxy, type ProxyMode, withFaultProxy } from '../support/s3-fault-proxy.js';
import { putObject, type TestS3 } from '../support/s3.js';
import { until } from '../support/wait.js';
import { bootTarget, curl, hold, httpResponseLogs, logsAtLeast, metric, request, sha256, urlOf, type Target } from './http-helpers.js';

/**
 * S3 outages seen through the HTTP boot front end (the store behind a switchable fault proxy):
 * an object never cached gets 503 with Retry-After within the retry budget, whatever the outage
 * looks like; an object fetched before the outage is served whole (stale-if-error); and an object
 * replaced in S3 while a slow client downloads it never yields mixed bytes: the body is the old
 * version, whole or cut short (Content-Length not met).
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const RETRY_BUDGET_MS = 2000;
const TTL_MS = 300;
const MODES: readonly ProxyMode[] = ['unavailable', 'reset', 'hang'];

describe('HTTP boot during S3 outages', () => {
  let s3: TestS3;
  let bucket: string;
  let proxy: S3FaultProxy;

  withFaultProxy((store, name, faults) => {
    s3 = store;
    bucket = name;
    proxy = faults;
  });

  describe('through the fault proxy', () => {
    let gw: TestGateway;
    let target: Target;

    before(async () => {
      gw = await startTestGateway({ ...s3, endpoint: proxy.endpoint }, bucket, [
        '--http-boot-listen', '127.0.0.1:0',
        '--metadata-ttl-ms', String(TTL_MS), '--stale-if-error', '60',
        '--s3-metadata-timeout-ms', '500', '--s3-retry-budget-ms', String(RETRY_BUDGET_MS), '--s3-max-attempts', '2',
      ]);
      target = bootTarget(gw);
    });

    after(async () => {
      proxy.mode = 'pass';
      await gw?.stop();
    });

    for (const mode of MODES) {
      test(`${mode}: an object never cached gets 503 with Retry-After within the retry budget (GET and HEAD)`, async () => {
        await putObject(s3, bucket, `cold-${mode}.bin`, seededBytes(1, 100 * KiB));
        proxy.mode = mode;
        try {
          for (const method of ['GET', 'HEAD']) {
            const t0 = performance.now();
            const r = await request(target, `/cold-${mode}.bin`, { method, timeoutMs: 20_000 });
            const ms = performance.now() - t0;
            assert.equal(r.status, 503, `${method}: ${r.status} ${r.body.toString()}`);
            assert.match(String(r.headers['retry-after']), /^\d+$/, 'Retry-After in seconds');
            assert.ok(ms < RETRY_BUDGET_MS + 1500, `${method} answered after ${Math.round(ms)} ms (budget ${RETRY_BUDGET_MS} ms)`);
          }
        } finally {
          proxy.mode = 'pass';
        }
        // Back to normal: served.
        const back = await request(target, `/cold-${mode}.bin`);
        assert.equal(back.status, 200);
        assert.deepEqual(back.body, seededBytes(1, 100 * KiB));
      });
    }

    test('an object fetched before the outage is served whole during it (stale-if-error), whatever the outage looks like', async () => {
      const body = seededBytes(2, 3 * MiB + 7);
      await putObject(s3, bucket, 'warm.bin', body);
      const warm = await curl(urlOf(target, '/warm.bin'));
      assert.equal(warm.sha256, sha256(body));
      for (const mode of MODES) {
        const staleBefore = await metric(gw, 'tftp_gateway_stale_transfers_total');
        proxy.mode = mode;
        try {
          // Past the metadata TTL the gateway must ask S3 again and cannot: it serves what it holds.
          const lastAnswered = proxy.seen('HeadObject', 'warm.bin').filter((r) => r.status === 200).at(-1)!.at;
          await until(() => Date.now() > lastAnswered + TTL_MS + 50, 5000, 'the metadata TTL to pass');
          const r = await curl(urlOf(target, '/warm.bin'), [], 20_000);
          assert.equal(r.status, 200, `${mode}: ${r.stderr}`);
          assert.equal(r.sha256, sha256(body), `${mode}: the cached version, whole`);
          assert.ok(r.ms < RETRY_BUDGET_MS + 1500, `${mode}: served after ${Math.round(r.ms)} ms`);
          assert.ok((await metric(gw, 'tftp_gateway_stale_transfers_total')) > staleBefore, `${mode}: counted as served stale`);
        } finally {
          proxy.mode = 'pass';
        }
        // S3 answers again: the next lookup confirms the version (and the next mode starts fresh).
        assert.equal((await curl(urlOf(target, '/warm.bin'))).sha256, sha256(body));
      }
      assert.deepEqual(logsAtLeast(gw.logs, 50), [], 'no error-level log line for an outage');
    });

    test('a client that leaves while its object is looked up: the response ends and releases its session and connection', async () => {
      await putObject(s3, bucket, 'slow-head.bin', seededBytes(3, 2 * MiB));
      const logsFrom = gw.logs.length;
      proxy.inject((r) => r.operation === 'HeadObject' && r.key === 'slow-head.bin', { kind: 'delay', ms: 300 });
      try {
        const c = await hold(target, 'GET /slow-head.bin HTTP/1.1\r\nHost: x\r\n\r\n');
        await until(() => proxy.seen('HeadObject', 'slow-head.bin').length > 0, 5000, 'the lookup to reach S3');
        // A reset, not a FIN (the server allows half-open connections): the socket is gone at once.
        c.socket.resetAndDestroy();
        const lines = (): Record<string, unknown>[] => httpResponseLogs(gw.logs.slice(logsFrom)).filter((l) => l.key === 'slow-head.bin');
        await until(() => lines().length > 0, 5000, 'the response to end and be logged');
        assert.equal(lines()[0]!.result, 'client-error', JSON.stringify(lines()[0]));
        await until(async () => (await metric(gw, 'tftp_gateway_active_sessions', { protocol: 'http' })) === 0, 5000, 'no HTTP session left');
        await until(async () => (await metric(gw, 'tftp_gateway_http_connections')) === 0, 5000, 'no HTTP connection left');
      } finally {
        proxy.clearFaults();
      }
    });
  });

  test('an object replaced in S3 while a slow client downloads it: the body is the old version, whole or cut short, never mixed', async (t) => {
    if (s3.kind !== 'rgw') {
      t.skip('needs conditional reads (If-Match) from the S3 server: the embedded s3rver has none');
      return;
    }
    const size = 16 * MiB;
    const v1 = seededBytes(11, size);
    const v2 = seededBytes(12, size);
    await putObject(s3, bucket, 'replaced.bin', v1);
    // A cache far smaller than the object: the later ranges must come from S3 after the replacement.
    const gw = await startTestGateway(s3, bucket, ['--http-boot-listen', '127.0.0.1:0', '--range-size', '256KiB', '--cache-size', '1MiB', '--metadata-ttl-ms', String(TTL_MS)]);
    const target = bootTarget(gw);
    try {
      const logsFrom = gw.logs.length;
      // The client reads the head and the first bytes, stops reading while the object is replaced,
      // then reads on slowly (64 KiB every 5 ms) to the end or the close.
      const received = await new Promise<Buffer>((resolve, reject) => {
        const socket = net.connect(target.port, target.host);
        const chunks: Buffer[] = [];
        let replaced = false;
        socket.on('error', () => undefined);
        socket.on('close', () => resolve(Buffer.concat(chunks)));
        socket.setTimeout(60_000, () => socket.destroy());
        socket.on('data', (d: Buffer) => {
          chunks.push(d);
          if (!replaced) {
            replaced = true;
            socket.pause();
            putObject(s3, bucket, 'replaced.bin', v2).then(() => {
              const pace = setInterval(() => {
                if (socket.destroyed) return clearInterval(pace);
                socket.resume();
                setTimeout(() => socket.pause(), 1);
              }, 5);
              socket.once('close', () => clearInterval(pace));
            }, reject);
          }
        });
        socket.write(`GET /replaced.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      });
      const headEnd = received.indexOf('\r\n\r\n');
      const head = received.toString('latin1', 0, headEnd);
      assert.match(head, /^HTTP\/1\.1 200 /);
      assert.match(head, new RegExp(`\r\ncontent-length: ${size}\r\n`, 'i'));
      const body = received.subarray(headEnd + 4);
      assert.ok(body.length <= size, `no more than Content-Length (${body.length})`);
      assert.ok(body.equals(v1.subarray(0, body.length)), `the ${body.length} bytes received are the old version's first bytes, none of the new one's`);
      // The log line reaches the test through the gateway's stdout pipe, possibly after the close.
      await until(() => httpResponseLogs(gw.logs.slice(logsFrom)).length > 0, 10_000, 'the response to be logged');
      const [line] = httpResponseLogs(gw.logs.slice(logsFrom));
      t.diagnostic(`${body.length === size ? 'the old version whole' : `cut after ${body.length} of ${size} bytes`}; logged ${JSON.stringify({ result: line?.result, bytes: line?.bytes, detail: line?.detail })}`);
      if (body.length < size) assert.equal(line?.result, 'replaced', 'a cut response is logged as replaced');
      // The next download is the new version, whole.
      await until(async () => (await curl(urlOf(target, '/replaced.bin'))).sha256 === sha256(v2), 10_000, 'the new version to be served');
      assert.deepEqual(logsAtLeast(gw.logs, 50), [], 'no error-level log line');
    } finally {
      await gw.stop();
    }
  });
});
