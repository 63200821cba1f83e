import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { encodeRequest, ErrorCode, Opcode } from '../../src/tftp/protocol/packet.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { S3FaultProxy } from '../support/s3-fault-proxy.js';
import { putObject, testS3, type TestS3 } from '../support/s3.js';
import { eventually, sleep } from '../support/wait.js';
import { get, openPeer, refusalLogs } from './helpers.js';

/** Names that try to leave the served tree (or smuggle bytes); every one must be refused. */
const ATTACKS: readonly string[] = [
  '../secret.txt',
  '/../secret.txt',
  'boot/../../secret.txt',
  '..',
  '/..',
  'boot/..',
  '%2e%2e/secret.txt',
  '%2E%2E%2Fsecret.txt/../x',
  '.%2e/secret.txt',
  'boot/%2e%2e/%2e%2e/secret.txt',
  '..\\secret.txt',
  'boot\\..\\..\\secret.txt',
  '\\..\\secret.txt',
  'C:\\secret.txt',
  'c:/secret.txt',
  '/C:/secret.txt',
  '\\\\host\\share\\secret.txt',
  'x'.repeat(1025),
  `boot/${'a/'.repeat(600)}f`,
  'secret\x01.txt',
  'boot/\x1b[31mred',
  'boot/\x7f',
  'boot/\xc2\x85next-line',
  '/',
  './',
];

describe('path attacks', () => {
  let s3: TestS3;
  let bucket: string;
  let proxy: S3FaultProxy;
  const gateways: TestGateway[] = [];

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'secret.txt', Buffer.from('outside the served tree'));
    await putObject(s3, bucket, 'tftp/boot/ok.bin', Buffer.from('inside'));
    // The gateway talks to S3 through a recording proxy: we see every key it asks for.
    proxy = await S3FaultProxy.start(s3.endpoint);
    const viaProxy = { ...s3, endpoint: proxy.endpoint };
    gateways.push(await startTestGateway(viaProxy, bucket, ['--s3-prefix', 'tftp', '--allow-write']));
    gateways.push(await startTestGateway(viaProxy, bucket, ['--s3-prefix', 'tftp', '--allow-write', '--map-backslashes', '--map-lowercase', '--map-strip-junk']));
  });

  after(async () => {
    for (const gw of gateways) await gw.stop();
    await proxy?.close();
    await s3?.cleanup();
  });

  for (const [index, label] of ['default', '--map-backslashes --map-lowercase --map-strip-junk'].entries()) {
    test(`every spelling is refused with ERROR 2, logged once, nothing read outside the prefix (${label})`, async () => {
      const gw = gateways[index]!;
      const before = proxy.requests.length;
      const logsBefore = refusalLogs(gw).length;
      let requests = 0;
      // Writes are checked on the default gateway (with the conveniences a UNC name becomes a legal
      // path inside the tree, which a write may then create).
      for (const op of index === 0 ? ([Opcode.RRQ, Opcode.WRQ] as const) : ([Opcode.RRQ] as const)) {
        for (const name of ATTACKS) {
          const peer = await openPeer();
          try {
            peer.send(encodeRequest(op, name, 'octet'), gw.port);
            requests++;
            const answer = await peer.next(2000);
            assert.equal(answer?.packet.opcode, Opcode.ERROR, JSON.stringify(name));
            const code = answer.packet.opcode === Opcode.ERROR ? answer.packet.code : -1;
            // --map-strip-junk turns some of these into harmless names inside the tree: those are
            // not found, never served from outside.
            assert.ok(
              code === ErrorCode.AccessViolation || (index === 1 && code === ErrorCode.FileNotFound),
              `${JSON.stringify(name).slice(0, 60)}: ERROR ${code}`,
            );
          } finally {
            await peer.close();
          }
        }
      }
      // A NUL inside the name ends it on the wire; what follows is read as the mode and refused.
      const nul = await openPeer();
      nul.send(Buffer.concat([Buffer.from([0, 1]), Buffer.from('secret\0.txt\0octet\0', 'latin1')]), gw.port);
      const nulAnswer = await nul.next(2000);
      await nul.close();
      requests++;
      assert.equal(nulAnswer?.packet.opcode, Opcode.ERROR);

      // Log lines are written asynchronously (worker threads hand them to the main thread): wait
      // for them, then check there is exactly one per request.
      await eventually(() => refusalLogs(gw).length - logsBefore >= requests, 2000);
      // A line logged twice would come just after the first: give it that moment to show.
      await sleep(50);
      const lines = refusalLogs(gw).slice(logsBefore);
      assert.equal(lines.length, requests, 'each refusal is logged exactly once');
      assert.ok(gw.logs.every((l) => l.msg !== 'transfer started' || !(typeof l.key === 'string' && l.key.startsWith('secret'))));
      // Keys asked of S3 all lie under the prefix (most attacks never reach S3 at all).
      const keys = proxy.requests.slice(before).map((r) => r.key);
      for (const key of keys) assert.ok(key?.startsWith('tftp/'), `S3 was asked for ${key}`);
      if (index === 0) assert.equal(keys.length, 0, 'refused before any S3 call');
      // Log lines carry the name sanitised: no raw control bytes reach the log.
      // eslint-disable-next-line no-control-regex -- the control bytes are what this looks for
      for (const l of lines) assert.doesNotMatch(String(l.file), /[\x00-\x1f\x7f]/);
    });
  }

  test('the tree itself is still served', async () => {
    const r = await get(gateways[0]!.port, '/boot/ok.bin');
    assert.equal(r.data.toString(), 'inside');
  });
});
