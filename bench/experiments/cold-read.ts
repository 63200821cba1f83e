/**
 * The gateway's cold read path alone (block cache, adaptive reader, S3 store), no TFTP: a reader
 * that takes each byte as soon as it is there, through ENDPOINT (e.g. the WAN path). Prints the
 * time to the first byte and to the end, and what the reader measured.
 * With DRAIN_MBPS the reader is paced like a client that drains at that rate (lock-step 1468 on
 * this machine: 26.7): it prints where it had to wait for S3 (each wait of 2 ms or more, by offset),
 * which is what a cold transfer loses against a warm one, without the client's CPU.
 * node --import tsx bench/experiments/cold-read.ts ENDPOINT BUCKET WARMUP_KEY KEY [DRAIN_MBPS] (S3_TEST_* credentials)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AdaptiveRangeReader } from '../../src/storage/adaptive-range.js';
import { BlockCache } from '../../src/storage/block-cache.js';
import { CachedObjectSource } from '../../src/storage/object-source.js';
import { S3ObjectStore } from '../../src/storage/s3-store.js';
import { s3Client } from '../lib/servers.js';

const [endpoint, bucket, warmKey, key, drain] = process.argv.slice(2) as [string, string, string, string, string | undefined];
const drainBytesPerMs = drain === undefined ? 0 : (Number(drain) * 1e6) / 1000;
const client = s3Client({
  endpoint,
  region: process.env.S3_TEST_REGION ?? 'us-east-1',
  credentials: { accessKeyId: process.env.S3_TEST_ACCESS_KEY!, secretAccessKey: process.env.S3_TEST_SECRET_KEY! },
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
  /** Paced: when the client would want `off` had it never waited; the waits it had, by offset. */
  let waited = 0;
  const waits: string[] = [];
  for (let off = 0; off < info.size; off += 65536) {
    if (drainBytesPerMs > 0 && off > 0) {
      const due = t0 + first + waited + off / drainBytesPerMs;
      const ahead = due - performance.now();
      if (ahead > 0.5) await sleep(ahead);
    }
    const asked = performance.now();
    if (!src.slice(off, 65536)) await src.load(off, 65536);
    if (off === 0) first = performance.now() - t0;
    else if (drainBytesPerMs > 0) {
      const w = performance.now() - asked;
      waited += w;
      if (w >= 2) waits.push(`${(off / 1048576).toFixed(2)} MiB: ${w.toFixed(0)} ms`);
    }
    src.release(off);
  }
  src.close();
  const total = performance.now() - t0;
  if (drainBytesPerMs > 0) console.log(`${k}: paced at ${drain} MB/s: waited ${waited.toFixed(0)} ms after the first byte (${first.toFixed(0)} ms); ideal ${(first + info.size / drainBytesPerMs).toFixed(0)} ms; waits ${waits.join(', ') || 'none'}`);
  console.log(`${k}: head ${tHead.toFixed(0)} ms, first byte ${first.toFixed(0)} ms, all ${total.toFixed(0)} ms (${(info.size / 1e6 / (total / 1000)).toFixed(1)} MB/s); first byte median ${reader.estimator.latencyMs.toFixed(0)} ms, ${(reader.estimator.streamBytesPerSecond / 1e6).toFixed(1)} MB/s a stream, read-ahead ${reader.readAheadRanges(rangeSize)}`);
}
await readAll(warmKey);
await readAll(key);
cache.close();
client.destroy();
