import type { Clock, TimerHandle } from '../../../src/tftp/session/types.js';

interface VirtualTimer {
  readonly due: number;
  readonly seq: number;
  readonly fn: () => void;
  readonly tag: string;
  live: boolean;
}

interface VirtualHandle extends TimerHandle {
  readonly timer: VirtualTimer;
}

/**
 * A virtual clock. Timers fire in (due time, creation order); between two timers the microtask and
 * immediate queues are drained, so promise chains settle "instantly" in virtual time, as they would
 * between two real timer callbacks. Every timer carries a tag ('session', 'client', 'net',
 * 'storage', ...) so a test can ask whether a given party left timers behind.
 */
export class VirtualClock implements Clock {
  private time = 0;
  private seq = 0;
  /** Pending timers sorted by (due, seq). */
  private queue: VirtualTimer[] = [];
  private readonly counts = new Map<string, number>();
  /** Timers fired so far (all tags). */
  fired = 0;

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.schedule(fn, ms, 'default');
  }

  clearTimeout(handle: TimerHandle): void {
    const timer = (handle as VirtualHandle | undefined)?.timer;
    if (!timer || !timer.live) return;
    timer.live = false;
    const i = this.queue.indexOf(timer);
    if (i !== -1) this.queue.splice(i, 1);
    this.counts.set(timer.tag, (this.counts.get(timer.tag) ?? 1) - 1);
  }

  schedule(fn: () => void, ms: number, tag: string): TimerHandle {
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const timer: VirtualTimer = { due: this.time + delay, seq: this.seq++, fn, tag, live: true };
    // Binary search for the insertion point (after every timer with due <= this one).
    let lo = 0;
    let hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.queue[mid]!.due <= timer.due) lo = mid + 1;
      else hi = mid;
    }
    this.queue.splice(lo, 0, timer);
    this.counts.set(tag, (this.counts.get(tag) ?? 0) + 1);
    const handle: VirtualHandle = { timer };
    return handle;
  }

  /** A `Clock` whose timers carry `tag` (for example the session under test's own view). */
  tagged(tag: string): Clock {
    return {
      now: () => this.now(),
      setTimeout: (fn, ms) => this.schedule(fn, ms, tag),
      clearTimeout: (h) => this.clearTimeout(h),
    };
  }

  /** Pending timers, all of them or those with `tag`. */
  pending(tag?: string): number {
    if (tag === undefined) return this.queue.length;
    return this.counts.get(tag) ?? 0;
  }

  /** Due time of the next pending timer. */
  nextDue(): number | undefined {
    return this.queue[0]?.due;
  }

  /** Lets promise callbacks (and anything queued with setImmediate) run. */
  async settle(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /** Fires, in order, every timer due at or before `untilMs`, then sets the time to `untilMs`. */
  async run(untilMs: number, stopWhen?: () => boolean): Promise<void> {
    await this.settle();
    for (;;) {
      if (stopWhen?.()) return;
      const timer = this.queue[0];
      if (timer === undefined || timer.due > untilMs) break;
      await this.fireFirst(timer);
    }
    if (untilMs > this.time && Number.isFinite(untilMs)) this.time = untilMs;
  }

  /** Moves time forward by `ms`, firing timers on the way. */
  async advance(ms: number): Promise<void> {
    await this.run(this.time + ms);
  }

  /**
   * Runs until no timer is pending (the whole system is quiet), or `stopWhen` holds. Throws if that
   * takes longer than `limitMs` of virtual time (a livelock) or `maxEvents` timers.
   */
  async runUntilIdle(limitMs = 3_600_000, stopWhen?: () => boolean, maxEvents = 5_000_000): Promise<void> {
    const deadline = this.time + limitMs;
    const startFired = this.fired;
    await this.settle();
    for (;;) {
      if (stopWhen?.()) return;
      const timer = this.queue[0];
      if (timer === undefined) return;
      if (timer.due > deadline) throw new Error(`still busy after ${limitMs} ms of virtual time (${this.queue.length} timers pending: ${this.describePending()})`);
      if (this.fired - startFired > maxEvents) throw new Error(`more than ${maxEvents} timers fired`);
      await this.fireFirst(timer);
    }
  }

  /** Fires `timer`, the first in the queue: time moves to its due time; then promise callbacks run. */
  private async fireFirst(timer: VirtualTimer): Promise<void> {
    this.queue.shift();
    timer.live = false;
    this.counts.set(timer.tag, (this.counts.get(timer.tag) ?? 1) - 1);
    this.time = timer.due;
    this.fired++;
    timer.fn();
    await this.settle();
  }

  private describePending(): string {
    return [...this.counts].filter(([, n]) => n > 0).map(([t, n]) => `${t}=${n}`).join(' ');
  }
}
