/**
 * Recovery under loss (issues 5 and 9): the gateway against tftpd-hpa, same seeded lossy relay,
 * same seeds, side by side.
 *
 *   npm run bench:loss [-- --loss 0.05 --seeds 101,202 --clients busybox,atftp --ops get,put
 *                          --size 1MiB --cap 150 --concurrency 8 --gateway-flags "--rto-min-ms 50"]
 *
 * Runs every (client, direction) of the loss suite (test/loss/lib.ts: sizes, seeds) through a relay
 * that drops `--loss` of the datagrams each way, once against the gateway and once against
 * tftpd-hpa (`in.tftpd -L -c -s DIR`), one relay per transfer, the same seed for both. Every seed
 * in the list is run and printed: there are no retries and no replacement seeds. `--size` replaces
 * every case's file size (e.g. 1 MiB for the server-timed downloads: expect minutes for the
 * client-timed cases). A run capped at `--cap` seconds counts as failed.
 *
 * Exit status 1 when the gateway fails a transfer that tftpd-hpa finished on the same seed, or
 * delivers wrong bytes; the speed-ups and the "never slower" check (tolerance in lib.ts) are
 * reported. S3: S3_TEST_* from the environment (e.g. scripts/rgw.sh) or the in-process s3rver.
 */
import { s3Flags } from '../test/support/gateway.js';
import { spawnGateway } from '../test/support/gateway-process.js';
import { putObject, testS3 } from '../test/support/s3.js';
import type { ClientName } from '../test/support/clients.js';
import {
  CASES_5PCT,
  caseBody,
  caseLabel,
  describeVerdict,
  downloadName,
  limiter,
  reportTable,
  runTransfer,
  SEEDS_5PCT,
  startTftpd,
  verdict,
  type LossCase,
  type Op,
  type Pair,
} from '../test/loss/lib.js';

process.env.AWS_EC2_METADATA_DISABLED = 'true';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i !== -1 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

function parseSize(s: string): number | undefined {
  const m = /^(\d+)(KiB|MiB)?$/.exec(s);
  return m ? Number(m[1]) * (m[2] === 'MiB' ? 1 << 20 : m[2] === 'KiB' ? 1024 : 1) : undefined;
}

const LOSS = Number(arg('loss', '0.05'));
const SEEDS = arg('seeds', SEEDS_5PCT.join(',')).split(',').map(Number);
const CLIENTS = arg('clients', 'busybox,atftp,tftp-hpa,curl').split(',') as ClientName[];
const OPS = arg('ops', 'get,put').split(',') as Op[];
const SIZE = parseSize(arg('size', ''));
const CAP_MS = Number(arg('cap', '150')) * 1000;
const CONCURRENCY = Number(arg('concurrency', '8'));
/** Extra gateway flags, e.g. --gateway-flags "--rto-min-ms 50" (default: the gateway's defaults). */
const GATEWAY_FLAGS = arg('gateway-flags', '').split(' ').filter(Boolean);
const TAG = 'bench';

async function main(): Promise<void> {
  const cases: LossCase[] = CASES_5PCT.filter((c) => CLIENTS.includes(c.client) && OPS.includes(c.op)).map((c) => (SIZE ? { ...c, size: SIZE } : c));
  if (cases.length === 0 || SEEDS.some((s) => !Number.isInteger(s))) throw new Error('nothing to run: check --clients, --ops and --seeds');
  const s3 = await testS3();
  const bucket = await s3.createBucket();
  const files = new Map<string, Buffer>();
  for (const c of cases) if (c.op === 'get') files.set(downloadName(c, TAG), caseBody(c, TAG));
  for (const [name, body] of files) await putObject(s3, bucket, name, body);
  // The gateway in a process of its own, as tftpd-hpa is (see the loss suite: in this process it
  // would share its event loop and its CPU share with the relays and the clients' pipes).
  const gatewayProcess = await spawnGateway(
    ['--listen', '127.0.0.1:0', '--http-listen', 'off', ...s3Flags(s3, bucket), '--cache-size', '256MiB', '--allow-write', '--log-level', 'info', ...GATEWAY_FLAGS],
    { AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' },
  );
  const gateway = { port: gatewayProcess.udpPort, logs: gatewayProcess.lines };
  const tftpd = await startTftpd(files).catch(async (err: unknown) => {
    await gatewayProcess.stop(15_000);
    throw err;
  });
  const servers = { gateway, tftpd, s3, bucket };
  console.log(`# bench:loss: ${LOSS * 100}% loss each way, seeds ${SEEDS.join(' ')} (every one run, none replaced), cap ${CAP_MS / 1000} s, ${CONCURRENCY} transfers at once, S3 ${s3.kind}`);
  const started = Date.now();
  const pairs: Pair[] = [];
  try {
    const limit = limiter(CONCURRENCY);
    await Promise.all(
      cases.flatMap((c) =>
        SEEDS.map(async (seed) => {
          const [t, g] = await Promise.all([
            limit(() => runTransfer(servers, 'tftpd-hpa', c, seed, LOSS, TAG, { capMs: CAP_MS })),
            limit(() => runTransfer(servers, 'gateway', c, seed, LOSS, TAG, { capMs: CAP_MS })),
          ]);
          const p: Pair = { c, seed, tftpd: t, gateway: g };
          pairs.push(p);
          console.log(`  ${describeVerdict(p)}`);
        }),
      ),
    );
  } finally {
    await gatewayProcess.stop(15_000);
    await tftpd.stop();
    await s3.cleanup();
  }
  const order = (p: Pair): number => cases.indexOf(p.c) * 1e6 + SEEDS.indexOf(p.seed);
  pairs.sort((a, b) => order(a) - order(b));
  console.log('');
  for (const line of reportTable(pairs, `# ${LOSS * 100}% loss each way, gateway vs tftpd-hpa, ${((Date.now() - started) / 1000).toFixed(0)} s`, CAP_MS)) console.log(line);
  console.log('');
  for (const c of cases) {
    const both = pairs.filter((p) => p.c === c && p.tftpd.correct && p.gateway.correct);
    if (both.length === 0) {
      console.log(`${caseLabel(c)}: no seed where both servers succeeded: no speed-up`);
      continue;
    }
    const ratios = both.map((p) => p.tftpd.ms / p.gateway.ms);
    console.log(`${caseLabel(c)}: gateway speed-up over tftpd-hpa on the ${both.length} seeds both finished: min ${Math.min(...ratios).toFixed(2)}×, max ${Math.max(...ratios).toFixed(2)}×`);
  }
  const failed = pairs.filter((p) => verdict(p) === 'GATEWAY FAILED' || verdict(p) === 'GATEWAY WRONG BYTES');
  const slower = pairs.filter((p) => verdict(p) === 'GATEWAY SLOWER');
  console.log('');
  console.log(`${pairs.length} seeds run; gateway failed ${failed.length} that tftpd-hpa finished (or delivered wrong bytes); slower beyond the tolerance on ${slower.length}`);
  for (const p of [...failed, ...slower]) console.log(`  ${describeVerdict(p)}`);
  if (failed.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
