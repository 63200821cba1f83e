import { LRUCache } from 'lru-cache';
import { TransferError } from '../session/errors.js';
import type { ObjectInfo, S3ObjectStore } from './s3-store.js';

/**
 * One aligned range of an object, filled progressively as its GetObject body streams in, so the
 * front of a range can be sent before its end arrives. Shared by every session that reads it.
 */
export class RangeEntry {
  readonly buffer: Buffer;
  filled = 0;
  error: TransferError | undefined;
  private waiters: { until: number; resolve: () => void; reject: (err: TransferError) => void }[] = [];

  constructor(length: number) {
    this.buffer = Buffer.allocUnsafe(length);
  }

  get complete(): boolean {
    return this.filled >= this.buffer.length;
  }

  /** Resolves once at least `bytes` bytes of the range are present. */
  waitFor(bytes: number): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (this.filled >= bytes) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ until: bytes, resolve, reject }));
  }

  progress(filled: number): void {
    this.filled = filled;
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (filled >= w.until) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  fail(err: TransferError): void {
    this.error = err;
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
  readonly onHit?: () => void;
  readonly onMiss?: () => void;
  readonly onEvict?: () => void;
}

/**
 * The read cache shared by all sessions: object metadata (brief TTL, single flight) and aligned
 * ranges keyed by (bucket, key, ETag, range index), bounded in bytes, single flight per range.
 */
export class BlockCache {
  private readonly ranges: LRUCache<string, RangeEntry>;
  private readonly metadata: LRUCache<string, ObjectInfo>;
  private readonly metadataInFlight = new Map<string, Promise<ObjectInfo>>();
  /** Aborts every fetch when the cache is closed (server stop). */
  private readonly lifetime = new AbortController();

  constructor(
    private readonly store: S3ObjectStore,
    private readonly options: BlockCacheOptions,
  ) {
    this.ranges = new LRUCache<string, RangeEntry>({
      maxSize: Math.max(options.maxBytes, options.rangeSize),
      sizeCalculation: (entry) => Math.max(1, entry.buffer.length),
      dispose: (_entry, _key, reason) => {
        if (reason === 'evict') options.onEvict?.();
      },
    });
    this.metadata = new LRUCache<string, ObjectInfo>({ max: 10_000, ttl: Math.max(1, options.metadataTtlMs) });
  }

  get rangeSize(): number {
    return this.options.rangeSize;
  }

  /** Bytes of range buffers currently held by the cache. */
  get bytesHeld(): number {
    return this.ranges.calculatedSize;
  }

  /** Size and ETag of `key`, from a recent HEAD if there is one; concurrent callers share one HEAD. */
  stat(key: string): Promise<ObjectInfo> {
    const cached = this.metadata.get(key);
    if (cached) return Promise.resolve(cached);
    let inFlight = this.metadataInFlight.get(key);
    if (!inFlight) {
      inFlight = this.store.head(key, this.lifetime.signal).then(
        (info) => {
          this.metadata.set(key, info);
          this.metadataInFlight.delete(key);
          return info;
        },
        (err: unknown) => {
          this.metadataInFlight.delete(key);
          throw err;
        },
      );
      this.metadataInFlight.set(key, inFlight);
    }
    return inFlight;
  }

  /** Forgets what we know of `key` (after the object changed under a transfer). */
  invalidate(key: string): void {
    this.metadata.delete(key);
  }

  /** The range entry if the cache holds it (no fetch). */
  peek(key: string, info: ObjectInfo, index: number): RangeEntry | undefined {
    return this.ranges.get(this.rangeKey(key, info, index));
  }

  /** The range entry, starting its fetch if nobody has. */
  range(key: string, info: ObjectInfo, index: number): RangeEntry {
    const cacheKey = this.rangeKey(key, info, index);
    const existing = this.ranges.get(cacheKey);
    if (existing && !existing.error) {
      this.options.onHit?.();
      return existing;
    }
    this.options.onMiss?.();
    const start = index * this.options.rangeSize;
    const length = Math.max(0, Math.min(this.options.rangeSize, info.size - start));
    const entry = new RangeEntry(length);
    this.ranges.set(cacheKey, entry);
    if (length === 0) return entry;
    this.store
      .readRange(key, info.etag, start, entry.buffer, (filled) => entry.progress(filled), this.lifetime.signal)
      .then(
        () => entry.progress(entry.buffer.length),
        (err: unknown) => {
          const failure = err instanceof TransferError ? err : new TransferError('STORAGE_ERROR', String(err));
          if (this.ranges.peek(cacheKey) === entry) this.ranges.delete(cacheKey);
          if (failure.code === 'OBJECT_CHANGED') this.invalidate(key);
          entry.fail(failure);
        },
      );
    return entry;
  }

  close(): void {
    this.lifetime.abort();
    this.ranges.clear();
    this.metadata.clear();
  }

  private rangeKey(key: string, info: ObjectInfo, index: number): string {
    return `${this.store.bucket}\u0000${key}\u0000${info.etag}\u0000${index}`;
  }
}
