import type { RetransmitPolicy } from './types.js';

/**
 * Retransmission timer in the style of RFC 6298: smoothed RTT and variance from samples
 * (Karn's rule: the caller only samples packets that were not retransmitted), exponential
 * backoff on each timeout, bounded by the policy. A client-pinned timeout makes it fixed.
 */
export class RetransmitTimer {
  private srtt: number | undefined;
  private rttvar = 0;
  private backoff = 1;

  constructor(
    private readonly policy: RetransmitPolicy,
    private readonly fixedMs: number | undefined,
  ) {}

  /** Current timeout in ms. */
  get timeoutMs(): number {
    if (this.fixedMs !== undefined) return this.fixedMs;
    return Math.min(this.policy.maxMs, this.currentMs());
  }

  sample(rttMs: number): void {
    if (this.srtt === undefined) {
      this.srtt = rttMs;
      this.rttvar = rttMs / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - rttMs);
      this.srtt = 0.875 * this.srtt + 0.125 * rttMs;
    }
    this.backoff = 1;
  }

  /** Called on each timeout: multiplies the next wait by the backoff factor (bounded by maxMs). */
  onTimeout(): void {
    // Bounded by maxMs alone (a fixed multiplier cap would keep the gap under a client's own timer
    // on a fast LAN, see README "patience").
    if (this.currentMs() < this.policy.maxMs) this.backoff *= this.policy.backoff ?? 2;
  }

  /** The timeout before any backoff: what a repeated request is measured against. */
  get baseMs(): number {
    if (this.fixedMs !== undefined) return this.fixedMs;
    const base = this.srtt === undefined ? this.policy.initialMs : this.srtt + Math.max(4 * this.rttvar, 10);
    return Math.min(this.policy.maxMs, Math.max(this.policy.minMs, base));
  }

  private currentMs(): number {
    return this.baseMs * this.backoff;
  }

  /** Called when the peer makes progress without a fresh sample (e.g. after a retransmission). */
  onProgress(): void {
    this.backoff = 1;
  }
}
