import { spawn } from 'node:child_process';
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
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      if (mismatch === undefined) {
        const end = offset + chunk.length;
        if (end > req.expected.length) mismatch = `more bytes than the file (${end} > ${req.expected.length})`;
        else if (!chunk.equals(req.expected.subarray(offset, end))) mismatch = `bytes differ in [${offset}, ${end})`;
      }
      offset += chunk.length;
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr = (stderr + c.toString()).slice(-2000);
    });
    const timer = setTimeout(() => {
      mismatch ??= `timed out after ${req.timeoutMs} ms`;
      child.kill('SIGKILL');
    }, req.timeoutMs);
    let settled = false;
    const finish = (code: number | null, spawnError?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      let error = spawnError ?? mismatch;
      if (error === undefined && code !== 0) error = `exit ${code}: ${stderr.trim().split('\n').slice(-2).join(' | ')}`;
      if (error === undefined && offset !== req.expected.length) error = `short file: ${offset} of ${req.expected.length} bytes`;
      resolve({ client: req.client, ok: error === undefined, bytes: offset, seconds, ...(error !== undefined ? { error } : {}) });
    };
    child.once('error', (err) => finish(-1, err.message));
    child.once('close', (code) => finish(code));
  });
}
