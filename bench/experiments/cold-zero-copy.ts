/**
 * EXPERIMENT: how much of a cold transfer's cost is the copying on the S3 ingest path. Runs the
 * bench's cold case (the bench's gateway process on core 0, --workers 1, atftp on core 1, 32 MiB + 1
 * through a proxy adding 30 ms first-byte latency, a 4 MiB warm-up object first) with the gateway
 * as shipped and with zero-copy-get.mjs loaded, and prints cold and warm speed and the gateway's
 * CPU in each. Every transfer is checked byte for byte.
 *
 *   npm run build && node --import tsx bench/experiments/cold-zero-copy.ts [RUNS]
 *
 * The S3 server: S3_TEST_ENDPOINT etc. if set (e.g. from scripts/rgw.sh), else Ceph RGW (root).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runClient } from '../lib/clients.js';
import { ManagedProcess } from '../lib/procs.js';
import { startS3Proxy } from '../lib/proxy.js';
import { mbps } from '../lib/report.js';
import { startGateway, startS3, uploadFiles } from '../lib/servers.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const BUCKET = 'zerocopy';
const size = 32 * 1024 * 1024 + 1;
const image = randomBytes(size);
const warmup = randomBytes(4 * 1024 * 1024);
const runs = Number(process.argv[2] ?? 2);
const cases: readonly (readonly [number, number])[] = [[8192, 16], [1468, 16]];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zero-copy-'));
const s3 = await startS3(process.env.S3_TEST_ENDPOINT ? 'env' : 'rgw', dir, () => {});
try {
  await uploadFiles(s3, BUCKET, new Map([['image.bin', image], ['warmup.bin', warmup]]));
  const proxy = await startS3Proxy({ host: s3.host, port: s3.port }, { delayMs: 30 });
  try {
    for (let run = 1; run <= runs; run++) {
      for (const zeroCopy of [false, true]) {
        for (const [blksize, windowsize] of cases) {
          const gateway = await startGateway({
            s3Endpoint: proxy.endpoint,
            s3,
            bucket: BUCKET,
            cacheSize: String(256 * 1024 * 1024),
            core: '0',
            entry: 'dist',
            extraFlags: ['--workers', '1'],
            nodeFlags: zeroCopy ? ['--import', path.join(REPO, 'bench/experiments/zero-copy-get.mjs')] : [],
            env: { ZERO_COPY_ENDPOINT: proxy.endpoint },
          });
          try {
            const transfer = async (file: string, expected: Buffer) => {
              const before = gateway.process.cpuSeconds() ?? 0;
              const out = await runClient({ client: 'atftp', port: gateway.port, file, blksize, windowsize, expected, timeoutMs: 60_000, core: '1' });
              if (!out.ok) throw new Error(`${file}: ${out.error ?? 'failed'}\n${gateway.process.log.slice(-1500)}`);
              return { speed: mbps(out.bytes, out.seconds), cpu: (gateway.process.cpuSeconds() ?? 0) - before };
            };
            await transfer('warmup.bin', warmup);
            const cold = await transfer('image.bin', image);
            const warm = await transfer('image.bin', image);
            console.log(
              `run ${run} ${zeroCopy ? 'zero-copy' : 'as shipped'} bs ${blksize} w ${windowsize}: cold ${cold.speed.toFixed(1)} MB/s (gateway CPU ${cold.cpu.toFixed(2)} s), warm ${warm.speed.toFixed(1)} MB/s (${warm.cpu.toFixed(2)} s), cold ÷ warm ${(cold.speed / warm.speed).toFixed(2)}`,
            );
          } finally {
            await gateway.stop();
          }
        }
      }
    }
  } finally {
    await proxy.close();
  }
} finally {
  await s3.close();
  await ManagedProcess.stopAll();
  fs.rmSync(dir, { recursive: true, force: true });
}
