/**
 * npm run bench [-- --quick] [--s3 rgw|s3rver|env] [--out DIR] [--no-atftpd] [--storms 50,200] [--workers N]
 *                [--no-http | --http-only | --wan-only] [--no-wan] [--wan-storm N] [--seed N]
 *
 * Starts, on loopback, an S3-compatible store (Ceph RGW by default) with an optional delaying
 * proxy, the gateway, Debian's tftpd-hpa (and atftpd for windowed cases) serving the same file
 * from local disk, drives them with real clients (atftp, curl, busybox tftp) pinned to another
 * core, and prints gateway/reference ratios measured in the same run. Then the HTTP stage-2 rows:
 * the gateway's HTTP front end against Debian's nginx serving the same file from tmpfs, warm,
 * through a 30 ms WAN path (against lock-step TFTP too), and cold against S3's own first byte.
 * Last, the cold path across a WAN: S3 behind a 60 ms round trip at 10 MB/s per connection, cold
 * transfers and a cold storm against warm ones from the same gateway.
 * Writes results.json, storm.svg and table.txt under bench/results/<timestamp>/ (or --out).
 */
import path from 'node:path';
import process from 'node:process';
import { DEFAULT_CACHE_DIR, FULL, QUICK, runBench, writeResults, type BenchOptions } from './lib/bench.js';
import { ManagedProcess, runCleanups } from './lib/procs.js';
import { MiB } from './lib/report.js';
import { REPO } from './lib/servers.js';

process.env.AWS_EC2_METADATA_DISABLED = 'true';

function usage(): never {
  process.stderr.write(
    'usage: npm run bench -- [--quick] [--s3 rgw|s3rver|env] [--out DIR] [--no-atftpd] [--storms N,N] [--size MiB] [--cache-size MiB] [--latency-ms N] [--repeats N] [--workers N] [--no-http | --http-only | --wan-only] [--no-wan] [--wan-storm N] [--seed N]\n',
  );
  process.exit(2);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const value = (flag: string): string | undefined => {
    const i = args.indexOf(flag);
    if (i === -1) return undefined;
    const v = args[i + 1];
    if (v === undefined || v.startsWith('--')) usage();
    return v;
  };
  for (const a of args) if (a.startsWith('--') && !['--quick', '--no-atftpd', '--s3', '--out', '--storms', '--size', '--cache-size', '--latency-ms', '--repeats', '--tsx', '--workers', '--no-http', '--http-only', '--wan-only', '--no-wan', '--wan-storm', '--seed'].includes(a)) usage();
  const base = quick ? QUICK : FULL;
  const s3Text = value('--s3') ?? 'rgw';
  if (s3Text !== 'rgw' && s3Text !== 's3rver' && s3Text !== 'env') usage();
  const s3: BenchOptions['s3'] = s3Text;
  const num = (flag: string): number | undefined => {
    const v = value(flag);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) usage();
    return n;
  };
  const size = num('--size');
  const cache = num('--cache-size');
  const storms = value('--storms')?.split(',').map(Number);
  const only = ['--http-only', '--wan-only'].filter((a) => args.includes(a));
  if (only.length > 1 || (args.includes('--no-http') && args.includes('--http-only')) || (args.includes('--no-wan') && args.includes('--wan-only'))) usage();
  const wanOnly = args.includes('--wan-only');
  const seed = num('--seed');
  const http = args.includes('--no-http') || wanOnly || !base.http ? undefined : { ...base.http, ...(seed !== undefined ? { seed: Math.floor(seed) } : {}) };
  const options: BenchOptions = {
    ...base,
    ...(size !== undefined ? { imageBytes: Math.round(size * MiB) } : {}),
    ...(cache !== undefined ? { cacheBytes: Math.round(cache * MiB) } : {}),
    ...(storms ? { storms } : {}),
    ...(num('--latency-ms') !== undefined ? { latencyMs: num('--latency-ms')! } : {}),
    ...(num('--repeats') !== undefined ? { repeats: Math.max(1, num('--repeats')!) } : {}),
    // The storms' gateway --workers (default: the gateway's own default, the CPUs it may use).
    ...(num('--workers') !== undefined ? { stormWorkers: Math.max(1, Math.floor(num('--workers')!)) } : {}),
    atftpd: !args.includes('--no-atftpd'),
    // Sections 1–3 (TFTP) unless --http-only or --wan-only; section 4 (HTTP) unless --no-http or
    // --wan-only; section 5 (cold across a WAN) unless --no-wan or --http-only.
    tftp: !args.includes('--http-only') && !wanOnly,
    http,
    wanCold:
      args.includes('--no-wan') || args.includes('--http-only') || !base.wanCold
        ? undefined
        : { ...base.wanCold, ...(num('--wan-storm') !== undefined ? { stormClients: Math.floor(num('--wan-storm')!) } : {}) },
    s3,
    entry: args.includes('--tsx') ? 'tsx' : 'dist',
    cacheDir: DEFAULT_CACHE_DIR,
    log: (line) => process.stdout.write(`${line}\n`),
  };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = value('--out') ?? path.join(REPO, 'bench', 'results', stamp);
  const started = Date.now();
  const results = await runBench(options);
  const files = writeResults(results, outDir);
  process.stdout.write(`\n${results.table}\n\n`);
  process.stdout.write(`raw results: ${files.json}\nstorm chart: ${files.svg}\n(${Math.round((Date.now() - started) / 1000)} s)\n`);
}

let interrupted = false;
const onSignal = (): void => {
  if (interrupted) process.exit(130);
  interrupted = true;
  process.stderr.write('\ninterrupted: stopping servers\n');
  void runCleanups().finally(() => process.exit(130));
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
process.on('exit', () => ManagedProcess.killAllSync());

main().catch(async (err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  await runCleanups();
  process.exit(1);
});
