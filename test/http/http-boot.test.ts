import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { putObject, testS3, type TestS3 } from '../support/s3.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { run, sha256 } from '../support/clients.js';
import { tftpGet } from '../support/tftp-client.js';

/**
 * The HTTP boot front end against the real S3-compatible test server, with the clients boot
 * scripts use: curl (ranges, conditional requests, keep-alive reuse, HTTP/1.0) and busybox wget
 * (what initramfs scripts run). TFTP and HTTP share names, policy and the block cache.
 */

const IMAGE = randomBytes(12 * 1024 * 1024 + 123);
const SMALL = randomBytes(70_000);
const SITE = randomBytes(4096);

interface Curl {
  readonly status: number;
  readonly headers: Map<string, string>;
  readonly body: Buffer;
  readonly stderr: string;
}

describe('HTTP boot front end', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;
  let base: string;
  let dir: string;

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'tftp/boot/vmlinuz', IMAGE);
    await putObject(s3, bucket, 'tftp/boot/initrd.img', SMALL);
    await putObject(s3, bucket, 'tftp/café.bin', SMALL);
    await putObject(s3, bucket, 'sites/lab/boot/site.cfg', SITE);
    await putObject(s3, bucket, 'secret.txt', SMALL);
    gw = await startTestGateway(s3, bucket, [
      '--s3-prefix', 'tftp',
      '--http-boot-listen', '127.0.0.1:0',
      '--range-size', '1MiB',
      // A client prefix for another loopback address: the same per-client rule as TFTP.
      '--client-prefix', '127.0.0.2/32=sites/lab',
      '--read-deny', '127.0.0.3/32',
    ]);
    base = `http://127.0.0.1:${gw.gateway.httpBootAddresses[0]!.port}`;
    dir = await mkdtemp(path.join(tmpdir(), 'tftpgw-http-'));
  });

  after(async () => {
    await gw?.stop();
    await s3?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** curl with its response headers and body; `args` go before the URL(s). */
  async function curl(url: string | readonly string[], args: readonly string[] = []): Promise<Curl> {
    const out = path.join(dir, `body-${randomBytes(4).toString('hex')}`);
    const headerFile = `${out}.h`;
    const urls = typeof url === 'string' ? [url] : url;
    const r = await run('curl', ['-sS', '-D', headerFile, '-o', out, ...args, ...urls], { timeoutMs: 60_000 });
    assert.equal(r.exitCode, 0, `curl failed: ${r.stderr}`);
    const rawHeaders = await readFile(headerFile, 'latin1');
    const blocks = rawHeaders.trim().split(/\r\n\r\n/);
    const last = blocks[blocks.length - 1]!.split('\r\n');
    const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(last[0]!)?.[1]);
    const headers = new Map<string, string>();
    for (const line of last.slice(1)) {
      const i = line.indexOf(':');
      headers.set(line.slice(0, i).toLowerCase(), line.slice(i + 1).trim());
    }
    const body = await readFile(out).catch(() => Buffer.alloc(0));
    return { status, headers, body, stderr: r.stderr };
  }

  test('GET serves the object with Content-Length, ETag, Last-Modified and Accept-Ranges (curl)', async () => {
    const r = await curl(`${base}/boot/vmlinuz`);
    assert.equal(r.status, 200);
    assert.equal(sha256(r.body), sha256(IMAGE));
    assert.equal(r.headers.get('content-length'), String(IMAGE.length));
    assert.equal(r.headers.get('accept-ranges'), 'bytes');
    assert.match(r.headers.get('etag') ?? '', /^"[0-9a-f]{32}"$/);
    assert.ok(Date.parse(r.headers.get('last-modified') ?? '') > 0);
  });

  test('HEAD answers the same headers and no body', async () => {
    const r = await curl(`${base}/boot/vmlinuz`, ['-I']);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), String(IMAGE.length));
    // curl -I writes the header block as its output: nothing may follow it.
    assert.match(r.body.toString('latin1'), /^HTTP\/1\.1 200[^]*\r\n\r\n$/);
  });

  test('single byte ranges: 206 with Content-Range; suffix and open ranges; 416 past the end', async () => {
    const mid = await curl(`${base}/boot/vmlinuz`, ['-r', '1048000-1049999']);
    assert.equal(mid.status, 206);
    assert.equal(mid.headers.get('content-range'), `bytes 1048000-1049999/${IMAGE.length}`);
    assert.ok(mid.body.equals(IMAGE.subarray(1048000, 1050000)), 'bytes across a cache range boundary');
    const suffix = await curl(`${base}/boot/vmlinuz`, ['-r', '-100']);
    assert.equal(suffix.status, 206);
    assert.ok(suffix.body.equals(IMAGE.subarray(IMAGE.length - 100)));
    const open = await curl(`${base}/boot/vmlinuz`, ['-r', `${IMAGE.length - 10}-`]);
    assert.ok(open.body.equals(IMAGE.subarray(IMAGE.length - 10)));
    const past = await curl(`${base}/boot/vmlinuz`, ['-r', `${IMAGE.length}-`]);
    assert.equal(past.status, 416);
    assert.equal(past.headers.get('content-range'), `bytes */${IMAGE.length}`);
    // Several ranges: the whole object (RFC 9110 allows it; no multipart bodies).
    const multi = await curl(`${base}/boot/initrd.img`, ['-r', '0-9,20-29']);
    assert.equal(multi.status, 200);
    assert.ok(multi.body.equals(SMALL));
  });

  test('conditional requests: If-None-Match and If-Modified-Since give 304, If-Range a stale tag the whole object', async () => {
    const first = await curl(`${base}/boot/initrd.img`);
    const etag = first.headers.get('etag')!;
    const lastModified = first.headers.get('last-modified')!;
    const inm = await curl(`${base}/boot/initrd.img`, ['-H', `If-None-Match: ${etag}`]);
    assert.equal(inm.status, 304);
    assert.equal(inm.body.length, 0);
    const ims = await curl(`${base}/boot/initrd.img`, ['-H', `If-Modified-Since: ${lastModified}`]);
    assert.equal(ims.status, 304);
    const changed = await curl(`${base}/boot/initrd.img`, ['-H', 'If-None-Match: "0000"']);
    assert.equal(changed.status, 200);
    const ifRange = await curl(`${base}/boot/initrd.img`, ['-r', '0-9', '-H', `If-Range: ${etag}`]);
    assert.equal(ifRange.status, 206);
    const staleRange = await curl(`${base}/boot/initrd.img`, ['-r', '0-9', '-H', 'If-Range: "0000"']);
    assert.equal(staleRange.status, 200);
    assert.ok(staleRange.body.equals(SMALL));
  });

  test('keep-alive: curl reuses one connection for several requests; HTTP/1.0 clients are served', async () => {
    const r = await curl([`${base}/boot/initrd.img`, `${base}/boot/initrd.img`], ['-v']);
    assert.match(r.stderr, /Re-using existing connection|Reusing existing/i);
    const old = await curl(`${base}/boot/initrd.img`, ['--http1.0']);
    assert.equal(old.status, 200);
    assert.ok(old.body.equals(SMALL));
  });

  test('a client that shuts down its side after the request (half-close) still gets the whole response', async () => {
    // An object not yet cached: the answer waits on S3 after the client's FIN has arrived.
    const body = randomBytes(300_000);
    await putObject(s3, bucket, 'tftp/boot/half-close.bin', body);
    const port = gw.gateway.httpBootAddresses[0]!.port;
    const got = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = net.connect(port, '127.0.0.1', () => socket.end('GET /boot/half-close.bin HTTP/1.1\r\nHost: gw\r\n\r\n'));
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', reject);
      socket.on('close', () => resolve(Buffer.concat(chunks)));
    });
    const split = got.indexOf('\r\n\r\n');
    assert.match(got.subarray(0, split).toString('latin1'), /^HTTP\/1\.1 200/);
    assert.ok(got.subarray(split + 4).equals(body));
  });

  test('busybox wget downloads the image intact', async () => {
    const out = path.join(dir, 'wget-image');
    const r = await run('busybox', ['wget', '-q', '-O', out, `${base}/boot/vmlinuz`], { timeoutMs: 60_000 });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(sha256(await readFile(out)), sha256(IMAGE));
    const missing = await run('busybox', ['wget', '-q', '-O', path.join(dir, 'wget-missing'), `${base}/boot/none`], { timeoutMs: 30_000 });
    assert.notEqual(missing.exitCode, 0, 'wget reports a 404 as a failure');
  });

  test('errors: 404, 405 with Allow, 400 for non-canonical paths, 403 for directories, 414 for overlong targets', async () => {
    assert.equal((await curl(`${base}/boot/none`)).status, 404);
    const post = await curl(`${base}/boot/initrd.img`, ['-X', 'POST', '-d', 'x']);
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    for (const bad of ['/boot/%2e%2e/%2e%2e/secret.txt', '/boot%2finitrd.img', '/boot/initrd.img%00', '/boot//initrd.img']) {
      assert.equal((await curl(`${base}${bad}`, ['--path-as-is'])).status, 400, bad);
    }
    assert.equal((await curl(`${base}/../secret.txt`, ['--path-as-is'])).status, 400);
    assert.equal((await curl(`${base}/boot/`)).status, 403);
    assert.equal((await curl(`${base}/`)).status, 403);
    assert.equal((await curl(`${base}/${'a'.repeat(5000)}`)).status, 414);
  });

  test('names are bytes: a percent-encoded UTF-8 name reaches its key; invalid UTF-8 is refused', async () => {
    const r = await curl(`${base}/caf%C3%A9.bin`);
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(SMALL));
    assert.equal((await curl(`${base}/caf%E9.bin`)).status, 400);
  });

  test('one policy for both protocols: per-client prefixes and read-deny apply to HTTP as to TFTP', async () => {
    const lab = await curl(`http://127.0.0.1:${gw.gateway.httpBootAddresses[0]!.port}/boot/site.cfg`, ['--interface', '127.0.0.2']);
    assert.equal(lab.status, 200);
    assert.ok(lab.body.equals(SITE));
    const tftpLab = await tftpGet('boot/site.cfg', { port: gw.port, bind: '127.0.0.2' });
    assert.equal(tftpLab.error, undefined);
    assert.ok(tftpLab.data.equals(SITE));
    const denied = await curl(`${base}/boot/initrd.img`, ['--interface', '127.0.0.3']);
    assert.equal(denied.status, 403);
  });

  test('one cache: an image read over TFTP is served over HTTP without another S3 read', async () => {
    const key = 'boot/shared.img';
    const body = randomBytes(3 * 1024 * 1024 + 5);
    await putObject(s3, bucket, `tftp/${key}`, body);
    const fetched = async (): Promise<number> => (await gw.gateway.metricValues('tftp_gateway_s3_bytes_fetched_total')).reduce((a, v) => a + v.value, 0);
    const before = await fetched();
    const got = await tftpGet(key, { port: gw.port, options: { blksize: '1468' } });
    assert.equal(got.error, undefined);
    const afterTftp = await fetched();
    const overHttp = await curl(`${base}/${key}`);
    assert.ok(overHttp.body.equals(body));
    const afterHttp = await fetched();
    assert.equal(afterTftp - before, body.length, 'TFTP read the object once');
    assert.equal(afterHttp, afterTftp, 'HTTP read nothing more from S3');
  });

  test('metrics carry protocol="http"; one log line per response in the shape of the TFTP line', async () => {
    await curl(`${base}/boot/initrd.img`);
    await curl(`${base}/boot/none`);
    const finished = await gw.gateway.metricValues('tftp_gateway_transfers_finished_total');
    const ok = finished.find((v) => v.labels.protocol === 'http' && v.labels.result === 'ok');
    assert.ok(ok && ok.value > 0);
    const notFound = finished.find((v) => v.labels.protocol === 'http' && v.labels.result === 'not-found');
    assert.ok(notFound && notFound.value > 0);
    const codes = await gw.gateway.metricValues('tftp_gateway_http_responses_total');
    assert.ok((codes.find((v) => v.labels.code === '404')?.value ?? 0) > 0);
    const bytes = await gw.gateway.metricValues('tftp_gateway_transfer_bytes_total');
    assert.ok((bytes.find((v) => v.labels.protocol === 'http')?.value ?? 0) >= SMALL.length);
    const line = gw.logs.find((l) => l.protocol === 'http' && l.status === 404);
    assert.ok(line, 'a log line for the 404');
    for (const field of ['client', 'port', 'op', 'file', 'key', 'result', 'bytes', 'durationMs']) assert.ok(field in line, field);
    assert.equal(line.msg, 'transfer finished');
    assert.ok(!gw.logs.some((l) => l.protocol === 'http' && (l.level as number) >= 50), 'no error-level line for client mistakes');
  });
});

describe('HTTP and TFTP together on worker threads', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;
  let dir: string;

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    gw = await startTestGateway(s3, bucket, ['--http-boot-listen', '127.0.0.1:0', '--workers', '2', '--range-size', '1MiB', '--read-ahead', '2']);
    dir = await mkdtemp(path.join(tmpdir(), 'tftpgw-http-storm-'));
  });

  after(async () => {
    await gw?.stop();
    await s3?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a cold storm of 8 curl and 8 TFTP clients reads the image from S3 once (≤ 1.05×), every copy intact', async () => {
    const image = randomBytes(6 * 1024 * 1024 + 999);
    await putObject(s3, bucket, 'storm.img', image);
    const fetched = async (): Promise<number> => (await gw.gateway.metricValues('tftp_gateway_s3_bytes_fetched_total')).reduce((a, v) => a + v.value, 0);
    const before = await fetched();
    const url = `http://127.0.0.1:${gw.gateway.httpBootAddresses[0]!.port}/storm.img`;
    const httpClients = Array.from({ length: 8 }, async (_, i) => {
      const out = path.join(dir, `storm-${i}`);
      const r = await run('curl', ['-sS', '-f', '-o', out, url], { timeoutMs: 60_000 });
      assert.equal(r.exitCode, 0, r.stderr);
      return sha256(await readFile(out));
    });
    const tftpClients = Array.from({ length: 8 }, async () => {
      const got = await tftpGet('storm.img', { port: gw.port, options: { blksize: '1468', windowsize: '8' } });
      assert.equal(got.error, undefined);
      return sha256(got.data);
    });
    const sums = await Promise.all([...httpClients, ...tftpClients]);
    for (const sum of sums) assert.equal(sum, sha256(image));
    const read = (await fetched()) - before;
    assert.ok(read >= image.length && read <= image.length * 1.05, `S3 bytes ${read} for a ${image.length}-byte image`);
    // Both workers' HTTP responses are summed on /metrics.
    const ok = (await gw.gateway.metricValues('tftp_gateway_transfers_finished_total')).find((v) => v.labels.protocol === 'http' && v.labels.result === 'ok');
    assert.equal(ok?.value, 8);
  });
});
