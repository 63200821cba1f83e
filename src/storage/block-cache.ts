import { setMaxListeners } from 'node:events';
import { LRUCache } from 'lru-cache';
import { TransferError } from '../errors.js';
import { MetadataCache, type MetadataAnswer, type MetadataCacheOptions } from './metadata-cache.js';
import type { RangeCache } from './range-cache.js';
import type { ObjectInfo, S3ObjectStore } from './s3-store.js';

/** Shared-memory layout of a range's progress (worker pool): [filled bytes, failed flag]. */
export const SHARED_FILLED = 0;
export const SHARED_FAILED = 1;

/**
 * One aligned range of an object, filled progressively as its GetObject body streams in, so the
 * front of a range can be sent before its end arrives. Shared by every session that reads it.
 */
export class RangeEntry {
  readonly buffer: Buffer;
  filled = 0;
  error: TransferError | undefined;
  /** Sessions holding this range (CachedObjectSource); a held range is never fetched twice. */
  holders = 0;
  /** True until the fetch has settled (filled or failed). */
  fetching = false;
  private waiters: { until: number; resolve: () => void; reject: (err: TransferError) => void }[] = [];
  /**
   * With `shared`, the bytes live in a SharedArrayBuffer and progress is mirrored in `sharedState`
   * (SHARED_FILLED, SHARED_FAILED; Atomics.notify on each change), so worker threads read the
   * range without copies and wait on its progress.
   */
  readonly sharedState: Int32Array | undefined;

  constructor(length: number, shared = false) {
    if (shared) {
      this.buffer = Buffer.from(new SharedArrayBuffer(length));
      this.sharedState = new Int32Array(new SharedArrayBuffer(8));
    } else {
      // Not from the shared pool: a range outlives any pool slab and is freed as a whole.
      this.buffer = Buffer.allocUnsafeSlow(length);
    }
  }

  get complete(): boolean {
    return this.filled >= this.buffer.length;
  }

  /** In flight or held by a session: must stay reachable by its key even when evicted. */
  get inUse(): boolean {
    return this.fetching || this.holders > 0;
  }

  /** Resolves once at least `bytes` bytes of the range are present. */
  waitFor(bytes: number): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (this.filled >= bytes) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ until: bytes, resolve, reject }));
  }

  progress(filled: number): void {
    this.filled = filled;
    if (this.sharedState) {
      Atomics.store(this.sharedState, SHARED_FILLED, filled);
      Atomics.notify(this.sharedState, SHARED_FILLED);
    }
    if (this.waiters.length === 0) return;
    let kept = 0;
    for (const w of this.waiters) {
      if (filled >= w.until) w.resolve();
      else this.waiters[kept++] = w;
    }
    this.waiters.length = kept;
  }

  fail(err: TransferError): void {
    this.error = err;
    if (this.sharedState) {
      Atomics.store(this.sharedState, SHARED_FAILED, 1);
      Atomics.notify(this.sharedState, SHARED_FILLED);
    }
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }
}

export interface BlockCacheOptions {
  /** Bytes of object data held at most (ranges being fetched count too). */
  readonly maxBytes: number;
  /** Aligned range size in bytes (S3's sweet spot is 8–16 MiB). */
  readonly rangeSize: number;
  /** How long a HeadObject answer is trusted before it is asked again. */
  readonly metadataTtlMs: number;
  /** How long past its TTL the last good answer is served while refreshes fail (0, the default: never). */
  readonly staleIfErrorMs?: number;
  /** S3 reachability and the stale-metadata hooks (see MetadataCache). */
  readonly metadata?: Omit<MetadataCacheOptions, 'ttlMs' | 'staleIfErrorMs' | 'now'>;
  readonly onHit?: () => void;
  readonly onMiss?: () => void;
  readonly onEvict?: () => void;
  /** Injectable clock for the metadata TTL (tests). */
  readonly now?: () => number;
  /** Range buffers in shared memory, for worker threads (see RangeEntry). */
  readonly sharedMemory?: boolean;
  /** Bytes of object data a lower tier (disk) holds, for readiness without S3. */
  readonly lowerTierBytes?: () => number;
  /** Ranges a transfer should keep in flight ahead of itself (adaptive, from the S3 reader); at least the transfer's own read-ahead. */
  readonly readAheadRanges?: () => number;
}

/**
 * The read cache shared by all sessions: object metadata (brief TTL, single flight) and aligned
 * ranges keyed by (bucket, key, ETag, range index), bounded in bytes, single flight per range.
 *
 * Memory: the LRU holds at most `maxBytes`. A range that is evicted while a fetch is still
 * filling it, or while a session is sending from it, stays reachable (in `inUse`) until it is
 * let go, so it is never fetched twice meanwhile; those bytes are the "per-session constant":
 * a session holds only the ranges its unacknowledged window touches (one, two at a boundary).
 */
export class BlockCache implements RangeCache<RangeEntry> {
  private readonly ranges: LRUCache<string, RangeEntry>;
  /** Evicted ranges still in flight or held by a session, by cache key. */
  private readonly inUse = new Map<string, RangeEntry>();
  private inUseBytes = 0;
  /** Bytes of ranges being fetched now (read-ahead stops while they pass half the budget). */
  private fetchingBytes = 0;
  private readonly metadata: MetadataCache;
  /** Aborts every fetch when the cache is closed (server stop). */
  private readonly lifetime = new AbortController();

  constructor(
    private readonly store: Pick<S3ObjectStore, 'bucket' | 'head' | 'readRange'>,
    private readonly options: BlockCacheOptions,
  ) {
    // Every S3 call in flight listens on the cache's lifetime (one listener each, removed when the
    // call settles): many at once in a boot storm is normal, not a leak.
    setMaxListeners(0, this.lifetime.signal);
    this.ranges = new LRUCache<string, RangeEntry>({
      maxSize: Math.max(options.maxBytes, options.rangeSize),
      sizeCalculation: (entry) => Math.max(1, entry.buffer.length),
      dispose: (entry, key, reason) => {
        if (reason === 'evict') {
          options.onEvict?.();
          if (entry.inUse && !entry.error) {
            this.inUse.set(key, entry);
            this.inUseBytes += entry.buffer.length;
          }
        }
      },
    });
    this.metadata = new MetadataCache((key) => store.head(key, this.lifetime.signal), {
      ...options.metadata,
      ttlMs: options.metadataTtlMs,
      staleIfErrorMs: options.staleIfErrorMs ?? 0,
      ...(options.now ? { now: options.now } : {}),
    });
  }

  get rangeSize(): number {
    return this.options.rangeSize;
  }

  /** Ranges a transfer keeps in flight ahead of itself, as the S3 reader measures it (0: no advice). */
  readAheadRanges(): number {
    return this.options.readAheadRanges?.() ?? 0;
  }

  /** Bytes of object data the cache holds at most (--cache-size). */
  get bytesBudget(): number {
    return this.options.maxBytes;
  }

  /** Bytes of range buffers currently held: the LRU plus evicted ranges still in use. */
  get bytesHeld(): number {
    return this.ranges.calculatedSize + this.inUseBytes;
  }

  /** Bytes of evicted ranges kept only because a fetch or a session still uses them. */
  get bytesInUseOverBudget(): number {
    return this.inUseBytes;
  }

  /**
   * Size and ETag of `key`, from a HEAD answered within the last `metadataTtlMs` if there is one
   * (a hot file costs one HEAD per TTL, not one per client); concurrent callers share one HEAD.
   * After the TTL the next caller revalidates with a fresh HEAD; if S3 fails then, the last good
   * answer is served for up to `staleIfErrorMs` (flagged `stale`).
   */
  lookup(key: string): Promise<MetadataAnswer> {
    return this.metadata.lookup(key);
  }

  stat(key: string): Promise<ObjectInfo> {
    return this.metadata.lookup(key).then((answer) => answer.info);
  }

  /** Objects served from stale metadata right now. */
  get staleObjects(): number {
    return this.metadata.staleObjects;
  }

  /** True if some object could be served without S3: its metadata is servable and some range is held. */
  get servesCachedContent(): boolean {
    return this.bytesHeld + (this.options.lowerTierBytes?.() ?? 0) > 0 && this.metadata.servableObjects > 0;
  }

  /** Seeds object metadata S3 confirmed at `validatedAt` (wall clock ms), e.g. persisted by the disk tier. */
  seedMetadata(key: string, info: ObjectInfo, validatedAt: number): void {
    this.metadata.seed(key, info, validatedAt);
  }

  /** Forgets what we know of `key` (after the object changed under a transfer, or was uploaded). */
  invalidate(key: string): void {
    this.metadata.invalidate(key);
  }

  /**
   * The range entry if the cache holds it (no fetch); refreshes its recency. Sessions call it once
   * per range they take up, so a found entry counts as a cache hit.
   */
  peek(key: string, info: ObjectInfo, index: number): RangeEntry | undefined {
    const cacheKey = this.rangeKey(key, info, index);
    const entry = this.ranges.get(cacheKey) ?? this.inUse.get(cacheKey);
    if (entry && !entry.error) this.options.onHit?.();
    return entry;
  }

  /** True if the range is cached or being fetched (no recency change, no fetch). */
  has(key: string, info: ObjectInfo, index: number): boolean {
    const cacheKey = this.rangeKey(key, info, index);
    const entry = this.ranges.peek(cacheKey) ?? this.inUse.get(cacheKey);
    return entry !== undefined && !entry.error;
  }

  /** The range entry, starting its fetch if nobody has (single flight). */
  range(key: string, info: ObjectInfo, index: number): RangeEntry {
    const cacheKey = this.rangeKey(key, info, index);
    const existing = this.ranges.get(cacheKey) ?? this.inUse.get(cacheKey);
    if (existing && !existing.error) {
      this.options.onHit?.();
      return existing;
    }
    this.options.onMiss?.();
    const start = index * this.options.rangeSize;
    const length = Math.max(0, Math.min(this.options.rangeSize, info.size - start));
    const entry = new RangeEntry(length, this.options.sharedMemory === true);
    this.dropInUse(cacheKey);
    if (length === 0) return entry;
    entry.fetching = true;
    this.fetchingBytes += length;
    this.ranges.set(cacheKey, entry);
    if (this.lifetime.signal.aborted) {
      entry.fetching = false;
      this.fetchingBytes -= length;
      entry.fail(new TransferError('ABORTED', 'cache closed'));
      this.ranges.delete(cacheKey);
      return entry;
    }
    this.store
      .readRange(key, info.etag, start, entry.buffer, (filled) => entry.progress(filled), this.lifetime.signal)
      .then(
        () => {
          entry.fetching = false;
          this.fetchingBytes -= length;
          entry.progress(entry.buffer.length);
          this.settle(cacheKey, entry);
        },
        (err: unknown) => {
          entry.fetching = false;
          this.fetchingBytes -= length;
          const failure = err instanceof TransferError ? err : new TransferError('STORAGE_ERROR', String(err));
          if (this.ranges.peek(cacheKey) === entry) this.ranges.delete(cacheKey);
          this.settle(cacheKey, entry);
          if (failure.code === 'OBJECT_CHANGED') this.invalidate(key);
          entry.fail(failure);
        },
      );
    return entry;
  }

  /**
   * Starts fetching the range unless it is cached or in flight (read-ahead: not a hit or miss of a
   * session), and unless fetches in flight already hold half the budget: read-ahead must not push
   * out what transfers are reading.
   */
  prefetch(key: string, info: ObjectInfo, index: number): void {
    if (this.fetchingBytes >= this.options.maxBytes / 2) return;
    if (!this.has(key, info, index)) this.range(key, info, index);
  }

  /** A session starts using `entry` (it will not be fetched again while held). */
  hold(entry: RangeEntry): void {
    entry.holders++;
  }

  /** A session stops using `entry`. */
  release(entry: RangeEntry, key: string, info: ObjectInfo, index: number): void {
    if (entry.holders > 0) entry.holders--;
    if (!entry.inUse) this.settle(this.rangeKey(key, info, index), entry);
  }

  close(): void {
    this.lifetime.abort();
    this.ranges.clear();
    this.inUse.clear();
    this.inUseBytes = 0;
    this.metadata.close();
  }

  /** An evicted entry that nobody uses any more is dropped for good. */
  private settle(cacheKey: string, entry: RangeEntry): void {
    if (entry.inUse) return;
    if (this.inUse.get(cacheKey) === entry) this.dropInUse(cacheKey);
  }

  private dropInUse(cacheKey: string): void {
    const entry = this.inUse.get(cacheKey);
    if (!entry) return;
    this.inUse.delete(cacheKey);
    this.inUseBytes -= entry.buffer.length;
  }

  private rangeKey(key: string, info: ObjectInfo, index: number): string {
    return `${this.store.bucket}\u0000${key}\u0000${info.etag}\u0000${index}`;
  }
}
