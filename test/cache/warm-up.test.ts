import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { TransferError } from '../../src/errors.js';
import { warmTarget } from '../../src/policy/warm-names.js';
import { BlockCache } from '../../src/storage/block-cache.js';
import { DiskTier } from '../../src/storage/disk-tier.js';
import type { ObjectInfo } from '../../src/storage/s3-store.js';
import { diskWarmTier, memoryWarmTier, Warmer, type WarmerOptions } from '../../src/storage/warm-up.js';
import { until } from '../support/wait.js';
import { tempDirs } from '../support/temp-dirs.js';

/** An in-memory "S3": HEAD, ranged reads and listings, counted; `down` fails like a refused connection, `hang` never answers. */
class FakeStore {
  readonly bucket = 'b';
  reads = 0;
  heads = 0;
  lists = 0;
  down = false;
  hang = false;
  constructor(readonly objects: Map<string, { body: Buffer; etag: string }>) {}
  private fail(signal?: AbortSignal): Promise<never> {
    if (this.hang) {
      return new Promise((_, reject) => signal?.addEventListener('abort', () => reject(new TransferError('ABORTED', 'aborted')), { once: true }));
    }
    return Promise.reject(new TransferError('STORAGE_UNAVAILABLE', 'connect ECONNREFUSED'));
  }
  head(key: string, signal?: AbortSignal): Promise<ObjectInfo> {
    this.heads++;
    if (this.down || this.hang) return this.fail(signal);
    const o = this.objects.get(key);
    if (!o) return Promise.reject(new TransferError('NOT_FOUND', `no ${key}`));
    return Promise.resolve({ size: o.body.length, etag: o.etag });
  }
  readRange(key: string, etag: string, start: number, target: Buffer, onData: (filled: number) => void, signal?: AbortSignal): Promise<void> {
    this.reads++;
    if (this.down || this.hang) return this.fail(signal);
    const o = this.objects.get(key)!;
    assert.equal(o.etag, etag);
    o.body.copy(target, 0, start, start + target.length);
    onData(target.length);
    return Promise.resolve();
  }
  list(prefix: string, limit: number, signal?: AbortSignal): Promise<{ keys: string[]; truncated: boolean }> {
    this.lists++;
    if (this.down || this.hang) return this.fail(signal);
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
    return Promise.resolve({ keys: keys.slice(0, limit), truncated: keys.length > limit });
  }
}

function capture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { logger, lines };
}

const tempDir = tempDirs('warm-up-');

const RANGE = 100_000;

describe('Warmer', () => {
  test('memory: the set is cut to the cache budget (warned once); what fits is fetched and its metadata seeded', async () => {
    const objects = new Map(['a', 'b', 'c'].map((k) => [`w/${k}.img`, { body: randomBytes(400_000), etag: `"${k}"` }]));
    const store = new FakeStore(objects);
    const cache = new BlockCache(store, { maxBytes: 1_000_000, rangeSize: RANGE, metadataTtlMs: 60_000 });
    const { logger, lines } = capture();
    const seeded: string[] = [];
    const warmer = new Warmer({
      targets: [warmTarget('w/', '')],
      store,
      tier: memoryWarmTier(cache, cache.bytesBudget),
      rangeSize: RANGE,
      seed: (key, info, at) => {
        seeded.push(key);
        cache.seedMetadata(key, info, at);
      },
      timeoutMs: 10_000,
      intervalMs: 0,
      logger,
    });
    assert.match(warmer.readinessReason ?? '', /^warming: 0 of 0 objects/);
    warmer.start();
    await until(() => warmer.readinessReason === undefined, 5000, 'the warm-up to end');
    const p = warmer.progress();
    assert.deepEqual(p.objects, { done: 2, pending: 0, failed: 0, skipped: 1 });
    assert.deepEqual(p.bytes, { done: 800_000, pending: 0 });
    assert.equal(store.reads, 8, 'only what fits was read');
    assert.deepEqual(seeded, ['w/a.img', 'w/b.img']);
    assert.equal(lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('warm set larger')).length, 1);
    // A client of a warmed object: no S3 call at all (metadata seeded, ranges held).
    const heads = store.heads;
    const info = await cache.stat('w/a.img');
    for (let i = 0; i < 4; i++) assert.ok(cache.peek('w/a.img', info, i)?.complete);
    assert.equal(store.heads, heads);
    await warmer.stop();
    cache.close();
  });

  test('disk: restarted while S3 is down with the set on disk, the first warm-up ends at the first outage, from persisted metadata', async () => {
    const dir = await tempDir();
    const body = randomBytes(250_000);
    const store = new FakeStore(new Map([['os.img', { body, etag: '"v1"' }], ['other.img', { body: randomBytes(10), etag: '"o"' }]]));
    const options = (disk: DiskTier, cache: BlockCache, logger: pino.Logger): WarmerOptions => ({
      targets: [warmTarget('os.img', '')],
      store: { head: (k, s) => disk.head(k, s), list: (p, l, s) => store.list(p, l, s) },
      tier: diskWarmTier(disk, cache),
      rangeSize: RANGE,
      seed: (k, i, at) => cache.seedMetadata(k, i, at),
      known: disk.persisted,
      timeoutMs: 60_000,
      intervalMs: 0,
      logger,
    });
    const disk1 = await DiskTier.open(store, { dir, maxBytes: 10_000_000 });
    const cache1 = new BlockCache(disk1, { maxBytes: 1_000_000, rangeSize: RANGE, metadataTtlMs: 60_000 });
    const w1 = new Warmer(options(disk1, cache1, capture().logger));
    w1.start();
    await until(() => w1.readinessReason === undefined, 5000, 'the first warm-up');
    assert.equal(store.reads, 3);
    assert.equal(cache1.bytesHeld, 0, 'warmed to disk, not into memory');
    await w1.stop();
    cache1.close();
    await disk1.close();

    store.down = true;
    const disk2 = await DiskTier.open(store, { dir, maxBytes: 10_000_000 });
    const cache2 = new BlockCache(disk2, { maxBytes: 1_000_000, rangeSize: RANGE, metadataTtlMs: 60_000 });
    const { logger, lines } = capture();
    const w2 = new Warmer(options(disk2, cache2, logger));
    w2.start();
    await until(() => w2.readinessReason === undefined, 2000, 'ready from disk');
    assert.deepEqual(w2.progress().objects, { done: 1, pending: 0, failed: 0, skipped: 0 });
    assert.ok(lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('warm-up done from the disk tier')));
    assert.equal(store.reads, 3, 'no read tried: the set is on disk');
    await w2.stop();

    // Another object, not on disk: the warm-up holds readiness while S3 is down.
    const w3 = new Warmer({ ...options(disk2, cache2, capture().logger), targets: [warmTarget('os.img', ''), warmTarget('other.img', '')] });
    w3.start();
    await new Promise((r) => setTimeout(r, 200));
    assert.match(w3.readinessReason ?? '', /^warming: 1 of 2 objects/);
    await w3.stop();
    cache2.close();
    await disk2.close();
  });

  test('a missing object does not hold readiness; stop() ends a warm-up stuck on a store that never answers', async () => {
    const store = new FakeStore(new Map([['here.img', { body: randomBytes(1000), etag: '"h"' }]]));
    const cache = new BlockCache(store, { maxBytes: 1_000_000, rangeSize: RANGE, metadataTtlMs: 60_000 });
    const { logger, lines } = capture();
    const base = { store, tier: memoryWarmTier(cache, cache.bytesBudget), rangeSize: RANGE, seed: () => undefined, timeoutMs: 60_000, intervalMs: 0, logger };
    const w = new Warmer({ ...base, targets: [warmTarget('here.img', ''), warmTarget('typo.img', '')] });
    w.start();
    await until(() => w.readinessReason === undefined, 5000, 'ready despite the missing object');
    assert.deepEqual(w.progress().objects, { done: 1, pending: 0, failed: 1, skipped: 0 });
    assert.ok(lines.some((l) => l.msg === 'warm-up: object not found or refused, not warmed' && l.key === 'typo.img'));
    await w.stop();

    store.hang = true;
    const stuck = new Warmer({ ...base, targets: [warmTarget('here.img', '')] });
    stuck.start();
    await until(() => store.heads >= 3, 2000, 'the HEAD to hang');
    const t0 = Date.now();
    await stuck.stop();
    assert.ok(Date.now() - t0 < 1000, 'stopped at once');
    assert.equal(stuck.readinessReason, undefined);
    cache.close();
  });
});
