import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { getObject, listUploads, putObject, testS3, type TestS3 } from '../support/s3.js';
import { tftpGet } from '../support/tftp-client.js';
import { controlledPut, httpGet, scrape, slowGet, exitOf, spawnDrainGateway, type GatewayProcess } from './helpers.js';
import { until } from '../support/wait.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

/** The real CLI with --workers 2: one SIGTERM drains every worker, and the process exits 0. */
describe('graceful drain of the real process with worker threads', () => {
  let s3: TestS3;
  let bucket: string;
  const big = randomBytes(400 * 1024);
  const children: GatewayProcess[] = [];

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'boot/big.bin', big);
  });
  after(async () => {
    for (const c of children) c.kill();
    await s3?.cleanup();
  });

  test('SIGTERM: both workers refuse new requests, finish their transfers, the process exits 0', async () => {
    const gw = await spawnDrainGateway(s3, bucket, 30, ['--workers', '2']);
    children.push(gw);
    assert.equal(gw.lines.find((l) => l.msg === 'tftp-gateway listening')?.workers, 2);
    const blocks = new Map<number, number>();
    const downloads = Array.from({ length: 8 }, (_, i) =>
      slowGet(gw.udpPort, 'boot/big.bin', { blksize: 512, ackDelayMs: 2, timeoutMs: 10_000, onBlock: (n) => blocks.set(i, n) }),
    );
    const bodies = [randomBytes(6 * MiB + 1), randomBytes(6 * MiB + 2)];
    const uploads = bodies.map((b, i) => controlledPut(gw.udpPort, `up/drain-${i}.bin`, b, { blksize: 1468, blockDelayMs: 1, timeoutMs: 10_000 }));
    await until(() => blocks.size === 8 && [...blocks.values()].every((n) => n > 5), 20_000, 'every download under way');
    await until(() => gw.lines.filter((l) => l.msg === 'transfer started').length === 10, 20_000, 'every transfer started');
    const workers = new Set(gw.lines.filter((l) => l.msg === 'transfer started').map((l) => l.worker));
    assert.deepEqual([...workers].sort(), [1, 2], 'transfers on both workers');
    assert.equal((await scrape(gw.httpAddress)).value('tftp_gateway_active_sessions'), 10, 'one /metrics summing both workers');

    gw.child.kill('SIGTERM');
    await gw.waitForLine((l) => l.msg === 'stopping: draining transfers', 5000, 'the drain to start');
    assert.equal(gw.lines.find((l) => l.msg === 'stopping: draining transfers')?.active, 10);
    assert.equal((await httpGet(`http://${gw.httpAddress}/readyz`)).status, 503);
    assert.equal((await httpGet(`http://${gw.httpAddress}/healthz`)).status, 200);
    // New requests from several ports (so both workers are asked) are refused.
    for (let i = 0; i < 6; i++) assert.deepEqual((await tftpGet('boot/big.bin', { port: gw.udpPort })).error, { code: 0, message: 'Server shutting down' });

    for (const d of await Promise.all(downloads)) {
      assert.equal(d.error, undefined);
      assert.equal(sha(d.data), sha(big));
    }
    for (const [i, u] of (await Promise.all(uploads)).entries()) {
      assert.equal(u.outcome, 'ok', JSON.stringify(u.error));
      assert.equal(sha((await getObject(s3, bucket, `up/drain-${i}.bin`))!), sha(bodies[i]!));
    }
    if (s3.kind === 'rgw') assert.equal(await listUploads(s3, bucket), 0);
    assert.equal(await exitOf(gw, 20_000), 0);
    assert.equal(gw.lines.at(-1)?.msg, 'tftp-gateway stopped');
    const finished = gw.lines.filter((l) => l.msg === 'transfer finished');
    assert.equal(finished.length, 8 + 2);
    assert.ok(finished.every((l) => l.result === 'ok' && (l.worker === 1 || l.worker === 2)));
    assert.equal(gw.stderr().includes('Error'), false, gw.stderr());
  });
});
