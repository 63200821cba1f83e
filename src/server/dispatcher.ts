import dgram from 'node:dgram';
import { decodePacket, encodeError, ErrorCode, Opcode, type Packet, type RequestPacket } from '../protocol/packet.js';
import { tftpErrorFor, TransferError } from '../session/errors.js';
import { ReadSession } from '../session/read-session.js';
import type { SessionBase } from '../session/session-base.js';
import type { Clock, PeerChannel, RetransmitPolicy, TransferStats, UploadSink } from '../session/types.js';
import { WriteSession } from '../session/write-session.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { PolicyRefusal } from '../policy/access-policy.js';
import { canonicalClientAddress } from '../policy/cidr.js';
import { ClientLimits } from '../policy/limits.js';
import { sanitize, sanitizeOptions, type Logger } from './logger.js';
import type { PreparedTransfer, RequestOpener } from './requests.js';

export interface DispatcherOptions {
  readonly portMode: 'single' | 'per-transfer';
  readonly portRange: { readonly low: number; readonly high: number } | undefined;
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
  readonly retransmit: RetransmitPolicy;
}

/** A bound UDP socket the gateway listens on. */
export interface ListenEndpoint {
  readonly socket: dgram.Socket;
  readonly id: number;
}

type Operation = 'read' | 'write';

interface SessionEntry {
  readonly key: string;
  readonly client: { readonly address: string; readonly port: number };
  readonly operation: Operation;
  /** The request's bytes: an identical retransmitted request is recognised by them. */
  readonly requestBytes: Buffer;
  readonly filename: string;
  /** The client's canonical address (IPv4-mapped IPv6 as IPv4): what per-client limits count. */
  readonly clientAddress: string;
  /** When the request arrived: a request still opening after the stall timeout is dropped. */
  readonly openedAt: number;
  /** The listening socket the request came in on. */
  readonly endpointSocket: dgram.Socket;
  /** The per-transfer socket (per-transfer mode), owned and closed by this entry. */
  ownSocket: dgram.Socket | undefined;
  session: SessionBase | undefined;
  /** Aborted when the entry is dropped while still opening. */
  readonly opening: AbortController;
  closed: boolean;
  /** Bytes of this transfer already added to the transfer-bytes counter. */
  bytesCounted: number;
}

const ignoreSendError = (): void => undefined;

/**
 * Routes datagrams: requests open sessions, everything else goes to the session of its sender
 * (keyed by listening socket and client ip:port). Owns the session table and every session's socket.
 */
export class Dispatcher {
  private readonly sessions = new Map<string, SessionEntry>();
  private draining = false;
  /** Upload aborts still in flight: stop() waits for them so nothing is left half-written. */
  private readonly pendingAborts = new Set<Promise<void>>();
  private idleWaiters: (() => void)[] = [];
  /** Told the session count whenever it changes (scale-in protection). */
  onActivity: ((active: number) => void) | undefined;
  /** Per-client request rate and session cap. */
  private readonly limits: ClientLimits;
  /** The stall sweep's timer; armed only while the table has entries. */
  private stallTimer: ReturnType<Clock['setTimeout']> | undefined;

  constructor(
    private readonly options: DispatcherOptions,
    private readonly opener: RequestOpener,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {
    this.limits = new ClientLimits({
      maxSessionsPerClient: options.maxSessionsPerClient ?? 0,
      ratePerSecond: options.rateLimit ?? 0,
      burst: options.rateBurst ?? 20,
      clock,
    });
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

  handleDatagram(endpoint: ListenEndpoint, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const decoded = decodePacket(msg);
    const key = `${endpoint.id}|${rinfo.address}|${rinfo.port}`;
    if (!decoded.ok) {
      this.metrics.countReceived('malformed');
      this.onMalformed(endpoint.socket, rinfo, decoded.opcode, decoded.reason);
      return;
    }
    const packet = decoded.packet;
    this.metrics.countReceived(packet.opcode);
    if (packet.opcode === Opcode.RRQ || packet.opcode === Opcode.WRQ) {
      this.onRequest(endpoint, key, packet, msg, rinfo);
      return;
    }
    const entry = this.sessions.get(key);
    if (entry?.session && !entry.ownSocket) {
      entry.session.handle(packet);
      return;
    }
    this.onStray(endpoint.socket, rinfo, packet);
  }

  private onMalformed(socket: dgram.Socket, rinfo: dgram.RemoteInfo, opcode: number | undefined, reason: string): void {
    this.logger.debug({ client: rinfo.address, port: rinfo.port, reason }, 'malformed packet');
    // Answer only what looks like TFTP; junk (and ERRORs) get silence, so we cannot be made a reflector.
    if (opcode !== undefined && opcode >= Opcode.RRQ && opcode <= Opcode.OACK && opcode !== Opcode.ERROR) {
      if (this.limits.shouldAnswerUnsolicited(rinfo.address)) this.sendError(socket, rinfo, ErrorCode.IllegalOperation, 'Illegal TFTP operation');
    }
  }

  /** A DATA/ACK/OACK from a sender with no session: RFC 1350 says ERROR 5; ERRORs are never answered. */
  private onStray(socket: dgram.Socket, rinfo: dgram.RemoteInfo, packet: Packet): void {
    if (packet.opcode === Opcode.ERROR) return;
    // Capped per address (a spoofed source must not turn us into a reflector).
    if (!this.limits.shouldAnswerUnsolicited(rinfo.address)) return;
    this.sendError(socket, rinfo, ErrorCode.UnknownTransferId, 'Unknown transfer ID');
  }

  private sendError(socket: dgram.Socket, rinfo: { address: string; port: number }, code: ErrorCode, message: string): void {
    this.metrics.errorsSent.inc({ code: String(code) });
    this.metrics.countSent(Opcode.ERROR);
    socket.send(encodeError(code, message), rinfo.port, rinfo.address, ignoreSendError);
  }

  private onRequest(endpoint: ListenEndpoint, key: string, request: RequestPacket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const existing = this.sessions.get(key);
    // A retransmitted request (our answer was lost or is on its way) must not start a second transfer.
    if (existing && existing.requestBytes.equals(msg) && !this.hasProgressed(existing)) return;
    const operation: Operation = request.opcode === Opcode.RRQ ? 'read' : 'write';
    const clientAddress = canonicalClientAddress(rinfo.address);
    if (this.limits.admit(clientAddress) === 'rate-limited') {
      // Counted every time, answered (and logged at info) at most once a second per client: a
      // flood of requests, possibly spoofed, must not become a flood of replies or log lines.
      const answer = this.limits.shouldAnswerRefusal(clientAddress);
      this.refuseRequest(endpoint.socket, rinfo, operation, request, 'rate-limited', new TransferError('BUSY', 'request rate limit'), answer);
      return;
    }
    // Anything else from the same ip:port means the client started over: the new request wins.
    if (existing) this.replace(existing);
    if (this.draining) {
      this.refuseRequest(endpoint.socket, rinfo, operation, request, 'shutdown', new TransferError('SHUTTING_DOWN', 'draining'));
      return;
    }
    if (this.sessions.size >= this.options.maxSessions) {
      this.refuseRequest(endpoint.socket, rinfo, operation, request, 'busy', new TransferError('BUSY', 'session limit reached'));
      return;
    }
    if (this.limits.atSessionCap(clientAddress)) {
      this.refuseRequest(endpoint.socket, rinfo, operation, request, 'client-busy', new TransferError('BUSY', 'per-client session limit reached'));
      return;
    }
    const entry: SessionEntry = {
      key,
      client: { address: rinfo.address, port: rinfo.port },
      operation,
      requestBytes: Buffer.from(msg),
      filename: sanitize(request.filename),
      clientAddress,
      openedAt: this.clock.now(),
      endpointSocket: endpoint.socket,
      ownSocket: undefined,
      session: undefined,
      opening: new AbortController(),
      closed: false,
      bytesCounted: 0,
    };
    this.sessions.set(key, entry);
    this.limits.sessionOpened(clientAddress);
    this.armStallSweep();
    this.onActivity?.(this.sessions.size);
    const perTransfer = this.options.portMode === 'per-transfer';
    const socketReady = perTransfer ? this.bindTransferSocket(endpoint.socket) : Promise.resolve(undefined);
    socketReady.then((socket) => {
      if (!socket) return;
      if (entry.closed) socket.close();
      else entry.ownSocket = socket;
    }, () => undefined);
    Promise.all([this.opener.open(request, rinfo.address), socketReady]).then(
      ([prepared]) => {
        if (entry.closed) {
          if (prepared.kind === 'write') void this.trackAborts(prepared.sink).abort('request superseded');
          else prepared.source.close();
          return;
        }
        this.startSession(entry, prepared, entry.ownSocket ?? endpoint.socket, request);
      },
      (err: unknown) => {
        if (entry.closed) return;
        const replySocket = entry.ownSocket ?? endpoint.socket;
        const reason = refusalReason(err);
        this.logger.info(
          { client: rinfo.address, port: rinfo.port, op: operation, file: entry.filename, refused: reason, detail: errorText(err) },
          'request refused',
        );
        this.refuse(replySocket, rinfo, reason, err);
        this.dropEntry(entry);
      },
    );
  }

  private hasProgressed(entry: SessionEntry): boolean {
    return entry.session?.hasProgressed === true;
  }

  /** Refuses a request before any session exists: counted, logged once, answered with an ERROR (unless `answer` is false). */
  private refuseRequest(
    socket: dgram.Socket,
    rinfo: dgram.RemoteInfo,
    operation: Operation,
    request: RequestPacket,
    reason: string,
    err: TransferError,
    answer = true,
  ): void {
    this.logger[answer ? 'info' : 'debug'](
      { client: rinfo.address, port: rinfo.port, op: operation, file: sanitize(request.filename), refused: reason, detail: err.message },
      'request refused',
    );
    if (answer) this.refuse(socket, rinfo, reason, err);
    else this.metrics.requestsRefused.inc({ reason });
  }

  private refuse(socket: dgram.Socket, rinfo: { address: string; port: number }, reason: string, err: unknown): void {
    this.metrics.requestsRefused.inc({ reason });
    const wire = tftpErrorFor(err);
    this.sendError(socket, rinfo, wire.code, wire.message);
  }

  private replace(entry: SessionEntry): void {
    if (entry.session) entry.session.abort('replaced', false);
    else this.dropEntry(entry);
  }

  private startSession(entry: SessionEntry, prepared: PreparedTransfer, socket: dgram.Socket, request: RequestPacket): void {
    const { address, port } = entry.client;
    const metrics = this.metrics;
    const peer: PeerChannel = {
      send(segments) {
        const first = segments[0];
        metrics.countSent(first && first.length >= 2 ? first.readUInt16BE(0) : 0);
        // No callback: with one, Node defers a tick per datagram. Send errors (rare: ENOBUFS)
        // surface as the socket's 'error' event, which is logged; the timer retransmits.
        socket.send(segments as Buffer[], port, address);
      },
    };
    const operation = entry.operation;
    const started = { mode: prepared.mode, blksize: prepared.options.blksize, windowsize: prepared.options.windowsize };
    const common = {
      peer,
      clock: this.clock,
      policy: this.options.retransmit,
      options: prepared.options,
      oack: prepared.oack,
      onEnd: (stats: TransferStats) => this.onSessionEnd(entry, prepared, stats),
    };
    const session: SessionBase =
      prepared.kind === 'read'
        ? new ReadSession({ ...common, source: prepared.source, maxBytesInFlight: this.options.maxWindowBytes })
        : new WriteSession({
            ...common,
            sink: this.trackAborts(prepared.sink),
            netascii: prepared.mode === 'netascii',
            maxBytes: this.options.maxUploadSize,
            dallyMs: Math.max(this.options.retransmit.initialMs, prepared.options.timeoutMs ?? 0),
          });
    entry.session = session;
    metrics.transfersStarted.inc({ operation });
    metrics.activeSessions.inc({ operation });
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
      },
      'transfer started',
    );
    if (entry.ownSocket) {
      entry.ownSocket.on('message', (msg, rinfo) => this.onTransferSocketMessage(entry, msg, rinfo));
    }
    session.start();
  }

  /** Per-transfer mode: packets on a transfer's own port; strangers get ERROR 5 and the transfer goes on. */
  private onTransferSocketMessage(entry: SessionEntry, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const decoded = decodePacket(msg);
    if (!decoded.ok) {
      this.metrics.countReceived('malformed');
      return;
    }
    this.metrics.countReceived(decoded.packet.opcode);
    if (rinfo.address !== entry.client.address || rinfo.port !== entry.client.port) {
      this.onStray(entry.ownSocket!, rinfo, decoded.packet);
      return;
    }
    entry.session?.handle(decoded.packet);
  }

  private onSessionEnd(entry: SessionEntry, prepared: PreparedTransfer, stats: TransferStats): void {
    const operation = entry.operation;
    this.metrics.activeSessions.dec({ operation });
    this.metrics.transfersFinished.inc({ operation, result: stats.result });
    this.metrics.transferDuration.observe({ operation }, stats.durationMs / 1000);
    this.countBytes(entry, stats.bytes);
    if (stats.retransmits > 0) this.metrics.retransmissions.inc(stats.retransmits);
    if (stats.timeouts > 0) this.metrics.timeouts.inc(stats.timeouts);
    if (stats.errorSent !== undefined) this.metrics.errorsSent.inc({ code: String(stats.errorSent) });
    if (stats.result === 'ok' && prepared.kind === 'write') this.opener.uploaded(prepared.key);
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
    this.dropEntry(entry);
  }

  private dropEntry(entry: SessionEntry): void {
    if (entry.closed) return;
    entry.closed = true;
    entry.opening.abort();
    if (this.sessions.get(entry.key) === entry) this.sessions.delete(entry.key);
    this.limits.sessionClosed(entry.clientAddress);
    this.onActivity?.(this.sessions.size);
    entry.ownSocket?.close();
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
      this.sweepStalled(stallMs);
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
        this.logger.warn(
          { client: entry.client.address, port: entry.client.port, op: entry.operation, file: entry.filename, refused: 'stalled' },
          'request refused',
        );
        this.refuse(entry.ownSocket ?? entry.endpointSocket, entry.client, 'stalled', new TransferError('STORAGE_UNAVAILABLE', 'request still opening at the stall timeout'));
        this.dropEntry(entry);
      }
    }
  }

  /**
   * A fresh socket for one transfer (per-transfer mode) on the listening socket's address: any free
   * port, or a free one from --port-range (tried from a random start, so transfers spread out).
   */
  private async bindTransferSocket(listening: dgram.Socket): Promise<dgram.Socket> {
    const local = listening.address();
    const type = local.family === 'IPv6' ? 'udp6' : 'udp4';
    const range = this.options.portRange;
    const span = range ? range.high - range.low + 1 : 1;
    const first = range ? Math.floor(Math.random() * span) : 0;
    for (let i = 0; i < Math.min(span, 64); i++) {
      const port = range ? range.low + ((first + i) % span) : 0;
      const socket = dgram.createSocket({ type });
      try {
        await new Promise<void>((resolve, reject) => {
          socket.once('error', reject);
          socket.bind({ address: local.address, port, exclusive: true }, () => {
            socket.off('error', reject);
            resolve();
          });
        });
      } catch {
        socket.close();
        continue;
      }
      socket.on('error', (err) => this.logger.warn({ err: err.message }, 'transfer socket error'));
      return socket;
    }
    throw new TransferError('BUSY', 'no free port in --port-range');
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
