import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { ConfigError } from '../config/config.js';
import type { RangeReader } from './adaptive-range.js';
import type { ObjectInfo } from './s3-store.js';

export interface DiskTierOptions {
  readonly dir: string;
  /** Bytes of range files held at most. */
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
 * JSON files, so a restarted gateway can serve disk-held objects under --stale-if-error.
 *
 * A write error (disk full, I/O error, read-only) turns writing off for the process; reads of
 * existing files go on (each is checksummed), and a failed read falls back to S3.
 */
export class DiskTier implements RangeReader {
  /** Range files by their name without the CRC, least recently used first. */
  private readonly files = new Map<string, FileEntry>();
  private bytes = 0;
  private writable = true;
  private readonly pendingWrites = new Set<Promise<void>>();
  private writeChain: Promise<void> = Promise.resolve();
  private readonly metaWrites = new Map<string, Promise<void>>();
  private readonly now: () => number;
  private closed = false;

  private constructor(
    private readonly store: RangeReader,
    private readonly options: DiskTierOptions,
    readonly persisted: readonly PersistedMetadata[],
  ) {
    this.now = options.now ?? (() => Date.now());
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
    const metadata: PersistedMetadata[] = [];
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
        const m = await readFile(path, 'utf8')
          .then((text) => parseMetadata(text))
          .catch(() => undefined);
        if (m) metadata.push(m);
        else await unlink(path).catch(() => undefined);
      }
    }
    const tier = new DiskTier(store, options, metadata);
    ranges.sort((a, b) => a.mtime - b.mtime);
    for (const r of ranges) {
      tier.files.set(r.base, r.entry);
      tier.bytes += r.entry.size;
    }
    await tier.evictTo(options.maxBytes);
    return tier;
  }

  get bucket(): string {
    return this.store.bucket;
  }

  /** Bytes of range files on disk. */
  get bytesHeld(): number {
    return this.bytes;
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
    if (await this.readFromDisk(base, target)) {
      this.options.onHit?.();
      onData(target.length);
      return;
    }
    await this.store.readRange(key, etag, start, target, onData, signal);
    this.write(base, target);
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

  private write(base: string, data: Buffer): void {
    if (!this.writable || this.closed || this.files.has(base) || data.length > this.options.maxBytes || data.length === 0) return;
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
      this.files.set(base, { name, size: data.length, crc });
      this.bytes += data.length;
    });
    this.writeChain = work;
    this.track(work);
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
        await rename(tmp, join(this.options.dir, `${META_PREFIX}${id}.json`));
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

  private drop(base: string, entry: FileEntry): void {
    if (this.files.get(base) !== entry) return;
    this.files.delete(base);
    this.bytes -= entry.size;
  }

  /** Deletes least recently used files until at most `limit` bytes are held. */
  private async evictTo(limit: number): Promise<void> {
    while (this.bytes > Math.max(0, limit)) {
      const first = this.files.entries().next();
      if (first.done) return;
      const [base, entry] = first.value;
      this.drop(base, entry);
      await unlink(join(this.options.dir, entry.name)).catch(() => undefined);
    }
  }
}

function rangeBase(key: string, etag: string, start: number, length: number): string {
  return `${RANGE_PREFIX}${hash(key)}-${hash(etag)}-${start}-${length}`;
}

function parseRangeName(name: string): { base: string; crc: number } | undefined {
  const m = /^(r-[0-9a-f]{32}-[0-9a-f]{32}-[0-9]+-[0-9]+)-([0-9a-f]{8})$/.exec(name);
  if (!m) return undefined;
  return { base: m[1]!, crc: parseInt(m[2]!, 16) };
}

function parseMetadata(text: string): PersistedMetadata | undefined {
  const v = JSON.parse(text) as Record<string, unknown>;
  if (typeof v.key !== 'string' || typeof v.etag !== 'string' || typeof v.size !== 'number' || typeof v.validatedAt !== 'number') return undefined;
  const info: ObjectInfo = typeof v.lastModifiedMs === 'number' ? { size: v.size, etag: v.etag, lastModifiedMs: v.lastModifiedMs } : { size: v.size, etag: v.etag };
  return { key: v.key, info, validatedAt: v.validatedAt };
}
