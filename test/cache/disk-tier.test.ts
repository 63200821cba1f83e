import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError } from '../../src/config/config.js';
import { BlockCache } from '../../src/storage/block-cache.js';
import { DiskTier } from '../../src/storage/disk-tier.js';
import type { RangeReader } from '../../src/storage/adaptive-range.js';
import type { ObjectInfo } from '../../src/storage/s3-store.js';
import { tempDirs } from '../support/temp-dirs.js';

/** An in-memory "S3" that counts its reads and can be switched off. */
class FakeStore implements RangeReader {
  readonly bucket = 'b';
  reads = 0;
  heads = 0;
  down = false;
  /** While set, reads wait for it (a slow S3); a rejected gate fails them. */
  gate: Promise<void> | undefined;
  constructor(readonly objects: Map<string, { body: Buffer; etag: string }>) {}
  head(key: string): Promise<ObjectInfo> {
    this.heads++;
    if (this.down) return Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
    const o = this.objects.get(key);
    if (!o) return Promise.reject(new Error('missing'));
    return Promise.resolve({ size: o.body.length, etag: o.etag, lastModifiedMs: 1000 });
  }
  async readRange(key: string, etag: string, start: number, target: Buffer, onData: (filled: number) => void): Promise<void> {
    this.reads++;
    await this.gate;
    if (this.down) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const o = this.objects.get(key)!;
    assert.equal(o.etag, etag);
    o.body.copy(target, 0, start, start + target.length);
    onData(target.length);
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const tempDir = tempDirs('disk-tier-');

async function readAll(tier: RangeReader, key: string, info: ObjectInfo, rangeSize: number): Promise<Buffer> {
  const out = Buffer.alloc(info.size);
  for (let start = 0; start < info.size; start += rangeSize) {
    const part = out.subarray(start, Math.min(info.size, start + rangeSize));
    await tier.readRange(key, info.etag, start, part, () => undefined);
  }
  return out;
}

describe('DiskTier', () => {
  test('a filled range is written once and served from disk by a later process (index rebuilt, temp files removed)', async () => {
    const dir = await tempDir();
    const body = randomBytes(300_000);
    const store = new FakeStore(new Map([['a.bin', { body, etag: '"e1"' }]]));
    const first = await DiskTier.open(store, { dir, maxBytes: 10_000_000 });
    const info = await first.head('a.bin');
    assert.equal(sha(await readAll(first, 'a.bin', info, 100_000)), sha(body));
    await first.flush();
    assert.equal(store.reads, 3);
    assert.equal(first.bytesHeld, body.length);
    await writeFile(join(dir, 'tmp-leftover'), 'torn');

    let hits = 0;
    const second = await DiskTier.open(store, { dir, maxBytes: 10_000_000, onHit: () => hits++ });
    assert.equal(second.bytesHeld, body.length);
    assert.ok(!(await readdir(dir)).includes('tmp-leftover'), 'leftover temp file removed');
    assert.deepEqual(second.persisted.map((m) => [m.key, m.info.etag, m.info.size]), [['a.bin', '"e1"', body.length]]);
    store.down = true;
    assert.equal(sha(await readAll(second, 'a.bin', info, 100_000)), sha(body));
    assert.equal(store.reads, 3, 'no S3 read');
    assert.equal(hits, 3);
  });

  test('a corrupted range file is detected, deleted and never served', async () => {
    const dir = await tempDir();
    const body = randomBytes(200_000);
    const store = new FakeStore(new Map([['c.bin', { body, etag: '"c"' }]]));
    const first = await DiskTier.open(store, { dir, maxBytes: 10_000_000 });
    const info = await first.head('c.bin');
    await readAll(first, 'c.bin', info, 100_000);
    await first.flush();
    const files = (await readdir(dir)).filter((n) => n.startsWith('r-')).sort();
    assert.equal(files.length, 2);
    const victim = join(dir, files[0]!);
    const bytes = await readFile(victim);
    bytes[1234] = bytes[1234]! ^ 0xff;
    await writeFile(victim, bytes);

    let corrupt = 0;
    const second = await DiskTier.open(store, { dir, maxBytes: 10_000_000, onCorrupt: () => corrupt++ });
    const readsBefore = store.reads;
    assert.equal(sha(await readAll(second, 'c.bin', info, 100_000)), sha(body));
    assert.equal(corrupt, 1);
    assert.equal(store.reads, readsBefore + 1, 'the corrupt range was read from S3');
    await second.flush();
    // Rewritten from S3's bytes (same name: same range, same checksum).
    assert.equal(sha(await readFile(victim)), sha(body.subarray(0, 100_000)));
  });

  test('bounded: least recently used files are evicted; at start the oldest mtime goes first', async () => {
    const dir = await tempDir();
    const body = randomBytes(500_000);
    const store = new FakeStore(new Map([['big.bin', { body, etag: '"b"' }]]));
    const tier = await DiskTier.open(store, { dir, maxBytes: 250_000 });
    const info = await tier.head('big.bin');
    assert.equal(sha(await readAll(tier, 'big.bin', info, 100_000)), sha(body));
    await tier.flush();
    assert.ok(tier.bytesHeld <= 250_000, `${tier.bytesHeld} bytes held`);
    const kept = (await readdir(dir)).filter((n) => n.startsWith('r-'));
    assert.equal(kept.length, 2);
    // The last two ranges (most recent) are kept.
    assert.deepEqual(kept.map((n) => Number(n.split('-')[3])).sort((a, b) => a - b), [300_000, 400_000]);

    // At start: a smaller bound evicts by mtime (oldest first).
    const older = kept.find((n) => n.split('-')[3] === '400000')!;
    await utimes(join(dir, older), new Date(1000), new Date(1000));
    const reopened = await DiskTier.open(store, { dir, maxBytes: 150_000 });
    assert.equal(reopened.bytesHeld, 100_000);
    assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('r-')).map((n) => n.split('-')[3]), ['300000']);
  });

  test('an unusable directory is a configuration error', async () => {
    const dir = await tempDir();
    const file = join(dir, 'a-file');
    await writeFile(file, 'x');
    const store = new FakeStore(new Map());
    await assert.rejects(DiskTier.open(store, { dir: join(file, 'sub'), maxBytes: 1000 }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /--cache-dir: '.*a-file\/sub' cannot be used/);
      return true;
    });
  });

  test('after a restart with S3 down, seeded metadata serves disk-held objects within the stale window only', async () => {
    const dir = await tempDir();
    const body = randomBytes(150_000);
    const store = new FakeStore(new Map([['s.bin', { body, etag: '"s"' }]]));
    let clock = 1_000_000;
    const first = await DiskTier.open(store, { dir, maxBytes: 10_000_000, now: () => clock });
    const cache1 = new BlockCache(first, { maxBytes: 1_000_000, rangeSize: 100_000, metadataTtlMs: 1000, staleIfErrorMs: 60_000, now: () => clock });
    const info = await cache1.stat('s.bin');
    for (let i = 0; i < 2; i++) await cache1.range('s.bin', info, i).waitFor(i === 0 ? 100_000 : 50_000);
    cache1.close();
    await first.flush();

    store.down = true;
    clock += 30_000;
    const second = await DiskTier.open(store, { dir, maxBytes: 10_000_000, now: () => clock });
    const cache2 = new BlockCache(second, { maxBytes: 1_000_000, rangeSize: 100_000, metadataTtlMs: 1000, staleIfErrorMs: 60_000, now: () => clock, lowerTierBytes: () => second.bytesHeld });
    for (const m of second.persisted) cache2.seedMetadata(m.key, m.info, m.validatedAt);
    assert.equal(cache2.servesCachedContent, true, 'disk-held objects count for readiness');
    const answer = await cache2.lookup('s.bin');
    assert.equal(answer.stale, true);
    assert.deepEqual(answer.info, info);
    const got = Buffer.alloc(body.length);
    for (let i = 0; i < 2; i++) {
      const r = cache2.range('s.bin', info, i);
      await r.waitFor(r.buffer.length);
      r.buffer.copy(got, i * 100_000);
    }
    assert.equal(sha(got), sha(body));
    // Past the window measured from the last validation (in the first process): no longer served.
    clock += 40_000;
    assert.equal(cache2.servesCachedContent, false);
    await assert.rejects(cache2.lookup('s.bin'));
    cache2.close();
  });

  test('metadata files count toward the bound and are pruned with their last range file (at start and on eviction)', async () => {
    const dir = await tempDir();
    const a = randomBytes(200_000);
    const b = randomBytes(200_000);
    const store = new FakeStore(new Map([['a.bin', { body: a, etag: '"a"' }], ['b.bin', { body: b, etag: '"b"' }], ['probe.bin', { body: randomBytes(10), etag: '"p"' }]]));
    const metas = async (): Promise<number> => (await readdir(dir)).filter((n) => n.startsWith('m-')).length;
    // Room for two ranges and the metadata files, not for three ranges.
    const maxBytes = 250_000;
    const first = await DiskTier.open(store, { dir, maxBytes });
    const infoA = await first.head('a.bin');
    await first.head('probe.bin'); // metadata only: never read
    assert.equal(sha(await readAll(first, 'a.bin', infoA, 100_000)), sha(a));
    await first.flush();
    assert.equal(await metas(), 2);
    assert.ok(first.metadataBytesHeld > 0, 'metadata bytes counted');
    assert.ok(first.bytesHeld + first.metadataBytesHeld <= maxBytes, `${first.bytesHeld} + ${first.metadataBytesHeld} within ${maxBytes}`);

    // At start: the never-read object's metadata has no range file and is pruned.
    const second = await DiskTier.open(store, { dir, maxBytes });
    assert.deepEqual(second.persisted.map((m) => m.key), ['a.bin']);
    assert.equal(await metas(), 1);
    const metaOfA = second.metadataBytesHeld;
    assert.ok(metaOfA > 0);

    // Reading b evicts a's two range files: a's metadata goes with the last of them.
    const infoB = await second.head('b.bin');
    assert.equal(sha(await readAll(second, 'b.bin', infoB, 100_000)), sha(b));
    await second.flush();
    const left = await readdir(dir);
    assert.equal(left.filter((n) => n.startsWith('r-')).length, 2);
    assert.equal(left.filter((n) => n.startsWith('m-')).length, 1, 'only b.bin\'s metadata is left');
    assert.ok(second.bytesHeld + second.metadataBytesHeld <= maxBytes);
    const third = await DiskTier.open(store, { dir, maxBytes });
    assert.deepEqual(third.persisted.map((m) => m.key), ['b.bin']);
  });

  test('fill puts a range on disk without an S3 read when it is already there; has tells', async () => {
    const dir = await tempDir();
    const body = randomBytes(150_000);
    const store = new FakeStore(new Map([['f.bin', { body, etag: '"f"' }]]));
    const tier = await DiskTier.open(store, { dir, maxBytes: 10_000_000 });
    assert.equal(tier.has('f.bin', '"f"', 0, 100_000), false);
    assert.equal(await tier.fill('f.bin', '"f"', 0, 100_000), true);
    assert.equal(await tier.fill('f.bin', '"f"', 100_000, 50_000), true);
    assert.equal(store.reads, 2);
    assert.equal(tier.has('f.bin', '"f"', 0, 100_000), true);
    assert.equal(tier.has('f.bin', '"other"', 0, 100_000), false);
    assert.equal(await tier.fill('f.bin', '"f"', 0, 100_000), true);
    assert.equal(store.reads, 2, 'already on disk: no read');
    store.down = true;
    assert.equal(sha(await readAll(tier, 'f.bin', { size: body.length, etag: '"f"' }, 100_000)), sha(body));
  });

  test('a fill and a client read of the same range share one S3 read, whichever came first; a failed one leaves the other to read', async () => {
    const dir = await tempDir();
    const body = randomBytes(200_000);
    const store = new FakeStore(new Map([['s.bin', { body, etag: '"s"' }]]));
    const tier = await DiskTier.open(store, { dir, maxBytes: 10_000_000 });
    const slow = (): (() => void) => {
      let open: () => void = () => undefined;
      store.gate = new Promise<void>((resolve) => (open = resolve));
      return open;
    };
    const clientRead = async (start: number): Promise<Buffer> => {
      const target = Buffer.alloc(100_000);
      let reported = 0;
      await tier.readRange('s.bin', '"s"', start, target, (n) => (reported = n));
      assert.equal(reported, target.length);
      return target;
    };
    // The fill first (warm-up), a client asks for the range while S3 is slow.
    let open = slow();
    const fill = tier.fill('s.bin', '"s"', 0, 100_000);
    const client = clientRead(0);
    open();
    assert.equal(await fill, true);
    assert.ok((await client).equals(body.subarray(0, 100_000)));
    assert.equal(store.reads, 1, 'one S3 read for the fill and the client');
    // The client first, the fill joins it and is done when the file is on disk.
    open = slow();
    const client2 = clientRead(100_000);
    const fill2 = tier.fill('s.bin', '"s"', 100_000, 100_000);
    open();
    assert.ok((await client2).equals(body.subarray(100_000)));
    assert.equal(await fill2, true);
    assert.equal(tier.has('s.bin', '"s"', 100_000, 100_000), true);
    assert.equal(store.reads, 2, 'one S3 read for the client and the fill');
    await tier.flush();
    assert.equal(tier.bytesHeld, body.length, 'each range written once');
    // A shared read that fails: the one that joined it reads for itself.
    const other = await DiskTier.open(store, { dir: await tempDir(), maxBytes: 10_000_000 });
    let fail: (e: Error) => void = () => undefined;
    store.gate = new Promise<void>((_, reject) => (fail = reject));
    const failing = other.fill('s.bin', '"s"', 0, 100_000);
    const joined = (async () => {
      const target = Buffer.alloc(100_000);
      await other.readRange('s.bin', '"s"', 0, target, () => undefined);
      return target;
    })();
    await new Promise((r) => setImmediate(r));
    store.gate = undefined;
    fail(new Error('connection reset'));
    await assert.rejects(failing, /connection reset/);
    assert.ok((await joined).equals(body.subarray(0, 100_000)), 'the client read again and got the bytes');
    assert.equal(store.reads, 4);
  });
});
