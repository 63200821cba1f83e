import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { stat, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestGateway } from '../support/gateway.js';

/**
 * Clients for the HTTP boot front end's hardening tests: raw TCP exchanges (bytes in, bytes out,
 * how the connection ended), a strict parser of what came back, held-open connections, curl
 * downloads checked by digest, and metric look-ups.
 */

export interface Target {
  readonly host: string;
  readonly port: number;
}

/** The first HTTP boot listener of an in-process test gateway. */
export function bootTarget(gw: TestGateway): Target {
  const a: AddressInfo | undefined = gw.gateway.httpBootAddresses[0];
  if (!a) throw new Error('the gateway has no HTTP boot listener (--http-boot-listen)');
  return { host: a.address, port: a.port };
}

/** `host:port` text (as the gateway process logs it) as a target. */
export function parseTarget(text: string): Target {
  const colon = text.lastIndexOf(':');
  return { host: text.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(text.slice(colon + 1)) };
}

export const urlOf = (t: Target, path: string): string => `http://${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}${path}`;

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** How a raw exchange ended. */
export interface Exchange {
  /** Every byte the server sent. */
  readonly data: Buffer;
  /**
   * 'close': the server closed (FIN); 'reset': ECONNRESET/EPIPE; 'timeout': we gave up and closed;
   * 'answered': every answer asked for (`answers`) had arrived whole, and we closed.
   */
  readonly end: 'close' | 'reset' | 'timeout' | 'answered';
  /** The socket error code, if any. */
  readonly error?: string | undefined;
  readonly ms: number;
}

export interface ExchangeOptions {
  /** Half-close after the last write (the server sees end of input). Default true. */
  readonly end?: boolean;
  /** Close as soon as this many whole answers have arrived (`methods`: the requests' methods, for HEAD). */
  readonly answers?: { readonly count: number; readonly methods: readonly string[] };
  /** Give up (destroy the socket) after this long. */
  readonly timeoutMs: number;
  readonly localAddress?: string;
}

/** Connects, writes `chunks` (each its own write, a turn apart), reads until the server closes. */
export function exchange(t: Target, chunks: readonly Buffer[], opts: ExchangeOptions): Promise<Exchange> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const got: Buffer[] = [];
    let error: string | undefined;
    let timedOut = false;
    let answered = false;
    const socket = net.connect({ host: t.host, port: t.port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, opts.timeoutMs);
    socket.on('data', (d: Buffer) => {
      got.push(d);
      if (opts.answers && !answered) {
        const parsed = parseResponses(Buffer.concat(got), opts.answers.methods);
        if (parsed.responses.filter((r) => r.status >= 200).length >= opts.answers.count && parsed.rest.length === 0 && !parsed.problem) {
          answered = true;
          socket.destroy();
        }
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      const end = answered ? 'answered' : timedOut ? 'timeout' : error === undefined ? 'close' : 'reset';
      resolve({ data: Buffer.concat(got), end, error, ms: performance.now() - t0 });
    });
    socket.once('connect', () => {
      const write = (i: number): void => {
        if (socket.destroyed) return;
        if (i >= chunks.length) {
          if (opts.end !== false) socket.end();
          return;
        }
        socket.write(chunks[i]!);
        if (i + 1 < chunks.length) setImmediate(() => write(i + 1));
        else write(i + 1);
      };
      write(0);
    });
  });
}

export interface ParsedResponse {
  readonly status: number;
  readonly statusLine: string;
  readonly headers: Record<string, string>;
  readonly bodyLength: number;
}

export interface ParsedStream {
  readonly responses: ParsedResponse[];
  /** What follows the last complete response (should be nothing). */
  readonly rest: Buffer;
  /** Why parsing stopped early, if it did. */
  readonly problem?: string | undefined;
}

const STATUS_LINE = /^HTTP\/1\.[01] ([1-5]\d\d) [\x20-\x7e]*$/;
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[\t ]*([\x20-\x7e\t]*?)[\t ]*$/;

/**
 * Splits what a server sent into responses, strictly: a status line, CRLF-terminated header lines,
 * a body framed by Content-Length or chunked coding (none after a HEAD, a 1xx, 204 or 304).
 * `methods[i]` is the method of the i-th request on the connection (for HEAD), when known.
 */
export function parseResponses(data: Buffer, methods: readonly string[] = []): ParsedStream {
  const responses: ParsedResponse[] = [];
  let pos = 0;
  const text = data.toString('latin1');
  while (pos < data.length) {
    const headEnd = text.indexOf('\r\n\r\n', pos);
    if (headEnd < 0) return { responses, rest: data.subarray(pos), problem: 'incomplete response head' };
    const lines = text.slice(pos, headEnd).split('\r\n');
    const m = STATUS_LINE.exec(lines[0]!);
    if (!m) return { responses, rest: data.subarray(pos), problem: `malformed status line ${JSON.stringify(lines[0]!.slice(0, 80))}` };
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const h = HEADER_LINE.exec(line);
      if (!h) return { responses, rest: data.subarray(pos), problem: `malformed header line ${JSON.stringify(line.slice(0, 80))}` };
      headers[h[1]!.toLowerCase()] = h[2]!;
    }
    pos = headEnd + 4;
    const method = methods[responses.length];
    let bodyLength = 0;
    if (status < 200) {
      // an interim response: the final one follows
    } else if (method === 'HEAD' || status === 204 || status === 304) {
      bodyLength = 0;
    } else if (headers['transfer-encoding'] !== undefined) {
      if (headers['transfer-encoding'].toLowerCase() !== 'chunked') return { responses, rest: data.subarray(pos), problem: 'unknown transfer-encoding' };
      for (;;) {
        const lineEnd = text.indexOf('\r\n', pos);
        if (lineEnd < 0) return { responses, rest: data.subarray(pos), problem: 'incomplete chunk size' };
        const size = parseInt(text.slice(pos, lineEnd), 16);
        if (!Number.isFinite(size)) return { responses, rest: data.subarray(pos), problem: 'bad chunk size' };
        pos = lineEnd + 2 + size + 2;
        bodyLength += size;
        if (pos > data.length) return { responses, rest: Buffer.alloc(0), problem: 'incomplete chunk' };
        if (size === 0) break;
      }
    } else if (headers['content-length'] !== undefined) {
      if (!/^\d+$/.test(headers['content-length'])) return { responses, rest: data.subarray(pos), problem: 'bad content-length' };
      bodyLength = Number(headers['content-length']);
      if (pos + bodyLength > data.length) return { responses, rest: data.subarray(pos), problem: `body short: ${data.length - pos} of ${bodyLength}` };
      pos += bodyLength;
    } else {
      // close-delimited
      bodyLength = data.length - pos;
      pos = data.length;
    }
    responses.push({ status, statusLine: lines[0]!, headers, bodyLength });
  }
  return { responses, rest: Buffer.alloc(0) };
}

/** A connection the test holds open (idle, or paused mid-response), with what arrived so far. */
export interface HeldConnection {
  readonly socket: net.Socket;
  readonly received: () => Buffer;
  /** How many bytes have arrived (cheap: no copy). */
  readonly receivedBytes: () => number;
  /** Resolves (never rejects) when the connection has closed, with how. */
  readonly closed: Promise<'close' | 'reset'>;
  /** Resolves with the first status code once a status line has arrived. */
  readonly status: Promise<number>;
}

/** Connects (resolves once connected); `request` is written at once if given. */
export function hold(t: Target, request?: string | Buffer, opts: { localAddress?: string; paused?: boolean } = {}): Promise<HeldConnection> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    let bytes = 0;
    let statusSeen = false;
    let error: string | undefined;
    let onStatus: (s: number) => void = () => undefined;
    const status = new Promise<number>((r) => (onStatus = r));
    const socket = net.connect({ host: t.host, port: t.port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const closed = new Promise<'close' | 'reset'>((r) => socket.once('close', () => r(error === undefined ? 'close' : 'reset')));
    socket.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
    if (!opts.paused) {
      socket.on('data', (d: Buffer) => {
        got.push(d);
        bytes += d.length;
        if (!statusSeen && bytes >= 13) {
          statusSeen = true;
          const m = /^HTTP\/1\.[01] (\d{3}) /.exec(Buffer.concat(got).subarray(0, 16).toString('latin1'));
          if (m) onStatus(Number(m[1]));
        }
      });
    }
    socket.once('connect', () => {
      socket.off('error', reject);
      if (request !== undefined) socket.write(request);
      resolve({ socket, received: () => Buffer.concat(got), receivedBytes: () => bytes, closed, status });
    });
    socket.once('error', reject);
  });
}

export interface CurlResult {
  readonly status: number;
  readonly exitCode: number | null;
  readonly sha256: string;
  readonly bytes: number;
  readonly stderr: string;
  readonly ms: number;
}

/** curl downloads `url` (body hashed as it streams, never kept); killed after `timeoutMs`. */
export function curl(url: string, args: readonly string[] = [], timeoutMs = 60_000): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('curl', ['-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)), '-o', '-', '-w', '%{stderr}\nHTTP_CODE=%{http_code}\n', ...args, url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const hash = createHash('sha256');
    let bytes = 0;
    let stderr = '';
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 5000);
    child.stdout.on('data', (d: Buffer) => {
      hash.update(d);
      bytes += d.length;
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(killer);
      const m = /HTTP_CODE=(\d+)/.exec(stderr);
      resolve({ status: m ? Number(m[1]) : 0, exitCode: code, sha256: hash.digest('hex'), bytes, stderr, ms: performance.now() - t0 });
    });
  });
}

export interface SmallResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** One request on a fresh connection (no agent), body read whole: for small answers. */
export function request(t: Target, path: string, opts: { method?: string; headers?: Record<string, string>; localAddress?: string; timeoutMs?: number } = {}): Promise<SmallResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: t.host,
        port: t.port,
        path,
        method: opts.method ?? 'GET',
        headers: opts.headers ?? {},
        agent: false,
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
        timeout: opts.timeoutMs ?? 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer to ${path} within ${opts.timeoutMs ?? 15_000} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample of a metric (summed over worker threads), 0 when absent. */
export async function metric(gw: TestGateway, name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = await gw.gateway.metricValues(name);
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}

/** Log lines at `level` or above (pino: 40 warn, 50 error, 60 fatal). */
export function logsAtLeast(lines: readonly Record<string, unknown>[], level: number): Record<string, unknown>[] {
  return lines.filter((l) => typeof l.level === 'number' && l.level >= level);
}

/** The HTTP front end's 'transfer finished' lines. */
export function httpResponseLogs(lines: readonly Record<string, unknown>[]): Record<string, unknown>[] {
  return lines.filter((l) => l.protocol === 'http' && l.msg === 'transfer finished');
}

/** Runs `jobs` with at most `limit` at once; resolves with their results in order. */
export async function pool<T>(count: number, limit: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      out[i] = await job(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, () => worker()));
  return out;
}

/** `p`'s value, or 'timeout' after `ms` (the timer is cleared either way: nothing keeps the process up). */
export async function orTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Compiles the sources as `npm run build` does (tsconfig.build.json) into `dir`/dist, beside a
 * package.json and the repository's node_modules: the CLI a deployment runs, for a process whose
 * RSS is measured (the sources under tsx carry the loader's own memory, 10-40 MiB of it).
 */
export async function buildCli(dir: string): Promise<string> {
  await writeFile(path.join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  await symlink(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  const tsc = path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', path.join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', path.join(dir, 'dist'), '--sourceMap', 'false'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.once('error', reject);
    // Type errors elsewhere in a shared tree still emit JavaScript: only a missing CLI is fatal.
    child.once('close', () => {
      stat(path.join(dir, 'dist/cli.js')).then(
        () => resolve(),
        () => reject(new Error(`the build wrote no dist/cli.js:\n${out}`)),
      );
    });
  });
  return path.join(dir, 'dist/cli.js');
}

/** A process's resident set, from /proc. */
export function rssOf(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}
