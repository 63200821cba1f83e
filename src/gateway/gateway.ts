import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { within } from '../bounded-wait.js';
import { ConfigError, configSource, type GatewayConfig } from '../config/config.js';
import { GatewayMetrics } from '../metrics/metrics.js';
import { createMetricsServer } from '../ops/http.js';
import { EmfReporter } from '../metrics/emf.js';
import { instrumentS3Client } from '../metrics/s3-instrumentation.js';
import { TaskProtection } from '../ops/task-protection.js';
import { systemClock, type Clock } from '../tftp/session/types.js';
import { BlockCache } from '../storage/block-cache.js';
import { EMBEDDED_CREDENTIALS, startEmbeddedStore, type EmbeddedStore } from '../storage/embedded-s3.js';
import { DiskTier } from '../storage/disk-tier.js';
import { AdaptiveRangeReader } from '../storage/adaptive-range.js';
import { S3ObjectStore } from '../storage/s3-store.js';
import { CallDeadline } from '../storage/deadline.js';
import { outageCause } from '../storage/s3-errors.js';
import { S3Health, trackS3Health } from '../storage/s3-health.js';
import type { Registry } from 'prom-client';
import { clientLimits, dispatcherOptions, httpFrontEndOptions, requestPolicy } from './compose.js';
import { HttpFrontEnd } from '../http/http-front-end.js';
import { Dispatcher } from '../tftp/dispatcher.js';
import { bindListenSocket, type UdpListenEndpoint } from '../tftp/listen.js';
import { writeLine, type Logger } from '../ops/logger.js';
import { RequestOpener } from '../tftp/requests.js';
import { reportTransfers, type TransferFinishedSource } from '../tftp/transfer-report.js';
import type { SessionHost } from './session-host.js';
import { UdpTransferSocketFactory } from '../tftp/transport.js';
import { WorkerPool } from '../workers/worker-pool.js';
import { warmSetFromConfig } from '../policy/warm-names.js';
import { diskWarmTier, memoryWarmTier, Warmer } from '../storage/warm-up.js';

export interface GatewayDeps {
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Explicit S3 credentials (tests, the local default); otherwise the AWS provider chain. */
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Register default process metrics (off in tests that start several gateways). */
  readonly defaultMetrics?: boolean;
  /** Where ECS_AGENT_URI is read from (scale-in protection). Default: process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Scale-in protection timing (tests). */
  readonly taskProtection?: { idleDelayMs?: number; renewAfterMs?: number; retryDelayMs?: number };
  /** CloudWatch EMF interval override in ms (tests); default --cloudwatch-emf-interval. */
  readonly emfIntervalMs?: number;
}

/** Most bytes a cold object's first HEAD brings along (a GET of its front instead of a HEAD). */
const HEAD_FRONT_MAX = 1024 * 1024;

/** How long stop() waits for the disk tier's writes in flight. */
const DISK_CLOSE_MS = 5000;

/** How long stop() waits for the warm-up to end after aborting it. */
const WARM_STOP_MS = 5000;

/** How long a readiness answer (HeadBucket) is reused. */
const READY_CACHE_MS = 10_000;

type BucketProbe = { readonly ok: true } | { readonly ok: false; readonly outage: boolean; readonly detail: string };

/**
 * The running gateway: UDP endpoints, dispatcher, S3 store and cache, HTTP metrics/health.
 * `stop()` drains (new requests refused), waits up to the deadline, then aborts what is left.
 */
export class Gateway {
  private stopping: Promise<void> | undefined;
  private bucketProbe: { at: number; result: Promise<BucketProbe> } | undefined;
  private socketsBound = true;
  private emf: EmfReporter | undefined;
  private protection: TaskProtection | undefined;
  /** Warm before ready (--warm, --warm-file): started once the gateway listens. */
  private warmer: Warmer | undefined;

  private constructor(
    readonly config: GatewayConfig,
    readonly metrics: GatewayMetrics,
    /** The sessions: this thread's dispatcher, or the worker pool (--workers > 1). */
    readonly dispatcher: SessionHost,
    private readonly endpoints: readonly UdpListenEndpoint[],
    /** The worker threads (--workers > 1), else undefined. */
    readonly workers: WorkerPool | undefined,
    private readonly httpServer: http.Server | undefined,
    private readonly client: S3Client,
    private readonly cache: BlockCache,
    private readonly health: S3Health,
    private readonly embedded: EmbeddedStore | undefined,
    private readonly logger: Logger,
    /** The HTTP boot front end of this thread (single-threaded mode; workers run their own). */
    private readonly httpBoot: HttpFrontEnd | undefined,
    /** The disk cache tier (--cache-dir): its writes in flight finish (or are cut) at stop. */
    private readonly disk: DiskTier | undefined,
  ) {}

  static async start(config: GatewayConfig, deps: GatewayDeps): Promise<Gateway> {
    const logger = deps.logger;
    // The warm set's names are checked before anything starts (the CLI has checked them already).
    const warmSet = warmSetFromConfig(config);
    if (warmSet.problems.length > 0) throw new ConfigError(warmSet.problems);
    let embedded: EmbeddedStore | undefined;
    let endpoint = config.s3Endpoint;
    let credentials = deps.credentials;
    let forcePathStyle = config.s3ForcePathStyle;
    let checksum = config.s3Checksum;
    if (config.local) {
      embedded = await startEmbeddedStore(config.localDir, config.s3Bucket);
      endpoint = embedded.endpoint;
      credentials = { ...EMBEDDED_CREDENTIALS };
      forcePathStyle = true;
      checksum = 'when-required';
      logger.info({ endpoint, dir: config.localDir, bucket: config.s3Bucket }, 'embedded S3-compatible store started');
    }
    const checksumMode = checksum === 'when-required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
    const client = new S3Client({
      region: config.s3Region,
      ...(endpoint ? { endpoint } : {}),
      forcePathStyle,
      maxAttempts: config.s3MaxAttempts,
      requestChecksumCalculation: checksumMode,
      responseChecksumValidation: checksumMode,
      ...(credentials ? { credentials } : {}),
      requestHandler: {
        // A store that accepts a connection and then says nothing must fail the call (the SDK only
        // warns unless told to throw), and so must a body that stalls mid-stream (socket idle).
        requestTimeout: config.s3RequestTimeoutMs,
        throwOnRequestTimeout: true,
        socketTimeout: config.s3RequestTimeoutMs,
        connectionTimeout: 5000,
        httpAgent: { keepAlive: true, maxSockets: 256 },
        httpsAgent: { keepAlive: true, maxSockets: 256 },
      },
    });

    const metrics = new GatewayMetrics({ defaultMetrics: deps.defaultMetrics ?? true });
    // Every S3 call (reads, lib-storage's multipart calls, HeadBucket) is counted by the client's
    // middleware, once per call with retries apart.
    instrumentS3Client(client, metrics);
    // Whether S3 answers, from every call's outcome: a log line per transition, and a gauge.
    /** Worker threads read S3 reachability from shared memory (set once the pool exists). */
    let reachabilityToWorkers: ((reachable: boolean) => void) | undefined;
    const health = new S3Health((change) => {
      metrics.s3Reachable.set(change.reachable ? 1 : 0);
      reachabilityToWorkers?.(change.reachable);
      if (change.reachable) logger.info({ operation: change.operation, downMs: change.downMs }, 'S3 reachable again');
      else logger.warn({ operation: change.operation, cause: change.cause }, 'S3 unreachable: serving what is cached');
    });
    trackS3Health(client, health);
    const store = new S3ObjectStore(client, {
      bucket: config.s3Bucket,
      partSize: config.uploadPartSize,
      uploadQueueSize: config.uploadQueueSize,
      rangeRetries: 3,
      metadataTimeoutMs: config.s3MetadataTimeoutMs,
      retryBudgetMs: config.s3RetryBudgetMs,
      onBytesFetched: (n) => metrics.s3BytesFetched.inc(n),
    });
    // Ranges are read with several GETs at once, parts and read-ahead sized from measured S3
    // latency and throughput (--range-streams per range, --s3-streams in all).
    const s3Reader = new AdaptiveRangeReader(store, { streamsPerRange: config.rangeStreams, maxStreams: config.s3Streams, frontBytes: HEAD_FRONT_MAX });
    // --cache-dir: a persistent disk tier between the memory cache and S3 (start-up never waits for S3).
    let disk: DiskTier | undefined;
    if (config.cacheDir) {
      const dir = config.cacheDir;
      disk = await DiskTier.open(s3Reader, {
        dir,
        maxBytes: config.cacheDirSize,
        onHit: () => metrics.cacheDiskHits.inc(),
        onError: () => metrics.cacheDiskErrors.inc(),
        onCorrupt: (file) => {
          metrics.cacheDiskCorrupt.inc();
          logger.warn({ file }, 'disk cache: a range file failed its checksum; deleted, reading the range from S3');
        },
        onDisabled: (err) =>
          logger.error(
            { dir, code: (err as NodeJS.ErrnoException).code, err: String(err) },
            'disk cache tier turned off: a write failed (disk full or I/O error); serving from memory and S3',
          ),
      });
      const tier = disk;
      metrics.cacheDiskBytesSource = () => tier.bytesHeld;
      metrics.cacheDiskMetadataBytesSource = () => tier.metadataBytesHeld;
      metrics.cacheDiskEnabledSource = () => (tier.enabled ? 1 : 0);
      logger.info({ dir, maxBytes: config.cacheDirSize, bytes: tier.bytesHeld, objects: tier.persisted.length }, 'disk cache tier opened');
    }
    const reader = disk ?? s3Reader;
    const cache = new BlockCache(reader, {
      maxBytes: config.cacheSize,
      rangeSize: config.rangeSize,
      metadataTtlMs: config.metadataTtlMs,
      staleIfErrorMs: config.staleIfErrorS * 1000,
      metadata: {
        health,
        onRefreshFailure: (cause) => metrics.metadataRefreshFailures.inc({ cause }),
        onStaleServed: () => metrics.staleTransfers.inc(),
        onStaleChange: (change) => {
          if (change.serving) {
            logger.warn(
              { key: change.key, cause: change.cause, staleIfErrorS: config.staleIfErrorS },
              'serving stale metadata: S3 cannot confirm cached objects, serving the cached version (--stale-if-error)',
            );
          } else {
            logger.info({ reason: change.reason }, 'stopped serving stale metadata');
          }
        },
      },
      onHit: () => metrics.cacheHits.inc(),
      onMiss: () => metrics.cacheMisses.inc(),
      onEvict: () => metrics.cacheEvictions.inc(),
      // Worker threads read the ranges in place.
      sharedMemory: config.workers > 1,
      ...(disk ? { lowerTierBytes: () => disk.bytesHeld } : {}),
      readAheadRanges: () => s3Reader.readAheadRanges(config.rangeSize),
    });
    for (const m of disk?.persisted ?? []) cache.seedMetadata(m.key, m.info, m.validatedAt);
    metrics.cacheBytesSource = () => cache.bytesHeld;
    metrics.s3ReadSource = () => ({
      latencyMs: s3Reader.estimator.latencyMs,
      streamBytesPerSecond: s3Reader.estimator.streamBytesPerSecond,
      partBytes: s3Reader.partFor(config.rangeSize),
      streams: s3Reader.streamsActive,
      // As CachedObjectSource takes it: --read-ahead 0 is off, else at least --read-ahead.
      readAheadRanges: config.readAhead === 0 ? 0 : Math.max(config.readAhead, s3Reader.readAheadRanges(config.rangeSize)),
    });
    metrics.staleObjectsSource = () => cache.staleObjects;

    const endpoints: UdpListenEndpoint[] = [];
    let httpServer: http.Server | undefined;
    let pool: WorkerPool | undefined;
    let httpBoot: HttpFrontEnd | undefined;
    let host: SessionHost;
    try {
      if (config.workers > 1) {
        // Worker threads serve UDP (SO_REUSEPORT); this thread keeps the cache, S3, HTTP and signals.
        const source = configSource(config);
        if (!source) throw new Error('--workers > 1 needs a configuration from loadConfig()');
        pool = await WorkerPool.start({ config, source, cache, store, metrics, logger, s3Reachable: health.reachable });
        const started = pool;
        reachabilityToWorkers = (reachable) => started.setS3Reachable(reachable);
        host = pool;
      } else {
        // One thread: today's path, no worker threads and no messages.
        const opener = new RequestOpener(requestPolicy(config), cache, store, health);
        const clock = deps.clock ?? systemClock;
        // One per-client request budget for both front ends.
        const limits = clientLimits(config, clock);
        const dispatcher = new Dispatcher(
          { ...dispatcherOptions(config), clientLimits: limits },
          opener,
          metrics,
          logger,
          clock,
          new UdpTransferSocketFactory(config.portRange, logger),
        );
        reportTransfers(dispatcher.transfers, metrics, logger, () => dispatcher.progress());
        host = dispatcher;
        if (config.httpBootListen.length > 0) {
          httpBoot = await HttpFrontEnd.start(httpFrontEndOptions(config, 1), { objects: opener.objects, limits, metrics, logger });
        }
        for (const [id, addr] of config.listen.entries()) {
          endpoints.push(await bindListenSocket(id, addr.host, addr.port, dispatcher, logger));
        }
      }
      const gatewayRef: { current?: Gateway } = {};
      if (config.httpListen) {
        const exposition = pool ? poolExposition(pool, metrics.registry) : metrics.registry;
        httpServer = createMetricsServer(exposition, {
          live: () => gatewayRef.current?.listening === true,
          ready: () => gatewayRef.current?.checkReady() ?? Promise.resolve({ ok: false, reason: 'starting' }),
        });
        await listenHttp(httpServer, config.httpListen.host, config.httpListen.port);
      }
      const gateway = new Gateway(config, metrics, host, endpoints, pool, httpServer, client, cache, health, embedded, logger, httpBoot, disk);
      gatewayRef.current = gateway;
      gateway.startReporters(deps);
      if (warmSet.targets.length > 0) {
        // After listening: start-up never waits for S3 (persisted metadata already seeds the cache).
        const warmer = new Warmer({
          targets: warmSet.targets,
          store: { head: (key, signal) => reader.head(key, signal), list: (prefix, limit, signal) => store.list(prefix, limit, signal) },
          tier: disk ? diskWarmTier(disk, cache) : memoryWarmTier(cache, config.cacheSize),
          rangeSize: config.rangeSize,
          seed: (key, info, validatedAt) => cache.seedMetadata(key, info, validatedAt),
          known: disk?.persisted ?? [],
          timeoutMs: config.warmTimeoutS * 1000,
          intervalMs: config.warmIntervalS * 1000,
          logger,
          onTimeout: () => metrics.warmTimeouts.inc(),
          onRefresh: (result) => metrics.warmRefreshes.inc({ result }),
          onError: () => metrics.warmErrors.inc(),
        });
        gateway.warmer = warmer;
        metrics.warmProgressSource = () => warmer.progress();
        warmer.start();
      }
      logger.info(
        {
          udp: gateway.udpAddresses.map((a) => `${a.address}:${a.port}`),
          http: gateway.httpAddress,
          httpBoot: gateway.httpBootAddresses.map((a) => `${a.address}:${a.port}`),
          portMode: config.portMode,
          workers: config.workers,
        },
        'tftp-gateway listening',
      );
      return gateway;
    } catch (err) {
      for (const e of endpoints) e.udp.close();
      await httpBoot?.close();
      await pool?.close();
      httpServer?.close();
      cache.close();
      await disk?.close();
      client.destroy();
      await embedded?.close();
      throw err;
    }
  }

  /**
   * Every transfer's finished record (worker threads' too), for subscribers beyond the gateway's
   * own metrics and log lines: `gateway.transfers.onFinished((t) => ...)`.
   */
  get transfers(): TransferFinishedSource {
    return this.dispatcher.transfers;
  }

  /** Where the UDP sockets are bound (ports resolved when configured as 0). */
  get udpAddresses(): AddressInfo[] {
    if (this.workers) return this.workers.addresses;
    return this.endpoints.map((e) => e.udp.socket.address());
  }

  /** UDP served: sockets bound (worker pool: at least one worker listening). */
  get listening(): boolean {
    if (!this.socketsBound) return false;
    return this.workers ? this.workers.workersRunning > 0 : this.endpoints.length > 0;
  }

  /**
   * A metric's samples as /metrics has them (summed over worker threads), e.g. for tests:
   * `await gateway.metricValues('tftp_gateway_packets_received_total')`.
   */
  async metricValues(name: string): Promise<{ labels: Record<string, string | number>; value: number }[]> {
    const registry = this.workers ? await this.workers.collect() : this.metrics.registry;
    const metric = registry.getSingleMetric(name);
    if (!metric) return [];
    const got = await metric.get();
    return got.values.map((v) => ({ labels: { ...v.labels } as Record<string, string | number>, value: v.value }));
  }

  /** Where the HTTP boot front end listens (empty when off). */
  get httpBootAddresses(): AddressInfo[] {
    if (this.workers) return this.workers.httpBootAddresses;
    return this.httpBoot?.addresses ?? [];
  }

  get httpAddress(): string | undefined {
    const a = this.httpServer?.address();
    return a && typeof a === 'object' ? `${a.address}:${a.port}` : undefined;
  }

  /**
   * Readiness: not draining, our credentials work on the bucket, and content can be served. An S3
   * outage alone does not make the task unready while it holds cached content (pulling every task
   * out of the load balancer would stop that too); the body then says S3 is unreachable. A cold
   * task during an outage, a bucket that refuses us or does not exist, and draining are unready.
   */
  async checkReady(): Promise<{ ok: boolean; reason?: string; note?: string }> {
    if (this.stopping) return { ok: false, reason: 'draining' };
    let probe = await this.probeBucket();
    // A remembered outage answer is old news once S3 has answered again since.
    if (!probe.ok && probe.outage && this.health.reachable && this.health.changedAt > (this.bucketProbe?.at ?? 0)) {
      this.bucketProbe = undefined;
      probe = await this.probeBucket();
    }
    if (!probe.ok && !probe.outage) return { ok: false, reason: `S3 bucket check failed: ${probe.detail}` };
    // The first warm-up holds readiness until the warm set is in (or --warm-timeout passes).
    const warming = this.warmer?.readinessReason;
    if (warming) return { ok: false, reason: warming };
    if (probe.ok && this.health.reachable) return { ok: true };
    const why = probe.ok ? this.health.cause ?? 'calls failing' : probe.detail;
    if (this.cache.servesCachedContent) return { ok: true, note: `S3 unreachable (${why}): serving cached content only` };
    return { ok: false, reason: `S3 unreachable (${why}) and nothing cached to serve` };
  }

  /** HeadBucket with a short deadline; the answer is reused for READY_CACHE_MS and shared by concurrent probes. */
  private probeBucket(): Promise<BucketProbe> {
    const now = Date.now();
    if (this.bucketProbe && now - this.bucketProbe.at < READY_CACHE_MS) return this.bucketProbe.result;
    const deadline = new CallDeadline(this.config.s3MetadataTimeoutMs, 'HeadBucket');
    const result = deadline
      .race(this.client.send(new HeadBucketCommand({ Bucket: this.config.s3Bucket }), { abortSignal: deadline.signal }))
      .then(
        (): BucketProbe => ({ ok: true }),
        (err: unknown): BucketProbe => {
          const cause = outageCause(err);
          const name = err instanceof Error ? err.name : String(err);
          return cause ? { ok: false, outage: true, detail: cause } : { ok: false, outage: false, detail: name };
        },
      )
      .finally(() => deadline.close());
    this.bucketProbe = { at: now, result };
    return result;
  }

  /**
   * Drains and stops: new requests get ERROR 0 "Server shutting down", transfers in flight may
   * finish within `drainMs`, then the rest are aborted (uploads aborted, never half-written).
   */
  stop(drainMs = this.config.drainTimeoutS * 1000): Promise<void> {
    this.stopping ??= this.doStop(drainMs);
    return this.stopping;
  }

  private startReporters(deps: GatewayDeps): void {
    const config = this.config;
    if (config.cloudwatchEmf) {
      this.emf = new EmfReporter({
        serviceName: config.serviceName,
        intervalMs: deps.emfIntervalMs ?? config.cloudwatchEmfIntervalS * 1000,
        // HTTP responses are transfers too (the worker pool's count already includes its workers').
        activeSessions: () => this.dispatcher.activeSessions + (this.httpBoot?.active ?? 0),
        write: (line) => writeLine(this.logger, line),
      });
      this.emf.start();
    }
    if (config.scaleInProtection) {
      const agentUri = (deps.env ?? process.env).ECS_AGENT_URI;
      if (agentUri) {
        const protection = new TaskProtection({ agentUri, logger: this.logger, ...deps.taskProtection });
        this.protection = protection;
        // Responses of the HTTP front end count as transfers (worker threads report theirs to the pool).
        const httpBoot = this.httpBoot;
        this.dispatcher.onActivity = (active) => protection.update(active + (httpBoot?.active ?? 0));
        if (httpBoot) httpBoot.onActivity = (active) => protection.update(this.dispatcher.activeSessions + active);
      } else {
        this.logger.info('scale-in protection requested but ECS_AGENT_URI is not set (not on ECS): off');
      }
    }
  }

  /** Skips the rest of a drain in progress: abort everything now. */
  abortNow(): void {
    this.dispatcher.abortAll();
    this.httpBoot?.abortAll();
  }

  private async doStop(drainMs: number): Promise<void> {
    // Warm-up fetches nothing more while the gateway drains (its S3 calls and fills are aborted).
    const warmStopped = this.warmer ? within(this.warmer.stop(), WARM_STOP_MS, undefined) : undefined;
    this.dispatcher.startDraining();
    // HTTP: no new connections, idle keep-alive connections closed, responses in progress go on.
    this.httpBoot?.startDraining();
    this.metrics.draining.set(1);
    const active = this.dispatcher.activeSessions + (this.httpBoot?.active ?? 0);
    if (active > 0) {
      this.logger.info({ active, drainMs }, 'draining transfers');
      await within(Promise.all([this.dispatcher.whenIdle(), this.httpBoot?.whenIdle()]), drainMs, undefined);
    }
    if (this.dispatcher.activeSessions + (this.httpBoot?.active ?? 0) > 0) {
      this.logger.warn({ active: this.dispatcher.activeSessions + (this.httpBoot?.active ?? 0) }, 'drain deadline reached: aborting transfers');
      this.dispatcher.abortAll();
      this.httpBoot?.abortAll();
    }
    await this.httpBoot?.close();
    await this.dispatcher.settled();
    this.dispatcher.endLingering();
    // dgram hands a datagram to the kernel a tick after send(): let the ERRORs just sent to aborted
    // clients leave before the listening sockets close.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await Promise.all(this.endpoints.map((e) => new Promise<void>((resolve) => e.udp.socket.close(() => resolve()))));
    await this.workers?.close();
    this.socketsBound = false;
    this.emf?.stop();
    await this.protection?.close();
    if (this.httpServer) {
      this.httpServer.closeAllConnections?.();
      await new Promise<void>((resolve) => this.httpServer!.close(() => resolve()));
    }
    await warmStopped;
    this.cache.close();
    // Range files being written finish (a write cut by the deadline leaves only a temp file, removed at the next start).
    if (this.disk) await within(this.disk.close(), DISK_CLOSE_MS, undefined);
    this.client.destroy();
    await this.embedded?.close();
    this.logger.info('tftp-gateway stopped');
  }
}

/** /metrics of a worker pool: this thread's metrics and every worker's, summed, at each scrape. */
function poolExposition(pool: WorkerPool, registry: Registry): Pick<Registry, 'metrics' | 'contentType'> {
  return {
    contentType: registry.contentType,
    metrics: async () => (await pool.collect()).metrics(),
  };
}

function listenHttp(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
