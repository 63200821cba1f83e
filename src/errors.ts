import { ErrorCode } from './tftp/protocol/packet.js';

/** Stable internal error codes; `tftpErrorFor` maps them to what goes on the wire. */
export type TransferErrorCode =
  | 'NOT_FOUND'
  | 'ACCESS_DENIED'
  | 'INVALID_PATH'
  | 'WRITE_DISABLED'
  | 'EXISTS'
  | 'TOO_LARGE'
  | 'OBJECT_CHANGED'
  | 'STORAGE_UNAVAILABLE'
  | 'STORAGE_ERROR'
  | 'BAD_MODE'
  | 'BUSY'
  | 'SHUTTING_DOWN'
  | 'ABORTED';

export class TransferError extends Error {
  override readonly name = 'TransferError';
  constructor(
    readonly code: TransferErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface WireError {
  readonly code: ErrorCode;
  /** Generic text for the client; detail stays in the log. */
  readonly message: string;
}

export function tftpErrorFor(err: unknown): WireError {
  const code = err instanceof TransferError ? err.code : 'STORAGE_ERROR';
  switch (code) {
    case 'NOT_FOUND': return { code: ErrorCode.FileNotFound, message: 'File not found' };
    case 'ACCESS_DENIED': return { code: ErrorCode.AccessViolation, message: 'Access violation' };
    case 'INVALID_PATH': return { code: ErrorCode.AccessViolation, message: 'Invalid file name' };
    case 'WRITE_DISABLED': return { code: ErrorCode.AccessViolation, message: 'Writes are not allowed' };
    case 'EXISTS': return { code: ErrorCode.FileExists, message: 'File already exists' };
    case 'TOO_LARGE': return { code: ErrorCode.DiskFull, message: 'File too large' };
    case 'OBJECT_CHANGED': return { code: ErrorCode.NotDefined, message: 'File changed during transfer' };
    case 'BAD_MODE': return { code: ErrorCode.IllegalOperation, message: 'Unsupported transfer mode' };
    case 'BUSY': return { code: ErrorCode.NotDefined, message: 'Server busy' };
    case 'SHUTTING_DOWN': return { code: ErrorCode.NotDefined, message: 'Server shutting down' };
    case 'ABORTED': return { code: ErrorCode.NotDefined, message: 'Transfer aborted' };
    // S3 unhealthy (5xx, throttling, no answer, no connection): the operator knows where to look.
    case 'STORAGE_UNAVAILABLE': return { code: ErrorCode.NotDefined, message: 'Storage unavailable' };
    case 'STORAGE_ERROR':
    default:
      return { code: ErrorCode.NotDefined, message: 'Storage error' };
  }
}

/** The message of anything thrown (an Error's message, else its string form), for logs and problems. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** An exception's message and stack, for an error log line. */
export function faultDetail(err: unknown): { message: string; stack?: string } {
  if (err instanceof Error) return { message: err.message, ...(err.stack !== undefined ? { stack: err.stack } : {}) };
  return { message: String(err) };
}
