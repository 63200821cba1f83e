import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { ListenAddress } from '../config/config.js';
import type { ObjectAccess } from '../core/object-access.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { Logger } from '../ops/logger.js';
import { parseClientAddress } from '../policy/client-address.js';
import type { ClientLimiter } from '../policy/limits.js';
import { serveObject, type ResponseRecord } from './serve-object.js';

/**
 * The HTTP front end for stage-2 network boot: GET and HEAD of the same names TFTP serves, through
 * the same core (ObjectAccess: policy, pinned versions, the shared block cache). This module owns
 * the listeners and connections: caps overall and per client (checked before a connection gets an
 * HTTP parser), header / request / keep-alive / send timeouts, drain, and the per-response metrics
 * and log line. What one response does is serve-object.ts.
 */

export interface HttpFrontEndOptions {
  readonly listen: readonly ListenAddress[];
  /** Open connections at most (this thread's share with worker threads). */
  readonly maxConnections: number;
  /** Open connections per client address at most (0: no cap). */
  readonly maxConnectionsPerClient: number;
  readonly headerTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly sendTimeoutMs: number;
  /** Bind with SO_REUSEPORT (worker threads share the listen ports). */
  readonly reusePort: boolean;
}

export interface HttpFrontEndDeps {
  readonly objects: ObjectAccess;
  /** The per-client request rate limit, shared with TFTP. */
  readonly limits: ClientLimiter;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
}

/** Largest request head accepted; a longer request line still gets 414 up to this size (431 beyond). */
const MAX_HEADER_BYTES = 32 * 1024;

/** How often Node checks header and request deadlines (its default, 30 s, would let slow clients linger). */
const DEADLINE_CHECK_MS = 1000;

const REFUSED_BY_CAP =
  'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nConnection: close\r\n\r\ntoo many connections';

/** Malformed requests Node's parser rejects before our handler: status for each error code. */
function clientErrorStatus(code: string | undefined): number {
  if (code === 'HPE_HEADER_OVERFLOW') return 431;
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 408;
  return 400;
}

interface ConnectionState {
  readonly client: string;
  /** Responses in progress on this connection (0 or 1: HTTP/1.1 without pipelined overlap). */
  active: number;
}

export class HttpFrontEnd {
  private readonly listeners: net.Server[] = [];
  private readonly connections = new Map<net.Socket, ConnectionState>();
  private readonly perClient = new Map<string, number>();
  private activeResponses = 0;
  private draining = false;
  private idleWaiters: (() => void)[] = [];
  /** Told the number of responses in progress whenever it changes (worker pool, scale-in protection). */
  onActivity: ((active: number) => void) | undefined;

  private constructor(
    private readonly options: HttpFrontEndOptions,
    private readonly deps: HttpFrontEndDeps,
    private readonly server: http.Server,
  ) {}

  static async start(options: HttpFrontEndOptions, deps: HttpFrontEndDeps): Promise<HttpFrontEnd> {
    const server = http.createServer({
      headersTimeout: options.headerTimeoutMs,
      requestTimeout: options.headerTimeoutMs + 5000,
      keepAliveTimeout: options.keepAliveTimeoutMs,
      connectionsCheckingInterval: DEADLINE_CHECK_MS,
      maxHeaderSize: MAX_HEADER_BYTES,
    });
    // Node ends the connection when the client half-closes unless told (an untyped field of http.Server).
    (server as unknown as { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    const front = new HttpFrontEnd(options, deps, server);
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => front.onRequest(req, res));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => front.onClientError(err, socket));
    // A response that makes no progress for this long (the client takes no bytes) is cut off.
    server.setTimeout(options.sendTimeoutMs, (socket: net.Socket) => socket.destroy());
    // The deadline checks (headersTimeout, requestTimeout) start with 'listening' on the HTTP server,
    // which never listens itself: connections reach it from the listeners below after the caps.
    server.emit('listening');
    try {
      for (const addr of options.listen) front.listeners.push(await front.listenOn(addr));
    } catch (err) {
      await front.close();
      throw err;
    }
    return front;
  }

  /** Where the listeners are bound (ports resolved when configured as 0). */
  get addresses(): AddressInfo[] {
    return this.listeners.map((l) => l.address() as AddressInfo);
  }

  /** Responses being sent (drain waits for these). */
  get active(): number {
    return this.activeResponses;
  }

  /** Stops accepting connections and closes idle keep-alive ones; running responses go on. */
  startDraining(): void {
    if (this.draining) return;
    this.draining = true;
    for (const l of this.listeners) l.close();
    for (const [socket, state] of this.connections) if (state.active === 0) socket.destroy();
  }

  /** Resolves when no response is in progress. */
  whenIdle(): Promise<void> {
    if (this.activeResponses === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Cuts every connection now (responses in progress end truncated: the client sees a short body). */
  abortAll(): void {
    for (const socket of this.connections.keys()) socket.destroy();
  }

  async close(): Promise<void> {
    this.startDraining();
    this.abortAll();
    await Promise.all(this.listeners.map((l) => new Promise<void>((resolve) => (l.listening ? l.close(() => resolve()) : resolve()))));
    this.server.close();
  }

  private listenOn(addr: ListenAddress): Promise<net.Server> {
    // Half-open: a client that sends its request and then shuts down its side (nc -N, some scripts)
    // still gets the response.
    const listener = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.onConnection(socket));
    return new Promise((resolve, reject) => {
      listener.once('error', reject);
      listener.listen({ host: addr.host, port: addr.port, reusePort: this.options.reusePort, ipv6Only: false }, () => {
        listener.off('error', reject);
        listener.on('error', (err) => this.deps.logger.error({ err: err.message }, 'HTTP boot listener error'));
        resolve(listener);
      });
    });
  }

  /** Admits a connection under the caps, then hands it to the HTTP server; refused ones get a 503 and close. */
  private onConnection(socket: net.Socket): void {
    const { metrics } = this.deps;
    socket.on('error', () => undefined);
    const client = parseClientAddress(socket.remoteAddress ?? '').text;
    const fromClient = this.perClient.get(client) ?? 0;
    const reason =
      this.draining ? 'draining'
      : this.connections.size >= this.options.maxConnections ? 'max-connections'
      : this.options.maxConnectionsPerClient > 0 && fromClient >= this.options.maxConnectionsPerClient ? 'max-connections-per-client'
      : undefined;
    if (reason) {
      if (reason !== 'draining') metrics.httpConnectionsRefused.inc({ reason });
      metrics.httpResponses.inc({ code: '503' });
      socket.end(REFUSED_BY_CAP);
      socket.setTimeout(1000, () => socket.destroy());
      return;
    }
    this.connections.set(socket, { client, active: 0 });
    this.perClient.set(client, fromClient + 1);
    metrics.httpConnections.inc();
    socket.once('close', () => {
      this.connections.delete(socket);
      const left = (this.perClient.get(client) ?? 1) - 1;
      if (left > 0) this.perClient.set(client, left);
      else this.perClient.delete(client);
      metrics.httpConnections.dec();
    });
    this.server.emit('connection', socket);
  }

  private onClientError(err: NodeJS.ErrnoException, socket: net.Socket): void {
    // A client mistake (malformed request line or header, too large, too slow): a status, no error log.
    const status = clientErrorStatus(err.code);
    // A response in progress on this connection (to a request pipelined before the bad one) owns
    // the byte stream: a status written now would be read as that request's answer, or land inside
    // its body. The connection is cut instead (that response ends short: Content-Length not met).
    if ((this.connections.get(socket)?.active ?? 0) > 0) {
      this.deps.logger.debug({ client: socket.remoteAddress, code: err.code }, 'malformed HTTP request behind a response in progress: connection closed');
      socket.destroy();
      return;
    }
    this.deps.metrics.httpResponses.inc({ code: String(status) });
    this.deps.logger.debug({ client: socket.remoteAddress, code: err.code, status }, 'malformed HTTP request');
    if (socket.writable && !socket.writableEnded) {
      const text = http.STATUS_CODES[status] ?? 'Bad Request';
      socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    }
    socket.destroySoon();
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const state = this.connections.get(req.socket);
    if (state) state.active++;
    this.activeResponses++;
    this.onActivity?.(this.activeResponses);
    if (this.draining) res.shouldKeepAlive = false;
    void serveObject(req, res, {
      objects: this.deps.objects,
      limits: this.deps.limits,
      metrics: this.deps.metrics,
      draining: () => this.draining,
    })
      .then((record) => this.report(record))
      .finally(() => {
        if (state) state.active--;
        this.activeResponses--;
        this.onActivity?.(this.activeResponses);
        // A connection that went idle during a drain is closed now.
        if (this.draining && state && state.active === 0 && res.writableFinished) req.socket.destroySoon();
        if (this.activeResponses === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const w of waiters) w();
        }
      });
  }

  /** The response's metrics and its one log line (the shape of TFTP's "transfer finished"). */
  private report(r: ResponseRecord): void {
    const { metrics, logger } = this.deps;
    if (r.fault !== undefined) {
      // Containment: a fault in one response ended that response only.
      metrics.internalErrors.inc();
      logger.error({ protocol: 'http', client: r.client, port: r.port, file: r.file, err: r.fault }, 'HTTP response fault');
    }
    const labels = { operation: 'read', protocol: 'http' } as const;
    metrics.httpResponses.inc({ code: String(r.status) });
    if (r.started) {
      metrics.transfersFinished.inc({ ...labels, result: r.result });
      metrics.transferDuration.observe(labels, r.durationMs / 1000);
    }
    const level = r.status >= 500 || (r.result !== 'ok' && r.status < 400) ? 'warn' : 'info';
    logger[level](
      {
        protocol: 'http',
        client: r.client,
        port: r.port,
        op: 'read',
        method: r.method,
        file: r.file,
        ...(r.key !== undefined ? { key: r.key } : {}),
        status: r.status,
        ...(r.range !== undefined ? { range: r.range } : {}),
        result: r.result,
        bytes: r.bytes,
        durationMs: Math.round(r.durationMs),
        ...(r.detail !== undefined ? { detail: r.detail } : {}),
      },
      'transfer finished',
    );
  }
}
