/**
 * The HTTP stage-2 boot rows (issue 20): their arithmetic, seeded choices and table rows. Pure
 * functions (no I/O), so the test suite checks them directly.
 */
// The test suite's seeded generator (mulberry32): the same seed, the same sequence, on every run.
import { mulberry32 } from '../../test/support/prng.js';
import { cpuSecondsPerGB, fmt, mbps, MiB, ratio, type Row } from './report.js';

export type HttpServerName = 'gateway' | 'nginx';

/** One HTTP download, as measured (bench/lib/clients.ts runCurl). */
export interface HttpDownload {
  readonly ok: boolean;
  readonly bytes: number;
  /** Spawn to exit. */
  readonly seconds: number;
  /** curl's time_starttransfer: from its start to the first response byte (connect included). */
  readonly firstByteSeconds: number;
  /** curl's time_total: from its start to the last byte (connect included, process start-up not). */
  readonly totalSeconds?: number;
  /** Its sha256 was checked (the others: status and size). */
  readonly hashed: boolean;
  readonly error?: string;
}

/** N concurrent downloads of the image from one server. */
export interface HttpWarmRun {
  readonly server: HttpServerName;
  readonly clients: number;
  readonly imageBytes: number;
  readonly wallSeconds: number;
  /** Bytes delivered correctly ÷ wall time, MB/s. */
  readonly aggregateMbps: number;
  readonly failures: number;
  /** Downloads whose sha256 was checked. */
  readonly hashed: number;
  /** Server CPU seconds (every process and thread) during the run. */
  readonly cpuSeconds?: number;
  readonly cpuSecondsPerGB?: number;
  /** Gateway worker threads, nginx worker processes. */
  readonly workers: number;
  readonly slowestSeconds: number;
  readonly firstError?: string;
  /** How busy each core was during the run (0..1, every process), by core number. */
  readonly coresBusy?: Readonly<Record<string, number>>;
}

export interface HttpWanResult {
  readonly rttMs: number;
  /** The path's TCP window (bytes in flight per round trip, per connection). */
  readonly windowBytes: number;
  readonly imageBytes: number;
  /** The fastest of the repeats for each server, and every repeat. */
  readonly gateway: HttpDownload;
  readonly nginx: HttpDownload;
  readonly runs: readonly (HttpDownload & { readonly server: HttpServerName })[];
  /** Lock-step TFTP (gateway, atftp, window 1) through the same path, on a smaller file. */
  readonly tftp: {
    readonly blksize: number;
    readonly bytes: number;
    readonly seconds: number;
    readonly ok: boolean;
    readonly error?: string;
    /** seconds × imageBytes ÷ bytes: the image's time at the same rate. */
    readonly scaledSeconds: number;
  };
}

export interface HttpColdSample {
  readonly key: string;
  readonly bytes: number;
  /** Which went first (the other may find the store's caches warm): alternated. */
  readonly first: 'gateway' | 's3';
  readonly gatewayMs: number;
  readonly s3Ms: number;
  readonly ok: boolean;
  readonly error?: string;
}

export interface HttpColdResult {
  /** The S3 range read straight from the store: the gateway's first range of the object. */
  readonly rangeBytes: number;
  readonly samples: readonly HttpColdSample[];
  /** Medians over the ok samples. */
  readonly gatewayMedianMs?: number;
  readonly s3MedianMs?: number;
  /** Median of the per-sample differences gateway − S3. */
  readonly differenceMedianMs?: number;
  readonly differenceMaxMs?: number;
}

/** What the stalled-readers case measured, before its summary (runHttpSection). */
export interface HttpStalledMeasurement {
  /** Connections opened, each sending a GET for the image and never reading. */
  readonly connections: number;
  /** Of them: connected with the request written. */
  readonly established: number;
  /** Responses the gateway began during the case (its HTTP transfers started, from /metrics). */
  readonly accepted: number;
  /** The gateway's open HTTP connections, and its HTTP reads in progress, when the loaded downloads began. */
  readonly openConnections: number;
  readonly inProgress: number;
  /** Connections refused by a cap during the case. */
  readonly refused: number;
  /** Bytes the gateway handed to the stalled connections (all of them) before the loaded downloads. */
  readonly stalledBytesSent: number;
  /** Seconds from the first connect until every response had begun and those bytes stopped growing. */
  readonly settleSeconds: number;
  /** Whether they stopped growing before the settle's time limit. */
  readonly settled: boolean;
  /**
   * The kernel's TCP socket memory then (pages, every socket on the machine) and its limits
   * (net.ipv4.tcp_mem: min, pressure, max): past `pressure` every socket's buffers are held back.
   */
  readonly tcpMemPages?: number;
  readonly tcpMemLimitPages?: readonly number[];
  /** Seconds the stalled connections were held (first connect to closing them): under the send timeout. */
  readonly heldSeconds: number;
  /** The gateway's --http-send-timeout: it cuts a stalled response after this long. */
  readonly sendTimeoutSeconds: number;
  /** Stalled connections closed (by the gateway or an error) before the case closed them. */
  readonly closedEarly: number;
  readonly firstError?: string;
  readonly imageBytes: number;
  /** The gateway's --cache-size. */
  readonly cacheBytes: number;
  /** The image downloaded alone, alongside the stalled connections, and alone again once they closed. */
  readonly alone: readonly HttpDownload[];
  readonly loaded: readonly HttpDownload[];
  readonly after: readonly HttpDownload[];
  /** One more download alongside them, its sha256 checked. */
  readonly checked?: HttpDownload;
  /** The gateway's RSS when the connections were opened, and its peak from then to the last loaded download. */
  readonly rssBeforeBytes?: number;
  readonly peakRssBytes?: number;
  /** 'VmHWM': the kernel's peak, reset when the case began; 'sampled': VmRSS read every 50 ms. */
  readonly peakRssFrom?: 'VmHWM' | 'sampled';
}

/** The stalled-readers case with its medians and ratios. */
export interface HttpStalledResult extends HttpStalledMeasurement {
  /** Medians of the correct downloads' times (curl's own time where it gave one). */
  readonly aloneMedianSeconds?: number;
  readonly loadedMedianSeconds?: number;
  readonly afterMedianSeconds?: number;
  /** loaded ÷ alone medians. */
  readonly slowdown?: number;
  /** Failed downloads among alone, loaded and checked. */
  readonly failures: number;
  /** --cache-size + 150 MiB, and peak RSS ÷ that. */
  readonly rssLimitBytes: number;
  readonly rssRatio?: number;
}

export interface HttpResults {
  /** Seeds the sample of downloads whose sha256 is checked and the extra objects' bytes. */
  readonly seed: number;
  readonly warm: readonly HttpWarmRun[];
  readonly wan?: HttpWanResult;
  readonly cold?: HttpColdResult;
  /** Connections that read nothing, against a concurrent download and the gateway's RSS. */
  readonly stalled?: HttpStalledResult;
}

/** The targets of issue 20. */
export const HTTP_TARGETS = {
  /** Warm aggregate ≥ this × nginx's. */
  warmAggregate: 0.8,
  /** Gateway CPU-s per GB ≤ this × nginx's. */
  warmCpu: 2,
  /** Over the WAN path, HTTP at least this many times faster than lock-step TFTP. */
  wanSpeedup: 30,
  /** Over the WAN path, the gateway's time ≤ this × nginx's. */
  wanVsNginx: 1.5,
  /** Cold first byte ≤ S3's first byte + this many ms. */
  coldExtraMs: 50,
  /** With the stalled readers open, a concurrent download's median time ≤ this × its time alone. */
  stalledSlowdown: 1.1,
  /** With them open, the gateway's peak RSS ≤ --cache-size + this. */
  stalledRssExtraBytes: 150 * MiB,
} as const;

/** `length` bytes from a seed (the same seed, the same bytes). */
export function seededBytes(seed: number, length: number): Buffer {
  const next = mulberry32(seed);
  const words = new Uint32Array(Math.ceil(length / 4));
  for (let i = 0; i < words.length; i++) words[i] = Math.floor(next() * 4294967296);
  return Buffer.from(words.buffer, 0, length);
}

/** `k` distinct indices of 0..n-1, chosen by the seed, in increasing order. */
export function seededSample(seed: number, n: number, k: number): number[] {
  const next = mulberry32(seed);
  const all = Array.from({ length: n }, (_, i) => i);
  // Fisher–Yates, the first k places.
  for (let i = 0; i < Math.min(k, n); i++) {
    const j = i + Math.floor(next() * (n - i));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, Math.min(k, n)).sort((a, b) => a - b);
}

export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** A time measured on `bytes` scaled to `targetBytes` at the same rate. */
export function scaleByBytes(seconds: number, bytes: number, targetBytes: number): number {
  return bytes > 0 ? (seconds * targetBytes) / bytes : 0;
}

export function summarizeHttpWarm(
  server: HttpServerName,
  imageBytes: number,
  wallSeconds: number,
  downloads: readonly HttpDownload[],
  extra: { cpuSeconds?: number | undefined; workers: number },
): HttpWarmRun {
  const ok = downloads.filter((d) => d.ok);
  const delivered = ok.length * imageBytes;
  const perGB = extra.cpuSeconds !== undefined ? cpuSecondsPerGB(extra.cpuSeconds, delivered) : undefined;
  const firstError = downloads.find((d) => !d.ok)?.error;
  return {
    server,
    clients: downloads.length,
    imageBytes,
    wallSeconds,
    aggregateMbps: mbps(delivered, wallSeconds),
    failures: downloads.length - ok.length,
    hashed: downloads.filter((d) => d.hashed).length,
    ...(extra.cpuSeconds !== undefined ? { cpuSeconds: extra.cpuSeconds } : {}),
    ...(perGB !== undefined ? { cpuSecondsPerGB: perGB } : {}),
    workers: extra.workers,
    slowestSeconds: Math.max(0, ...downloads.map((d) => d.seconds)),
    ...(firstError !== undefined ? { firstError } : {}),
  };
}

/** The run with the best aggregate (noise on a shared machine only slows). */
export function bestWarm(runs: readonly HttpWarmRun[], server: HttpServerName): HttpWarmRun | undefined {
  let top: HttpWarmRun | undefined;
  for (const r of runs) if (r.server === server && (!top || r.aggregateMbps > top.aggregateMbps)) top = r;
  return top;
}

/** The fastest correct download (or the first, when none was). */
export function fastest<T extends { readonly ok: boolean; readonly seconds: number }>(runs: readonly T[]): T | undefined {
  let top: T | undefined;
  for (const r of runs) if (!top || (r.ok && (!top.ok || r.seconds < top.seconds))) top = r;
  return top;
}

export function summarizeCold(rangeBytes: number, samples: readonly HttpColdSample[]): HttpColdResult {
  const ok = samples.filter((s) => s.ok);
  const diffs = ok.map((s) => s.gatewayMs - s.s3Ms);
  const gatewayMedianMs = median(ok.map((s) => s.gatewayMs));
  const s3MedianMs = median(ok.map((s) => s.s3Ms));
  const differenceMedianMs = median(diffs);
  return {
    rangeBytes,
    samples,
    ...(gatewayMedianMs !== undefined ? { gatewayMedianMs } : {}),
    ...(s3MedianMs !== undefined ? { s3MedianMs } : {}),
    ...(differenceMedianMs !== undefined ? { differenceMedianMs, differenceMaxMs: Math.max(...diffs) } : {}),
  };
}

/** A download's time: curl's own (connect to last byte) where it gave one, else spawn to exit. */
export const downloadSeconds = (d: HttpDownload): number => d.totalSeconds ?? d.seconds;

export function summarizeStalled(m: HttpStalledMeasurement): HttpStalledResult {
  const med = (runs: readonly HttpDownload[]): number | undefined => median(runs.filter((d) => d.ok).map(downloadSeconds));
  const aloneMedianSeconds = med(m.alone);
  const loadedMedianSeconds = med(m.loaded);
  const afterMedianSeconds = med(m.after);
  const slowdown = ratio(loadedMedianSeconds, aloneMedianSeconds);
  const failures = [...m.alone, ...m.loaded, ...(m.checked ? [m.checked] : [])].filter((d) => !d.ok).length;
  const rssLimitBytes = m.cacheBytes + HTTP_TARGETS.stalledRssExtraBytes;
  const rssRatio = ratio(m.peakRssBytes, rssLimitBytes);
  return {
    ...m,
    ...(aloneMedianSeconds !== undefined ? { aloneMedianSeconds } : {}),
    ...(loadedMedianSeconds !== undefined ? { loadedMedianSeconds } : {}),
    ...(afterMedianSeconds !== undefined ? { afterMedianSeconds } : {}),
    ...(slowdown !== undefined ? { slowdown } : {}),
    failures,
    rssLimitBytes,
    ...(rssRatio !== undefined ? { rssRatio } : {}),
  };
}

/** Every stalled connection was answered and still open when measured: the case is the one it names. */
export const stalledHeld = (s: HttpStalledMeasurement): boolean => s.established === s.connections && s.accepted >= s.connections && s.closedEarly === 0;

const size = (bytes: number): string => (bytes >= MiB ? `${fmt(bytes / MiB, bytes % MiB === 0 ? 0 : 1)} MiB` : `${fmt(bytes / 1024, 0)} KiB`);

/** The rows, each with its target. */
export function buildHttpRows(h: HttpResults): Row[] {
  const rows: Row[] = [];
  const g = bestWarm(h.warm, 'gateway');
  const n = bestWarm(h.warm, 'nginx');
  if (g) {
    const label = `HTTP warm ${g.clients} curl, ${size(g.imageBytes)}`;
    const q = ratio(g.aggregateMbps, n?.aggregateMbps);
    rows.push({
      case: `${label}: aggregate vs nginx`,
      gateway: `${fmt(g.aggregateMbps)} MB/s`,
      reference: n ? `${fmt(n.aggregateMbps)} MB/s` : '—',
      ratio: q,
      target: `≥ ${fmt(HTTP_TARGETS.warmAggregate, 2)}`,
      met: q === undefined ? undefined : q >= HTTP_TARGETS.warmAggregate,
    });
    const cpu = ratio(g.cpuSecondsPerGB, n?.cpuSecondsPerGB);
    rows.push({
      case: `${label}: server CPU-s per GB (${g.workers} workers) vs nginx`,
      gateway: fmt(g.cpuSecondsPerGB, 2),
      reference: n?.cpuSecondsPerGB !== undefined ? fmt(n.cpuSecondsPerGB, 2) : '—',
      ratio: cpu,
      target: `≤ ${fmt(HTTP_TARGETS.warmCpu, 2)}`,
      met: cpu === undefined ? undefined : cpu <= HTTP_TARGETS.warmCpu,
    });
    // Every run counts here, not only the best ones.
    const failed = (server: HttpServerName): number => h.warm.filter((r) => r.server === server).reduce((a, r) => a + r.failures, 0);
    const hashed = h.warm.reduce((a, r) => a + r.hashed, 0);
    const total = h.warm.reduce((a, r) => a + r.clients, 0);
    rows.push({
      case: `${label}: failed downloads (of ${total}; ${hashed} sha256-checked)`,
      gateway: String(failed('gateway')),
      reference: n ? String(failed('nginx')) : '—',
      ratio: undefined,
      target: '0',
      met: failed('gateway') === 0,
    });
  }
  const w = h.wan;
  if (w) {
    const okSeconds = (d: HttpDownload | undefined): number | undefined => (d?.ok ? d.seconds : undefined);
    const speedup = w.tftp.ok ? ratio(w.tftp.scaledSeconds, okSeconds(w.gateway)) : undefined;
    const scale = w.tftp.bytes > 0 ? w.imageBytes / w.tftp.bytes : 0;
    const scaled = Math.abs(scale - 1) > 1e-9;
    rows.push({
      case: `WAN ${w.rttMs} ms: HTTP ${size(w.imageBytes)} speed-up over lock-step TFTP bs ${w.tftp.blksize}${scaled ? ` (TFTP on ${size(w.tftp.bytes)}, × ${fmt(scale, 1)} by bytes)` : ''}`,
      gateway: w.gateway.ok ? `${fmt(w.gateway.seconds, 2)} s` : 'failed',
      reference: w.tftp.ok ? `${fmt(w.tftp.scaledSeconds, 1)} s TFTP` : 'failed',
      ratio: speedup,
      target: `≥ ${fmt(HTTP_TARGETS.wanSpeedup, 0)}`,
      met: speedup === undefined ? (w.gateway.ok ? undefined : false) : speedup >= HTTP_TARGETS.wanSpeedup,
    });
    const q = ratio(okSeconds(w.gateway), okSeconds(w.nginx));
    rows.push({
      case: `WAN ${w.rttMs} ms: HTTP ${size(w.imageBytes)} time vs nginx`,
      gateway: w.gateway.ok ? `${fmt(w.gateway.seconds, 2)} s` : 'failed',
      reference: w.nginx.ok ? `${fmt(w.nginx.seconds, 2)} s` : 'failed',
      ratio: q,
      target: `≤ ${fmt(HTTP_TARGETS.wanVsNginx, 2)}`,
      met: q === undefined ? (w.gateway.ok ? undefined : false) : q <= HTTP_TARGETS.wanVsNginx,
    });
  }
  const c = h.cold;
  if (c) {
    const ok = c.samples.filter((s) => s.ok).length;
    const met = c.gatewayMedianMs !== undefined && c.s3MedianMs !== undefined ? c.gatewayMedianMs <= c.s3MedianMs + HTTP_TARGETS.coldExtraMs : ok === 0 ? false : undefined;
    rows.push({
      case: `cold HTTP first byte vs S3 ranged GET (median of ${ok}/${c.samples.length})`,
      gateway: `${fmt(c.gatewayMedianMs, 1)} ms`,
      reference: `${fmt(c.s3MedianMs, 1)} ms S3`,
      ratio: ratio(c.gatewayMedianMs, c.s3MedianMs),
      target: `≤ S3 + ${HTTP_TARGETS.coldExtraMs} ms`,
      met,
    });
    if (c.differenceMedianMs !== undefined) {
      rows.push({
        case: 'cold HTTP first byte: gateway − S3 per sample (median, worst)',
        gateway: `${fmt(c.differenceMedianMs, 1)} ms`,
        reference: `${fmt(c.differenceMaxMs, 1)} ms worst`,
        ratio: undefined,
        target: `≤ ${HTTP_TARGETS.coldExtraMs} ms`,
        met: c.differenceMedianMs <= HTTP_TARGETS.coldExtraMs,
      });
    }
  }
  const s = h.stalled;
  if (s) {
    const held = stalledHeld(s);
    const label = `HTTP ${s.connections} stalled readers${held ? '' : ` (${Math.min(s.established, s.accepted)} answered, ${s.closedEarly} closed early)`}`;
    const loaded = s.loaded.filter((d) => d.ok).length;
    rows.push({
      case: `${label}: ${size(s.imageBytes)} download alongside vs alone (median of ${loaded}/${s.loaded.length})`,
      gateway: s.loadedMedianSeconds !== undefined ? `${fmt(s.loadedMedianSeconds, 3)} s` : 'failed',
      reference: s.aloneMedianSeconds !== undefined ? `${fmt(s.aloneMedianSeconds, 3)} s alone` : 'failed',
      ratio: s.slowdown,
      target: `≤ ${fmt(HTTP_TARGETS.stalledSlowdown, 2)}`,
      met: s.slowdown === undefined || s.failures > 0 || !held ? false : s.slowdown <= HTTP_TARGETS.stalledSlowdown,
    });
    rows.push({
      case: `${label}: gateway peak RSS vs --cache-size + 150 MiB`,
      gateway: s.peakRssBytes !== undefined ? `${fmt(s.peakRssBytes / MiB, 0)} MiB` : '—',
      reference: `${fmt(s.rssLimitBytes / MiB, 0)} MiB budget+150`,
      ratio: s.rssRatio,
      target: '≤ 1.00',
      met: s.rssRatio === undefined ? undefined : s.rssRatio <= 1 && held,
    });
  }
  return rows;
}
