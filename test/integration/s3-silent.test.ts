import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { ErrorCode } from '../../src/protocol/packet.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import type { TestS3 } from '../support/s3.js';
import { tftpGet } from '../support/tftp-client.js';

// A "store" that accepts connections and never answers: the SDK's request timeout must turn that
// into a failed call (by default it only logs a warning and waits forever).
let silent: net.Server;
const held: net.Socket[] = [];
let gw: TestGateway;

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
  gw = await startTestGateway(fakeS3, 'silent-bucket', ['--s3-request-timeout-ms', '300', '--s3-max-attempts', '2']);
});

after(async () => {
  await gw?.stop();
  for (const s of held) s.destroy();
  await new Promise<void>((resolve) => silent.close(() => resolve()));
});

test('a store that never answers fails the request promptly with an ERROR, and the session ends', async () => {
  const started = Date.now();
  const got = await tftpGet('boot/any.img', { port: gw.port, timeoutMs: 8000 });
  const took = Date.now() - started;
  assert.equal(got.error?.code, ErrorCode.NotDefined, JSON.stringify(got.error));
  assert.ok(took < 8000, `answered after ${took} ms`);
  assert.equal(gw.gateway.dispatcher.activeSessions, 0);
});
