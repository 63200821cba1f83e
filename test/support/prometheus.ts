import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A real Prometheus (Debian's `prometheus` 2.42) for tests: loopback only, a free port, a scratch
 * data directory, 1 s scrape and rule evaluation. `stop()` kills it and removes the directory;
 * a safety net kills it too if the test process exits without stopping it.
 */

export interface ScrapeJob {
  readonly job: string;
  readonly targets: readonly string[];
}

export interface PromSample {
  readonly metric: Record<string, string>;
  readonly value?: [number, string];
  readonly values?: [number, string][];
}

export interface PromAnswer {
  readonly status: 'success' | 'error';
  readonly errorType?: string;
  readonly error?: string;
  readonly data?: { resultType: string; result: PromSample[] };
}

export interface PrometheusServer {
  readonly url: string;
  readonly scrapeIntervalS: number;
  /** GET an API path (query string included); the JSON answer, whatever the HTTP status. */
  api<T>(pathAndQuery: string): Promise<{ status: number; body: T }>;
  /** Instant query at `time` (seconds since the epoch; default now). */
  query(expr: string, time?: number): Promise<PromAnswer>;
  queryRange(expr: string, start: number, end: number, step: number): Promise<PromAnswer>;
  /** Prometheus's own log (stderr), for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

/** A TCP port free on loopback right now. */
export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function getJson<T>(url: string, timeoutMs = 5000): Promise<{ status: number; body: T }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as T });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: text as unknown as T });
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function startPrometheus(opts: { jobs: readonly ScrapeJob[]; ruleFiles?: readonly string[]; scrapeIntervalS?: number }): Promise<PrometheusServer> {
  const interval = opts.scrapeIntervalS ?? 1;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tftpgw-prometheus-'));
  const config = {
    global: { scrape_interval: `${interval}s`, scrape_timeout: `${interval}s`, evaluation_interval: `${interval}s` },
    rule_files: opts.ruleFiles ?? [],
    scrape_configs: opts.jobs.map((j) => ({ job_name: j.job, static_configs: [{ targets: j.targets }] })),
  };
  // JSON is YAML: no indentation to get wrong.
  await writeFile(path.join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));
  let lastError = '';
  // The free port can be taken between our probe and Prometheus's bind: a few attempts.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freeTcpPort();
    const child = spawn(
      'prometheus',
      [
        `--config.file=${path.join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(dir, `data-${attempt}`)}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1h',
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir } },
    );
    let log = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      if (log.length < 200_000) log += c;
    });
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    let running = true;
    void exited.then(() => (running = false));
    const spawnFailed = new Promise<Error>((resolve) => child.once('error', resolve));
    const safetyNet = (): void => {
      if (running) child.kill('SIGKILL');
    };
    process.once('exit', safetyNet);
    const stop = async (): Promise<void> => {
      process.removeListener('exit', safetyNet);
      if (running) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    };
    const url = `http://127.0.0.1:${port}`;
    const ready = await waitReady(url, child, spawnFailed, 20_000).catch((err: unknown) => err as Error);
    if (ready instanceof Error) {
      await stop();
      lastError = `${ready.message}\n${log}`;
      if (!running && /address already in use/i.test(log)) continue;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`prometheus did not start: ${lastError}`);
    }
    const api = <T>(p: string): Promise<{ status: number; body: T }> => getJson<T>(`${url}${p}`);
    return {
      url,
      scrapeIntervalS: interval,
      api,
      async query(expr, time) {
        const q = new URLSearchParams({ query: expr });
        if (time !== undefined) q.set('time', String(time));
        return (await api<PromAnswer>(`/api/v1/query?${q.toString()}`)).body;
      },
      async queryRange(expr, start, end, step) {
        const q = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: String(step) });
        return (await api<PromAnswer>(`/api/v1/query_range?${q.toString()}`)).body;
      },
      log: () => log,
      async stop() {
        await stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`prometheus did not start after 3 attempts: ${lastError}`);
}

async function waitReady(url: string, child: ChildProcess, spawnFailed: Promise<Error>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let failed: Error | undefined;
  void spawnFailed.then((e) => (failed = e));
  for (;;) {
    if (failed) throw failed;
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`prometheus exited (${child.exitCode ?? child.signalCode})`);
    const r = await getJson<string>(`${url}/-/ready`, 1000).catch(() => undefined);
    if (r?.status === 200) return;
    if (Date.now() > deadline) throw new Error(`prometheus not ready after ${timeoutMs} ms`);
    await wait(50);
  }
}
