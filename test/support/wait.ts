/** Waiting in tests: always for a condition, always to a deadline (never a blind sleep before an assertion). */

/** Resolves after `ms` of real time (for pacing a client, not for waiting on the system under test). */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` (every `intervalMs`, default 10) until it returns true or `timeoutMs` has passed;
 * resolves with whether it held (for a wait whose assertion follows, with its own message).
 * `check` may be async and may throw to end the wait early.
 */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
}

/** Like `eventually`, but throws naming `what` if `check` has not held within `timeoutMs`. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, intervalMs = 10): Promise<void> {
  if (!(await eventually(check, timeoutMs, intervalMs))) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
