/**
 * The gateway's cold read path alone (block cache, adaptive reader, S3 store), no TFTP: a reader
 * that takes each byte as soon as it is there, through ENDPOINT (e.g. the WAN path). Prints the
 * time to the first byte and to the end, and what the reader measured.
 * node --import tsx bench/experiments/cold-read.ts ENDPOINT BUCKET WARMUP_KEY KEY (S3_TEST_* credentials)
 */
import { S3Client } from '@aws-sdk/client-s3';
import { AdaptiveRangeReader } from '../../src/storage/adaptive-range.js';
import { BlockCache } from '../../src/storage/block-cache.js';
import { CachedObjectSource } from '../../src/storage/object-source.js';
import { S3ObjectStore } from '../../src/storage/s3-store.js';

const [endpoint, bucket, warmKey, key] = process.argv.slice(2) as [string, string, string, string];
const client = new S3Client({
  endpoint,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: process.env.S3_TEST_ACCESS_KEY!, secretAccessKey: process.env.S3_TEST_SECRET_KEY! },
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});
const store = new S3ObjectStore(client, { bucket, partSize: 8 << 20, uploadQueueSize: 1, rangeRetries: 3 });
const reader = new AdaptiveRangeReader(store, { streamsPerRange: 8, maxStreams: 32, frontBytes: 1 << 20 });
const rangeSize = 8 << 20;
const cache = new BlockCache(reader, { maxBytes: 512 << 20, rangeSize, metadataTtlMs: 5000, readAheadRanges: () => reader.readAheadRanges(rangeSize) });
async function readAll(k: string): Promise<void> {
  const t0 = performance.now();
  const info = await cache.stat(k);
  const tHead = performance.now() - t0;
  const src = new CachedObjectSource(cache, k, info, 2);
  let first = 0;
  for (let off = 0; off < info.size; off += 65536) {
    if (!src.slice(off, 65536)) await src.load(off, 65536);
    if (off === 0) first = performance.now() - t0;
    src.release(off);
  }
  src.close();
  const total = performance.now() - t0;
  console.log(`${k}: head ${tHead.toFixed(0)} ms, first byte ${first.toFixed(0)} ms, all ${total.toFixed(0)} ms (${(info.size / 1e6 / (total / 1000)).toFixed(1)} MB/s); first byte median ${reader.estimator.latencyMs.toFixed(0)} ms, ${(reader.estimator.streamBytesPerSecond / 1e6).toFixed(1)} MB/s a stream, read-ahead ${reader.readAheadRanges(rangeSize)}`);
}
await readAll(warmKey);
await readAll(key);
cache.close();
client.destroy();
