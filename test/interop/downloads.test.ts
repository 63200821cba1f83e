import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test, type TestContext } from 'node:test';
import { CLIENT_NAMES, describeRun, download, sha256, type ClientName, type Endpoint } from '../support/clients.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { putObject, testS3, type TestS3 } from '../support/s3.js';
import { finishedLine, logMark, specFor, startedLine, verifyExclusion } from './helpers.js';
import { downloadMatrix, GATEWAY_FLAGS, ROLLOVER_SIZE, sizeLabel, SMALL_SIZES, type Cell } from './matrix.js';

/**
 * Downloads by tftp-hpa, atftp, curl and busybox at every blksize and windowsize each client can
 * ask for, checked by sha256 of the file the client wrote, and by the gateway's own account of
 * the transfer (negotiated blksize/windowsize, result ok, block count for the rollover).
 */

const { cells, rollover, exclusions } = downloadMatrix();

describe('interop: downloads by Debian TFTP clients', () => {
  let s3: TestS3;
  let gw: TestGateway;
  let ep: Endpoint;
  const files = new Map<number, { key: string; sha: string }>();

  before(async () => {
    s3 = await testS3();
    const bucket = await s3.createBucket();
    for (const size of [...SMALL_SIZES, ROLLOVER_SIZE]) {
      const body = randomBytes(size);
      const key = `dl/f${size}.bin`;
      await putObject(s3, bucket, key, body);
      files.set(size, { key, sha: sha256(body) });
    }
    gw = await startTestGateway(s3, bucket, GATEWAY_FLAGS);
    ep = { host: gw.host, port: gw.port };
  });

  after(async () => {
    await gw?.stop();
    await s3?.cleanup();
  });

  async function check(t: TestContext, cell: Cell, size: number, timeoutMs: number): Promise<void> {
    const file = files.get(size)!;
    const mark = logMark(gw);
    const r = await download(cell.client, ep, file.key, specFor(cell, { timeoutMs }));
    assert.ok(r.ok, `client failed: ${describeRun(r)}`);
    assert.equal(r.data.length, size, `length; ${describeRun(r)}`);
    assert.equal(r.sha256, file.sha, 'sha256 of the downloaded file');
    const started = startedLine(gw, mark, file.key, 'read');
    assert.equal(started.blksize, cell.blksize, 'negotiated blksize');
    assert.equal(started.windowsize, cell.windowsize, 'negotiated windowsize');
    const finished = await finishedLine(gw, mark, started);
    assert.equal(finished.result, 'ok', `gateway result: ${JSON.stringify(finished)}`);
    assert.equal(finished.blocks, Math.floor(size / cell.blksize) + 1, 'blocks sent');
    // A loss-free loopback transfer should need no retransmission: say so when it did.
    if (Number(finished.timeouts) > 0) {
      t.diagnostic(`gateway needed ${String(finished.timeouts)} timeouts, ${String(finished.retransmits)} retransmitted blocks, ${String(finished.durationMs)} ms`);
    }
  }

  for (const cell of cells) {
    describe(`${cell.client} at blksize ${cell.blksize}, windowsize ${cell.windowsize}`, () => {
      for (const size of cell.sizes) {
        test(`gets ${sizeLabel(size)}`, { timeout: 40_000 }, (t) => check(t, cell, size, 30_000));
      }
    });
  }

  test('every client reports a missing file as a failure (the harness sees failures)', { timeout: 60_000 }, async () => {
    for (const client of CLIENT_NAMES) {
      const r = await download(client, ep, 'dl/no-such-file', { timeoutMs: 20_000 });
      assert.equal(r.ok, false, `${client} run counted as success: ${describeRun(r)}`);
      assert.equal(r.timedOut, false, `${client} should fail fast on ERROR 1: ${describeRun(r)}`);
      assert.equal(r.data.length, 0);
    }
  });

  describe('block-number rollover (32 MiB + 1 B at blksize 512 = 65,537 blocks)', () => {
    for (const cell of rollover) {
      test(`${cell.client} at windowsize ${cell.windowsize}`, { timeout: 130_000 }, (t) => check(t, cell, ROLLOVER_SIZE, 120_000));
    }
  });

  describe('exclusions (documented, reason re-checked where it can be)', () => {
    // What a client asks when told nothing: the gateway logs the options it received.
    const optionsSent = async (client: ClientName): Promise<Record<string, unknown>> => {
      const file = files.get(513)!;
      const mark = logMark(gw);
      const r = await download(client, ep, file.key, { timeoutMs: 20_000 });
      assert.ok(r.ok, describeRun(r));
      assert.equal(r.sha256, file.sha);
      return startedLine(gw, mark, file.key, 'read').options as Record<string, unknown>;
    };
    for (const ex of exclusions) {
      // A verifiable reason runs as a test of the reason (fails if a client upgrade made it stale).
      if (ex.verify) test(`excluded: ${ex.what} — still true: ${ex.reason}`, { timeout: 30_000 }, () => verifyExclusion(ex, optionsSent));
      else test(`excluded (${ex.kind}): ${ex.what}`, { skip: ex.reason }, () => undefined);
    }
  });
});
