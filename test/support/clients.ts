import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/**
 * Runners for Debian's real TFTP clients (interop tests): tftp-hpa's `tftp`, `atftp`, `curl`
 * (tftp://) and `busybox tftp`. Each run is a child process with a hard timeout (SIGKILL on
 * expiry), works in a temp directory that is always removed, and reports exit code, output and
 * the client's own verdict. What each client can ask for is in CLIENTS, measured on Debian 12:
 *
 * - tftp-hpa 5.2: sends no options at all (no blksize, tsize, windowsize); modes octet/netascii;
 *   IPv6 with -6. Exits 0 even when the server sent an ERROR ("Error code N: ..." on stdout), so
 *   its verdict also reads its output.
 * - atftp 0.8.0: blksize, windowsize, tsize, timeout via --option; octet only from the command line.
 * - curl 7.88: blksize via --tftp-blksize (always sends blksize, tsize and timeout=6); no windowsize.
 * - busybox 1.35 tftp: blksize via -b (sent only when not 512), always asks tsize; no windowsize.
 */

export type ClientName = 'tftp-hpa' | 'atftp' | 'curl' | 'busybox';

export interface ClientInfo {
  readonly name: ClientName;
  readonly binary: string;
  /** Can ask for a blksize other than 512. */
  readonly blksize: boolean;
  /** Can ask for windowsize (RFC 7440). */
  readonly windowsize: boolean;
  readonly netascii: boolean;
  readonly upload: boolean;
  readonly ipv6: boolean;
}

export const CLIENTS: Readonly<Record<ClientName, ClientInfo>> = {
  'tftp-hpa': { name: 'tftp-hpa', binary: 'tftp', blksize: false, windowsize: false, netascii: true, upload: true, ipv6: true },
  atftp: { name: 'atftp', binary: 'atftp', blksize: true, windowsize: true, netascii: false, upload: true, ipv6: true },
  curl: { name: 'curl', binary: 'curl', blksize: true, windowsize: false, netascii: false, upload: true, ipv6: true },
  busybox: { name: 'busybox', binary: 'busybox', blksize: true, windowsize: false, netascii: false, upload: true, ipv6: true },
};

export const CLIENT_NAMES = Object.keys(CLIENTS) as ClientName[];

export interface Endpoint {
  /** IPv4 or IPv6 literal (no brackets). */
  readonly host: string;
  readonly port: number;
}

export interface TransferSpec {
  /** Omitted: the client's default (no blksize option, except curl which always sends 512). */
  readonly blksize?: number;
  readonly windowsize?: number;
  /** Ask for tsize (atftp only: the others decide for themselves). For uploads atftp sends the real size. */
  readonly tsize?: boolean;
  readonly mode?: 'octet' | 'netascii';
  /** Hard limit for the whole run; the process is killed with SIGKILL after it. Default 20 s. */
  readonly timeoutMs?: number;
}

export interface RunResult {
  readonly client: ClientName;
  readonly argv: readonly string[];
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  readonly durationMs: number;
  /** The client's own verdict: exit status plus, for tftp-hpa, its output (it exits 0 on ERROR). */
  readonly ok: boolean;
}

export interface DownloadResult extends RunResult {
  /** The local file the client wrote (empty if it wrote none). */
  readonly data: Buffer;
  readonly sha256: string;
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Spawns one process with a hard timeout; never rejects for a non-zero exit. */
export function run(file: string, args: readonly string[], opts: { timeoutMs: number; cwd?: string }): Promise<Omit<RunResult, 'client' | 'ok'>> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    // Output is kept to 1 MiB each: a chatty client (atftp --verbose) must not eat memory.
    child.stdout.on('data', (c: Buffer) => {
      if ((outBytes += c.length) <= 1 << 20) out.push(c);
    });
    child.stderr.on('data', (c: Buffer) => {
      if ((errBytes += c.length) <= 1 << 20) err.push(c);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({
        argv: [file, ...args],
        exitCode,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
        durationMs: Date.now() - started,
      });
    });
  });
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function isIpv6(host: string): boolean {
  return host.includes(':');
}

/** Argument vector for one transfer; `local` is the file name inside the temp dir. */
export function clientArgs(client: ClientName, dir: 'get' | 'put', ep: Endpoint, remote: string, local: string, spec: TransferSpec): string[] {
  const mode = spec.mode ?? 'octet';
  if (mode !== 'octet' && !CLIENTS[client].netascii) throw new Error(`${client} cannot transfer in ${mode} mode`);
  if (spec.windowsize !== undefined && !CLIENTS[client].windowsize) throw new Error(`${client} cannot ask windowsize`);
  if (spec.blksize !== undefined && spec.blksize !== 512 && !CLIENTS[client].blksize) throw new Error(`${client} cannot ask blksize`);
  switch (client) {
    case 'tftp-hpa':
      // -v for a positive success line, -l so ':' in names is never read as host:file.
      return [...(isIpv6(ep.host) ? ['-6'] : ['-4']), '-v', '-l', '-m', mode, ep.host, String(ep.port), '-c', dir, dir === 'get' ? remote : local, dir === 'get' ? local : remote];
    case 'atftp': {
      const args: string[] = [];
      if (spec.blksize !== undefined) args.push('--option', `blksize ${spec.blksize}`);
      if (spec.windowsize !== undefined) args.push('--option', `windowsize ${spec.windowsize}`);
      if (spec.tsize) args.push('--option', 'tsize 0'); // for put, atftp replaces 0 with the file size
      args.push(dir === 'get' ? '-g' : '-p', '-r', remote, '-l', local, ep.host, String(ep.port));
      return args;
    }
    case 'curl': {
      const args = ['-sS', '--globoff', '--max-time', String(Math.ceil((spec.timeoutMs ?? 20_000) / 1000))];
      if (spec.blksize !== undefined) args.push('--tftp-blksize', String(spec.blksize));
      const url = `tftp://${hostForUrl(ep.host)}:${ep.port}/${remote.split('/').map(encodeURIComponent).join('/')}`;
      args.push(...(dir === 'get' ? ['-o', local] : ['-T', local]), url);
      return args;
    }
    case 'busybox': {
      const args = ['tftp', dir === 'get' ? '-g' : '-p', '-l', local, '-r', remote];
      if (spec.blksize !== undefined) args.push('-b', String(spec.blksize));
      args.push(ep.host, String(ep.port));
      return args;
    }
  }
}

function verdict(client: ClientName, r: Omit<RunResult, 'client' | 'ok'>): boolean {
  if (r.timedOut || r.exitCode !== 0) return false;
  // tftp-hpa exits 0 after an ERROR from the server; it prints "Received/Sent N bytes" only when N > 0.
  if (client === 'tftp-hpa') return !/Error code \d+|timed out/i.test(r.stdout + r.stderr);
  return true;
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tftpgw-interop-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Fetches `remote` with a real client; returns the bytes it wrote to disk. */
export function download(client: ClientName, ep: Endpoint, remote: string, spec: TransferSpec = {}): Promise<DownloadResult> {
  return withTempDir(async (dir) => {
    const local = 'download.bin';
    const argv = clientArgs(client, 'get', ep, remote, local, spec);
    const r = await run(CLIENTS[client].binary, argv, { timeoutMs: spec.timeoutMs ?? 20_000, cwd: dir });
    const data = await readFile(path.join(dir, local)).catch(() => Buffer.alloc(0));
    return { ...r, client, ok: verdict(client, r), data, sha256: sha256(data) };
  });
}

/** Sends `data` as `remote` with a real client. */
export function upload(client: ClientName, ep: Endpoint, remote: string, data: Buffer, spec: TransferSpec = {}): Promise<RunResult> {
  return withTempDir(async (dir) => {
    const local = 'upload.bin';
    await writeFile(path.join(dir, local), data);
    const argv = clientArgs(client, 'put', ep, remote, local, spec);
    const r = await run(CLIENTS[client].binary, argv, { timeoutMs: spec.timeoutMs ?? 20_000, cwd: dir });
    return { ...r, client, ok: verdict(client, r) };
  });
}

/** One-line summary of a run for assertion messages. */
export function describeRun(r: RunResult): string {
  const clip = (s: string): string => (s.length > 600 ? `${s.slice(0, 300)} … ${s.slice(-300)}` : s);
  return `${r.argv.join(' ')} → exit ${r.exitCode}${r.signal ? ` (${r.signal})` : ''}${r.timedOut ? ' TIMED OUT' : ''} in ${r.durationMs} ms\nstdout: ${clip(r.stdout.trim())}\nstderr: ${clip(r.stderr.trim())}`;
}

/** Help text of a client (to check an exclusion still holds, e.g. "no windowsize flag"). */
export async function helpText(client: ClientName): Promise<string> {
  const args: Record<ClientName, string[]> = {
    'tftp-hpa': ['-V'],
    atftp: ['--help'],
    curl: ['--help', 'all'],
    busybox: ['tftp', '--help'],
  };
  const r = await run(CLIENTS[client].binary, args[client], { timeoutMs: 5000 });
  return r.stdout + r.stderr;
}
