/**
 * Reads one object from S3 and throws the bytes away, as fast as the store gives them: what the
 * store alone delivers to one core (the benchmark pins it to the gateway's core). Four ranged GETs
 * at a time, 2 MiB each, in object order: about what the gateway's read-ahead asks for. Attributes
 * the cold-read rows: a cold transfer cannot be faster than its bytes arrive.
 *
 * node --import tsx bench/store-read.ts ENDPOINT BUCKET KEY SIZE  (prints {"bytes":N,"seconds":S,"passes":[S1,S2]})
 * Credentials and region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { s3Client } from './lib/servers.js';

const LANES = 4;
const PART = 2 * 1024 * 1024;

const [endpoint, bucket, key, sizeText] = process.argv.slice(2);
const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey, AWS_REGION: region = 'us-east-1' } = process.env;
if (!endpoint || !bucket || !key || !sizeText || !accessKeyId || !secretAccessKey) {
  process.stderr.write('usage: store-read ENDPOINT BUCKET KEY SIZE (with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set)\n');
  process.exit(2);
}
const size = Number(sizeText);
const client = s3Client({ endpoint, region, credentials: { accessKeyId, secretAccessKey } });

let next = 0;
let bytes = 0;
async function lane(): Promise<void> {
  while (next < size) {
    const start = next;
    next = Math.min(size, next + PART);
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${next - 1}` }));
    for await (const chunk of out.Body as AsyncIterable<Buffer>) bytes += chunk.length;
  }
}

// Twice, the faster counts (both are printed): the first pass also pays this process's start-up
// (compiling the SDK's code, opening connections), which the gateway has behind it when the cold
// rows are measured.
const passes: number[] = [];
for (let pass = 0; pass < 2; pass++) {
  next = 0;
  bytes = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: LANES }, lane));
  if (bytes !== size) break;
  passes.push((performance.now() - started) / 1000);
}
client.destroy();
process.stdout.write(`${JSON.stringify({ bytes, seconds: Math.min(...passes), passes })}\n`);
