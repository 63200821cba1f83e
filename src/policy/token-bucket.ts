/** A monotonic millisecond clock (performance.now in production, a virtual one in tests). */
export interface NowSource {
  now(): number;
}

export interface TokenBucketOptions {
  /** Tokens added per second. */
  readonly ratePerSecond: number;
  /** Bucket capacity: the burst allowed after a quiet period. */
  readonly burst: number;
  /** Keys tracked at most; past it the least recently used key is forgotten (it starts full again). */
  readonly maxKeys: number;
  readonly clock: NowSource;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token buckets keyed by client: `take(key)` spends one token if there is one. Memory is bounded
 * by `maxKeys` (least recently used first out); a key whose bucket has refilled is dropped early.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly options: TokenBucketOptions) {}

  get size(): number {
    return this.buckets.size;
  }

  /** Spends `cost` tokens (default 1) if the bucket holds them. */
  take(key: string, cost = 1): boolean {
    const now = this.options.clock.now();
    const { ratePerSecond, burst } = this.options;
    let bucket = this.buckets.get(key);
    if (bucket) {
      this.buckets.delete(key); // re-inserted below: Map order is recency order
      bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * ratePerSecond);
      bucket.at = now;
    } else {
      bucket = { tokens: burst, at: now };
    }
    const ok = bucket.tokens >= cost;
    if (ok) bucket.tokens -= cost;
    this.buckets.set(key, bucket);
    this.evict(now);
    return ok;
  }

  private evict(now: number): void {
    if (this.buckets.size <= this.options.maxKeys) return;
    // Oldest first: drop refilled buckets (nothing lost) and, if still over, the least recently used.
    for (const [key, b] of this.buckets) {
      if (this.buckets.size <= this.options.maxKeys) return;
      const full = b.tokens + ((now - b.at) / 1000) * this.options.ratePerSecond >= this.options.burst;
      if (full || this.buckets.size > this.options.maxKeys) this.buckets.delete(key);
    }
  }
}
