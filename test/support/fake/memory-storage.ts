/** In-memory storage fakes (a ReadSource and an UploadSink) whose delays run on the virtual clock. */
import { TransferError } from '../../../src/errors.js';
import type { ReadSource, UploadSink } from '../../../src/tftp/session/types.js';
import type { VirtualClock } from './clock.js';

export interface MemorySourceOptions {
  /** Virtual delay of each `load`; 0/undefined: everything is in memory from the start. */
  readonly loadDelayMs?: number;
  /** Granularity of loading, bytes (default 4096). */
  readonly rangeSize?: number;
  /** Report the size as unknown (as a netascii source does). */
  readonly unknownSize?: boolean;
  /** A load touching bytes at or beyond this offset rejects with `error`. */
  readonly failAt?: { readonly offset: number; readonly error: unknown };
  /** Return each slice as two segments when possible (exercises multi-segment sends). */
  readonly splitSegments?: boolean;
}

/** An in-memory ReadSource. With a load delay, ranges become available only after `load` resolves. */
export class MemorySource implements ReadSource {
  readonly size: number | undefined;
  private readonly loaded = new Set<number>();
  loads = 0;
  closeCalls = 0;
  releasedTo = 0;
  /** slice() calls after close(): a session must not read a closed source. */
  slicesAfterClose = 0;

  constructor(
    readonly data: Buffer,
    private readonly clock: VirtualClock | undefined = undefined,
    private readonly options: MemorySourceOptions = {},
  ) {
    this.size = options.unknownSize ? undefined : data.length;
  }

  private get rangeSize(): number {
    return this.options.rangeSize ?? 4096;
  }

  private ready(offset: number, length: number): boolean {
    if (!this.options.loadDelayMs) return true;
    const end = Math.min(offset + length, this.data.length);
    if (offset >= end) return true; // past the end: the answer (nothing) needs no load
    for (let r = Math.floor(offset / this.rangeSize); r * this.rangeSize < end; r++) if (!this.loaded.has(r)) return false;
    return true;
  }

  slice(offset: number, length: number): readonly Buffer[] | undefined {
    if (this.closeCalls > 0) this.slicesAfterClose++;
    if (this.options.failAt && offset + length > this.options.failAt.offset && offset < this.data.length) return undefined;
    if (!this.ready(offset, length)) return undefined;
    const end = Math.min(offset + length, this.data.length);
    if (offset >= end) return [];
    const view = this.data.subarray(offset, end);
    if (this.options.splitSegments && view.length >= 2) {
      const mid = view.length >> 1;
      return [view.subarray(0, mid), view.subarray(mid)];
    }
    return [view];
  }

  load(offset: number, length: number): Promise<void> {
    this.loads++;
    const fail = this.options.failAt;
    const delay = this.options.loadDelayMs ?? 0;
    return new Promise<void>((resolve, reject) => {
      const finish = (): void => {
        if (fail && offset + length > fail.offset) {
          reject(fail.error);
          return;
        }
        const end = Math.min(offset + length, this.data.length);
        for (let r = Math.floor(offset / this.rangeSize); r * this.rangeSize < end; r++) this.loaded.add(r);
        resolve();
      };
      if (delay > 0 && this.clock) this.clock.schedule(finish, delay, 'storage');
      else finish();
    });
  }

  release(offset: number): void {
    this.releasedTo = Math.max(this.releasedTo, offset);
  }

  close(): void {
    this.closeCalls++;
  }
}

export interface MemorySinkOptions {
  /** Each write returns a promise settling after this virtual delay (backpressure). */
  readonly writeDelayMs?: number;
  /** finish() resolves after this virtual delay. */
  readonly finishDelayMs?: number;
  /** The nth write (1-based) rejects with `error`. */
  readonly failWrite?: { readonly nth: number; readonly error: unknown };
  /** finish() rejects with this. */
  readonly failFinish?: Error;
}

/** An in-memory UploadSink recording every call. */
export class MemorySink implements UploadSink {
  readonly chunks: Buffer[] = [];
  writes = 0;
  finishCalls = 0;
  /** Virtual time at which finish() resolved. */
  finishedAt: number | undefined;
  readonly aborts: string[] = [];
  /** Writes after finish/abort: a session must not do that. */
  lateWrites = 0;

  constructor(
    private readonly clock: VirtualClock | undefined = undefined,
    private readonly options: MemorySinkOptions = {},
  ) {}

  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }

  write(chunk: Buffer): Promise<void> | undefined {
    this.writes++;
    if (this.finishCalls > 0 || this.aborts.length > 0) this.lateWrites++;
    this.chunks.push(Buffer.from(chunk));
    const fail = this.options.failWrite;
    const delay = this.options.writeDelayMs ?? 0;
    if (fail && fail.nth === this.writes) {
      return this.later(delay, () => Promise.reject(fail.error));
    }
    if (delay > 0) return this.later(delay, () => Promise.resolve());
    return undefined;
  }

  finish(): Promise<void> {
    this.finishCalls++;
    return this.later(this.options.finishDelayMs ?? 0, () => {
      if (this.options.failFinish !== undefined) return Promise.reject(this.options.failFinish);
      this.finishedAt = this.clock?.now() ?? 0;
      return Promise.resolve();
    });
  }

  abort(reason: string): Promise<void> {
    this.aborts.push(reason);
    return Promise.resolve();
  }

  private later(delay: number, settle: () => Promise<void>): Promise<void> {
    if (delay <= 0 || !this.clock) return settle();
    const clock = this.clock;
    return new Promise<void>((resolve, reject) => {
      clock.schedule(() => void settle().then(resolve, reject), delay, 'storage');
    });
  }
}

export function storageError(code: ConstructorParameters<typeof TransferError>[0], message = 'storage says no'): TransferError {
  return new TransferError(code, message);
}
