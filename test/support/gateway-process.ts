import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { testWorkers } from './gateway.js';
import { until } from './wait.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The gateway as its own process (the real CLI), for tests that need its process boundary: drain on
 * SIGTERM, or a comparison with a C server that runs in processes of its own (the loss suite), where
 * an in-process gateway would share its event loop with the test's relays and clients.
 */
export interface GatewayProcess {
  readonly child: ChildProcess;
  /** Parsed JSON lines of stdout so far. */
  readonly lines: Record<string, unknown>[];
  /** Raw stdout (for "nothing secret in it" checks). */
  stdout(): string;
  stderr(): string;
  readonly udpPort: number;
  readonly httpAddress: string;
  /** The first HTTP boot listener (host:port), when --http-boot-listen was given. */
  readonly httpBootAddress: string | undefined;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  waitForLine(predicate: (line: Record<string, unknown>) => boolean, timeoutMs: number, what: string): Promise<Record<string, unknown>>;
  kill(): void;
  /** SIGTERM (the gateway drains), SIGKILL if it has not exited after `graceMs`; resolves once it has exited. */
  stop(graceMs: number): Promise<void>;
}

/**
 * Spawns the real CLI (`node --import tsx src/cli.ts serve ...`, or a built `cli` such as
 * dist/cli.js: no loader in the process, for RSS measurements) and waits until it listens.
 */
export async function spawnGateway(
  args: readonly string[],
  env: Record<string, string>,
  startTimeoutMs = 20_000,
  cli?: string,
): Promise<GatewayProcess> {
  const workers = args.includes('--workers') ? [] : ['--workers', testWorkers()];
  const entry = cli ? [cli] : ['--import', 'tsx', 'src/cli.ts'];
  const child = spawn(process.execPath, [...entry, 'serve', ...workers, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let partial = '';
  const lines: Record<string, unknown>[] = [];
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    partial += chunk;
    let nl = partial.indexOf('\n');
    while (nl !== -1) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ unparsable: line });
      }
      nl = partial.indexOf('\n');
    }
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  // 'close', not 'exit': by then stdout has been read to its end.
  const exited = new Promise<number | string>((resolve) => child.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  let done = false;
  void exited.then(() => (done = true));
  const waitForLine = async (predicate: (line: Record<string, unknown>) => boolean, timeoutMs: number, what: string): Promise<Record<string, unknown>> => {
    let found: Record<string, unknown> | undefined;
    await until(() => {
      found = lines.find(predicate);
      if (!found && done) throw new Error(`gateway exited while waiting for ${what}\nstdout:\n${out}\nstderr:\n${err}`);
      return found !== undefined;
    }, timeoutMs, `${what}\nstdout so far:\n${out}\nstderr:\n${err}`);
    return found!;
  };
  const kill = (): void => {
    if (!done) child.kill('SIGKILL');
  };
  // A gateway that never listens is not left running.
  const listening = await waitForLine((l) => l.msg === 'tftp-gateway listening', startTimeoutMs, 'the gateway to listen').catch((e: unknown) => {
    kill();
    throw e;
  });
  const udp = (listening.udp as string[])[0]!;
  return {
    child,
    lines,
    stdout: () => out,
    stderr: () => err,
    udpPort: Number(udp.slice(udp.lastIndexOf(':') + 1)),
    httpAddress: listening.http as string,
    httpBootAddress: (listening.httpBoot as string[] | undefined)?.[0],
    exited,
    waitForLine,
    kill,
    stop: async (graceMs) => {
      if (!done) child.kill('SIGTERM');
      const timer = setTimeout(kill, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

