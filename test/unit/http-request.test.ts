import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide, parseEtagList, parseSingleRange, type Representation } from '../../src/http/conditions.js';
import { MAX_TARGET_LENGTH, parseRequestTarget } from '../../src/http/request-target.js';

describe('HTTP request target → name', () => {
  const name = (t: string): string => {
    const r = parseRequestTarget(t);
    assert.ok(r.ok, `${t} refused: ${r.ok ? '' : r.reason}`);
    return r.name;
  };
  const status = (t: string): number => {
    const r = parseRequestTarget(t);
    assert.ok(!r.ok, `${t} accepted as ${r.ok ? r.name : ''}`);
    return r.status;
  };

  it('percent-decodes to bytes, one char per byte (UTF-8 stays bytes for the policy to check)', () => {
    assert.equal(name('/boot/vmlinuz'), '/boot/vmlinuz');
    assert.equal(name('/a%20b'), '/a b');
    assert.equal(name('/caf%C3%A9'), '/caf\u00c3\u00a9');
    assert.equal(name('/x?cache=1'), '/x');
    assert.equal(name('http://10.0.2.2:8080/boot/x'), '/boot/x');
  });

  it('refuses dot segments, literal or encoded, and empty segments (400)', () => {
    for (const t of ['/../etc/passwd', '/a/../b', '/%2e%2e/x', '/a/%2E%2e/b', '/./a', '/a/.', '/a//b', '/a/%2e/b']) assert.equal(status(t), 400, t);
  });

  it('refuses encoded separators, NUL and control bytes, bad escapes (400)', () => {
    for (const t of ['/a%2fb', '/a%2Fb', '/a%00', '/a%0d%0a', '/a%7f', '/a%zz', '/a%4', '/a\u0001b', 'relative', '*']) assert.equal(status(t), 400, t);
  });

  it('refuses directory-like names: no listings (403)', () => {
    for (const t of ['/', '/boot/', 'http://h/']) assert.equal(status(t), 403, t);
  });

  it('refuses an overlong target (414)', () => {
    assert.equal(status(`/${'a'.repeat(MAX_TARGET_LENGTH)}`), 414);
  });
});

describe('HTTP preconditions and ranges (RFC 9110)', () => {
  const rep: Representation = { size: 1000, etag: '"abc"', lastModifiedMs: Date.parse('Sun, 06 Dec 2026 10:00:00 GMT') + 400 };
  const lm = 'Sun, 06 Dec 2026 10:00:00 GMT';

  it('parses entity-tag lists', () => {
    assert.deepEqual(parseEtagList('"a", W/"b" ,"c"'), ['"a"', 'W/"b"', '"c"']);
    assert.deepEqual(parseEtagList('*'), ['*']);
  });

  it('single byte ranges: first-last, open, suffix, clipped; others ignored; beyond the end unsatisfiable', () => {
    assert.deepEqual(parseSingleRange('bytes=0-99', 1000), { start: 0, end: 100 });
    assert.deepEqual(parseSingleRange('bytes=900-', 1000), { start: 900, end: 1000 });
    assert.deepEqual(parseSingleRange('bytes=-100', 1000), { start: 900, end: 1000 });
    assert.deepEqual(parseSingleRange('bytes=-5000', 1000), { start: 0, end: 1000 });
    assert.deepEqual(parseSingleRange('bytes=990-5000', 1000), { start: 990, end: 1000 });
    assert.equal(parseSingleRange('bytes=0-1,5-6', 1000), 'ignore');
    assert.equal(parseSingleRange('items=0-1', 1000), 'ignore');
    assert.equal(parseSingleRange('bytes=5-1', 1000), 'ignore');
    assert.equal(parseSingleRange('bytes=1000-', 1000), 'unsatisfiable');
    assert.equal(parseSingleRange('bytes=-0', 1000), 'unsatisfiable');
    assert.equal(parseSingleRange('bytes=0-', 0), 'unsatisfiable');
  });

  it('decides 200, 206, 304, 412 and 416 in RFC 9110 order', () => {
    assert.deepEqual(decide(rep, { method: 'GET' }), { status: 200, start: 0, end: 1000 });
    assert.deepEqual(decide(rep, { method: 'GET', range: 'bytes=10-19' }), { status: 206, start: 10, end: 20 });
    assert.deepEqual(decide(rep, { method: 'HEAD', range: 'bytes=10-19' }), { status: 200, start: 0, end: 1000 });
    assert.deepEqual(decide(rep, { method: 'GET', range: 'bytes=5000-' }), { status: 416 });
    assert.deepEqual(decide(rep, { method: 'GET', ifNoneMatch: 'W/"abc"' }), { status: 304 });
    assert.deepEqual(decide(rep, { method: 'GET', ifNoneMatch: '"other"', ifModifiedSince: lm }), { status: 200, start: 0, end: 1000 });
    assert.deepEqual(decide(rep, { method: 'GET', ifModifiedSince: lm }), { status: 304 });
    assert.deepEqual(decide(rep, { method: 'GET', ifModifiedSince: 'Sun, 06 Dec 2026 09:59:59 GMT' }), { status: 200, start: 0, end: 1000 });
    assert.deepEqual(decide(rep, { method: 'GET', ifModifiedSince: 'garbage' }), { status: 200, start: 0, end: 1000 });
    assert.deepEqual(decide(rep, { method: 'GET', ifMatch: '"zzz"' }), { status: 412 });
    assert.deepEqual(decide(rep, { method: 'GET', ifMatch: 'W/"abc"' }), { status: 412 });
    assert.deepEqual(decide(rep, { method: 'GET', ifUnmodifiedSince: 'Sun, 06 Dec 2026 09:00:00 GMT' }), { status: 412 });
  });

  it('If-Range: the range only for the same version (strong ETag or the exact Last-Modified)', () => {
    assert.equal(decide(rep, { method: 'GET', range: 'bytes=0-9', ifRange: '"abc"' }).status, 206);
    assert.equal(decide(rep, { method: 'GET', range: 'bytes=0-9', ifRange: '"old"' }).status, 200);
    assert.equal(decide(rep, { method: 'GET', range: 'bytes=0-9', ifRange: 'W/"abc"' }).status, 200);
    assert.equal(decide(rep, { method: 'GET', range: 'bytes=0-9', ifRange: lm }).status, 206);
    assert.equal(decide(rep, { method: 'GET', range: 'bytes=0-9', ifRange: 'Sun, 06 Dec 2026 09:00:00 GMT' }).status, 200);
  });
});
