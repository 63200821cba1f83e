import type { ObjectInfo, S3ObjectStore } from './s3-store.js';

/** What the block cache reads ranges through (S3ObjectStore, or this reader in front of it). */
export type RangeReader = Pick<S3ObjectStore, 'bucket' | 'head' | 'readRange'>;

export interface ParallelRangeOptions {
  /** GETs per range at most. */
  readonly streams: number;
  /** A range is split only into parts of at least this many bytes. */
  readonly minPartBytes: number;
}

/**
 * Reads one cache range with several ranged GETs at once (parts of at least `minPartBytes`), so a
 * cold transfer whose window drains a range faster than one S3 stream delivers it is not held to
 * one stream's speed. Progress is reported as the contiguous prefix filled so far, as readers
 * expect; S3 bytes are the same (each byte is asked for once). A part that fails aborts the others
 * and fails the range (each part already re-requests a body that broke off).
 */
export class ParallelRangeReader implements RangeReader {
  constructor(
    private readonly store: RangeReader,
    private readonly options: ParallelRangeOptions,
  ) {}

  get bucket(): string {
    return this.store.bucket;
  }

  head(key: string, signal?: AbortSignal): Promise<ObjectInfo> {
    return this.store.head(key, signal);
  }

  async readRange(key: string, etag: string, start: number, target: Buffer, onData: (filled: number) => void, signal?: AbortSignal): Promise<void> {
    const streams = Math.max(1, Math.min(this.options.streams, Math.floor(target.length / Math.max(1, this.options.minPartBytes))));
    if (streams <= 1) return this.store.readRange(key, etag, start, target, onData, signal);
    const partSize = Math.ceil(target.length / streams);
    const parts: { from: number; length: number }[] = [];
    for (let from = 0; from < target.length; from += partSize) parts.push({ from, length: Math.min(partSize, target.length - from) });
    const fills = parts.map(() => 0);
    /** Index of the first part not yet complete, and the prefix length before it. */
    let head = 0;
    let prefix = 0;
    const report = (): void => {
      while (head < parts.length && fills[head] === parts[head]!.length) {
        prefix += parts[head]!.length;
        head++;
      }
      const filled = head < parts.length ? prefix + fills[head]! : prefix;
      onData(filled);
    };
    const inner = new AbortController();
    const onAbort = (): void => inner.abort(signal?.reason);
    if (signal?.aborted) inner.abort(signal.reason);
    else signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.all(
        parts.map((p, i) =>
          this.store
            .readRange(
              key,
              etag,
              start + p.from,
              target.subarray(p.from, p.from + p.length),
              (n) => {
                fills[i] = n;
                // Only the part at the front moves the prefix.
                if (i === head) report();
              },
              inner.signal,
            )
            .then(
              () => {
                fills[i] = p.length;
                if (i === head) report();
              },
              (err: unknown) => {
                inner.abort(err);
                throw err;
              },
            ),
        ),
      );
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}
