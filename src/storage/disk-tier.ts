import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { ConfigError } from '../config/config.js';
import type { RangeReader } from './adaptive-range.js';
import { objectInfo, type ObjectInfo } from './s3-store.js';

export interface DiskTierOptions {
  readonly dir: string;
  /** Bytes of range and metadata files held at most. */
  readonly maxBytes: number;
  /** The tier was turned off by a write error (called once). */
  readonly onDisabled?: (err: unknown) => void;
  /** A write or read of the tier failed (each time). */
  readonly onError?: () => void;
  /** A range was served from disk. */
  readonly onHit?: () => void;
  /** A range file failed its checksum (it is deleted and the range is read from S3). */
  readonly onCorrupt?: (file: string) => void;
  /** Wall clock, ms (tests). */
  readonly now?: () => number;
}

/** Object metadata persisted with the ranges: the last HeadObject answer S3 confirmed. */
export interface PersistedMetadata {
  readonly key: string;
  readonly info: ObjectInfo;
  /** Wall clock ms of the last successful validation. */
  readonly validatedAt: number;
}

interface FileEntry {
  readonly name: string;
  readonly size: number;
  readonly crc: number;
}

const RANGE_PREFIX = 'r-';
const META_PREFIX = 'm-';
const TMP_PREFIX = 'tmp-';

const hash = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 32);

/**
 * The persistent second cache tier: a RangeReader in front of the S3 reader that serves a range
 * from a file on local disk when one is there, and otherwise reads it from S3 and, once it is
 * complete, writes it to disk (temp file, then rename: a crash never leaves a torn file under a
 * final name). A range file's name carries (sha256(key), sha256(etag), start, length) and the
 * CRC-32 of its bytes; the CRC is checked on every read before any byte is reported, so a corrupt
 * or torn file is deleted and refetched, never served. Bounded by `maxBytes`, least recently used
 * files first (recency in memory; at start by mtime). HeadObject answers are persisted as small
 * JSON files, so a restarted gateway can serve disk-held objects under --stale-if-error; they count
 * toward `maxBytes`, and an object's metadata file is deleted with its last range file (at start,
 * the metadata of objects with no range file left is pruned).
 *
 * A write error (disk full, I/O error, read-only) turns writing off for the process; reads of
 * existing files go on (each is checksummed), and a failed read falls back to S3.
 */
export class DiskTier implements RangeReader {
  /** Range files by their name without the CRC, least recently used first. */
  private readonly files = new Map<string, FileEntry>();
  private bytes = 0;
  /** Range files per object (sha256 of the key, as in the file names): its metadata goes with its last range. */
  private readonly rangesPerKey = new Map<string, number>();
  /** Metadata files on disk by the hash in their name → their size in bytes. */
  private readonly metaFiles = new Map<string, number>();
  private metaBytes = 0;
  private persistedList: readonly PersistedMetadata[] = [];
  private writable = true;
  private readonly pendingWrites = new Set<Promise<void>>();
  private writeChain: Promise<void> = Promise.resolve();
  private readonly metaWrites = new Map<string, Promise<void>>();
  private readonly now: () => number;
  private closed = false;
  /**
   * S3 reads of ranges in flight, by range file: a warm-up fill and a client's read of the same
   * range share one GET. Each resolves with the range's bytes, or undefined when that read failed
   * (whoever waited on it then reads for itself).
   */
  private readonly reading = new Map<string, Promise<Buffer | undefined>>();

  private constructor(
    private readonly store: RangeReader,
    private readonly options: DiskTierOptions,
  ) {
    this.now = options.now ?? (() => Date.now());
  }

  /** The object metadata found at open (of objects with range files on disk). */
  get persisted(): readonly PersistedMetadata[] {
    return this.persistedList;
  }

  /**
   * Opens (creating) the directory, removes leftover temp files, and rebuilds the index from
   * readdir + stat (no file contents are read, only the small metadata files). Throws ConfigError
   * when the directory cannot be created or written.
   */
  static async open(store: RangeReader, options: DiskTierOptions): Promise<DiskTier> {
    const dir = options.dir;
    try {
      await mkdir(dir, { recursive: true });
      const probe = join(dir, `${TMP_PREFIX}probe-${randomBytes(6).toString('hex')}`);
      await writeFile(probe, 'ok');
      await unlink(probe);
    } catch (err) {
      throw new ConfigError([`--cache-dir: '${dir}' cannot be used (${(err as Error).message})`]);
    }
    const names = await readdir(dir);
    const ranges: { entry: FileEntry; base: string; mtime: number }[] = [];
    const metadata: { id: string; m: PersistedMetadata; size: number }[] = [];
    for (const name of names) {
      const path = join(dir, name);
      if (name.startsWith(TMP_PREFIX)) {
        await unlink(path).catch(() => undefined);
      } else if (name.startsWith(RANGE_PREFIX)) {
        const parsed = parseRangeName(name);
        const st = await stat(path).catch(() => undefined);
        if (!parsed || !st?.isFile()) continue;
        ranges.push({ entry: { name, size: st.size, crc: parsed.crc }, base: parsed.base, mtime: st.mtimeMs });
      } else if (name.startsWith(META_PREFIX) && name.endsWith('.json')) {
        const text = await readFile(path, 'utf8').catch(() => undefined);
        const m = text === undefined ? undefined : parseMetadataText(text);
        const id = name.slice(META_PREFIX.length, -'.json'.length);
        if (m && hash(m.key) === id) metadata.push({ id, m, size: Buffer.byteLength(text!) });
        else await unlink(path).catch(() => undefined);
      }
    }
    const tier = new DiskTier(store, options);
    ranges.sort((a, b) => a.mtime - b.mtime);
    for (const r of ranges) tier.addRange(r.base, r.entry);
    // Metadata of an object none of whose ranges is on disk serves nothing: pruned.
    for (const { id, size } of metadata) {
      if (tier.rangesPerKey.has(id)) {
        tier.metaFiles.set(id, size);
        tier.metaBytes += size;
      } else {
        await unlink(join(dir, metaName(id))).catch(() => undefined);
      }
    }
    await tier.evictTo(options.maxBytes);
    tier.persistedList = metadata.filter(({ id }) => tier.metaFiles.has(id)).map(({ m }) => m);
    return tier;
  }

  get bucket(): string {
    return this.store.bucket;
  }

  /** Bytes of range files on disk. */
  get bytesHeld(): number {
    return this.bytes;
  }

  /** Bytes of object metadata files on disk (they count toward `maxBytes` too). */
  get metadataBytesHeld(): number {
    return this.metaBytes;
  }

  /** Bytes the tier may hold (range and metadata files). */
  get maxBytes(): number {
    return this.options.maxBytes;
  }

  /** True if the range file of (key, etag, start, length) is on disk (its checksum is checked when read). */
  has(key: string, etag: string, start: number, length: number): boolean {
    return this.files.has(rangeBase(key, etag, start, length));
  }

  /**
   * Puts a range on disk without going through the memory cache (warm-up): nothing is read when the
   * file is already there; otherwise the range is read from S3 into a buffer of its own and written.
   * Resolves true once the file is on disk, false when the tier does not write (turned off, closed).
   */
  async fill(key: string, etag: string, start: number, length: number, signal?: AbortSignal): Promise<boolean> {
    const base = rangeBase(key, etag, start, length);
    if (this.files.has(base)) return true;
    if (!this.writable || this.closed || length > this.options.maxBytes) return false;
    // Looked up before any await: a read starting in the same tick is seen by the other side.
    const inFlight = this.reading.get(base);
    let data = inFlight && (await this.joinRead(inFlight, signal));
    if (!data) {
      data = Buffer.allocUnsafeSlow(length);
      await this.readShared(base, key, etag, start, data, () => undefined, signal);
    }
    await this.write(base, data);
    return this.files.has(base);
  }

  /** False once a write error turned the tier off. */
  get enabled(): boolean {
    return this.writable;
  }

  /** HeadObject through to S3; an answer is persisted (validated now). */
  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo> {
    const info = await this.store.head(key, signal);
    this.persistMetadata({ key, info, validatedAt: this.now() });
    return info;
  }

  async readRange(key: string, etag: string, start: number, target: Buffer, onData: (filled: number) => void, signal?: AbortSignal): Promise<void> {
    const base = rangeBase(key, etag, start, target.length);
    // A warm-up fill reading this range now: its bytes, not a second GET.
    const inFlight = this.reading.get(base);
    const filled = inFlight && (await this.joinRead(inFlight, signal));
    if (filled) {
      filled.copy(target);
      onData(target.length);
      return;
    }
    if (this.files.has(base) && (await this.readFromDisk(base, target))) {
      this.options.onHit?.();
      onData(target.length);
      return;
    }
    // No await between the lookups above and here when the range is not on disk: a fill that
    // starts later in this tick finds this read.
    await this.readShared(base, key, etag, start, target, onData, signal);
    // Written in the background (tracked; flush() waits for it): the reader has its bytes already.
    void this.write(base, target);
  }

  /** Reads a range from S3 into `target`, announced in `reading` while it runs. */
  private async readShared(base: string, key: string, etag: string, start: number, target: Buffer, onData: (filled: number) => void, signal?: AbortSignal): Promise<void> {
    let settle: (data: Buffer | undefined) => void = () => undefined;
    const shared = new Promise<Buffer | undefined>((resolve) => (settle = resolve));
    // One that gave up waiting (its signal fired) does not hide the read it waited for.
    if (!this.reading.has(base)) this.reading.set(base, shared);
    try {
      await this.store.readRange(key, etag, start, target, onData, signal);
      settle(target);
    } catch (err) {
      settle(undefined);
      throw err;
    } finally {
      if (this.reading.get(base) === shared) this.reading.delete(base);
    }
  }

  /** The bytes of a read in flight, once it ends (undefined: it failed, or `signal` fired first). */
  private async joinRead(shared: Promise<Buffer | undefined>, signal?: AbortSignal): Promise<Buffer | undefined> {
    if (signal?.aborted) return undefined;
    if (!signal) return shared;
    let onAbort: () => void = () => undefined;
    const aborted = new Promise<undefined>((resolve) => {
      onAbort = () => resolve(undefined);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([shared, aborted]);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Waits for writes in flight (tests, shutdown). */
  async flush(): Promise<void> {
    while (this.pendingWrites.size > 0 || this.metaWrites.size > 0) {
      await Promise.all([...this.pendingWrites, ...this.metaWrites.values()]);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  private async readFromDisk(base: string, target: Buffer): Promise<boolean> {
    const entry = this.files.get(base);
    if (!entry) return false;
    const path = join(this.options.dir, entry.name);
    if (entry.size !== target.length) {
      this.drop(base, entry);
      await unlink(path).catch(() => undefined);
      return false;
    }
    try {
      const fh = await open(path, 'r');
      try {
        let off = 0;
        while (off < target.length) {
          const { bytesRead } = await fh.read(target, off, target.length - off, off);
          if (bytesRead === 0) break;
          off += bytesRead;
        }
        if (off !== target.length || crc32(target) !== entry.crc) {
          this.drop(base, entry);
          this.options.onCorrupt?.(entry.name);
          await unlink(path).catch(() => undefined);
          return false;
        }
      } finally {
        await fh.close();
      }
    } catch {
      // Gone or unreadable: read from S3 instead.
      this.drop(base, entry);
      this.options.onError?.();
      return false;
    }
    // Most recently used last.
    this.files.delete(base);
    this.files.set(base, entry);
    return true;
  }

  private write(base: string, data: Buffer): Promise<void> {
    if (!this.writable || this.closed || this.files.has(base) || data.length > this.options.maxBytes || data.length === 0) return Promise.resolve();
    const crc = crc32(data);
    const name = `${base}-${crc.toString(16).padStart(8, '0')}`;
    const tmp = join(this.options.dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    // One write at a time, in the order ranges completed (recency order, bounded disk load).
    const work = this.writeChain.then(async () => {
      if (!this.writable || this.files.has(base)) return;
      await this.evictTo(this.options.maxBytes - data.length);
      try {
        const fh = await open(tmp, 'wx');
        try {
          let off = 0;
          while (off < data.length) off += (await fh.write(data, off, data.length - off)).bytesWritten;
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(tmp, join(this.options.dir, name));
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        this.fail(err);
        return;
      }
      if (this.files.has(base)) return;
      this.addRange(base, { name, size: data.length, crc });
    });
    this.writeChain = work;
    this.track(work);
    return work;
  }

  private persistMetadata(m: PersistedMetadata): void {
    if (!this.writable || this.closed) return;
    const id = hash(m.key);
    const previous = this.metaWrites.get(id) ?? Promise.resolve();
    const work = previous.then(async () => {
      if (!this.writable) return;
      const tmp = join(this.options.dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
      const body = JSON.stringify({ key: m.key, etag: m.info.etag, size: m.info.size, lastModifiedMs: m.info.lastModifiedMs, validatedAt: m.validatedAt });
      try {
        await writeFile(tmp, body);
        await rename(tmp, join(this.options.dir, metaName(id)));
        const size = Buffer.byteLength(body);
        this.metaBytes += size - (this.metaFiles.get(id) ?? 0);
        this.metaFiles.set(id, size);
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        this.fail(err);
      }
    });
    this.metaWrites.set(id, work);
    void work.then(() => {
      if (this.metaWrites.get(id) === work) this.metaWrites.delete(id);
    });
  }

  private track(work: Promise<void>): void {
    this.pendingWrites.add(work);
    void work.then(() => this.pendingWrites.delete(work));
  }

  /** A write failed: the tier stops writing for the process (reported once). */
  private fail(err: unknown): void {
    this.options.onError?.();
    if (!this.writable) return;
    this.writable = false;
    this.options.onDisabled?.(err);
  }

  private addRange(base: string, entry: FileEntry): void {
    this.files.set(base, entry);
    this.bytes += entry.size;
    const id = keyHashOf(base);
    this.rangesPerKey.set(id, (this.rangesPerKey.get(id) ?? 0) + 1);
  }

  /** Forgets a range file; returns true when it was the object's last one. */
  private drop(base: string, entry: FileEntry): boolean {
    if (this.files.get(base) !== entry) return false;
    this.files.delete(base);
    this.bytes -= entry.size;
    const id = keyHashOf(base);
    const left = (this.rangesPerKey.get(id) ?? 1) - 1;
    if (left > 0) {
      this.rangesPerKey.set(id, left);
      return false;
    }
    this.rangesPerKey.delete(id);
    return true;
  }

  /**
   * Deletes least recently used range files until at most `limit` bytes (ranges and metadata) are
   * held; an object's metadata file goes with its last range file (it would serve nothing).
   */
  private async evictTo(limit: number): Promise<void> {
    while (this.bytes + this.metaBytes > Math.max(0, limit)) {
      const first = this.files.entries().next();
      if (first.done) {
        // Only metadata of objects without ranges left (HEAD answers of objects never read).
        for (const id of [...this.metaFiles.keys()]) if (!this.rangesPerKey.has(id)) await this.removeMetadata(id);
        return;
      }
      const [base, entry] = first.value;
      const last = this.drop(base, entry);
      await unlink(join(this.options.dir, entry.name)).catch(() => undefined);
      if (last) await this.removeMetadata(keyHashOf(base));
    }
  }

  private async removeMetadata(id: string): Promise<void> {
    const size = this.metaFiles.get(id);
    if (size === undefined) return;
    this.metaFiles.delete(id);
    this.metaBytes -= size;
    await unlink(join(this.options.dir, metaName(id))).catch(() => undefined);
  }
}

function rangeBase(key: string, etag: string, start: number, length: number): string {
  return `${RANGE_PREFIX}${hash(key)}-${hash(etag)}-${start}-${length}`;
}

/** The key hash of a range file's base name (`r-<key hash>-...`). */
function keyHashOf(base: string): string {
  return base.slice(RANGE_PREFIX.length, RANGE_PREFIX.length + 32);
}

function metaName(id: string): string {
  return `${META_PREFIX}${id}.json`;
}

function parseRangeName(name: string): { base: string; crc: number } | undefined {
  const m = /^(r-[0-9a-f]{32}-[0-9a-f]{32}-[0-9]+-[0-9]+)-([0-9a-f]{8})$/.exec(name);
  if (!m) return undefined;
  return { base: m[1]!, crc: parseInt(m[2]!, 16) };
}

function parseMetadataText(text: string): PersistedMetadata | undefined {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  if (typeof v.key !== 'string' || typeof v.etag !== 'string' || typeof v.size !== 'number' || typeof v.validatedAt !== 'number') return undefined;
  return { key: v.key, info: objectInfo(v.size, v.etag, typeof v.lastModifiedMs === 'number' ? v.lastModifiedMs : undefined), validatedAt: v.validatedAt };
}
