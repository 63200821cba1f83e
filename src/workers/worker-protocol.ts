import type { AddressInfo } from 'node:net';
import type { TransferErrorCode } from '../errors.js';
import type { TransferFinished } from '../tftp/transfer-report.js';
import type { ObjectInfo } from '../storage/s3-store.js';

/**
 * Messages between the main thread (WorkerPool: block cache, S3, HTTP, signals) and the worker
 * threads (UDP sockets, dispatcher, sessions). Range bytes never travel in messages: a range is a
 * SharedArrayBuffer both sides map, with its progress in a shared Int32Array.
 */

/** What a worker thread is started with. */
export interface WorkerInit {
  /** The worker's number (1..N), stable across replacements of the same slot: the `worker` log field. */
  readonly slot: number;
  /** How the main thread's configuration was loaded (loaded again in the worker). */
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Listen addresses with ports resolved (port 0 becomes the port the first worker got). */
  readonly listen: readonly { readonly host: string; readonly port: number }[];
  /** HTTP boot listen addresses, ports resolved the same way (empty: HTTP boot off). */
  readonly httpBootListen: readonly { readonly host: string; readonly port: number }[];
  /** Int32 [reachable, readAheadRanges]: whether S3 answers (the main thread's S3Health), and the cache's read-ahead advice. */
  readonly s3Reachable: SharedArrayBuffer;
  /** The process-wide client limits (SharedClientLimits). */
  readonly limits: { readonly ints: SharedArrayBuffer; readonly floats: SharedArrayBuffer };
}

/** A TransferError as it crosses threads. */
export interface WireFailure {
  readonly code: TransferErrorCode;
  readonly message: string;
}

export type WorkerToMain =
  | { readonly t: 'ready'; readonly addresses: AddressInfo[]; readonly httpAddresses: AddressInfo[] }
  /** HTTP responses in progress in the worker (drain and scale-in protection count them). */
  | { readonly t: 'httpActive'; readonly active: number }
  | { readonly t: 'startFailed'; readonly message: string }
  /** Log lines, and the transfer-finished records of the same tick (after their log lines). */
  | { readonly t: 'log'; readonly lines: string[]; readonly transfers?: TransferFinished[] }
  | { readonly t: 'session'; readonly open: boolean; readonly key: string }
  | { readonly t: 'stray'; readonly endpoint: number; readonly msg: Uint8Array; readonly address: string; readonly port: number }
  | { readonly t: 'lookup'; readonly id: number; readonly key: string }
  | { readonly t: 'head'; readonly id: number; readonly key: string }
  | { readonly t: 'range'; readonly id: number; readonly key: string; readonly info: ObjectInfo; readonly index: number }
  | { readonly t: 'prefetch'; readonly key: string; readonly info: ObjectInfo; readonly index: number }
  | { readonly t: 'release'; readonly id: number }
  | { readonly t: 'invalidate'; readonly key: string }
  | { readonly t: 'upload'; readonly id: number; readonly key: string; readonly ifNoneMatch: boolean }
  | { readonly t: 'uploadWrite'; readonly id: number; readonly data: ArrayBuffer; readonly length: number }
  | { readonly t: 'uploadFinish'; readonly id: number; readonly rid: number }
  | { readonly t: 'uploadAbort'; readonly id: number; readonly rid: number; readonly reason: string }
  | { readonly t: 'reply'; readonly rid: number; readonly ok: boolean; readonly value?: unknown; readonly error?: WireFailure };

export type MainToWorker =
  | { readonly t: 'reply'; readonly rid: number; readonly ok: boolean; readonly value?: unknown; readonly error?: WireFailure }
  | {
      readonly t: 'rangeReady';
      readonly id: number;
      readonly buffer: SharedArrayBuffer;
      readonly offset: number;
      readonly length: number;
      readonly state: SharedArrayBuffer;
    }
  | { readonly t: 'rangeFailed'; readonly id: number; readonly error: WireFailure }
  | { readonly t: 'uploadAck'; readonly id: number }
  | { readonly t: 'uploadFailed'; readonly id: number; readonly error: WireFailure }
  | { readonly t: 'foreign'; readonly endpoint: number; readonly msg: Uint8Array; readonly address: string; readonly port: number }
  | { readonly t: 'replaceClient'; readonly key: string }
  | { readonly t: 'drain' }
  | { readonly t: 'endLingering' }
  | { readonly t: 'abortAll' }
  | { readonly t: 'metrics'; readonly rid: number }
  | { readonly t: 'settle'; readonly rid: number }
  | { readonly t: 'close'; readonly rid: number };
