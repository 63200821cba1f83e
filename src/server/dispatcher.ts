import { decodePacket, encodeAck, encodeError, ErrorCode, Opcode, type Packet, type RequestPacket } from '../protocol/packet.js';
import { tftpErrorFor, TransferError } from '../errors.js';
import { ReadSession } from '../session/read-session.js';
import type { SessionBase } from '../session/session-base.js';
import type { Clock, RetransmitPolicy, TransferStats, UploadSink } from '../session/types.js';
import { WriteSession } from '../session/write-session.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { PolicyRefusal } from '../policy/access-policy.js';
import { canonicalClientAddress } from '../policy/cidr.js';
import { ClientLimits, type ClientLimiter } from '../policy/limits.js';
import { sanitize, sanitizeOptions, type Logger } from './logger.js';
import type { PreparedTransfer } from '../app/requests.js';
import { TransferChannel, type ChannelCounters } from './channel.js';
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
}

/** A bound UDP socket the gateway listens on. */
export interface ListenEndpoint {
  readonly socket: DatagramSocket;
  readonly id: number;
}

type Operation = 'read' | 'write';

interface SessionEntry {
  /** Key in the session table: the client's ip:port on a listening socket (per-transfer: plus a sequence). */
  readonly key: string;
  /** The client's ip:port on the listening socket it wrote to. */
  readonly clientKey: string;
  readonly client: Peer;
  readonly operation: Operation;
  /** The request's bytes: an identical retransmitted request is recognised by them. */
  readonly requestBytes: Buffer;
  readonly filename: string;
  /** The client's canonical address (IPv4-mapped IPv6 as IPv4): what per-client limits count. */
  readonly clientAddress: string;
  /** When the request arrived: a request still opening after the stall timeout is dropped. */
  readonly openedAt: number;
  readonly listen: ListenEndpoint;
  /** The way to the client; in per-transfer mode, set once the transfer's socket is bound. */
  channel: TransferChannel | undefined;
  session: SessionBase | undefined;
  closed: boolean;
  /** After a stored upload: the final block (wire) re-acknowledged until the linger ends. */
  linger: { readonly block: number; readonly timer: ReturnType<Clock['setTimeout']> } | undefined;
  /** Bytes of this transfer already added to the transfer-bytes counter. */
  bytesCounted: number;
}

/** What the dispatcher needs of the request opener (RequestOpener in production). */
export interface TransferOpener {
  open(request: RequestPacket, client: string): Promise<PreparedTransfer>;
  /** An upload was stored: reads must see the new object from now on. */
  uploaded(key: string): void;
}

/** Shortest linger after an upload's final ACK: two retransmission periods of common clients. */
const MIN_LINGER_MS = 12_000;

/**
 * Worker-pool hooks (src/server/worker-*.ts): the process-wide session directory, and where a
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
 */
export class Dispatcher {
  private readonly sessions = new Map<string, SessionEntry>();
  /** Per-transfer mode: the newest transfer of each client ip:port (retransmitted requests). */
  private readonly newestByClient = new Map<string, SessionEntry>();
  /** Ended uploads still answering a resent final DATA, by table key (single-port: the client's ip:port). */
  private readonly lingering = new Map<string, SessionEntry>();
  private draining = false;
  private sequence = 0;
  /** Upload aborts still in flight: stop() waits for them so nothing is left half-written. */
  private readonly pendingAborts = new Set<Promise<void>>();
  private idleWaiters: (() => void)[] = [];
  /** Told the session count whenever it changes (scale-in protection). */
  onActivity: ((active: number) => void) | undefined;
  /** Worker pool: the process-wide session directory (undefined in single-threaded mode). */
  peers: PeerDirectory | undefined;
  /** Per-client request rate and session cap. */
  private readonly limits: ClientLimiter;
  /** The stall sweep's timer; armed only while the table has entries. */
  private stallTimer: ReturnType<Clock['setTimeout']> | undefined;
  private readonly counters: ChannelCounters;

  constructor(
    private readonly options: DispatcherOptions,
    private readonly opener: TransferOpener,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
    private readonly clock: Clock,
    private readonly transferSockets?: TransferSocketFactory,
  ) {
    this.limits = options.clientLimits ?? new ClientLimits({
      maxSessionsPerClient: options.maxSessionsPerClient ?? 0,
      ratePerSecond: options.rateLimit ?? 0,
      burst: options.rateBurst ?? 20,
      unverifiedBytesPerSecond: options.unverifiedBytesPerSecond ?? 0,
      clock,
    });
    this.counters = {
      sent: (opcode) => metrics.countSent(opcode),
      errorSent: (code) => metrics.countErrorSent(code),
      suppressed: () => metrics.unverifiedSendsSuppressed.inc(),
    };
    if (options.portMode === 'per-transfer' && !transferSockets) throw new Error('per-transfer mode needs a transfer socket factory');
  }

  /** Adds the progress of running transfers to the bytes counter (called at scrape time). */
  countBytesInFlight(): void {
    for (const entry of this.sessions.values()) {
      if (entry.session) this.countBytes(entry, entry.session.bytesSoFar);
    }
  }

  private countBytes(entry: SessionEntry, total: number): void {
    const delta = total - entry.bytesCounted;
    if (delta <= 0) return;
    entry.bytesCounted = total;
    this.metrics.transferBytes.inc({ direction: entry.operation === 'read' ? 'sent' : 'received' }, delta);
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
      if (this.limits.shouldAnswerUnsolicited(from.address)) this.sendError(socket, from, ErrorCode.IllegalOperation, 'Illegal TFTP operation');
    }
  }

  /** A DATA/ACK/OACK from a sender with no session: RFC 1350 says ERROR 5; ERRORs are never answered. */
  private onStray(socket: DatagramSocket, from: Peer, packet: Packet): void {
    if (packet.opcode === Opcode.ERROR) return;
    // Capped per address (a spoofed source must not turn us into a reflector).
    if (!this.limits.shouldAnswerUnsolicited(from.address)) return;
    this.sendError(socket, from, ErrorCode.UnknownTransferId, 'Unknown transfer ID');
  }

  /** An ERROR outside any transfer (strays, refusals before a channel exists). */
  private sendError(socket: DatagramSocket, to: Peer, code: ErrorCode, message: string): void {
    this.metrics.countErrorSent(code);
    this.metrics.countSent(Opcode.ERROR);
    socket.send([encodeError(code, message)], to);
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
    const operation: Operation = request.opcode === Opcode.RRQ ? 'read' : 'write';
    const clientAddress = canonicalClientAddress(from.address);
    if (this.limits.admit(clientAddress) === 'rate-limited') {
      // Counted every time, answered (and logged at info) at most once a second per client: a
      // flood of requests, possibly spoofed, must not become a flood of replies or log lines.
      const answer = this.limits.shouldAnswerRefusal(clientAddress);
      this.refuseRequest(endpoint.socket, from, operation, request, 'rate-limited', new TransferError('BUSY', 'request rate limit'), answer);
      return;
    }
    // In single-port mode anything else from the same ip:port means the client started over: the
    // new request wins. In per-transfer mode each transfer has its own TID: both go on.
    if (existing && single) this.replace(existing);
    if (single) this.endLinger(this.lingering.get(clientKey));
    if (this.draining) {
      this.refuseRequest(endpoint.socket, from, operation, request, 'shutdown', new TransferError('SHUTTING_DOWN', 'draining'));
      return;
    }
    if (this.sessions.size >= this.options.maxSessions || this.limits.totalSessions >= this.options.maxSessions) {
      this.refuseRequest(endpoint.socket, from, operation, request, 'busy', new TransferError('BUSY', 'session limit reached'));
      return;
    }
    if (this.limits.atSessionCap(clientAddress)) {
      this.refuseRequest(endpoint.socket, from, operation, request, 'client-busy', new TransferError('BUSY', 'per-client session limit reached'));
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
      channel: single ? this.channelFor(endpoint.socket, from, false, clientAddress, msg.length) : undefined,
      session: undefined,
      closed: false,
      linger: undefined,
      bytesCounted: 0,
    };
    this.sessions.set(entry.key, entry);
    this.peers?.changed(true, entry.key);
    if (!single) this.newestByClient.set(clientKey, entry);
    this.limits.sessionOpened(clientAddress);
    this.armStallSweep();
    this.onActivity?.(this.sessions.size);
    const socketReady = single ? Promise.resolve(undefined) : this.transferSockets!.open(endpoint.socket);
    void Promise.allSettled([this.opener.open(request, from.address), socketReady]).then(([opened, bound]) => {
      try {
        this.onOpened(entry, request, msg.length, opened, bound);
      } catch (err) {
        this.onOpenFault(entry, err);
      }
    });
  }

  /** The request's storage side and (per-transfer) socket are ready, or one of them failed. */
  private onOpened(
    entry: SessionEntry,
    request: RequestPacket,
    requestLength: number,
    opened: PromiseSettledResult<PreparedTransfer>,
    bound: PromiseSettledResult<DatagramSocket | undefined>,
  ): void {
    const socket = bound.status === 'fulfilled' ? bound.value : undefined;
    if (entry.closed) {
      socket?.close();
      if (opened.status === 'fulfilled') this.release(opened.value, 'request superseded');
      return;
    }
    if (socket) entry.channel = this.channelFor(socket, entry.client, true, entry.clientAddress, requestLength);
    if (opened.status === 'rejected' || bound.status === 'rejected') {
      const err: unknown = opened.status === 'rejected' ? opened.reason : (bound as PromiseRejectedResult).reason;
      if (opened.status === 'fulfilled') this.release(opened.value, 'no transfer socket');
      const reason = refusalReason(err);
      this.logger.info(
        { client: entry.client.address, port: entry.client.port, op: entry.operation, file: entry.filename, refused: reason, detail: errorText(err) },
        'request refused',
      );
      this.refuseOn(entry, reason, err);
      this.dropEntry(entry);
      return;
    }
    this.startSession(entry, opened.value, request);
  }

  /** Lets go of a prepared transfer that will not run (upload aborted, read source closed). */
  private release(prepared: PreparedTransfer, reason: string): void {
    if (prepared.kind === 'write') void this.trackAborts(prepared.sink).abort(reason);
    else prepared.source.close();
  }

  private channelFor(socket: DatagramSocket, peer: Peer, ownsSocket: boolean, clientAddress: string, requestLength: number): TransferChannel {
    const channel = new TransferChannel({
      socket,
      peer,
      ownsSocket,
      counters: this.counters,
      unverifiedFactor: this.options.unverifiedAmplification ?? DEFAULT_UNVERIFIED_AMPLIFICATION,
      allowance: (bytes) => this.limits.spendUnverified(clientAddress, bytes),
    });
    channel.credit(requestLength);
    return channel;
  }

  private hasProgressed(entry: SessionEntry): boolean {
    return entry.session?.hasProgressed === true;
  }

  /** Refuses a request before any session exists: counted, logged once, answered with an ERROR (unless `answer` is false). */
  private refuseRequest(
    socket: DatagramSocket,
    from: Peer,
    operation: Operation,
    request: RequestPacket,
    reason: string,
    err: TransferError,
    answer = true,
  ): void {
    this.logger[answer ? 'info' : 'debug'](
      { client: from.address, port: from.port, op: operation, file: sanitize(request.filename), refused: reason, detail: err.message },
      'request refused',
    );
    this.metrics.requestsRefused.inc({ reason });
    if (answer) {
      const wire = tftpErrorFor(err);
      this.sendError(socket, from, wire.code, wire.message);
    }
  }

  /** Refuses an opening request on its own channel (per-transfer: from the transfer's port). */
  private refuseOn(entry: SessionEntry, reason: string, err: unknown): void {
    this.metrics.requestsRefused.inc({ reason });
    const wire = tftpErrorFor(err);
    if (entry.channel) entry.channel.send([encodeError(wire.code, wire.message)]);
    else this.sendError(entry.listen.socket, entry.client, wire.code, wire.message);
  }

  private replace(entry: SessionEntry): void {
    if (entry.session) entry.session.abort('replaced', false);
    else this.dropEntry(entry);
  }

  private startSession(entry: SessionEntry, prepared: PreparedTransfer, request: RequestPacket): void {
    const { address, port } = entry.client;
    const channel = entry.channel!;
    const operation = entry.operation;
    const started = { mode: prepared.mode, blksize: prepared.options.blksize, windowsize: prepared.options.windowsize };
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
            // The dispatcher lingers after the final ACK (see linger()), so the session ends at once.
            dallyMs: 0,
            onStored: () => this.opener.uploaded(prepared.key),
          });
    entry.session = session;
    this.metrics.transfersStarted.inc({ operation });
    this.metrics.activeSessions.inc({ operation });
    this.logger.info(
      {
        client: address,
        port,
        op: operation,
        file: entry.filename,
        key: prepared.key,
        options: sanitizeOptions(request.options),
        ...started,
        ...(prepared.kind === 'read' && prepared.source.size !== undefined ? { size: prepared.source.size } : {}),
        ...(channel.socket !== entry.listen.socket ? { serverPort: channel.socket.localPort } : {}),
      },
      'transfer started',
    );
    if (channel.socket !== entry.listen.socket) {
      channel.socket.onMessage((msg, from) => {
        try {
          this.onTransferSocketMessage(entry, msg, from);
        } catch (err) {
          this.onDispatchFault(err, from);
        }
      });
    }
    session.start();
  }

  /** Per-transfer mode: packets on a transfer's own port; strangers get ERROR 5 and the transfer goes on. */
  private onTransferSocketMessage(entry: SessionEntry, msg: Buffer, from: Peer): void {
    const decoded = decodePacket(msg);
    if (!decoded.ok) {
      this.metrics.countReceived('malformed');
      return;
    }
    const packet = decoded.packet;
    this.metrics.countReceived(packet.opcode);
    if (from.address !== entry.client.address || from.port !== entry.client.port) {
      this.onStray(entry.channel!.socket, from, packet);
      return;
    }
    // A request sent to a transfer's port is not how TFTP starts a transfer: dropped.
    if (packet.opcode === Opcode.RRQ || packet.opcode === Opcode.WRQ) return;
    if (entry.linger) this.answerLingering(entry, packet);
    else entry.session?.handle(packet);
  }

  private onSessionEnd(entry: SessionEntry, prepared: PreparedTransfer, stats: TransferStats): void {
    try {
      this.reportEnd(entry, prepared, stats);
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

  private reportEnd(entry: SessionEntry, prepared: PreparedTransfer, stats: TransferStats): void {
    const operation = entry.operation;
    this.metrics.activeSessions.dec({ operation });
    this.metrics.transfersFinished.inc({ operation, result: stats.result });
    this.metrics.transferDuration.observe({ operation }, stats.durationMs / 1000);
    this.countBytes(entry, stats.bytes);
    if (stats.retransmits > 0) this.metrics.retransmissions.inc(stats.retransmits);
    if (stats.timeouts > 0) this.metrics.timeouts.inc(stats.timeouts);
    const level = stats.result === 'ok' || stats.result === 'size-probe' || stats.result === 'replaced' ? 'info' : 'warn';
    this.logger[level](
      {
        client: entry.client.address,
        port: entry.client.port,
        op: operation,
        file: entry.filename,
        key: prepared.key,
        mode: prepared.mode,
        options: Object.fromEntries(prepared.oack),
        result: stats.result,
        bytes: stats.bytes,
        blocks: stats.blocks,
        durationMs: Math.round(stats.durationMs),
        retransmits: stats.retransmits,
        timeouts: stats.timeouts,
        ...(stats.detail !== undefined && stats.result !== 'ok' ? { detail: sanitize(stats.detail, 512) } : {}),
      },
      'transfer finished',
    );
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
    this.refuseOn(entry, 'internal-error', err);
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
   * after it: ERROR 0 to the client, timers, S3 streams and uploads released. A session whose
   * outcome is settled (an upload stored and acknowledged) ends `ok`.
   */
  private sweepStalled(stallMs: number): void {
    const now = this.clock.now();
    for (const entry of [...this.sessions.values()]) {
      if (entry.closed) continue;
      if (entry.session) {
        if (now - entry.session.lastProgressAt >= stallMs) entry.session.reap(`no progress for ${Math.round(now - entry.session.lastProgressAt)} ms`);
      } else if (now - entry.openedAt >= stallMs) {
        this.logger.warn(
          { client: entry.client.address, port: entry.client.port, op: entry.operation, file: entry.filename, refused: 'stalled' },
          'request refused',
        );
        this.refuseOn(entry, 'stalled', new TransferError('STORAGE_UNAVAILABLE', 'request still opening at the stall timeout'));
        this.dropEntry(entry);
      }
    }
  }
}

/** The metric reason of a refused request: a bounded set (policy reasons and error codes). */
function refusalReason(err: unknown): string {
  if (err instanceof PolicyRefusal) return err.reason;
  if (err instanceof TransferError) return err.code.toLowerCase().replace(/_/g, '-');
  return 'storage-error';
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function faultDetail(err: unknown): { message: string; stack?: string } {
  if (err instanceof Error) return { message: err.message, ...(err.stack !== undefined ? { stack: err.stack } : {}) };
  return { message: String(err) };
}
