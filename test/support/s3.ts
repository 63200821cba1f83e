import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';

// Nothing in the tests may ever reach for the instance metadata address.
process.env.AWS_EC2_METADATA_DISABLED = 'true';

/**
 * The S3-compatible server the tests talk to. `npm test` (scripts/test.sh) starts Ceph RGW on
 * loopback and exports S3_TEST_*; without it the tests start an in-process s3rver on loopback
 * (real HTTP, real S3 API, but no abort or conditional-write semantics: `kind` says which).
 */
export interface TestS3 {
  readonly endpoint: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  readonly region: string;
  readonly kind: 'rgw' | 's3rver';
  readonly client: S3Client;
  /** A fresh bucket for one test file; removed (with its objects and uploads) by `cleanup`. */
  createBucket(): Promise<string>;
  cleanup(): Promise<void>;
}

let shared: Promise<TestS3> | undefined;

export function testS3(): Promise<TestS3> {
  shared ??= connect();
  return shared;
}

async function connect(): Promise<TestS3> {
  let endpoint = process.env.S3_TEST_ENDPOINT;
  let credentials = {
    accessKeyId: process.env.S3_TEST_ACCESS_KEY ?? 'S3RVER',
    secretAccessKey: process.env.S3_TEST_SECRET_KEY ?? 'S3RVER',
  };
  let kind: TestS3['kind'] = 'rgw';
  let closeServer: (() => Promise<void>) | undefined;
  if (!endpoint) {
    const { startEmbeddedStore, EMBEDDED_CREDENTIALS } = await import('../../src/storage/embedded-s3.js');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = path.join(os.tmpdir(), `tftpgw-test-s3-${process.pid}-${randomBytes(3).toString('hex')}`);
    const store = await startEmbeddedStore(dir, 'bootstrap');
    endpoint = store.endpoint;
    credentials = { ...EMBEDDED_CREDENTIALS };
    kind = 's3rver';
    closeServer = () => store.close();
  } else if (process.env.S3_TEST_KIND === 's3rver') {
    kind = 's3rver';
  }
  const region = process.env.S3_TEST_REGION ?? 'us-east-1';
  const client = new S3Client({
    endpoint,
    region,
    credentials,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const buckets: string[] = [];
  return {
    endpoint,
    credentials,
    region,
    kind,
    client,
    async createBucket() {
      const name = `t-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
      await client.send(new CreateBucketCommand({ Bucket: name }));
      buckets.push(name);
      return name;
    },
    async cleanup() {
      for (const bucket of buckets.splice(0)) await emptyAndDeleteBucket(client, bucket).catch(() => undefined);
      client.destroy();
      await closeServer?.();
      shared = undefined;
    },
  };
}

async function emptyAndDeleteBucket(client: S3Client, bucket: string): Promise<void> {
  const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket })).catch(() => undefined);
  for (const u of uploads?.Uploads ?? []) {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }));
  }
  const list = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
  for (const o of list.Contents ?? []) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key }));
  await client.send(new DeleteBucketCommand({ Bucket: bucket }));
}

export async function putObject(s3: TestS3, bucket: string, key: string, body: Buffer): Promise<void> {
  await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

export async function getObject(s3: TestS3, bucket: string, key: string): Promise<Buffer | undefined> {
  try {
    const out = await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await out.Body!.transformToByteArray());
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
    throw err;
  }
}

export async function listUploads(s3: TestS3, bucket: string): Promise<number> {
  const out = await s3.client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return out.Uploads?.length ?? 0;
}

/**
 * Registers, in the enclosing suite, a test S3 with a fresh bucket before its tests and the
 * store's clean-up after them; `set` receives both.
 */
export function withBucket(set: (s3: TestS3, bucket: string) => void): void {
  let s3: TestS3 | undefined;
  before(async () => {
    s3 = await testS3();
    set(s3, await s3.createBucket());
  });
  after(async () => {
    await s3?.cleanup();
  });
}

/** The environment a spawned gateway needs to reach the test S3 server: its credentials, no instance metadata. */
export function credentialsEnv(s3: TestS3): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}
