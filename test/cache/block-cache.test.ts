import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';
import { startS3Proxy, type S3Proxy } from '../../bench/lib/proxy.js';
import { encodeAck, encodeRequest, Opcode, type Packet } from '../../src/tftp/protocol/packet.js';
import { TransferError } from '../../src/errors.js';
import { BlockCache } from '../../src/storage/block-cache.js';
import { CachedObjectSource } from '../../src/storage/object-source.js';
import { FrontRead, S3ObjectStore } from '../../src/storage/s3-store.js';
import { startTestGateway } from '../support/gateway.js';
import { putObject, testS3, type TestS3, withBucket } from '../support/s3.js';
import { tftpGet } from '../support/tftp-client.js';
import { UdpPeer } from '../support/udp-peer.js';

const KiB = 1024;

interface Counted {
  readonly store: S3ObjectStore;
  readonly gets: () => number;
  readonly heads: () => number;
  readonly fetched: () => number;
  readonly client: S3Client;
}

/** A store on the real S3-compatible server (optionally through a proxy), counting requests and bytes. */
function countedStore(s3: TestS3, bucket: string, endpoint = s3.endpoint, rangeRetries = 3): Counted {
  const client = new S3Client({
    endpoint,
    region: s3.region,
    credentials: s3.credentials,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  let gets = 0;
  let heads = 0;
  let fetched = 0;
  // One count per S3 call, whatever its outcome (SDK retries inside the call are not counted).
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'GetObjectCommand') gets++;
      if (context.commandName === 'HeadObjectCommand') heads++;
      return next(args);
    },
    { step: 'initialize', name: 'countCallsForTest' },
  );
  const store = new S3ObjectStore(client, {
    bucket,
    partSize: 5 * 1024 * KiB,
    uploadQueueSize: 1,
    rangeRetries,
    onBytesFetched: (n) => (fetched += n),
  });
  return { store, client, gets: () => gets, heads: () => heads, fetched: () => fetched };
}

describe('block cache against a real S3-compatible server', () => {
  let s3: TestS3;
  let bucket: string;
  const objects = new Map<string, Buffer>();

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    for (const [key, size] of [['one', 3 * 256 * KiB + 1000], ['big', 1024 * KiB + 7], ['swap', 512 * KiB]] as const) {
      const body = randomBytes(size);
      objects.set(key, body);
      await putObject(s3, bucket, key, body);
    }
  });

  after(async () => {
    await s3?.cleanup();
  });

  test('concurrent misses for one range make one S3 request (single flight), all waiters served', async () => {
    const c = countedStore(s3, bucket);
    const cache = new BlockCache(c.store, { maxBytes: 4 * 256 * KiB, rangeSize: 256 * KiB, metadataTtlMs: 5000 });
    try {
      const infos = await Promise.all(Array.from({ length: 10 }, () => cache.stat('one')));
      assert.equal(c.heads(), 1, 'one HEAD for ten concurrent stats');
      const info = infos[0]!;
      const entries = Array.from({ length: 20 }, () => cache.range('one', info, 1));
      assert.ok(entries.every((e) => e === entries[0]), 'every caller gets the same entry');
      await Promise.all(entries.map((e) => e.waitFor(256 * KiB)));
      assert.equal(c.gets(), 1);
      assert.equal(c.fetched(), 256 * KiB);
      assert.ok(entries[0]!.buffer.equals(objects.get('one')!.subarray(256 * KiB, 512 * KiB)));
      // The HEAD answer is reused within its TTL.
      await cache.stat('one');
      assert.equal(c.heads(), 1);
    } finally {
      cache.close();
      c.client.destroy();
    }
  });

  test("headWithFront: HEAD's answer and the first bytes in one GET; an empty object gets a HEAD; a missing one is NOT_FOUND", async () => {
    const c = countedStore(s3, bucket);
    try {
      await putObject(s3, bucket, 'empty', Buffer.alloc(0));
      const body = objects.get('one')!;
      const head = await c.store.head('one');
      // The answer comes with the headers; the front's bytes follow.
      const ended = (f: FrontRead): Promise<Buffer> =>
        new Promise((resolve) => {
          if (f.ended) return resolve(f.buffer.subarray(0, f.filled));
          f.watch(() => f.ended && resolve(f.buffer.subarray(0, f.filled)));
        });
      const got = await c.store.headWithFront('one', 100 * KiB);
      assert.deepEqual(got.info, head, 'the same size, ETag and Last-Modified as HeadObject');
      assert.ok((await ended(got.front)).equals(body.subarray(0, 100 * KiB)));
      // Asking for more than the object has: the whole object.
      const small = await c.store.headWithFront('big', 4096 * KiB);
      assert.equal(small.info.size, objects.get('big')!.length);
      assert.ok((await ended(small.front)).equals(objects.get('big')!));
      const empty = await c.store.headWithFront('empty', 64 * KiB);
      assert.equal(empty.info.size, 0);
      assert.equal((await ended(empty.front)).length, 0);
      await assert.rejects(c.store.headWithFront('no-such-object', 64 * KiB), (err: unknown) => err instanceof TransferError && err.code === 'NOT_FOUND');
    } finally {
      c.client.destroy();
    }
  });

  test('a HEAD answer expires after its TTL and is asked again', async () => {
    const c = countedStore(s3, bucket);
    let now = 10_000;
    const cache = new BlockCache(c.store, { maxBytes: 1024 * KiB, rangeSize: 256 * KiB, metadataTtlMs: 1000, now: () => now });
    try {
      await cache.stat('one');
      now += 500;
      await cache.stat('one');
      assert.equal(c.heads(), 1);
      now += 1000;
      await cache.stat('one');
      assert.equal(c.heads(), 2);
    } finally {
      cache.close();
      c.client.destroy();
    }
  });

  test('the cache stays within its byte budget; ranges a session holds are not fetched twice', async () => {
    const c = countedStore(s3, bucket);
    const rangeSize = 64 * KiB;
    const maxBytes = 2 * rangeSize;
    let evictions = 0;
    const cache = new BlockCache(c.store, { maxBytes, rangeSize, metadataTtlMs: 5000, onEvict: () => evictions++ });
    const want = objects.get('big')!;
    try {
      const info = await cache.stat('big');
      // A transfer reads the whole object block by block, without read-ahead.
      const source = new CachedObjectSource(cache, 'big', info, 0);
      const got: Buffer[] = [];
      for (let offset = 0; offset < info.size; offset += 1468) {
        let parts = source.slice(offset, 1468);
        if (!parts) {
          await source.load(offset, 1468);
          parts = source.slice(offset, 1468);
        }
        assert.ok(parts);
        for (const p of parts) got.push(Buffer.from(p));
        source.release(offset + 1468);
        assert.ok(cache.bytesHeld <= maxBytes + rangeSize, `held ${cache.bytesHeld} bytes`);
      }
      source.close();
      assert.ok(Buffer.concat(got).equals(want));
      assert.equal(c.fetched(), want.length, 'every byte fetched once');
      assert.ok(evictions >= Math.ceil(want.length / rangeSize) - 2, `evictions: ${evictions}`);
      assert.ok(cache.bytesHeld <= maxBytes);
      assert.equal(cache.bytesInUseOverBudget, 0);

      // A held range survives eviction by others and is served without a second GET.
      const holder = new CachedObjectSource(cache, 'big', info, 0);
      await holder.load(0, 1468);
      const getsBefore = c.gets();
      for (const index of [5, 6, 7]) await cache.range('big', info, index).waitFor(rangeSize);
      assert.equal(c.gets(), getsBefore + 3);
      assert.ok(cache.bytesInUseOverBudget > 0, 'the held range was evicted from the LRU');
      const again = cache.range('big', info, 0);
      assert.equal(c.gets(), getsBefore + 3, 'no refetch of a held range');
      assert.ok(again.buffer.subarray(0, 1468).equals(want.subarray(0, 1468)));
      holder.close();
      assert.equal(cache.bytesInUseOverBudget, 0, 'let go once nobody holds it');
    } finally {
      cache.close();
      c.client.destroy();
    }
  });

  test('an object replaced under a pinned ETag fails the range with OBJECT_CHANGED and refreshes the metadata', async (t) => {
    if (s3.kind !== 'rgw') return t.skip('needs Ceph RGW (s3rver ignores If-Match on GET)');
    const c = countedStore(s3, bucket);
    const cache = new BlockCache(c.store, { maxBytes: 1024 * KiB, rangeSize: 128 * KiB, metadataTtlMs: 60_000 });
    try {
      const old = await cache.stat('swap');
      await putObject(s3, bucket, 'swap', randomBytes(512 * KiB));
      const entry = cache.range('swap', old, 2);
      await assert.rejects(entry.waitFor(1), (err: unknown) => err instanceof TransferError && err.code === 'OBJECT_CHANGED');
      const fresh = await cache.stat('swap');
      assert.notEqual(fresh.etag, old.etag, 'metadata revalidated after the change');
    } finally {
      cache.close();
      c.client.destroy();
    }
  });

  test('a connection reset mid-body re-requests the rest of the range', async () => {
    const url = new URL(s3.endpoint);
    const proxy: S3Proxy = await startS3Proxy({ host: url.hostname, port: Number(url.port) });
    const c = countedStore(s3, bucket, proxy.endpoint);
    const cache = new BlockCache(c.store, { maxBytes: 2048 * KiB, rangeSize: 1024 * KiB, metadataTtlMs: 5000 });
    try {
      const info = await cache.stat('big');
      proxy.resetAfter(300 * KiB);
      const entry = cache.range('big', info, 0);
      await entry.waitFor(1024 * KiB);
      assert.ok(entry.buffer.equals(objects.get('big')!.subarray(0, 1024 * KiB)));
      assert.ok(c.gets() >= 2, `GETs: ${c.gets()}`);
      assert.equal(c.fetched(), 1024 * KiB, 'bytes kept from the broken body are not fetched again');
    } finally {
      cache.close();
      c.client.destroy();
      await proxy.close();
    }
  });

  test('a persistent failure fails only the range that needs it; a later request fetches it again', async () => {
    const url = new URL(s3.endpoint);
    const proxy = await startS3Proxy({ host: url.hostname, port: Number(url.port) });
    const c = countedStore(s3, bucket, proxy.endpoint, 1);
    const cache = new BlockCache(c.store, { maxBytes: 2048 * KiB, rangeSize: 256 * KiB, metadataTtlMs: 5000 });
    try {
      const info = await cache.stat('one');
      const good = cache.range('one', info, 0);
      await good.waitFor(256 * KiB);
      // Every attempt (SDK retries × our range retries) is cut before any byte of the body.
      for (let i = 0; i < 20; i++) proxy.resetAfter(0);
      const bad = cache.range('one', info, 1);
      await assert.rejects(bad.waitFor(1), (err: unknown) => err instanceof TransferError && (err.code === 'STORAGE_UNAVAILABLE' || err.code === 'STORAGE_ERROR'));
      assert.ok(cache.peek('one', info, 0)?.complete, 'other ranges are still served');
      proxy.cancelResets();
      const retried = cache.range('one', info, 1);
      assert.notEqual(retried, bad);
      await retried.waitFor(256 * KiB);
      assert.ok(retried.buffer.equals(objects.get('one')!.subarray(256 * KiB, 512 * KiB)));
    } finally {
      cache.close();
      c.client.destroy();
      await proxy.close();
    }
  });
});

describe('gateway read path', () => {
  let s3: TestS3;
  let bucket: string;
  withBucket((store, name) => {
    s3 = store;
    bucket = name;
  });

  test('a storm of clients on a cold object costs one S3 read of it', async () => {
    const body = randomBytes(700 * KiB + 3);
    await putObject(s3, bucket, 'storm.img', body);
    const gw = await startTestGateway(s3, bucket, ['--range-size', '128KiB', '--read-ahead', '2']);
    try {
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => tftpGet('storm.img', { port: gw.port, options: { blksize: i % 2 ? '1468' : '512', windowsize: i % 3 ? '4' : '1' }, timeoutMs: 5000 })),
      );
      for (const r of results) {
        assert.equal(r.error, undefined);
        assert.ok(r.data.equals(body));
      }
      const fetched = (await gw.gateway.metrics.s3BytesFetched.get()).values[0]?.value ?? 0;
      assert.equal(fetched, body.length);
    } finally {
      await gw.stop();
    }
  });

  test('S3 behind 60 ms: the cold path measures it, reads a cold object with parts in parallel and its first HEAD as a GET of the front', { timeout: 60_000 }, async () => {
    const first = randomBytes(1024 * KiB + 5);
    const image = randomBytes(6 * 1024 * KiB + 11);
    await putObject(s3, bucket, 'wan/first.img', first);
    await putObject(s3, bucket, 'wan/image.img', image);
    const url = new URL(s3.endpoint);
    const proxy = await startS3Proxy({ host: url.hostname, port: Number(url.port) }, { delayMs: 60 });
    const gw = await startTestGateway({ ...s3, endpoint: proxy.endpoint }, bucket, ['--range-size', '1MiB', '--read-ahead', '1', '--workers', '1']);
    const value = async (name: string, labels: Record<string, string> = {}): Promise<number> =>
      (await gw.gateway.metricValues(name)).filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
    try {
      // The first object teaches the gateway how far S3 is.
      const a = await tftpGet('wan/first.img', { port: gw.port, options: { blksize: '1468', windowsize: '16' }, timeoutMs: 20_000 });
      assert.equal(a.error, undefined);
      assert.ok(a.data.equals(first));
      const latency = await value('tftp_gateway_s3_read_first_byte_seconds');
      assert.ok(latency >= 0.05, `measured first byte ${latency} s behind a 60 ms proxy`);
      // Deeper than --read-ahead 1: enough 1 MiB ranges for the streams the measured rate needs.
      assert.ok((await value('tftp_gateway_read_ahead_ranges')) > 1);
      const heads = await value('tftp_gateway_s3_requests_total', { operation: 'HeadObject' });
      const gets = await value('tftp_gateway_s3_requests_total', { operation: 'GetObject' });
      const connections = proxy.connections;
      const b = await tftpGet('wan/image.img', { port: gw.port, options: { blksize: '1468', windowsize: '16' }, timeoutMs: 20_000 });
      assert.equal(b.error, undefined);
      assert.ok(b.data.equals(image));
      assert.equal((await value('tftp_gateway_s3_requests_total', { operation: 'HeadObject' })) - heads, 0, 'no HEAD: its front GET answered it');
      assert.ok((await value('tftp_gateway_s3_requests_total', { operation: 'GetObject' })) - gets >= 6, 'parts read by several GETs');
      assert.ok(proxy.connections - connections >= 2, `GETs at once on new connections: ${proxy.connections - connections}`);
      assert.equal(await value('tftp_gateway_s3_bytes_fetched_total'), first.length + image.length, 'each byte read once');
    } finally {
      await gw.stop();
      await proxy.close();
    }
  });

  test('an object replaced mid-transfer ends that transfer with an ERROR, never mixed versions', async (t) => {
    if (s3.kind !== 'rgw') return t.skip('needs Ceph RGW (s3rver ignores If-Match on GET)');
    const old = randomBytes(512 * KiB);
    await putObject(s3, bucket, 'moving.img', old);
    const gw = await startTestGateway(s3, bucket, ['--range-size', '64KiB', '--read-ahead', '0']);
    const peer = await UdpPeer.open();
    try {
      const next = async (): Promise<Packet> => {
        const got = await peer.next(5000);
        if (!got) throw new Error('no packet');
        return got.packet;
      };
      peer.send(encodeRequest(Opcode.RRQ, 'moving.img', 'octet', new Map([['blksize', '1024']])), gw.port);
      assert.equal((await next()).opcode, Opcode.OACK);
      peer.send(encodeAck(0), gw.port);
      const received: Buffer[] = [];
      let error: { code: number; message: string } | undefined;
      for (let expected = 1; expected <= 512; expected++) {
        const packet = await next();
        if (packet.opcode === Opcode.ERROR) {
          error = { code: packet.code, message: packet.message };
          break;
        }
        assert.equal(packet.opcode, Opcode.DATA);
        if (packet.opcode !== Opcode.DATA) break;
        // The replacing PUT can outlast the session's retransmission timeout: a resent block is not news.
        if (packet.block === expected - 1) {
          expected--;
          continue;
        }
        assert.equal(packet.block, expected);
        received.push(Buffer.from(packet.data));
        // After the first block the object is replaced: the next range must not come from it.
        if (expected === 1) await putObject(s3, bucket, 'moving.img', randomBytes(512 * KiB));
        peer.send(encodeAck(expected), gw.port);
      }
      assert.ok(error, 'the transfer ends with an ERROR');
      assert.equal(error.code, 0);
      const got = Buffer.concat(received);
      assert.ok(got.length >= 1024 && got.length <= 64 * KiB, `received ${got.length} bytes`);
      assert.ok(got.equals(old.subarray(0, got.length)), 'everything sent came from the old version');
    } finally {
      await peer.close();
      await gw.stop();
    }
  });
});
