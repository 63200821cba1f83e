import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { HeadBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GatewayMetrics } from '../../src/metrics/metrics.js';
import { classifyS3Error, instrumentS3Client } from '../../src/metrics/s3-instrumentation.js';
import { parseExposition, type Exposition } from './helpers.js';

/** An S3 endpoint that answers from a script: each request takes the next status (then 200). */
class ScriptedS3 {
  script: number[] = [];
  requests = 0;
  private readonly server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      this.requests++;
      const status = this.script.shift() ?? 200;
      if (status === 200) {
        res.writeHead(200, { etag: '"abc"', 'content-length': '0' }).end();
        return;
      }
      const code = status === 404 ? 'NoSuchBucket' : status === 403 ? 'AccessDenied' : status === 503 ? 'SlowDown' : 'InternalError';
      const body = req.method === 'HEAD' ? '' : `<?xml version="1.0"?><Error><Code>${code}</Code><Message>scripted</Message></Error>`;
      res.writeHead(status, { 'content-type': 'application/xml', 'content-length': String(Buffer.byteLength(body)) }).end(body);
    });
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('S3 client instrumentation', () => {
  const fake = new ScriptedS3();
  let client: S3Client;
  let metrics: GatewayMetrics;
  const scrape = async (): Promise<Exposition> => parseExposition(await metrics.registry.metrics());

  before(async () => {
    const endpoint = await fake.start();
    client = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      maxAttempts: 3,
      credentials: { accessKeyId: 'k', secretAccessKey: 's' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    metrics = new GatewayMetrics({ defaultMetrics: false });
    instrumentS3Client(client, metrics);
  });
  after(async () => {
    client.destroy();
    await fake.close();
  });

  test('a call that succeeds on its second attempt is one request and one retry', async () => {
    fake.script = [500];
    fake.requests = 0;
    await client.send(new HeadBucketCommand({ Bucket: 'b' }));
    assert.equal(fake.requests, 2);
    const m = await scrape();
    assert.equal(m.value('tftp_gateway_s3_requests_total', { operation: 'HeadBucket', outcome: 'ok' }), 1);
    assert.equal(m.value('tftp_gateway_s3_requests_total', { operation: 'HeadBucket' }), 1);
    assert.equal(m.value('tftp_gateway_s3_retries_total', { operation: 'HeadBucket' }), 1);
    assert.equal(m.value('tftp_gateway_s3_request_duration_seconds_count', { operation: 'HeadBucket' }), 1);
  });

  test('a call that fails every attempt: server_error, attempts-1 retries', async () => {
    const before = await scrape();
    fake.script = [500, 500, 500];
    await assert.rejects(client.send(new HeadBucketCommand({ Bucket: 'b' })));
    const m = await scrape();
    assert.equal(m.value('tftp_gateway_s3_requests_total', { operation: 'HeadBucket', outcome: 'server_error' }), 1);
    assert.equal(m.value('tftp_gateway_s3_retries_total', { operation: 'HeadBucket' }) - before.value('tftp_gateway_s3_retries_total', { operation: 'HeadBucket' }), 2);
  });

  test('404 and 403 are not retried and get their own outcomes', async () => {
    const before = await scrape();
    fake.script = [404];
    await assert.rejects(client.send(new HeadBucketCommand({ Bucket: 'b' })));
    fake.script = [403];
    await assert.rejects(client.send(new HeadBucketCommand({ Bucket: 'b' })));
    const m = await scrape();
    assert.equal(m.value('tftp_gateway_s3_requests_total', { operation: 'HeadBucket', outcome: 'not_found' }), 1);
    assert.equal(m.value('tftp_gateway_s3_requests_total', { operation: 'HeadBucket', outcome: 'denied' }), 1);
    assert.equal(m.value('tftp_gateway_s3_retries_total') - before.value('tftp_gateway_s3_retries_total'), 0);
  });

  test('PutObject counts the bytes it stored', async () => {
    fake.script = [];
    await client.send(new PutObjectCommand({ Bucket: 'b', Key: 'k', Body: Buffer.alloc(1234) }));
    const m = await scrape();
    assert.equal(m.value('tftp_gateway_s3_bytes_uploaded_total'), 1234);
    assert.equal(m.value('tftp_gateway_s3_requests_total', { operation: 'PutObject', outcome: 'ok' }), 1);
  });

  test('an aborted call is "aborted", not a failure', async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(client.send(new HeadBucketCommand({ Bucket: 'b' }), { abortSignal: controller.signal }));
    const m = await scrape();
    assert.equal(m.value('tftp_gateway_s3_requests_total', { operation: 'HeadBucket', outcome: 'aborted' }), 1);
  });

  test('classifyS3Error maps SDK errors to bounded outcomes', () => {
    const err = (name: string, status?: number): unknown => Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
    assert.equal(classifyS3Error(err('SlowDown', 503)), 'throttled');
    assert.equal(classifyS3Error(err('NotFound', 404)), 'not_found');
    assert.equal(classifyS3Error(err('PreconditionFailed', 412)), 'precondition_failed');
    assert.equal(classifyS3Error(err('InvalidRequest', 400)), 'client_error');
    assert.equal(classifyS3Error(err('InternalError', 500)), 'server_error');
    assert.equal(classifyS3Error(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), 'network_error');
    assert.equal(classifyS3Error(err('AbortError')), 'aborted');
  });
});
