import { within } from '../bounded-wait.js';
import { LRUCache } from 'lru-cache';
import { TransferError } from '../errors.js';
import { outageCause, type OutageCause } from './s3-errors.js';
import type { ObjectInfo } from './s3-store.js';

/** Why a metadata lookup failed, as a bounded metric label. */
export type RefreshFailureCause = OutageCause | 'other';

export interface MetadataAnswer {
  readonly info: ObjectInfo;
  /** Served past a failed refresh (stale-if-error): S3 could not confirm this version. */
  readonly stale: boolean;
}

export interface StaleChange {
  /** True when the first object starts being served stale, false when the last one stops. */
  readonly serving: boolean;
  /** The object that started it (serving: true). */
  readonly key?: string;
  readonly cause?: RefreshFailureCause;
  /** Why the last one stopped: S3 answered, the stale window ended, the object changed or was removed. */
  readonly reason?: 'refreshed' | 'expired' | 'invalidated' | 'not-found';
}

export interface MetadataCacheOptions {
  /** How long an answer is trusted without asking S3 again. */
  readonly ttlMs: number;
  /** How long past the TTL the last good answer may still be served while refreshes fail (0: never). */
  readonly staleIfErrorMs: number;
  /** Whether S3 is believed reachable, and why not (from every S3 call's outcome). */
  readonly health?: { readonly reachable: boolean; readonly cause?: OutageCause | undefined };
  /** A lookup failed (not a 404, not our own abort). */
  readonly onRefreshFailure?: (cause: RefreshFailureCause) => void;
  /** A lookup was answered from stale metadata (one per transfer started on it). */
  readonly onStaleServed?: () => void;
  /** Serving stale started or stopped (once per transition, not per request). */
  readonly onStaleChange?: (change: StaleChange) => void;
  /** Injectable clock, ms (tests). */
  readonly now?: () => number;
}

interface Entry {
  readonly info: ObjectInfo;
  /** When S3 last confirmed this answer. */
  readonly validatedAt: number;
}

/** Objects whose metadata is remembered at most (last good answers, fresh or stale). */
const MAX_ENTRIES = 10_000;
/**
 * While S3 is known to be unreachable, a request for a stale object waits this long for the
 * refresh before it is served the cached version (so the first request after S3 comes back
 * already gets the new version, and requests during the outage do not wait for a deadline).
 */
const UNREACHABLE_GRACE_MS = 250;

/**
 * Object metadata (size, ETag) for the read path, like a CDN with stale-if-error: an answer is
 * fresh for `ttlMs`; after that the next lookup asks S3 again (single flight per key). If S3 then
 * fails with an outage-type error (5xx, throttling, no answer, no connection — not 403/404), the
 * last good answer is served for up to `staleIfErrorMs` past its TTL, so cached objects keep
 * booting through an S3 incident. The last good answers live in a count-bounded LRU with their own
 * expiry (lru-cache's TTL would drop them exactly when they are needed).
 */
export class MetadataCache {
  private readonly entries = new LRUCache<string, Entry>({ max: MAX_ENTRIES });
  private readonly inFlight = new Map<string, Promise<ObjectInfo>>();
  /** Objects currently served stale → end of their stale window. */
  private readonly stale = new Map<string, number>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepAt = Infinity;
  private readonly now: () => number;
  private closed = false;

  constructor(
    private readonly head: (key: string) => Promise<ObjectInfo>,
    private readonly options: MetadataCacheOptions,
  ) {
    this.now = options.now ?? (() => Date.now());
  }

  /** Objects currently served from stale metadata. */
  get staleObjects(): number {
    this.prune();
    return this.stale.size;
  }

  /** Objects whose metadata can be served now (fresh, or stale within the window). */
  get servableObjects(): number {
    const now = this.now();
    let n = 0;
    for (const entry of this.entries.values()) if (now < this.staleUntil(entry)) n++;
    return n;
  }

  /** Size and ETag of `key`: fresh, refreshed, or (S3 failing) the last good answer within the stale window. */
  async lookup(key: string): Promise<MetadataAnswer> {
    this.prune();
    const now = this.now();
    const entry = this.entries.get(key);
    if (entry && now - entry.validatedAt < this.options.ttlMs) return { info: entry.info, stale: false };
    const fallback = entry && now < this.staleUntil(entry) ? entry : undefined;
    const refresh = this.refresh(key);
    if (!fallback) return { info: await refresh, stale: false };

    const health = this.options.health;
    const outcome = health && !health.reachable ? await settleWithin(refresh, UNREACHABLE_GRACE_MS) : await settle(refresh);
    if (outcome.kind === 'ok') return { info: outcome.value, stale: false };
    const cause = outcome.kind === 'late' ? health?.cause ?? 'timeout' : outageCause(outcome.error);
    // Only an unhealthy S3 earns a stale answer; 403/404 and the like are answers.
    if (cause === undefined || this.now() >= this.staleUntil(fallback) || this.entries.peek(key) !== fallback) {
      if (outcome.kind === 'failed') throw outcome.error;
      return { info: await refresh, stale: false };
    }
    this.markStale(key, fallback, cause);
    this.options.onStaleServed?.();
    return { info: fallback.info, stale: true };
  }

  /**
   * Remembers an answer S3 confirmed at `validatedAt` (persisted by an earlier process), unless a
   * newer one is known: it is fresh, stale-servable or expired by the same rules as any other.
   */
  seed(key: string, info: ObjectInfo, validatedAt: number): void {
    const known = this.entries.peek(key);
    if (known && known.validatedAt >= validatedAt) return;
    this.entries.set(key, { info, validatedAt });
  }

  /** Forgets `key` (the object changed under a transfer, or was uploaded). */
  invalidate(key: string): void {
    this.entries.delete(key);
    this.unmarkStale(key, 'invalidated');
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    this.entries.clear();
    this.inFlight.clear();
    this.stale.clear();
  }

  private staleUntil(entry: Entry): number {
    if (this.options.staleIfErrorMs <= 0) return entry.validatedAt + this.options.ttlMs;
    return entry.validatedAt + this.options.ttlMs + this.options.staleIfErrorMs;
  }

  /** One HeadObject per key at a time; its outcome updates the cache whoever is waiting for it. */
  private refresh(key: string): Promise<ObjectInfo> {
    let inFlight = this.inFlight.get(key);
    if (inFlight) return inFlight;
    inFlight = this.head(key).then(
      (info) => {
        this.inFlight.delete(key);
        if (this.closed) return info;
        if (this.options.ttlMs > 0 || this.options.staleIfErrorMs > 0) this.entries.set(key, { info, validatedAt: this.now() });
        this.unmarkStale(key, 'refreshed');
        return info;
      },
      (err: unknown) => {
        this.inFlight.delete(key);
        if (this.closed) throw err;
        if (err instanceof TransferError && err.code === 'NOT_FOUND') {
          this.entries.delete(key);
          this.unmarkStale(key, 'not-found');
        } else if (!(err instanceof TransferError && err.code === 'ABORTED')) {
          this.options.onRefreshFailure?.(outageCause(err) ?? 'other');
        }
        throw err;
      },
    );
    // A refresh left running after a stale answer must not become an unhandled rejection.
    inFlight.catch(() => undefined);
    this.inFlight.set(key, inFlight);
    return inFlight;
  }

  private markStale(key: string, entry: Entry, cause: RefreshFailureCause): void {
    if (this.stale.has(key)) return;
    const until = this.staleUntil(entry);
    this.stale.set(key, until);
    if (this.stale.size === 1) this.options.onStaleChange?.({ serving: true, key, cause });
    this.scheduleSweep(until);
  }

  private unmarkStale(key: string, reason: NonNullable<StaleChange['reason']>): void {
    if (!this.stale.delete(key)) return;
    if (this.stale.size === 0) this.options.onStaleChange?.({ serving: false, reason });
  }

  /** Objects whose stale window ended are no longer served (nor remembered). */
  private prune(): void {
    if (this.stale.size === 0) return;
    const now = this.now();
    let next = Infinity;
    for (const [key, until] of this.stale) {
      if (now < until) {
        next = Math.min(next, until);
        continue;
      }
      this.entries.delete(key);
      this.unmarkStale(key, 'expired');
    }
    if (next < Infinity) this.scheduleSweep(next);
  }

  /** One timer, for the earliest end of a stale window, so "stopped serving stale" is logged when it happens. */
  private scheduleSweep(at: number): void {
    if (this.closed || (this.sweepTimer && this.sweepAt <= at)) return;
    clearTimeout(this.sweepTimer);
    this.sweepAt = at;
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      this.sweepAt = Infinity;
      this.prune();
    }, Math.max(1, at - this.now() + 1));
    // Housekeeping only (lookups prune too): it must not keep the process alive.
    this.sweepTimer.unref();
  }
}

type Outcome<T> = { kind: 'ok'; value: T } | { kind: 'failed'; error: unknown } | { kind: 'late' };

function settle<T>(work: Promise<T>): Promise<Outcome<T>> {
  return work.then(
    (value) => ({ kind: 'ok', value }),
    (error: unknown) => ({ kind: 'failed', error }),
  );
}

/** The outcome of `work` if it settles within `ms`, else 'late' (the work goes on). */
function settleWithin<T>(work: Promise<T>, ms: number): Promise<Outcome<T>> {
  return within<Outcome<T>, Outcome<T>>(settle(work), ms, { kind: 'late' });
}
