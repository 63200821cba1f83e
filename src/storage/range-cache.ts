import type { TransferError } from '../errors.js';
import type { UploadSink } from '../tftp/session/types.js';
import type { MetadataAnswer } from './metadata-cache.js';
import type { ObjectInfo } from './s3-store.js';

/**
 * What a transfer reads through: the block cache itself (single-threaded mode) or, in a worker
 * thread, a client of the main thread's cache whose ranges are views of the same shared memory.
 */

/** One aligned range of an object, filled progressively (RangeEntry, or a worker's view of one). */
export interface RangeView {
  readonly buffer: Buffer;
  /** Bytes of `buffer` present so far (from its start). */
  readonly filled: number;
  readonly error: TransferError | undefined;
  /** Resolves once at least `bytes` bytes are present; rejects with the fetch's TransferError. */
  waitFor(bytes: number): Promise<void>;
}

export interface RangeCache<R extends RangeView = RangeView> {
  readonly rangeSize: number;
  /** Size and ETag of `key` (a recent HEAD answer, single flight; stale-if-error while S3 fails). */
  lookup(key: string): Promise<MetadataAnswer>;
  /** Forgets what is known of `key` (after an upload, or the object changed). */
  invalidate(key: string): void;
  /** The range if it is at hand (no fetch); counts as a hit when found. */
  peek(key: string, info: ObjectInfo, index: number): R | undefined;
  /** True if the range is at hand or being fetched (no fetch, no recency change). */
  has(key: string, info: ObjectInfo, index: number): boolean;
  /** The range, starting its fetch if nobody has (single flight). */
  range(key: string, info: ObjectInfo, index: number): R;
  /** Ranges a transfer should keep in flight ahead of itself, as measured on S3 (absent or 0: no advice). */
  readAheadRanges?(): number;
  /** Starts fetching the range if it is neither cached nor in flight (read-ahead). */
  prefetch(key: string, info: ObjectInfo, index: number): void;
  /** A transfer starts using `entry` (not fetched again, not freed, while held). */
  hold(entry: R): void;
  release(entry: R, key: string, info: ObjectInfo, index: number): void;
}

/** The storage side of uploads (and the overwrite check before one). */
export interface UploadStore {
  head(key: string, signal?: AbortSignal): Promise<ObjectInfo>;
  createUpload(key: string, options: { ifNoneMatch: boolean }): UploadSink;
}
