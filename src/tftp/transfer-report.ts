import type { GatewayMetrics } from '../metrics/metrics.js';
import type { TransferStats } from './session/types.js';
import { sanitize, type Logger } from '../ops/logger.js';
import type { Peer } from './transport.js';

/**
 * What a transfer reports, as events (facebook/fbtftp's per-session stats callback): the dispatcher
 * emits one `started` record when a session starts and one `finished` record, with its stats, when
 * it ends; metrics and log lines are subscribers (countTransfers, logTransfers), wired by the
 * composition root. Records are plain data: a worker thread forwards its `finished` records to the
 * main thread (WorkerPool), where they are emitted again for the gateway's own subscribers.
 */

export type TransferOperation = 'read' | 'write';

/** A transfer whose session has started (its first packet is about to leave). */
export interface TransferStarted {
  /** Unique among one dispatcher's transfers (ties `finished` to `started`). */
  readonly id: number;
  readonly client: Peer;
  readonly operation: TransferOperation;
  /** The requested name, sanitised for logs. */
  readonly file: string;
  readonly key: string;
  /** The request's options as the client sent them, sanitised. */
  readonly requestOptions: Readonly<Record<string, string>>;
  readonly mode: 'octet' | 'netascii';
  readonly blksize: number;
  readonly windowsize: number;
  /** A read's size in bytes, when known in advance. */
  readonly size?: number;
  /** Per-transfer mode: the transfer's own server port. */
  readonly serverPort?: number;
  /** The worker thread (--workers > 1) that serves the transfer. */
  readonly worker?: number;
}

/** A transfer that ended, with its stats: emitted exactly once per started transfer. */
export interface TransferFinished extends TransferStats {
  readonly id: number;
  readonly client: Peer;
  readonly operation: TransferOperation;
  readonly file: string;
  readonly key: string;
  readonly mode: 'octet' | 'netascii';
  /** The options as negotiated (the OACK's contents). */
  readonly options: Readonly<Record<string, string>>;
  readonly worker?: number;
}

export type Listener<T> = (record: T) => void;

/** Where transfer-finished records can be subscribed to (a dispatcher's events, or a worker pool's). */
export interface TransferFinishedSource {
  /** Calls `listener` with every finished transfer from now on; returns the unsubscribe function. */
  onFinished(listener: Listener<TransferFinished>): () => void;
}

/** Synchronous subscriber lists for one dispatcher's transfers (in subscription order). */
export class TransferEvents implements TransferFinishedSource {
  private readonly startedListeners: Listener<TransferStarted>[] = [];
  private readonly finishedListeners: Listener<TransferFinished>[] = [];

  onStarted(listener: Listener<TransferStarted>): () => void {
    return subscribe(this.startedListeners, listener);
  }

  onFinished(listener: Listener<TransferFinished>): () => void {
    return subscribe(this.finishedListeners, listener);
  }

  emitStarted(record: TransferStarted): void {
    for (const listener of [...this.startedListeners]) listener(record);
  }

  emitFinished(record: TransferFinished): void {
    for (const listener of [...this.finishedListeners]) listener(record);
  }
}

function subscribe<T>(list: Listener<T>[], listener: Listener<T>): () => void {
  list.push(listener);
  return () => {
    const i = list.indexOf(listener);
    if (i >= 0) list.splice(i, 1);
  };
}

/** The "transfer started" and "transfer finished" log lines (one each per transfer). */
export function logTransfers(events: TransferEvents, logger: Logger): () => void {
  const offStarted = events.onStarted((t) => {
    logger.info(
      {
        client: t.client.address,
        port: t.client.port,
        op: t.operation,
        file: t.file,
        key: t.key,
        options: t.requestOptions,
        mode: t.mode,
        blksize: t.blksize,
        windowsize: t.windowsize,
        ...(t.size !== undefined ? { size: t.size } : {}),
        ...(t.serverPort !== undefined ? { serverPort: t.serverPort } : {}),
      },
      'transfer started',
    );
  });
  const offFinished = events.onFinished((t) => {
    const level = t.result === 'ok' || t.result === 'size-probe' || t.result === 'replaced' ? 'info' : 'warn';
    logger[level](
      {
        client: t.client.address,
        port: t.client.port,
        op: t.operation,
        file: t.file,
        key: t.key,
        mode: t.mode,
        options: t.options,
        result: t.result,
        bytes: t.bytes,
        blocks: t.blocks,
        durationMs: Math.round(t.durationMs),
        retransmits: t.retransmits,
        timeouts: t.timeouts,
        ...(t.detail !== undefined && t.result !== 'ok' ? { detail: sanitize(t.detail, 512) } : {}),
      },
      'transfer finished',
    );
  });
  return () => {
    offStarted();
    offFinished();
  };
}

/** A running transfer's payload bytes so far (sampled at scrape time). */
export interface TransferProgress {
  readonly id: number;
  readonly bytes: number;
}

/**
 * The transfer metrics, from the events: started/finished counters, the active-sessions gauge,
 * durations, retransmissions and timeouts, and the bytes counter, which also moves while transfers
 * run (`countInFlight` at each scrape adds what running transfers carried since the last count).
 */
export class TransferMetrics {
  /** Running transfers: their operation and the bytes already added to the bytes counter. */
  private readonly live = new Map<number, { readonly operation: TransferOperation; counted: number }>();

  constructor(
    private readonly metrics: GatewayMetrics,
    events: TransferEvents,
  ) {
    events.onStarted((t) => {
      metrics.transfersStarted.inc({ operation: t.operation, protocol: 'tftp' });
      metrics.activeSessions.inc({ operation: t.operation, protocol: 'tftp' });
      this.live.set(t.id, { operation: t.operation, counted: 0 });
    });
    events.onFinished((t) => {
      const operation = t.operation;
      metrics.activeSessions.dec({ operation, protocol: 'tftp' });
      metrics.transfersFinished.inc({ operation, result: t.result, protocol: 'tftp' });
      metrics.transferDuration.observe({ operation, protocol: 'tftp' }, t.durationMs / 1000);
      this.countBytes(t.id, t.bytes);
      this.live.delete(t.id);
      if (t.retransmits > 0) metrics.retransmissions.inc(t.retransmits);
      if (t.timeouts > 0) metrics.timeouts.inc(t.timeouts);
    });
  }

  /** Adds the progress of running transfers to the bytes counter. */
  countInFlight(progress: Iterable<TransferProgress>): void {
    for (const p of progress) this.countBytes(p.id, p.bytes);
  }

  private countBytes(id: number, total: number): void {
    const entry = this.live.get(id);
    if (!entry) return;
    const delta = total - entry.counted;
    if (delta <= 0) return;
    entry.counted = total;
    this.metrics.transferBytes.inc({ direction: entry.operation === 'read' ? 'sent' : 'received', protocol: 'tftp' }, delta);
  }
}

/**
 * Metrics and log lines of one dispatcher's transfers (what the composition roots wire): the bytes
 * counter samples `progress` at each scrape.
 */
export function reportTransfers(
  events: TransferEvents,
  metrics: GatewayMetrics,
  logger: Logger,
  progress: () => Iterable<TransferProgress>,
): void {
  const counted = new TransferMetrics(metrics, events);
  logTransfers(events, logger);
  metrics.transferBytesInFlight = () => counted.countInFlight(progress());
}
