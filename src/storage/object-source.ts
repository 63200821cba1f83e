import { encodeNetascii } from '../tftp/protocol/netascii.js';
import { TransferError } from '../errors.js';
import type { ReadSource } from '../tftp/session/types.js';
import type { RangeCache, RangeView } from './range-cache.js';
import type { ObjectInfo } from './s3-store.js';

/**
 * An object's bytes for one transfer, read through the shared cache. Holds the ranges its
 * unacknowledged window touches (so an eviction neither frees nor refetches them mid-window) and
 * keeps the next `readAhead` ranges in flight, so the client does not wait on S3's first-byte
 * latency and clients at different offsets share the fetches.
 *
 * Hot path: `slice` allocates nothing but the view Node needs (the array it returns is reused and
 * only valid until the next call).
 */
export class CachedObjectSource implements ReadSource {
  readonly size: number;
  private readonly held = new Map<number, RangeView>();
  private readonly lastIndex: number;
  private readonly rangeSize: number;
  /** Reused answer of `slice` for the common one-range case. */
  private readonly one: Buffer[] = [];
  /** The range `slice` used last (saves a map lookup per block). */
  private currentIndex = -1;
  private current: RangeView | undefined;
  private closed = false;

  constructor(
    private readonly cache: RangeCache,
    private readonly key: string,
    private readonly info: ObjectInfo,
    private readonly readAhead: number,
  ) {
    this.size = info.size;
    this.rangeSize = cache.rangeSize;
    this.lastIndex = Math.floor(Math.max(0, this.size - 1) / this.rangeSize);
  }

  slice(offset: number, length: number): readonly Buffer[] | undefined {
    const end = Math.min(offset + length, this.size);
    if (offset >= end) {
      this.one.length = 0;
      return this.one;
    }
    const rangeSize = this.rangeSize;
    let index = Math.floor(offset / rangeSize);
    const first = index === this.currentIndex && this.current && !this.current.error ? this.current : this.entry(index, false);
    if (!first) return undefined;
    this.currentIndex = index;
    this.current = first;
    const firstStart = index * rangeSize;
    // Common case: the whole block lies in one range.
    if (end <= firstStart + rangeSize) {
      if (first.filled < end - firstStart) return undefined;
      this.one.length = 1;
      this.one[0] = first.buffer.subarray(offset - firstStart, end - firstStart);
      return this.one;
    }
    const segments: Buffer[] = [];
    let pos = offset;
    let entry: RangeView | undefined = first;
    while (pos < end) {
      if (!entry) return undefined;
      const rangeStart = index * rangeSize;
      const upto = Math.min(end, rangeStart + rangeSize);
      if (entry.filled < upto - rangeStart) return undefined;
      segments.push(entry.buffer.subarray(pos - rangeStart, upto - rangeStart));
      pos = upto;
      index++;
      if (pos < end) entry = this.entry(index, false);
    }
    return segments;
  }

  async load(offset: number, length: number): Promise<void> {
    const end = Math.min(offset + length, this.size);
    const rangeSize = this.rangeSize;
    for (let pos = offset; pos < end; ) {
      const index = Math.floor(pos / rangeSize);
      const rangeStart = index * rangeSize;
      const upto = Math.min(end, rangeStart + rangeSize);
      const entry = this.entry(index, true);
      if (!entry) throw new TransferError('ABORTED', 'transfer closed');
      await entry.waitFor(upto - rangeStart);
      pos = upto;
    }
  }

  release(offset: number): void {
    const below = Math.floor(offset / this.rangeSize);
    for (const [index, entry] of this.held) {
      if (index >= below) continue;
      this.held.delete(index);
      this.cache.release(entry, this.key, this.info, index);
      if (index === this.currentIndex) {
        this.currentIndex = -1;
        this.current = undefined;
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [index, entry] of this.held) this.cache.release(entry, this.key, this.info, index);
    this.held.clear();
    this.current = undefined;
    this.one.length = 0;
  }

  /** The held entry for `index`; looks in the cache (and fetches if `fetch`) when not held yet. */
  private entry(index: number, fetch: boolean): RangeView | undefined {
    let entry = this.held.get(index);
    if (entry && !entry.error) return entry;
    if (this.closed) return undefined;
    if (entry) {
      // Its fetch failed: let it go; a new fetch (on `load`) replaces it.
      this.held.delete(index);
      this.cache.release(entry, this.key, this.info, index);
    }
    entry = fetch ? this.cache.range(this.key, this.info, index) : this.cache.peek(this.key, this.info, index);
    if (!entry || entry.error) return undefined;
    this.cache.hold(entry);
    this.held.set(index, entry);
    this.startReadAhead(index);
    return entry;
  }

  private startReadAhead(index: number): void {
    // The transfer's own depth, or deeper where the S3 reader measures that more keeps its GETs busy
    // (a depth of 0 is read-ahead turned off).
    const depth = this.readAhead === 0 ? 0 : Math.max(this.readAhead, this.cache.readAheadRanges?.() ?? 0);
    const upto = Math.min(this.lastIndex, index + depth);
    for (let i = index + 1; i <= upto; i++) {
      this.cache.prefetch(this.key, this.info, i);
    }
  }
}

/** Chunk of the raw object converted at a time for netascii. */
const NETASCII_CHUNK = 64 * 1024;

/**
 * netascii view of an object: converts the raw bytes as a stream and keeps only the converted
 * bytes the session may still (re)send. Offsets are in the converted stream; its size is unknown
 * until the end is reached, so no tsize is offered.
 */
export class NetasciiSource implements ReadSource {
  readonly size = undefined;
  private chunks: Buffer[] = [];
  /** Converted-stream offset of chunks[0]. */
  private chunksStart = 0;
  private convertedEnd = 0;
  private rawPos = 0;
  private eof = false;

  constructor(private readonly raw: ReadSource) {}

  slice(offset: number, length: number): readonly Buffer[] | undefined {
    const end = offset + length;
    if (end > this.convertedEnd && !this.eof) return undefined;
    const stop = Math.min(end, this.convertedEnd);
    const segments: Buffer[] = [];
    let chunkStart = this.chunksStart;
    for (const chunk of this.chunks) {
      const chunkEnd = chunkStart + chunk.length;
      if (chunkEnd > offset && chunkStart < stop) {
        segments.push(chunk.subarray(Math.max(0, offset - chunkStart), Math.min(chunk.length, stop - chunkStart)));
      }
      if (chunkEnd >= stop) break;
      chunkStart = chunkEnd;
    }
    return segments;
  }

  async load(offset: number, length: number): Promise<void> {
    while (this.convertedEnd < offset + length && !this.eof) {
      await this.raw.load(this.rawPos, NETASCII_CHUNK);
      const raw = this.raw.slice(this.rawPos, NETASCII_CHUNK) ?? [];
      let taken = 0;
      for (const piece of raw) {
        // Copy: the converted chunk may outlive the raw range in the cache.
        const converted = encodeNetascii(piece);
        const owned = converted === piece ? Buffer.from(piece) : converted;
        this.chunks.push(owned);
        this.convertedEnd += owned.length;
        taken += piece.length;
      }
      this.rawPos += taken;
      this.raw.release(this.rawPos);
      if (taken < NETASCII_CHUNK) this.eof = true;
    }
  }

  release(offset: number): void {
    while (this.chunks.length > 0 && this.chunksStart + this.chunks[0]!.length <= offset) {
      this.chunksStart += this.chunks.shift()!.length;
    }
  }

  close(): void {
    this.chunks = [];
    this.raw.close();
  }
}
