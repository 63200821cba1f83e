/**
 * What S3 (the bench's RGW) delivers through the WAN path with N ranged GETs at once, no gateway:
 * the ceiling a cold transfer across that path can reach on this machine.
 * node --import tsx bench/experiments/wan-ceiling.ts ENDPOINT BUCKET KEY SIZE PARTS... (S3_TEST_* credentials)
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { s3Client } from '../lib/servers.js';

const [endpoint, bucket, key, sizeText, ...partsList] = process.argv.slice(2);
const size = Number(sizeText);
const client = s3Client({
  endpoint: endpoint!,
  region: process.env.S3_TEST_REGION ?? 'us-east-1',
  credentials: { accessKeyId: process.env.S3_TEST_ACCESS_KEY!, secretAccessKey: process.env.S3_TEST_SECRET_KEY! },
});
async function get(from: number, to: number): Promise<number> {
  const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${from}-${to}` }));
  let n = 0;
  for await (const c of out.Body as Readable) n += (c as Buffer).length;
  return n;
}
for (const p of partsList.map(Number)) {
  for (let pass = 0; pass < 2; pass++) {
    const part = Math.ceil(size / p);
    const t0 = performance.now();
    const got = await Promise.all(Array.from({ length: p }, (_, i) => get(i * part, Math.min(size, (i + 1) * part) - 1)));
    const s = (performance.now() - t0) / 1000;
    console.log(`${p} GETs at once (${(part / 1048576).toFixed(2)} MiB each), pass ${pass}: ${(got.reduce((a, b) => a + b, 0) / 1e6 / s).toFixed(1)} MB/s in ${(s * 1000).toFixed(0)} ms`);
  }
}
client.destroy();
