import { runClient } from './clients.js';
import { allCores, coreCount } from './procs.js';
import { fastest } from './http-report.js';
import { fmt, mbps, MiB, promLabelled, promValue, ratio, s3FetchRatio, summarizeStorm, type ClientName, type Row, type StormClient, type StormSummary, type TransferRun } from './report.js';
import { startGateway, startWanPath, type GatewayOptions, type GatewayServer, type S3Backend } from './servers.js';

/**
 * Section 5: the cold path across a WAN. S3 sits behind a delay path with a round trip of `rttMs`
 * and `bytesPerSecond` per TCP connection (one FIFO per direction, so bytes stay in order); the
 * gateway, fresh for every case, reads the image through it. Each case compares the first (cold)
 * transfer against warm ones from the same gateway, so the ratio is what the WAN costs.
 */
export interface WanColdOptions {
  readonly rttMs: number;
  /** Bandwidth of each S3 connection, bytes per second. */
  readonly bytesPerSecond: number;
  /** Single atftp transfers: [blksize, windowsize]. */
  readonly cases: readonly (readonly [number, number])[];
  /** Clients in the cold storm (lock-step, atftp and curl in turn, at `stormBlksize`); 0: none. */
  readonly stormClients: number;
  readonly stormBlksize: number;
  /** Warm runs per case (the best is the reference). */
  readonly repeats: number;
}

export const WAN_COLD_FULL: WanColdOptions = {
  rttMs: 60,
  bytesPerSecond: 10_000_000,
  cases: [
    [1468, 1],
    [1468, 16],
  ],
  stormClients: 100,
  stormBlksize: 1468,
  repeats: 2,
};

export const WAN_COLD_QUICK: WanColdOptions = { ...WAN_COLD_FULL, stormClients: 20, repeats: 1 };

export interface WanColdCase {
  readonly blksize: number;
  readonly windowsize: number;
  readonly cold: TransferRun;
  readonly warm: TransferRun;
  readonly s3BytesFetched: number;
  /** GetObject calls the cold transfer made. */
  readonly s3Gets: number;
  /** Attribution: the same cold transfer with S3 on loopback (no WAN path), a fresh gateway too. */
  readonly coldLoopback?: TransferRun;
}

export interface WanColdResults {
  readonly rttMs: number;
  readonly bytesPerSecond: number;
  readonly imageBytes: number;
  readonly cases: readonly WanColdCase[];
  readonly stormCold?: StormSummary;
  readonly stormWarm?: StormSummary;
}

export interface WanColdContext {
  readonly wan: WanColdOptions;
  readonly s3: S3Backend;
  /** The gateway's options but its S3 endpoint (the section points it through the path). */
  readonly gateway: Omit<GatewayOptions, 's3Endpoint'>;
  readonly image: Buffer;
  readonly imageKey: string;
  /** Another object each fresh gateway reads first (a cold cache, not a cold process). */
  readonly warmup: { key: string; body: Buffer };
  readonly serverCore: string;
  readonly clientCore: string;
  readonly transferTimeoutMs: number;
  readonly log: (line: string) => void;
}

/** N lock-step clients at once (clients used in turn); each one's completion time from the start. */
export async function runStorm(
  port: number,
  n: number,
  clients: readonly ClientName[],
  blksize: number,
  file: string,
  expected: Buffer,
  timeoutMs: number,
  core: string,
): Promise<{ wall: number; clients: StormClient[] }> {
  const started = performance.now();
  const outcomes = await Promise.all(
    Array.from({ length: n }, async (_, index) => {
      const client = clients[index % clients.length]!;
      const out = await runClient({ client, port, file, blksize, windowsize: 1, expected, timeoutMs, core });
      const finishedAt = (performance.now() - started) / 1000;
      return { index, client, finishedAt, ok: out.ok, ...(out.error ? { error: out.error } : {}) } satisfies StormClient;
    }),
  );
  return { wall: (performance.now() - started) / 1000, clients: outcomes };
}

async function s3Gets(gateway: GatewayServer): Promise<number> {
  return promLabelled(await gateway.metricsText(), 'tftp_gateway_s3_requests_total', { operation: 'GetObject' }) ?? 0;
}

/** What the gateway's adaptive reader measured and planned, for the log. */
async function readPlan(gateway: GatewayServer): Promise<string> {
  const text = await gateway.metricsText();
  const v = (name: string): number => promValue(text, name) ?? Number.NaN;
  return `S3 first byte ${fmt(v('tftp_gateway_s3_read_first_byte_seconds') * 1000, 0)} ms, ${fmt(v('tftp_gateway_s3_read_stream_bytes_per_second') / 1e6, 1)} MB/s per stream, parts ${fmt(v('tftp_gateway_s3_read_part_bytes') / 1024, 0)} KiB, read-ahead ${v('tftp_gateway_read_ahead_ranges')} ranges`;
}

export async function runWanColdSection(ctx: WanColdContext): Promise<WanColdResults> {
  const { wan, log } = ctx;
  log(
    `5. cold across a WAN: S3 behind +${wan.rttMs} ms round trip and ${fmt(wan.bytesPerSecond / 1e6, 0)} MB/s per connection, ${fmt(ctx.image.length / MiB, 0)} MiB image, a fresh gateway per case`,
  );
  const path = await startWanPath(wan.rttMs, 4 * MiB, [{ kind: 'tcp', target: ctx.s3.port }], allCores(), wan.bytesPerSecond);
  const endpoint = `http://127.0.0.1:${path.ports[0]!}`;
  const cases: WanColdCase[] = [];
  let stormCold: StormSummary | undefined;
  let stormWarm: StormSummary | undefined;
  let gateway: GatewayServer | undefined;
  // TFTPGW_BENCH_WAN_FLAGS: extra gateway flags for this section (experiments with the cold path's settings).
  const extra = (process.env.TFTPGW_BENCH_WAN_FLAGS ?? '').split(/\s+/).filter(Boolean);
  if (extra.length > 0) log(`   gateway flags added: ${extra.join(' ')}`);
  const fresh = async (core: string, via = endpoint): Promise<GatewayServer> => {
    const g = await startGateway({ ...ctx.gateway, s3Endpoint: via, core, extraFlags: [...(ctx.gateway.extraFlags ?? []), ...extra] });
    // The process's packet and S3 paths compiled, its S3 connections made: only the cache is cold.
    const first = await runClient({ client: 'atftp', port: g.port, file: ctx.warmup.key, blksize: 1468, windowsize: 1, expected: ctx.warmup.body, timeoutMs: ctx.transferTimeoutMs, core: ctx.clientCore });
    if (!first.ok) {
      await g.stop();
      throw new Error(`warm-up transfer through the WAN path failed: ${first.error}`);
    }
    return g;
  };
  const transfer = async (g: GatewayServer, blksize: number, windowsize: number): Promise<TransferRun> => {
    const out = await runClient({ client: 'atftp', port: g.port, file: ctx.imageKey, blksize, windowsize, expected: ctx.image, timeoutMs: ctx.transferTimeoutMs, core: ctx.clientCore });
    return { server: 'gateway', client: 'atftp', blksize, windowsize, bytes: out.bytes, seconds: out.seconds, ok: out.ok, ...(out.error ? { error: out.error } : {}) };
  };
  try {
    for (const [blksize, windowsize] of wan.cases) {
      gateway = await fresh(ctx.serverCore);
      const bytesBefore = await gateway.s3BytesFetched();
      const getsBefore = await s3Gets(gateway);
      const cold = await transfer(gateway, blksize, windowsize);
      const fetched = (await gateway.s3BytesFetched()) - bytesBefore;
      const gets = (await s3Gets(gateway)) - getsBefore;
      const plan = await readPlan(gateway);
      const warmRuns: TransferRun[] = [];
      for (let i = 0; i < Math.max(1, wan.repeats); i++) warmRuns.push(await transfer(gateway, blksize, windowsize));
      const warm = fastest(warmRuns);
      await gateway.stop();
      // What a cold transfer costs on this machine with no WAN at all (S3 on loopback): the WAN's
      // share of the shortfall is the difference.
      gateway = await fresh(ctx.serverCore, ctx.s3.endpoint);
      const coldLoopback = await transfer(gateway, blksize, windowsize);
      await gateway.stop();
      gateway = undefined;
      cases.push({ blksize, windowsize, cold, warm: warm!, s3BytesFetched: fetched, s3Gets: gets, coldLoopback });
      log(
        `  atftp blksize ${blksize} window ${windowsize}: cold ${cold.ok ? `${fmt(mbps(cold.bytes, cold.seconds))} MB/s` : `FAILED (${cold.error})`} (S3 on loopback: ${coldLoopback.ok ? `${fmt(mbps(coldLoopback.bytes, coldLoopback.seconds))} MB/s` : 'FAILED'}), warm ${warm!.ok ? `${fmt(mbps(warm!.bytes, warm!.seconds))} MB/s` : 'FAILED'}, S3 ${fmt(fetched / ctx.image.length, 3)}× image in ${gets} GETs (${plan})`,
      );
    }
    if (wan.stormClients > 0) {
      gateway = await fresh(allCores());
      const n = wan.stormClients;
      const timeout = ctx.transferTimeoutMs * 4;
      const before = await gateway.s3BytesFetched();
      const c = await runStorm(gateway.port, n, ['atftp', 'curl'], wan.stormBlksize, ctx.imageKey, ctx.image, timeout, ctx.clientCore);
      const fetched = (await gateway.s3BytesFetched()) - before;
      stormCold = summarizeStorm('gateway', ctx.image.length, c.wall, c.clients, fetched, { workers: gateway.workers });
      const w = await runStorm(gateway.port, n, ['atftp', 'curl'], wan.stormBlksize, ctx.imageKey, ctx.image, timeout, ctx.clientCore);
      stormWarm = summarizeStorm('gateway', ctx.image.length, w.wall, w.clients, 0, { workers: gateway.workers });
      await gateway.stop();
      gateway = undefined;
      log(
        `  storm of ${n} (atftp/curl, blksize ${wan.stormBlksize}, ${coreCount()} cores): cold ${fmt(stormCold.aggregateMbps)} MB/s aggregate (${stormCold.failures} failed, slowest ${fmt(stormCold.slowestSeconds, 2)} s, S3 ${fmt(stormCold.s3FetchRatio, 3)}× image), warm ${fmt(stormWarm.aggregateMbps)} MB/s (${stormWarm.failures} failed)`,
      );
    }
  } finally {
    await gateway?.stop();
    await path.stop();
  }
  return { rttMs: wan.rttMs, bytesPerSecond: wan.bytesPerSecond, imageBytes: ctx.image.length, cases, ...(stormCold ? { stormCold } : {}), ...(stormWarm ? { stormWarm } : {}) };
}

/** The section's rows: each cold case against warm, and the storm's aggregate and S3 bytes. */
export function buildWanColdRows(r: WanColdResults): Row[] {
  const rows: Row[] = [];
  const speed = (t: TransferRun): number => (t.ok ? mbps(t.bytes, t.seconds) : 0);
  const path = `+${r.rttMs} ms, ${fmt(r.bytesPerSecond / 1e6, 0)} MB/s/conn`;
  for (const c of r.cases) {
    const min = c.windowsize === 1 ? 0.9 : 0.8;
    const q = ratio(speed(c.cold), speed(c.warm));
    rows.push({
      case: `WAN cold (${path}) vs warm, bs ${c.blksize} w ${c.windowsize}`,
      gateway: c.cold.ok ? `${fmt(speed(c.cold))} MB/s` : 'failed',
      reference: `${c.warm.ok ? `${fmt(speed(c.warm))} MB/s` : 'failed'} warm`,
      ratio: q,
      target: `≥ ${min.toFixed(2)}`,
      met: q === undefined ? undefined : q >= min,
    });
    if (c.coldLoopback) {
      rows.push({
        case: `cold, S3 on loopback (no WAN) vs warm, bs ${c.blksize} w ${c.windowsize}`,
        gateway: c.coldLoopback.ok ? `${fmt(speed(c.coldLoopback))} MB/s` : 'failed',
        reference: `${c.warm.ok ? `${fmt(speed(c.warm))} MB/s` : 'failed'} warm`,
        ratio: ratio(speed(c.coldLoopback), speed(c.warm)),
        target: '(attribution)',
        met: undefined,
      });
    }
  }
  if (r.stormCold && r.stormWarm) {
    const q = ratio(r.stormCold.aggregateMbps, r.stormWarm.aggregateMbps);
    const ok = r.stormCold.failures === 0 && r.stormWarm.failures === 0;
    rows.push({
      case: `WAN cold storm of ${r.stormCold.clients} vs warm storm, aggregate`,
      gateway: `${fmt(r.stormCold.aggregateMbps)} MB/s`,
      reference: `${fmt(r.stormWarm.aggregateMbps)} MB/s warm`,
      ratio: q,
      target: '≥ 0.80',
      met: q === undefined || !ok ? (ok ? undefined : false) : q >= 0.8,
    });
    const s = s3FetchRatio(r.stormCold.s3BytesFetched ?? 0, r.imageBytes);
    rows.push({
      case: `WAN cold storm of ${r.stormCold.clients}: S3 bytes ÷ image`,
      gateway: `${fmt((r.stormCold.s3BytesFetched ?? 0) / MiB, 1)} MiB`,
      reference: `${fmt(r.imageBytes / MiB, 1)} MiB`,
      ratio: s,
      target: '≤ 1.05',
      met: s === undefined ? undefined : s <= 1.05,
    });
  }
  return rows;
}
