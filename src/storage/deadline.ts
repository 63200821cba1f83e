import { S3DeadlineExceeded } from './s3-errors.js';

/**
 * The time budget of one S3 operation: an AbortController that aborts when the caller's signal
 * does, or when `budgetMs` pass without progress (`touch()` reports progress and restarts the
 * budget). Owns one timer and one listener on the parent; `close()` releases both and is idempotent.
 *
 * The SDK observes an abort only inside an HTTP attempt (not during its retry back-off), so
 * `race()` also settles the caller's promise at the deadline itself.
 */
export class CallDeadline {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private lastProgress: number;
  private closed = false;
  private readonly onParentAbort = (): void => this.controller.abort(this.parent?.reason);

  constructor(
    private readonly budgetMs: number,
    private readonly what: string,
    private readonly parent?: AbortSignal,
  ) {
    this.lastProgress = Date.now();
    if (parent?.aborted) {
      this.controller.abort(parent.reason);
      return;
    }
    parent?.addEventListener('abort', this.onParentAbort, { once: true });
    this.arm(budgetMs);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** True once the budget ran out (as opposed to the caller aborting). */
  get expired(): boolean {
    return this.controller.signal.reason instanceof S3DeadlineExceeded;
  }

  /** Progress was made: the budget starts again from now. */
  touch(): void {
    this.lastProgress = Date.now();
  }

  /** Settles with `work`, or rejects with the abort reason as soon as the signal aborts. */
  race<T>(work: Promise<T>, onLateResult?: (value: T) => void): Promise<T> {
    const signal = this.controller.signal;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        reject(signal.reason as unknown);
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      work.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          if (settled) onLateResult?.(value);
          else {
            settled = true;
            resolve(value);
          }
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          if (settled) return;
          settled = true;
          reject(err);
        },
      );
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.parent?.removeEventListener('abort', this.onParentAbort);
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.closed) return;
      const idle = Date.now() - this.lastProgress;
      // Re-armed rather than reset on every chunk: no timer churn on the data path.
      if (idle < this.budgetMs) return this.arm(this.budgetMs - idle);
      this.close();
      this.controller.abort(new S3DeadlineExceeded(`${this.what}: no answer from S3 within ${this.budgetMs} ms`));
    }, Math.max(1, ms));
  }
}
