import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TransferError } from '../../src/errors.js';
import { MetadataCache, type RefreshFailureCause, type StaleChange } from '../../src/storage/metadata-cache.js';
import { storageError } from '../../src/storage/s3-errors.js';
import type { ObjectInfo } from '../../src/storage/s3-store.js';

/** An SDK-shaped failure with an HTTP status, as the store maps it. */
function s3Failure(name: string, status: number): TransferError {
  return storageError(Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } }), 'HeadObject k');
}
const reset = (): TransferError => storageError(Object.assign(new Error('socket hang up'), { name: 'TimeoutError', code: 'ECONNRESET' }), 'HeadObject k');

/** A scripted HeadObject: each call takes the next answer (an info, an error, or a promise to settle later). */
function harness(options: { ttlMs?: number; staleIfErrorMs?: number; reachable?: boolean } = {}) {
  let now = 1_000_000;
  const answers: (ObjectInfo | TransferError | Promise<ObjectInfo>)[] = [];
  const heads: string[] = [];
  const failures: RefreshFailureCause[] = [];
  const changes: StaleChange[] = [];
  let staleServed = 0;
  const health = { reachable: options.reachable ?? true, cause: undefined };
  const cache = new MetadataCache(
    (key) => {
      heads.push(key);
      const next = answers.shift();
      if (next === undefined) return Promise.reject(new Error('unscripted HeadObject'));
      if (next instanceof TransferError) return Promise.reject(next);
      return Promise.resolve(next);
    },
    {
      ttlMs: options.ttlMs ?? 1000,
      staleIfErrorMs: options.staleIfErrorMs ?? 10_000,
      health,
      now: () => now,
      onRefreshFailure: (cause) => failures.push(cause),
      onStaleServed: () => staleServed++,
      onStaleChange: (change) => changes.push(change),
    },
  );
  return {
    cache,
    answers,
    heads,
    failures,
    changes,
    health,
    staleServed: () => staleServed,
    advance: (ms: number) => (now += ms),
  };
}

const v1: ObjectInfo = { size: 100, etag: '"v1"' };
const v2: ObjectInfo = { size: 200, etag: '"v2"' };

describe('metadata cache: stale-if-error', () => {
  test('fresh within the TTL (one HEAD), refreshed after it', async () => {
    const h = harness();
    h.answers.push(v1, v2);
    assert.deepEqual(await h.cache.lookup('k'), { info: v1, stale: false });
    h.advance(999);
    assert.deepEqual(await h.cache.lookup('k'), { info: v1, stale: false });
    assert.equal(h.heads.length, 1);
    h.advance(1);
    assert.deepEqual(await h.cache.lookup('k'), { info: v2, stale: false });
    assert.equal(h.heads.length, 2);
  });

  for (const [what, error, cause] of [
    ['503 SlowDown', () => s3Failure('SlowDown', 503), 'throttled'],
    ['500 InternalError', () => s3Failure('InternalError', 500), 'server_error'],
    ['a connection reset', reset, 'network_error'],
  ] as const) {
    test(`${what} on refresh: the last good version is served stale until the window ends, then refused`, async () => {
      const h = harness();
      h.answers.push(v1);
      await h.cache.lookup('k');
      h.advance(1000);
      h.answers.push(error(), error(), error());
      assert.deepEqual(await h.cache.lookup('k'), { info: v1, stale: true });
      assert.deepEqual(await h.cache.lookup('k'), { info: v1, stale: true });
      assert.equal(h.cache.staleObjects, 1);
      assert.equal(h.staleServed(), 2);
      assert.deepEqual(h.failures, [cause, cause]);
      assert.deepEqual(h.changes, [{ serving: true, key: 'k', cause }], 'one transition, not one per request');
      h.advance(9_999);
      assert.deepEqual(await h.cache.lookup('k'), { info: v1, stale: true });
      h.advance(1);
      assert.equal(h.cache.staleObjects, 0);
      assert.deepEqual(h.changes.at(-1), { serving: false, reason: 'expired' });
      h.answers.push(error());
      await assert.rejects(h.cache.lookup('k'), (err: unknown) => err instanceof TransferError && err.code === 'STORAGE_UNAVAILABLE');
    });
  }

  test('S3 answering again ends stale serving and the new version is served', async () => {
    const h = harness();
    h.answers.push(v1);
    await h.cache.lookup('k');
    h.advance(1500);
    h.answers.push(s3Failure('SlowDown', 503), v2);
    assert.equal((await h.cache.lookup('k')).stale, true);
    assert.deepEqual(await h.cache.lookup('k'), { info: v2, stale: false });
    assert.equal(h.cache.staleObjects, 0);
    assert.deepEqual(h.changes.at(-1), { serving: false, reason: 'refreshed' });
  });

  for (const [what, error, code] of [
    ['404', () => s3Failure('NotFound', 404), 'NOT_FOUND'],
    ['403', () => s3Failure('AccessDenied', 403), 'ACCESS_DENIED'],
  ] as const) {
    test(`${what} on refresh is an answer: never served stale`, async () => {
      const h = harness();
      h.answers.push(v1);
      await h.cache.lookup('k');
      h.advance(1000);
      h.answers.push(error());
      await assert.rejects(h.cache.lookup('k'), (err: unknown) => err instanceof TransferError && err.code === code);
      assert.equal(h.staleServed(), 0);
      assert.deepEqual(h.changes, []);
      assert.deepEqual(h.failures, code === 'NOT_FOUND' ? [] : ['other']);
    });
  }

  test('--stale-if-error 0: a failed refresh fails the request (the old behaviour)', async () => {
    const h = harness({ staleIfErrorMs: 0 });
    h.answers.push(v1);
    await h.cache.lookup('k');
    h.advance(1000);
    h.answers.push(s3Failure('SlowDown', 503));
    await assert.rejects(h.cache.lookup('k'));
    assert.equal(h.staleServed(), 0);
  });

  test('an object never seen has nothing to fall back on', async () => {
    const h = harness();
    h.answers.push(s3Failure('SlowDown', 503));
    await assert.rejects(h.cache.lookup('k'), (err: unknown) => err instanceof TransferError && err.code === 'STORAGE_UNAVAILABLE');
    assert.deepEqual(h.failures, ['throttled']);
  });

  test('S3 known unreachable: a stale object is served after a short grace while the refresh goes on; its answer is used next', async () => {
    const h = harness();
    h.answers.push(v1);
    await h.cache.lookup('k');
    h.advance(1000);
    h.health.reachable = false;
    let answer!: (info: ObjectInfo) => void;
    h.answers.push(new Promise<ObjectInfo>((resolve) => (answer = resolve)));
    const t0 = Date.now();
    assert.deepEqual(await h.cache.lookup('k'), { info: v1, stale: true });
    assert.ok(Date.now() - t0 < 2000, 'did not wait for the hanging refresh');
    // A second request while that refresh is still hanging shares it (no second HEAD).
    assert.equal((await h.cache.lookup('k')).stale, true);
    assert.equal(h.heads.length, 2);
    answer(v2);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(await h.cache.lookup('k'), { info: v2, stale: false });
    assert.equal(h.cache.staleObjects, 0);
  });

  test('S3 believed reachable: a slow refresh is waited for, not answered stale', async () => {
    const h = harness();
    h.answers.push(v1);
    await h.cache.lookup('k');
    h.advance(1000);
    let answer!: (info: ObjectInfo) => void;
    h.answers.push(new Promise<ObjectInfo>((resolve) => (answer = resolve)));
    const pending = h.cache.lookup('k');
    setTimeout(() => answer(v2), 400);
    assert.deepEqual(await pending, { info: v2, stale: false });
    assert.equal(h.staleServed(), 0);
  });

  test('invalidate (object replaced under a transfer, or uploaded) drops the fallback', async () => {
    const h = harness();
    h.answers.push(v1);
    await h.cache.lookup('k');
    h.advance(1000);
    h.answers.push(s3Failure('SlowDown', 503));
    assert.equal((await h.cache.lookup('k')).stale, true);
    h.cache.invalidate('k');
    assert.deepEqual(h.changes.at(-1), { serving: false, reason: 'invalidated' });
    h.answers.push(s3Failure('SlowDown', 503));
    await assert.rejects(h.cache.lookup('k'));
  });
});
