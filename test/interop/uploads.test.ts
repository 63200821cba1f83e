import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { describeRun, sha256, upload, type Endpoint } from '../support/clients.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { getObject, listUploads, testS3, type TestS3 } from '../support/s3.js';
import { logMark, specFor, startedLine } from './helpers.js';
import { GATEWAY_FLAGS, sizeLabel, uploadMatrix } from './matrix.js';

/**
 * Uploads by tftp-hpa, atftp, curl and busybox at every blksize/windowsize each can ask for. The
 * check is the object itself, read back from the bucket with the S3 client and compared by
 * sha256 as soon as the client reports success (the gateway withholds the final ACK until the
 * object is stored). 9 MiB + 3 B goes through a multipart upload (default 8 MiB parts).
 */

const { cells, exclusions } = uploadMatrix();

describe('interop: uploads by Debian TFTP clients', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;
  let ep: Endpoint;

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    gw = await startTestGateway(s3, bucket, GATEWAY_FLAGS);
    ep = { host: gw.host, port: gw.port };
  });

  after(async () => {
    await gw?.stop();
    await s3?.cleanup();
  });

  for (const cell of cells) {
    describe(`${cell.client} at blksize ${cell.blksize}, windowsize ${cell.windowsize}`, () => {
      for (const size of cell.sizes) {
        test(`puts ${sizeLabel(size)}`, { timeout: 70_000 }, async () => {
          const body = randomBytes(size);
          const key = `up/${cell.client}/b${cell.blksize}-w${cell.windowsize}-s${size}.bin`;
          const mark = logMark(gw);
          const r = await upload(cell.client, ep, key, body, specFor(cell, { timeoutMs: 60_000 }));
          assert.ok(r.ok, `client failed: ${describeRun(r)}`);
          const stored = await getObject(s3, bucket, key);
          assert.ok(stored, `no object ${key} after the client reported success; ${describeRun(r)}`);
          assert.equal(stored.length, size, 'stored length');
          assert.equal(sha256(stored), sha256(body), 'sha256 of the stored object');
          const started = startedLine(gw, mark, key, 'write');
          assert.equal(started.blksize, cell.blksize, 'negotiated blksize');
          assert.equal(started.windowsize, cell.windowsize, 'negotiated windowsize');
        });
      }
    });
  }

  test('no multipart upload is left behind', async (t) => {
    if (s3.kind !== 'rgw') return t.skip('s3rver does not list multipart uploads: needs Ceph RGW (npm test)');
    await gw.gateway.dispatcher.settled();
    assert.equal(await listUploads(s3, bucket), 0);
  });

  describe('exclusions (documented; the download suite re-checks the reasons)', () => {
    for (const ex of exclusions) test(`excluded (${ex.kind}): ${ex.what}`, { skip: ex.reason }, () => undefined);
  });
});
