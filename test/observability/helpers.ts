import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/config.js';
import { encodeAck, encodeData, encodeRequest, Opcode } from '../../src/tftp/protocol/packet.js';
import { Gateway, type GatewayDeps } from '../../src/gateway/gateway.js';
import { s3Flags, testWorkers } from '../support/gateway.js';
import { spawnGateway, type GatewayProcess } from '../support/gateway-process.js';

export { spawnGateway, type GatewayProcess };
import type { TestS3 } from '../support/s3.js';
import { UdpPeer, type Received } from '../support/udp-peer.js';
import { sleep } from '../support/wait.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
  readonly contentType: string | undefined;
}

/** GET with a bounded wait. */
export function httpGet(url: string, timeoutMs = 5000): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), contentType: res.headers['content-type'] }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A parsed Prometheus text exposition. */
export class Exposition {
  constructor(
    readonly samples: readonly Sample[],
    /** Metric family name → type, from the `# TYPE` lines. */
    readonly types: ReadonlyMap<string, string>,
  ) {}

  /** Sum of the samples of `name` whose labels include `labels` (0 when there are none). */
  value(name: string, labels: Record<string, string> = {}): number {
    let sum = 0;
    for (const s of this.samples) {
      if (s.name !== name) continue;
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
    }
    return sum;
  }

  /** Every sample name a query may use: families, plus _bucket/_sum/_count of histograms and summaries. */
  queryableNames(): Set<string> {
    const names = new Set(this.samples.map((s) => s.name));
    for (const [name, type] of this.types) {
      names.add(name);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
      if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
    }
    return names;
  }
}

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      if (name && type) types.set(name, type);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const labelText = m[2] ?? '';
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (let l = re.exec(labelText); l; l = re.exec(labelText)) {
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return new Exposition(samples, types);
}

export async function scrape(httpAddress: string): Promise<Exposition> {
  const res = await httpGet(`http://${httpAddress}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return parseExposition(res.body);
}

/** Counter movement between two scrapes. */
export function delta(before: Exposition, after: Exposition) {
  return (name: string, labels: Record<string, string> = {}): number => after.value(name, labels) - before.value(name, labels);
}

export interface SlowGetResult {
  readonly data: Buffer;
  readonly error: { code: number; message: string } | undefined;
}

/**
 * A lock-step reader that waits `ackDelayMs` before each ACK (0: as fast as it can), so a transfer lasts as long as a test
 * needs. `onBlock(n)` is told each block received. Every wait is bounded.
 */
export async function slowGet(
  port: number,
  filename: string,
  opts: { blksize?: number; ackDelayMs: number; timeoutMs?: number; onBlock?: (block: number) => void; options?: Record<string, string> },
): Promise<SlowGetResult> {
  const peer = await UdpPeer.open();
  const timeoutMs = opts.timeoutMs ?? 5000;
  try {
    const options = new Map<string, string>(Object.entries(opts.options ?? {}));
    if (opts.blksize !== undefined) options.set('blksize', String(opts.blksize));
    peer.send(encodeRequest(Opcode.RRQ, filename, 'octet', options), port);
    let blksize = 512;
    let expected = 1;
    const chunks: Buffer[] = [];
    for (;;) {
      const got = await peer.next(timeoutMs);
      if (!got) throw new Error(`slowGet ${filename}: timed out waiting for block ${expected}`);
      const p = got.packet;
      if (p.opcode === Opcode.ERROR) return { data: Buffer.concat(chunks), error: { code: p.code, message: p.message } };
      if (p.opcode === Opcode.OACK) {
        blksize = Number(new Map(p.options).get('blksize') ?? 512);
        peer.send(encodeAck(0), got.port);
        continue;
      }
      if (p.opcode !== Opcode.DATA) continue;
      if (p.block !== (expected & 0xffff)) {
        peer.send(encodeAck((expected - 1) & 0xffff), got.port);
        continue;
      }
      chunks.push(Buffer.from(p.data));
      opts.onBlock?.(expected);
      const last = p.data.length < blksize;
      if (!last && opts.ackDelayMs > 0) await sleep(opts.ackDelayMs);
      peer.send(encodeAck(expected & 0xffff), got.port);
      // The final ACK leaves before the socket closes (`close` waits for it).
      if (last) return { data: Buffer.concat(chunks), error: undefined };
      expected++;
    }
  } finally {
    await peer.close();
  }
}

/**
 * A writer under the test's control: sends `data` lock-step, pausing `blockDelayMs` between
 * blocks, and stops (without a word, like a crashed client) once `stallAfter` bytes are acknowledged.
 * Resolves with the outcome; every wait is bounded.
 */
export async function controlledPut(
  port: number,
  filename: string,
  data: Buffer,
  opts: { blksize: number; blockDelayMs?: number; stallAfter?: number; timeoutMs?: number; onAcked?: (bytes: number) => void },
): Promise<{ outcome: 'ok' | 'stalled' | 'error'; error?: { code: number; message: string } }> {
  const peer = await UdpPeer.open();
  const timeoutMs = opts.timeoutMs ?? 5000;
  let serverPort = 0;
  /**
   * Waits at most `ms` for the acknowledgement of `block` (an OACK acknowledges block 0) or an
   * ERROR; other packets (duplicate ACKs) are passed over.
   */
  const acked = async (block: number, ms: number): Promise<Received | undefined> => {
    const got = await peer.next(ms, ({ packet: p }) =>
      p.opcode === Opcode.ERROR || (p.opcode === Opcode.ACK && p.block === block) || (block === 0 && p.opcode === Opcode.OACK),
    );
    if (got) serverPort = got.port;
    return got;
  };
  const failed = (r: Received | undefined): { code: number; message: string } | undefined =>
    r?.packet.opcode === Opcode.ERROR ? { code: r.packet.code, message: r.packet.message } : undefined;
  try {
    const options = new Map([['blksize', String(opts.blksize)], ['tsize', String(data.length)]]);
    peer.send(encodeRequest(Opcode.WRQ, filename, 'octet', options), port);
    const first = await acked(0, timeoutMs);
    if (!first) throw new Error(`controlledPut ${filename}: no answer to the WRQ`);
    const refused = failed(first);
    if (refused) return { outcome: 'error', error: refused };
    const blksize = first.packet.opcode === Opcode.OACK ? Number(new Map(first.packet.options).get('blksize') ?? 512) : 512;
    const blocks = Math.floor(data.length / blksize) + 1;
    for (let n = 1; n <= blocks; n++) {
      const done = (n - 1) * blksize;
      opts.onAcked?.(done);
      if (opts.stallAfter !== undefined && done >= opts.stallAfter) return { outcome: 'stalled' };
      const payload = data.subarray((n - 1) * blksize, Math.min(data.length, n * blksize));
      for (let attempt = 0; ; attempt++) {
        peer.send(encodeData(n & 0xffff, payload), serverPort);
        // The last ACK comes once the object is stored; others may wait on S3 backpressure.
        const got = await acked(n & 0xffff, n === blocks ? timeoutMs * 2 : timeoutMs);
        const error = failed(got);
        if (error) return { outcome: 'error', error };
        if (got) break;
        if (attempt >= 3) throw new Error(`controlledPut ${filename}: no ACK for block ${n}`);
      }
      if (opts.blockDelayMs) await sleep(opts.blockDelayMs);
    }
    return { outcome: 'ok' };
  } finally {
    await peer.close();
  }
}

/**
 * The real CLI against the test S3 server as the drain tests run it: HTTP on, writes on (5 MiB
 * parts, so an upload past 10 MiB is multipart), `--drain-timeout drainTimeoutS`, plus `extra` flags.
 */
export function spawnDrainGateway(s3: TestS3, bucket: string, drainTimeoutS: number, extra: readonly string[] = []): Promise<GatewayProcess> {
  return spawnGateway(
    [
      '--listen', '127.0.0.1:0',
      '--http-listen', '127.0.0.1:0',
      ...s3Flags(s3, bucket),
      '--allow-write',
      '--upload-part-size', '5MiB',
      '--cache-size', '64MiB',
      '--range-size', '1MiB',
      '--drain-timeout', String(drainTimeoutS),
      ...extra,
    ],
    {
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: 'true',
    },
  );
}

/** The process's exit code (or signal), or 'still running' after `ms`. */
export async function exitOf(gw: GatewayProcess, ms: number): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([gw.exited, new Promise<string>((r) => (timer = setTimeout(() => r('still running'), ms)))]);
  clearTimeout(timer);
  return code;
}

export interface StartedGateway {
  readonly gateway: Gateway;
  readonly port: number;
  readonly http: string;
  /** Every line written to the logger's destination (log lines and EMF records), parsed. */
  readonly lines: Record<string, unknown>[];
  stop(drainMs?: number): Promise<void>;
}

/**
 * Like test/support/gateway.ts, with HTTP on and `deps` passed through (agent endpoint, timings,
 * default metrics), for the lifecycle features that are wired at start.
 */
export async function startGateway(
  s3: TestS3,
  bucket: string,
  flags: readonly string[] = [],
  deps: Partial<Omit<GatewayDeps, 'logger'>> = {},
): Promise<StartedGateway> {
  const config = loadConfig(
    [
      '--listen', '127.0.0.1:0',
      '--http-listen', '127.0.0.1:0',
      ...s3Flags(s3, bucket),
      '--cache-size', '64MiB',
      '--range-size', '1MiB',
      '--log-level', 'info',
      // TFTPGW_TEST_WORKERS=2 runs the suites on worker threads; a test's own --workers wins.
      '--workers', testWorkers(),
      ...flags,
    ],
    {},
  );
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: config.logLevel },
    {
      write(line: string) {
        try {
          lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          lines.push({ unparsable: line });
        }
      },
    },
  );
  const gateway = await Gateway.start(config, { credentials: s3.credentials, defaultMetrics: false, ...deps, logger });
  return {
    gateway,
    port: gateway.udpAddresses[0]!.port,
    http: gateway.httpAddress!,
    lines,
    stop: (drainMs = 0) => gateway.stop(drainMs),
  };
}
