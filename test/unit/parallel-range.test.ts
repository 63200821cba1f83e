import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ParallelRangeReader, type RangeReader } from '../../src/storage/parallel-range.js';
import { TransferError } from '../../src/errors.js';

const MiB = 1024 * 1024;

/** A store whose ranged reads the test completes by hand, in any order. */
class ManualStore implements RangeReader {
  readonly bucket = 'b';
  readonly calls: { start: number; target: Buffer; onData: (n: number) => void; resolve: () => void; reject: (e: unknown) => void; signal: AbortSignal | undefined }[] = [];
  head(): Promise<{ size: number; etag: string }> {
    return Promise.resolve({ size: 0, etag: '"e"' });
  }
  readRange(_key: string, _etag: string, start: number, target: Buffer, onData: (n: number) => void, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => this.calls.push({ start, target, onData, resolve, reject, signal }));
  }
  /** Fills `bytes` of call i with the object's bytes (byte at offset x is x & 0xff) and reports it. */
  fill(i: number, bytes: number): void {
    const c = this.calls[i]!;
    for (let k = 0; k < bytes; k++) c.target[k] = (c.start + k) & 0xff;
    c.onData(bytes);
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('ParallelRangeReader', () => {
  test('splits a range into parts read at once and reports the contiguous prefix, whatever order parts arrive in', async () => {
    const store = new ManualStore();
    const reader = new ParallelRangeReader(store, { streams: 4, minPartBytes: 2 * MiB });
    const target = Buffer.alloc(8 * MiB + 3);
    const reported: number[] = [];
    const done = reader.readRange('k', '"e"', 16 * MiB, target, (n) => reported.push(n));
    assert.equal(store.calls.length, 4, 'four GETs at once');
    assert.deepEqual(store.calls.map((c) => c.start - 16 * MiB), [0, 1, 2, 3].map((i) => i * Math.ceil(target.length / 4)));
    const part = store.calls[0]!.target.length;
    // The last parts first: nothing of the front is there yet, so no progress is reported.
    store.fill(3, store.calls[3]!.target.length);
    store.calls[3]!.resolve();
    store.fill(2, 100);
    await tick();
    assert.deepEqual(reported, []);
    store.fill(0, 10);
    assert.deepEqual(reported, [10]);
    store.fill(0, part);
    store.calls[0]!.resolve();
    store.fill(1, part);
    assert.equal(reported.at(-1), 2 * part + 100, 'parts 0 and 1 whole, then what part 2 has');
    store.fill(2, store.calls[2]!.target.length);
    store.calls[1]!.resolve();
    store.calls[2]!.resolve();
    await done;
    assert.equal(reported.at(-1), target.length);
    for (let i = 1; i < reported.length; i++) assert.ok(reported[i]! >= reported[i - 1]!, 'progress never goes back');
    for (let k = 0; k < target.length; k += 4099) assert.equal(target[k], (16 * MiB + k) & 0xff);
  });

  test('a range under two parts is one GET', async () => {
    const store = new ManualStore();
    const reader = new ParallelRangeReader(store, { streams: 4, minPartBytes: 2 * MiB });
    const done = reader.readRange('k', '"e"', 0, Buffer.alloc(4 * MiB - 1), () => undefined);
    assert.equal(store.calls.length, 1);
    store.calls[0]!.resolve();
    await done;
  });

  test('a failed part aborts the others and fails the range', async () => {
    const store = new ManualStore();
    const reader = new ParallelRangeReader(store, { streams: 3, minPartBytes: MiB });
    const done = reader.readRange('k', '"e"', 0, Buffer.alloc(3 * MiB), () => undefined);
    assert.equal(store.calls.length, 3);
    store.calls[1]!.reject(new TransferError('OBJECT_CHANGED', 'etag moved'));
    await assert.rejects(done, (err: unknown) => err instanceof TransferError && err.code === 'OBJECT_CHANGED');
    assert.ok(store.calls[0]!.signal?.aborted && store.calls[2]!.signal?.aborted, 'the other GETs are aborted');
  });

  test("the caller's abort reaches every part", async () => {
    const store = new ManualStore();
    const reader = new ParallelRangeReader(store, { streams: 2, minPartBytes: MiB });
    const ac = new AbortController();
    const done = reader.readRange('k', '"e"', 0, Buffer.alloc(2 * MiB), () => undefined, ac.signal);
    ac.abort();
    assert.ok(store.calls.every((c) => c.signal?.aborted));
    for (const c of store.calls) c.reject(new TransferError('ABORTED', 'aborted'));
    await assert.rejects(done);
  });
});
