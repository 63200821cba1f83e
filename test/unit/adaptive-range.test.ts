import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AdaptiveRangeReader, S3ReadEstimator, type FrontReader } from '../../src/storage/adaptive-range.js';
import { TransferError } from '../../src/errors.js';
import { FrontRead, type ObjectInfo } from '../../src/storage/s3-store.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A store whose ranged reads the test completes by hand, in any order; byte x of the object is x & 0xff. */
class ManualStore implements FrontReader {
  readonly bucket = 'b';
  readonly calls: { start: number; target: Buffer; onData: (n: number) => void; resolve: () => void; reject: (e: unknown) => void; signal: AbortSignal | undefined }[] = [];
  heads = 0;
  fronts: number[] = [];
  constructor(private readonly info: ObjectInfo = { size: 64 * MiB, etag: '"e"' }) {}
  head(): Promise<ObjectInfo> {
    this.heads++;
    return Promise.resolve(this.info);
  }
  /** The last front handed out: the test feeds it by hand unless `completeFronts`. */
  front: FrontRead | undefined;
  completeFronts = true;
  headWithFront(_key: string, bytes: number): Promise<{ info: ObjectInfo; front: FrontRead }> {
    this.fronts.push(bytes);
    const buffer = Buffer.alloc(Math.min(bytes, this.info.size));
    for (let k = 0; k < buffer.length; k++) buffer[k] = k & 0xff;
    this.front = this.completeFronts ? FrontRead.of(buffer) : new FrontRead(buffer);
    return Promise.resolve({ info: this.info, front: this.front });
  }
  readRange(_key: string, _etag: string, start: number, target: Buffer, onData: (n: number) => void, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      this.calls.push({ start, target, onData, resolve, reject, signal });
      // As the S3 store does: an abort ends the GET.
      signal?.addEventListener('abort', () => reject(new TransferError('ABORTED', 'aborted')), { once: true });
    });
  }
  fill(i: number, bytes: number): void {
    const c = this.calls[i]!;
    for (let k = 0; k < bytes; k++) c.target[k] = (c.start + k) & 0xff;
    c.onData(bytes);
  }
  finish(i: number): void {
    this.fill(i, this.calls[i]!.target.length);
    this.calls[i]!.resolve();
  }
  /** Completes every GET, those started meanwhile too, until `done` settles (bounded). */
  async drain(done: Promise<void>): Promise<void> {
    let settled = false;
    void done.finally(() => (settled = true)).catch(() => undefined);
    for (let finished = 0, rounds = 0; !settled && rounds < 1000; rounds++) {
      while (finished < this.calls.length) this.finish(finished++);
      await tick();
    }
    await done;
  }
}

const tick = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};
/** S3 across a WAN: 60 ms to the first byte, 10 MB/s per stream (a window of 600 kB). */
const wan = (): S3ReadEstimator => new S3ReadEstimator({ latencyMs: 60, bytesPerSecond: 10e6 });
/** S3 next door: 1 ms, 200 MB/s per stream (a window of 200 kB). */
const lan = (): S3ReadEstimator => new S3ReadEstimator({ latencyMs: 1, bytesPerSecond: 200e6 });

describe('S3ReadEstimator', () => {
  test('figures follow the recent samples (medians: a few slow calls do not move them); short bodies say nothing of the rate', () => {
    const e = new S3ReadEstimator({ latencyMs: 30, bytesPerSecond: 20e6 });
    assert.equal(e.latencyMs, 30, 'the prior until something is measured');
    for (let i = 0; i < 20; i++) e.firstByte(60);
    assert.equal(e.latencyMs, 60);
    for (let i = 0; i < 20; i++) e.body(MiB, (MiB / 10e6) * 1000);
    assert.ok(Math.abs(e.streamBytesPerSecond - 10e6) < 1, `rate ${e.streamBytesPerSecond}`);
    e.body(KiB, 0.001);
    assert.ok(Math.abs(e.streamBytesPerSecond - 10e6) < 1, 'a 1 KiB body is no rate sample');
    assert.ok(Math.abs(e.streamWindowBytes - 600e3) < 1);
    // Retries' back-off (a few calls of seconds) do not make S3 look far.
    for (let i = 0; i < 5; i++) e.firstByte(2000);
    assert.equal(e.latencyMs, 60);
    // A path that really changed does, within the window.
    for (let i = 0; i < 10; i++) e.firstByte(5);
    assert.equal(e.latencyMs, 5);
  });
});

describe('AdaptiveRangeReader', () => {
  test('parts and read-ahead follow measured latency and throughput: deeper and more parts across a WAN than on a LAN', () => {
    const store = new ManualStore();
    const far = new AdaptiveRangeReader(store, { streamsPerRange: 8, maxStreams: 32, estimator: wan() });
    const near = new AdaptiveRangeReader(store, { streamsPerRange: 8, maxStreams: 32, estimator: lan() });
    // Two round trips of one stream: 1.2 MB across the WAN, 400 kB next door.
    assert.equal(far.partBytes, 1_200_000);
    assert.equal(near.partBytes, 400_000);
    // The cold target (250 MB/s): across the WAN a 1 MiB GET takes 60 ms + 105 ms, 6.4 MB/s a
    // stream: 40 wanted, 32 allowed; next door a 400 kB GET takes 1 ms + 2 ms: 2 streams.
    assert.equal(far.streamsWanted(8 * MiB), 32);
    assert.equal(near.streamsWanted(8 * MiB), 2);
    // 8 MiB ranges: the WAN's parts are capped at a range over its 8 streams (1 MiB), 8 parts a range,
    // 4 ranges ahead keep 32 GETs busy; next door one range is 21 parts, more than 2 streams need.
    assert.equal(far.readAheadRanges(8 * MiB), 4);
    assert.equal(near.readAheadRanges(8 * MiB), 1);
  });

  test('a range is split into equal parts read at once, progress is the contiguous prefix whatever order parts arrive in', async () => {
    const store = new ManualStore();
    const reader = new AdaptiveRangeReader(store, { streamsPerRange: 8, maxStreams: 32, estimator: wan() });
    const target = Buffer.alloc(8 * MiB);
    const reported: number[] = [];
    const done = reader.readRange('k', '"e"', 16 * MiB, target, (n) => reported.push(n));
    await tick();
    // 1 MiB parts (the WAN's 1.2 MB, capped at a range over its 8 streams): 8 parts, all at once.
    assert.equal(store.calls.length, 8, 'eight GETs at once');
    assert.deepEqual(store.calls.map((c) => [c.start - 16 * MiB, c.target.length]), Array.from({ length: 8 }, (_, i) => [i * MiB, MiB]));
    store.finish(3);
    store.fill(1, 100);
    await tick();
    assert.deepEqual(reported, [], 'nothing of the front yet');
    store.finish(0);
    assert.equal(reported.at(-1), MiB + 100, 'part 0 whole, then what part 1 has');
    for (const i of [1, 2, 4, 5, 6, 7]) store.finish(i);
    await done;
    assert.equal(reported.at(-1), target.length);
    for (let i = 1; i < reported.length; i++) assert.ok(reported[i]! >= reported[i - 1]!, 'progress never goes back');
    for (let k = 0; k < target.length; k += 4099) assert.equal(target[k], (16 * MiB + k) & 0xff);
  });

  test('GETs in flight stay within maxStreams over every range; the rest wait their turn', async () => {
    const store = new ManualStore();
    const reader = new AdaptiveRangeReader(store, { streamsPerRange: 4, maxStreams: 5, estimator: wan() });
    const a = reader.readRange('k', '"e"', 0, Buffer.alloc(4 * MiB), () => undefined);
    const b = reader.readRange('k', '"e"', 4 * MiB, Buffer.alloc(4 * MiB), () => undefined);
    await tick();
    assert.equal(store.calls.length, 5);
    assert.equal(reader.streamsActive, 5);
    let finished = 0;
    while (finished < store.calls.length) {
      store.finish(finished++);
      await tick();
      assert.ok(reader.streamsActive <= 5);
    }
    await Promise.all([a, b]);
    assert.equal(reader.streamsActive, 0);
  });

  test('a failed part aborts the others and fails the range', async () => {
    const store = new ManualStore();
    const reader = new AdaptiveRangeReader(store, { streamsPerRange: 3, maxStreams: 8, minPartBytes: MiB, estimator: wan() });
    const done = reader.readRange('k', '"e"', 0, Buffer.alloc(3 * MiB), () => undefined);
    await tick();
    assert.ok(store.calls.length >= 2);
    store.calls[1]!.reject(new TransferError('OBJECT_CHANGED', 'etag moved'));
    await assert.rejects(done, (err: unknown) => err instanceof TransferError && err.code === 'OBJECT_CHANGED');
    assert.ok(store.calls.filter((_, i) => i !== 1).every((c) => c.signal?.aborted), 'the other GETs are aborted');
    await tick();
    assert.equal(reader.streamsActive, 0, 'every stream given back');
  });

  test("the caller's abort reaches every part, and parts waiting for a stream never start", async () => {
    const store = new ManualStore();
    const reader = new AdaptiveRangeReader(store, { streamsPerRange: 8, maxStreams: 2, estimator: wan() });
    const ac = new AbortController();
    const done = reader.readRange('k', '"e"', 0, Buffer.alloc(4 * MiB), () => undefined, ac.signal);
    await tick();
    assert.equal(store.calls.length, 2);
    ac.abort();
    for (const c of store.calls) c.reject(new TransferError('ABORTED', 'aborted'));
    await assert.rejects(done);
    await tick();
    assert.equal(store.calls.length, 2, 'no part started after the abort');
    assert.ok(store.calls.every((c) => c.signal?.aborted));
    assert.equal(reader.streamsActive, 0);
  });

  test("a cold object's first HEAD brings its front along; the range read then asks only for the rest; later HEADs are plain", async () => {
    const store = new ManualStore();
    const reader = new AdaptiveRangeReader(store, { streamsPerRange: 8, maxStreams: 32, frontBytes: MiB, estimator: wan() });
    const info = await reader.head('k');
    assert.deepEqual(info, { size: 64 * MiB, etag: '"e"' });
    assert.equal(store.fronts.length, 1, 'one GET of the front instead of a HEAD');
    assert.equal(store.heads, 0);
    const front = store.fronts[0]!;
    assert.ok(front >= 64 * KiB && front <= MiB, `front ${front}`);
    await reader.head('k');
    assert.equal(store.heads, 1, 'a TTL refresh is a plain HEAD');
    const target = Buffer.alloc(8 * MiB);
    const reported: number[] = [];
    const done = reader.readRange('k', '"e"', 0, target, (n) => reported.push(n));
    assert.equal(reported[0], front, 'the front is there at once');
    await tick();
    assert.equal(store.calls[0]!.start, front, 'the GETs start after the front');
    await store.drain(done);
    for (let k = 0; k < target.length; k += 997) assert.equal(target[k], k & 0xff);
    // A range inside the front (small ranges) is served from it whole, with no GET.
    const before = store.calls.length;
    const inside = Buffer.alloc(16 * KiB);
    await reader.readRange('k', '"e"', 32 * KiB, inside, () => undefined);
    assert.equal(store.calls.length, before);
    for (let k = 0; k < inside.length; k += 97) assert.equal(inside[k], (32 * KiB + k) & 0xff);
  });

  test('a front still arriving: the other parts are asked for at once, its bytes count as they come, and what it did not bring is read with a GET', async () => {
    const store = new ManualStore();
    store.completeFronts = false;
    const reader = new AdaptiveRangeReader(store, { streamsPerRange: 8, maxStreams: 32, frontBytes: MiB, estimator: wan() });
    await reader.head('k');
    const front = store.front!;
    const size = front.buffer.length;
    const target = Buffer.alloc(4 * MiB);
    const reported: number[] = [];
    const done = reader.readRange('k', '"e"', 0, target, (n) => reported.push(n));
    await tick();
    assert.ok(store.calls.length > 0 && store.calls.every((c) => c.start >= size), 'GETs for what follows the front, at once');
    assert.equal(store.calls[0]!.start, size);
    front.progress(1000);
    assert.equal(reported.at(-1), 1000, 'the front counts as it arrives');
    // The front's body breaks off at 5000 bytes: the rest of it is read with a GET.
    front.progress(5000);
    front.end();
    await tick();
    const refill = store.calls.find((c) => c.start === 5000);
    assert.ok(refill, 'a GET for the rest of the front');
    assert.equal(refill.target.length, size - 5000);
    await store.drain(done);
    for (let k = 0; k < target.length; k += 991) assert.equal(target[k], k & 0xff);
    assert.equal(reported.at(-1), target.length);
  });

  test('S3 in the region (first byte under 40 ms): HEAD stays a HEAD', async () => {
    const store = new ManualStore();
    const reader = new AdaptiveRangeReader(store, { streamsPerRange: 8, maxStreams: 32, frontBytes: MiB, estimator: lan() });
    await reader.head('k');
    assert.equal(store.heads, 1);
    assert.deepEqual(store.fronts, []);
  });

  test('a front kept for one ETag is not used for another', async () => {
    const store = new ManualStore();
    const reader = new AdaptiveRangeReader(store, { streamsPerRange: 8, maxStreams: 32, frontBytes: MiB, estimator: wan() });
    await reader.head('k');
    const reported: number[] = [];
    const done = reader.readRange('k', '"other"', 0, Buffer.alloc(MiB), (n) => reported.push(n));
    await tick();
    assert.deepEqual(reported, []);
    assert.equal(store.calls[0]!.start, 0);
    await store.drain(done);
  });
});
