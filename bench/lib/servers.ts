import fs from 'node:fs';
import path from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { DelayForward } from './delay-path.js';
import { freeUdpPort, ManagedProcess, pinned, run, waitForTcp, waitForTftp } from './procs.js';
import { promValue } from './report.js';

export const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');

export interface S3Backend {
  readonly kind: 'rgw' | 's3rver';
  readonly endpoint: string;
  readonly host: string;
  readonly port: number;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  readonly region: string;
  close(): Promise<void>;
}

/** An S3-compatible server someone else runs (the test suite's). */
export interface ExternalS3 {
  readonly kind: 'rgw' | 's3rver';
  readonly endpoint: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  readonly region: string;
}

/**
 * The S3-compatible store: an existing one (S3_TEST_* exports, e.g. from scripts/rgw.sh or
 * npm test), Ceph RGW started with scripts/rgw.sh in `dir`, or the in-process s3rver.
 */
export async function startS3(kind: 'rgw' | 's3rver' | 'env' | ExternalS3, dir: string, log: (line: string) => void): Promise<S3Backend> {
  if (typeof kind === 'object') {
    const url = new URL(kind.endpoint);
    return { ...kind, host: url.hostname, port: Number(url.port), close: () => Promise.resolve() };
  }
  if (kind === 'env') {
    const endpoint = process.env.S3_TEST_ENDPOINT;
    if (!endpoint) throw new Error('--s3 env needs S3_TEST_ENDPOINT (and S3_TEST_ACCESS_KEY/S3_TEST_SECRET_KEY)');
    const url = new URL(endpoint);
    return {
      kind: process.env.S3_TEST_KIND === 's3rver' ? 's3rver' : 'rgw',
      endpoint,
      host: url.hostname,
      port: Number(url.port),
      credentials: { accessKeyId: process.env.S3_TEST_ACCESS_KEY ?? 'S3RVER', secretAccessKey: process.env.S3_TEST_SECRET_KEY ?? 'S3RVER' },
      region: process.env.S3_TEST_REGION ?? 'us-east-1',
      close: () => Promise.resolve(),
    };
  }
  if (kind === 's3rver') {
    const { startEmbeddedStore, EMBEDDED_CREDENTIALS } = await import('../../src/storage/embedded-s3.js');
    const store = await startEmbeddedStore(path.join(dir, 's3rver'), 'bench-bootstrap');
    const url = new URL(store.endpoint);
    return {
      kind,
      endpoint: store.endpoint,
      host: url.hostname,
      port: Number(url.port),
      credentials: { ...EMBEDDED_CREDENTIALS },
      region: 'us-east-1',
      close: () => store.close(),
    };
  }
  const rgwDir = path.join(dir, 'rgw');
  fs.mkdirSync(rgwDir, { recursive: true });
  log(`starting Ceph RGW in ${rgwDir}`);
  const started = await run(['bash', path.join(REPO, 'scripts/rgw.sh'), 'start', rgwDir], 200_000);
  if (started.code !== 0) throw new Error(`scripts/rgw.sh start failed:\n${started.output.slice(-3000)}`);
  const env = fs.readFileSync(path.join(rgwDir, 'env'), 'utf8');
  const get = (name: string): string => new RegExp(`^export ${name}=(.*)$`, 'm').exec(env)?.[1] ?? '';
  const endpoint = get('S3_TEST_ENDPOINT');
  const url = new URL(endpoint);
  return {
    kind,
    endpoint,
    host: url.hostname,
    port: Number(url.port),
    credentials: { accessKeyId: get('S3_TEST_ACCESS_KEY'), secretAccessKey: get('S3_TEST_SECRET_KEY') },
    region: get('S3_TEST_REGION') || 'us-east-1',
    close: async () => {
      await run(['bash', path.join(REPO, 'scripts/rgw.sh'), 'stop', rgwDir], 60_000);
    },
  };
}

export function s3Client(s3: Pick<S3Backend, 'endpoint' | 'region' | 'credentials'>): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    credentials: s3.credentials,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** Creates `bucket` (if needed) and stores each file under its name. */
export async function uploadFiles(s3: S3Backend, bucket: string, files: ReadonlyMap<string, Buffer>): Promise<void> {
  const client = s3Client(s3);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket })).catch((err: unknown) => {
      const name = err instanceof Error ? err.name : '';
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw err;
    });
    for (const [key, body] of files) await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  } finally {
    client.destroy();
  }
}

export interface TftpServer {
  readonly name: string;
  readonly port: number;
  readonly process: ManagedProcess;
  stop(): Promise<void>;
}

export interface GatewayServer extends TftpServer {
  /** The ops listener (/metrics). */
  readonly httpPort: number;
  /** The HTTP boot front end (--http-boot-listen). */
  readonly bootPort: number;
  /** Worker threads it runs (from its 'listening' line). */
  readonly workers: number;
  /** tftp_gateway_s3_bytes_fetched_total right now. */
  s3BytesFetched(): Promise<number>;
  metricsText(): Promise<string>;
}

export interface GatewayOptions {
  readonly s3Endpoint: string;
  readonly s3: S3Backend;
  readonly bucket: string;
  readonly cacheSize: string;
  readonly core?: string;
  /** 'dist': the built CLI (npm run bench builds it); 'tsx': the sources. */
  readonly entry: 'dist' | 'tsx';
  readonly extraFlags?: readonly string[];
  /** Node's own flags, before the entry (e.g. an experiment's `--import`). */
  readonly nodeFlags?: readonly string[];
  /** More environment for the gateway process. */
  readonly env?: Readonly<Record<string, string>>;
}

export async function freeTcpPort(): Promise<number> {
  const net = await import('node:net');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The gateway as its own process (so its RSS is its own), pinned to the server core. */
export async function startGateway(opts: GatewayOptions): Promise<GatewayServer> {
  const port = await freeUdpPort();
  const httpPort = await freeTcpPort();
  const bootPort = await freeTcpPort();
  const node = [process.execPath, ...(opts.nodeFlags ?? [])];
  const entry = opts.entry === 'dist' ? [...node, path.join(REPO, 'dist/cli.js')] : [...node, '--import', 'tsx', path.join(REPO, 'src/cli.ts')];
  const argv = pinned(opts.core, [
    ...entry,
    'serve',
    '--listen', `127.0.0.1:${port}`,
    '--http-listen', `127.0.0.1:${httpPort}`,
    '--http-boot-listen', `127.0.0.1:${bootPort}`,
    '--s3-bucket', opts.bucket,
    '--s3-endpoint', opts.s3Endpoint,
    '--s3-region', opts.s3.region,
    '--s3-force-path-style',
    '--s3-checksum', 'when-required',
    '--max-blksize', '65464',
    '--max-sessions', '10000',
    '--cache-size', opts.cacheSize,
    '--log-level', 'info',
    ...(opts.extraFlags ?? []),
  ]);
  const proc = new ManagedProcess('gateway', argv, {
    cwd: REPO,
    env: { ...s3ProcessEnv(opts.s3), NODE_NO_WARNINGS: '1', ...opts.env },
  });
  const listening = await readyOrStopped(proc, async () => {
    const line = await proc.waitForLine(/tftp-gateway listening/, 30_000);
    await waitForTftp(port, 10_000);
    await waitForTcp(bootPort, 10_000);
    return line;
  });
  const metricsText = async (): Promise<string> => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(5000) });
    return res.text();
  };
  return {
    name: 'gateway',
    port,
    httpPort,
    bootPort,
    workers: Number(/"workers":(\d+)/.exec(listening)?.[1] ?? 1),
    process: proc,
    metricsText,
    s3BytesFetched: async () => promValue(await metricsText(), 'tftp_gateway_s3_bytes_fetched_total') ?? 0,
    stop: () => proc.stop(10_000),
  };
}

/** Waits for `ready`; a process that never gets there is stopped before the error goes on. */
async function readyOrStopped<T>(proc: ManagedProcess, ready: () => Promise<T>): Promise<T> {
  try {
    return await ready();
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** Debian's tftpd-hpa in the foreground on a loopback port, serving `dir` from local disk. */
export async function startTftpdHpa(dir: string, core?: string): Promise<TftpServer> {
  const binary = '/usr/sbin/in.tftpd';
  if (!fs.existsSync(binary)) throw new Error('tftpd-hpa is not installed (/usr/sbin/in.tftpd): apt-get install tftpd-hpa');
  const port = await freeUdpPort();
  const proc = new ManagedProcess('tftpd-hpa', pinned(core, [binary, '-L', '-s', dir, '-a', `127.0.0.1:${port}`, '-B', '65464']));
  await readyOrStopped(proc, () => waitForTftp(port, 10_000));
  return { name: 'tftpd-hpa', port, process: proc, stop: () => proc.stop() };
}

/** bench/latency-proxy.ts in front of `s3` (a process of its own, on any core). */
export async function startLatencyProxy(s3: S3Backend, delayMs: number, core?: string): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const proc = new ManagedProcess('latency-proxy', pinned(core, [process.execPath, '--import', 'tsx', path.join(REPO, 'bench/latency-proxy.ts'), s3.host, String(s3.port), String(delayMs)]), { cwd: REPO });
  const line = await readyOrStopped(proc, () => proc.waitForLine(/latency proxy listening on \d+/, 20_000));
  return { endpoint: `http://127.0.0.1:${/(\d+)\s*$/.exec(line)![1]}`, stop: () => proc.stop() };
}

/** What bench/store-read.ts measured: the faster pass, and every pass's seconds. */
export interface StoreRead {
  readonly bytes: number;
  readonly seconds: number;
  readonly passes: readonly number[];
}

/** bench/store-read.ts pinned to `core`: how fast the store alone delivers `key` there (undefined if it failed). */
export async function readFromStore(s3: S3Backend, endpoint: string, bucket: string, key: string, size: number, core?: string): Promise<StoreRead | undefined> {
  const argv = pinned(core, [process.execPath, '--import', 'tsx', path.join(REPO, 'bench/store-read.ts'), endpoint, bucket, key, String(size)]);
  const proc = new ManagedProcess('store-read', argv, { cwd: REPO, env: s3ProcessEnv(s3) });
  try {
    const line = await proc.waitForLine(/^\{"bytes":/, 120_000);
    const result = JSON.parse(line) as StoreRead;
    return result.bytes === size && result.passes.length > 0 ? result : undefined;
  } catch {
    return undefined;
  } finally {
    await proc.stop();
  }
}

/** The environment of a child process that talks to `s3`: its credentials, and no instance metadata. */
function s3ProcessEnv(s3: S3Backend): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
    AWS_REGION: s3.region,
  };
}

/** bench/node-floor.ts (the least a Node server does per lock-step block) on the gateway's Node. */
export async function startNodeFloor(dir: string, core?: string): Promise<TftpServer> {
  const port = await freeUdpPort();
  const proc = new ManagedProcess('node-floor', pinned(core, [process.execPath, '--import', 'tsx', path.join(REPO, 'bench/node-floor.ts'), dir, String(port)]), { cwd: REPO });
  await readyOrStopped(proc, () => waitForTftp(port, 20_000));
  return { name: 'node-floor', port, process: proc, stop: () => proc.stop() };
}

/**
 * Debian's atftpd, unpacked (not installed: it conflicts with tftpd-hpa as a package) into
 * `cacheDir` with `apt-get download` + `dpkg -x` the first time.
 */
export async function ensureAtftpd(cacheDir: string, log: (line: string) => void): Promise<string> {
  const binary = path.join(cacheDir, 'atftpd', 'usr/sbin/atftpd');
  if (fs.existsSync(binary)) return binary;
  fs.mkdirSync(cacheDir, { recursive: true });
  const work = fs.mkdtempSync(path.join(cacheDir, 'dl-'));
  try {
    log('fetching atftpd with apt-get download (it conflicts with tftpd-hpa as a package, so it is only unpacked)');
    let got = await run(['apt-get', 'download', 'atftpd'], 120_000, { cwd: work });
    if (got.code !== 0) {
      await run(['apt-get', 'update', '-qq'], 300_000);
      got = await run(['apt-get', 'download', 'atftpd'], 120_000, { cwd: work });
    }
    const deb = fs.readdirSync(work).find((f) => f.endsWith('.deb'));
    if (got.code !== 0 || !deb) throw new Error(`apt-get download atftpd failed:\n${got.output.slice(-1500)}`);
    const target = path.join(cacheDir, 'atftpd');
    fs.rmSync(target, { recursive: true, force: true });
    const x = await run(['dpkg', '-x', path.join(work, deb), target], 60_000);
    if (x.code !== 0 || !fs.existsSync(binary)) throw new Error(`dpkg -x failed:\n${x.output}`);
    return binary;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

export async function startAtftpd(binary: string, dir: string, core?: string): Promise<TftpServer> {
  const port = await freeUdpPort();
  const proc = new ManagedProcess(
    'atftpd',
    pinned(core, [binary, '--daemon', '--no-fork', '--port', String(port), '--bind-address', '127.0.0.1', '--user', 'root.root', '--logfile', '/dev/null', '--maxthread', '1000', dir]),
  );
  await readyOrStopped(proc, () => waitForTftp(port, 10_000));
  return { name: 'atftpd', port, process: proc, stop: () => proc.stop() };
}

/** Debian's nginx, its own instance: a generated config, pid, logs and temp paths in `dir`. */
export interface NginxServer extends TftpServer {
  readonly workers: number;
}

export const NGINX_BINARY = '/usr/sbin/nginx';

/** The nginx.conf the bench runs: static files from `root` with sendfile, on 127.0.0.1:port. */
export function nginxConfig(opts: { root: string; dir: string; port: number; workers: number }): string {
  const { root, dir, port, workers } = opts;
  return [
    `worker_processes ${workers};`,
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'events { worker_connections 4096; }',
    'http {',
    '  access_log off;',
    '  sendfile on;',
    '  tcp_nopush on;',
    '  keepalive_timeout 15;',
    '  default_type application/octet-stream;',
    `  client_body_temp_path ${dir}/tmp/body;`,
    `  proxy_temp_path ${dir}/tmp/proxy;`,
    `  fastcgi_temp_path ${dir}/tmp/fastcgi;`,
    `  uwsgi_temp_path ${dir}/tmp/uwsgi;`,
    `  scgi_temp_path ${dir}/tmp/scgi;`,
    '  server {',
    `    listen 127.0.0.1:${port};`,
    `    root ${root};`,
    '    location / { }',
    '  }',
    '}',
    '',
  ].join('\n');
}

/**
 * nginx serving `root` (the bench puts it on tmpfs) with `workers` worker processes, in the
 * foreground (`-g 'daemon off;'`), everything it writes under `dir`.
 */
export async function startNginx(root: string, dir: string, workers: number, core?: string): Promise<NginxServer> {
  if (!fs.existsSync(NGINX_BINARY)) throw new Error(`nginx is not installed (${NGINX_BINARY}): apt-get install nginx`);
  const port = await freeTcpPort();
  fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, nginxConfig({ root, dir, port, workers }));
  const proc = new ManagedProcess('nginx', pinned(core, [NGINX_BINARY, '-e', path.join(dir, 'error.log'), '-p', dir, '-c', conf, '-g', 'daemon off;']));
  await readyOrStopped(proc, () => waitForTcp(port, 10_000));
  return { name: 'nginx', port, workers, process: proc, stop: () => proc.stop() };
}

/** bench/wan-path.ts: the delay path in a process of its own; `ports[i]` is where forward i listens. */
export async function startWanPath(
  rttMs: number,
  windowBytes: number,
  forwards: readonly DelayForward[],
  core?: string,
  /** Each TCP connection's bandwidth per direction (default: no cap). */
  bytesPerSecond?: number,
): Promise<{ ports: number[]; stop(): Promise<void> }> {
  const specs = forwards.map((f) => `${f.kind}:${f.target}`);
  const rate = bytesPerSecond !== undefined ? ['--rate', String(bytesPerSecond)] : [];
  const proc = new ManagedProcess('wan-path', pinned(core, [process.execPath, '--import', 'tsx', path.join(REPO, 'bench/wan-path.ts'), String(rttMs), String(windowBytes), ...rate, ...specs]), { cwd: REPO });
  const line = await readyOrStopped(proc, () => proc.waitForLine(/^\{"wanPath":/, 20_000));
  const listed = (JSON.parse(line) as { wanPath: { port: number }[] }).wanPath;
  return { ports: listed.map((f) => f.port), stop: () => proc.stop() };
}
