import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { runClient, runCurl, type HttpOutcome } from './clients.js';
import {
  bestWarm,
  downloadSeconds,
  fastest,
  scaleByBytes,
  seededBytes,
  seededSample,
  summarizeCold,
  summarizeHttpWarm,
  summarizeStalled,
  type HttpColdSample,
  type HttpDownload,
  type HttpResults,
  type HttpServerName,
  type HttpStalledResult,
  type HttpWanResult,
  type HttpWarmRun,
} from './http-report.js';
import { allCores, busyShare, coreTicks, onCleanup, tcpMemory } from './procs.js';
import { fmt, mbps, MiB, promLabelled, promValue } from './report.js';
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
  /** Connections that ask for the image and read nothing, open while a download is timed (0: not run). */
  readonly stalledConnections: number;
  /** Downloads timed alone, and again alongside the stalled connections (medians compared). */
  readonly stalledDownloads: number;
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
  stalledConnections: 1000,
  stalledDownloads: 9,
};

export const HTTP_QUICK: HttpBenchOptions = {
  ...HTTP_FULL,
  clients: 20,
  hashSample: 5,
  tftpBytes: 256 * 1024,
  coldSamples: 3,
  coldObjectBytes: 4 * MiB,
  // A smoke run: 200 stalled readers, not the issue's 1,000.
  stalledConnections: 200,
};

/** The gateway's --range-size (its default): the first S3 read of an object asks for this much. */
export const GATEWAY_RANGE_BYTES = 8 * MiB;

/** The gateway's --http-send-timeout (its default): a response that makes no progress this long is cut. */
export const GATEWAY_SEND_TIMEOUT_S = 60;

/**
 * Flags of the HTTP rows' gateway beyond the storms': no per-client connection cap, so the stalled
 * readers (all from 127.0.0.1) are answered rather than refused with 503 at the default 256.
 */
export const HTTP_GATEWAY_FLAGS = ['--http-max-connections-per-client', '0'] as const;

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
  /** Its --cache-size in bytes (the RSS target is this + 150 MiB). */
  readonly cacheBytes: number;
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
  ...(o.totalSeconds !== undefined ? { totalSeconds: o.totalSeconds } : {}),
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
    gateway = await startGateway({ ...ctx.gateway, extraFlags: [...(ctx.gateway.extraFlags ?? []), ...HTTP_GATEWAY_FLAGS] });
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

    const stalled = http.stalledConnections > 0 ? await runStalled(ctx, gateway, (hash) => get(gateway!.bootPort, hash)) : undefined;
    return { seed: http.seed, warm, wan, cold, ...(stalled ? { stalled } : {}) };
  } finally {
    await wanPath?.stop();
    await nginx?.stop();
    await gateway?.stop();
    fs.rmSync(root, { recursive: true, force: true });
    forget();
  }
}

/** Connections that send one request and never read a byte (kept paused from the start). */
interface StalledReaders {
  readonly sockets: net.Socket[];
  /** Connected with the request written. */
  readonly established: () => number;
  /** Closed before close() (by the peer or an error). */
  readonly closedEarly: () => number;
  readonly firstError: () => string | undefined;
  /** Destroys every socket and waits until each has closed. */
  close(): Promise<void>;
}

/** Opens `count` connections to 127.0.0.1:port, `batch` at a time, each writing `request` once. */
async function openStalledReaders(port: number, request: string, count: number, batch = 100): Promise<StalledReaders> {
  const sockets: net.Socket[] = [];
  const closed: Promise<void>[] = [];
  let established = 0;
  let closedEarly = 0;
  let closing = false;
  let firstError: string | undefined;
  const open = (): Promise<void> =>
    new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      // Paused before it connects: Node never starts reading it, so the bytes stay in the kernel.
      s.pause();
      sockets.push(s);
      const timer = setTimeout(() => {
        firstError ??= 'connect timed out';
        s.destroy();
      }, 10_000);
      s.on('error', (err: NodeJS.ErrnoException) => (firstError ??= err.code ?? err.message));
      closed.push(
        new Promise((r) =>
          s.once('close', () => {
            clearTimeout(timer);
            if (!closing) closedEarly++;
            resolve();
            r();
          }),
        ),
      );
      s.once('connect', () => {
        clearTimeout(timer);
        s.write(request, (err) => {
          if (!err) established++;
          resolve();
        });
      });
    });
  for (let i = 0; i < count; i += batch) await Promise.all(Array.from({ length: Math.min(batch, count - i) }, open));
  return {
    sockets,
    established: () => established,
    closedEarly: () => closedEarly,
    firstError: () => firstError,
    close: async () => {
      closing = true;
      for (const s of sockets) s.destroy();
      await Promise.all(closed);
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The stalled-readers case (issue 20, "Backpressure and limits"): the image downloaded alone
 * `stalledDownloads` times (curl, status and size checked), then `stalledConnections` connections
 * from this process each send a GET for it and read nothing; once every response has begun and
 * the bytes handed to them stop growing, the same downloads again alongside them (and one more,
 * sha256-checked), the gateway's RSS followed from before they opened to the last download. Then
 * they are closed, and the downloads are timed alone once more (for the noise). The connections are
 * held well under the gateway's send timeout, which would cut them.
 */
async function runStalled(ctx: HttpSectionContext, gateway: GatewayServer, get: (hash: boolean) => Promise<HttpOutcome>): Promise<HttpStalledResult> {
  const { http, log } = ctx;
  const n = http.stalledConnections;
  log(`   stalled readers: ${n} connections that GET the ${fmt(ctx.image.length / MiB, 0)} MiB image and read nothing, against ${http.stalledDownloads} curl downloads alone and alongside; gateway RSS vs --cache-size ${fmt(ctx.cacheBytes / MiB, 0)} MiB + 150 MiB`);
  const scrape = async (): Promise<{ started: number; open: number; active: number; refused: number; sent: number }> => {
    const text = await gateway.metricsText();
    return {
      started: promLabelled(text, 'tftp_gateway_transfers_started_total', { operation: 'read', protocol: 'http' }) ?? 0,
      open: promValue(text, 'tftp_gateway_http_connections') ?? 0,
      active: promLabelled(text, 'tftp_gateway_active_sessions', { operation: 'read', protocol: 'http' }) ?? 0,
      refused: promValue(text, 'tftp_gateway_http_connections_refused_total', true) ?? 0,
      sent: promLabelled(text, 'tftp_gateway_transfer_bytes_total', { direction: 'sent', protocol: 'http' }) ?? 0,
    };
  };
  const timed = async (what: string, count: number): Promise<HttpDownload[]> => {
    const runs: HttpDownload[] = [];
    for (let i = 0; i < count; i++) runs.push(download(await get(false)));
    log(`  ${what.padEnd(9)} ${runs.map((d) => (d.ok ? `${fmt(downloadSeconds(d), 3)} s` : `FAILED (${d.error})`)).join(', ')}`);
    return runs;
  };

  // Warm (and whole) first, then alone.
  const first = await get(true);
  if (!first.ok) throw new Error(`HTTP download from the gateway failed before the stalled readers: ${first.error}`);
  const alone = await timed('alone:', http.stalledDownloads);

  const proc = gateway.process;
  const before = await scrape();
  const rssBeforeBytes = proc.rss();
  const fromHwm = proc.resetPeakRss();
  let sampledPeak = rssBeforeBytes ?? 0;
  const sampler = setInterval(() => (sampledPeak = Math.max(sampledPeak, proc.rss() ?? 0)), 50);
  const t0 = performance.now();
  const request = `GET /${ctx.imageKey} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: tftpgw-bench-stalled\r\n\r\n`;
  let readers: StalledReaders | undefined;
  try {
    readers = await openStalledReaders(gateway.bootPort, request, n);
    // Every response begun, and the bytes handed to the sockets no longer growing (at most 30 s).
    let now = await scrape();
    let lastSent = -1;
    let settled = false;
    const deadline = t0 + 30_000;
    while (performance.now() < deadline) {
      const begun = now.started - before.started >= n || readers.closedEarly() > 0;
      if (begun && now.sent === lastSent) {
        settled = true;
        break;
      }
      if (begun) lastSent = now.sent;
      await sleep(250);
      now = await scrape();
    }
    const settleSeconds = (performance.now() - t0) / 1000;
    const tcp = tcpMemory();
    log(
      `  ${readers.established()} connected, ${now.started - before.started} responses begun, ${now.active} in progress, ${now.open} open connections, ${fmt((now.sent - before.sent) / n / 1024, 0)} KiB handed to each; ${settled ? 'settled' : 'NOT settled'} after ${fmt(settleSeconds, 1)} s; ` +
        `kernel TCP memory ${tcp ? `${tcp.pages} pages (tcp_mem ${tcp.limits.join(' ')})${tcp.pages >= tcp.limits[1]! ? ": past tcp_mem's pressure line, every TCP socket on the machine is held back" : ''}` : '?'}`,
    );
    const loaded = await timed('alongside:', http.stalledDownloads);
    const checked = download(await get(true));
    const end = await scrape();
    clearInterval(sampler);
    sampledPeak = Math.max(sampledPeak, proc.rss() ?? 0);
    const hwm = fromHwm ? proc.peakRss() : undefined;
    const established = readers.established();
    const closedEarly = readers.closedEarly();
    const firstError = readers.firstError();
    await readers.close();
    const heldSeconds = (performance.now() - t0) / 1000;
    readers = undefined;
    // The gateway has seen every close before the downloads alone again.
    const closedBy = performance.now() + 10_000;
    while ((await scrape()).open > before.open && performance.now() < closedBy) await sleep(100);
    const after = await timed('after:', http.stalledDownloads);

    const peakRssBytes = hwm !== undefined ? Math.max(hwm, sampledPeak) : sampledPeak > 0 ? sampledPeak : undefined;
    const result = summarizeStalled({
      connections: n,
      established,
      accepted: now.started - before.started,
      openConnections: now.open,
      inProgress: now.active,
      refused: end.refused - before.refused,
      stalledBytesSent: now.sent - before.sent,
      settleSeconds,
      settled,
      ...(tcp ? { tcpMemPages: tcp.pages, tcpMemLimitPages: tcp.limits } : {}),
      heldSeconds,
      sendTimeoutSeconds: GATEWAY_SEND_TIMEOUT_S,
      closedEarly,
      ...(firstError !== undefined ? { firstError } : {}),
      imageBytes: ctx.image.length,
      cacheBytes: ctx.cacheBytes,
      alone,
      loaded,
      after,
      checked,
      ...(rssBeforeBytes !== undefined ? { rssBeforeBytes } : {}),
      ...(peakRssBytes !== undefined ? { peakRssBytes, peakRssFrom: hwm !== undefined ? ('VmHWM' as const) : ('sampled' as const) } : {}),
    });
    const mib = (b: number | undefined): string => `${fmt(b !== undefined ? b / MiB : undefined, 0)} MiB`;
    log(
      `  medians: alone ${fmt(result.aloneMedianSeconds, 3)} s, alongside ${fmt(result.loadedMedianSeconds, 3)} s (× ${fmt(result.slowdown, 2)}), after ${fmt(result.afterMedianSeconds, 3)} s; ` +
        `sha256-checked alongside: ${checked.ok ? 'ok' : `FAILED (${checked.error})`}; ${result.refused} refused, ${closedEarly} closed early${firstError ? ` (${firstError})` : ''}; ` +
        `gateway RSS ${mib(rssBeforeBytes)} before, peak ${mib(peakRssBytes)} (${result.peakRssFrom ?? '?'}; limit ${mib(result.rssLimitBytes)}); held ${fmt(heldSeconds, 1)} s (send timeout ${GATEWAY_SEND_TIMEOUT_S} s)`,
    );
    return result;
  } finally {
    clearInterval(sampler);
    await readers?.close();
  }
}
