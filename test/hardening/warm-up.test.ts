import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { httpGet, REPO_ROOT, scrape, spawnGateway, type Exposition, type GatewayProcess } from '../observability/helpers.js';
import { describeRun, download, sha256 } from '../support/clients.js';
import { s3Flags } from '../support/gateway.js';
import { type S3FaultProxy, withFaultProxy } from '../support/s3-fault-proxy.js';
import { credentialsEnv, putObject, type TestS3 } from '../support/s3.js';
import { until } from '../support/wait.js';
import { curl } from './http-helpers.js';
import { tempDirs } from '../support/temp-dirs.js';

/**
 * Warm before ready (--warm, --warm-file, --warm-timeout, --warm-interval), with real processes:
 * the gateway CLI against Ceph RGW behind a fault-injecting proxy (slow, or down), Debian's
 * tftp-hpa and curl as clients. "No S3 read" is checked twice: the gateway's own GetObject counter
 * and the GetObject requests the proxy saw.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const GET_OBJECT = { operation: 'GetObject' };

describe('warm before ready', () => {
  let s3: TestS3;
  let bucket: string;
  let proxy: S3FaultProxy;
  const tempDir = tempDirs('gw-warm-');
  const env = (): Record<string, string> => credentialsEnv(s3);
  const args = (extra: readonly string[]): string[] => [
    '--listen', '127.0.0.1:0',
    '--http-listen', '127.0.0.1:0',
    '--http-boot-listen', '127.0.0.1:0',
    ...s3Flags({ ...s3, endpoint: proxy.endpoint }, bucket),
    '--range-size', '1MiB',
    '--cache-size', '64MiB',
    '--s3-retry-budget-ms', '2000',
    '--s3-metadata-timeout-ms', '500',
    '--s3-max-attempts', '2',
    ...extra,
  ];
  const getObjects = (m: Exposition): number => m.value('tftp_gateway_s3_requests_total', GET_OBJECT);
  const readyz = (gw: GatewayProcess): ReturnType<typeof httpGet> => httpGet(`http://${gw.httpAddress}/readyz`);

  /** tftp-hpa and curl (HTTP boot) fetch `key`: both must get `body`. */
  async function clientsGet(gw: GatewayProcess, key: string, body: Buffer): Promise<void> {
    const r = await download('tftp-hpa', { host: '127.0.0.1', port: gw.udpPort }, key, { timeoutMs: 30_000 });
    assert.ok(r.ok, `tftp-hpa ${key}: ${describeRun(r)}`);
    assert.equal(r.sha256, sha256(body), `tftp-hpa ${key}: bytes`);
    const h = await curl(`http://${gw.httpBootAddress!}/${key}`, [], 30_000);
    assert.equal(h.status, 200, `curl ${key}: ${h.stderr}`);
    assert.equal(h.sha256, sha256(body), `curl ${key}: bytes`);
  }

  withFaultProxy((store, name, faults) => {
    s3 = store;
    bucket = name;
    proxy = faults;
  });

  test('/readyz answers 503 "warming" (progress in the metrics) then 200; the warmed objects reach tftp-hpa and curl with no S3 read', { timeout: 120_000 }, async (t) => {
    const image = randomBytes(3 * MiB + 1);
    const kernel = randomBytes(MiB + 512 * KiB);
    const config = randomBytes(100 * KiB);
    await putObject(s3, bucket, 'a/image.img', image);
    await putObject(s3, bucket, 'a/boot/vmlinuz', kernel);
    await putObject(s3, bucket, 'a/boot/grub.cfg', config);
    await putObject(s3, bucket, 'a/not-warmed.bin', randomBytes(10 * KiB));
    const dir = await tempDir();
    await writeFile(join(dir, 'warm.list'), '# the boot set\n\n/boot/\n');
    // A slow store: every range read waits 400 ms for its first byte, so warming takes seconds.
    proxy.clearFaults();
    const slow = proxy.inject((r) => r.operation === 'GetObject', { kind: 'delay', ms: 400 });
    let gw: GatewayProcess | undefined;
    try {
      const t0 = Date.now();
      gw = await spawnGateway(args(['--s3-prefix', 'a', '--warm', 'image.img', '--warm-file', join(dir, 'warm.list')]), env());
      const seen: { status: number; body: string }[] = [];
      const doneBytes: number[] = [];
      let total = 0;
      await until(async () => {
        const r = await readyz(gw!);
        seen.push({ status: r.status, body: r.body });
        const m = await scrape(gw!.httpAddress);
        doneBytes.push(m.value('tftp_gateway_warm_bytes', { state: 'done' }));
        total = m.value('tftp_gateway_warm_bytes', { state: 'done' }) + m.value('tftp_gateway_warm_bytes', { state: 'pending' });
        return r.status === 200;
      }, 60_000, '/readyz to answer 200', 50);
      t.diagnostic(`ready ${Date.now() - t0} ms after spawn (7 ranges at 400 ms first-byte latency); ${seen.length} readyz polls`);
      const warming = seen.filter((s) => s.status === 503);
      assert.ok(warming.length > 0, 'readyz answered 503 while warming');
      for (const w of warming) assert.match(w.body, /^not ready: warming: \d+ of \d+ objects, \d+ of \d+ bytes/, w.body);
      assert.ok(warming.some((w) => /warming: \d+ of 3 objects/.test(w.body)), `the set is three objects: ${warming[warming.length - 1]!.body}`);
      assert.equal(total, image.length + kernel.length + config.length);
      assert.ok(doneBytes.some((b) => b > 0 && b < total), `progress moved through intermediate values: ${doneBytes.join(',')}`);
      const m = await scrape(gw.httpAddress);
      assert.equal(m.value('tftp_gateway_warm_objects', { state: 'done' }), 3);
      assert.equal(m.value('tftp_gateway_warm_objects', { state: 'pending' }), 0);
      assert.equal(m.value('tftp_gateway_warming'), 0);
      assert.equal(m.value('tftp_gateway_warm_timeouts_total'), 0);
      assert.ok(gw.lines.some((l) => l.msg === 'warm-up done'), 'logged "warm-up done"');

      // The clients: everything from the cache, not one GetObject (the gateway's count and the proxy's).
      slow.times = 0;
      const before = getObjects(m);
      const proxied = proxy.seen('GetObject').length;
      await clientsGet(gw, 'image.img', image);
      await clientsGet(gw, 'boot/vmlinuz', kernel);
      await clientsGet(gw, 'boot/grub.cfg', config);
      assert.equal(getObjects(await scrape(gw.httpAddress)) - before, 0, 'no GetObject for warmed objects');
      assert.equal(proxy.seen('GetObject').length, proxied, 'the proxy saw no GetObject');
      // Control: an object outside the warm set is read from S3.
      const r = await download('tftp-hpa', { host: '127.0.0.1', port: gw.udpPort }, 'not-warmed.bin', { timeoutMs: 30_000 });
      assert.ok(r.ok, describeRun(r));
      assert.ok(getObjects(await scrape(gw.httpAddress)) > before, 'an unwarmed object costs a GetObject');
    } finally {
      await gw?.stop(5000);
      proxy.clearFaults();
    }
  });

  test('--warm-timeout: a store too slow to warm in time; ready at the timeout with a warning and the metric, warming goes on', { timeout: 120_000 }, async () => {
    const body = randomBytes(4 * MiB);
    await putObject(s3, bucket, 'slow/big.img', body);
    proxy.clearFaults();
    // Each range read answers after 2 s (within the retry budget given below): 4 ranges, 2 at a time, take 4 s.
    proxy.inject((r) => r.operation === 'GetObject', { kind: 'delay', ms: 2000 });
    let gw: GatewayProcess | undefined;
    try {
      const t0 = Date.now();
      gw = await spawnGateway(args(['--warm', 'slow/big.img', '--warm-timeout', '2', '--range-streams', '1', '--s3-retry-budget-ms', '5000']), env());
      const first = await readyz(gw);
      assert.equal(first.status, 503, first.body);
      assert.match(first.body, /warming/);
      await until(async () => (await readyz(gw!)).status === 200, 10_000, '/readyz 200 after the warm-up timeout', 50);
      const tookMs = Date.now() - t0;
      const m = await scrape(gw.httpAddress);
      assert.equal(m.value('tftp_gateway_warm_timeouts_total'), 1);
      assert.equal(m.value('tftp_gateway_warming'), 0);
      assert.ok(m.value('tftp_gateway_warm_objects', { state: 'pending' }) === 1, 'not warm yet when it became ready');
      const warn = gw.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('warm-up timed out'));
      assert.ok(warn, 'a warning is logged');
      assert.equal(warn.level, 40);
      assert.ok(tookMs < 8000, `ready ${tookMs} ms after spawn`);
      // Warming goes on and completes.
      await until(async () => (await scrape(gw!.httpAddress)).value('tftp_gateway_warm_objects', { state: 'done' }) === 1, 30_000, 'the warm-up to finish after the timeout', 100);
    } finally {
      await gw?.stop(5000);
      proxy.clearFaults();
    }
  });

  test('--warm-interval: a new version uploaded while running is fetched before any client asks, and served with no S3 read (--workers 2)', { timeout: 120_000 }, async () => {
    const v1 = randomBytes(2 * MiB + 3);
    await putObject(s3, bucket, 'live/pxe/initrd.img', v1);
    proxy.clearFaults();
    let gw: GatewayProcess | undefined;
    try {
      gw = await spawnGateway(args(['--warm', 'live/pxe/', '--warm-interval', '1', '--workers', '2']), env());
      await until(async () => (await readyz(gw!)).status === 200, 30_000, 'warm and ready', 50);
      await clientsGet(gw, 'live/pxe/initrd.img', v1);
      // Revalidation runs every second: the unchanged object is counted as such.
      await until(async () => (await scrape(gw!.httpAddress)).value('tftp_gateway_warm_refreshes_total', { result: 'unchanged' }) >= 1, 10_000, 'a revalidation', 100);

      // A new image (new bytes, new ETag) and a new object under the warmed path.
      const v2 = randomBytes(2 * MiB + 99);
      const added = randomBytes(300 * KiB);
      const fetchedBefore = (await scrape(gw.httpAddress)).value('tftp_gateway_warm_refreshes_total', { result: 'fetched' });
      await putObject(s3, bucket, 'live/pxe/initrd.img', v2);
      await putObject(s3, bucket, 'live/pxe/extra.bin', added);
      await until(
        async () => (await scrape(gw!.httpAddress)).value('tftp_gateway_warm_refreshes_total', { result: 'fetched' }) >= fetchedBefore + 2,
        30_000,
        'the refresh to fetch the new version and the new object',
        100,
      );
      const m = await scrape(gw.httpAddress);
      assert.equal(m.value('tftp_gateway_warm_refreshes_total', { result: 'failed' }), 0);
      assert.ok(gw.lines.some((l) => l.msg === 'warm-up: new version fetched' && l.key === 'live/pxe/initrd.img'), 'the new version is logged');
      const before = getObjects(m);
      const proxied = proxy.seen('GetObject').length;
      await clientsGet(gw, 'live/pxe/initrd.img', v2);
      await clientsGet(gw, 'live/pxe/extra.bin', added);
      assert.equal(getObjects(await scrape(gw.httpAddress)) - before, 0, 'the new version came from the cache');
      assert.equal(proxy.seen('GetObject').length, proxied, 'the proxy saw no GetObject');
    } finally {
      await gw?.stop(5000);
    }
  });

  test('--cache-dir: warmed to disk (not memory); a restart with S3 down is ready from disk within seconds and serves the set (--workers 2)', { timeout: 120_000 }, async (t) => {
    const image = randomBytes(3 * MiB + 17);
    await putObject(s3, bucket, 'edge/os.img', image);
    const cacheDir = await tempDir();
    const flags = ['--warm', 'edge/os.img', '--cache-dir', cacheDir, '--workers', '2', '--stale-if-error', '600'];
    proxy.clearFaults();
    let gw: GatewayProcess | undefined = await spawnGateway(args(flags), env());
    try {
      await until(async () => (await readyz(gw!)).status === 200, 30_000, 'warm and ready', 50);
      const m = await scrape(gw.httpAddress);
      assert.equal(m.value('tftp_gateway_cache_disk_bytes'), image.length, 'the set is on disk');
      assert.equal(m.value('tftp_gateway_cache_bytes'), 0, 'warming to disk leaves the memory cache alone');
      assert.equal((await readdir(cacheDir)).filter((n) => n.startsWith('r-')).length, 4);
    } finally {
      await gw.stop(5000);
    }

    proxy.mode = 'reset';
    try {
      const t0 = Date.now();
      gw = await spawnGateway(args(flags), env());
      await until(async () => (await readyz(gw!)).status === 200, 15_000, 'ready from disk while S3 is down', 50);
      const tookMs = Date.now() - t0;
      t.diagnostic(`restart with S3 down: ready ${tookMs} ms after spawn`);
      assert.ok(tookMs < 10_000, `ready ${tookMs} ms after spawn`);
      assert.match((await readyz(gw)).body, /S3 unreachable/);
      assert.ok(gw.lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('warm-up done from the disk tier')), 'logged');
      const m = await scrape(gw.httpAddress);
      assert.equal(m.value('tftp_gateway_warm_timeouts_total'), 0);
      assert.equal(m.value('tftp_gateway_warm_objects', { state: 'done' }), 1);
      await clientsGet(gw, 'edge/os.img', image);
    } finally {
      await gw?.stop(5000);
      proxy.mode = 'pass';
    }
  });

  test('configuration errors: an unreadable --warm-file, names outside the tree or with control characters: exit 2, every problem named', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    const unreadable = join(dir, 'secret.list');
    await writeFile(unreadable, 'x\n');
    await chmod(unreadable, 0o000);
    const bad = join(dir, 'bad.list');
    await writeFile(bad, 'ok.img\n# fine\n../../etc/passwd\n');
    const missing = join(dir, 'missing.list');
    const run = (argv: readonly string[]): Promise<{ code: number | null; stderr: string }> =>
      new Promise((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve', '--s3-bucket', 'b', '--listen', '127.0.0.1:0', '--http-listen', 'off', ...argv], {
          cwd: REPO_ROOT,
          env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', AWS_EC2_METADATA_DISABLED: 'true' },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stderr = '';
        child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
        child.on('error', reject);
        child.on('close', (code) => {
          clearTimeout(timer);
          resolve({ code, stderr });
        });
      });
    const r1 = await run(['--warm-file', missing]);
    assert.equal(r1.code, 2, r1.stderr);
    assert.match(r1.stderr, /--warm-file: cannot read '.*missing\.list'/);
    if (process.getuid?.() !== 0) {
      // root reads a mode-000 file anyway.
      const r2 = await run(['--warm-file', unreadable]);
      assert.equal(r2.code, 2, r2.stderr);
      assert.match(r2.stderr, /--warm-file: cannot read/);
    }
    const r3 = await run(['--warm', '../outside.img', '--warm', 'boot/\u0001x', '--warm', 'C:/win.img', '--warm-file', bad]);
    assert.equal(r3.code, 2, r3.stderr);
    assert.match(r3.stderr, /--warm: '\.\.\/outside\.img' is not a servable name \(parent reference/);
    assert.match(r3.stderr, /--warm: 'boot\/\\x01x' is not a servable name \(control character/);
    assert.match(r3.stderr, /--warm: 'C:\/win\.img' is not a servable name \(drive letter/);
    assert.match(r3.stderr, /--warm-file .*bad\.list line 3: '\.\.\/\.\.\/etc\/passwd' is not a servable name/);
    assert.doesNotMatch(r3.stderr, /ok\.img/);
  });
});
