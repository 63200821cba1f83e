import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { ErrorCode } from '../../src/tftp/protocol/packet.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import type { TestS3 } from '../support/s3.js';
import { tftpGet } from '../support/tftp-client.js';
import { until } from '../support/wait.js';

// A "store" that accepts connections and never answers: the SDK's request timeout must turn that
// into a failed call (by default it only logs a warning and waits forever).
let silent: net.Server;
const held: net.Socket[] = [];
let gw: TestGateway;

// The gateway's S3 deadlines in this test (the defaults, spelled out so the bound below follows them).
const METADATA_TIMEOUT_MS = 1500; // one HeadObject attempt
const RETRY_BUDGET_MS = 4000; // the whole lookup, retries included
// An answer must come within the budget; the margin covers scheduling and the ERROR's trip.
const ANSWER_BOUND_MS = RETRY_BUDGET_MS + 750;
// The client waits twice as long, so a gateway that overran the budget is measured, not timed out.
const CLIENT_TIMEOUT_MS = 2 * RETRY_BUDGET_MS;

before(async () => {
  silent = net.createServer((socket) => {
    held.push(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as net.AddressInfo).port;
  const fakeS3 = {
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
  } as unknown as TestS3;
  gw = await startTestGateway(fakeS3, 'silent-bucket', [
    '--s3-request-timeout-ms', '300',
    '--s3-max-attempts', '2',
    '--s3-metadata-timeout-ms', String(METADATA_TIMEOUT_MS),
    '--s3-retry-budget-ms', String(RETRY_BUDGET_MS),
  ]);
});

after(async () => {
  await gw?.stop();
  for (const s of held) s.destroy();
  await new Promise<void>((resolve) => silent.close(() => resolve()));
});

test('a store that never answers fails the request promptly with an ERROR, and the session ends', async () => {
  const started = Date.now();
  const got = await tftpGet('boot/any.img', { port: gw.port, timeoutMs: CLIENT_TIMEOUT_MS });
  const took = Date.now() - started;
  assert.equal(got.error?.code, ErrorCode.NotDefined, JSON.stringify(got.error));
  assert.ok(took < ANSWER_BOUND_MS, `answered after ${took} ms: more than the ${RETRY_BUDGET_MS} ms retry budget (+ margin)`);
  // With worker threads the count reaches this thread in a message: wait for it, briefly.
  await until(() => gw.gateway.dispatcher.activeSessions === 0, 1000, 'the session to end');
});
