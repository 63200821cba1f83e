import dgram from 'node:dgram';
import net, { type AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';
import { AggregatorRegistry, Counter, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { ConfigSource, GatewayConfig } from '../config/config.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { parseClientAddress } from '../policy/client-address.js';
import { createSharedLimitMemory, SharedClientLimits } from '../policy/shared-limits.js';
import { errorMessage, TransferError } from '../errors.js';
import type { UploadSink } from '../tftp/session/types.js';
import type { BlockCache, RangeEntry } from '../storage/block-cache.js';
import type { ObjectInfo, S3ObjectStore } from '../storage/s3-store.js';
import { writeLine, type Logger } from '../ops/logger.js';
import type { SessionHost } from '../gateway/session-host.js';
import { TransferEvents, type TransferFinishedSource } from '../tftp/transfer-report.js';
import type { MainToWorker, WireFailure, WorkerInit, WorkerToMain } from './worker-protocol.js';

export interface WorkerPoolDeps {
  readonly config: GatewayConfig;
  readonly source: ConfigSource;
  /** The process's one block cache (range buffers in shared memory) and S3 store. */
  readonly cache: BlockCache;
  readonly store: S3ObjectStore;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  /** Whether S3 answers at start (then setS3Reachable on each change). */
  readonly s3Reachable: boolean;
}

/** How long a worker may take to start (bind its sockets) before the start fails. */
const START_TIMEOUT_MS = 30_000;
/** How long a scrape waits for a worker's metrics before it uses the last ones it had. */
const METRICS_TIMEOUT_MS = 2000;
/** A worker that dies again soon after its replacement started waits longer before the next one. */
const RESPAWN_MIN_MS = 100;
const RESPAWN_MAX_MS = 10_000;

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** One worker thread and what the main thread keeps for it. */
class Slot {
  worker!: Worker;
  alive = false;
  /** Its session-table keys (the session count is their number). */
  readonly sessions = new Set<string>();
  /** Its HTTP responses in progress. */
  httpActive = 0;
  /** Ranges it holds, by its request id. */
  readonly holds = new Map<number, { entry: RangeEntry; key: string; info: ObjectInfo; index: number }>();
  /** Its uploads, running here. */
  readonly uploads = new Map<number, UploadSink>();
  readonly replies = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  nextRid = 1;
  lastMetrics: MetricsJson | undefined;
  respawnDelay = RESPAWN_MIN_MS;
  startedAt = 0;
  exited: Promise<void> = Promise.resolve();

  constructor(readonly n: number) {}

  post(message: MainToWorker): void {
    if (this.alive) this.worker.postMessage(message);
  }

  request<T>(build: (rid: number) => MainToWorker, timeoutMs: number): Promise<T> {
    if (!this.alive) return Promise.reject(new Error(`worker ${this.n} is not running`));
    const rid = this.nextRid++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(rid);
        reject(new Error(`worker ${this.n} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.replies.set(rid, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.worker.postMessage(build(rid));
    });
  }
}

/** Binds and closes a plain (no SO_REUSEPORT) socket: throws EADDRINUSE if anyone has the port. */
async function assertPortFree(host: string, port: number): Promise<void> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: host, port, exclusive: true }, () => resolve());
    });
  } finally {
    await new Promise<void>((resolve) => {
      try {
        socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }
}

/** The same check for a TCP port (HTTP boot): reusePort would let workers join another process's listeners. */
async function assertTcpPortFree(host: string, port: number): Promise<void> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => resolve());
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

function wire(err: unknown): WireFailure {
  if (err instanceof TransferError) return { code: err.code, message: err.message };
  return { code: 'STORAGE_ERROR', message: errorMessage(err) };
}

/** The worker thread's module: the compiled .js next to this file, or the .ts source under tsx. */
function workerEntry(): URL {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./worker-main${ext}`, import.meta.url);
}

/**
 * The main thread's side of `--workers N`: starts N worker threads (each binds the listen addresses
 * with SO_REUSEPORT), serves their cache, metadata and upload requests from the process's one
 * block cache and S3 client, keeps the process-wide session directory (a datagram whose flow the
 * kernel moved to another worker after a replacement is handed to the worker that has its
 * session), sums their metrics, drains them together and replaces a worker that dies (its
 * sessions end, its uploads are aborted here, the others go on).
 */
export class WorkerPool implements SessionHost {
  onActivity: ((active: number) => void) | undefined;
  /**
   * Every worker's transfer-finished records, forwarded after the worker's own subscribers (its
   * metrics, summed by collect(), and its log lines) have had them.
   */
  private readonly finished = new TransferEvents();
  readonly transfers: TransferFinishedSource = this.finished;
  private readonly slots: Slot[] = [];
  private listen: { host: string; port: number }[] = [];
  private httpBootListen: { host: string; port: number }[] = [];
  private httpAddressList: AddressInfo[] = [];
  private addressList: AddressInfo[] = [];
  /** Single-port mode: which worker has the session of a client key. */
  private readonly directory = new Map<string, Slot>();
  private draining = false;
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  private readonly pendingAborts = new Set<Promise<void>>();
  /** Counters and histograms of workers that died, so sums never go backwards. */
  private retired: MetricsJson[] = [];
  private readonly restarts: Counter;
  private readonly handoffs: Counter;
  /** The client limits every worker shares (this thread releases a dead worker's sessions in them). */
  private readonly limitMemory = createSharedLimitMemory();
  private readonly limits: SharedClientLimits;
  /** Shared with every worker: [S3 reachable (0/1), read-ahead ranges the cache advises now]. */
  private readonly s3ReachableMemory = new SharedArrayBuffer(8);
  private readonly s3Reachable = new Int32Array(this.s3ReachableMemory);

  private constructor(private readonly deps: WorkerPoolDeps) {
    this.setS3Reachable(deps.s3Reachable);
    const c = deps.config;
    this.limits = new SharedClientLimits(this.limitMemory, {
      maxSessionsPerClient: c.maxSessionsPerClient,
      ratePerSecond: c.rateLimit,
      burst: c.rateBurst,
      unverifiedBytesPerSecond: c.unverifiedBytesPerSecond,
    });
    this.restarts = new Counter({
      name: 'tftp_gateway_worker_restarts_total',
      help: 'Worker threads that exited unexpectedly and were replaced (their transfers ended)',
      registers: [deps.metrics.registry],
    });
    this.restarts.inc(0);
    this.handoffs = new Counter({
      name: 'tftp_gateway_worker_handoffs_total',
      help: "Datagrams a worker received for a session another worker has (the kernel moved the client's flow when a worker was replaced), handed to that worker",
      registers: [deps.metrics.registry],
    });
    this.handoffs.inc(0);
  }

  static async start(deps: WorkerPoolDeps): Promise<WorkerPool> {
    const pool = new WorkerPool(deps);
    const n = deps.config.workers;
    for (let i = 1; i <= n; i++) pool.slots.push(new Slot(i));
    try {
      // SO_REUSEPORT would let this process join another one's socket group on the same port (same
      // user) and split its traffic: a port in use must fail the start as it does without workers.
      await Promise.all(deps.config.listen.filter((a) => a.port !== 0).map((a) => assertPortFree(a.host, a.port)));
      await Promise.all(deps.config.httpBootListen.filter((a) => a.port !== 0).map((a) => assertTcpPortFree(a.host, a.port)));
      // The first worker resolves any port 0; the others bind the same ports.
      pool.listen = deps.config.listen.map((a) => ({ host: a.host, port: a.port }));
      pool.httpBootListen = deps.config.httpBootListen.map((a) => ({ host: a.host, port: a.port }));
      const first = await pool.spawn(pool.slots[0]!);
      pool.addressList = first.addresses;
      pool.httpAddressList = first.httpAddresses;
      pool.listen = pool.addressList.map((a, i) => ({ host: deps.config.listen[i]!.host, port: a.port }));
      pool.httpBootListen = pool.httpAddressList.map((a, i) => ({ host: deps.config.httpBootListen[i]!.host, port: a.port }));
      await Promise.all(pool.slots.slice(1).map((s) => pool.spawn(s)));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /** Where the UDP sockets are bound (every worker binds these). */
  get addresses(): AddressInfo[] {
    return this.addressList;
  }

  /** Where the HTTP boot listeners are bound (every worker binds these). */
  get httpBootAddresses(): AddressInfo[] {
    return this.httpAddressList;
  }

  /** Workers currently running. */
  get workersRunning(): number {
    return this.slots.filter((s) => s.alive).length;
  }

  /** Sessions (and requests being opened) in every worker. */
  get activeSessions(): number {
    let n = 0;
    for (const s of this.slots) n += s.sessions.size + s.httpActive;
    return n;
  }

  endLingering(): void {
    for (const s of this.slots) s.post({ t: 'endLingering' });
  }

  /** S3 reachability as the main thread's S3Health sees it (workers read it for uploads). */
  setS3Reachable(reachable: boolean): void {
    Atomics.store(this.s3Reachable, 0, reachable ? 1 : 0);
  }

  startDraining(): void {
    this.draining = true;
    for (const s of this.slots) s.post({ t: 'drain' });
  }

  whenIdle(): Promise<void> {
    if (this.activeSessions === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  abortAll(): void {
    for (const s of this.slots) s.post({ t: 'abortAll' });
  }

  /** Every worker's upload aborts, and the ones this thread started for dead workers, have finished. */
  async settled(): Promise<void> {
    await Promise.all(this.slots.filter((s) => s.alive).map((s) => s.request<void>((rid) => ({ t: 'settle', rid }), 60_000).catch(() => undefined)));
    while (this.pendingAborts.size > 0) await Promise.all([...this.pendingAborts]);
  }

  /** The metrics of this thread and every worker, summed (gauges of live workers only). */
  async collect(): Promise<Registry> {
    const own = (await this.deps.metrics.registry.getMetricsAsJSON()) as MetricsJson;
    const workers = await Promise.all(
      this.slots.map(async (s) => {
        if (!s.alive) return undefined;
        try {
          s.lastMetrics = await s.request<MetricsJson>((rid) => ({ t: 'metrics', rid }), METRICS_TIMEOUT_MS);
        } catch {
          // Not answering in time: its last metrics stand in.
        }
        return s.lastMetrics;
      }),
    );
    const all = [own, ...workers.filter((w): w is MetricsJson => w !== undefined), ...this.retired];
    return AggregatorRegistry.aggregate(all);
  }

  /**
   * Ends worker `n` (1..N) as a crash would: its transfers end, its uploads are aborted, a
   * replacement starts. For tests and for an operator's last resort; resolves once it has exited.
   */
  async kill(n: number): Promise<void> {
    const slot = this.slots[n - 1];
    if (!slot?.alive) throw new Error(`no running worker ${n}`);
    await slot.worker.terminate();
    await slot.exited;
  }

  /** Stops every worker (after the drain): sockets closed, log lines written out. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(
      this.slots.map(async (s) => {
        if (s.alive) {
          await s.request<void>((rid) => ({ t: 'close', rid }), 5000).catch(() => undefined);
          void s.worker.terminate();
        }
        await s.exited;
      }),
    );
  }

  /** Starts the worker of `slot`; resolves with its bound addresses once it listens. */
  private spawn(slot: Slot): Promise<{ addresses: AddressInfo[]; httpAddresses: AddressInfo[] }> {
    const init: WorkerInit = {
      slot: slot.n,
      argv: this.deps.source.argv,
      env: this.deps.source.env,
      listen: this.listen,
      httpBootListen: this.httpBootListen,
      limits: this.limitMemory,
      s3Reachable: this.s3ReachableMemory,
    };
    const worker = new Worker(workerEntry(), { workerData: init, name: `tftp-gateway worker ${slot.n}` });
    slot.worker = worker;
    slot.alive = true;
    slot.startedAt = Date.now();
    slot.lastMetrics = undefined;
    let exitResolve!: () => void;
    slot.exited = new Promise<void>((resolve) => (exitResolve = resolve));
    return new Promise<{ addresses: AddressInfo[]; httpAddresses: AddressInfo[] }>((resolve, reject) => {
      let started = false;
      const timer = setTimeout(() => {
        if (started) return;
        started = true;
        reject(new Error(`worker ${slot.n} did not start within ${START_TIMEOUT_MS} ms`));
        void worker.terminate();
      }, START_TIMEOUT_MS);
      worker.on('message', (m: WorkerToMain) => {
        if (m.t === 'ready') {
          if (started) return;
          started = true;
          clearTimeout(timer);
          if (this.draining) worker.postMessage({ t: 'drain' } satisfies MainToWorker);
          resolve({ addresses: m.addresses, httpAddresses: m.httpAddresses });
          return;
        }
        if (m.t === 'startFailed') {
          if (started) return;
          started = true;
          clearTimeout(timer);
          // Whatever it bound before failing (UDP sockets of a replacement worker) goes with the thread.
          void worker.terminate();
          reject(new Error(`worker ${slot.n} could not start: ${m.message}`));
          return;
        }
        try {
          this.onMessage(slot, m);
        } catch (err) {
          this.deps.metrics.internalErrors.inc();
          this.deps.logger.error({ worker: slot.n, err: err instanceof Error ? err.stack : String(err) }, 'worker message handling fault');
        }
      });
      worker.on('error', (err) => {
        this.deps.logger.error({ worker: slot.n, err: err instanceof Error ? (err.stack ?? err.message) : String(err) }, 'worker thread error');
      });
      worker.on('exit', (code) => {
        const wasStarted = started;
        if (!started) {
          started = true;
          clearTimeout(timer);
          reject(new Error(`worker ${slot.n} exited (code ${code}) before it listened`));
        }
        this.onExit(slot, worker, code, wasStarted);
        exitResolve();
      });
    });
  }

  private onExit(slot: Slot, worker: Worker, code: number, wasStarted: boolean): void {
    if (slot.worker !== worker) return;
    slot.alive = false;
    for (const r of slot.replies.values()) r.reject(new Error(`worker ${slot.n} exited`));
    slot.replies.clear();
    const lost = slot.sessions.size;
    // Its ranges are let go and its uploads aborted: nothing half-written, no parts left behind.
    for (const h of slot.holds.values()) this.deps.cache.release(h.entry, h.key, h.info, h.index);
    slot.holds.clear();
    for (const sink of slot.uploads.values()) this.trackAbort(sink.abort(`worker ${slot.n} exited`));
    slot.uploads.clear();
    slot.httpActive = 0;
    for (const key of slot.sessions) {
      if (this.directory.get(key) === slot) this.directory.delete(key);
      // Its sessions no longer count against their clients' caps or --max-sessions.
      const address = key.split('|')[1];
      if (address !== undefined) this.limits.sessionClosed(parseClientAddress(address));
    }
    slot.sessions.clear();
    if (slot.lastMetrics) this.retired.push(slot.lastMetrics.filter((m) => String(m.type) !== 'gauge'));
    slot.lastMetrics = undefined;
    this.activity();
    if (this.closing) return;
    this.restarts.inc();
    // A worker that dies soon after it started waits longer before the next try (no crash loop).
    slot.respawnDelay = Date.now() - slot.startedAt < 10_000 ? Math.min(RESPAWN_MAX_MS, slot.respawnDelay * 2) : RESPAWN_MIN_MS;
    this.deps.logger.error(
      { worker: slot.n, exitCode: code, transfersEnded: lost, restartInMs: slot.respawnDelay, started: wasStarted },
      'worker exited: its transfers ended; starting a replacement',
    );
    const timer = setTimeout(() => {
      if (this.closing) return;
      this.spawn(slot).then(
        () => this.deps.logger.info({ worker: slot.n }, 'worker replaced'),
        (err: unknown) => this.deps.logger.error({ worker: slot.n, err: String(err) }, 'replacement worker failed to start'),
      );
    }, slot.respawnDelay);
    timer.unref();
  }

  private trackAbort(p: Promise<void>): void {
    const done = p.catch(() => undefined);
    this.pendingAborts.add(done);
    void done.then(() => this.pendingAborts.delete(done));
  }

  private activity(): void {
    const active = this.activeSessions;
    this.onActivity?.(active);
    if (active === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private reply(slot: Slot, rid: number, result: Promise<unknown>): void {
    result.then(
      (value) => slot.post({ t: 'reply', rid, ok: true, value }),
      (err: unknown) => slot.post({ t: 'reply', rid, ok: false, error: wire(err) }),
    );
  }

  private onMessage(slot: Slot, m: WorkerToMain): void {
    const { cache, store } = this.deps;
    switch (m.t) {
      case 'log':
        for (const line of m.lines) writeLine(this.deps.logger, line);
        for (const record of m.transfers ?? []) this.finished.emitFinished(record);
        return;
      case 'session':
        this.onSession(slot, m.open, m.key);
        return;
      case 'httpActive':
        slot.httpActive = m.active;
        this.activity();
        return;
      case 'stray': {
        const owner = this.directory.get(`${m.endpoint}|${m.address}|${m.port}`);
        const to = owner && owner !== slot && owner.alive ? owner : slot;
        if (to !== slot) this.handoffs.inc();
        to.post({ t: 'foreign', endpoint: m.endpoint, msg: m.msg, address: m.address, port: m.port });
        return;
      }
      case 'lookup':
        this.reply(slot, m.id, cache.lookup(m.key).then((a) => ({ info: { ...a.info }, stale: a.stale })));
        return;
      case 'head':
        this.reply(slot, m.id, store.head(m.key).then((info) => ({ ...info })));
        return;
      case 'range':
        // The cache's read-ahead advice (measured on S3) for the workers' transfers, fresh as ranges are asked for.
        Atomics.store(this.s3Reachable, 1, cache.readAheadRanges());
        this.onRange(slot, m.id, m.key, m.info, m.index);
        return;
      case 'prefetch':
        cache.prefetch(m.key, m.info, m.index);
        return;
      case 'release': {
        const h = slot.holds.get(m.id);
        if (!h) return;
        slot.holds.delete(m.id);
        cache.release(h.entry, h.key, h.info, h.index);
        return;
      }
      case 'invalidate':
        cache.invalidate(m.key);
        return;
      case 'upload':
        slot.uploads.set(m.id, store.createUpload(m.key, { ifNoneMatch: m.ifNoneMatch }));
        return;
      case 'uploadWrite': {
        const sink = slot.uploads.get(m.id);
        if (!sink) return;
        const id = m.id;
        let pending: Promise<void> | undefined;
        try {
          pending = sink.write(Buffer.from(m.data, 0, m.length));
        } catch (err) {
          pending = Promise.reject(err);
        }
        if (!pending) slot.post({ t: 'uploadAck', id });
        else
          pending.then(
            () => slot.post({ t: 'uploadAck', id }),
            (err: unknown) => slot.post({ t: 'uploadFailed', id, error: wire(err) }),
          );
        return;
      }
      case 'uploadFinish': {
        const sink = slot.uploads.get(m.id);
        if (!sink) {
          slot.post({ t: 'reply', rid: m.rid, ok: false, error: { code: 'ABORTED', message: 'upload is closed' } });
          return;
        }
        const id = m.id;
        this.reply(slot, m.rid, sink.finish().finally(() => slot.uploads.delete(id)));
        return;
      }
      case 'uploadAbort': {
        const sink = slot.uploads.get(m.id);
        slot.uploads.delete(m.id);
        const done = sink ? sink.abort(m.reason) : Promise.resolve();
        this.trackAbort(done);
        this.reply(slot, m.rid, done.catch(() => undefined));
        return;
      }
      case 'reply': {
        const waiter = slot.replies.get(m.rid);
        if (!waiter) return;
        slot.replies.delete(m.rid);
        if (m.ok) waiter.resolve(m.value);
        else waiter.reject(new Error(m.error?.message ?? 'worker request failed'));
        return;
      }
      default:
        return;
    }
  }

  private onSession(slot: Slot, open: boolean, key: string): void {
    if (open) {
      slot.sessions.add(key);
      if (this.deps.config.portMode === 'single') {
        const previous = this.directory.get(key);
        // The same client ip:port started over on another worker (its flow moved): the new request wins.
        if (previous && previous !== slot) previous.post({ t: 'replaceClient', key });
        this.directory.set(key, slot);
      }
    } else {
      slot.sessions.delete(key);
      if (this.directory.get(key) === slot) this.directory.delete(key);
    }
    this.activity();
  }

  /** A worker takes up a range: the cache's entry (fetch started if needed), held for that worker. */
  private onRange(slot: Slot, id: number, key: string, info: ObjectInfo, index: number): void {
    const cache = this.deps.cache;
    const entry = cache.range(key, info, index);
    if (entry.error || !entry.sharedState) {
      slot.post({ t: 'rangeFailed', id, error: wire(entry.error ?? new TransferError('STORAGE_ERROR', 'range not in shared memory')) });
      return;
    }
    cache.hold(entry);
    slot.holds.set(id, { entry, key, info, index });
    const buf = entry.buffer;
    slot.post({
      t: 'rangeReady',
      id,
      buffer: buf.buffer as SharedArrayBuffer,
      offset: buf.byteOffset,
      length: buf.length,
      state: entry.sharedState.buffer as SharedArrayBuffer,
    });
    if (!entry.complete) {
      entry.waitFor(buf.length).catch((err: unknown) => {
        if (slot.holds.has(id)) slot.post({ t: 'rangeFailed', id, error: wire(err) });
      });
    }
  }
}
