import { setTimeout as sleep } from 'node:timers/promises';
import { CompleteMultipartUploadCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, type GetObjectCommandOutput } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { within } from '../bounded-wait.js';
import { TransferError } from '../errors.js';
import type { UploadSink } from '../tftp/session/types.js';
import { CallDeadline } from './deadline.js';
import { storageError } from './s3-errors.js';

export { storageError } from './s3-errors.js';

export interface ObjectInfo {
  readonly size: number;
  /** ETag as S3 returns it (quoted); pinned for the whole transfer. */
  readonly etag: string;
  /** Last-Modified as S3 reports it, in ms since the epoch (HTTP's Last-Modified, If-Modified-Since). */
  readonly lastModifiedMs?: number;
}

/** An ObjectInfo, with Last-Modified only when S3 sent one. */
export function objectInfo(size: number, etag: string, lastModifiedMs?: number): ObjectInfo {
  return lastModifiedMs === undefined ? { size, etag } : { size, etag, lastModifiedMs };
}

export interface S3StoreOptions {
  readonly bucket: string;
  /** Multipart part size in bytes (5 MiB .. 5 GiB). */
  readonly partSize: number;
  /** Parts uploaded in parallel per upload. */
  readonly uploadQueueSize: number;
  /** Attempts to re-request the rest of a range after its body broke off. */
  readonly rangeRetries: number;
  /** Deadline of one HeadObject attempt, ms (the SDK retries within the budget). Default 1500. */
  readonly metadataTimeoutMs?: number;
  /**
   * Time budget of a call, ms: how long it may go without an answer (HeadObject) or without
   * progress (a range read: headers or body bytes), all retries included. Default 4000.
   */
  readonly retryBudgetMs?: number;
  readonly onBytesFetched?: (bytes: number) => void;
}

// The gateway's defaults (src/config): an answer within 4 s beats the 5 s retransmission timer of
// tftp-hpa and atftp, so the client's first request gets it.
const DEFAULT_METADATA_TIMEOUT_MS = 1500;
const DEFAULT_RETRY_BUDGET_MS = 4000;

/**
 * The S3 data path: HEAD for size and ETag, ranged GETs pinned to that ETag, and multipart uploads.
 * Every GetObject body is consumed or destroyed, so connections return to the pool.
 */
export class S3ObjectStore {
  constructor(
    private readonly client: S3Client,
    private readonly options: S3StoreOptions,
  ) {}

  get bucket(): string {
    return this.options.bucket;
  }

  /**
   * Size and ETag of `key`. Each attempt has its own short deadline and the whole lookup a time
   * budget, so a store that accepts connections and never answers costs seconds, not minutes.
   */
  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo> {
    const deadline = new CallDeadline(this.options.retryBudgetMs ?? DEFAULT_RETRY_BUDGET_MS, `HeadObject ${key}`, signal);
    try {
      const out = await deadline.race(
        this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: key }), {
          abortSignal: deadline.signal,
          requestTimeout: this.options.metadataTimeoutMs ?? DEFAULT_METADATA_TIMEOUT_MS,
        }),
      );
      if (out.ContentLength === undefined || out.ETag === undefined) {
        throw new TransferError('STORAGE_ERROR', `HeadObject ${key}: no size or ETag in the answer`);
      }
      return objectInfo(out.ContentLength, out.ETag, out.LastModified?.getTime());
    } catch (err) {
      throw storageError(err, `HeadObject ${key}`);
    } finally {
      deadline.close();
    }
  }

  /**
   * HeadObject's answer and the object's first bytes in one round trip: a GET of bytes
   * [0, frontBytes) whose Content-Range carries the size (a cold transfer needs both, and across a
   * WAN the round trip a HEAD would cost first is most of its wait). It answers when the headers
   * come; the front's bytes keep arriving in `front` (a body that breaks off leaves a shorter front:
   * the answer still stands). An empty object (416 to any range) gets a HEAD.
   */
  async headWithFront(key: string, frontBytes: number, signal?: AbortSignal): Promise<{ info: ObjectInfo; front: FrontRead }> {
    const deadline = new CallDeadline(this.options.retryBudgetMs ?? DEFAULT_RETRY_BUDGET_MS, `GetObject ${key} (front)`, signal);
    let out: GetObjectCommandOutput;
    try {
      out = await deadline.race(
        this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: key, Range: `bytes=0-${Math.max(1, frontBytes) - 1}` }), {
          abortSignal: deadline.signal,
          requestTimeout: this.options.metadataTimeoutMs ?? DEFAULT_METADATA_TIMEOUT_MS,
        }),
        (late: GetObjectCommandOutput) => (late.Body as Readable | undefined)?.destroy(),
      );
    } catch (err) {
      deadline.close();
      if (httpStatus(err) === 416) return { info: await this.head(key, signal), front: FrontRead.of(Buffer.alloc(0)) };
      throw storageError(err, `GetObject ${key} (front)`);
    }
    const body = out.Body as Readable | undefined;
    const size = totalFromContentRange(out.ContentRange) ?? (out.ContentRange === undefined ? out.ContentLength : undefined);
    if (size === undefined || out.ETag === undefined) {
      body?.destroy();
      deadline.close();
      throw new TransferError('STORAGE_ERROR', `GetObject ${key}: no size or ETag in the answer`);
    }
    const info = objectInfo(size, out.ETag, out.LastModified?.getTime());
    const front = new FrontRead(Buffer.allocUnsafeSlow(Math.min(size, frontBytes)));
    // The body streams in behind the answer, within the same deadline (it runs while bytes come).
    void this.pumpFront(body, front, deadline);
    return { info, front };
  }

  private async pumpFront(body: Readable | undefined, front: FrontRead, deadline: CallDeadline): Promise<void> {
    const expected = front.buffer.length;
    let filled = 0;
    const onAbort = (): void => void body?.destroy();
    deadline.signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of (body ?? []) as AsyncIterable<Buffer>) {
        deadline.touch();
        const n = Math.min(expected - filled, chunk.length);
        chunk.copy(front.buffer, filled, 0, n);
        filled += n;
        if (n > 0) {
          this.options.onBytesFetched?.(n);
          front.progress(filled);
        }
        // A store that ignored the Range: the rest is not wanted.
        if (filled >= expected && n < chunk.length) break;
      }
    } catch {
      // The answer stands; the bytes that did come are kept (a prefix is still right).
    } finally {
      deadline.signal.removeEventListener('abort', onAbort);
      body?.destroy();
      deadline.close();
      front.end();
    }
  }

  /**
   * The keys under `prefix` (ListObjectsV2, page by page, each page within the retry budget), in
   * key order, at most `limit` of them (`truncated` says there were more).
   */
  async list(prefix: string, limit: number, signal?: AbortSignal): Promise<{ keys: string[]; truncated: boolean }> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const deadline = new CallDeadline(this.options.retryBudgetMs ?? DEFAULT_RETRY_BUDGET_MS, `ListObjectsV2 ${prefix}`, signal);
      try {
        const out = await deadline.race(
          this.client.send(new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }), {
            abortSignal: deadline.signal,
          }),
        );
        for (const o of out.Contents ?? []) {
          if (o.Key === undefined) continue;
          if (keys.length >= limit) return { keys, truncated: true };
          keys.push(o.Key);
        }
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } catch (err) {
        throw storageError(err, `ListObjectsV2 ${prefix}`);
      } finally {
        deadline.close();
      }
    } while (token);
    return { keys, truncated: false };
  }

  /**
   * Reads bytes [start, start+target.length) of `key` at `etag` into `target`, reporting progress
   * through `onData(filled)` so readers can use the front of a range before its end arrives.
   * A body that breaks off is re-requested from where it stopped.
   */
  async readRange(
    key: string,
    etag: string,
    start: number,
    target: Buffer,
    onData: (filled: number) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    // The budget runs while no byte arrives (waiting for headers, retry back-off, a stalled body)
    // and starts again with every chunk: a slow but moving read is never cut off.
    const deadline = new CallDeadline(this.options.retryBudgetMs ?? DEFAULT_RETRY_BUDGET_MS, `GetObject ${key}`, signal);
    const progress = (filled: number): void => {
      deadline.touch();
      onData(filled);
    };
    let filled = 0;
    let attempt = 0;
    try {
      while (filled < target.length) {
        try {
          filled = await this.readOnce(key, etag, start, target, filled, progress, deadline);
        } catch (err) {
          const mapped = storageError(err, `GetObject ${key} bytes=${start + filled}-${start + target.length - 1}`);
          const retryable = mapped.code === 'STORAGE_UNAVAILABLE' || mapped.code === 'STORAGE_ERROR';
          if (!retryable || attempt >= this.options.rangeRetries || deadline.signal.aborted) throw mapped;
          attempt++;
          await delay(50 * 2 ** attempt, deadline.signal);
        }
      }
    } finally {
      deadline.close();
    }
  }

  private async readOnce(
    key: string,
    etag: string,
    start: number,
    target: Buffer,
    from: number,
    onData: (filled: number) => void,
    deadline: CallDeadline,
  ): Promise<number> {
    const signal = deadline.signal;
    const out = await deadline.race(
      this.client.send(
        new GetObjectCommand({
          Bucket: this.options.bucket,
          Key: key,
          IfMatch: etag,
          Range: `bytes=${start + from}-${start + target.length - 1}`,
        }),
        { abortSignal: signal },
      ),
      // Answered after we gave up: the body must still be released.
      (late: GetObjectCommandOutput) => (late.Body as Readable | undefined)?.destroy(),
    );
    const body = out.Body as Readable | undefined;
    if (!body) throw new TransferError('STORAGE_ERROR', `GetObject ${key}: no body`);
    let filled = from;
    // The deadline (or a shutdown) ends a body that stalls: the loop below then sees the error.
    const onAbort = (): void => {
      body.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        const room = target.length - filled;
        const n = Math.min(room, chunk.length);
        chunk.copy(target, filled, 0, n);
        filled += n;
        if (n === 0) continue;
        this.options.onBytesFetched?.(n);
        onData(filled);
        // No early break: reading the body to its end lets the connection go back to the pool.
      }
    } catch (err) {
      // Keep what arrived; the caller re-requests the rest.
      if (filled > from) return filled;
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
      body.destroy();
    }
    if (filled < target.length && filled === from) {
      throw new TransferError('STORAGE_ERROR', `GetObject ${key}: body ended early`);
    }
    return filled;
  }

  /** Starts an upload; the object appears only when `finish()` resolves. */
  createUpload(key: string, options: { ifNoneMatch: boolean }): UploadSink {
    return new MultipartSink(this.client, this.options, key, options.ifNoneMatch);
  }
}

/**
 * `If-None-Match: *` on CompleteMultipartUpload is newer than on PutObject, and some S3-compatible
 * stores ignore it there (Ceph RGW Pacific does): so a multipart upload that must not overwrite
 * also checks with HeadObject right before it completes. The conditional header still closes the
 * race where the store honours it; elsewhere the window shrinks to one round trip.
 */
function guardComplete(client: S3Client, bucket: string, key: string): S3Client {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver) as unknown;
      return async (command: unknown, options?: { abortSignal?: AbortSignal }) => {
        if (command instanceof CompleteMultipartUploadCommand) {
          const exists = await target.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), options).then(
            () => true,
            (err: unknown) => {
              if (storageError(err, 'HeadObject').code === 'NOT_FOUND') return false;
              throw err;
            },
          );
          if (exists) throw new TransferError('EXISTS', `object ${key} appeared during the upload`);
        }
        return (target.send as (c: unknown, o?: unknown) => Promise<unknown>)(command, options);
      };
    },
  });
}

/**
 * An object's first bytes arriving behind a HEAD-like answer (headWithFront): `filled` bytes of
 * `buffer` are there, `watch` hears of more, `ended` once the body is over (whole or broken off).
 */
export class FrontRead {
  filled = 0;
  ended = false;
  private readonly watchers = new Set<() => void>();

  constructor(readonly buffer: Buffer) {}

  /** A front that is already complete. */
  static of(buffer: Buffer): FrontRead {
    const front = new FrontRead(buffer);
    front.filled = buffer.length;
    front.ended = true;
    return front;
  }

  /** Calls `onChange` on every progress and at the end; returns the unsubscribe. */
  watch(onChange: () => void): () => void {
    this.watchers.add(onChange);
    return () => this.watchers.delete(onChange);
  }

  progress(filled: number): void {
    this.filled = filled;
    for (const w of [...this.watchers]) w();
  }

  end(): void {
    this.ended = true;
    for (const w of [...this.watchers]) w();
    this.watchers.clear();
  }
}

/** The total of a Content-Range answer (`bytes 0-99/1234` → 1234); undefined when absent or unknown (`*`). */
export function totalFromContentRange(value: string | undefined): number | undefined {
  const m = value === undefined ? null : /\/(\d+)\s*$/.exec(value);
  return m ? Number(m[1]) : undefined;
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** Waits `ms`, or less if `signal` aborts first (the caller then sees the abort). */
function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal }).catch(() => undefined);
}

/** How long an abort waits for lib-storage to settle the upload before giving up on it. */
const ABORT_WAIT_MS = 30_000;

/** First buffer of a part being gathered (it doubles as data arrives, up to the part size). */
const INITIAL_PART_BUFFER = 256 * 1024;

/**
 * An UploadSink over lib-storage's Upload. Received blocks are gathered into part-sized buffers
 * and handed to the uploader's body stream; backpressure comes back as a promise from `write`.
 * Abort ends the body stream with an error, which makes lib-storage abort the multipart upload
 * before its `done()` settles; we wait for that, so "aborted" means no parts are left.
 */
class MultipartSink implements UploadSink {
  private readonly body: Readable;
  private readonly upload: Upload;
  private readonly done: Promise<unknown>;
  /** The part being gathered: starts small and doubles up to partSize, so small uploads stay small. */
  private part: Buffer | undefined;
  private partFill = 0;
  private waitingForRead: (() => void) | undefined;
  private state: 'open' | 'finishing' | 'finished' | 'aborted' = 'open';
  private failure: unknown;

  constructor(
    client: S3Client,
    private readonly options: S3StoreOptions,
    private readonly key: string,
    private readonly ifNoneMatch: boolean,
  ) {
    this.body = new Readable({
      highWaterMark: options.partSize,
      read: () => {
        const resume = this.waitingForRead;
        this.waitingForRead = undefined;
        resume?.();
      },
    });
    this.upload = new Upload({
      client: ifNoneMatch ? guardComplete(client, options.bucket, key) : client,
      params: {
        Bucket: options.bucket,
        Key: key,
        Body: this.body,
        ...(ifNoneMatch ? { IfNoneMatch: '*' } : {}),
      },
      partSize: options.partSize,
      queueSize: options.uploadQueueSize,
      leavePartsOnError: false,
    });
    this.done = this.upload.done().catch((err: unknown) => {
      this.failure = err;
      throw err;
    });
    // Failures surface through write()/finish(); this keeps an early one from going unhandled.
    this.done.catch(() => undefined);
  }

  write(chunk: Buffer): Promise<void> | undefined {
    if (this.state !== 'open') return Promise.reject(new TransferError('ABORTED', 'upload is closed'));
    if (this.failure !== undefined) return Promise.reject(storageError(this.failure, `Upload ${this.key}`));
    let offset = 0;
    let blocked = false;
    const partSize = this.options.partSize;
    while (offset < chunk.length) {
      let part = this.part ?? Buffer.allocUnsafe(Math.min(partSize, INITIAL_PART_BUFFER));
      if (this.partFill === part.length) {
        const grown = Buffer.allocUnsafe(Math.min(partSize, part.length * 2));
        part.copy(grown, 0, 0, this.partFill);
        part = grown;
      }
      this.part = part;
      const n = chunk.copy(part, this.partFill, offset);
      this.partFill += n;
      offset += n;
      if (this.partFill === partSize) {
        if (!this.body.push(part)) blocked = true;
        this.part = undefined;
        this.partFill = 0;
      }
    }
    if (!blocked) return undefined;
    return new Promise<void>((resolve, reject) => {
      this.waitingForRead = resolve;
      this.done.catch((err: unknown) => reject(storageError(err, `Upload ${this.key}`)));
    });
  }

  async finish(): Promise<void> {
    if (this.state !== 'open') throw new TransferError('ABORTED', 'upload is closed');
    this.state = 'finishing';
    if (this.part && this.partFill > 0) this.body.push(this.part.subarray(0, this.partFill));
    this.body.push(null);
    try {
      await this.done;
      this.state = 'finished';
    } catch (err) {
      this.state = 'aborted';
      const mapped = storageError(err, `Upload ${this.key}`);
      // If-None-Match: * failed: someone stored the key after our first check (ERROR 6, not 0).
      if (this.ifNoneMatch && mapped.code === 'OBJECT_CHANGED') throw new TransferError('EXISTS', mapped.message, { cause: err });
      throw mapped;
    }
  }

  async abort(reason: string): Promise<void> {
    if (this.state === 'finished' || this.state === 'aborted') return;
    this.state = 'aborted';
    this.body.destroy(new TransferError('ABORTED', `upload aborted: ${reason}`));
    // lib-storage sends AbortMultipartUpload (if a multipart upload was created) before done()
    // settles. The wait is bounded: a drain must end even if lib-storage never settles (a part
    // upload stuck past its own timeout); then its own abort is asked for, and the bucket's
    // lifecycle rule removes whatever parts remain.
    const settled = await within(
      this.done.then(
        () => true,
        () => true,
      ),
      ABORT_WAIT_MS,
      false,
    );
    if (!settled) await this.upload.abort().catch(() => undefined);
  }
}
