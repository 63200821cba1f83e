import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { seededBytes } from '../support/prng.js';
import { putObject, testS3, type TestS3 } from '../support/s3.js';
import { until } from '../support/wait.js';
import { get } from './helpers.js';
import { ALLOWED, FUZZ_OBJECTS, describeCase, fuzzCases, type FuzzCase } from './http-fuzz-cases.js';
import { bootTarget, curl, exchange, logsAtLeast, metric, parseResponses, pool, request, sha256, urlOf, type Exchange, type Target } from './http-helpers.js';

/**
 * The HTTP boot front end under a fuzz of malformed request lines, headers and paths over raw TCP
 * (10,000 cases from a seeded PRNG, 50 connections at a time) while curl downloads a multi-MiB
 * object over and over: every download is whole and correct, every fuzz connection gets a
 * well-formed status line from the expected set (or a quiet close), nothing is logged at error
 * level for a client's mistake, no connection is left behind, and the gateway serves on after.
 * HTTP_FUZZ_SEED=<n> replays another seed.
 */

const SEED = Number(process.env.HTTP_FUZZ_SEED ?? 0x48_54_54_50);
const CASES = 10_000;
const CONCURRENCY = 50;
/** How long one fuzz connection may last (unfinished heads wait for the 2 s header timeout). */
const CASE_TIMEOUT_MS = 10_000;
const MiB = 1024 * 1024;

interface Verdict {
  readonly c: FuzzCase;
  readonly ex: Exchange;
  readonly statuses: number[];
  readonly problem?: string;
}

/** Checks one exchange against what its case allows; returns a problem or undefined. */
function judge(c: FuzzCase, ex: Exchange): Verdict {
  const parsed = parseResponses(ex.data, c.methods);
  const statuses = parsed.responses.map((r) => r.status);
  const fail = (problem: string): Verdict => ({ c, ex, statuses, problem });
  if (ex.end === 'timeout') return fail(`no answer and no close within ${CASE_TIMEOUT_MS} ms`);
  if (parsed.problem) return fail(`${parsed.problem} (${ex.data.length} bytes, end ${ex.end})`);
  if (ex.end === 'reset' && !c.oversized) return fail(`connection reset (${ex.error}) after ${statuses.join(',') || 'nothing'}`);
  // Bytes after a request's head (a mutated or unframed body) are the next request to the server:
  // answers past the requests sent may only be refusals of those.
  const extra = statuses.slice(Math.max(c.methods.length, 1));
  if (extra.some((s) => s !== 400 && s !== 408 && s !== 431)) return fail(`answers ${statuses.join(',')} to ${c.methods.length} request(s)`);
  const allowed = c.allowed ?? ALLOWED;
  for (const s of statuses) if (!ALLOWED.has(s) || !allowed.has(s)) return fail(`status ${s} (allowed: ${[...allowed].join(',')})`);
  if (c.exact !== undefined) {
    const exact = typeof c.exact === 'number' ? [c.exact] : c.exact;
    // An oversized head may be cut by a reset before the answer is read: then nothing arrived.
    if (statuses.length === 0 && !(c.oversized && ex.end === 'reset')) return fail(`no answer (expected ${exact.join(' or ')})`);
    if (statuses.length > 0 && !exact.includes(statuses[0]!)) return fail(`status ${statuses[0]} (expected ${exact.join(' or ')})`);
  }
  return { c, ex, statuses };
}

describe(`HTTP boot fuzz: ${CASES} malformed requests over TCP while downloads run (seed 0x${SEED.toString(16)})`, () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;
  let target: Target;
  const big = seededBytes(SEED ^ 0xb16, 6 * MiB + 123);
  const small = Buffer.from('small object\n');

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, FUZZ_OBJECTS.big, big);
    await putObject(s3, bucket, FUZZ_OBJECTS.small, small);
    await putObject(s3, bucket, FUZZ_OBJECTS.mid, seededBytes(SEED ^ 0x61d, 64 * 1024 + 1));
    await putObject(s3, bucket, FUZZ_OBJECTS.nested, Buffer.from('nested'));
    await putObject(s3, bucket, FUZZ_OBJECTS.spaced, Buffer.from('spaced'));
    gw = await startTestGateway(s3, bucket, [
      '--http-boot-listen', '127.0.0.1:0',
      '--http-header-timeout', '2',
      '--http-keepalive-timeout', '2',
      '--log-level', 'debug',
    ]);
    target = bootTarget(gw);
  });

  after(async () => {
    await gw?.stop();
    await s3?.cleanup();
  });

  test('a malformed request pipelined behind a response never puts bytes into that response, nor takes its place', async () => {
    const get = `GET /${FUZZ_OBJECTS.big} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const bad = 'GET /x HTTP/1.1\r\nHost: x\r\nBad\x00: y\r\n\r\n';
    /** The first answer is the GET's (200) or none; its body is the object's prefix; after it, only a 400. */
    const check = (data: Buffer, what: string): void => {
      if (data.length === 0) return;
      const headEnd = data.indexOf('\r\n\r\n');
      assert.ok(headEnd > 0, `${what}: a response head`);
      const head = data.toString('latin1', 0, headEnd);
      assert.match(head, /^HTTP\/1\.1 200 /, `${what}: the GET's answer first, not the bad request's (${JSON.stringify(head.slice(0, 40))})`);
      const body = data.subarray(headEnd + 4, headEnd + 4 + big.length);
      assert.ok(body.equals(big.subarray(0, body.length)), `${what}: the body is the object's first ${body.length} bytes, nothing else in it`);
      if (body.length === big.length) {
        const rest = parseResponses(data.subarray(headEnd + 4 + big.length));
        assert.equal(rest.problem, undefined, what);
        assert.ok(rest.responses.every((r) => r.status === 400), `${what}: after the object, only the bad request's 400`);
      }
    };
    // Both in one segment: the bad request is parsed while the GET waits for its object.
    const together = await exchange(target, [Buffer.from(get + bad, 'latin1')], { end: false, timeoutMs: 20_000 });
    assert.notEqual(together.end, 'timeout');
    check(together.data, 'pipelined in one write');
    // The bad request arrives while the GET's body is being sent.
    const during = await new Promise<Buffer>((resolve) => {
      const got: Buffer[] = [];
      let n = 0;
      const socket = net.connect(target.port, target.host);
      socket.on('data', (d: Buffer) => {
        got.push(d);
        n += d.length;
        if (n > 256 * 1024 && n - d.length <= 256 * 1024) socket.write(bad, 'latin1');
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(Buffer.concat(got)));
      socket.setTimeout(20_000, () => socket.destroy());
      socket.write(get);
    });
    check(during, 'sent while the body streams');
    await until(async () => (await metric(gw, 'tftp_gateway_http_connections')) === 0, 5000, 'both connections closed');
  });

  test('every answer is a clear status or a quiet close; downloads stay correct; no error logs; the gateway serves on', { timeout: 120_000 }, async (t) => {
    t.diagnostic(`seed 0x${SEED.toString(16)} (HTTP_FUZZ_SEED=${SEED} replays it)`);
    const head = await request(target, `/${FUZZ_OBJECTS.small}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    const etag = String(head.headers.etag);
    const cases = fuzzCases(SEED, CASES, etag);

    // Downloads of the multi-MiB object, two at a time, for as long as the fuzz runs.
    let fuzzing = true;
    const downloads: { status: number; ok: boolean; ms: number; note: string }[] = [];
    const downloader = async (lane: number): Promise<void> => {
      for (let i = 0; fuzzing || i === 0; i++) {
        // Alternate whole downloads and ranged ones (curl checks nothing itself: the digest does).
        const ranged = (i + lane) % 3 === 2;
        const r = await curl(urlOf(target, `/${FUZZ_OBJECTS.big}`), ranged ? ['-r', `${MiB}-`] : [], 60_000);
        const want = ranged ? sha256(big.subarray(MiB)) : sha256(big);
        downloads.push({ status: r.status, ok: r.exitCode === 0 && r.sha256 === want && r.status === (ranged ? 206 : 200), ms: r.ms, note: `${r.status} exit ${r.exitCode} ${r.bytes} bytes ${r.stderr.trim()}` });
      }
    };
    const downloading = Promise.all([downloader(0), downloader(1)]);

    const t0 = performance.now();
    let verdicts: Verdict[];
    try {
      verdicts = await pool(cases.length, CONCURRENCY, async (i) => {
        const c = cases[i]!;
        const answers = c.end ? undefined : { count: Math.max(1, c.methods.length), methods: c.methods };
        return judge(c, await exchange(target, c.chunks, { end: c.end, timeoutMs: CASE_TIMEOUT_MS, ...(answers ? { answers } : {}) }));
      });
    } finally {
      fuzzing = false;
    }
    const fuzzMs = performance.now() - t0;
    await downloading;

    const tally = new Map<string, number>();
    for (const v of verdicts) {
      const key = v.statuses.length ? v.statuses.join('+') : `none(${v.ex.end})`;
      tally.set(key, (tally.get(key) ?? 0) + 1);
    }
    const kinds = new Map<string, number>();
    for (const c of cases) kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
    t.diagnostic(`${CASES} cases in ${Math.round(fuzzMs)} ms; kinds ${JSON.stringify(Object.fromEntries(kinds))}`);
    t.diagnostic(`answers ${JSON.stringify(Object.fromEntries([...tally].sort((a, b) => b[1] - a[1]).slice(0, 25)))}`);
    t.diagnostic(`downloads: ${downloads.length}, ${downloads.map((d) => Math.round(d.ms)).join(' ')} ms`);

    const noneByKind = new Map<string, number>();
    for (const v of verdicts) if (v.statuses.length === 0) noneByKind.set(v.c.kind, (noneByKind.get(v.c.kind) ?? 0) + 1);
    t.diagnostic(`unanswered by kind ${JSON.stringify(Object.fromEntries(noneByKind))}`);
    const bad = verdicts.filter((v) => v.problem !== undefined);
    assert.deepEqual(
      bad.slice(0, 10).map((v) => `${describeCase(v.c)}\n    -> ${v.problem}; answers ${v.statuses.join(',')}; ${JSON.stringify(v.ex.data.toString('latin1').slice(0, 160))}`),
      [],
      `${bad.length} of ${CASES} fuzz connections got a wrong answer (seed 0x${SEED.toString(16)})`,
    );
    // The fuzz reached the server's parser and our handler both, and the cases that must be refused were.
    for (const s of [200, 400, 403, 404, 405, 408, 414, 431]) assert.ok(tally.has(String(s)) || [...tally.keys()].some((k) => k.split('+').includes(String(s))), `some case answered ${s}`);

    assert.ok(downloads.length >= 4, `downloads ran alongside the fuzz (${downloads.length})`);
    for (const d of downloads) assert.ok(d.ok, `download: ${d.note}`);

    // No error-level line for client mistakes, no fault counted, no connection left open.
    assert.deepEqual(logsAtLeast(gw.logs, 50).slice(0, 5), [], 'no log line at level error or above');
    assert.equal(await metric(gw, 'tftp_gateway_internal_errors_total'), 0);
    await until(async () => (await metric(gw, 'tftp_gateway_http_connections')) === 0, 10_000, 'every fuzz connection to be closed');

    // Still serving, both protocols.
    const after = await curl(urlOf(target, `/${FUZZ_OBJECTS.big}`));
    assert.equal(after.status, 200);
    assert.equal(after.sha256, sha256(big));
    const tftp = await get(gw.port, FUZZ_OBJECTS.small);
    assert.equal(tftp.error, undefined);
    assert.deepEqual(tftp.data, small);
  });
});
