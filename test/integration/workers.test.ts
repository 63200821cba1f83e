import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { describe, test } from 'node:test';
import { slowGet, controlledPut } from '../observability/helpers.js';
import { sleep, until } from '../support/wait.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { getObject, listUploads, putObject, type TestS3, withBucket } from '../support/s3.js';
import { tftpGet } from '../support/tftp-client.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Sum of a metric's samples (labels matching `labels`), as /metrics has it. */
async function metric(gw: TestGateway, name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = await gw.gateway.metricValues(name);
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
}

/** The log lines of one transfer (by the client's port): started and finished. */
function linesOf(gw: TestGateway, port: number): Record<string, unknown>[] {
  return gw.logs.filter((l) => l.port === port && (l.msg === 'transfer started' || l.msg === 'transfer finished'));
}

/** Which worker served each finished transfer (client port → worker). */
function workerByPort(gw: TestGateway): Map<number, number> {
  const out = new Map<number, number>();
  for (const l of gw.logs) if (l.msg === 'transfer started' && typeof l.port === 'number') out.set(l.port, l.worker as number);
  return out;
}

/**
 * --workers 2: worker threads with SO_REUSEPORT sockets on one port, one block cache in the main
 * thread. These run whatever TFTPGW_TEST_WORKERS says (the flag wins).
 */
describe('worker threads', () => {
  let s3: TestS3;
  let bucket: string;
  withBucket((store, name) => {
    s3 = store;
    bucket = name;
  });

  test('flow affinity: each client transfer runs start to end on one worker, and both workers serve', async () => {
    const body = randomBytes(300 * KiB + 7);
    await putObject(s3, bucket, 'affinity.bin', body);
    const gw = await startTestGateway(s3, bucket, ['--workers', '2', '--range-size', '64KiB']);
    try {
      assert.equal(gw.gateway.workers?.workersRunning, 2);
      const results = await Promise.all(
        Array.from({ length: 24 }, (_, i) => tftpGet('affinity.bin', { port: gw.port, options: { blksize: '1024', windowsize: i % 2 ? '8' : '1' }, timeoutMs: 5000 })),
      );
      for (const r of results) {
        assert.equal(r.error, undefined);
        assert.equal(sha(r.data), sha(body));
      }
      await until(() => gw.transfers.length === 24, 5000, 'every transfer finished');
      const byPort = workerByPort(gw);
      assert.equal(byPort.size, 24);
      for (const [port, worker] of byPort) {
        const lines = linesOf(gw, port);
        assert.equal(lines.length, 2, `start and end of the transfer from port ${port}`);
        assert.ok(lines.every((l) => l.worker === worker), `port ${port}: ${JSON.stringify(lines.map((l) => l.worker))}`);
        assert.ok(worker === 1 || worker === 2);
      }
      // 24 flows hashed over two sockets: all on one worker has probability 2^-23.
      assert.equal(new Set(byPort.values()).size, 2, 'both workers served transfers');
      // No datagram of these flows arrived at the other worker (no hand-off was needed).
      assert.equal(await metric(gw, 'tftp_gateway_worker_handoffs_total'), 0);
      assert.equal(await metric(gw, 'tftp_gateway_transfers_finished_total', { operation: 'read', result: 'ok' }), 24, 'counters summed over workers');
    } finally {
      await gw.stop();
    }
  });

  test('one cache for the process: a storm on 2 workers reads each range from S3 once', async () => {
    const body = randomBytes(3 * MiB + 5 * KiB);
    await putObject(s3, bucket, 'storm.img', body);
    const gw = await startTestGateway(s3, bucket, ['--workers', '2', '--range-size', '512KiB', '--read-ahead', '2']);
    try {
      const results = await Promise.all(
        Array.from({ length: 16 }, (_, i) => tftpGet('storm.img', { port: gw.port, options: { blksize: '1468', windowsize: i % 3 ? '8' : '1' }, timeoutMs: 8000 })),
      );
      for (const r of results) {
        assert.equal(r.error, undefined);
        assert.equal(sha(r.data), sha(body));
      }
      await until(() => gw.transfers.length === 16, 5000, 'every transfer finished');
      assert.equal(new Set(workerByPort(gw).values()).size, 2, 'both workers served the storm');
      const ranges = Math.ceil(body.length / (512 * KiB));
      const fetched = await metric(gw, 'tftp_gateway_s3_bytes_fetched_total');
      assert.ok(fetched <= body.length * 1.05, `S3 bytes ${fetched} for a ${body.length}-byte object`);
      assert.equal(fetched, body.length, 'each byte read once');
      // A range may be read as several parts (sized from measured S3 latency and rate): at least one GET a range.
      assert.ok((await metric(gw, 'tftp_gateway_s3_requests_total', { operation: 'GetObject' })) >= ranges, 'a GetObject per range at least');
      assert.equal(await metric(gw, 'tftp_gateway_s3_requests_total', { operation: 'HeadObject' }), 1, 'one HEAD for the storm');
      // Every transfer took up every range once: a hit or a miss each, whichever worker it was on.
      const lookups = (await metric(gw, 'tftp_gateway_cache_hits_total')) + (await metric(gw, 'tftp_gateway_cache_misses_total'));
      assert.ok(lookups >= 16 * ranges, `cache lookups ${lookups}`);
      // Gauges the main thread owns are its value, not a sum over threads (each worker had a 1).
      assert.equal(await metric(gw, 'tftp_gateway_s3_reachable'), 1);
      assert.equal(await metric(gw, 'tftp_gateway_draining'), 0);
      const cacheBytes = await metric(gw, 'tftp_gateway_cache_bytes');
      assert.ok(cacheBytes >= body.length && cacheBytes <= ranges * 512 * KiB, `cache bytes ${cacheBytes}: the one cache, counted once`);
    } finally {
      await gw.stop();
    }
  });

  test('a killed worker: its transfers end (uploads aborted), the others finish, a replacement serves', async () => {
    const body = randomBytes(400 * KiB);
    await putObject(s3, bucket, 'long.bin', body);
    const gw = await startTestGateway(s3, bucket, ['--workers', '2', '--range-size', '128KiB', '--allow-write', '--upload-part-size', '5MiB', '--give-up-timeout', '5', '--stall-timeout', '8']);
    try {
      // Slow lock-step readers (about 400 blocks of 1 KiB, 5 ms apart) and uploads bigger than a
      // part: all under way on both workers when one is killed.
      const blocks = new Map<number, number>();
      const reads = Array.from({ length: 10 }, (_, i) =>
        slowGet(gw.port, 'long.bin', { blksize: 1024, ackDelayMs: 5, timeoutMs: 4000, onBlock: (n) => blocks.set(i, n) }),
      );
      const uploadBodies = Array.from({ length: 4 }, () => randomBytes(6 * MiB + 11));
      const uploads = uploadBodies.map((b, i) =>
        controlledPut(gw.port, `up/killed-${i}.bin`, b, { blksize: 1468, blockDelayMs: 1, timeoutMs: 4000 }).catch(
          (err: unknown) => ({ outcome: 'error' as const, error: { code: -1, message: String(err) } }),
        ),
      );
      await until(() => blocks.size === 10 && [...blocks.values()].every((n) => n > 20), 20_000, 'every reader under way');
      await until(() => gw.logs.filter((l) => l.msg === 'transfer started' && l.op === 'write').length === 4, 20_000, 'every upload under way');
      const byPort = workerByPort(gw);
      const onOne = [...byPort.values()].filter((w) => w === 1).length;
      const onTwo = [...byPort.values()].filter((w) => w === 2).length;
      assert.ok(onOne > 0 && onTwo > 0, `transfers on both workers (${onOne} / ${onTwo})`);

      await gw.gateway.workers!.kill(1);
      const gotReads = await Promise.all(reads.map((r) => r.catch((err: unknown) => ({ data: Buffer.alloc(0), error: { code: -1, message: String(err) } }))));
      const gotUploads = await Promise.all(uploads);

      // Transfers are told apart by their own client port, from the logs: which worker ran each.
      const started = gw.logs.filter((l) => l.msg === 'transfer started');
      const readPorts = started.filter((l) => l.op === 'read').map((l) => l.port as number);
      const survivorsOk = [];
      for (const r of gotReads) {
        if (r.error === undefined) {
          assert.equal(sha(r.data), sha(body), 'a finished read is complete and correct');
          survivorsOk.push(r);
        }
      }
      const readsOnTwo = readPorts.filter((p) => byPort.get(p) === 2).length;
      const readsOnOne = readPorts.filter((p) => byPort.get(p) === 1).length;
      assert.equal(survivorsOk.length, readsOnTwo, `the ${readsOnTwo} reads on worker 2 finish, the ${readsOnOne} on worker 1 end`);
      const finishedOnTwo = gw.transfers.filter((t) => t.worker === 2 && t.operation === 'read' && t.result === 'ok').length;
      assert.equal(finishedOnTwo, readsOnTwo);

      const writes = started.filter((l) => l.op === 'write');
      for (const [i, b] of uploadBodies.entries()) {
        const line = writes.find((l) => l.file === `up/killed-${i}.bin`)!;
        const stored = await getObject(s3, bucket, `up/killed-${i}.bin`);
        if (line.worker === 1) {
          assert.notEqual(gotUploads[i]!.outcome, 'ok', `upload ${i} on the killed worker did not succeed`);
          assert.equal(stored, undefined, `upload ${i} on the killed worker left no object`);
        } else {
          assert.equal(gotUploads[i]!.outcome, 'ok', `upload ${i} on worker 2: ${JSON.stringify(gotUploads[i])}`);
          assert.equal(sha(stored!), sha(b));
        }
      }
      await gw.gateway.dispatcher.settled();
      if (s3.kind === 'rgw') assert.equal(await listUploads(s3, bucket), 0, 'no multipart upload left');

      await until(() => gw.logs.some((l) => l.msg === 'worker replaced' && l.worker === 1), 10_000, 'the replacement');
      assert.equal(gw.gateway.workers?.workersRunning, 2);
      assert.equal(await metric(gw, 'tftp_gateway_worker_restarts_total'), 1);
      // The replacement listens on the same port: new transfers (on either worker) work.
      const again = await Promise.all(Array.from({ length: 8 }, () => tftpGet('long.bin', { port: gw.port, options: { blksize: '1468' }, timeoutMs: 5000 })));
      for (const r of again) assert.equal(sha(r.data), sha(body));
      await until(() => gw.gateway.dispatcher.activeSessions === 0, 5000, 'every session to end');
    } finally {
      await gw.stop();
    }
  });

  test('per-transfer ports work on workers (each worker binds its transfer sockets)', async () => {
    const body = randomBytes(100 * KiB + 1);
    await putObject(s3, bucket, 'pt.bin', body);
    const gw = await startTestGateway(s3, bucket, ['--workers', '2', '--port-mode', 'per-transfer']);
    try {
      const results = await Promise.all(Array.from({ length: 8 }, () => tftpGet('pt.bin', { port: gw.port, options: { blksize: '1468' }, timeoutMs: 5000 })));
      for (const r of results) assert.equal(sha(r.data), sha(body));
      await until(() => gw.logs.filter((l) => l.msg === 'transfer started').length === 8, 5000, 'logs');
      assert.ok(gw.logs.filter((l) => l.msg === 'transfer started').every((l) => typeof l.serverPort === 'number' && l.serverPort !== gw.port));
    } finally {
      await gw.stop();
    }
  });

  test('a port another socket has is refused at start, as without workers (SO_REUSEPORT does not join it)', async () => {
    const other = dgram.createSocket({ type: 'udp4', reusePort: true });
    await new Promise<void>((resolve) => other.bind({ port: 0, address: '127.0.0.1' }, resolve));
    try {
      const port = other.address().port;
      await assert.rejects(startTestGateway(s3, bucket, ['--workers', '2', '--listen', `127.0.0.1:${port}`]), /EADDRINUSE/);
    } finally {
      other.close();
    }
  });

  test('draining waits for the transfers of every worker', async () => {
    const body = randomBytes(200 * KiB);
    await putObject(s3, bucket, 'drain.bin', body);
    const gw = await startTestGateway(s3, bucket, ['--workers', '2']);
    const blocks = new Map<number, number>();
    const reads = Array.from({ length: 8 }, (_, i) => slowGet(gw.port, 'drain.bin', { blksize: 512, ackDelayMs: 2, timeoutMs: 5000, onBlock: (n) => blocks.set(i, n) }));
    await until(() => blocks.size === 8, 10_000, 'every reader under way');
    assert.equal(new Set(workerByPort(gw).values()).size, 2, 'transfers on both workers');
    const stopping = gw.stop(20_000);
    // The drain reaches each worker as a message that nothing acknowledges: give it a moment to land
    // (no assertion depends on this wait's length, only on the workers having the message).
    await sleep(50);
    const refused = await tftpGet('drain.bin', { port: gw.port, timeoutMs: 2000 });
    assert.deepEqual(refused.error, { code: 0, message: 'Server shutting down' });
    for (const r of await Promise.all(reads)) {
      assert.equal(r.error, undefined);
      assert.equal(sha(r.data), sha(body));
    }
    await stopping;
    assert.equal(gw.transfers.filter((t) => t.result === 'ok').length, 8);
  });
});
