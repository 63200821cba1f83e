import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before } from 'node:test';
import { testS3, type TestS3 } from './s3.js';

/**
 * An HTTP proxy between the gateway and the S3-compatible server that injects faults: error
 * statuses (503 SlowDown, 500), connections reset before an answer or in the middle of a body,
 * or a store that is down altogether (`mode`: 503 to everything, accept and never answer, or
 * reset every connection). Requests are forwarded byte for byte (the Host header included, so
 * SigV4 signatures stay valid) and every one is recorded with its S3 operation.
 */

/**
 * The whole store's state: `pass` forwards (rules still apply); `unavailable` answers 503 SlowDown
 * to everything; `hang` accepts requests and never answers; `reset` resets every connection.
 */
export type ProxyMode = 'pass' | 'unavailable' | 'hang' | 'reset';

export type S3Operation =
  | 'GetObject'
  | 'HeadObject'
  | 'PutObject'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'ListMultipartUploads'
  | 'DeleteObject'
  | 'Other';

export interface ProxiedRequest {
  readonly operation: S3Operation;
  readonly method: string;
  /** Object key (path-style addressing), or undefined for bucket-level calls. */
  readonly key: string | undefined;
  readonly range: string | undefined;
  /** When the proxy received it (Date.now()). */
  readonly at: number;
  /** The fault applied, if any. */
  fault: FaultAction['kind'] | 'hang' | undefined;
  status: number | undefined;
}

export type FaultAction =
  | { readonly kind: 'status'; readonly status: number; readonly code: string }
  /** Forward the answer's headers and the first `afterBytes` of its body, then reset the connection. */
  | { readonly kind: 'reset-mid-body'; readonly afterBytes: number }
  /** Reset the connection without answering. */
  | { readonly kind: 'reset' }
  /** Forward the request `ms` later (a slow store: first-byte latency). */
  | { readonly kind: 'delay'; readonly ms: number };

export interface FaultRule {
  readonly match: (req: ProxiedRequest) => boolean;
  readonly action: FaultAction;
  /** How many matching requests get the fault (default: all). */
  times?: number;
}

export const slowDown: FaultAction = { kind: 'status', status: 503, code: 'SlowDown' };
export const internalError: FaultAction = { kind: 'status', status: 500, code: 'InternalError' };

export function classify(method: string, url: string): { operation: S3Operation; key: string | undefined } {
  const u = new URL(url, 'http://proxy');
  const parts = u.pathname.split('/').filter((p, i) => i > 0 || p !== '');
  // path-style: /bucket/key...
  const rest = u.pathname.replace(/^\/[^/]*\/?/, '');
  const key = rest.length > 0 ? decodeURIComponent(rest) : undefined;
  const q = u.searchParams;
  void parts;
  let operation: S3Operation = 'Other';
  if (key === undefined) {
    if (method === 'GET' && q.has('uploads')) operation = 'ListMultipartUploads';
  } else if (method === 'GET') operation = 'GetObject';
  else if (method === 'HEAD') operation = 'HeadObject';
  else if (method === 'PUT') operation = q.has('uploadId') && q.has('partNumber') ? 'UploadPart' : 'PutObject';
  else if (method === 'POST') operation = q.has('uploads') ? 'CreateMultipartUpload' : q.has('uploadId') ? 'CompleteMultipartUpload' : 'Other';
  else if (method === 'DELETE') operation = q.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
  return { operation, key };
}

export class S3FaultProxy {
  readonly requests: ProxiedRequest[] = [];
  readonly rules: FaultRule[] = [];
  private currentMode: ProxyMode = 'pass';
  /** Requests held unanswered in `hang` mode (released, by a reset, when the mode changes). */
  private readonly hung = new Set<http.IncomingMessage>();
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  private constructor(
    private readonly server: http.Server,
    private readonly upstream: URL,
  ) {}

  static async start(upstreamEndpoint: string): Promise<S3FaultProxy> {
    const server = http.createServer();
    const proxy = new S3FaultProxy(server, new URL(upstreamEndpoint));
    server.on('request', (req, res) => proxy.handle(req, res));
    server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Adds a fault; returns the rule so a test can see how many were left. */
  inject(match: (req: ProxiedRequest) => boolean, action: FaultAction, times?: number): FaultRule {
    const rule: FaultRule = { match, action, ...(times !== undefined ? { times } : {}) };
    this.rules.push(rule);
    return rule;
  }

  get mode(): ProxyMode {
    return this.currentMode;
  }

  set mode(mode: ProxyMode) {
    this.currentMode = mode;
    if (mode === 'hang') return;
    for (const req of this.hung) req.socket.destroy();
    this.hung.clear();
  }

  /** Every request is reset: the store is down (same as mode 'reset'). */
  get down(): boolean {
    return this.currentMode === 'reset';
  }

  set down(down: boolean) {
    this.mode = down ? 'reset' : 'pass';
  }

  /** Requests being held unanswered right now (hang mode). */
  get hanging(): number {
    return this.hung.size;
  }

  clearFaults(): void {
    this.rules.length = 0;
    this.mode = 'pass';
  }

  /** Requests of one operation (optionally for one key). */
  seen(operation: S3Operation, key?: string): ProxiedRequest[] {
    return this.requests.filter((r) => r.operation === operation && (key === undefined || r.key === key));
  }

  private pickFault(req: ProxiedRequest): FaultAction | undefined {
    for (const rule of this.rules) {
      if ((rule.times === undefined || rule.times > 0) && rule.match(req)) {
        if (rule.times !== undefined) rule.times--;
        return rule.action;
      }
    }
    return undefined;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const method = req.method ?? 'GET';
    const { operation, key } = classify(method, req.url ?? '/');
    const record: ProxiedRequest = {
      operation,
      method,
      key,
      range: typeof req.headers.range === 'string' ? req.headers.range : undefined,
      at: Date.now(),
      fault: undefined,
      status: undefined,
    };
    this.requests.push(record);
    if (this.requests.length > 100_000) this.requests.splice(0, 50_000);
    if (this.currentMode === 'reset') {
      record.fault = 'reset';
      req.socket.destroy();
      return;
    }
    if (this.currentMode === 'hang') {
      record.fault = 'hang';
      // Read the request (an upload's body included) and say nothing, ever.
      req.resume();
      this.hung.add(req);
      req.socket.once('close', () => this.hung.delete(req));
      return;
    }
    const fault = this.currentMode === 'unavailable' ? slowDown : this.pickFault(record);
    record.fault = fault?.kind;
    if (fault?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'status') {
      req.resume();
      req.on('end', () => {
        record.status = fault.status;
        const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code><Message>injected by the test proxy</Message></Error>`;
        res.writeHead(fault.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
        res.end(method === 'HEAD' ? undefined : body);
      });
      return;
    }
    if (fault?.kind === 'delay') {
      // Paused, not read: the request's bytes wait in the socket until it is forwarded.
      req.pause();
      setTimeout(() => {
        if (req.socket.destroyed) return;
        this.forward(req, res, record, undefined);
        req.resume();
      }, fault.ms);
      return;
    }
    this.forward(req, res, record, fault);
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse, record: ProxiedRequest, fault: FaultAction | undefined): void {
    const method = req.method ?? 'GET';
    const upstreamReq = http.request(
      {
        host: this.upstream.hostname,
        port: this.upstream.port,
        method,
        path: req.url,
        headers: req.headers,
        agent: this.agent,
      },
      (upRes) => {
        record.status = upRes.statusCode;
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (fault?.kind === 'reset-mid-body') {
          let sent = 0;
          upRes.on('data', (chunk: Buffer) => {
            if (sent >= fault.afterBytes) return;
            const n = Math.min(chunk.length, fault.afterBytes - sent);
            res.write(chunk.subarray(0, n));
            sent += n;
            if (sent >= fault.afterBytes) {
              upRes.destroy();
              // Let the bytes reach the client, then cut the connection mid-body.
              setTimeout(() => res.socket?.destroy(), 20);
            }
          });
          upRes.on('end', () => res.end());
          return;
        }
        upRes.pipe(res);
      },
    );
    upstreamReq.on('error', () => res.socket?.destroy());
    req.pipe(upstreamReq);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.agent.destroy();
  }
}

/**
 * For one test file: a bucket of its own on the test S3 server and a fault proxy in front of that
 * server (`set` receives them before the tests run); both closed after the file.
 */
export function withFaultProxy(set: (s3: TestS3, bucket: string, proxy: S3FaultProxy) => void): void {
  let s3: TestS3 | undefined;
  let proxy: S3FaultProxy | undefined;
  before(async () => {
    s3 = await testS3();
    const bucket = await s3.createBucket();
    proxy = await S3FaultProxy.start(s3.endpoint);
    set(s3, bucket, proxy);
  });
  after(async () => {
    await proxy?.close();
    await s3?.cleanup();
  });
}
