import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { tftpErrorFor, TransferError } from '../../src/errors.js';
import { CallDeadline } from '../../src/storage/deadline.js';
import { outageCause, S3DeadlineExceeded, storageError } from '../../src/storage/s3-errors.js';
import { S3Health } from '../../src/storage/s3-health.js';
import { until } from '../support/wait.js';

const sdk = (name: string, status?: number, code?: string): Error =>
  Object.assign(new Error(name), { name, ...(code ? { code } : {}), ...(status ? { $metadata: { httpStatusCode: status } } : {}) });

describe('S3 failures: outage or answer', () => {
  test('outage causes are a bounded set; answers about the object are not outages', () => {
    assert.equal(outageCause(sdk('SlowDown', 503)), 'throttled');
    assert.equal(outageCause(sdk('ServiceUnavailable', 503)), 'throttled');
    assert.equal(outageCause(sdk('InternalError', 500)), 'server_error');
    assert.equal(outageCause(sdk('TimeoutError', undefined, 'ETIMEDOUT')), 'timeout');
    // The SDK names a reset TimeoutError: the socket's code says what it was.
    assert.equal(outageCause(sdk('TimeoutError', undefined, 'ECONNRESET')), 'network_error');
    assert.equal(outageCause(sdk('Error', undefined, 'ECONNREFUSED')), 'network_error');
    assert.equal(outageCause(Object.assign(sdk('AbortError'), { cause: new S3DeadlineExceeded('x') })), 'timeout');
    for (const answer of [sdk('NotFound', 404), sdk('AccessDenied', 403), sdk('PreconditionFailed', 412), sdk('InvalidRequest', 400), sdk('AbortError')]) {
      assert.equal(outageCause(answer), undefined, answer.name);
    }
  });

  test('the wire says "Storage unavailable" for an outage and keeps the detail off the wire', () => {
    for (const err of [sdk('SlowDown', 503), sdk('InternalError', 500), sdk('TimeoutError', undefined, 'ETIMEDOUT'), new S3DeadlineExceeded('HeadObject k: no answer')]) {
      const mapped = storageError(err, 'HeadObject secret/key');
      assert.equal(mapped.code, 'STORAGE_UNAVAILABLE', err.name);
      assert.equal(outageCause(mapped) !== undefined, true);
      assert.deepEqual(tftpErrorFor(mapped), { code: 0, message: 'Storage unavailable' });
    }
    assert.equal(storageError(sdk('InvalidRequest', 400), 'x').code, 'STORAGE_ERROR');
    assert.deepEqual(tftpErrorFor(new TransferError('STORAGE_ERROR', 'bad answer')), { code: 0, message: 'Storage error' });
    assert.equal(storageError(sdk('AbortError'), 'x').code, 'ABORTED');
  });
});

describe('CallDeadline', () => {
  test('aborts after the budget without progress; progress restarts the budget; close releases the timer', async () => {
    const d = new CallDeadline(150, 'GetObject k');
    const t0 = Date.now();
    const tick = setInterval(() => d.touch(), 50);
    await new Promise((resolve) => setTimeout(resolve, 300));
    clearInterval(tick);
    assert.equal(d.signal.aborted, false, 'kept alive by progress');
    await new Promise<void>((resolve) => d.signal.addEventListener('abort', () => resolve()));
    assert.ok(d.expired);
    assert.ok(d.signal.reason instanceof S3DeadlineExceeded);
    assert.ok(Date.now() - t0 >= 400);
    d.close();
  });

  test('race settles at the deadline even if the work never does, and the parent signal aborts it', async () => {
    const d = new CallDeadline(100, 'HeadObject k');
    await assert.rejects(d.race(new Promise(() => undefined)), S3DeadlineExceeded);
    d.close();
    const parent = new AbortController();
    const child = new CallDeadline(10_000, 'HeadObject k', parent.signal);
    const raced = child.race(new Promise(() => undefined));
    parent.abort(new Error('shutdown'));
    await assert.rejects(raced, /shutdown/);
    assert.equal(child.expired, false);
    child.close();
    let late: number | undefined;
    const d2 = new CallDeadline(20, 'GetObject k');
    await assert.rejects(d2.race(new Promise<number>((resolve) => setTimeout(() => resolve(7), 60)), (v) => (late = v)));
    // The work settles 40 ms after the deadline: its result must be handed over then.
    await until(() => late !== undefined, 2000, 'the late result');
    assert.equal(late, 7, 'a late result is handed over (a body to destroy)');
    d2.close();
  });
});

describe('S3Health', () => {
  const answer = (status: number, name: string): Error => Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
  test('an outage error makes S3 unreachable; an HTTP answer about an object (404) makes it reachable again; a local abort changes nothing', () => {
    const changes: boolean[] = [];
    const health = new S3Health((c) => changes.push(c.reachable));
    health.failed('HeadObject', Date.now(), answer(503, 'ServiceUnavailable'));
    assert.equal(health.reachable, false);
    health.failed('GetObject', Date.now(), Object.assign(new Error('aborted'), { name: 'AbortError' }));
    assert.equal(health.reachable, false, 'a local abort is no answer from S3');
    health.failed('HeadObject', Date.now(), answer(404, 'NotFound'));
    assert.equal(health.reachable, true, 'a 404 is S3 answering');
    assert.deepEqual(changes, [false, true]);
  });
});
