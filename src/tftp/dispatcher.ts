import { decodePacket, encodeAck, ErrorCode, Opcode, type Packet, type RequestPacket } from './protocol/packet.js';
import { ReadSession } from './session/read-session.js';
import type { SessionBase } from './session/session-base.js';
import type { Clock, RetransmitPolicy, TransferStats, UploadSink } from './session/types.js';
import { WriteSession } from './session/write-session.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { parseClientAddress, type ClientAddress } from '../policy/client-address.js';
import { ClientLimits, type ClientLimiter } from '../policy/limits.js';
import { sanitize, sanitizeOptions, type Logger } from '../ops/logger.js';
import type { PreparedTransfer } from './requests.js';
import { AdmissionChecks, Refusals, type OpeningRequest } from './admission.js';
import { TransferChannels, type TransferChannel } from './channel.js';
import { faultDetail } from '../errors.js';
import { TransferEvents, type TransferOperation, type TransferProgress } from './transfer-report.js';
import type { DatagramSocket, Peer, TransferSocketFactory } from './transport.js';

export interface DispatcherOptions {
  readonly portMode: 'single' | 'per-transfer';
  readonly maxSessions: number;
  readonly maxWindowBytes: number;
  readonly maxUploadSize: number;
  /** Concurrent sessions per client address (0: no cap). */
  readonly maxSessionsPerClient?: number;
  /** Requests per second per client address (0: off), with this burst. */
  readonly rateLimit?: number;
  readonly rateBurst?: number;
  /** A session (or a request still opening) with no progress for this long is ended; 0: never. */
  readonly stallTimeoutMs?: number;
  /**
   * Bytes sent per request byte to a peer that has not answered yet (0: no bound). Below 100 keeps
   * a never-answered request's amplification under 100×.
   */
  readonly unverifiedAmplification?: number;
  /** Bytes per second one address's unverified peers may be sent in all (0: no cap). */
  readonly unverifiedBytesPerSecond?: number;
  readonly retransmit: RetransmitPolicy;
  /**
   * Limits shared with other threads (worker pool: SharedClientLimits, so per-client limits and
   * --max-sessions hold for the process); default: this dispatcher's own ClientLimits.
   */
  readonly clientLimits?: ClientLimiter;
  /** The worker thread this dispatcher runs on (--workers > 1): the `worker` of its transfer records. */
  readonly worker?: number;
}

/** A bound UDP socket the gateway listens on. */
export interface ListenEndpoint {
  readonly socket: DatagramSocket;
  readonly id: number;
}

interface SessionEntry extends OpeningRequest {
  /** Key in the session table: the client's ip:port on a listening socket (per-transfer: plus a sequence). */
  readonly key: string;
  /** The client's ip:port on the listening socket it wrote to. */
  readonly clientKey: string;
  readonly client: Peer;
  readonly operation: TransferOperation;
  /** The request's bytes: an identical retransmitted request is recognised by them. */
  readonly requestBytes: Buffer;
  readonly filename: string;
  /** The client's address, parsed once at admission: what per-client limits count and the policy checks. */
  readonly clientAddress: ClientAddress;
  /** When the request arrived: a request still opening after the stall timeout is dropped. */
  readonly openedAt: number;
  readonly listen: ListenEndpoint;
  /**
   * The way to the client: single-port mode, over the listening socket from the start; per-transfer
   * mode, set from the open step's result once the transfer's socket is bound.
   */
  channel: TransferChannel | undefined;
  session: SessionBase | undefined;
  /** The transfer's id in its started/finished records (set when the session starts). */
  transferId: number;
  closed: boolean;
  /** After a stored upload: the final block (wire) re-acknowledged until the linger ends. */
  linger: { readonly block: number; readonly timer: ReturnType<Clock['setTimeout']> } | undefined;
}

/** The open step's result: the request's storage side and its channel, or why there is none. */
type Opened =
  | { readonly ok: true; readonly prepared: PreparedTransfer; readonly channel: TransferChannel }
  | { readonly ok: false; readonly err: unknown; readonly prepared: PreparedTransfer | undefined; readonly channel: TransferChannel | undefined };

/** Both halves of the open step settled: one result (the first failure wins, storage before socket). */
function openedFrom(prepared: PromiseSettledResult<PreparedTransfer>, bound: PromiseSettledResult<TransferChannel>): Opened {
  const channel = bound.status === 'fulfilled' ? bound.value : undefined;
  if (prepared.status === 'fulfilled' && channel) return { ok: true, prepared: prepared.value, channel };
  const err: unknown = prepared.status === 'rejected' ? prepared.reason : (bound as PromiseRejectedResult).reason;
  return { ok: false, err, prepared: prepared.status === 'fulfilled' ? prepared.value : undefined, channel };
}

/** What the dispatcher needs of the request opener (RequestOpener in production). */
export interface TransferOpener {
  open(request: RequestPacket, client: ClientAddress): Promise<PreparedTransfer>;
  /** An upload was stored: reads must see the new object from now on. */
  uploaded(key: string): void;
}

/** Shortest linger after an upload's final ACK: two retransmission periods of common clients. */
const MIN_LINGER_MS = 12_000;

/**
 * Worker-pool hooks (src/workers/): the process-wide session directory, and where a
 * datagram goes that has no session here. Single-threaded mode has none.
 */
export interface PeerDirectory {
  /** An entry was added to (open) or removed from (close) the session table, by its client key. */
  changed(open: boolean, clientKey: string): void;
  /**
   * Single-port mode: a DATA/ACK/ERROR with no session on this thread. When another thread's
   * socket group served its flow before (a worker replaced), the datagram may belong to a session
   * there: return true to hand it over; false answers it here (ERROR 5).
   */
  forward(endpointId: number, msg: Buffer, from: Peer): boolean;
}

/** Default bytes per request byte to an unverified peer: under 100× amplification. */
const DEFAULT_UNVERIFIED_AMPLIFICATION = 90;

/**
 * Routes datagrams: requests open sessions, everything else goes to the session of its sender
 * (single-port: keyed by listening socket and client ip:port; per-transfer: each transfer's own
 * socket, so a transfer ID is the pair of ports). Owns the session table and every transfer channel.
 * What it leaves to others: the refusal checks (admission.ts), the ways to a client (channel.ts),
 * and what a transfer reports (transfer-report.ts: `transfers` events, which metrics and logs
 * subscribe to).
 */
export class Dispatcher {
  private readonly sessions = new Map<string, SessionEntry>();
  /** Per-transfer mode: the newest transfer of each client ip:port (retransmitted requests). */
  private readonly newestByClient = new Map<string, SessionEntry>();
  /** Ended uploads still answering a resent final DATA, by table key (single-port: the client's ip:port). */
  private readonly lingering = new Map<string, SessionEntry>();
  private draining = false;
  private sequence = 0;
  private transferIds = 0;
  /** Upload aborts still in flight: stop() waits for them so nothing is left half-written. */
  private readonly pendingAborts = new Set<Promise<void>>();
  private idleWaiters: (() => void)[] = [];
  /** Told the session count whenever it changes (scale-in protection). */
  onActivity: ((active: number) => void) | undefined;
  /** Worker pool: the process-wide session directory (undefined in single-threaded mode). */
  peers: PeerDirectory | undefined;
  /** Every transfer's started and finished records (see transfer-report.ts). */
  readonly transfers = new TransferEvents();
  /** Per-client request rate and session cap. */
  private readonly limits: ClientLimiter;
  private readonly admission: AdmissionChecks;
  private readonly refusals: Refusals;
  private readonly channels: TransferChannels;
  /** The stall sweep's timer; armed only while the table has entries. */
  private stallTimer: ReturnType<Clock['setTimeout']> | undefined;

  constructor(
    private readonly options: DispatcherOptions,
    private readonly opener: TransferOpener,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
    private readonly clock: Clock,
    transferSockets?: TransferSocketFactory,
  ) {
    this.limits = options.clientLimits ?? new ClientLimits({
      maxSessionsPerClient: options.maxSessionsPerClient ?? 0,
      ratePerSecond: options.rateLimit ?? 0,
      burst: options.rateBurst ?? 20,
      unverifiedBytesPerSecond: options.unverifiedBytesPerSecond ?? 0,
      clock,
    });
    if (options.portMode === 'per-transfer' && !transferSockets) throw new Error('per-transfer mode needs a transfer socket factory');
    this.channels = new TransferChannels({
      counters: {
        sent: (opcode) => metrics.countSent(opcode),
        errorSent: (code) => metrics.countErrorSent(code),
        suppressed: () => metrics.unverifiedSendsSuppressed.inc(),
      },
      unverifiedFactor: options.unverifiedAmplification ?? DEFAULT_UNVERIFIED_AMPLIFICATION,
      allowance: (clientAddress, bytes) => this.limits.spendUnverified(clientAddress, bytes),
      ...(transferSockets ? { sockets: transferSockets } : {}),
    });
    this.admission = new AdmissionChecks(options.maxSessions, this.limits);
    this.refusals = new Refusals(metrics, logger, this.channels);
  }

  /** Payload bytes carried so far by each running transfer (the bytes counter samples it at scrape time). */
  *progress(): Iterable<TransferProgress> {
    for (const entry of this.sessions.values()) {
      if (entry.session) yield { id: entry.transferId, bytes: entry.session.bytesSoFar };
    }
  }

  get activeSessions(): number {
    return this.sessions.size;
  }

  /** Stops accepting requests (they get ERROR 0 "Server shutting down"); sessions go on. */
  startDraining(): void {
    this.draining = true;
  }

  /** Resolves when the session table is empty. */
  whenIdle(): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Resolves when every upload abort started so far has finished. */
  async settled(): Promise<void> {
    while (this.pendingAborts.size > 0) await Promise.all([...this.pendingAborts]);
  }

  /** Wraps a sink so its abort is tracked until it completes. */
  private trackAborts(sink: UploadSink): UploadSink {
    return {
      write: (chunk) => sink.write(chunk),
      finish: () => sink.finish(),
      abort: (reason) => {
        const done = sink.abort(reason).catch(() => undefined);
        this.pendingAborts.add(done);
        void done.then(() => this.pendingAborts.delete(done));
        return done;
      },
    };
  }

  /** Ends every session now (uploads aborted), telling clients the server is going away. */
  abortAll(): void {
    for (const entry of [...this.sessions.values()]) {
      if (entry.session) entry.session.abort('shutdown', true);
      else this.dropEntry(entry);
    }
  }

  /**
   * A datagram on a listening socket (`forwarded`: handed over by another worker thread, never
   * handed on again). Nothing in here may end the process: faults are contained.
   */
  handleDatagram(endpoint: ListenEndpoint, msg: Buffer, from: Peer, forwarded = false): void {
    try {
      this.route(endpoint, msg, from, forwarded);
    } catch (err) {
      this.onDispatchFault(err, from);
    }
  }

  /** Worker pool: a request for this client key started on another thread; the one here is replaced. */
  replaceClient(clientKey: string): void {
    const entry = this.options.portMode === 'single' ? this.sessions.get(clientKey) : undefined;
    if (entry && !entry.closed) this.replace(entry);
  }

  private route(endpoint: ListenEndpoint, msg: Buffer, from: Peer, forwarded: boolean): void {
    const decoded = decodePacket(msg);
    const clientKey = `${endpoint.id}|${from.address}|${from.port}`;
    const live = this.options.portMode === 'single' ? this.sessions.get(clientKey) : undefined;
    if (!decoded.ok) {
      this.metrics.countReceived('malformed');
      // On a live transfer's TID a garbled packet is dropped: an ERROR would end that transfer.
      if (!live) this.onMalformed(endpoint.socket, from, decoded.opcode, decoded.reason);
      return;
    }
    const packet = decoded.packet;
    this.metrics.countReceived(packet.opcode);
    if (packet.opcode === Opcode.RRQ || packet.opcode === Opcode.WRQ) {
      this.onRequest(endpoint, clientKey, packet, msg, from);
      return;
    }
    if (live) {
      if (live.session) live.session.handle(packet);
      // Still opening: an ERROR means the client gave up; anything else is early and dropped.
      else if (packet.opcode === Opcode.ERROR) this.dropEntry(live);
      return;
    }
    const ended = this.lingering.get(clientKey);
    if (ended) {
      this.answerLingering(ended, packet);
      return;
    }
    if (!forwarded && this.peers && this.options.portMode === 'single' && this.peers.forward(endpoint.id, msg, from)) return;
    this.onStray(endpoint.socket, from, packet);
  }

  private onMalformed(socket: DatagramSocket, from: Peer, opcode: number | undefined, reason: string): void {
    this.logger.debug({ client: from.address, port: from.port, reason }, 'malformed packet');
    // Answer only what looks like TFTP; junk (and ERRORs) get silence, so we cannot be made a reflector.
    if (opcode !== undefined && opcode >= Opcode.RRQ && opcode <= Opcode.OACK && opcode !== Opcode.ERROR) {
      if (this.limits.shouldAnswerUnsolicited(from.address)) this.channels.sendError(socket, from, ErrorCode.IllegalOperation, 'Illegal TFTP operation');
    }
  }

  /** A DATA/ACK/OACK from a sender with no session: RFC 1350 says ERROR 5; ERRORs are never answered. */
  private onStray(socket: DatagramSocket, from: Peer, packet: Packet): void {
    if (packet.opcode === Opcode.ERROR) return;
    // Capped per address (a spoofed source must not turn us into a reflector).
    if (!this.limits.shouldAnswerUnsolicited(from.address)) return;
    this.channels.sendError(socket, from, ErrorCode.UnknownTransferId, 'Unknown transfer ID');
  }

  private onRequest(endpoint: ListenEndpoint, clientKey: string, request: RequestPacket, msg: Buffer, from: Peer): void {
    const single = this.options.portMode === 'single';
    const existing = single ? this.sessions.get(clientKey) : this.newestByClient.get(clientKey);
    // A retransmitted request (our answer was lost or is on its way) must not start a second
    // transfer: it earns the peer another first packet, nothing more.
    if (existing && !existing.closed && existing.requestBytes.equals(msg) && !this.hasProgressed(existing)) {
      existing.channel?.credit(msg.length);
      existing.session?.repeatFirst();
      return;
    }
    const operation: TransferOperation = request.opcode === Opcode.RRQ ? 'read' : 'write';
    const clientAddress = parseClientAddress(from.address);
    const rateLimited = this.admission.rateLimited(clientAddress);
    if (rateLimited) {
      this.refusals.beforeOpening(endpoint.socket, from, operation, sanitize(request.filename), rateLimited);
      return;
    }
    // In single-port mode anything else from the same ip:port means the client started over: the
    // new request wins. In per-transfer mode each transfer has its own TID: both go on.
    if (existing && single) this.replace(existing);
    if (single) this.endLinger(this.lingering.get(clientKey));
    const refusal = this.admission.refusal(clientAddress, this.sessions.size, this.draining);
    if (refusal) {
      this.refusals.beforeOpening(endpoint.socket, from, operation, sanitize(request.filename), refusal);
      return;
    }
    const entry: SessionEntry = {
      key: single ? clientKey : `${clientKey}#${++this.sequence}`,
      clientKey,
      client: { address: from.address, port: from.port },
      operation,
      requestBytes: Buffer.from(msg),
      filename: sanitize(request.filename),
      clientAddress,
      openedAt: this.clock.now(),
      listen: endpoint,
      channel: single ? this.channels.shared(endpoint.socket, from, clientAddress, msg.length) : undefined,
      session: undefined,
      transferId: 0,
      closed: false,
      linger: undefined,
    };
    this.sessions.set(entry.key, entry);
    this.peers?.changed(true, entry.key);
    if (!single) this.newestByClient.set(clientKey, entry);
    this.limits.sessionOpened(clientAddress);
    this.armStallSweep();
    this.onActivity?.(this.sessions.size);
    // The open step: the storage side, and the channel (per-transfer: a socket of its own, bound).
    const channel = entry.channel ? Promise.resolve(entry.channel) : this.channels.own(endpoint.socket, entry.client, clientAddress, msg.length);
    void Promise.allSettled([this.opener.open(request, clientAddress), channel]).then(([prepared, bound]) => {
      try {
        this.onOpened(entry, request, openedFrom(prepared, bound));
      } catch (err) {
        this.onOpenFault(entry, err);
      }
    });
  }

  /** The open step's result: start the session, or refuse the request (or let go if it was dropped meanwhile). */
  private onOpened(entry: SessionEntry, request: RequestPacket, opened: Opened): void {
    if (entry.closed) {
      // A transfer's own channel closes its socket; the shared one was closed with the entry.
      if (opened.channel !== entry.channel) opened.channel?.close();
      if (opened.prepared) this.release(opened.prepared, 'request superseded');
      return;
    }
    entry.channel ??= opened.channel;
    if (!opened.ok) {
      if (opened.prepared) this.release(opened.prepared, 'no transfer socket');
      this.refusals.openFailed(entry, opened.err);
      this.dropEntry(entry);
      return;
    }
    this.startSession(entry, opened.prepared, opened.channel, request);
  }

  /** Lets go of a prepared transfer that will not run (upload aborted, read source closed). */
  private release(prepared: PreparedTransfer, reason: string): void {
    if (prepared.kind === 'write') void this.trackAborts(prepared.sink).abort(reason);
    else prepared.source.close();
  }

  private hasProgressed(entry: SessionEntry): boolean {
    return entry.session?.hasProgressed === true;
  }

  private replace(entry: SessionEntry): void {
    if (entry.session) entry.session.abort('replaced', false);
    else this.dropEntry(entry);
  }

  private startSession(entry: SessionEntry, prepared: PreparedTransfer, channel: TransferChannel, request: RequestPacket): void {
    const retransmit = this.options.retransmit;
    const common = {
      peer: channel,
      clock: this.clock,
      policy: retransmit,
      options: prepared.options,
      oack: prepared.oack,
      onEnd: (stats: TransferStats) => this.onSessionEnd(entry, prepared, stats),
      onFault: (err: unknown) => this.onSessionFault(entry, err),
    };
    const session: SessionBase =
      prepared.kind === 'read'
        ? new ReadSession({ ...common, source: prepared.source, maxBytesInFlight: this.options.maxWindowBytes })
        : new WriteSession({
            ...common,
            sink: this.trackAborts(prepared.sink),
            netascii: prepared.mode === 'netascii',
            maxBytes: this.options.maxUploadSize,
            onStored: () => this.opener.uploaded(prepared.key),
            classicSender: request.options.size === 0,
          });
    entry.session = session;
    entry.transferId = ++this.transferIds;
    this.transfers.emitStarted({
      id: entry.transferId,
      client: entry.client,
      operation: entry.operation,
      file: entry.filename,
      key: prepared.key,
      requestOptions: sanitizeOptions(request.options),
      mode: prepared.mode,
      blksize: prepared.options.blksize,
      windowsize: prepared.options.windowsize,
      ...(prepared.kind === 'read' && prepared.source.size !== undefined ? { size: prepared.source.size } : {}),
      ...(channel.ownsSocket ? { serverPort: channel.socket.localPort } : {}),
      ...(this.options.worker !== undefined ? { worker: this.options.worker } : {}),
    });
    if (channel.ownsSocket) {
      channel.socket.onMessage((msg, from) => {
        try {
          this.onTransferSocketMessage(entry, channel, msg, from);
        } catch (err) {
          this.onDispatchFault(err, from);
        }
      });
    }
    session.start();
  }

  /** Per-transfer mode: packets on a transfer's own port; strangers get ERROR 5 and the transfer goes on. */
  private onTransferSocketMessage(entry: SessionEntry, channel: TransferChannel, msg: Buffer, from: Peer): void {
    const decoded = decodePacket(msg);
    if (!decoded.ok) {
      this.metrics.countReceived('malformed');
      return;
    }
    const packet = decoded.packet;
    this.metrics.countReceived(packet.opcode);
    if (from.address !== entry.client.address || from.port !== entry.client.port) {
      this.onStray(channel.socket, from, packet);
      return;
    }
    // A request sent to a transfer's port is not how TFTP starts a transfer: dropped.
    if (packet.opcode === Opcode.RRQ || packet.opcode === Opcode.WRQ) return;
    if (entry.linger) this.answerLingering(entry, packet);
    else entry.session?.handle(packet);
  }

  private onSessionEnd(entry: SessionEntry, prepared: PreparedTransfer, stats: TransferStats): void {
    try {
      this.transfers.emitFinished({
        id: entry.transferId,
        client: entry.client,
        operation: entry.operation,
        file: entry.filename,
        key: prepared.key,
        mode: prepared.mode,
        options: Object.fromEntries(prepared.oack),
        ...stats,
        ...(this.options.worker !== undefined ? { worker: this.options.worker } : {}),
      });
      if (prepared.kind === 'write' && stats.result === 'ok' && !this.draining) this.linger(entry, stats.blocks, prepared.options.timeoutMs);
    } finally {
      this.dropEntry(entry);
    }
  }

  /**
   * After an upload's final ACK the transfer is over (reported `ok`, its slot freed), but that ACK
   * may be lost: the client then resends its last DATA (tftp-hpa and curl after 5-6 s), and an
   * ERROR 5 would make it report a stored upload as failed. For a while the final block is
   * re-acknowledged on the transfer's channel (a per-transfer socket stays open that long).
   */
  private linger(entry: SessionEntry, lastBlock: number, clientTimeoutMs: number | undefined): void {
    const stallMs = this.options.stallTimeoutMs ?? 0;
    const cap = Math.min(this.options.retransmit.giveUpMs ?? Infinity, stallMs > 0 ? stallMs / 2 : Infinity);
    const ms = Math.min(cap, Math.max(MIN_LINGER_MS, 2 * (clientTimeoutMs ?? 0)));
    const timer = this.clock.setTimeout(() => this.endLinger(entry), ms);
    entry.linger = { block: lastBlock & 0xffff, timer };
    this.endLinger(this.lingering.get(entry.key));
    this.lingering.set(entry.key, entry);
  }

  private answerLingering(entry: SessionEntry, packet: Packet): void {
    if (packet.opcode === Opcode.DATA && packet.block === entry.linger?.block) entry.channel?.send([encodeAck(packet.block)]);
  }

  private endLinger(entry: SessionEntry | undefined): void {
    if (!entry?.linger) return;
    this.clock.clearTimeout(entry.linger.timer);
    entry.linger = undefined;
    if (this.lingering.get(entry.key) === entry) this.lingering.delete(entry.key);
    entry.channel?.close();
  }

  /** Ends every linger now (server stopping). */
  endLingering(): void {
    for (const entry of [...this.lingering.values()]) this.endLinger(entry);
  }

  /** An exception inside one transfer: logged with its stack and counted; the transfer ends, nothing else. */
  private onSessionFault(entry: SessionEntry, err: unknown): void {
    this.metrics.internalErrors.inc();
    this.logger.error(
      { client: entry.client.address, port: entry.client.port, op: entry.operation, file: entry.filename, err: faultDetail(err) },
      'transfer fault: ended this transfer',
    );
  }

  /** An exception while a request was being set up: that request is refused with ERROR 0. */
  private onOpenFault(entry: SessionEntry, err: unknown): void {
    if (entry.session) {
      entry.session.crash(err);
      return;
    }
    this.onSessionFault(entry, err);
    if (entry.closed) return;
    this.refusals.whileOpening(entry, 'internal-error', err);
    this.dropEntry(entry);
  }

  /** An exception in the dispatcher itself while handling one datagram: logged, counted, dropped. */
  private onDispatchFault(err: unknown, from: Peer): void {
    this.metrics.internalErrors.inc();
    this.logger.error({ client: from.address, port: from.port, err: faultDetail(err) }, 'datagram handling fault: datagram dropped');
  }

  private dropEntry(entry: SessionEntry): void {
    if (entry.closed) return;
    entry.closed = true;
    if (this.sessions.get(entry.key) === entry) {
      this.sessions.delete(entry.key);
      this.peers?.changed(false, entry.key);
    }
    if (this.newestByClient.get(entry.clientKey) === entry) this.newestByClient.delete(entry.clientKey);
    this.limits.sessionClosed(entry.clientAddress);
    this.onActivity?.(this.sessions.size);
    if (!entry.linger) entry.channel?.close();
    if (this.sessions.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Arms the stall sweep (one timer for the whole table, only while it has entries). */
  private armStallSweep(): void {
    const stallMs = this.options.stallTimeoutMs ?? 0;
    if (stallMs <= 0 || this.stallTimer !== undefined || this.sessions.size === 0) return;
    this.stallTimer = this.clock.setTimeout(() => {
      this.stallTimer = undefined;
      try {
        this.sweepStalled(stallMs);
      } catch (err) {
        this.metrics.internalErrors.inc();
        this.logger.error({ err: faultDetail(err) }, 'stall sweep fault');
      }
      this.armStallSweep();
    }, Math.min(1000, Math.max(20, stallMs / 4)));
  }

  /**
   * Ends every session that made no progress for `stallMs` (a client that went away while its
   * timer backs off, a pinned long timeout, storage that hangs) and drops requests still opening
   * after it: ERROR 0 to the client, timers, S3 streams and uploads released.
   */
  private sweepStalled(stallMs: number): void {
    const now = this.clock.now();
    for (const entry of [...this.sessions.values()]) {
      if (entry.closed) continue;
      if (entry.session) {
        if (now - entry.session.lastProgressAt >= stallMs) entry.session.reap(`no progress for ${Math.round(now - entry.session.lastProgressAt)} ms`);
      } else if (now - entry.openedAt >= stallMs) {
        this.refusals.stalled(entry);
        this.dropEntry(entry);
      }
    }
  }
}
