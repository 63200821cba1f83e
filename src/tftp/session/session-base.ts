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
  /** Told of an exception thrown inside this transfer's path (it ends the transfer, not the process). */
  readonly onFault?: (err: unknown) => void;
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
  /** The peer has answered at least once (see PeerChannel.confirmed). */
  private verified = false;
  /**
   * Since when the transfer has been waiting on the peer: the last progress, or the moment storage
   * let the session go on. Give-up time is the peer's patience budget: a wait on S3 is not the
   * client's silence (the stall reaper covers storage that hangs).
   */
  private patienceFrom: number;

  constructor(protected readonly deps: SessionDeps) {
    this.peer = deps.peer;
    this.clock = deps.clock;
    this.policy = deps.policy;
    this.rto = new RetransmitTimer(deps.policy, deps.options.timeoutMs);
    this.startedAt = deps.clock.now();
    this.progressAt = this.startedAt;
    this.patienceFrom = this.startedAt;
  }

  /** When the transfer last moved forward (a new ACK or DATA block), or started. */
  get lastProgressAt(): number {
    return this.progressAt;
  }

  /** Records that the transfer moved forward (the peer answered). */
  protected noteProgress(): void {
    this.progressAt = this.clock.now();
    this.patienceFrom = this.progressAt;
    if (!this.verified) {
      this.verified = true;
      this.peer.confirmed?.();
    }
  }

  /** Storage let the session go on after a wait: the peer's give-up time counts from now. */
  protected resumedAfterStorage(): void {
    this.patienceFrom = this.clock.now();
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

  /** Sends the first packet. */
  start(): void {
    this.contained(() => this.onStart());
  }

  /** A packet from the peer (routed here by the dispatcher). */
  handle(packet: Packet): void {
    if (this.ended) return;
    // The per-packet path: a plain try (no closure per packet) rather than contained().
    try {
      this.onPacket(packet);
    } catch (err) {
      this.crash(err);
    }
  }

  /**
   * The peer repeated its request before answering anything (our first packet may have been lost):
   * send the first packet again. The dispatcher credits the unverified-peer budget for it.
   */
  repeatFirst(): void {
    if (this.ended || this.hasProgressed) return;
    this.contained(() => this.onRepeatedRequest());
  }

  protected abstract onStart(): void;
  protected abstract onPacket(packet: Packet): void;
  protected abstract onRepeatedRequest(): void;
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
    const now = this.clock.now();
    // Never sleep far past the give-up time: the timeout that finds it reached ends the transfer.
    // A retransmission just made still gets a short while (--rto-min-ms) to be answered.
    const giveUpAt = this.patienceFrom + (this.policy.giveUpMs ?? Infinity);
    ms = Math.min(ms, Math.max(giveUpAt - now, this.policy.minMs));
    const deadline = now + ms;
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
      else this.contained(() => this.onTimeout());
    }, ms);
  }

  protected disarmTimer(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Counts a timeout; returns false (after sending ERROR and ending) when patience has run out: the
   * give-up time without progress has passed, or the retransmission count limit (if any) is used
   * up, or, for a peer that never answered, the (small) unverified retransmission budget.
   */
  protected countTimeout(): boolean {
    this.timeouts++;
    this.retries++;
    const policy = this.policy;
    const silentMs = this.clock.now() - this.patienceFrom;
    let reason: string | undefined;
    // By time only once something was sent again: the peer always gets one retransmission.
    if (policy.giveUpMs !== undefined && this.retries > 1 && silentMs >= policy.giveUpMs - 0.5) reason = `no progress for ${Math.round(silentMs)} ms`;
    else if (policy.maxRetries > 0 && this.retries > policy.maxRetries) reason = `no answer after ${policy.maxRetries} retries`;
    else if (!this.verified && this.retries > (policy.unverifiedRetries ?? Infinity)) reason = `no answer from the peer after ${policy.unverifiedRetries} retries`;
    if (reason !== undefined) {
      this.giveUp(reason);
      return false;
    }
    this.rto.onTimeout();
    return true;
  }

  /** Patience ran out: ERROR 0 and the transfer ends as a timeout (a read overrides the case where all was sent). */
  protected giveUp(reason: string): void {
    this.fail('timeout', 0, 'Transfer timed out', reason);
  }

  /**
   * A repeated request is worth answering with our first packet again only when that packet has
   * had a round trip to arrive: a client with a timer shorter than the path's round trip (busybox
   * starts at 50 ms) repeats its request while our answer is on the way, and some clients (atftp)
   * abort on a repeated OACK.
   */
  protected firstPacketOverdue(sentAt: number): boolean {
    return this.clock.now() - sentAt >= this.rto.baseMs;
  }

  /** Runs `fn`; an exception ends this transfer (ERROR 0, upload aborted) instead of the process. */
  protected contained(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.crash(err);
    }
  }

  /** An exception escaped this transfer's code: report it, end the transfer with ERROR 0. */
  crash(err: unknown): void {
    try {
      this.deps.onFault?.(err);
    } catch {
      // reporting must not stop the transfer from ending
    }
    if (this.ended) return;
    const detail = err instanceof Error ? `internal error: ${err.message}` : `internal error: ${String(err)}`;
    try {
      this.fail('internal-error', 0, 'Internal error', detail);
    } catch {
      this.end('internal-error', detail);
    }
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
