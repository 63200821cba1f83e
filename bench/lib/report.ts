/**
 * The benchmark's arithmetic and output: ratios, storm summaries, S3 byte accounting, the printed
 * table and the SVG chart. Pure functions (no I/O), so the test suite checks them directly.
 */

export const MiB = 1024 * 1024;

/** 'node-floor': bench/node-floor.ts, the least a Node server does per lock-step block. */
export type ServerName = 'gateway' | 'tftpd-hpa' | 'atftpd' | 'node-floor';
export type ClientName = 'atftp' | 'curl' | 'busybox';

/** One client transfer, as measured. */
export interface TransferRun {
  readonly server: ServerName;
  readonly client: ClientName;
  readonly blksize: number;
  readonly windowsize: number;
  readonly bytes: number;
  readonly seconds: number;
  /** Received exactly the file's bytes. */
  readonly ok: boolean;
  readonly error?: string;
}

/** MB/s (10^6 bytes per second, as the issue quotes tftpd-hpa's numbers). */
export function mbps(bytes: number, seconds: number): number {
  if (!(seconds > 0)) return 0;
  return bytes / 1e6 / seconds;
}

/** gateway ÷ reference, or undefined when the reference is missing or zero. */
export function ratio(value: number | undefined, reference: number | undefined): number | undefined {
  if (value === undefined || reference === undefined || !(reference > 0)) return undefined;
  return value / reference;
}

/** Median of the throughputs of ok runs (0 if none succeeded). */
export function medianMbps(runs: readonly TransferRun[]): number {
  const values = runs.filter((r) => r.ok).map((r) => mbps(r.bytes, r.seconds)).sort((a, b) => a - b);
  if (values.length === 0) return 0;
  const mid = values.length >> 1;
  return values.length % 2 ? values[mid]! : (values[mid - 1]! + values[mid]!) / 2;
}

export interface StormClient {
  readonly index: number;
  readonly client: ClientName;
  /** Seconds from the storm's start to this client's completion (or failure). */
  readonly finishedAt: number;
  readonly ok: boolean;
  readonly error?: string;
}

export interface StormSummary {
  readonly server: ServerName;
  readonly clients: number;
  readonly imageBytes: number;
  readonly wallSeconds: number;
  /** Bytes delivered correctly ÷ wall time, MB/s. */
  readonly aggregateMbps: number;
  readonly slowestSeconds: number;
  readonly medianSeconds: number;
  readonly failures: number;
  /** S3 bytes fetched during the storm (gateway only). */
  readonly s3BytesFetched?: number;
  /** s3BytesFetched ÷ image size (gateway only; the target is ≤ 1.05). */
  readonly s3FetchRatio?: number;
  /** Server CPU seconds (all threads, and reaped children) during the storm. */
  readonly cpuSeconds?: number;
  /** cpuSeconds per GB (1e9 bytes) delivered correctly. */
  readonly cpuSecondsPerGB?: number;
  /** Gateway worker threads (its default: the CPUs it may use). */
  readonly workers?: number;
  readonly perClient: readonly StormClient[];
}

export function summarizeStorm(
  server: ServerName,
  imageBytes: number,
  wallSeconds: number,
  perClient: readonly StormClient[],
  s3BytesFetched?: number,
  extra: { cpuSeconds?: number; workers?: number } = {},
): StormSummary {
  const ok = perClient.filter((c) => c.ok);
  const times = perClient.map((c) => c.finishedAt).sort((a, b) => a - b);
  const median = times.length === 0 ? 0 : times[times.length >> 1]!;
  return {
    server,
    clients: perClient.length,
    imageBytes,
    wallSeconds,
    aggregateMbps: mbps(ok.length * imageBytes, wallSeconds),
    slowestSeconds: times.length === 0 ? 0 : times[times.length - 1]!,
    medianSeconds: median,
    failures: perClient.length - ok.length,
    ...(s3BytesFetched !== undefined ? { s3BytesFetched, s3FetchRatio: s3FetchRatio(s3BytesFetched, imageBytes) } : {}),
    ...(extra.cpuSeconds !== undefined ? { cpuSeconds: extra.cpuSeconds, cpuSecondsPerGB: cpuSecondsPerGB(extra.cpuSeconds, ok.length * imageBytes) } : {}),
    ...(extra.workers !== undefined ? { workers: extra.workers } : {}),
    perClient,
  };
}

/** CPU seconds per GB (1e9 bytes) delivered; undefined when nothing was delivered. */
export function cpuSecondsPerGB(cpuSeconds: number, bytesDelivered: number): number | undefined {
  return bytesDelivered > 0 ? cpuSeconds / (bytesDelivered / 1e9) : undefined;
}

/** S3 bytes fetched per byte of the image (1.0 = every byte read from S3 exactly once). */
export function s3FetchRatio(bytesFetched: number, imageBytes: number): number {
  return imageBytes > 0 ? bytesFetched / imageBytes : 0;
}

/**
 * Reads one sample of a Prometheus text exposition (e.g. tftp_gateway_s3_bytes_fetched_total);
 * label-less samples only, or the sum over all label sets when `sumLabels` is set.
 */
export function promValue(text: string, name: string, sumLabels = false): number | undefined {
  let found: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    const labelled = rest.startsWith('{');
    if (!(rest.startsWith(' ') || labelled)) continue;
    if (labelled && !sumLabels) continue;
    const value = Number(rest.slice(labelled ? rest.indexOf('}') + 1 : 0).trim().split(/\s+/)[0]);
    if (!Number.isFinite(value)) continue;
    found = (found ?? 0) + value;
    if (!sumLabels) return found;
  }
  return found;
}

/**
 * The sum of the samples of `name` whose labels include every one of `labels` (Prometheus text
 * format; label values without escaped quotes), or undefined when there is none.
 */
export function promLabelled(text: string, name: string, labels: Readonly<Record<string, string>>): number | undefined {
  let found: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.indexOf('}');
    if (close === -1) continue;
    const have = new Map([...line.slice(name.length + 1, close).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    if (!Object.entries(labels).every(([k, v]) => have.get(k) === v)) continue;
    const value = Number(line.slice(close + 1).trim().split(/\s+/)[0]);
    if (Number.isFinite(value)) found = (found ?? 0) + value;
  }
  return found;
}

/** One row of the printed table. */
export interface Row {
  readonly case: string;
  readonly gateway: string;
  readonly reference: string;
  readonly ratio: number | undefined;
  /** What the issue asks of this row, e.g. "≥ 1.0". */
  readonly target: string;
  /** Whether the target is met (undefined: no target or not measurable). */
  readonly met: boolean | undefined;
  /** Lock-step rows: the Node floor measured in the same run (bench/node-floor.ts). */
  readonly floor?: string;
}

export function fmt(n: number | undefined, digits = 1): string {
  if (n === undefined || !Number.isFinite(n)) return '—';
  return n.toFixed(digits);
}

export function formatTable(rows: readonly Row[]): string {
  const withFloor = rows.some((r) => r.floor !== undefined);
  const header = ['case', 'gateway', 'reference', 'ratio', 'target', '', ...(withFloor ? ['Node floor (gateway ÷ floor)'] : [])];
  const body = rows.map((r) => [
    r.case,
    r.gateway,
    r.reference,
    fmt(r.ratio, 2),
    r.target,
    r.met === undefined ? '' : r.met ? 'ok' : 'SHORT',
    ...(withFloor ? [r.floor ?? ''] : []),
  ]);
  const all = [header, ...body];
  const widths = header.map((_, i) => Math.max(...all.map((line) => line[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const COLORS: Record<ServerName, string> = { gateway: '#1f77b4', 'tftpd-hpa': '#d62728', atftpd: '#2ca02c', 'node-floor': '#7f7f7f' };

/**
 * The storms' per-client completion times as an SVG: for each storm, clients sorted by completion
 * time (x: rank, y: seconds), failures marked with a cross. Shows the shape, not just the median.
 */
export function renderStormSvg(storms: readonly StormSummary[], title = 'Boot storm: per-client completion time'): string {
  const width = 900;
  const panelHeight = 260;
  const margin = { left: 60, right: 20, top: 40, bottom: 40 };
  const groups = [...new Set(storms.map((s) => s.clients))].sort((a, b) => a - b);
  const height = margin.top + groups.length * (panelHeight + margin.bottom) + 10;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`);
  groups.forEach((clients, g) => {
    const panel = storms.filter((s) => s.clients === clients);
    const top = margin.top + g * (panelHeight + margin.bottom);
    const plotW = width - margin.left - margin.right;
    const plotH = panelHeight - 30;
    const maxT = Math.max(0.001, ...panel.flatMap((s) => s.perClient.map((c) => c.finishedAt)));
    const yMax = niceCeil(maxT);
    const x = (rank: number): number => margin.left + (clients <= 1 ? plotW / 2 : (rank / (clients - 1)) * plotW);
    const y = (t: number): number => top + 20 + plotH - (t / yMax) * plotH;
    out.push(`<text x="${margin.left}" y="${top + 12}" font-size="13">${clients} concurrent clients</text>`);
    out.push(`<rect x="${margin.left}" y="${top + 20}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`);
    for (let i = 0; i <= 4; i++) {
      const t = (yMax * i) / 4;
      out.push(`<line x1="${margin.left}" x2="${margin.left + plotW}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#eee"/>`);
      out.push(`<text x="${margin.left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${fmt(t, t < 10 ? 1 : 0)} s</text>`);
    }
    out.push(`<text x="${margin.left + plotW / 2}" y="${top + 20 + plotH + 28}" text-anchor="middle">clients, sorted by completion time</text>`);
    panel.forEach((storm, k) => {
      const color = COLORS[storm.server];
      const sorted = [...storm.perClient].sort((a, b) => a.finishedAt - b.finishedAt);
      const points = sorted.map((c, rank) => `${x(rank).toFixed(1)},${y(c.finishedAt).toFixed(1)}`).join(' ');
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points}"/>`);
      for (const [rank, c] of sorted.entries()) {
        if (c.ok) continue;
        const cx = x(rank);
        const cy = y(c.finishedAt);
        out.push(`<path d="M${cx - 4},${cy - 4}L${cx + 4},${cy + 4}M${cx - 4},${cy + 4}L${cx + 4},${cy - 4}" stroke="${color}" stroke-width="2"/>`);
      }
      const label = `${storm.server}: ${fmt(storm.aggregateMbps, 0)} MB/s aggregate, slowest ${fmt(storm.slowestSeconds, 1)} s, ${storm.failures} failed`;
      out.push(`<rect x="${margin.left + 10}" y="${top + 30 + k * 18}" width="12" height="3" fill="${color}"/>`);
      out.push(`<text x="${margin.left + 28}" y="${top + 35 + k * 18}">${esc(label)}</text>`);
    });
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
