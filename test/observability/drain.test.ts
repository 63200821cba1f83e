import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { getObject, listUploads, putObject, testS3, type TestS3 } from '../support/s3.js';
import { tftpGet } from '../support/tftp-client.js';
import { controlledPut, httpGet, scrape, slowGet, exitOf, spawnDrainGateway, type GatewayProcess } from './helpers.js';
import { until } from '../support/wait.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

/**
 * The real CLI, SIGTERM and SIGINT: what ECS does to a task. Uploads go past 10 MiB, so a multipart
 * upload exists in S3 when the signal lands (lib-storage creates it once a second part arrives).
 */
describe('graceful drain of the real process', () => {
  let s3: TestS3;
  let bucket: string;
  const big = randomBytes(600 * 1024);
  const children: GatewayProcess[] = [];

  const start = async (drainTimeoutS: number): Promise<GatewayProcess> => {
    const gw = await spawnDrainGateway(s3, bucket, drainTimeoutS);
    children.push(gw);
    return gw;
  };

  /** The signal must land while a multipart upload exists in S3, or "leaves nothing" proves little. */
  const multipartStarted = async (gw: GatewayProcess): Promise<void> => {
    await until(async () => (await scrape(gw.httpAddress)).value('tftp_gateway_s3_multipart_uploads_started_total') === 1, 5000, 'the multipart upload');
    if (s3.kind === 'rgw') assert.equal(await listUploads(s3, bucket), 1);
  };

  const noLeftovers = async (key: string): Promise<void> => {
    assert.equal(await getObject(s3, bucket, key), undefined, `no object ${key}`);
    if (s3.kind === 'rgw') assert.equal(await listUploads(s3, bucket), 0, 'no multipart upload left');
  };

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'boot/big.bin', big);
  });
  after(async () => {
    for (const c of children) c.kill();
    await Promise.all(children.map((c) => exitOf(c, 5000)));
    await s3?.cleanup();
  });

  test('SIGTERM mid-transfer: new requests refused, /readyz unready, the download and the upload finish, exit 0', async () => {
    const gw = await start(30);
    const starting = gw.lines.find((l) => l.msg === 'starting tftp-gateway');
    assert.equal((starting?.config as Record<string, unknown> | undefined)?.s3Bucket, bucket, 'configuration summary at start');
    assert.equal((await httpGet(`http://${gw.httpAddress}/readyz`)).status, 200);

    let blocks = 0;
    // 1200 blocks of 512 bytes, ACKed slowly: still running when the signal lands.
    const download = slowGet(gw.udpPort, 'boot/big.bin', { blksize: 512, ackDelayMs: 2, timeoutMs: 10_000, onBlock: (n) => (blocks = n) });
    let uploaded = 0;
    const body = randomBytes(11 * MiB + 99);
    const upload = controlledPut(gw.udpPort, 'up/during-drain.bin', body, { blksize: 1468, timeoutMs: 10_000, onAcked: (n) => (uploaded = n) });
    await until(() => uploaded > 10 * MiB + 100 * 1468 && blocks > 10, 20_000, 'both transfers under way');
    await multipartStarted(gw);
    assert.ok(blocks < 1000, `the download is still running (block ${blocks})`);

    gw.child.kill('SIGTERM');
    await gw.waitForLine((l) => l.msg === 'stopping: draining transfers', 5000, 'the drain to start');
    const ready = await httpGet(`http://${gw.httpAddress}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(ready.body, /draining/);
    assert.equal((await httpGet(`http://${gw.httpAddress}/healthz`)).status, 200, 'alive while the sockets are bound');
    const refused = await tftpGet('boot/big.bin', { port: gw.udpPort });
    assert.deepEqual(refused.error, { code: 0, message: 'Server shutting down' });

    const got = await download;
    assert.equal(got.error, undefined);
    assert.equal(sha(got.data), sha(big));
    const put = await upload;
    assert.equal(put.outcome, 'ok', JSON.stringify(put.error));
    assert.equal(sha((await getObject(s3, bucket, 'up/during-drain.bin'))!), sha(body));
    if (s3.kind === 'rgw') assert.equal(await listUploads(s3, bucket), 0);

    assert.equal(await exitOf(gw, 15_000), 0);
    // Logs flushed: the last line is the stop, and both transfers were logged as finished.
    assert.equal(gw.lines.at(-1)?.msg, 'tftp-gateway stopped');
    const finished = gw.lines.filter((l) => l.msg === 'transfer finished');
    assert.deepEqual(finished.map((l) => `${String(l.op)}:${String(l.result)}`).sort(), ['read:ok', 'write:ok']);
    assert.ok(!gw.stdout().includes(s3.credentials.secretAccessKey), 'no secret in the logs');
    assert.equal(gw.stderr().includes('Error'), false, gw.stderr());
  });

  test('drain deadline: what is left is aborted (the upload leaves nothing), exit 0', async () => {
    const gw = await start(1);
    const body = randomBytes(11 * MiB);
    const put = await controlledPut(gw.udpPort, 'up/stalled.bin', body, { blksize: 1468, stallAfter: 10 * MiB + 50 * 1468 });
    assert.equal(put.outcome, 'stalled');
    await multipartStarted(gw);
    const signalled = Date.now();
    gw.child.kill('SIGTERM');
    assert.equal(await exitOf(gw, 15_000), 0);
    const took = Date.now() - signalled;
    assert.ok(took >= 900, `waited for the drain deadline (${took} ms)`);
    assert.ok(gw.lines.some((l) => l.msg === 'drain deadline reached: aborting transfers'));
    const finished = gw.lines.find((l) => l.msg === 'transfer finished');
    assert.equal(finished?.result, 'shutdown');
    assert.equal(gw.lines.at(-1)?.msg, 'tftp-gateway stopped');
    await noLeftovers('up/stalled.bin');
  });

  test('a second signal exits at once after aborting uploads', async () => {
    const gw = await start(60);
    const put = await controlledPut(gw.udpPort, 'up/interrupted.bin', randomBytes(11 * MiB), { blksize: 1468, stallAfter: 10 * MiB + 50 * 1468 });
    assert.equal(put.outcome, 'stalled');
    await multipartStarted(gw);
    gw.child.kill('SIGTERM');
    await gw.waitForLine((l) => l.msg === 'stopping: draining transfers', 5000, 'the drain to start');
    const second = Date.now();
    gw.child.kill('SIGINT');
    const code = await exitOf(gw, 10_000);
    assert.equal(code, 130);
    assert.ok(Date.now() - second < 5000, 'exited at once, not after the 60 s drain');
    assert.ok(gw.lines.some((l) => l.msg === 'second signal: aborting transfers now'));
    assert.equal(gw.lines.find((l) => l.msg === 'transfer finished')?.result, 'shutdown');
    await noLeftovers('up/interrupted.bin');
  });
});
