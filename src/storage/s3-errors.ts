import { S3ServiceException } from '@aws-sdk/client-s3';
import { TransferError } from '../errors.js';

/**
 * What an S3 failure means: a TransferError with a stable code for the session, and whether it is
 * an outage (S3 or the path to it is unhealthy: serve stale, mark S3 unreachable) or an answer
 * (404, 403, 412: the object or our rights, not S3's health).
 */

/** Why a call failed when S3 is unhealthy: a bounded set, used as a metric label. */
export type OutageCause = 'server_error' | 'throttled' | 'timeout' | 'network_error';

/** Raised (as an abort reason) when a call got no answer within its deadline. */
export class S3DeadlineExceeded extends Error {
  override readonly name = 'S3DeadlineExceeded';
}

const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'TooManyRequestsException', 'RequestLimitExceeded']);
const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED']);

interface SdkErrorShape {
  name?: string;
  code?: string;
  cause?: unknown;
  $metadata?: { httpStatusCode?: number };
}

/** True for an SDK AbortError raised because a call's deadline passed (not a shutdown or a client going away). */
export function isDeadlineAbort(err: unknown): boolean {
  const e = err as SdkErrorShape | undefined;
  return e?.name === 'S3DeadlineExceeded' || (e?.name === 'AbortError' && e.cause instanceof S3DeadlineExceeded);
}

/**
 * The outage cause of a failed S3 call (an SDK error, or a TransferError carrying one as its
 * cause), or undefined when the failure is an answer about the object (404, 403, 412, other 4xx)
 * or our own abort.
 */
export function outageCause(err: unknown): OutageCause | undefined {
  let e = err as SdkErrorShape | undefined;
  if (err instanceof TransferError) {
    if (err.cause === undefined) return err.code === 'STORAGE_UNAVAILABLE' ? 'network_error' : undefined;
    e = err.cause as SdkErrorShape;
  }
  if (!e) return undefined;
  if (isDeadlineAbort(e)) return 'timeout';
  if (e.name === 'AbortError') return undefined;
  const status = e.$metadata?.httpStatusCode;
  if (THROTTLING.has(e.name ?? '') || status === 429 || status === 503) return 'throttled';
  if (status !== undefined && status >= 500) return 'server_error';
  if (status !== undefined) return undefined;
  // The SDK names resets TimeoutError too (with the socket's error code): look at the code first.
  if (e.code !== undefined && NETWORK_CODES.has(e.code)) return 'network_error';
  if (e.name === 'TimeoutError' || e.code === 'ETIMEDOUT') return 'timeout';
  if (e instanceof S3ServiceException) return undefined;
  return 'network_error';
}

/** Maps an SDK failure to a TransferError with a stable code. */
export function storageError(err: unknown, what: string): TransferError {
  if (err instanceof TransferError) return err;
  const status = (err as SdkErrorShape | undefined)?.$metadata?.httpStatusCode;
  const name = err instanceof Error ? err.name : 'Error';
  const detail = `${what}: ${name}${status ? ` (HTTP ${status})` : ''}${err instanceof Error && err.message ? `: ${err.message}` : ''}`;
  if (status === 404 || name === 'NotFound' || name === 'NoSuchKey') return new TransferError('NOT_FOUND', detail, { cause: err });
  if (status === 403 || name === 'AccessDenied') return new TransferError('ACCESS_DENIED', detail, { cause: err });
  if (status === 412 || name === 'PreconditionFailed') return new TransferError('OBJECT_CHANGED', detail, { cause: err });
  if (isDeadlineAbort(err)) return new TransferError('STORAGE_UNAVAILABLE', `${what}: no answer from S3 in time`, { cause: err });
  if (name === 'AbortError') return new TransferError('ABORTED', detail, { cause: err });
  // Unhealthy S3 (5xx, throttling, no answer, no connection): "Storage unavailable" on the wire.
  if (outageCause(err) !== undefined) return new TransferError('STORAGE_UNAVAILABLE', detail, { cause: err });
  return new TransferError('STORAGE_ERROR', detail, { cause: err });
}
