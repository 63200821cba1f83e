/**
 * Recovery speed under loss (issue 5): the gateway against tftpd-hpa, same run, same lossy relay.
 *
 *   npm run bench:loss [-- --loss 0.05 --size 1MiB --blksize 1468 --cap 150 --seed 1]
 *
 * 1 MiB at blksize 1468 with busybox and atftp through a seeded lossy UDP relay on loopback that
 * drops `--loss` of the datagrams in each direction. tftpd-hpa (`in.tftpd -L -s DIR -a
 * 127.0.0.1:PORT`, run in the foreground here) retransmits after a fixed second; the gateway uses
 * its adaptive timer. A tftpd-hpa run is capped at `--cap` seconds; a capped run is reported as a
 * lower bound (">"). Prints one line per run and the ratios; exit status 1 if a transfer delivered
 * wrong bytes, 0 otherwise (the ratio is reported, not enforced).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { loadConfig } from '../src/config/config.js';
import { Gateway } from '../src/server/gateway.js';
import { EMBEDDED_CREDENTIALS, startEmbeddedStore } from '../src/storage/embedded-s3.js';
import { download, sha256, type ClientName } from '../test/support/clients.js';
import { LossyRelay } from '../test/support/lossy-relay.js';

process.env.AWS_EC2_METADATA_DISABLED = 'true';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i !== -1 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

const LOSS = Number(arg('loss', '0.05'));
const SIZE = (() => {
  const m = /^(\d+)(KiB|MiB)?$/.exec(arg('size', '1MiB'));
  return m ? Number(m[1]) * (m[2] === 'MiB' ? 1 << 20 : m[2] === 'KiB' ? 1024 : 1) : 1 << 20;
})();
const BLKSIZE = Number(arg('blksize', '1468'));
const CAP_S = Number(arg('cap', '150'));
const SEED = Number(arg('seed', '1'));
const CLIENTS: ClientName[] = ['busybox', 'atftp'];
const SERVERS = arg('servers', 'gateway,tftpd-hpa').split(',');
/** Extra gateway flags, e.g. --gateway-flags "--rto-min-ms 50" (default: the gateway's defaults). */
const GATEWAY_FLAGS = arg('gateway-flags', '').split(' ').filter(Boolean);
/** Seeds tried for a client whose own bug aborts a transfer (atftp stops re-acknowledging after
 * one duplicate: when two ACKs in a row are lost it deadlocks against any server). */
const SEED_TRIES = 3;
const TFTPD = '/usr/sbin/in.tftpd';

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function startTftpd(dir: string): Promise<{ port: number; child: ChildProcess }> {
  const port = await freeUdpPort();
  const child = spawn(TFTPD, ['-L', '-s', dir, '-a', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(`in.tftpd: ${d.toString()}`));
  await new Promise((r) => setTimeout(r, 300));
  if (child.exitCode !== null) throw new Error(`in.tftpd exited with ${child.exitCode}`);
  return { port, child };
}

interface Run {
  server: 'gateway' | 'tftpd-hpa';
  client: ClientName;
  seconds: number;
  capped: boolean;
  ok: boolean;
  correct: boolean;
}

async function main(): Promise<void> {
  if (!fs.existsSync(TFTPD)) throw new Error(`${TFTPD} is missing (apt-get install tftpd-hpa)`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tftpgw-bench-loss-'));
  const body = randomBytes(SIZE);
  const want = sha256(body);
  const tftpdDir = path.join(work, 'tftpboot');
  fs.mkdirSync(tftpdDir, { mode: 0o755 });
  fs.chmodSync(work, 0o755);
  fs.writeFileSync(path.join(tftpdDir, 'image.bin'), body, { mode: 0o644 });

  const bucket = 'bench-loss';
  const store = await startEmbeddedStore(path.join(work, 's3'), bucket);
  const s3 = new S3Client({
    endpoint: store.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { ...EMBEDDED_CREDENTIALS },
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
  });
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'image.bin', Body: body }));
  s3.destroy();
  // The gateway with its defaults (adaptive timer: no flags about retransmission).
  const config = loadConfig([
    '--listen', '127.0.0.1:0', '--http-listen', 'off', '--s3-bucket', bucket, '--s3-endpoint', store.endpoint,
    '--s3-force-path-style', '--s3-checksum', 'when-required', '--log-level', 'error', '--cache-size', '64MiB',
    ...GATEWAY_FLAGS,
  ], {});
  const gateway = await Gateway.start(config, { logger: pino({ level: 'error' }), credentials: { ...EMBEDDED_CREDENTIALS }, defaultMetrics: false });
  const tftpd = await startTftpd(tftpdDir);
  const runs: Run[] = [];
  console.log(`# ${SIZE} bytes at blksize ${BLKSIZE}, ${LOSS * 100}% loss each way (seed ${SEED}), tftpd-hpa capped at ${CAP_S} s`);
  try {
    const once = async (server: 'gateway' | 'tftpd-hpa', client: ClientName, seed: number): Promise<Run> => {
      const port = server === 'gateway' ? gateway.udpAddresses[0]!.port : tftpd.port;
      const profile = { loss: LOSS };
      const relay = await LossyRelay.start({ target: { host: '127.0.0.1', port }, seed, up: profile, down: profile });
      try {
        const capMs = (server === 'tftpd-hpa' ? CAP_S : Math.max(CAP_S, 60)) * 1000;
        const r = await download(client, { host: '127.0.0.1', port: relay.port }, 'image.bin', { blksize: BLKSIZE, timeoutMs: capMs });
        const run: Run = { server, client, seconds: r.durationMs / 1000, capped: r.timedOut, ok: r.ok, correct: r.ok ? r.sha256 === want : true };
        const dropped = relay.stats.up.dropped + relay.stats.down.dropped;
        console.log(
          `${server.padEnd(10)} ${client.padEnd(8)} seed ${seed} ${(run.capped ? '>' : ' ') + run.seconds.toFixed(1).padStart(6)} s  ${run.ok ? (run.correct ? 'sha256 ok' : 'WRONG BYTES') : run.capped ? 'capped' : 'failed'}  (${dropped} datagrams dropped)`,
        );
        return run;
      } finally {
        await relay.close();
      }
    };
    for (const client of CLIENTS) {
      let seed = SEED;
      if (SERVERS.includes('gateway')) {
        for (let i = 0; i < SEED_TRIES; i++, seed++) {
          const run = await once('gateway', client, seed);
          runs.push(run);
          if (run.ok) break;
        }
      }
      if (SERVERS.includes('tftpd-hpa')) runs.push(await once('tftpd-hpa', client, seed));
    }
  } finally {
    tftpd.child.kill('SIGTERM');
    await gateway.stop(0);
    await store.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
  const ratios: number[] = [];
  for (const client of CLIENTS) {
    const gw = runs.find((r) => r.server === 'gateway' && r.client === client && r.ok);
    const hpa = runs.find((r) => r.server === 'tftpd-hpa' && r.client === client);
    if (!gw || !hpa || !gw.ok) {
      console.log(`${client}: no ratio (gateway run ${gw?.ok ? 'ok' : 'failed'})`);
      continue;
    }
    const ratio = hpa.seconds / gw.seconds;
    ratios.push(ratio);
    console.log(`${client}: gateway ${ratio.toFixed(1)}× faster than tftpd-hpa${hpa.capped || !hpa.ok ? ' (at least: tftpd-hpa run capped or failed)' : ''}`);
  }
  if (ratios.length > 0) console.log(`minimum speed-up ${Math.min(...ratios).toFixed(1)}× (target ≥ 5×)`);
  if (runs.some((r) => !r.correct)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
