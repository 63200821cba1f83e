import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ErrorCode } from '../../src/tftp/protocol/packet.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { getObject, listUploads, putObject, testS3, type TestS3 } from '../support/s3.js';
import { drained, get, put, refusalLogs, refused, sha } from './helpers.js';

/**
 * Who may do what, end to end through the real server socket: clients on different loopback
 * addresses (127.0.0.0/8 is all local), a real S3-compatible store behind.
 */
describe('access policy', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;
  let dir: string;
  const files = new Map<string, Buffer>();

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    for (const key of ['tftp/pxe.0', 'sites/other/pxe.0', 'tftp/pxelinux.cfg/7F000001', 'tftp/boot/wdsnbp.com', 'tftp/exists.bin', 'secret.txt']) {
      const body = randomBytes(700 + files.size);
      files.set(key, body);
      await putObject(s3, bucket, key, body);
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tftpgw-access-'));
    fs.writeFileSync(path.join(dir, 'rules'), ['# per-client PXELINUX config', 're ^pxelinux\\.cfg/default$ pxelinux.cfg/\\x', 'a \\.exe$', ''].join('\n'));
    gw = await startTestGateway(s3, bucket, [
      '--s3-prefix', 'tftp',
      '--client-prefix', '127.0.0.2/32=sites/other',
      '--read-allow', '127.0.0.0/29', '--read-deny', '127.0.0.4',
      '--write-allow', '127.0.0.0/8', '--write-deny', '127.0.0.3', '--write-prefixes', 'uploads',
      '--map-file', path.join(dir, 'rules'), '--map-backslashes', '--map-lowercase', '--map-strip-junk',
      '--refuse-options', 'windowsize',
      '--max-upload-size', '20000',
    ]);
  });

  after(async () => {
    await gw?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('reads: --read-deny wins, clients outside --read-allow are refused (ERROR 2, counted, logged once)', async () => {
    const ok = await get(gw.port, 'pxe.0', { bind: '127.0.0.1' });
    assert.equal(ok.error, undefined);
    assert.equal(sha(ok.data), sha(files.get('tftp/pxe.0')!));
    const logsBefore = refusalLogs(gw).length;
    const before = await refused(gw, 'read-denied');
    for (const bind of ['127.0.0.4', '127.0.0.9']) {
      const r = await get(gw.port, 'pxe.0', { bind });
      assert.equal(r.error?.code, ErrorCode.AccessViolation, bind);
    }
    assert.equal(await refused(gw, 'read-denied'), before + 2);
    const lines = refusalLogs(gw).slice(logsBefore);
    assert.equal(lines.length, 2, 'one log line per refusal');
    // With --workers the two clients may be served by different workers, whose lines reach the log in either order.
    assert.deepEqual(lines.map((l) => l.client).sort(), ['127.0.0.4', '127.0.0.9']);
  });

  test('per-client prefixes: a client block sees its own tree, the rest the default prefix', async () => {
    const mine = await get(gw.port, '/pxe.0', { bind: '127.0.0.2' });
    assert.equal(sha(mine.data), sha(files.get('sites/other/pxe.0')!));
    const theirs = await get(gw.port, '/pxe.0', { bind: '127.0.0.1' });
    assert.equal(sha(theirs.data), sha(files.get('tftp/pxe.0')!));
  });

  test('map rules apply before the key lookup: \\x substitution, abort rule', async () => {
    const cfg = await get(gw.port, 'pxelinux.cfg/default', { bind: '127.0.0.1' });
    assert.equal(cfg.error, undefined);
    assert.equal(sha(cfg.data), sha(files.get('tftp/pxelinux.cfg/7F000001')!));
    const before = await refused(gw, 'map-denied');
    const exe = await get(gw.port, 'tools/setup.exe', { bind: '127.0.0.1' });
    assert.equal(exe.error?.code, ErrorCode.AccessViolation);
    assert.equal(await refused(gw, 'map-denied'), before + 1);
  });

  test('built-in conveniences: backslashes, letter case, junk after the name', async () => {
    const r = await get(gw.port, '\\BOOT\\WdsNbp.Com\xff\x01garbage', { bind: '127.0.0.1' });
    assert.equal(r.error, undefined);
    assert.equal(sha(r.data), sha(files.get('tftp/boot/wdsnbp.com')!));
  });

  test('per-option refusal: a refused option is never granted', async () => {
    const r = await get(gw.port, 'pxe.0', { bind: '127.0.0.1', options: { blksize: '1024', windowsize: '8' } });
    assert.equal(r.error, undefined);
    assert.equal(r.oack?.get('blksize'), '1024');
    assert.equal(r.oack?.has('windowsize'), false);
  });

  test('writes: allowed clients under --write-prefixes only; --write-deny wins', async () => {
    const body = randomBytes(3000);
    const ok = await put(gw.port, 'uploads/a.bin', body, { bind: '127.0.0.1' });
    assert.equal(ok.error, undefined);
    assert.equal(sha((await getObject(s3, bucket, 'tftp/uploads/a.bin'))!), sha(body));
    const site = await put(gw.port, 'uploads/b.bin', body, { bind: '127.0.0.2' });
    assert.equal(site.error, undefined);
    assert.ok(await getObject(s3, bucket, 'sites/other/uploads/b.bin'), 'write prefixes are relative to the client tree');

    const loc = await refused(gw, 'write-location');
    const outside = await put(gw.port, 'boot/evil.bin', body, { bind: '127.0.0.1' });
    assert.equal(outside.error?.code, ErrorCode.AccessViolation);
    assert.equal(await refused(gw, 'write-location'), loc + 1);

    const den = await refused(gw, 'write-denied');
    const denied = await put(gw.port, 'uploads/c.bin', body, { bind: '127.0.0.3' });
    assert.equal(denied.error?.code, ErrorCode.AccessViolation);
    assert.equal(await refused(gw, 'write-denied'), den + 1);
    assert.equal(await getObject(s3, bucket, 'tftp/boot/evil.bin'), undefined);
    assert.equal(await getObject(s3, bucket, 'tftp/uploads/c.bin'), undefined);
  });

  test('max upload size: an announced tsize over it is refused at once (ERROR 3)', async () => {
    const before = await refused(gw, 'too-large');
    const r = await put(gw.port, 'uploads/big.bin', randomBytes(100), { bind: '127.0.0.1', options: { tsize: '20001' } });
    assert.equal(r.error?.code, ErrorCode.DiskFull);
    assert.equal(await refused(gw, 'too-large'), before + 1);
  });

  test('max upload size: a transfer that grows past it is aborted (ERROR 3), nothing stored', async () => {
    const r = await put(gw.port, 'uploads/grows.bin', randomBytes(30_000), { bind: '127.0.0.1', options: { blksize: '1000' } });
    assert.equal(r.error?.code, ErrorCode.DiskFull);
    assert.ok(await drained(gw));
    assert.equal(await getObject(s3, bucket, 'tftp/uploads/grows.bin'), undefined);
  });

  test('overwrite is refused by default (ERROR 6), the object untouched', async () => {
    const w = await put(gw.port, 'uploads/a.bin', randomBytes(10), { bind: '127.0.0.1' });
    assert.equal(w.error?.code, ErrorCode.FileExists);
    assert.ok((await getObject(s3, bucket, 'tftp/uploads/a.bin'))!.length === 3000);
  });
});

describe('write defaults and the overwrite flag', () => {
  let s3: TestS3;
  let bucket: string;

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'x/old.bin', Buffer.from('old'));
  });

  after(async () => {
    await s3?.cleanup();
  });

  test('without a write rule every WRQ is refused (write-disabled)', async () => {
    const gw = await startTestGateway(s3, bucket, []);
    try {
      const r = await put(gw.port, 'x/new.bin', Buffer.from('new'));
      assert.equal(r.error?.code, ErrorCode.AccessViolation);
      assert.equal(await refused(gw, 'write-disabled'), 1);
      assert.equal(await getObject(s3, bucket, 'x/new.bin'), undefined);
    } finally {
      await gw.stop();
    }
  });

  test('--allow-overwrite replaces an existing object', async () => {
    const gw = await startTestGateway(s3, bucket, ['--allow-write', '--allow-overwrite']);
    try {
      const body = randomBytes(2000);
      const r = await put(gw.port, 'x/old.bin', body);
      assert.equal(r.error, undefined);
      assert.equal(sha((await getObject(s3, bucket, 'x/old.bin'))!), sha(body));
    } finally {
      await gw.stop();
    }
  });

  for (const [what, size] of [['single PutObject', 4000], ['multipart upload', 5 * 1024 * 1024 + 3000]] as const) {
    test(`a racing overwrite is refused at completion (${what}: 412 / HEAD → ERROR 6), no parts left`, async (t) => {
      if (s3.kind !== 'rgw') return t.skip('needs Ceph RGW (conditional writes, ListMultipartUploads)');
      const gw = await startTestGateway(s3, bucket, ['--allow-write', '--upload-part-size', '5MiB']);
      try {
        const key = `race/${size}.bin`;
        const theirs = Buffer.from('stored by someone else meanwhile');
        const r = await put(gw.port, key, randomBytes(size), {
          options: { blksize: '1468', windowsize: '32' },
          // The WRQ passed the HEAD check (the key did not exist); now someone else stores it.
          beforeLastBlock: () => putObject(s3, bucket, key, theirs),
        });
        assert.equal(r.error?.code, ErrorCode.FileExists);
        assert.ok(await drained(gw));
        assert.equal((await getObject(s3, bucket, key))!.toString(), theirs.toString(), 'the other object is untouched');
        assert.equal(await listUploads(s3, bucket), 0);
      } finally {
        await gw.stop();
      }
    });
  }
});
