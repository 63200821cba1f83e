import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/config.js';
import { emfRecord } from '../../src/metrics/emf.js';
import { createLogger, sanitize, sanitizeOptions } from '../../src/ops/logger.js';
import { putObject, testS3, type TestS3 } from '../support/s3.js';
import { tftpGet } from '../support/tftp-client.js';
import { slowGet, startGateway, type StartedGateway } from './helpers.js';
import { until } from '../support/wait.js';

/** Every string in a log line, however deep. */
function strings(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      out.push(k);
      strings(v, out);
    }
  }
  return out;
}
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;

describe('transfer logs', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: StartedGateway;
  const file = randomBytes(10_000);

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'boot/file.bin', file);
    await putObject(s3, bucket, 'boot/long.bin', randomBytes(150 * 1024));
    gw = await startGateway(s3, bucket, ['--cloudwatch-emf', '--cloudwatch-emf-interval', '1', '--service-name', 'svc-under-test']);
  });
  after(async () => {
    await gw?.stop();
    await s3?.cleanup();
  });

  test('one line when a transfer starts and one when it ends, with what an operator needs', async () => {
    const got = await slowGet(gw.port, 'boot/file.bin', { ackDelayMs: 0, blksize: 1468, options: { 'x-vendor\u001b[31m': 'v\u0007al', tsize: '0' } });
    assert.equal(got.error, undefined);
    await until(() => gw.lines.some((l) => l.msg === 'transfer finished'), 5000, 'the finish line');
    const started = gw.lines.find((l) => l.msg === 'transfer started')!;
    const finished = gw.lines.find((l) => l.msg === 'transfer finished')!;
    assert.equal(started.op, 'read');
    assert.equal(started.file, 'boot/file.bin');
    assert.equal(started.client, '127.0.0.1');
    assert.equal(typeof started.port, 'number');
    assert.equal(started.mode, 'octet');
    // Client-supplied option names and values are logged escaped, never raw.
    const options = started.options as Record<string, string>;
    assert.equal(options['x-vendor\\x1b[31m'], 'v\\x07al');
    for (const s of strings(started)) assert.doesNotMatch(s, CONTROL);

    assert.equal(finished.client, '127.0.0.1');
    assert.equal(finished.port, started.port);
    assert.equal(finished.file, 'boot/file.bin');
    assert.equal(finished.mode, 'octet');
    assert.deepEqual(finished.options, { blksize: '1468', tsize: '10000' });
    assert.equal(finished.result, 'ok');
    assert.equal(finished.bytes, 10_000);
    assert.equal(typeof finished.durationMs, 'number');
    assert.equal(finished.retransmits, 0);
    assert.equal(finished.level, 30);
  });

  test('a refused request is logged with the client-supplied name escaped', async () => {
    const got = await tftpGet('boot/\u0001evil\nname', { port: gw.port });
    assert.notEqual(got.error, undefined);
    await until(() => gw.lines.some((l) => l.msg === 'request refused'), 5000, 'the refusal line');
    const line = gw.lines.find((l) => l.msg === 'request refused')!;
    assert.equal(line.file, 'boot/\\x01evil\\x0aname');
    for (const s of strings(line)) assert.doesNotMatch(s, CONTROL);
  });

  test('CloudWatch EMF: an ActiveSessions record each interval, namespace TftpGateway, dimension ServiceName', async () => {
    const emf = (): Record<string, unknown>[] => gw.lines.filter((l) => '_aws' in l);
    let blocks = 0;
    const download = slowGet(gw.port, 'boot/long.bin', { blksize: 512, ackDelayMs: 4, onBlock: (n) => (blocks = n) });
    await until(() => blocks > 0, 5000, 'the download to start');
    await until(() => emf().some((r) => r.ActiveSessions === 1), 3000, 'an EMF record with one session');
    assert.equal((await download).error, undefined);
    const seen = emf().length;
    await until(() => emf().length > seen && emf().at(-1)!.ActiveSessions === 0, 3000, 'an EMF record with no session');
    const record = emf().at(-1)!;
    assert.deepEqual(record._aws, {
      Timestamp: (record._aws as { Timestamp: number }).Timestamp,
      CloudWatchMetrics: [{ Namespace: 'TftpGateway', Dimensions: [['ServiceName']], Metrics: [{ Name: 'ActiveSessions', Unit: 'Count' }] }],
    });
    assert.ok(Math.abs((record._aws as { Timestamp: number }).Timestamp - Date.now()) < 5000);
    assert.equal(record.ServiceName, 'svc-under-test');
    // EMF records are whole lines of their own: no logger fields mixed in.
    assert.deepEqual(Object.keys(record).sort(), ['ActiveSessions', 'ServiceName', '_aws']);
  });
});

describe('logging and EMF configuration', () => {
  test('--log-level sets the level; EMF and service name from flags or the CDK environment names', () => {
    assert.equal(createLogger('warn').level, 'warn');
    const base = ['--s3-bucket', 'b'];
    const c1 = loadConfig(base, {});
    assert.equal(c1.cloudwatchEmf, false);
    assert.equal(c1.cloudwatchEmfIntervalS, 60);
    assert.equal(c1.serviceName, 'tftp-gateway');
    assert.equal(c1.scaleInProtection, false);
    assert.equal(c1.drainTimeoutS, 100);
    assert.deepEqual(c1.httpListen, { host: '0.0.0.0', port: 9464 });
    assert.equal(c1.logLevel, 'info');
    // The names the CDK stack sets.
    const c2 = loadConfig(base, {
      TFTP_GATEWAY_CLOUDWATCH_EMF: 'true',
      TFTP_GATEWAY_CLOUDWATCH_EMF_SERVICE_NAME: 'netboot',
      TFTP_GATEWAY_SCALE_IN_PROTECTION: 'true',
    });
    assert.equal(c2.cloudwatchEmf, true);
    assert.equal(c2.serviceName, 'netboot');
    assert.equal(c2.scaleInProtection, true);
    assert.equal(loadConfig([...base, '--service-name', 'flag'], { TFTP_GATEWAY_CLOUDWATCH_EMF_SERVICE_NAME: 'env' }).serviceName, 'flag');
    assert.equal(loadConfig(base, { TFTP_GATEWAY_SERVICE_NAME: 'svc' }).serviceName, 'svc');
  });

  test('emfRecord is the documented shape', () => {
    assert.deepEqual(JSON.parse(emfRecord('svc', 7, 1_700_000_000_123)), {
      _aws: {
        Timestamp: 1_700_000_000_123,
        CloudWatchMetrics: [{ Namespace: 'TftpGateway', Dimensions: [['ServiceName']], Metrics: [{ Name: 'ActiveSessions', Unit: 'Count' }] }],
      },
      ServiceName: 'svc',
      ActiveSessions: 7,
    });
  });

  test('sanitize and sanitizeOptions escape control bytes and bound length', () => {
    assert.equal(sanitize('a\u0000b\u009bc'), 'a\\x00b\\x9bc');
    assert.equal(sanitize('x'.repeat(300)).length, 257);
    const many = new Map(Array.from({ length: 40 }, (_, i) => [`o${i}`, 'v'] as [string, string]));
    assert.equal(Object.keys(sanitizeOptions(many)).length, 16);
    // A client's "__proto__" option is just a name.
    assert.deepEqual(Object.getOwnPropertyNames(sanitizeOptions(new Map([['__proto__', 'x']]))), ['__proto__']);
  });
});
