import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runClient, runCurl, type HttpOutcome } from './clients.js';
import {
  bestWarm,
  fastest,
  scaleByBytes,
  seededBytes,
  seededSample,
  summarizeCold,
  summarizeHttpWarm,
  type HttpColdSample,
  type HttpDownload,
  type HttpResults,
  type HttpServerName,
  type HttpWanResult,
  type HttpWarmRun,
} from './http-report.js';
import { allCores, busyShare, coreTicks, onCleanup } from './procs.js';
import { fmt, mbps, MiB } from './report.js';
import { startGateway, startNginx, startWanPath, uploadFiles, type GatewayOptions, type GatewayServer, type NginxServer, type S3Backend } from './servers.js';

/** The HTTP stage-2 boot cases (issue 20). */
export interface HttpBenchOptions {
  /** Concurrent curl downloads of the image in the warm case. */
  readonly clients: number;
  /** How many of them (chosen by the seed) have their sha256 checked; the rest status and size. */
  readonly hashSample: number;
  /** The WAN path's added round trip, ms. */
  readonly rttMs: number;
  /** The WAN path's TCP window per connection (bytes in flight per round trip). */
  readonly windowBytes: number;
  /** Lock-step TFTP over the WAN path runs on a file this big, its time scaled to the image's size. */
  readonly tftpBytes: number;
  readonly tftpBlksize: number;
  /** Cold first-byte samples, a fresh object each. */
  readonly coldSamples: number;
  readonly coldObjectBytes: number;
  /** Seeds the hashed sample and the extra objects' bytes. */
  readonly seed: number;
}

export const HTTP_FULL: HttpBenchOptions = {
  clients: 100,
  hashSample: 10,
  rttMs: 30,
  windowBytes: 4 * MiB,
  // 1 MiB at one block per 30 ms round trip: about 22 s (the whole 32 MiB would take 11 min).
  tftpBytes: MiB,
  tftpBlksize: 1468,
  coldSamples: 7,
  coldObjectBytes: 16 * MiB,
  seed: 20,
};

export const HTTP_QUICK: HttpBenchOptions = {
  ...HTTP_FULL,
  clients: 20,
  hashSample: 5,
  tftpBytes: 256 * 1024,
  coldSamples: 3,
  coldObjectBytes: 4 * MiB,
};

/** The gateway's --range-size (its default): the first S3 read of an object asks for this much. */
export const GATEWAY_RANGE_BYTES = 8 * MiB;

export const WAN_TFTP_FILE = 'wan-tftp.bin';

export interface HttpSectionContext {
  readonly http: HttpBenchOptions;
  readonly s3: S3Backend;
  readonly bucket: string;
  /** The image's key and bytes (already in the bucket). */
  readonly imageKey: string;
  readonly image: Buffer;
  /** The gateway's options as the storms run it (every core, their worker count). */
  readonly gateway: GatewayOptions;
  readonly clientCore: string;
  readonly repeats: number;
  readonly transferTimeoutMs: number;
  /** Where nginx's config, pid, logs and temp files go. */
  readonly dir: string;
  readonly log: (line: string) => void;
}

/** The directory nginx serves from: on tmpfs where there is one. */
function tmpfsDir(): string {
  const shm = '/dev/shm';
  const base = fs.existsSync(shm) && fs.statSync(shm).isDirectory() ? shm : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, 'tftpgw-bench-nginx-'));
  fs.chmodSync(dir, 0o755);
  return dir;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const download = (o: HttpOutcome): HttpDownload => ({
  ok: o.ok,
  bytes: o.bytes,
  seconds: o.seconds,
  firstByteSeconds: o.firstByteSeconds,
  hashed: o.hashed,
  ...(o.error !== undefined ? { error: o.error } : {}),
});

/**
 * Runs the HTTP rows' cases: the gateway (every core, the storms' worker count) and nginx (as many
 * worker processes) serving the image, curl clients on the clients' core; starts and always stops
 * what it needs.
 */
export async function runHttpSection(ctx: HttpSectionContext): Promise<HttpResults> {
  const { http, log, clientCore } = ctx;
  const imageSha = sha256(ctx.image);
  const tftpFile = seededBytes(http.seed, http.tftpBytes);
  const coldObjects = Array.from({ length: http.coldSamples }, (_, i) => ({ key: `http-cold-${i}.bin`, body: seededBytes(http.seed + 1 + i, http.coldObjectBytes) }));
  const hashed = new Set(seededSample(http.seed, http.clients, http.hashSample));
  log(
    `4. HTTP stage-2 boot, seed ${http.seed} (sha256-checked downloads: ${[...hashed].join(',')}; bytes of ${WAN_TFTP_FILE} and the ${http.coldSamples} cold objects)`,
  );
  await uploadFiles(ctx.s3, ctx.bucket, new Map([[WAN_TFTP_FILE, tftpFile], ...coldObjects.map((o) => [o.key, o.body] as const)]));

  const root = tmpfsDir();
  fs.writeFileSync(path.join(root, ctx.imageKey), ctx.image, { mode: 0o644 });
  const nginxDir = path.join(ctx.dir, 'nginx');
  const forget = onCleanup(() => Promise.resolve(fs.rmSync(root, { recursive: true, force: true })));
  let gateway: GatewayServer | undefined;
  let nginx: NginxServer | undefined;
  let wanPath: Awaited<ReturnType<typeof startWanPath>> | undefined;
  try {
    gateway = await startGateway(ctx.gateway);
    nginx = await startNginx(root, nginxDir, gateway.workers, allCores());
    const servers: Record<HttpServerName, { port: number; cpu: () => number | undefined; accounting: () => string }> = {
      gateway: { port: gateway.bootPort, cpu: () => gateway!.process.cpuSeconds(), accounting: () => gateway!.process.cpuAccounting },
      nginx: { port: nginx.port, cpu: () => nginx!.process.cpuSeconds(), accounting: () => nginx!.process.cpuAccounting },
    };
    const url = (port: number, key: string): string => `http://127.0.0.1:${port}/${key}`;
    const get = (port: number, hash: boolean, timeoutMs = ctx.transferTimeoutMs): Promise<HttpOutcome> =>
      runCurl({ url: url(port, ctx.imageKey), status: 200, bytes: ctx.image.length, ...(hash ? { sha256: imageSha } : {}), timeoutMs, core: clientCore });

    // The gateway's cache warm (nginx's file is on tmpfs), and each server's first connection made.
    for (const name of ['gateway', 'nginx'] as const) {
      const first = await get(servers[name].port, true);
      if (!first.ok) throw new Error(`HTTP download from ${name} failed: ${first.error}`);
    }

    log(`   warm: ${http.clients} concurrent curl downloads, ${gateway.workers} gateway workers, nginx worker_processes ${nginx.workers}, servers on every core`);
    const warm: HttpWarmRun[] = [];
    for (let r = 0; r < ctx.repeats; r++) {
      for (const name of r % 2 === 0 ? (['gateway', 'nginx'] as const) : (['nginx', 'gateway'] as const)) {
        const cpuBefore = servers[name].cpu();
        const ticksBefore = coreTicks();
        const started = performance.now();
        const outcomes = await Promise.all(Array.from({ length: http.clients }, (_, i) => get(servers[name].port, hashed.has(i), ctx.transferTimeoutMs * 4)));
        const wall = (performance.now() - started) / 1000;
        const cpuAfter = servers[name].cpu();
        const ticksAfter = coreTicks();
        // How busy each core was (every process: servers, clients, the kernel): a full clients' core
        // means the aggregate measures the clients as much as the server.
        const coresBusy: Record<string, number> = {};
        for (const [core, before] of ticksBefore) {
          const share = core === '' ? undefined : busyShare(before, ticksAfter.get(core));
          if (share !== undefined) coresBusy[core] = share;
        }
        const summary = summarizeHttpWarm(name, ctx.image.length, wall, outcomes.map(download), {
          cpuSeconds: cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined,
          workers: name === 'gateway' ? gateway.workers : nginx.workers,
        });
        const run: HttpWarmRun = { ...summary, coresBusy };
        warm.push(run);
        const busy = Object.entries(coresBusy).map(([core, share]) => `${core}${core === clientCore ? ' (clients)' : ''} ${fmt(share * 100, 0)}%`).join(', ');
        log(
          `  ${name.padEnd(8)} ${fmt(run.aggregateMbps)} MB/s aggregate, slowest ${fmt(run.slowestSeconds, 2)} s, ${run.failures} failed${run.firstError ? ` (${run.firstError})` : ''}, ${run.hashed} sha256-checked, ${fmt(run.cpuSecondsPerGB, 2)} CPU-s/GB (${servers[name].accounting()}), cores busy: ${busy}`,
        );
      }
    }
    const g = bestWarm(warm, 'gateway');
    const n = bestWarm(warm, 'nginx');
    if (g && n) log(`  best: gateway ÷ nginx ${fmt(g.aggregateMbps / n.aggregateMbps, 2)}, CPU ${fmt((g.cpuSecondsPerGB ?? 0) / (n.cpuSecondsPerGB ?? 1), 2)}`);

    log(`   WAN path: +${http.rttMs} ms round trip (TCP window ${fmt(http.windowBytes / MiB, 0)} MiB) for HTTP and TFTP, on loopback`);
    wanPath = await startWanPath(http.rttMs, http.windowBytes, [
      { kind: 'tcp', target: gateway.bootPort },
      { kind: 'tcp', target: nginx.port },
      { kind: 'udp', target: gateway.port },
    ], allCores());
    const [gatewayVia, nginxVia, tftpVia] = wanPath.ports as [number, number, number];
    const wanRuns: (HttpDownload & { server: HttpServerName })[] = [];
    for (let r = 0; r < ctx.repeats; r++) {
      for (const name of r % 2 === 0 ? (['gateway', 'nginx'] as const) : (['nginx', 'gateway'] as const)) {
        const d = download(await get(name === 'gateway' ? gatewayVia : nginxVia, true));
        wanRuns.push({ server: name, ...d });
        log(`  ${name.padEnd(8)} HTTP ${fmt(ctx.image.length / MiB, 0)} MiB through the path: ${d.ok ? `${fmt(d.seconds, 2)} s (${fmt(mbps(d.bytes, d.seconds))} MB/s, first byte ${fmt(d.firstByteSeconds * 1000, 1)} ms)` : `FAILED (${d.error})`}`);
      }
    }
    // The TFTP file in the gateway's cache first (straight, not through the path): warm like the image.
    await runClient({ client: 'atftp', port: gateway.port, file: WAN_TFTP_FILE, blksize: http.tftpBlksize, windowsize: 1, expected: tftpFile, timeoutMs: ctx.transferTimeoutMs, core: clientCore });
    const blocks = Math.ceil((http.tftpBytes + 1) / http.tftpBlksize);
    const t = await runClient({
      client: 'atftp',
      port: tftpVia,
      file: WAN_TFTP_FILE,
      blksize: http.tftpBlksize,
      windowsize: 1,
      expected: tftpFile,
      // Lock-step: a round trip per block; three times that and a minute at most.
      timeoutMs: blocks * http.rttMs * 3 + 60_000,
      core: clientCore,
    });
    await wanPath.stop();
    wanPath = undefined;
    const tftp = {
      blksize: http.tftpBlksize,
      bytes: http.tftpBytes,
      seconds: t.seconds,
      ok: t.ok,
      ...(t.error !== undefined ? { error: t.error } : {}),
      scaledSeconds: scaleByBytes(t.seconds, http.tftpBytes, ctx.image.length),
    };
    log(
      `  gateway  TFTP atftp bs ${http.tftpBlksize} w 1, ${fmt(http.tftpBytes / 1024, 0)} KiB through the path: ${t.ok ? `${fmt(t.seconds, 2)} s (${fmt(mbps(t.bytes, t.seconds) * 1000, 1)} KB/s; ${fmt(tftp.scaledSeconds, 1)} s for the image at that rate)` : `FAILED (${t.error})`}`,
    );
    const wan: HttpWanResult = {
      rttMs: http.rttMs,
      windowBytes: http.windowBytes,
      imageBytes: ctx.image.length,
      gateway: fastest(wanRuns.filter((r) => r.server === 'gateway'))!,
      nginx: fastest(wanRuns.filter((r) => r.server === 'nginx'))!,
      runs: wanRuns,
      tftp,
    };

    const rangeBytes = Math.min(GATEWAY_RANGE_BYTES, http.coldObjectBytes);
    log(`   cold: first byte of a fresh ${fmt(http.coldObjectBytes / MiB, 0)} MiB object over HTTP from the gateway vs a ranged GetObject (${fmt(rangeBytes / MiB, 0)} MiB) straight to S3, ${http.coldSamples} samples`);
    const samples: HttpColdSample[] = [];
    for (const [i, o] of coldObjects.entries()) {
      const fromGateway = (): Promise<HttpOutcome> =>
        runCurl({ url: url(gateway!.bootPort, o.key), status: 200, bytes: o.body.length, sha256: sha256(o.body), timeoutMs: ctx.transferTimeoutMs, core: clientCore });
      const fromS3 = (): Promise<HttpOutcome> =>
        runCurl({
          url: `${ctx.s3.endpoint}/${ctx.bucket}/${o.key}`,
          status: 206,
          bytes: rangeBytes,
          headers: [`Range: bytes=0-${rangeBytes - 1}`],
          sigv4: { provider: `aws:amz:${ctx.s3.region}:s3`, ...ctx.s3.credentials },
          timeoutMs: ctx.transferTimeoutMs,
          core: clientCore,
        });
      // Alternated: whichever goes second may find the store's own caches warm.
      const first = i % 2 === 0 ? 's3' : 'gateway';
      let gw: HttpOutcome;
      let s3: HttpOutcome;
      if (first === 's3') {
        s3 = await fromS3();
        gw = await fromGateway();
      } else {
        gw = await fromGateway();
        s3 = await fromS3();
      }
      const error = !gw.ok ? `gateway: ${gw.error}` : !s3.ok ? `S3: ${s3.error}` : undefined;
      const sample: HttpColdSample = { key: o.key, bytes: o.body.length, first, gatewayMs: gw.firstByteSeconds * 1000, s3Ms: s3.firstByteSeconds * 1000, ok: error === undefined, ...(error ? { error } : {}) };
      samples.push(sample);
      log(`  ${o.key} (${first} first): gateway ${fmt(sample.gatewayMs, 1)} ms, S3 ${fmt(sample.s3Ms, 1)} ms${error ? `: FAILED (${error})` : ''}`);
    }
    const cold = summarizeCold(rangeBytes, samples);
    log(`  median: gateway ${fmt(cold.gatewayMedianMs, 1)} ms, S3 ${fmt(cold.s3MedianMs, 1)} ms, difference ${fmt(cold.differenceMedianMs, 1)} ms (worst ${fmt(cold.differenceMaxMs, 1)} ms)`);
    return { seed: http.seed, warm, wan, cold };
  } finally {
    await wanPath?.stop();
    await nginx?.stop();
    await gateway?.stop();
    fs.rmSync(root, { recursive: true, force: true });
    forget();
  }
}
