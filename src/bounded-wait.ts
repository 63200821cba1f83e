import { setTimeout as sleep } from 'node:timers/promises';

/**
 * `work`'s result, or `fallback` once `ms` have passed without one; the timer is cleared either
 * way. With `ref: false` the wait alone does not keep the process alive.
 */
export async function within<T, F>(work: Promise<T>, ms: number, fallback: F, options: { ref?: boolean } = {}): Promise<T | F> {
  const timer = new AbortController();
  try {
    return await Promise.race([work, sleep(ms, fallback, { signal: timer.signal, ref: options.ref ?? true })]);
  } finally {
    timer.abort();
  }
}
