import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { httpGet, scrape } from '../observability/helpers.js';
import { until } from '../support/wait.js';
import { CLIENT_NAMES, describeRun, download, sha256, upload, type ClientName, type DownloadResult, type RunResult } from '../support/clients.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { type S3FaultProxy, type ProxyMode, withFaultProxy } from '../support/s3-fault-proxy.js';
import { getObject, listUploads, putObject, type TestS3 } from '../support/s3.js';
import { drained } from './helpers.js';
import { S3Client } from '@aws-sdk/client-s3';
import { TransferError } from '../../src/errors.js';
import { S3ObjectStore } from '../../src/storage/s3-store.js';

/**
 * S3 outages with real clients, through a proxy that can turn the store into one that answers 503
 * to everything, one that accepts connections and never answers, or one that resets them:
 * cached objects keep booting for --stale-if-error, everything else gets a prompt, clear ERROR,
 * uploads leave nothing behind, and the gateway picks up new versions when S3 is back.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
/** What a TFTP client must get an answer within (atftp, tftp-hpa and PXE ROMs give up later). */
const ANSWER_BOUND_MS = 10_000;
const TTL_MS = 300;
const STALE_S = 4;

const clientAt = (i: number): ClientName => CLIENT_NAMES[i % CLIENT_NAMES.length]!;
const output = (r: RunResult): string => r.stdout + r.stderr;
/** Clients that print the server's ERROR text (curl only prints the code). */
const printsErrorText = (c: ClientName): boolean => c !== 'curl';

function logLines(gw: TestGateway, msg: RegExp, from = 0): Record<string, unknown>[] {
  return gw.logs.slice(from).filter((l) => typeof l.msg === 'string' && msg.test(l.msg));
}

interface Attempt {
  readonly client: ClientName;
  readonly startedAt: number;
  readonly result: DownloadResult;
}

describe('S3 outage: stale-if-error and prompt answers', () => {
  let s3: TestS3;
  let bucket: string;
  let proxy: S3FaultProxy;
  const setMode = (mode: ProxyMode): void => {
    proxy.mode = mode;
  };

  withFaultProxy((store, name, faults) => {
    s3 = store;
    bucket = name;
    proxy = faults;
  });

  test('a range read of a stale object (no byte from a hanging S3) fails within the retry budget', { timeout: 10_000 }, async () => {
    const body = randomBytes(300 * KiB);
    await putObject(s3, bucket, 'boot/range.bin', body);
    const client = new S3Client({
      endpoint: proxy.endpoint,
      region: s3.region,
      credentials: s3.credentials,
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const store = new S3ObjectStore(client, { bucket, partSize: 5 * MiB, uploadQueueSize: 1, rangeRetries: 3, retryBudgetMs: 800 });
    try {
      const info = await store.head('boot/range.bin');
      setMode('hang');
      const t0 = Date.now();
      await assert.rejects(
        store.readRange('boot/range.bin', info.etag, 0, Buffer.alloc(body.length), () => undefined),
        (err: unknown) => err instanceof TransferError && err.code === 'STORAGE_UNAVAILABLE',
      );
      const ms = Date.now() - t0;
      assert.ok(ms >= 700 && ms < 3000, `gave up after ${ms} ms (budget 800 ms)`);
      await until(() => proxy.hanging === 0, 2000, 'the hung request to be let go');
    } finally {
      setMode('pass');
      client.destroy();
    }
  });

  describe('503 everywhere, short stale window', () => {
    let gw: TestGateway;
    let http: string;

    before(async () => {
      gw = await startTestGateway({ ...s3, endpoint: proxy.endpoint }, bucket, [
        '--http-listen', '127.0.0.1:0', '--allow-write', '--allow-overwrite',
        '--range-size', '256KiB', '--read-ahead', '4',
        '--metadata-ttl-ms', String(TTL_MS), '--stale-if-error', String(STALE_S),
        '--s3-metadata-timeout-ms', '500', '--s3-retry-budget-ms', '2000', '--s3-max-attempts', '2',
      ]);
      http = gw.gateway.httpAddress!;
    });

    after(async () => {
      setMode('pass');
      await gw?.stop();
    });

    test('a cached object is served (same bytes) for the whole stale window, refused after it, and served in its new version once S3 is back', async () => {
      const v1 = randomBytes(MiB + 7);
      await putObject(s3, bucket, 'boot/warm.bin', v1);
      const warm = await download('tftp-hpa', { host: '127.0.0.1', port: gw.port }, 'boot/warm.bin');
      assert.ok(warm.ok, describeRun(warm));
      assert.equal(warm.sha256, sha256(v1));
      const m0 = await scrape(http);
      const logsFrom = gw.logs.length;

      setMode('unavailable');
      // The gateway's last good answer is the last HeadObject S3 answered; its window ends TTL + stale-if-error later.
      const lastOk = proxy.seen('HeadObject', 'boot/warm.bin').filter((r) => r.status === 200).at(-1)!;
      const windowEnd = lastOk.at + TTL_MS + STALE_S * 1000;
      const margin = 800;

      const attempts: Attempt[] = [];
      let checkedDuring = false;
      for (let i = 0; Date.now() < windowEnd + 2500 && i < 200; i++) {
        const startedAt = Date.now();
        const client = clientAt(i);
        const result = await download(client, { host: '127.0.0.1', port: gw.port }, 'boot/warm.bin', { timeoutMs: 15_000 });
        attempts.push({ client, startedAt, result });
        if (!checkedDuring && result.ok && startedAt > lastOk.at + TTL_MS + 200 && startedAt < windowEnd - 1500) {
          // Mid-window: S3 is reported unreachable, one object is stale, and the task stays ready.
          checkedDuring = true;
          const m = await scrape(http);
          assert.equal(m.value('tftp_gateway_s3_reachable'), 0);
          assert.equal(m.value('tftp_gateway_stale_objects'), 1);
          const ready = await httpGet(`http://${http}/readyz`);
          assert.equal(ready.status, 200, ready.body);
          assert.match(ready.body, /S3 unreachable/);
        }
      }
      const summary = attempts.map((a) => `${a.client}@${a.startedAt - windowEnd}ms:${a.result.ok ? 'ok' : 'fail'}`).join(' ');
      assert.ok(checkedDuring, `a download mid-window (${summary})`);
      const inWindow = attempts.filter((a) => a.startedAt < windowEnd - margin);
      const afterWindow = attempts.filter((a) => a.startedAt > windowEnd + margin);
      for (const a of inWindow) {
        assert.ok(a.result.ok, `inside the stale window: ${describeRun(a.result)}\n${summary}`);
        assert.equal(a.result.sha256, sha256(v1), `same version, same bytes (${a.client})`);
      }
      assert.ok(inWindow.some((a) => a.startedAt >= windowEnd - 2000), `served until near the end of the window: ${summary}`);
      assert.ok(afterWindow.length >= 1, `a download after the window: ${summary}`);
      for (const a of afterWindow) {
        assert.ok(!a.result.ok, `after the stale window the object is refused: ${describeRun(a.result)}`);
        assert.ok(a.result.durationMs < ANSWER_BOUND_MS, `answered in ${a.result.durationMs} ms`);
        if (printsErrorText(a.client)) assert.match(output(a.result), /Storage unavailable/, describeRun(a.result));
      }

      const m1 = await scrape(http);
      const stale = inWindow.filter((a) => a.startedAt > lastOk.at + TTL_MS + 100).length;
      assert.ok(m1.value('tftp_gateway_stale_transfers_total') - m0.value('tftp_gateway_stale_transfers_total') >= stale, `at least ${stale} stale transfers counted`);
      assert.ok(m1.value('tftp_gateway_metadata_refresh_failures_total', { cause: 'throttled' }) > 0);
      assert.equal(m1.value('tftp_gateway_stale_objects'), 0, 'nothing served stale after the window');
      assert.equal(m1.value('tftp_gateway_s3_reachable'), 0);
      // One line when serving stale starts and one when it stops, not one per request.
      assert.equal(logLines(gw, /^serving stale metadata/, logsFrom).length, 1);
      assert.deepEqual(logLines(gw, /^stopped serving stale metadata/, logsFrom).map((l) => l.reason), ['expired']);
      assert.equal(logLines(gw, /^S3 unreachable/, logsFrom).length, 1);

      // S3 is back, with a new version of the object: that is what is served.
      const v2 = randomBytes(600 * KiB + 3);
      await putObject(s3, bucket, 'boot/warm.bin', v2);
      setMode('pass');
      const fresh = await download('atftp', { host: '127.0.0.1', port: gw.port }, 'boot/warm.bin');
      assert.ok(fresh.ok, describeRun(fresh));
      assert.equal(fresh.sha256, sha256(v2));
      assert.equal((await scrape(http)).value('tftp_gateway_s3_reachable'), 1);
      assert.equal(logLines(gw, /^S3 reachable again/, logsFrom).length, 1);
      const ready = await httpGet(`http://${http}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(ready.body, 'ready\n');
    });

    test('S3 back inside the stale window: the next refresh serves the new version (never a mix)', async () => {
      const v1 = randomBytes(300 * KiB + 5);
      await putObject(s3, bucket, 'boot/flip.bin', v1);
      const warm = await download('busybox', { host: '127.0.0.1', port: gw.port }, 'boot/flip.bin');
      assert.equal(warm.sha256, sha256(v1), describeRun(warm));
      const logsFrom = gw.logs.length;
      setMode('unavailable');
      const m0 = await scrape(http);
      // Served stale once the TTL has passed (polled: a transfer inside the TTL is fresh, not stale).
      await until(async () => {
        const r = await download('tftp-hpa', { host: '127.0.0.1', port: gw.port }, 'boot/flip.bin');
        assert.equal(r.sha256, sha256(v1), describeRun(r));
        return (await scrape(http)).value('tftp_gateway_stale_transfers_total') > m0.value('tftp_gateway_stale_transfers_total');
      }, 5000, 'a stale transfer');

      const v2 = randomBytes(200 * KiB + 9);
      await putObject(s3, bucket, 'boot/flip.bin', v2);
      setMode('pass');
      const seen: string[] = [];
      await until(async () => {
        const r = await download(clientAt(seen.length), { host: '127.0.0.1', port: gw.port }, 'boot/flip.bin');
        assert.ok(r.ok, describeRun(r));
        assert.ok(r.sha256 === sha256(v1) || r.sha256 === sha256(v2), 'one version or the other, whole');
        seen.push(r.sha256 === sha256(v2) ? 'new' : 'old');
        return r.sha256 === sha256(v2);
      }, 5000, 'the new version');
      assert.ok(seen.length <= 2, `the first refresh after S3 answered picked up the new version (${seen.join(', ')})`);
      assert.deepEqual(logLines(gw, /^stopped serving stale metadata/, logsFrom).map((l) => l.reason), ['refreshed']);
      assert.equal((await scrape(http)).value('tftp_gateway_stale_objects'), 0);
    });

    test('an upload while S3 is known to be down fails at once with "Storage unavailable" and leaves nothing (overwrite allowed)', async () => {
      setMode('unavailable');
      try {
        // S3 is seen failing first (an uncached read), then the upload is refused before any data.
        const cold = await download('tftp-hpa', { host: '127.0.0.1', port: gw.port }, 'boot/none.bin');
        assert.ok(!cold.ok);
        assert.match(output(cold), /Storage unavailable/, describeRun(cold));
        for (const client of ['tftp-hpa', 'busybox'] as const) {
          const key = `up/during-503-${client}.bin`;
          const r = await upload(client, { host: '127.0.0.1', port: gw.port }, key, randomBytes(300 * KiB));
          assert.ok(!r.ok, describeRun(r));
          assert.ok(r.durationMs < ANSWER_BOUND_MS, `answered in ${r.durationMs} ms`);
          assert.match(output(r), /Storage unavailable/, describeRun(r));
          assert.equal(proxy.seen('PutObject', key).length + proxy.seen('CreateMultipartUpload', key).length, 0, 'no write reached S3');
        }
      } finally {
        setMode('pass');
      }
      assert.ok(await drained(gw, 10_000));
      for (const client of ['tftp-hpa', 'busybox']) assert.equal(await getObject(s3, bucket, `up/during-503-${client}.bin`), undefined);
    });
  });

  describe('S3 accepting connections and never answering, or resetting them (default timeouts)', () => {
    let gw: TestGateway;
    let http: string;

    before(async () => {
      gw = await startTestGateway({ ...s3, endpoint: proxy.endpoint }, bucket, ['--http-listen', '127.0.0.1:0', '--allow-write', '--upload-part-size', '5MiB']);
      http = gw.gateway.httpAddress!;
    });

    after(async () => {
      setMode('pass');
      await gw?.stop();
    });

    test('a cold task is not ready while S3 hangs: it has nothing to serve', async () => {
      setMode('hang');
      try {
        const t0 = Date.now();
        const ready = await httpGet(`http://${http}/readyz`, 8000);
        assert.equal(ready.status, 503);
        assert.match(ready.body, /S3 unreachable.*nothing cached/);
        assert.ok(Date.now() - t0 < 5000, `readiness answered in ${Date.now() - t0} ms`);
      } finally {
        setMode('pass');
      }
    });

    for (const mode of ['hang', 'reset'] as const) {
      test(`${mode}: uncached reads and uploads get ERROR "Storage unavailable" within ${ANSWER_BOUND_MS / 1000} s; cached objects still download; nothing left in S3`, async () => {
        const cachedBody = randomBytes(700 * KiB + 1);
        await putObject(s3, bucket, `boot/cached-${mode}.bin`, cachedBody);
        const warm = await download('tftp-hpa', { host: '127.0.0.1', port: gw.port }, `boot/cached-${mode}.bin`);
        assert.equal(warm.sha256, sha256(cachedBody), describeRun(warm));
        await putObject(s3, bucket, `boot/cold-${mode}.bin`, randomBytes(100 * KiB));

        setMode(mode);
        try {
          const ep = { host: '127.0.0.1', port: gw.port };
          const gets = CLIENT_NAMES.map((c) => download(c, ep, `boot/cold-${mode}.bin`, { timeoutMs: 30_000 }));
          const puts = [
            upload('tftp-hpa', ep, `up/${mode}-small.bin`, randomBytes(200 * KiB), { timeoutMs: 30_000 }),
            upload('atftp', ep, `up/${mode}-multipart.bin`, randomBytes(6 * MiB), { timeoutMs: 30_000 }),
          ];
          for (const r of [...(await Promise.all(gets)), ...(await Promise.all(puts))]) {
            assert.ok(!r.ok, describeRun(r));
            assert.ok(!r.timedOut && r.durationMs < ANSWER_BOUND_MS, `answered in ${r.durationMs} ms: ${describeRun(r)}`);
            if (printsErrorText(r.client)) assert.match(output(r), /Storage unavailable/, describeRun(r));
          }
          // The cached object is still served, promptly (stale once its TTL has passed).
          const t0 = Date.now();
          const cached = await download('atftp', ep, `boot/cached-${mode}.bin`);
          assert.ok(cached.ok, describeRun(cached));
          assert.equal(cached.sha256, sha256(cachedBody));
          assert.ok(Date.now() - t0 < ANSWER_BOUND_MS);
          const ready = await httpGet(`http://${http}/readyz`, 8000);
          assert.equal(ready.status, 200, ready.body);
          assert.match(ready.body, /S3 unreachable/);
          assert.equal((await scrape(http)).value('tftp_gateway_s3_reachable'), 0);
          // Still inside the outage: a request a client sent again just before its ERROR arrived is
          // answered within the budget too (once S3 is back it would open a real transfer).
          assert.ok(await drained(gw, ANSWER_BOUND_MS));
        } finally {
          setMode('pass');
        }
        assert.equal(await getObject(s3, bucket, `up/${mode}-small.bin`), undefined);
        assert.equal(await getObject(s3, bucket, `up/${mode}-multipart.bin`), undefined);
        if (s3.kind === 'rgw') assert.equal(await listUploads(s3, bucket), 0, 'no multipart upload left');
        // Back to normal: the cold object is served.
        const back = await download('tftp-hpa', { host: '127.0.0.1', port: gw.port }, `boot/cold-${mode}.bin`);
        assert.ok(back.ok, describeRun(back));
      });
    }
  });
});
