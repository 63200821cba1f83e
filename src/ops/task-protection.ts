import type { Logger } from 'pino';

/**
 * ECS task scale-in protection driven by the session count: while transfers run, the task asks the
 * ECS agent (`PUT $ECS_AGENT_URI/task-protection/v1/state`) not to be picked for scale-in, renewing
 * before the protection expires; once idle for `idleDelayMs` (debounced, so a boot storm's short
 * gaps do not flap it) it drops the protection. Failures are logged and retried later, never fatal:
 * an unprotected task only risks what it would risk without this feature.
 */
export interface TaskProtectionOptions {
  /** The agent's endpoint, `$ECS_AGENT_URI`. */
  readonly agentUri: string;
  readonly logger: Logger;
  /** ExpiresInMinutes sent with each enable (1..2880). Default 60. */
  readonly expiresInMinutes?: number;
  /** When an enabled protection is renewed. Default: half of the expiry. */
  readonly renewAfterMs?: number;
  /** How long the task must stay idle before the protection is dropped. Default 60 s. */
  readonly idleDelayMs?: number;
  /** Delay before trying again after a failed call. Default 15 s. */
  readonly retryDelayMs?: number;
  /** Bound on one call to the agent. Default 5 s. */
  readonly requestTimeoutMs?: number;
}

export class TaskProtection {
  private readonly url: string;
  private readonly expiresInMinutes: number;
  private readonly renewAfterMs: number;
  private readonly idleDelayMs: number;
  private readonly retryDelayMs: number;
  private readonly requestTimeoutMs: number;
  private readonly logger: Logger;
  private active = 0;
  /** What the agent last confirmed. A new task starts unprotected. */
  private confirmed = false;
  private renewDue = false;
  private inFlight: Promise<void> | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: TaskProtectionOptions) {
    this.url = `${options.agentUri.replace(/\/+$/, '')}/task-protection/v1/state`;
    this.logger = options.logger;
    this.expiresInMinutes = Math.min(2880, Math.max(1, Math.round(options.expiresInMinutes ?? 60)));
    this.renewAfterMs = options.renewAfterMs ?? (this.expiresInMinutes * 60_000) / 2;
    this.idleDelayMs = options.idleDelayMs ?? 60_000;
    this.retryDelayMs = options.retryDelayMs ?? 15_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5000;
  }

  /** True while the agent has confirmed protection. */
  get isProtected(): boolean {
    return this.confirmed;
  }

  /** Tells the manager the current number of sessions (cheap: call on every change). */
  update(active: number): void {
    if (this.closed) return;
    this.active = active;
    if (active > 0) {
      this.clearTimer('idleTimer');
      if (!this.confirmed) this.reconcile();
    } else if ((this.confirmed || this.inFlight) && !this.idleTimer) {
      this.idleTimer = setTimeout(() => {
        this.idleTimer = undefined;
        this.reconcile();
      }, this.idleDelayMs);
      this.idleTimer.unref();
    }
  }

  /** Stops timers and waits for a call in flight (bounded by the request timeout). */
  async close(): Promise<void> {
    this.closed = true;
    this.clearTimer('idleTimer');
    this.clearTimer('renewTimer');
    this.clearTimer('retryTimer');
    await this.inFlight;
  }

  /** Protection is wanted while sessions run and during the idle debounce. */
  private get wanted(): boolean {
    return this.active > 0 || this.idleTimer !== undefined;
  }

  private reconcile(): void {
    if (this.closed || this.inFlight) return;
    const want = this.wanted;
    if (want && (!this.confirmed || this.renewDue)) this.send(true);
    else if (!want && this.confirmed) this.send(false);
  }

  private send(enable: boolean): void {
    this.renewDue = false;
    this.clearTimer('retryTimer');
    this.inFlight = this.put(enable).then((ok) => {
      this.inFlight = undefined;
      if (this.closed) return;
      if (!ok) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.renewDue = this.confirmed;
          this.reconcile();
        }, this.retryDelayMs);
        this.retryTimer.unref();
        return;
      }
      this.confirmed = enable;
      this.clearTimer('renewTimer');
      if (enable) {
        this.renewTimer = setTimeout(() => {
          this.renewTimer = undefined;
          this.renewDue = true;
          this.reconcile();
        }, this.renewAfterMs);
        this.renewTimer.unref();
      }
      // The session count may have moved while the call was in flight.
      this.reconcile();
    });
  }

  /** One call to the agent; resolves true when it confirmed the new state. Never rejects. */
  private async put(enable: boolean): Promise<boolean> {
    const body = enable ? { ProtectionEnabled: true, ExpiresInMinutes: this.expiresInMinutes } : { ProtectionEnabled: false };
    try {
      const res = await fetch(this.url, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.requestTimeoutMs),
      });
      const text = await res.text();
      let parsed: { failure?: unknown; error?: unknown } | undefined;
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        parsed = undefined;
      }
      if (!res.ok || parsed?.failure !== undefined || parsed?.error !== undefined) {
        this.logger.warn(
          { enable, status: res.status, answer: text.slice(0, 512) },
          'scale-in protection: the ECS agent refused the update',
        );
        return false;
      }
      this.logger.info(
        enable ? { enable, expiresInMinutes: this.expiresInMinutes, active: this.active } : { enable, active: this.active },
        enable ? 'scale-in protection enabled' : 'scale-in protection disabled',
      );
      return true;
    } catch (err) {
      this.logger.warn({ enable, err: err instanceof Error ? `${err.name}: ${err.message}` : String(err) }, 'scale-in protection: could not reach the ECS agent');
      return false;
    }
  }

  private clearTimer(which: 'idleTimer' | 'renewTimer' | 'retryTimer'): void {
    const t = this[which];
    if (t) clearTimeout(t);
    this[which] = undefined;
  }
}
