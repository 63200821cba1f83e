import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { httpGet, scrape, spawnGateway, type GatewayProcess } from '../observability/helpers.js';
import { CLIENT_NAMES, describeRun, download, sha256, type ClientName } from '../support/clients.js';
import { s3Flags, startTestGateway, type TestGateway } from '../support/gateway.js';
import { type S3FaultProxy, withFaultProxy } from '../support/s3-fault-proxy.js';
import { credentialsEnv, putObject, type TestS3 } from '../support/s3.js';
import { until } from '../support/wait.js';
import { curl } from './http-helpers.js';
import { tempDirs } from '../support/temp-dirs.js';

/**
 * The --cache-dir tier with real parts: a gateway restarted while S3 is down serves what it had on
 * disk; a SIGKILL mid-fill and a corrupted range file never lead to wrong bytes; a full disk turns
 * the tier off with one log line and a metric while transfers go on.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
/** What an uncached name must be refused within (the retry budget below, with margin). */
const ANSWER_BOUND_MS = 10_000;
const printsErrorText = (c: ClientName): boolean => c !== 'curl';
const rangeFiles = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((n) => n.startsWith('r-')).sort();
const metaFiles = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((n) => n.startsWith('m-'));

async function flipByte(path: string, at: number): Promise<void> {
  const bytes = await readFile(path);
  bytes[at] = bytes[at]! ^ 0x5a;
  await writeFile(path, bytes);
}

describe('disk cache tier across restarts and failures', () => {
  let s3: TestS3;
  let bucket: string;
  let proxy: S3FaultProxy;
  const tempDir = tempDirs('gw-cache-dir-');

  withFaultProxy((store, name, faults) => {
    s3 = store;
    bucket = name;
    proxy = faults;
  });

  const flags = (dir: string): string[] => [
    '--cache-dir', dir,
    '--range-size', '1MiB',
    '--cache-size', '8MiB',
    '--metadata-ttl-ms', '300',
    '--stale-if-error', '600',
    '--s3-retry-budget-ms', '2000',
    '--s3-metadata-timeout-ms', '500',
    '--s3-max-attempts', '2',
    '--http-listen', '127.0.0.1:0',
  ];

  test('restart while S3 answers 503 / hangs / resets: the image on disk is served to every client within 5 s; an uncached name gets ERROR', { timeout: 180_000 }, async () => {
    const body = randomBytes(3 * MiB + 1);
    await putObject(s3, bucket, 'boot/edge.img', body);
    await putObject(s3, bucket, 'boot/never-read.img', randomBytes(100 * KiB));
    const dir = await tempDir();
    proxy.mode = 'pass';
    const first = await startTestGateway({ ...s3, endpoint: proxy.endpoint }, bucket, flags(dir));
    try {
      const warm = await download('tftp-hpa', { host: '127.0.0.1', port: first.port }, 'boot/edge.img');
      assert.ok(warm.ok, describeRun(warm));
      assert.equal(warm.sha256, sha256(body));
      await until(async () => (await rangeFiles(dir)).length === 4 && (await metaFiles(dir)).length === 1, 10_000, 'four range files and one metadata file');
    } finally {
      await first.stop();
    }

    for (const mode of ['unavailable', 'hang', 'reset'] as const) {
      proxy.mode = mode;
      const startedAt = Date.now();
      const gw: TestGateway = await startTestGateway({ ...s3, endpoint: proxy.endpoint }, bucket, flags(dir));
      try {
        const ep = { host: '127.0.0.1', port: gw.port };
        const ready = await httpGet(`http://${gw.gateway.httpAddress!}/readyz`);
        assert.equal(ready.status, 200, `readyz: ${ready.status} ${ready.body}`);
        const results = await Promise.all(CLIENT_NAMES.map((c) => download(c, ep, 'boot/edge.img', { timeoutMs: 15_000 }).then((r) => ({ c, r, at: Date.now() - startedAt }))));
        for (const { c, r, at } of results) {
          assert.ok(r.ok, `${mode} ${c}: ${describeRun(r)}`);
          assert.equal(r.sha256, sha256(body), `${mode} ${c}: bytes`);
          assert.ok(at < 5000, `${mode} ${c}: served ${at} ms after start`);
        }
        for (const c of CLIENT_NAMES) {
          const t0 = Date.now();
          const r = await download(c, ep, 'boot/never-read.img', { timeoutMs: 30_000 });
          const took = Date.now() - t0;
          assert.ok(!r.ok, `${mode} ${c}: an uncached name must fail`);
          assert.ok(took < ANSWER_BOUND_MS, `${mode} ${c}: refused after ${took} ms`);
          if (printsErrorText(c)) assert.match(r.stdout + r.stderr, /Storage unavailable/, `${mode} ${c}: ${describeRun(r)}`);
        }
        const m = await scrape(gw.gateway.httpAddress!);
        assert.ok(m.value('tftp_gateway_cache_disk_hits_total') >= 4, 'ranges read from disk');
        assert.equal(m.value('tftp_gateway_cache_disk_bytes'), body.length);
      } finally {
        await gw.stop();
      }
    }
    proxy.mode = 'pass';
  });

  test('SIGKILL during a cold fill, restart: correct bytes with S3 up and down; a corrupted range file is never served', { timeout: 180_000 }, async () => {
    const body = randomBytes(24 * MiB + 7);
    await putObject(s3, bucket, 'boot/killed.img', body);
    const dir = await tempDir();
    const env = credentialsEnv(s3);
    const args = (): string[] => ['--listen', '127.0.0.1:0', ...s3Flags({ ...s3, endpoint: proxy.endpoint }, bucket), ...flags(dir)];
    proxy.mode = 'pass';
    let gw: GatewayProcess = await spawnGateway(args(), env);
    const killedDownload = download('atftp', { host: '127.0.0.1', port: gw.udpPort }, 'boot/killed.img', { timeoutMs: 30_000 });
    await until(async () => (await rangeFiles(dir)).length >= 3, 20_000, 'some range files written');
    gw.kill();
    await gw.exited;
    const partial = await killedDownload;
    assert.ok(!partial.ok || partial.sha256 === sha256(body), 'the killed transfer never completed with wrong bytes');
    const afterKill = await rangeFiles(dir);
    assert.ok(afterKill.length < 25, `killed mid-fill (${afterKill.length} files)`);

    // A flipped byte in a range file: detected at the first read after start, refetched.
    await flipByte(join(dir, afterKill[0]!), 4321);
    gw = await spawnGateway(args(), env);
    try {
      for (const c of ['tftp-hpa', 'curl'] as const) {
        const r = await download(c, { host: '127.0.0.1', port: gw.udpPort }, 'boot/killed.img', { timeoutMs: 60_000 });
        assert.ok(r.ok, describeRun(r));
        assert.equal(r.sha256, sha256(body), `${c} after SIGKILL, S3 up`);
      }
      const m = await scrape(gw.httpAddress);
      assert.equal(m.value('tftp_gateway_cache_disk_corrupt_total'), 1);
      await until(async () => (await rangeFiles(dir)).length === 25, 20_000, 'every range on disk');
    } finally {
      await gw.stop(5000);
    }

    // S3 down: everything comes from disk; one more corrupted file fails that transfer, never wrong bytes.
    proxy.mode = 'reset';
    gw = await spawnGateway(args(), env);
    try {
      const r = await download('busybox', { host: '127.0.0.1', port: gw.udpPort }, 'boot/killed.img', { timeoutMs: 60_000 });
      assert.ok(r.ok, describeRun(r));
      assert.equal(r.sha256, sha256(body), 'after restart, S3 down');
    } finally {
      await gw.stop(5000);
    }
    const files = await rangeFiles(dir);
    await flipByte(join(dir, files[files.length - 1]!), 99);
    gw = await spawnGateway(args(), env);
    try {
      const r = await download('tftp-hpa', { host: '127.0.0.1', port: gw.udpPort }, 'boot/killed.img', { timeoutMs: 60_000 });
      assert.ok(!r.ok, 'a corrupted range cannot be served while S3 is down: the transfer fails');
      assert.notEqual(r.sha256, sha256(body));
      const m = await scrape(gw.httpAddress);
      assert.equal(m.value('tftp_gateway_cache_disk_corrupt_total'), 1);
    } finally {
      await gw.stop(5000);
      proxy.mode = 'pass';
    }
  });

  test('disk full (a 2 MiB tmpfs) while filling 8 MiB: correct bytes, the tier off, one log line, the metric', { timeout: 120_000 }, async (t) => {
    const body = randomBytes(8 * MiB + 3);
    await putObject(s3, bucket, 'boot/big.img', body);
    const dir = await tempDir();
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { stdio: 'pipe' });
    } catch (err) {
      t.skip(`cannot mount a tmpfs (${String(err).split('\n')[0]}): needs root and CAP_SYS_ADMIN`);
      return;
    }
    try {
      proxy.mode = 'pass';
      const gw = await startTestGateway({ ...s3, endpoint: proxy.endpoint }, bucket, [...flags(dir), '--cache-dir-size', '64MiB']);
      try {
        for (const c of ['tftp-hpa', 'atftp'] as const) {
          const r = await download(c, { host: '127.0.0.1', port: gw.port }, 'boot/big.img', { timeoutMs: 60_000 });
          assert.ok(r.ok, describeRun(r));
          assert.equal(r.sha256, sha256(body), c);
        }
        await until(() => gw.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('disk cache tier turned off')), 10_000, 'the tier turned off');
        const lines = gw.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('disk cache tier turned off'));
        assert.equal(lines.length, 1, 'exactly one log line');
        assert.equal(lines[0]!.level, 50, 'logged as an error');
        assert.equal(lines[0]!.code, 'ENOSPC');
        const m = await scrape(gw.gateway.httpAddress!);
        assert.equal(m.value('tftp_gateway_cache_disk_enabled'), 0);
        assert.ok(m.value('tftp_gateway_cache_disk_errors_total') >= 1);
        assert.equal((await readdir(dir)).filter((n) => n.startsWith('tmp-')).length, 0, 'no temp file left behind');
      } finally {
        await gw.stop();
      }
    } finally {
      execFileSync('umount', [dir]);
    }
  });

  test('--workers 2: the image read once is served from disk after a restart with S3 down, to tftp-hpa and over HTTP to curl', { timeout: 120_000 }, async () => {
    const body = randomBytes(5 * MiB + 123);
    await putObject(s3, bucket, 'boot/workers.img', body);
    const dir = await tempDir();
    const env = credentialsEnv(s3);
    const args = (): string[] => [
      '--listen', '127.0.0.1:0', '--http-boot-listen', '127.0.0.1:0', '--workers', '2',
      ...s3Flags({ ...s3, endpoint: proxy.endpoint }, bucket), ...flags(dir),
    ];
    const clients = async (gw: GatewayProcess, what: string): Promise<void> => {
      const r = await download('tftp-hpa', { host: '127.0.0.1', port: gw.udpPort }, 'boot/workers.img', { timeoutMs: 60_000 });
      assert.ok(r.ok, `${what} tftp-hpa: ${describeRun(r)}`);
      assert.equal(r.sha256, sha256(body), `${what} tftp-hpa: bytes`);
      const h = await curl(`http://${gw.httpBootAddress!}/boot/workers.img`, [], 60_000);
      assert.equal(h.status, 200, `${what} curl: ${h.stderr}`);
      assert.equal(h.sha256, sha256(body), `${what} curl: bytes`);
    };
    proxy.mode = 'pass';
    let gw = await spawnGateway(args(), env);
    try {
      await clients(gw, 'S3 up');
      await until(async () => (await rangeFiles(dir)).length === 6 && (await metaFiles(dir)).length === 1, 10_000, 'six range files and one metadata file');
    } finally {
      await gw.stop(5000);
    }
    proxy.mode = 'reset';
    try {
      gw = await spawnGateway(args(), env);
      const ready = await httpGet(`http://${gw.httpAddress}/readyz`);
      assert.equal(ready.status, 200, `readyz: ${ready.body}`);
      await clients(gw, 'S3 down');
      const m = await scrape(gw.httpAddress);
      assert.ok(m.value('tftp_gateway_cache_disk_hits_total') >= 6, 'ranges read from disk');
      assert.equal(m.value('tftp_gateway_s3_requests_total', { operation: 'GetObject', outcome: 'ok' }), 0, 'no GetObject succeeded: S3 is down');
    } finally {
      await gw.stop(5000);
      proxy.mode = 'pass';
    }
  });
});
