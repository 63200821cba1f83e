import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { HttpDownload } from './http-report.js';
import { pinned } from './procs.js';
import type { ClientName } from './report.js';

export interface ClientRequest {
  readonly client: ClientName;
  readonly port: number;
  readonly file: string;
  readonly blksize: number;
  /** 1 = plain RFC 1350 lock-step (only atftp asks for more). */
  readonly windowsize: number;
  /** What the file must contain. */
  readonly expected: Buffer;
  readonly timeoutMs: number;
  readonly core?: string;
}

export interface ClientOutcome {
  readonly client: ClientName;
  readonly ok: boolean;
  readonly bytes: number;
  readonly seconds: number;
  readonly error?: string;
}

/** The command line of a real Debian client fetching `file` to its standard output. */
export function clientArgv(req: Pick<ClientRequest, 'client' | 'port' | 'file' | 'blksize' | 'windowsize'>): string[] {
  switch (req.client) {
    case 'atftp':
      return [
        'atftp',
        ...(req.blksize !== 512 ? ['--option', `blksize ${req.blksize}`] : []),
        ...(req.windowsize > 1 ? ['--option', `windowsize ${req.windowsize}`] : []),
        '-g', '-r', req.file, '-l', '/dev/stdout', '127.0.0.1', String(req.port),
      ];
    case 'curl':
      if (req.windowsize > 1) throw new Error('curl has no windowsize option');
      return ['curl', '-sS', '--noproxy', '*', '--tftp-blksize', String(req.blksize), `tftp://127.0.0.1:${req.port}/${req.file}`, '-o', '-'];
    case 'busybox':
      if (req.windowsize > 1) throw new Error('busybox tftp has no windowsize option');
      return ['busybox', 'tftp', ...(req.blksize !== 512 ? ['-b', String(req.blksize)] : []), '-g', '-r', req.file, '-l', '-', '127.0.0.1', String(req.port)];
  }
}

/**
 * Runs one client and checks what it wrote against `expected` as it streams in (no file on disk,
 * no hash: a byte comparison per chunk). Time runs from spawn to exit.
 */
export function runClient(req: ClientRequest): Promise<ClientOutcome> {
  return new Promise((resolve) => {
    const started = performance.now();
    // atftp fopen()s its local file: /dev/stdout must then be a pipe (Node gives children a
    // socketpair, which cannot be opened by path), so atftp writes into `cat`.
    const base = clientArgv(req);
    const command = req.client === 'atftp' ? ['bash', '-c', 'set -o pipefail; "$@" | cat', 'bash', ...base] : base;
    const argv = pinned(req.core, command);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let offset = 0;
    let mismatch: string | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      if (mismatch === undefined) {
        const end = offset + chunk.length;
        if (end > req.expected.length) mismatch = `more bytes than the file (${end} > ${req.expected.length})`;
        else if (!chunk.equals(req.expected.subarray(offset, end))) mismatch = `bytes differ in [${offset}, ${end})`;
      }
      offset += chunk.length;
    });
    const onTimeout = (): void => {
      mismatch ??= `timed out after ${req.timeoutMs} ms`;
    };
    watchChild(child, { started, timeoutMs: req.timeoutMs, stderrTail: 2000, onTimeout }, ({ code, spawnError, stderr, seconds }) => {
      let error = spawnError ?? mismatch;
      if (error === undefined && code !== 0) error = `exit ${code}: ${stderr.trim().split('\n').slice(-2).join(' | ')}`;
      if (error === undefined && offset !== req.expected.length) error = `short file: ${offset} of ${req.expected.length} bytes`;
      resolve({ client: req.client, ok: error === undefined, bytes: offset, seconds, ...(error !== undefined ? { error } : {}) });
    });
  });
}

/** How a watched child ended: its exit code (-1 if it never started), the spawn error, the tail of its stderr, seconds since `started`. */
interface ChildEnd {
  readonly code: number | null;
  readonly spawnError: string | undefined;
  readonly stderr: string;
  readonly seconds: number;
}

/**
 * Watches a client process: keeps the last `stderrTail` characters of its stderr, kills it
 * (SIGKILL, after `onTimeout`) once `timeoutMs` have passed, and calls `done` once, when it
 * closes or fails to start.
 */
function watchChild(
  child: ChildProcess,
  opts: { readonly started: number; readonly timeoutMs: number; readonly stderrTail: number; readonly onTimeout?: () => void },
  done: (end: ChildEnd) => void,
): void {
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-opts.stderrTail);
  });
  const timer = setTimeout(() => {
    opts.onTimeout?.();
    child.kill('SIGKILL');
  }, opts.timeoutMs);
  let settled = false;
  const finish = (code: number | null, spawnError?: string): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    done({ code, spawnError, stderr, seconds: (performance.now() - opts.started) / 1000 });
  };
  child.once('error', (err) => finish(-1, err.message));
  child.once('close', (code) => finish(code));
}

/** One HTTP download with curl. */
export interface HttpRequest {
  readonly url: string;
  /** The status and body size the download must have. */
  readonly status: number;
  readonly bytes: number;
  /** When given, the body is piped here and its sha256 (hex) must be this; else curl writes to /dev/null. */
  readonly sha256?: string;
  /** More request headers (`Name: value`). */
  readonly headers?: readonly string[];
  /** Sign the request (AWS SigV4, for S3 itself): curl's --aws-sigv4 provider and the key pair. */
  readonly sigv4?: { readonly provider: string; readonly accessKeyId: string; readonly secretAccessKey: string };
  readonly timeoutMs: number;
  readonly core?: string;
}

/** What runCurl measured: the download (bench/lib/http-report.ts) and the response's status. */
export interface HttpOutcome extends HttpDownload {
  readonly status: number;
}

/** SHA-256 of empty content, which a SigV4 GET declares as its payload hash. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** curl's command line for `req` (secrets go in on standard input, not here). */
export function curlArgv(req: Pick<HttpRequest, 'url' | 'sha256' | 'headers' | 'sigv4' | 'timeoutMs'>): string[] {
  return [
    'curl', '-sS', '--noproxy', '*',
    '--max-time', String(Math.max(1, Math.ceil(req.timeoutMs / 1000))),
    '-w', '%{stderr}\ncurl-result %{http_code} %{size_download} %{time_starttransfer} %{time_total}\n',
    ...(req.headers ?? []).flatMap((h) => ['-H', h]),
    ...(req.sigv4 ? ['--aws-sigv4', req.sigv4.provider, '-H', `x-amz-content-sha256: ${EMPTY_SHA256}`, '--config', '-'] : []),
    '-o', req.sha256 !== undefined ? '-' : '/dev/null',
    req.url,
  ];
}

/**
 * Runs curl once and checks the status, the body size (curl's count, or the bytes piped here when
 * hashing) and, when asked, the body's sha256. Never longer than `timeoutMs` (+ 1 s).
 */
export function runCurl(req: HttpRequest): Promise<HttpOutcome> {
  return new Promise((resolve) => {
    const started = performance.now();
    const argv = pinned(req.core, curlArgv(req));
    const child = spawn(argv[0]!, argv.slice(1), { stdio: [req.sigv4 ? 'pipe' : 'ignore', req.sha256 !== undefined ? 'pipe' : 'ignore', 'pipe'] });
    if (req.sigv4) child.stdin!.end(`user = "${req.sigv4.accessKeyId}:${req.sigv4.secretAccessKey}"\n`);
    const hash = req.sha256 !== undefined ? createHash('sha256') : undefined;
    let piped = 0;
    child.stdout?.on('data', (chunk: Buffer) => {
      piped += chunk.length;
      hash!.update(chunk);
    });
    watchChild(child, { started, timeoutMs: req.timeoutMs + 1000, stderrTail: 4000 }, ({ code, spawnError, stderr, seconds }) => {
      const m = /curl-result (\d+) (\d+) ([\d.]+) ([\d.]+)\s*$/.exec(stderr);
      const status = m ? Number(m[1]) : 0;
      const bytes = hash ? piped : m ? Number(m[2]) : 0;
      const firstByteSeconds = m ? Number(m[3]) : 0;
      const totalSeconds = m ? Number(m[4]) : undefined;
      let error = spawnError;
      if (error === undefined && code !== 0) error = `curl exit ${code}: ${stderr.replace(/curl-result.*$/s, '').trim().split('\n').slice(-2).join(' | ')}`;
      if (error === undefined && status !== req.status) error = `status ${status}, expected ${req.status}`;
      if (error === undefined && bytes !== req.bytes) error = `${bytes} bytes, expected ${req.bytes}`;
      if (error === undefined && hash && hash.digest('hex') !== req.sha256) error = 'sha256 differs';
      resolve({
        ok: error === undefined,
        status,
        bytes,
        seconds,
        firstByteSeconds,
        ...(totalSeconds !== undefined ? { totalSeconds } : {}),
        hashed: hash !== undefined,
        ...(error !== undefined ? { error } : {}),
      });
    });
  });
}
