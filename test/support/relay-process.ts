import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LossyRelay, type RelayOptions, type RelayStats } from './lossy-relay.js';

/**
 * A LossyRelay in a process of its own, for timing-sensitive tests (WAN delay): in the test's own
 * process its timers share the event loop with the in-process gateway, the S3 client and the test,
 * and were seen firing up to ~28 ms late, which is jitter beyond what the path is meant to have.
 * Protocol on stdio, one JSON line each: the child prints {"port"} once listening; "stats" on stdin
 * answers {"stats", "upstreamPorts"}; end of stdin closes it.
 */

export interface RelayHandle {
  readonly port: number;
  stats(): Promise<{ stats: { up: RelayStats; down: RelayStats }; upstreamPorts: number[] }>;
  close(): Promise<void>;
}

const SELF = fileURLToPath(import.meta.url);

export async function startRelayProcess(options: Omit<RelayOptions, 'onDatagram'>): Promise<RelayHandle> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', SELF, JSON.stringify(options)], {
    cwd: path.resolve(path.dirname(SELF), '..', '..'),
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (l) => waiting.shift()?.(l));
  const next = (timeoutMs: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('relay process did not answer')), timeoutMs);
      waiting.push((l) => {
        clearTimeout(t);
        resolve(l);
      });
    });
  const { port } = JSON.parse(await next(20_000)) as { port: number };
  return {
    port,
    async stats() {
      const answer = next(5000);
      child.stdin!.write('stats\n');
      return JSON.parse(await answer) as { stats: { up: RelayStats; down: RelayStats }; upstreamPorts: number[] };
    },
    async close() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin!.end();
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2]!) as RelayOptions;
  const relay = await LossyRelay.start(options);
  process.stdout.write(`${JSON.stringify({ port: relay.port })}\n`);
  const input = readline.createInterface({ input: process.stdin });
  input.on('line', (l) => {
    if (l.trim() === 'stats') process.stdout.write(`${JSON.stringify({ stats: relay.stats, upstreamPorts: relay.upstreamPorts })}\n`);
  });
  input.on('close', () => void relay.close().then(() => process.exit(0)));
}

if (process.argv[1] && path.resolve(process.argv[1]) === SELF) void main();
