import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ErrorCode } from '../../src/tftp/protocol/packet.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { internalError, S3FaultProxy, slowDown } from '../support/s3-fault-proxy.js';
import { getObject, listUploads, putObject, testS3, type TestS3 } from '../support/s3.js';
import { drained, get, put, sha } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const opts = { options: { blksize: '1468', windowsize: '16' } };

/** S3 faults injected by a proxy between the gateway and a real S3-compatible server. */
describe('S3 faults survived', () => {
  let s3: TestS3;
  let bucket: string;
  let proxy: S3FaultProxy;
  let gw: TestGateway;
  const objects = new Map<string, Buffer>();

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    for (const name of ['retry.bin', 'reset.bin', 'cached.bin', 'down.bin']) {
      const body = randomBytes(600 * KiB + 11);
      objects.set(name, body);
      await putObject(s3, bucket, name, body);
    }
    proxy = await S3FaultProxy.start(s3.endpoint);
    gw = await startTestGateway({ ...s3, endpoint: proxy.endpoint }, bucket, [
      '--allow-write', '--upload-part-size', '5MiB', '--range-size', '256KiB', '--read-ahead', '1',
      '--metadata-ttl-ms', '600000', '--s3-max-attempts', '4', '--s3-request-timeout-ms', '3000',
    ]);
  });

  after(async () => {
    await gw?.stop();
    await proxy?.close();
    await s3?.cleanup();
  });

  test('503 SlowDown and 500 are retried: reads and uploads succeed', async () => {
    proxy.inject((r) => r.operation === 'HeadObject' && r.key === 'retry.bin', internalError, 1);
    proxy.inject((r) => r.operation === 'GetObject' && r.key === 'retry.bin', slowDown, 2);
    const r = await get(gw.port, 'retry.bin', opts);
    assert.equal(r.error, undefined);
    assert.equal(sha(r.data), sha(objects.get('retry.bin')!));
    assert.equal(proxy.requests.filter((q) => q.key === 'retry.bin' && q.fault === 'status').length, 3);

    // A multipart upload (two parts) whose first UploadPart and Complete fail once each.
    proxy.inject((q) => q.operation === 'UploadPart' && q.key === 'up/retried.bin', internalError, 1);
    proxy.inject((q) => q.operation === 'CompleteMultipartUpload' && q.key === 'up/retried.bin', slowDown, 1);
    const body = randomBytes(5 * MiB + 5000);
    const w = await put(gw.port, 'up/retried.bin', body, opts);
    assert.equal(w.error, undefined);
    assert.equal(sha((await getObject(s3, bucket, 'up/retried.bin'))!), sha(body));
    assert.equal(proxy.requests.filter((q) => q.key === 'up/retried.bin' && q.fault === 'status').length, 2);
    proxy.clearFaults();
  });

  test('a connection reset mid-body re-requests the rest of the range', async () => {
    proxy.inject((r) => r.operation === 'GetObject' && r.key === 'reset.bin', { kind: 'reset-mid-body', afterBytes: 100_000 }, 1);
    const r = await get(gw.port, 'reset.bin', opts);
    assert.equal(r.error, undefined);
    assert.equal(sha(r.data), sha(objects.get('reset.bin')!));
    const gets = proxy.seen('GetObject', 'reset.bin');
    assert.equal(gets[0]?.fault, 'reset-mid-body');
    const first = /bytes=(\d+)-/.exec(gets[0].range ?? '')?.[1];
    // The same range is asked again from past the bytes that had arrived, not from its start.
    const resumed = gets.slice(1).find((g) => {
      const start = Number(/bytes=(\d+)-/.exec(g.range ?? '')?.[1]);
      return start > Number(first) && start <= Number(first) + 100_000 && start % (256 * KiB) !== 0;
    });
    assert.ok(resumed, `a resumed range request (saw ${gets.map((g) => g.range).join(', ')})`);
    proxy.clearFaults();
  });

  test('a store that stays down fails the transfer promptly with ERROR 0; cached objects go on being served', async () => {
    const warm = await get(gw.port, 'cached.bin', opts);
    assert.equal(sha(warm.data), sha(objects.get('cached.bin')!));
    proxy.down = true;
    try {
      const t0 = Date.now();
      const r = await get(gw.port, 'down.bin', { ...opts, timeoutMs: 15_000 });
      const ms = Date.now() - t0;
      assert.equal(r.error?.code, ErrorCode.NotDefined);
      assert.ok(ms < 10_000, `failed after ${ms} ms`);
      // Other objects are still served (from the cache) while the store is down.
      const cached = await get(gw.port, 'cached.bin', opts);
      assert.equal(cached.error, undefined);
      assert.equal(sha(cached.data), sha(objects.get('cached.bin')!));
    } finally {
      proxy.down = false;
    }
    const back = await get(gw.port, 'down.bin', opts);
    assert.equal(sha(back.data), sha(objects.get('down.bin')!));
    assert.ok(await drained(gw));
  });

  for (const failing of ['UploadPart', 'CompleteMultipartUpload'] as const) {
    test(`an upload whose ${failing} keeps failing leaves no object and no parts`, async (t) => {
      if (s3.kind !== 'rgw') return t.skip('needs Ceph RGW (ListMultipartUploads, abort semantics)');
      const key = `up/fails-${failing}.bin`;
      proxy.inject((q) => q.operation === failing && q.key === key, internalError);
      try {
        const w = await put(gw.port, key, randomBytes(5 * MiB + 5000), opts);
        assert.ok(w.error, 'the client is told');
        assert.ok(await drained(gw, 15_000));
        assert.equal(await getObject(s3, bucket, key), undefined);
        assert.equal(await listUploads(s3, bucket), 0, 'no multipart upload (and so no parts) left');
        assert.ok(proxy.seen('AbortMultipartUpload', key).length >= 1, 'the upload was aborted');
      } finally {
        proxy.clearFaults();
      }
    });
  }
});
