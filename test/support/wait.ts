/** Waiting in tests: always for a condition, always to a deadline (never a blind sleep before an assertion). */

/** Resolves after `ms` of real time (for pacing a client, not for waiting on the system under test). */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` (every `intervalMs`, default 10) until it returns true; throws naming `what` if it
 * has not within `timeoutMs`. `check` may be async and may throw to end the wait early.
 */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, intervalMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
