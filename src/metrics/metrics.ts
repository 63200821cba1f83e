import { TRANSFER_RESULTS } from '../tftp/session/types.js';
import type { WarmProgress } from '../storage/warm-up.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The gateway's Prometheus metrics, on a registry of its own. No label ever carries a file name
 * or a client address (unbounded cardinality).
 */
/** Label values of the packet counters, indexed by opcode. */
const PACKET_TYPES = ['unknown', 'RRQ', 'WRQ', 'DATA', 'ACK', 'ERROR', 'OACK'] as const;

/** Hands each non-zero count to `add` and zeroes it. */
function flushCounts(counts: number[], add: (index: number, n: number) => void): void {
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i]!;
    if (n === 0) continue;
    counts[i] = 0;
    add(i, n);
  }
}

/**
 * For gauges the main thread owns (cache, S3 calls, drain): with worker threads, /metrics takes the
 * main thread's value instead of summing every thread's.
 */
const MAIN_THREAD_GAUGE = { aggregator: 'first' } as const;

export class GatewayMetrics {
  readonly registry = new Registry();

  readonly transfersStarted = new Counter({
    name: 'tftp_gateway_transfers_started_total',
    help: 'Transfers started, by operation (read, write) and protocol (tftp, http: one HTTP GET or HEAD response)',
    labelNames: ['operation', 'protocol'] as const,
    registers: [this.registry],
  });
  readonly transfersFinished = new Counter({
    name: 'tftp_gateway_transfers_finished_total',
    help: 'Transfers finished, by operation, result and protocol',
    labelNames: ['operation', 'result', 'protocol'] as const,
    registers: [this.registry],
  });
  /** Called at scrape time to add the progress of transfers still running (see transferBytes). */
  transferBytesInFlight: () => void = () => undefined;
  /** Moves while transfers run (brought up to date at each scrape), not only when they end. */
  readonly transferBytes: Counter<'direction' | 'protocol'> = new Counter({
    name: 'tftp_gateway_transfer_bytes_total',
    help: 'Payload bytes carried, by direction (sent for reads, received for writes) and protocol',
    labelNames: ['direction', 'protocol'] as const,
    registers: [this.registry],
    collect: (): void => this.transferBytesInFlight(),
  });
  readonly transferDuration = new Histogram({
    name: 'tftp_gateway_transfer_duration_seconds',
    help: 'Duration of finished transfers, by operation and protocol',
    labelNames: ['operation', 'protocol'] as const,
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  });
  readonly activeSessions = new Gauge({
    name: 'tftp_gateway_active_sessions',
    help: 'Transfers in progress, by operation and protocol',
    labelNames: ['operation', 'protocol'] as const,
    registers: [this.registry],
  });
  readonly httpResponses = new Counter({
    name: 'tftp_gateway_http_responses_total',
    help: 'HTTP responses of the boot front end, by status code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly httpConnections = new Gauge({
    name: 'tftp_gateway_http_connections',
    help: 'Open connections of the HTTP boot front end',
    registers: [this.registry],
  });
  readonly httpConnectionsRefused = new Counter({
    name: 'tftp_gateway_http_connections_refused_total',
    help: 'HTTP connections refused by a cap, by reason (max-connections, max-connections-per-client)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly retransmissions = new Counter({
    name: 'tftp_gateway_retransmissions_total',
    help: 'Packets sent again after a timeout or a loss signal',
    registers: [this.registry],
  });
  readonly timeouts = new Counter({
    name: 'tftp_gateway_timeouts_total',
    help: 'Retransmission timer expiries',
    registers: [this.registry],
  });
  readonly errorsSent = new Counter({
    name: 'tftp_gateway_errors_sent_total',
    help: 'TFTP ERROR packets sent, by error code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  /**
   * Datagrams by packet type, counted on the packet path in plain numbers (index: opcode, 0 for an
   * unknown one; the last slot: malformed) and added to the counters at scrape time: a prom-client
   * increment per datagram was a measurable share of the lock-step path.
   */
  private readonly receivedCounts = new Array<number>(PACKET_TYPES.length + 1).fill(0);
  private readonly sentCounts = new Array<number>(PACKET_TYPES.length).fill(0);
  readonly packetsReceived: Counter<'type'> = new Counter({
    name: 'tftp_gateway_packets_received_total',
    help: 'Datagrams received, by packet type (malformed when undecodable)',
    labelNames: ['type'] as const,
    registers: [this.registry],
    collect: (): void => {
      flushCounts(this.receivedCounts, (i, n) => this.packetsReceived.inc({ type: i < PACKET_TYPES.length ? PACKET_TYPES[i]! : 'malformed' }, n));
    },
  });
  readonly packetsSent: Counter<'type'> = new Counter({
    name: 'tftp_gateway_packets_sent_total',
    help: 'Datagrams sent, by packet type',
    labelNames: ['type'] as const,
    registers: [this.registry],
    collect: (): void => {
      flushCounts(this.sentCounts, (i, n) => this.packetsSent.inc({ type: PACKET_TYPES[i]! }, n));
    },
  });
  readonly requestsRefused = new Counter({
    name: 'tftp_gateway_requests_refused_total',
    help: 'Requests refused before a transfer started, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly unverifiedSendsSuppressed = new Counter({
    name: 'tftp_gateway_unverified_sends_suppressed_total',
    help: 'Datagrams not sent to a peer that had not answered yet (per-request or per-address byte budget spent: forged-source protection)',
    registers: [this.registry],
  });
  readonly internalErrors = new Counter({
    name: 'tftp_gateway_internal_errors_total',
    help: 'Exceptions caught inside a transfer (the transfer ended with ERROR 0; the process and other transfers went on)',
    registers: [this.registry],
  });
  readonly s3Requests = new Counter({
    name: 'tftp_gateway_s3_requests_total',
    help: 'S3 API calls (each counted once, however many attempts it took), by operation and outcome (ok, not_found, denied, precondition_failed, client_error, throttled, server_error, network_error, aborted)',
    labelNames: ['operation', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly s3Latency = new Histogram({
    name: 'tftp_gateway_s3_request_duration_seconds',
    help: 'S3 API call latency including SDK retries (to the response headers for GetObject), by operation',
    labelNames: ['operation'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly s3BytesFetched = new Counter({
    name: 'tftp_gateway_s3_bytes_fetched_total',
    help: 'Object bytes read from S3',
    registers: [this.registry],
  });
  readonly s3Retries = new Counter({
    name: 'tftp_gateway_s3_retries_total',
    help: 'S3 attempts beyond the first (SDK retries), by operation',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });
  readonly s3BytesUploaded = new Counter({
    name: 'tftp_gateway_s3_bytes_uploaded_total',
    help: 'Object bytes stored in S3 (UploadPart and single PutObject calls that succeeded)',
    registers: [this.registry],
  });
  readonly multipartStarted = new Counter({
    name: 'tftp_gateway_s3_multipart_uploads_started_total',
    help: 'Multipart uploads created (CreateMultipartUpload succeeded)',
    registers: [this.registry],
  });
  readonly multipartCompleted = new Counter({
    name: 'tftp_gateway_s3_multipart_uploads_completed_total',
    help: 'Multipart uploads completed (CompleteMultipartUpload succeeded)',
    registers: [this.registry],
  });
  readonly multipartAborted = new Counter({
    name: 'tftp_gateway_s3_multipart_uploads_aborted_total',
    help: 'Multipart uploads aborted, their parts removed (AbortMultipartUpload succeeded)',
    registers: [this.registry],
  });
  readonly draining = new Gauge({
    name: 'tftp_gateway_draining',
    help: '1 while the gateway drains after SIGTERM (new requests refused), else 0',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
  });
  readonly cacheHits = new Counter({
    name: 'tftp_gateway_cache_hits_total',
    help: 'Range lookups answered by the block cache',
    registers: [this.registry],
  });
  readonly cacheMisses = new Counter({
    name: 'tftp_gateway_cache_misses_total',
    help: 'Range lookups that started an S3 read',
    registers: [this.registry],
  });
  readonly cacheEvictions = new Counter({
    name: 'tftp_gateway_cache_evictions_total',
    help: 'Ranges evicted from the block cache to stay within its byte budget',
    registers: [this.registry],
  });
  /** Read at scrape time for the cache gauge. */
  cacheBytesSource: () => number = () => 0;
  readonly cacheBytes: Gauge = new Gauge({
    name: 'tftp_gateway_cache_bytes',
    help: 'Bytes held by the block cache',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => this.cacheBytes.set(this.cacheBytesSource()),
  });

  /** Read at scrape time for the disk tier gauges. */
  cacheDiskBytesSource: () => number = () => 0;
  cacheDiskEnabledSource: () => number = () => 0;
  readonly cacheDiskBytes: Gauge = new Gauge({
    name: 'tftp_gateway_cache_disk_bytes',
    help: 'Bytes of range files held by the disk cache tier (--cache-dir)',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => this.cacheDiskBytes.set(this.cacheDiskBytesSource()),
  });
  cacheDiskMetadataBytesSource: () => number = () => 0;
  readonly cacheDiskMetadataBytes: Gauge = new Gauge({
    name: 'tftp_gateway_cache_disk_metadata_bytes',
    help: 'Bytes of object metadata files held by the disk cache tier (they count toward --cache-dir-size with the range files)',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => this.cacheDiskMetadataBytes.set(this.cacheDiskMetadataBytesSource()),
  });
  readonly cacheDiskEnabled: Gauge = new Gauge({
    name: 'tftp_gateway_cache_disk_enabled',
    help: '1 while the disk cache tier writes ranges; 0 when it is not configured or a write error (disk full, I/O error) turned it off',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => this.cacheDiskEnabled.set(this.cacheDiskEnabledSource()),
  });
  readonly cacheDiskHits = new Counter({
    name: 'tftp_gateway_cache_disk_hits_total',
    help: 'Ranges read from the disk cache tier instead of S3',
    registers: [this.registry],
  });
  readonly cacheDiskErrors = new Counter({
    name: 'tftp_gateway_cache_disk_errors_total',
    help: 'Disk cache tier I/O errors (failed writes and reads; corrupt files are counted in tftp_gateway_cache_disk_corrupt_total)',
    registers: [this.registry],
  });
  readonly cacheDiskCorrupt = new Counter({
    name: 'tftp_gateway_cache_disk_corrupt_total',
    help: 'Range files that failed their checksum (deleted, the range read from S3)',
    registers: [this.registry],
  });

  /** Read at scrape time for the warm-up gauges (undefined: no warm set). */
  warmProgressSource: () => WarmProgress | undefined = () => undefined;
  readonly warmObjects: Gauge<'state'> = new Gauge({
    name: 'tftp_gateway_warm_objects',
    help: 'Objects of the warm set (--warm, --warm-file) by state: done (in the cache), pending (being fetched or to be tried again), failed (not found or refused), skipped (past the cache budget)',
    labelNames: ['state'] as const,
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => {
      const p = this.warmProgressSource();
      for (const state of ['done', 'pending', 'failed', 'skipped'] as const) this.warmObjects.set({ state }, p?.objects[state] ?? 0);
    },
  });
  readonly warmBytes: Gauge<'state'> = new Gauge({
    name: 'tftp_gateway_warm_bytes',
    help: 'Bytes of the warm set by state: done (in the cache), pending (still to fetch)',
    labelNames: ['state'] as const,
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => {
      const p = this.warmProgressSource();
      this.warmBytes.set({ state: 'done' }, p?.bytes.done ?? 0);
      this.warmBytes.set({ state: 'pending' }, p?.bytes.pending ?? 0);
    },
  });
  readonly warming: Gauge = new Gauge({
    name: 'tftp_gateway_warming',
    help: '1 while /readyz waits for the first warm-up (503 warming), else 0',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => this.warming.set(this.warmProgressSource()?.warming ? 1 : 0),
  });
  readonly warmTimeouts = new Counter({
    name: 'tftp_gateway_warm_timeouts_total',
    help: 'First warm-ups that did not finish within --warm-timeout (the gateway became ready without the whole warm set)',
    registers: [this.registry],
  });
  readonly warmRefreshes = new Counter({
    name: 'tftp_gateway_warm_refreshes_total',
    help: 'Warm set revalidations (--warm-interval) per object, by result: fetched (a new version or a new object, now in the cache), unchanged, failed, removed (gone from a warmed path)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly warmErrors = new Counter({
    name: 'tftp_gateway_warm_errors_total',
    help: 'S3 calls of the warm-up that failed (listings, HEADs, range reads; 404s included)',
    registers: [this.registry],
  });

  readonly staleTransfers = new Counter({
    name: 'tftp_gateway_stale_transfers_total',
    help: 'Read transfers started on stale metadata (served past a failed refresh, --stale-if-error)',
    registers: [this.registry],
  });
  readonly metadataRefreshFailures = new Counter({
    name: 'tftp_gateway_metadata_refresh_failures_total',
    help: 'Object metadata lookups (HeadObject, first or after the TTL) that failed, by cause (server_error, throttled, timeout, network_error, other); 404s are answers, not failures',
    labelNames: ['cause'] as const,
    registers: [this.registry],
  });
  readonly s3Reachable = new Gauge({
    name: 'tftp_gateway_s3_reachable',
    help: '1 while S3 answers; 0 after an S3 call failed with an outage-type error (5xx, throttling, timeout, connection), until one succeeds',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
  });
  /** Read at scrape time for the stale-objects gauge. */
  staleObjectsSource: () => number = () => 0;
  readonly staleObjects: Gauge = new Gauge({
    name: 'tftp_gateway_stale_objects',
    help: 'Objects currently served from stale metadata (S3 failed to confirm them)',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => this.staleObjects.set(this.staleObjectsSource()),
  });

  /** Read at scrape time: what the adaptive S3 reader measures and plans (src/storage/adaptive-range.ts). */
  s3ReadSource: () => { latencyMs: number; streamBytesPerSecond: number; partBytes: number; streams: number; readAheadRanges: number } = () => ({
    latencyMs: 0,
    streamBytesPerSecond: 0,
    partBytes: 0,
    streams: 0,
    readAheadRanges: 0,
  });
  readonly s3ReadFirstByte: Gauge = new Gauge({
    name: 'tftp_gateway_s3_read_first_byte_seconds',
    help: 'Median time of recent S3 GETs and HEADs to their first byte (round trip and store latency): the cold path sizes parts and read-ahead from it',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => this.s3ReadFirstByte.set(this.s3ReadSource().latencyMs / 1000),
  });
  readonly s3ReadStreamRate: Gauge = new Gauge({
    name: 'tftp_gateway_s3_read_stream_bytes_per_second',
    help: 'Median rate one recent S3 GET delivered after its first byte',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => this.s3ReadStreamRate.set(this.s3ReadSource().streamBytesPerSecond),
  });
  readonly s3ReadPartBytes: Gauge = new Gauge({
    name: 'tftp_gateway_s3_read_part_bytes',
    help: 'Bytes one ranged GET of a --range-size range reads now (about two round trips of one stream, at most a range over --range-streams)',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => this.s3ReadPartBytes.set(this.s3ReadSource().partBytes),
  });
  readonly s3ReadStreams: Gauge = new Gauge({
    name: 'tftp_gateway_s3_read_streams',
    help: 'Ranged GETs in flight now (at most --s3-streams)',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => this.s3ReadStreams.set(this.s3ReadSource().streams),
  });
  readonly readAheadRanges: Gauge = new Gauge({
    name: 'tftp_gateway_read_ahead_ranges',
    help: 'Ranges a transfer keeps in flight ahead of itself now (--read-ahead, deeper when S3 latency and throughput need it)',
    registers: [this.registry],
    ...MAIN_THREAD_GAUGE,
    collect: (): void => this.readAheadRanges.set(this.s3ReadSource().readAheadRanges),
  });

  /** Counts a received datagram by opcode, or as malformed (hot path: a plain increment). */
  countReceived(opcode: number | 'malformed'): void {
    if (opcode === 'malformed') this.receivedCounts[PACKET_TYPES.length]!++;
    else this.receivedCounts[opcode > 0 && opcode < PACKET_TYPES.length ? opcode : 0]!++;
  }

  /** Counts a sent datagram by opcode (hot path: a plain increment). */
  countSent(opcode: number): void {
    this.sentCounts[opcode > 0 && opcode < PACKET_TYPES.length ? opcode : 0]!++;
  }

  /** Counts an ERROR packet as it is sent, by its code. */
  countErrorSent(code: number): void {
    this.errorsSent.inc({ code: String(code) });
  }

  constructor(options: { defaultMetrics: boolean } = { defaultMetrics: true }) {
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'tftp_gateway_' });
    // Known series start at 0, so dashboards and rate() see them before the first event.
    for (const operation of ['read', 'write'] as const) {
      this.transfersStarted.inc({ operation, protocol: 'tftp' }, 0);
      this.activeSessions.set({ operation, protocol: 'tftp' }, 0);
      for (const result of TRANSFER_RESULTS) this.transfersFinished.inc({ operation, result, protocol: 'tftp' }, 0);
    }
    // HTTP serves reads only.
    this.transfersStarted.inc({ operation: 'read', protocol: 'http' }, 0);
    this.activeSessions.set({ operation: 'read', protocol: 'http' }, 0);
    for (const result of TRANSFER_RESULTS) this.transfersFinished.inc({ operation: 'read', result, protocol: 'http' }, 0);
    for (const direction of ['sent', 'received'] as const) this.transferBytes.inc({ direction, protocol: 'tftp' }, 0);
    this.transferBytes.inc({ direction: 'sent', protocol: 'http' }, 0);
    for (const code of ['200', '206', '304', '400', '403', '404', '416', '503']) this.httpResponses.inc({ code }, 0);
    this.httpConnections.set(0);
    for (const reason of ['max-connections', 'max-connections-per-client'] as const) this.httpConnectionsRefused.inc({ reason }, 0);
    for (let code = 0; code <= 8; code++) this.errorsSent.inc({ code: String(code) }, 0);
    this.draining.set(0);
    this.unverifiedSendsSuppressed.inc(0);
    this.internalErrors.inc(0);
    this.s3Reachable.set(1);
    this.warmTimeouts.inc(0);
    this.warmErrors.inc(0);
    for (const result of ['fetched', 'unchanged', 'failed', 'removed'] as const) this.warmRefreshes.inc({ result }, 0);
    for (const cause of ['server_error', 'throttled', 'timeout', 'network_error', 'other'] as const) {
      this.metadataRefreshFailures.inc({ cause }, 0);
    }
  }
}
