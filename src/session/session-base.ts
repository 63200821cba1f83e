import { encodeError, type Packet } from '../protocol/packet.js';
import type { NegotiatedOptions } from '../protocol/options.js';
import { RetransmitTimer } from './rto.js';
import type { Clock, PeerChannel, RetransmitPolicy, TimerHandle, TransferResult, TransferStats } from './types.js';

export interface SessionDeps {
  readonly peer: PeerChannel;
  readonly clock: Clock;
  readonly policy: RetransmitPolicy;
  readonly options: NegotiatedOptions;
  /** OACK contents; empty map: no OACK (plain RFC 1350 start). */
  readonly oack: ReadonlyMap<string, string>;
  /** Called exactly once when the session ends, whatever the reason. */
  readonly onEnd: (stats: TransferStats) => void;
}

/**
 * What both directions share: one timer, retry accounting, the end-of-session bookkeeping.
 * `end` is idempotent, and after it nothing is sent and no timer runs.
 */
export abstract class SessionBase {
  protected readonly peer: PeerChannel;
  protected readonly clock: Clock;
  protected readonly policy: RetransmitPolicy;
  protected readonly rto: RetransmitTimer;
  protected readonly startedAt: number;
  private timer: TimerHandle | undefined;
  /** When the session's timeout is due, and when the underlying timer is set to fire. */
  private deadline = 0;
  private timerFiresAt = 0;
  private ended = false;
  protected bytes = 0;
  protected blocks = 0;
  protected retransmits = 0;
  protected timeouts = 0;
  /** Consecutive timeouts without progress. */
  protected retries = 0;
  /** Clock time of the last progress (or of the start): the dispatcher reaps sessions stalled too long. */
  private progressAt: number;

  constructor(protected readonly deps: SessionDeps) {
    this.peer = deps.peer;
    this.clock = deps.clock;
    this.policy = deps.policy;
    this.rto = new RetransmitTimer(deps.policy, deps.options.timeoutMs);
    this.startedAt = deps.clock.now();
    this.progressAt = this.startedAt;
  }

  /** When the transfer last moved forward (a new ACK or DATA block), or started. */
  get lastProgressAt(): number {
    return this.progressAt;
  }

  /** Records that the transfer moved forward. */
  protected noteProgress(): void {
    this.progressAt = this.clock.now();
  }

  /** Ends a stalled session from outside: ERROR 0 to the client, resources released (uploads aborted). */
  reap(detail: string): void {
    this.fail('timeout', 0, 'Transfer timed out', detail);
  }

  /** Payload bytes carried so far. */
  get bytesSoFar(): number {
    return this.bytes;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** True once the client has acknowledged or sent data: a repeated request then means a restart. */
  abstract get hasProgressed(): boolean;
  abstract start(): void;
  abstract handle(packet: Packet): void;
  protected abstract onTimeout(): void;
  /** Releases direction-specific resources; called once from `end`. */
  protected abstract releaseResources(result: TransferResult): void;

  /** Ends the session from outside (replaced by a new request, server stopping). */
  abort(result: 'replaced' | 'shutdown', notifyClient: boolean): void {
    if (this.ended) return;
    let errorSent: number | undefined;
    if (notifyClient) {
      errorSent = 0;
      this.peer.send([encodeError(0, result === 'shutdown' ? 'Server shutting down' : 'Transfer aborted')]);
    }
    this.end(result, result, errorSent);
  }

  /**
   * (Re)starts the session's one timer. Re-arming happens on nearly every packet, so it only moves
   * a deadline: the underlying timer is replaced only when the new deadline is earlier than the
   * one it is set for; when it fires early it sleeps again for the rest.
   */
  protected armTimer(ms = this.rto.timeoutMs): void {
    if (this.ended) return;
    const deadline = this.clock.now() + ms;
    this.deadline = deadline;
    if (this.timer !== undefined && this.timerFiresAt <= deadline) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.startTimer(ms);
  }

  private startTimer(ms: number): void {
    this.timerFiresAt = this.clock.now() + ms;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      if (this.ended) return;
      const left = this.deadline - this.clock.now();
      if (left > 0.5) this.startTimer(left);
      else this.onTimeout();
    }, ms);
  }

  protected disarmTimer(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Counts a timeout; returns false (after sending ERROR and ending) when retries are used up. */
  protected countTimeout(): boolean {
    this.timeouts++;
    this.retries++;
    if (this.retries > this.policy.maxRetries) {
      this.fail('timeout', 0, 'Transfer timed out', `no answer after ${this.policy.maxRetries} retries`);
      return false;
    }
    this.rto.onTimeout();
    return true;
  }

  /** Sends an ERROR to the client and ends the session. */
  protected fail(result: TransferResult, code: number, message: string, detail?: string): void {
    if (this.ended) return;
    this.peer.send([encodeError(code, message)]);
    this.end(result, detail ?? message, code);
  }

  protected end(result: TransferResult, detail?: string, errorSent?: number): void {
    if (this.ended) return;
    this.ended = true;
    this.disarmTimer();
    try {
      this.releaseResources(result);
    } finally {
      this.deps.onEnd({
        result,
        bytes: this.bytes,
        blocks: this.blocks,
        retransmits: this.retransmits,
        timeouts: this.timeouts,
        durationMs: this.clock.now() - this.startedAt,
        ...(detail !== undefined ? { detail } : {}),
        ...(errorSent !== undefined ? { errorSent } : {}),
      });
    }
  }
}
