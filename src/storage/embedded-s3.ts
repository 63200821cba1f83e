import fs from 'node:fs/promises';
import path from 'node:path';

/** Credentials of the embedded store; it only listens on loopback. */
export const EMBEDDED_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface EmbeddedStore {
  readonly endpoint: string;
  close(): Promise<void>;
}

/**
 * The local default: an S3-compatible server (s3rver) on 127.0.0.1 keeping objects on disk, so
 * the gateway runs with no AWS account through exactly the same S3 code path as in production.
 */
export async function startEmbeddedStore(directory: string, bucket: string): Promise<EmbeddedStore> {
  const dir = path.resolve(directory);
  await fs.mkdir(dir, { recursive: true });
  // s3rver is only needed for the local default, so it is loaded only then.
  const { default: S3rver } = await import('@20minutes/s3rver');
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    allowMismatchedSignatures: true,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  const { port } = await server.run();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () => server.close(),
  };
}
