import type { MessagePort } from 'node:worker_threads';
import { TransferError } from '../errors.js';
import type { UploadSink } from '../tftp/session/types.js';
import { SHARED_FAILED, SHARED_FILLED } from '../storage/block-cache.js';
import type { MetadataAnswer } from '../storage/metadata-cache.js';
import type { RangeCache, RangeView, UploadStore } from '../storage/range-cache.js';
import type { ObjectInfo } from '../storage/s3-store.js';
import type { MainToWorker, WireFailure, WorkerToMain } from './worker-protocol.js';

/**
 * The worker thread's side of the shared storage: the block cache and S3 live in the main thread
 * (one cache for the process: a boot storm reads each range from S3 once whatever the worker count,
 * and fetches are single-flight across workers), reached over the worker's MessagePort. Ranges are
 * views of the main thread's SharedArrayBuffers: no bytes are copied to send them.
 */

type WaitAsync = (typed: Int32Array, index: number, value: number, timeout?: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

const EMPTY = Buffer.alloc(0);

function toTransferError(e: WireFailure | undefined): TransferError {
  return new TransferError(e?.code ?? 'STORAGE_ERROR', e?.message ?? 'storage request failed');
}

/** Requests to the main thread with ids, answers matched by id; all pending ones fail on close. */
export class MainLink {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: TransferError) => void }>();
  closed = false;

  constructor(private readonly port: MessagePort) {}

  post(message: WorkerToMain, transfer?: ArrayBuffer[]): void {
    if (this.closed) return;
    if (transfer) this.port.postMessage(message, transfer);
    else this.port.postMessage(message);
  }

  id(): number {
    return this.nextId++;
  }

  request<T>(build: (rid: number) => WorkerToMain): Promise<T> {
    if (this.closed) return Promise.reject(new TransferError('ABORTED', 'worker closing'));
    const rid = this.id();
    return new Promise<T>((resolve, reject) => {
      this.pending.set(rid, { resolve: resolve as (v: unknown) => void, reject });
      this.port.postMessage(build(rid));
    });
  }

  /** An answer from the main thread; false if `message` is not one. */
  answer(message: MainToWorker): boolean {
    if (message.t !== 'reply') return false;
    const waiter = this.pending.get(message.rid);
    if (!waiter) return true;
    this.pending.delete(message.rid);
    if (message.ok) waiter.resolve(message.value);
    else waiter.reject(toTransferError(message.error));
    return true;
  }

  close(): void {
    this.closed = true;
    const err = new TransferError('ABORTED', 'worker closing');
    for (const w of this.pending.values()) w.reject(err);
    this.pending.clear();
  }
}

/** A worker's view of one cached range: the main thread's bytes and progress, in shared memory. */
export class RemoteRange implements RangeView {
  buffer: Buffer = EMPTY;
  error: TransferError | undefined;
  /** Sessions of this worker holding the range. */
  holders = 0;
  private state: Int32Array | undefined;
  private waiters: { until: number; resolve: () => void; reject: (err: TransferError) => void }[] = [];
  private waiting = false;

  constructor(
    readonly id: number,
    readonly cacheKey: string,
  ) {}

  /** Hot path (once per block): one atomic load. */
  get filled(): number {
    const s = this.state;
    return s ? Atomics.load(s, SHARED_FILLED) : 0;
  }

  attach(buffer: Buffer, state: Int32Array): void {
    this.buffer = buffer;
    this.state = state;
    this.pump();
  }

  fail(err: TransferError): void {
    if (this.error) return;
    this.error = err;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }

  waitFor(bytes: number): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (this.filled >= bytes) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ until: bytes, resolve, reject });
      this.pump();
    });
  }

  /** Wakes the waiters that are satisfied and waits (asynchronously) on the shared counter for the rest. */
  private pump(): void {
    const state = this.state;
    if (!state || this.waiting || this.error) return;
    const seen = Atomics.load(state, SHARED_FILLED);
    let kept = 0;
    for (const w of this.waiters) {
      if (seen >= w.until) w.resolve();
      else this.waiters[kept++] = w;
    }
    this.waiters.length = kept;
    // A failure arrives as a message (with its error); nothing to wait for here meanwhile.
    if (kept === 0 || Atomics.load(state, SHARED_FAILED) !== 0) return;
    const r = waitAsync(state, SHARED_FILLED, seen, 1000);
    if (!r.async) {
      queueMicrotask(() => this.pump());
      return;
    }
    this.waiting = true;
    void r.value.then(() => {
      this.waiting = false;
      this.pump();
    });
  }
}

/** The main thread's block cache, seen from a worker (implements what sessions and the opener use). */
export class RemoteCache implements RangeCache<RemoteRange> {
  /** Ranges this worker knows (held by its sessions, or asked for and not let go yet). */
  private readonly ranges = new Map<string, RemoteRange>();
  /** Ranges being prefetched (by this worker's request), so read-ahead asks once. */
  private readonly prefetched = new Set<string>();
  private readonly byId = new Map<number, RemoteRange>();

  constructor(
    private readonly link: MainLink,
    readonly rangeSize: number,
    private readonly onHit: () => void = () => undefined,
    /** The main thread's read-ahead advice (ranges; 0: none). */
    private readonly readAhead: () => number = () => 0,
  ) {}

  readAheadRanges(): number {
    return this.readAhead();
  }

  lookup(key: string): Promise<MetadataAnswer> {
    return this.link.request<MetadataAnswer>((id) => ({ t: 'lookup', id, key }));
  }

  invalidate(key: string): void {
    this.link.post({ t: 'invalidate', key });
  }

  peek(key: string, info: ObjectInfo, index: number): RemoteRange | undefined {
    const r = this.ranges.get(rangeKey(key, info, index));
    if (!r || r.error) return undefined;
    this.onHit();
    return r;
  }

  has(key: string, info: ObjectInfo, index: number): boolean {
    const k = rangeKey(key, info, index);
    const r = this.ranges.get(k);
    return (r !== undefined && !r.error) || this.prefetched.has(k);
  }

  range(key: string, info: ObjectInfo, index: number): RemoteRange {
    const k = rangeKey(key, info, index);
    const existing = this.ranges.get(k);
    if (existing && !existing.error) {
      this.onHit();
      return existing;
    }
    // The main thread counts the hit or miss of this request.
    const r = new RemoteRange(this.link.id(), k);
    this.ranges.set(k, r);
    this.byId.set(r.id, r);
    this.prefetched.delete(k);
    if (this.link.closed) r.fail(new TransferError('ABORTED', 'worker closing'));
    else this.link.post({ t: 'range', id: r.id, key, info, index });
    return r;
  }

  prefetch(key: string, info: ObjectInfo, index: number): void {
    const k = rangeKey(key, info, index);
    if (this.ranges.has(k) || this.prefetched.has(k)) return;
    // Bounded: forgotten once taken up by range(), or when the set grows past a few thousand.
    if (this.prefetched.size > 4096) this.prefetched.clear();
    this.prefetched.add(k);
    this.link.post({ t: 'prefetch', key, info, index });
  }

  hold(entry: RemoteRange): void {
    entry.holders++;
  }

  release(entry: RemoteRange): void {
    if (entry.holders > 0) entry.holders--;
    if (entry.holders > 0) return;
    if (this.ranges.get(entry.cacheKey) === entry) this.ranges.delete(entry.cacheKey);
    if (this.byId.delete(entry.id)) this.link.post({ t: 'release', id: entry.id });
  }

  /** A range message from the main thread; false if `message` is not one. */
  onMessage(message: MainToWorker): boolean {
    if (message.t === 'rangeReady') {
      const r = this.byId.get(message.id);
      // Let go of meanwhile: the release is already on its way.
      if (r) r.attach(Buffer.from(message.buffer, message.offset, message.length), new Int32Array(message.state));
      return true;
    }
    if (message.t === 'rangeFailed') {
      const r = this.byId.get(message.id);
      if (r) {
        r.fail(toTransferError(message.error));
        if (this.ranges.get(r.cacheKey) === r && r.holders === 0) this.ranges.delete(r.cacheKey);
      }
      return true;
    }
    return false;
  }

  /** Every range fails (the worker is closing). */
  close(): void {
    const err = new TransferError('ABORTED', 'worker closing');
    for (const r of this.byId.values()) r.fail(err);
  }
}

function rangeKey(key: string, info: ObjectInfo, index: number): string {
  return `${key}\u0000${info.etag}\u0000${index}`;
}

/** Bytes gathered before they go to the main thread's upload (one message per batch). */
const UPLOAD_BATCH = 1024 * 1024;
/**
 * Batches the main thread has not yet taken: at this many a write holds the ACK (backpressure). One:
 * the ACK of the block that completes a batch waits until the main thread's upload took it, so an
 * acknowledged byte is in the upload as in the single-threaded mode (to within one batch).
 */
const UPLOAD_WINDOW = 1;

/**
 * Uploads run in the main thread (one S3 client and pool for the process, and an upload whose
 * worker dies is still aborted there); this sink gathers blocks into 1 MiB batches and transfers
 * them (no copy) to the main thread's multipart upload, with its backpressure.
 */
export class RemoteStore implements UploadStore {
  private readonly uploads = new Map<number, RemoteUploadSink>();

  constructor(private readonly link: MainLink) {}

  head(key: string): Promise<ObjectInfo> {
    return this.link.request<ObjectInfo>((id) => ({ t: 'head', id, key }));
  }

  createUpload(key: string, options: { ifNoneMatch: boolean }): UploadSink {
    const id = this.link.id();
    const sink = new RemoteUploadSink(this.link, id, () => this.uploads.delete(id));
    this.uploads.set(id, sink);
    this.link.post({ t: 'upload', id, key, ifNoneMatch: options.ifNoneMatch });
    return sink;
  }

  onMessage(message: MainToWorker): boolean {
    if (message.t === 'uploadAck') {
      this.uploads.get(message.id)?.acked();
      return true;
    }
    if (message.t === 'uploadFailed') {
      this.uploads.get(message.id)?.failed(toTransferError(message.error));
      return true;
    }
    return false;
  }
}

class RemoteUploadSink implements UploadSink {
  private batch: Buffer | undefined;
  private fill = 0;
  private unacked = 0;
  private failure: TransferError | undefined;
  private waiter: { resolve: () => void; reject: (e: TransferError) => void } | undefined;
  private state: 'open' | 'finishing' | 'done' = 'open';

  constructor(
    private readonly link: MainLink,
    private readonly id: number,
    private readonly forget: () => void,
  ) {}

  write(chunk: Buffer): Promise<void> | undefined {
    if (this.state !== 'open') return Promise.reject(new TransferError('ABORTED', 'upload is closed'));
    if (this.failure) return Promise.reject(this.failure);
    let offset = 0;
    while (offset < chunk.length) {
      this.batch ??= Buffer.allocUnsafeSlow(UPLOAD_BATCH);
      const n = chunk.copy(this.batch, this.fill, offset);
      this.fill += n;
      offset += n;
      if (this.fill === this.batch.length) this.flush();
    }
    if (this.unacked < UPLOAD_WINDOW) return undefined;
    return new Promise<void>((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  async finish(): Promise<void> {
    if (this.state !== 'open') throw new TransferError('ABORTED', 'upload is closed');
    if (this.failure) throw this.failure;
    this.state = 'finishing';
    this.flush();
    try {
      await this.link.request<void>((rid) => ({ t: 'uploadFinish', id: this.id, rid }));
    } finally {
      this.state = 'done';
      this.forget();
    }
  }

  async abort(reason: string): Promise<void> {
    if (this.state === 'done') return;
    this.state = 'done';
    this.batch = undefined;
    this.waiter?.reject(new TransferError('ABORTED', `upload aborted: ${reason}`));
    this.waiter = undefined;
    try {
      await this.link.request<void>((rid) => ({ t: 'uploadAbort', id: this.id, rid, reason }));
    } catch {
      // The main thread aborts the uploads of a closing worker itself.
    } finally {
      this.forget();
    }
  }

  acked(): void {
    this.unacked--;
    if (this.unacked < UPLOAD_WINDOW && this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve();
    }
  }

  failed(err: TransferError): void {
    this.failure ??= err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }

  /** Sends the batch gathered so far (its memory moves to the main thread). */
  private flush(): void {
    const batch = this.batch;
    if (!batch || this.fill === 0) return;
    const length = this.fill;
    this.batch = undefined;
    this.fill = 0;
    this.unacked++;
    const data = batch.buffer as ArrayBuffer;
    this.link.post({ t: 'uploadWrite', id: this.id, data, length }, [data]);
  }
}
