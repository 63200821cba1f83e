import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage, TransferError } from '../errors.js';
import type { Logger } from '../ops/logger.js';
import type { WarmTarget } from '../policy/warm-names.js';
import type { BlockCache } from './block-cache.js';
import type { DiskTier, PersistedMetadata } from './disk-tier.js';
import { outageCause } from './s3-errors.js';
import type { ObjectInfo } from './s3-store.js';

/**
 * Warm before ready (--warm, --warm-file): at start the objects of the warm set are fetched into the
 * cache — the disk tier when there is one, else the memory cache — while /readyz answers 503
 * "warming", until the set is in or --warm-timeout passes. With --warm-interval the set is
 * revalidated (HEAD, and a new listing of warmed paths) and an object whose ETag changed is fetched
 * again before the clients' metadata is pointed at it, so the first client after an upload to S3
 * is served from the cache.
 *
 * S3 failures never end the process: they are logged and counted, and the object is tried again
 * (backing off from 1 s to a minute until the set is complete once, then every --warm-interval). A
 * restart during an outage whose warm set is already on disk (in the versions persisted with it)
 * ends the first warm-up at the first outage-type failure: the gateway serves those objects under
 * --stale-if-error, so holding readiness for --warm-timeout would only keep a working site down.
 */

/** Where warmed ranges go. */
export interface WarmTier {
  readonly name: 'disk' | 'memory';
  /** Bytes the warm set may take of the tier: the set is cut (in order) to fit. */
  readonly budget: number;
  /** True if the range of `info`'s version is held (or, in memory, being fetched). */
  has(key: string, info: ObjectInfo, index: number): boolean;
  /** Puts the range in the tier, reading S3 unless it is there already. */
  fill(key: string, info: ObjectInfo, index: number, signal: AbortSignal): Promise<void>;
}

/** The S3 side of warm-up: HEAD (through the disk tier, which persists the answer) and listings. */
export interface WarmStore {
  head(key: string, signal?: AbortSignal): Promise<ObjectInfo>;
  list(prefix: string, limit: number, signal?: AbortSignal): Promise<{ keys: string[]; truncated: boolean }>;
}

export type WarmObjectState = 'done' | 'pending' | 'failed' | 'skipped';
export type WarmRefreshResult = 'fetched' | 'unchanged' | 'failed' | 'removed';

export interface WarmProgress {
  readonly objects: Readonly<Record<WarmObjectState, number>>;
  readonly bytes: { readonly done: number; readonly pending: number };
  /** True while readiness waits for the first warm-up. */
  readonly warming: boolean;
}

export interface WarmerOptions {
  readonly targets: readonly WarmTarget[];
  readonly store: WarmStore;
  readonly tier: WarmTier;
  readonly rangeSize: number;
  /** Points the clients' metadata lookups at a warmed version (S3 confirmed it at `validatedAt`). */
  readonly seed: (key: string, info: ObjectInfo, validatedAt: number) => void;
  /** Answers persisted with the disk tier: what is known of the set while S3 cannot be asked. */
  readonly known?: readonly PersistedMetadata[];
  /** How long readiness waits for the first warm-up (0: not at all). */
  readonly timeoutMs: number;
  /** Revalidation period (0: none once the set is complete). */
  readonly intervalMs: number;
  readonly logger: Logger;
  readonly onTimeout?: () => void;
  readonly onRefresh?: (result: WarmRefreshResult) => void;
  /** An S3 call of warm-up failed (each time). */
  readonly onError?: () => void;
  /** Ranges filled at once (default 2; each is a --range-size buffer while read for the disk tier). */
  readonly concurrency?: number;
  readonly now?: () => number;
}

interface Member {
  readonly key: string;
  /** The version held or being fetched. */
  info: ObjectInfo | undefined;
  state: WarmObjectState;
  /** Bytes of `info`'s version in the tier. */
  filled: number;
}

/** Objects in the warm set at most (the metadata cache remembers 10,000). */
export const MAX_WARM_OBJECTS = 10_000;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 60_000;
/** HEADs in flight at once during a pass. */
const HEAD_CONCURRENCY = 8;
/** Share of the tier the warm set may take: the rest is left to clients' other objects and metadata. */
export const WARM_BUDGET_SHARE = 0.9;

export class Warmer {
  private readonly controller = new AbortController();
  private readonly members = new Map<string, Member>();
  /** Last successful listing of each warmed path. */
  private readonly listed = new Map<string, string[]>();
  private readonly known: Map<string, ObjectInfo>;
  private holding: boolean;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private completedOnce = false;
  private readonly startedAt: number;
  private readonly warned = new Set<string>();
  private readonly notFound = new Set<string>();
  private readonly now: () => number;

  constructor(private readonly options: WarmerOptions) {
    this.now = options.now ?? (() => Date.now());
    this.known = new Map((options.known ?? []).map((m) => [m.key, m.info]));
    this.holding = options.targets.length > 0 && options.timeoutMs > 0;
    this.startedAt = this.now();
  }

  /** Starts warming in the background (never awaited by start-up). */
  start(): void {
    if (this.running || this.options.targets.length === 0) return;
    if (this.holding) {
      this.timer = setTimeout(() => this.timedOut(), this.options.timeoutMs);
      this.timer.unref();
    }
    this.options.logger.info({ targets: this.options.targets.map((t) => t.name), tier: this.options.tier.name }, 'warm-up started');
    this.running = this.run().catch((err: unknown) => {
      if (!this.controller.signal.aborted) this.options.logger.error({ err: errorMessage(err) }, 'warm-up stopped by an unexpected error');
    });
  }

  /** Why readiness waits, while the first warm-up runs (undefined: it does not). */
  get readinessReason(): string | undefined {
    if (!this.holding) return undefined;
    const p = this.progress();
    const objects = p.objects.done + p.objects.pending + p.objects.failed + p.objects.skipped;
    return `warming: ${p.objects.done} of ${objects} objects, ${p.bytes.done} of ${p.bytes.done + p.bytes.pending} bytes`;
  }

  progress(): WarmProgress {
    const objects = { done: 0, pending: 0, failed: 0, skipped: 0 };
    let done = 0;
    let pending = 0;
    for (const m of this.members.values()) {
      objects[m.state]++;
      if (m.state === 'done' || m.state === 'pending') {
        done += m.filled;
        pending += Math.max(0, (m.info?.size ?? 0) - m.filled);
      }
    }
    return { objects, bytes: { done, pending }, warming: this.holding };
  }

  /** Aborts warming (S3 calls and fills in flight) and waits for it to end. */
  async stop(): Promise<void> {
    this.controller.abort();
    clearTimeout(this.timer);
    this.timer = undefined;
    this.holding = false;
    await this.running;
  }

  private async run(): Promise<void> {
    const signal = this.controller.signal;
    let retryMs = RETRY_MIN_MS;
    while (!signal.aborted) {
      const result = await this.pass();
      if (signal.aborted) return;
      if (this.holding && result.pending === 0) this.finishFirst(result.offline);
      let waitMs: number;
      if (result.complete) {
        this.completedOnce = true;
        retryMs = RETRY_MIN_MS;
        if (this.options.intervalMs <= 0) return;
        waitMs = this.options.intervalMs;
      } else {
        waitMs = this.options.intervalMs > 0 ? Math.min(retryMs, this.options.intervalMs) : retryMs;
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
      await sleep(waitMs, undefined, { signal, ref: false }).catch(() => undefined);
    }
  }

  /** One pass over the warm set: list paths, HEAD every object, fill what is missing. */
  private async pass(): Promise<{ complete: boolean; pending: number; offline: boolean }> {
    const signal = this.controller.signal;
    const refresh = this.completedOnce;
    let offline = false;
    /** A failure worth trying again soon (not a 404 or 403: those wait for the next interval). */
    let retry = false;
    let firstError: string | undefined;
    const failed = (err: unknown, what: string): void => {
      this.options.onError?.();
      if (outageCause(err) !== undefined) offline = true;
      if (!isAnswer(err)) retry = true;
      firstError ??= `${what}: ${errorMessage(err)}`;
    };

    // Membership: the named objects and what is listed under each path (the last listing, or the
    // persisted objects under it, when S3 cannot list).
    const keys: string[] = [];
    const seen = new Set<string>();
    /** Paths neither listed now nor before, with nothing of them known: their objects are unknown, so the set is not in. */
    let unresolved = 0;
    const add = (key: string): void => {
      if (seen.has(key) || key.endsWith('/')) return;
      if (keys.length >= MAX_WARM_OBJECTS) return this.warnOnce('too-many', { max: MAX_WARM_OBJECTS }, 'warm set cut: more objects than the warm-up keeps');
      seen.add(key);
      keys.push(key);
    };
    for (const target of this.options.targets) {
      if (target.kind === 'object') {
        add(target.key);
        continue;
      }
      if (!offline) {
        try {
          const listing = await this.options.store.list(target.prefix, MAX_WARM_OBJECTS, signal);
          this.listed.set(target.prefix, listing.keys);
        } catch (err) {
          if (signal.aborted) return { complete: false, pending: 1, offline };
          failed(err, `ListObjectsV2 ${target.prefix}`);
        }
      }
      const under = this.listed.get(target.prefix) ?? [...this.known.keys()].filter((k) => k.startsWith(target.prefix)).sort();
      if (!this.listed.has(target.prefix) && under.length === 0) unresolved++;
      for (const key of under) add(key);
    }
    for (const key of [...this.members.keys()]) {
      if (seen.has(key)) continue;
      this.members.delete(key);
      if (refresh) this.options.onRefresh?.('removed');
    }
    const members = keys.map((key) => {
      let m = this.members.get(key);
      if (!m) {
        m = { key, info: undefined, state: 'pending', filled: 0 };
        this.members.set(key, m);
      }
      return m;
    });

    // HEAD each object (bypassing the metadata TTL): its current version.
    const fresh = new Map<Member, { info: ObjectInfo; at: number }>();
    const gone = new Set<Member>();
    await forEachLimit(members, HEAD_CONCURRENCY, async (m) => {
      if (offline || signal.aborted) return;
      try {
        const at = this.now();
        fresh.set(m, { info: await this.options.store.head(m.key, signal), at });
        this.notFound.delete(m.key);
      } catch (err) {
        if (signal.aborted) return;
        failed(err, `HeadObject ${m.key}`);
        if (isAnswer(err)) {
          gone.add(m);
          if (m.state !== 'failed' && refresh) this.options.onRefresh?.('failed');
          m.state = 'failed';
          m.info = undefined;
          m.filled = 0;
          if (!this.notFound.has(m.key)) {
            this.notFound.add(m.key);
            this.options.logger.warn({ key: m.key, code: err.code }, 'warm-up: object not found or refused, not warmed');
          }
        }
      }
    });
    if (signal.aborted) return { complete: false, pending: 1, offline };

    // The version to hold: S3's answer, else (S3 unreachable) the one last known.
    const changed = new Set<Member>();
    for (const m of members) {
      const answer = fresh.get(m);
      if (answer) {
        if (!m.info || m.info.etag !== answer.info.etag) changed.add(m);
        m.info = answer.info;
      } else if (gone.has(m)) {
        continue;
      } else {
        m.info ??= this.known.get(m.key);
      }
      m.filled = m.info ? this.bytesHeld(m.key, m.info) : 0;
      m.state = m.info && m.filled >= m.info.size ? 'done' : 'pending';
    }

    // Within the tier's budget, in the order named.
    const budget = Math.floor(this.options.tier.budget * WARM_BUDGET_SHARE);
    let planned = 0;
    let total = 0;
    for (const m of members) {
      if (!m.info || m.state === 'failed') continue;
      total += m.info.size;
      if (planned + m.info.size > budget) {
        m.state = 'skipped';
        continue;
      }
      planned += m.info.size;
    }
    if (total > budget) {
      this.warnOnce('budget', { bytes: total, budget, tier: this.options.tier.name }, 'warm set larger than the cache may hold for it: objects past the budget are not warmed');
    }

    // Fill the missing ranges of every object S3 answered for, a few at a time.
    const work: { m: Member; index: number; length: number }[] = [];
    const missing = new Map<Member, number>();
    for (const m of members) {
      const answer = fresh.get(m);
      if (!answer || !m.info || m.state === 'skipped' || m.state === 'failed') continue;
      const ranges = Math.ceil(m.info.size / this.options.rangeSize);
      for (let index = 0; index < ranges; index++) {
        if (this.options.tier.has(m.key, m.info, index)) continue;
        work.push({ m, index, length: Math.min(this.options.rangeSize, m.info.size - index * this.options.rangeSize) });
        missing.set(m, (missing.get(m) ?? 0) + 1);
      }
    }
    const fillFailed = new Set<Member>();
    await forEachLimit(work, this.options.concurrency ?? 2, async ({ m, index, length }) => {
      const info = m.info;
      if (offline || signal.aborted || fillFailed.has(m) || !info || fresh.get(m)?.info !== info) return;
      try {
        await this.options.tier.fill(m.key, info, index, signal);
        m.filled += length;
        const left = missing.get(m)! - 1;
        missing.set(m, left);
        if (left === 0) m.state = 'done';
      } catch (err) {
        if (signal.aborted) return;
        fillFailed.add(m);
        failed(err, `GetObject ${m.key}`);
      }
    });
    if (signal.aborted) return { complete: false, pending: 1, offline };

    // Clients' lookups now see the version warmed (only once all of it is in the tier).
    for (const m of members) {
      const answer = fresh.get(m);
      if (!answer) continue;
      const done = m.state === 'done';
      if (done) this.options.seed(m.key, answer.info, answer.at);
      if (!refresh) continue;
      if (!done) this.options.onRefresh?.('failed');
      else if (changed.has(m)) {
        this.options.onRefresh?.('fetched');
        this.options.logger.info({ key: m.key, etag: answer.info.etag, size: answer.info.size }, 'warm-up: new version fetched');
      } else this.options.onRefresh?.('unchanged');
    }

    const pending = members.filter((m) => m.state === 'pending').length + unresolved;
    if (pending > 0 || offline || retry) {
      this.options.logger.warn({ pending, offline, error: firstError }, 'warm-up pass incomplete: trying again');
    }
    return { complete: pending === 0 && !offline && !retry, pending, offline };
  }

  private bytesHeld(key: string, info: ObjectInfo): number {
    let held = 0;
    for (let index = 0, start = 0; start < info.size; index++, start += this.options.rangeSize) {
      if (this.options.tier.has(key, info, index)) held += Math.min(this.options.rangeSize, info.size - start);
    }
    return held;
  }

  private finishFirst(offline: boolean): void {
    this.holding = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    const p = this.progress();
    const fields = { objects: p.objects, bytes: p.bytes.done, ms: this.now() - this.startedAt, tier: this.options.tier.name };
    if (offline) this.options.logger.warn(fields, 'warm-up done from the disk tier: S3 unreachable, the warm set is on disk in the versions last confirmed');
    else this.options.logger.info(fields, 'warm-up done');
  }

  private timedOut(): void {
    this.timer = undefined;
    if (!this.holding) return;
    this.holding = false;
    this.options.onTimeout?.();
    const p = this.progress();
    this.options.logger.warn(
      { timeoutS: this.options.timeoutMs / 1000, objects: p.objects, bytesDone: p.bytes.done, bytesPending: p.bytes.pending },
      'warm-up timed out: ready without the whole warm set (warming goes on)',
    );
  }

  private warnOnce(id: string, fields: Record<string, unknown>, msg: string): void {
    if (this.warned.has(id)) return;
    this.warned.add(id);
    this.options.logger.warn(fields, msg);
  }
}

/** The disk tier as warm target; falls back to memory once a write error has turned the tier off. */
export function diskWarmTier(disk: DiskTier, cache: BlockCache): WarmTier {
  const memory = memoryWarmTier(cache, cache.bytesBudget);
  const span = (info: ObjectInfo, index: number): [number, number] => {
    const start = index * cache.rangeSize;
    return [start, Math.min(cache.rangeSize, info.size - start)];
  };
  return {
    name: 'disk',
    get budget() {
      return disk.enabled ? disk.maxBytes : memory.budget;
    },
    has: (key, info, index) => (disk.enabled ? disk.has(key, info.etag, ...span(info, index)) : memory.has(key, info, index)),
    fill: async (key, info, index, signal) => {
      if (disk.enabled && (await disk.fill(key, info.etag, ...span(info, index), signal))) return;
      await memory.fill(key, info, index, signal);
    },
  };
}

/** The memory cache as warm target (no disk tier): ranges fetched through it, single flight with clients. */
export function memoryWarmTier(cache: BlockCache, budget: number): WarmTier {
  return {
    name: 'memory',
    budget,
    has: (key, info, index) => cache.has(key, info, index),
    fill: async (key, info, index, signal) => {
      const entry = cache.range(key, info, index);
      await abortable(entry.waitFor(entry.buffer.length), signal);
    },
  };
}

/** S3 answered about the object (404, 403): not an outage, not worth trying again before the next interval. */
function isAnswer(err: unknown): err is TransferError {
  return err instanceof TransferError && (err.code === 'NOT_FOUND' || err.code === 'ACCESS_DENIED');
}

function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new TransferError('ABORTED', 'warm-up stopped'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new TransferError('ABORTED', 'warm-up stopped'));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** Runs `fn` over `items`, at most `limit` at once. */
async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
