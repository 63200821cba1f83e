import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The gateway's Prometheus metrics, on a registry of its own. No label ever carries a file name
 * or a client address (unbounded cardinality).
 */
export class GatewayMetrics {
  readonly registry = new Registry();

  readonly transfersStarted = new Counter({
    name: 'tftp_gateway_transfers_started_total',
    help: 'Transfers started, by operation (read, write)',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });
  readonly transfersFinished = new Counter({
    name: 'tftp_gateway_transfers_finished_total',
    help: 'Transfers finished, by operation and result',
    labelNames: ['operation', 'result'] as const,
    registers: [this.registry],
  });
  readonly transferBytes = new Counter({
    name: 'tftp_gateway_transfer_bytes_total',
    help: 'Payload bytes carried, by direction (sent for reads, received for writes)',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly transferDuration = new Histogram({
    name: 'tftp_gateway_transfer_duration_seconds',
    help: 'Duration of finished transfers, by operation',
    labelNames: ['operation'] as const,
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  });
  readonly activeSessions = new Gauge({
    name: 'tftp_gateway_active_sessions',
    help: 'Transfers in progress, by operation',
    labelNames: ['operation'] as const,
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
  readonly packetsReceived = new Counter({
    name: 'tftp_gateway_packets_received_total',
    help: 'Datagrams received, by packet type (malformed when undecodable)',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly packetsSent = new Counter({
    name: 'tftp_gateway_packets_sent_total',
    help: 'Datagrams sent, by packet type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly requestsRefused = new Counter({
    name: 'tftp_gateway_requests_refused_total',
    help: 'Requests refused before a transfer started, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly s3Requests = new Counter({
    name: 'tftp_gateway_s3_requests_total',
    help: 'S3 calls, by operation and outcome',
    labelNames: ['operation', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly s3Latency = new Histogram({
    name: 'tftp_gateway_s3_request_duration_seconds',
    help: 'S3 call latency (to the response headers for GetObject), by operation',
    labelNames: ['operation'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly s3BytesFetched = new Counter({
    name: 'tftp_gateway_s3_bytes_fetched_total',
    help: 'Object bytes read from S3',
    registers: [this.registry],
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
    collect: (): void => this.cacheBytes.set(this.cacheBytesSource()),
  });

  constructor(options: { defaultMetrics: boolean } = { defaultMetrics: true }) {
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'tftp_gateway_' });
  }
}
