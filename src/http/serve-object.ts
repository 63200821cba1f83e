import type http from 'node:http';
import type { ObjectAccess, OpenedObject } from '../core/object-access.js';
import { TransferError } from '../errors.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { sanitize } from '../ops/logger.js';
import { PolicyRefusal } from '../policy/access-policy.js';
import { parseClientAddress } from '../policy/client-address.js';
import type { ClientLimiter } from '../policy/limits.js';
import type { TransferResult } from '../tftp/session/types.js';
import { decide, type Decision } from './conditions.js';
import { parseRequestTarget } from './request-target.js';

/**
 * One GET or HEAD: request target → name → the core's policy and pinned version → status and
 * headers (RFC 9110 preconditions and one byte range) → body streamed from the shared block cache
 * with the socket's backpressure. The version is pinned for the whole body: an object replaced
 * mid-stream fails the range fetch (If-Match), and the connection is cut rather than mixing bytes.
 */

export interface ServeContext {
  readonly objects: ObjectAccess;
  readonly limits: ClientLimiter;
  readonly metrics: GatewayMetrics;
  readonly draining: () => boolean;
}

/** What the front end logs and counts for one response. */
export interface ResponseRecord {
  readonly client: string;
  readonly port: number;
  readonly method: string;
  /** The request target, sanitised. */
  readonly file: string;
  readonly key?: string | undefined;
  readonly status: number;
  /** The bytes served for a 206, `start-end` (inclusive). */
  readonly range?: string | undefined;
  readonly result: TransferResult;
  /** Body bytes handed to the socket. */
  readonly bytes: number;
  readonly durationMs: number;
  /** A transfer was counted as started (a GET or HEAD of a well-formed name). */
  readonly started: boolean;
  readonly detail?: string | undefined;
  /** An unexpected exception (a bug): logged at error level with its stack, counted as internal. */
  readonly fault?: string | undefined;
}

/** Bytes handed to the socket at a time (from the cache range, no copy). */
const CHUNK_BYTES = 256 * 1024;

/** Seconds a client is told to wait after a 503. */
const RETRY_AFTER_S = '5';

/** A failure before any header was sent, as a status and a result. */
function failure(err: unknown): { status: number; result: TransferResult; retryAfter?: boolean; detail: string } {
  const detail = err instanceof Error ? err.message : String(err);
  if (!(err instanceof TransferError)) return { status: 500, result: 'internal-error', detail };
  switch (err.code) {
    case 'NOT_FOUND':
      return { status: 404, result: 'not-found', detail };
    case 'ACCESS_DENIED':
    case 'WRITE_DISABLED':
      return { status: 403, result: 'denied', detail };
    case 'INVALID_PATH':
      return { status: 400, result: 'client-error', detail };
    case 'STORAGE_UNAVAILABLE':
    case 'BUSY':
    case 'SHUTTING_DOWN':
    case 'ABORTED':
      return { status: 503, result: 'storage-error', retryAfter: true, detail };
    case 'OBJECT_CHANGED':
      return { status: 503, result: 'replaced', retryAfter: true, detail };
    default:
      return { status: 502, result: 'storage-error', detail };
  }
}

/** Serves one request; never rejects: a fault ends this response only (500, or a cut connection). */
export async function serveObject(req: http.IncomingMessage, res: http.ServerResponse, ctx: ServeContext): Promise<ResponseRecord> {
  const state = { started: false };
  const startedAt = performance.now();
  try {
    return await respond(req, res, ctx, state);
  } catch (err) {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': '26' }).end('500 Internal Server Error\n');
    else res.destroy();
    if (state.started) ctx.metrics.activeSessions.dec({ operation: 'read', protocol: 'http' });
    const socket = req.socket;
    return {
      client: socket.remoteAddress ?? '',
      port: socket.remotePort ?? 0,
      method: sanitize(req.method ?? '', 16),
      file: sanitize(req.url ?? '', 512),
      status: 500,
      result: 'internal-error',
      bytes: 0,
      durationMs: performance.now() - startedAt,
      started: state.started,
      fault: err instanceof Error ? (err.stack ?? err.message) : String(err),
    };
  }
}

async function respond(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  ctx: ServeContext,
  state: { started: boolean },
): Promise<ResponseRecord> {
  const startedAt = performance.now();
  const socket = req.socket;
  const clientText = socket.remoteAddress ?? '';
  const method = req.method ?? '';
  const target = req.url ?? '';
  const base = { client: clientText, port: socket.remotePort ?? 0, method: sanitize(method, 16), file: sanitize(target, 512) };
  const finish = (status: number, result: TransferResult, extra: Partial<ResponseRecord> = {}): ResponseRecord => {
    if (state.started) ctx.metrics.activeSessions.dec({ operation: 'read', protocol: 'http' });
    const started = state.started;
    state.started = false;
    return { ...base, status, result, bytes: 0, durationMs: performance.now() - startedAt, started, ...extra };
  };
  const plain = (status: number, headers: Record<string, string> = {}): void => {
    const body = method === 'HEAD' || status === 304 ? '' : `${status} ${statusText(status)}\n`;
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), ...headers });
    res.end(body);
  };

  if (method !== 'GET' && method !== 'HEAD') {
    // A body we will not read must not be taken for the next request.
    res.shouldKeepAlive = false;
    plain(405, { allow: 'GET, HEAD' });
    return finish(405, 'client-error');
  }
  const parsed = parseRequestTarget(target);
  if (!parsed.ok) {
    plain(parsed.status);
    return finish(parsed.status, parsed.status === 403 ? 'denied' : 'client-error', { detail: parsed.reason });
  }
  const client = parseClientAddress(clientText);
  if (ctx.limits.admit(client) === 'rate-limited') {
    ctx.metrics.requestsRefused.inc({ reason: 'rate-limited' });
    plain(429, { 'retry-after': '1' });
    return finish(429, 'client-error', { detail: 'rate limited' });
  }
  if (ctx.draining()) {
    plain(503, { 'retry-after': RETRY_AFTER_S });
    return finish(503, 'shutdown', { detail: 'shutting down' });
  }
  state.started = true;
  ctx.metrics.transfersStarted.inc({ operation: 'read', protocol: 'http' });
  ctx.metrics.activeSessions.inc({ operation: 'read', protocol: 'http' });

  let opened: OpenedObject;
  let resolvedKey: string | undefined;
  try {
    resolvedKey = ctx.objects.resolve(parsed.name, 'read', client).key;
    opened = await ctx.objects.openKey(resolvedKey);
  } catch (err) {
    if (err instanceof PolicyRefusal) ctx.metrics.requestsRefused.inc({ reason: err.reason });
    const f = failure(err);
    if (f.status === 500) throw err;
    plain(f.status, f.retryAfter ? { 'retry-after': RETRY_AFTER_S } : {});
    return finish(f.status, f.result, { key: resolvedKey, detail: sanitize(f.detail, 256) });
  }
  if (ctx.draining()) res.shouldKeepAlive = false;
  const { info, key } = opened;
  if (opened.stale) ctx.metrics.staleTransfers.inc();
  const decision: Decision = decide(
    { size: info.size, etag: info.etag, lastModifiedMs: info.lastModifiedMs },
    {
      method,
      ifMatch: header(req, 'if-match'),
      ifNoneMatch: header(req, 'if-none-match'),
      ifModifiedSince: header(req, 'if-modified-since'),
      ifUnmodifiedSince: header(req, 'if-unmodified-since'),
      range: header(req, 'range'),
      ifRange: header(req, 'if-range'),
    },
  );
  const validators: Record<string, string> = { etag: info.etag, 'accept-ranges': 'bytes' };
  if (info.lastModifiedMs !== undefined) validators['last-modified'] = new Date(info.lastModifiedMs).toUTCString();
  if (decision.status === 304 || decision.status === 412) {
    plain(decision.status, validators);
    return finish(decision.status, 'ok', { key });
  }
  if (decision.status === 416) {
    plain(416, { ...validators, 'content-range': `bytes */${info.size}` });
    return finish(416, 'client-error', { key });
  }
  const { start, end } = decision;
  const headers: Record<string, string> = {
    ...validators,
    'content-type': 'application/octet-stream',
    'content-length': String(end - start),
  };
  const range = decision.status === 206 ? `${start}-${end - 1}` : undefined;
  if (range !== undefined) headers['content-range'] = `bytes ${range}/${info.size}`;
  res.writeHead(decision.status, headers);
  if (method === 'HEAD') {
    res.end();
    return finish(decision.status, 'ok', { key, range });
  }
  const sent = await streamBody(opened, start, end, res, ctx.metrics);
  return finish(decision.status, sent.result, { key, range, bytes: sent.bytes, ...(sent.detail !== undefined ? { detail: sent.detail } : {}) });
}

/**
 * Writes [start, end) of the pinned version to `res`, at most CHUNK_BYTES ahead of what the socket
 * has taken: memory per connection stays bounded however slowly the client reads.
 */
async function streamBody(
  opened: OpenedObject,
  start: number,
  end: number,
  res: http.ServerResponse,
  metrics: GatewayMetrics,
): Promise<{ result: TransferResult; bytes: number; detail?: string }> {
  const reader = opened.reader();
  let bytes = 0;
  const closed = new Promise<'closed'>((resolve) => res.once('close', () => resolve('closed')));
  try {
    // A client that reset the connection while the object was looked up: 'close' has fired already,
    // and no 'drain' or 'finish' ever will.
    if (res.destroyed) return { result: 'client-error', bytes, detail: 'client closed the connection' };
    for (let pos = start; pos < end; ) {
      const length = Math.min(CHUNK_BYTES, end - pos);
      let parts = reader.slice(pos, length);
      if (!parts) {
        const loaded = await Promise.race([reader.load(pos, length).then(() => 'loaded' as const), closed]);
        if (loaded === 'closed') return { result: 'client-error', bytes, detail: 'client closed the connection' };
        parts = reader.slice(pos, length);
        if (!parts) throw new TransferError('STORAGE_ERROR', 'range not in memory after it loaded');
      }
      let writable = true;
      for (const part of parts) {
        writable = res.write(part);
        bytes += part.length;
      }
      metrics.transferBytes.inc({ direction: 'sent', protocol: 'http' }, length);
      pos += length;
      reader.release(pos);
      if (!writable && pos < end) {
        const drained = await Promise.race([new Promise<'drained'>((resolve) => res.once('drain', () => resolve('drained'))), closed]);
        if (drained === 'closed') return { result: res.destroyed && bytes < end - start ? 'client-error' : 'ok', bytes, detail: 'client closed the connection' };
      }
    }
    res.end();
    await Promise.race([new Promise<void>((resolve) => res.once('finish', resolve)), closed]);
    return res.writableFinished ? { result: 'ok', bytes } : { result: 'client-error', bytes, detail: 'client closed the connection' };
  } catch (err) {
    // Headers are out: the only honest signal left is a short body (Content-Length not met).
    res.destroy();
    const f = failure(err);
    return { result: f.result === 'not-found' ? 'replaced' : f.result, bytes, detail: sanitize(f.detail, 256) };
  } finally {
    reader.close();
  }
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function statusText(status: number): string {
  const texts: Record<number, string> = {
    304: 'Not Modified', 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
    412: 'Precondition Failed', 414: 'URI Too Long', 416: 'Range Not Satisfiable', 429: 'Too Many Requests',
    500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable',
  };
  return texts[status] ?? 'Error';
}
