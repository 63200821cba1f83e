import { LRUCache } from 'lru-cache';
import type { FrontRead, ObjectInfo, S3ObjectStore } from './s3-store.js';

/** What the block cache reads ranges through (S3ObjectStore, or a tier or reader in front of it). */
export type RangeReader = Pick<S3ObjectStore, 'bucket' | 'head' | 'readRange'>;
/** The S3 side of the adaptive reader: ranged reads, and a HEAD that brings the first bytes along. */
export type FrontReader = RangeReader & Pick<S3ObjectStore, 'headWithFront'>;

const KiB = 1024;
const MiB = 1024 * KiB;

/** A body shorter than this says little about a stream's rate (its first chunk dominates). */
const MIN_RATE_SAMPLE = 128 * KiB;
/** Samples each figure is the median of: a few calls slowed by retries or a stall do not move it. */
const SAMPLES = 15;

/** The median of the last `SAMPLES` values given (the prior until the first one). */
class RecentMedian {
  private readonly values: number[] = [];
  private next = 0;
  private median: number;

  constructor(prior: number) {
    this.median = prior;
  }

  get value(): number {
    return this.median;
  }

  add(v: number): void {
    if (this.values.length < SAMPLES) this.values.push(v);
    else this.values[this.next] = v;
    this.next = (this.next + 1) % SAMPLES;
    const sorted = [...this.values].sort((a, b) => a - b);
    this.median = sorted[sorted.length >> 1]!;
  }
}

/**
 * What S3 has delivered lately, from every GET and HEAD: the time to the first byte (the round
 * trip, the store's own latency, a connection set up) and the rate one stream keeps after that
 * (medians of the recent calls). Their product is the bytes one GET has "in the pipe": the unit the
 * reader plans parts and read-ahead in.
 */
export class S3ReadEstimator {
  private readonly latency: RecentMedian;
  private readonly rate: RecentMedian;

  /** The priors (before anything is measured) suit S3 in the same region; the first calls correct them. */
  constructor(prior: { latencyMs: number; bytesPerSecond: number } = { latencyMs: 10, bytesPerSecond: 50e6 }) {
    this.latency = new RecentMedian(prior.latencyMs);
    this.rate = new RecentMedian(prior.bytesPerSecond);
  }

  get latencyMs(): number {
    return this.latency.value;
  }

  get streamBytesPerSecond(): number {
    return this.rate.value;
  }

  /** One stream's bandwidth-delay product: bytes it delivers in one round trip. */
  get streamWindowBytes(): number {
    return (this.latency.value / 1000) * this.rate.value;
  }

  firstByte(ms: number): void {
    if (ms >= 0) this.latency.add(ms);
  }

  body(bytes: number, ms: number): void {
    if (bytes >= MIN_RATE_SAMPLE && ms > 0) this.rate.add((bytes * 1000) / ms);
  }
}

export interface AdaptiveRangeOptions {
  /** GETs reading one range at once at most. */
  readonly streamsPerRange: number;
  /** GETs in flight at once at most, all ranges together (read-ahead is sized to keep them busy). */
  readonly maxStreams: number;
  /** Smallest and largest part one GET reads (the first part of a range may be smaller). */
  readonly minPartBytes?: number;
  readonly maxPartBytes?: number;
  /** Bytes a cold HEAD asks for along with the answer (0: plain HEAD). */
  readonly frontBytes?: number;
  readonly estimator?: S3ReadEstimator;
  /** Clock in ms (tests). */
  readonly now?: () => number;
}

/**
 * What the cold path aims to feed one transfer at (2 Gb/s, above any lock-step or windowed TFTP
 * client and most HTTP ones): the streams it keeps busy are this over one stream's measured rate.
 */
const COLD_TARGET_BYTES_PER_SECOND = 250e6;
/**
 * From this first-byte latency on (S3 across a WAN, not in the region) a cold object's first HEAD
 * is a GET of its front: the round trip saved is worth the bytes of a HEAD that turns out unused.
 */
const FRONT_MIN_LATENCY_MS = 40;
/** Keys whose first HEAD was answered with bytes: later HEADs (TTL refreshes) are plain. */
const SEEN_KEYS = 10_000;
const SEEN_MS = 10 * 60_000;
/** First bytes kept from a cold HEAD for the range reads that use them (this long). */
const FRONT_KEEP_MS = 30_000;
const FRONT_KEEP_BYTES = 64 * MiB;

/**
 * Reads each cache range with several ranged GETs whose sizes follow what S3 delivers: parts of
 * about two round trips of one stream (so the request's wait is a third of a part's time, and
 * across a WAN a range is read by as many streams as it has parts), the first part of a range
 * smaller (the bytes a waiting client needs first come first), up to `streamsPerRange` at once
 * and `maxStreams` in all. `readAheadRanges` tells sessions how far ahead to fetch so that many
 * streams stay busy (as many as the cold target needs at the measured rate). Where S3 is far (a
 * WAN), a cold object's first HEAD brings its first bytes along (one round trip instead of two
 * before a client's first block). Progress is reported as the contiguous prefix;
 * each byte is asked for once. A part that fails aborts the others and fails the range (each
 * part already re-requests a body that broke off).
 */
export class AdaptiveRangeReader implements RangeReader {
  readonly estimator: S3ReadEstimator;
  private readonly now: () => number;
  private readonly seen = new LRUCache<string, true>({ max: SEEN_KEYS, ttl: SEEN_MS });
  private readonly fronts = new LRUCache<string, FrontRead>({ maxSize: FRONT_KEEP_BYTES, sizeCalculation: (f) => Math.max(1, f.buffer.length), ttl: FRONT_KEEP_MS });
  private active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(
    private readonly store: FrontReader,
    private readonly options: AdaptiveRangeOptions,
  ) {
    this.estimator = options.estimator ?? new S3ReadEstimator();
    this.now = options.now ?? (() => performance.now());
  }

  get bucket(): string {
    return this.store.bucket;
  }

  /** GETs in flight now. */
  get streamsActive(): number {
    return this.active;
  }

  /** Bytes one GET reads: about two round trips of one stream, within the bounds. */
  get partBytes(): number {
    const min = this.options.minPartBytes ?? 256 * KiB;
    const max = Math.max(min, this.options.maxPartBytes ?? 8 * MiB);
    return Math.round(Math.min(max, Math.max(min, 2 * this.estimator.streamWindowBytes)));
  }

  /**
   * GETs a cold transfer of `rangeSize` ranges keeps busy: one GET of a part delivers part bytes per
   * (first byte + part ÷ rate), so the cold target needs target × that time ÷ part of them, at most
   * `maxStreams`.
   */
  streamsWanted(rangeSize: number): number {
    const part = this.partFor(rangeSize);
    const seconds = this.estimator.latencyMs / 1000 + part / Math.max(1, this.estimator.streamBytesPerSecond);
    return Math.max(1, Math.min(this.options.maxStreams, Math.ceil((COLD_TARGET_BYTES_PER_SECOND * seconds) / part)));
  }

  /** Ranges a session keeps in flight ahead of itself so that `streamsWanted` parts are read at once. */
  readAheadRanges(rangeSize: number): number {
    const partsPerRange = Math.ceil(rangeSize / this.partFor(rangeSize));
    return Math.ceil(this.streamsWanted(rangeSize) / partsPerRange);
  }

  /**
   * The part size for `length` bytes: about `partBytes`, or smaller where that lets every one of a
   * range's streams work (a client faster than one stream waits for the whole range).
   */
  partFor(length: number): number {
    const min = this.options.minPartBytes ?? 256 * KiB;
    return Math.max(min, Math.min(this.partBytes, Math.ceil(length / this.options.streamsPerRange)));
  }

  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo> {
    const frontBytes = this.options.frontBytes ?? 0;
    const started = this.now();
    if (frontBytes <= 0 || this.estimator.latencyMs < FRONT_MIN_LATENCY_MS || this.seen.has(key)) {
      const info = await this.store.head(key, signal);
      this.estimator.firstByte(this.now() - started);
      return info;
    }
    // The first bytes a client will ask for: a part's worth (they stream in behind the answer while
    // the range's other parts are asked for).
    const want = Math.max(64 * KiB, Math.min(frontBytes, this.partBytes));
    const { info, front } = await this.store.headWithFront(key, want, signal);
    this.estimator.firstByte(this.now() - started);
    this.seen.set(key, true);
    if (front.buffer.length > 0) this.fronts.set(frontKey(key, info.etag), front);
    return info;
  }

  async readRange(key: string, etag: string, start: number, target: Buffer, onData: (filled: number) => void, signal?: AbortSignal): Promise<void> {
    // The front a cold HEAD brought along (still arriving, maybe) is part 0 of every range that
    // starts inside it (small ranges: several), until it expires; GETs read the rest meanwhile.
    const front = this.fronts.size > 0 ? this.fronts.get(frontKey(key, etag)) : undefined;
    const fromFront = front && start < front.buffer.length ? Math.min(front.buffer.length - start, target.length) : 0;
    const parts = this.plan(target.length, fromFront);
    if (fromFront > 0) parts.unshift({ from: 0, length: fromFront });
    const fills = parts.map(() => 0);
    /** Index of the first part not yet complete, and the prefix length before it. */
    let head = 0;
    let prefix = 0;
    const report = (): void => {
      while (head < parts.length && fills[head] === parts[head]!.length) {
        prefix += parts[head]!.length;
        head++;
      }
      onData(head < parts.length ? prefix + fills[head]! : prefix);
    };
    const progress = (i: number) => (n: number): void => {
      fills[i] = n;
      // Only the part at the front moves the prefix.
      if (i === head) report();
    };
    const inner = new AbortController();
    const onAbort = (): void => inner.abort(signal?.reason);
    if (signal?.aborted) inner.abort(signal.reason);
    else signal?.addEventListener('abort', onAbort, { once: true });
    let next = fromFront > 0 ? 1 : 0;
    const worker = async (): Promise<void> => {
      while (next < parts.length && !inner.signal.aborted) {
        const i = next++;
        const p = parts[i]!;
        await this.readPart(key, etag, start + p.from, target.subarray(p.from, p.from + p.length), progress(i), inner.signal);
        progress(i)(p.length);
      }
    };
    const failFast = (run: Promise<void>): Promise<void> =>
      run.catch((err: unknown) => {
        inner.abort(err);
        throw err;
      });
    try {
      const streams = Math.max(1, Math.min(this.options.streamsPerRange, parts.length - next));
      const runs = parts.length > next ? Array.from({ length: streams }, () => failFast(worker())) : [];
      if (front && fromFront > 0) runs.push(failFast(this.readFront(front, key, etag, start, target.subarray(0, fromFront), progress(0), inner.signal)));
      await Promise.all(runs);
      if (inner.signal.aborted) throw inner.signal.reason;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Copies bytes [start, start + target.length) of the front into `target` as they arrive; what the
   * front does not bring (its body broke off) is read with a GET.
   */
  private async readFront(front: FrontRead, key: string, etag: string, start: number, target: Buffer, onData: (filled: number) => void, signal: AbortSignal): Promise<void> {
    let copied = 0;
    await new Promise<void>((resolve, reject) => {
      const finish = (): void => {
        unwatch();
        signal.removeEventListener('abort', onAbort);
      };
      const update = (): void => {
        const upto = Math.max(0, Math.min(front.filled - start, target.length));
        if (upto > copied) {
          front.buffer.copy(target, copied, start + copied, start + upto);
          copied = upto;
          onData(copied);
        }
        if (copied >= target.length || front.ended) {
          finish();
          resolve();
        }
      };
      const onAbort = (): void => {
        finish();
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const unwatch = front.watch(update);
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      update();
    });
    if (copied < target.length) {
      const got = copied;
      await this.readPart(key, etag, start + got, target.subarray(got), (n) => onData(got + n), signal);
    }
    onData(target.length);
  }

  /**
   * [from, length) split into equal parts of about `partFor` (equal: the range's GETs end together,
   * and a range takes no more GETs than its streams, so read-ahead's GETs all start at once).
   */
  private plan(length: number, from: number): { from: number; length: number }[] {
    const bytes = length - from;
    if (bytes <= 0) return [];
    const count = Math.max(1, Math.round(bytes / this.partFor(bytes)));
    const size = Math.ceil(bytes / count);
    const parts: { from: number; length: number }[] = [];
    for (let pos = from; pos < length; pos += size) parts.push({ from: pos, length: Math.min(size, length - pos) });
    return parts;
  }

  /** One GET under the overall stream cap, measured for the estimator. */
  private async readPart(key: string, etag: string, start: number, target: Buffer, onData: (filled: number) => void, signal: AbortSignal): Promise<void> {
    await this.acquire(signal);
    const started = this.now();
    let firstAt: number | undefined;
    let firstBytes = 0;
    try {
      await this.store.readRange(
        key,
        etag,
        start,
        target,
        (filled) => {
          if (firstAt === undefined) {
            firstAt = this.now();
            firstBytes = filled;
            this.estimator.firstByte(firstAt - started);
          }
          onData(filled);
        },
        signal,
      );
      if (firstAt !== undefined) this.estimator.body(target.length - firstBytes, this.now() - firstAt);
    } finally {
      this.releaseStream();
    }
  }

  private acquire(signal: AbortSignal): Promise<void> {
    if (this.active < this.options.maxStreams) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const grant = (): void => {
        signal.removeEventListener('abort', onAbort);
        this.active++;
        resolve();
      };
      const onAbort = (): void => {
        const i = this.queue.indexOf(grant);
        if (i !== -1) this.queue.splice(i, 1);
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.queue.push(grant);
    });
  }

  private releaseStream(): void {
    this.active--;
    this.queue.shift()?.();
  }
}

function frontKey(key: string, etag: string): string {
  return `${key}\u0000${etag}`;
}
