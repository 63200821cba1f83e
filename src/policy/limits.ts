import { parseClientAddress, type ClientAddress } from './client-address.js';
import { TokenBuckets, type NowSource } from './token-bucket.js';

export interface ClientLimitOptions {
  /** Concurrent sessions per client address; 0: no per-client cap. */
  readonly maxSessionsPerClient: number;
  /** Requests per second per client address (token bucket); 0: no rate limit. */
  readonly ratePerSecond: number;
  /** Requests a client may make in a burst. */
  readonly burst: number;
  readonly clock: NowSource;
  /** Clients whose buckets are remembered at most. */
  readonly maxTrackedClients?: number;
  /**
   * Bytes per second (and as a burst) that may go to one address's peers that have not answered
   * yet: a forged-source request flood cannot aim more than this at a victim. 0: no cap.
   */
  readonly unverifiedBytesPerSecond?: number;
}

export type Admission = 'ok' | 'rate-limited';

/** Unsolicited ERRORs (ERROR 5 to strays, ERROR 4 to malformed requests) per address and second. */
export const UNSOLICITED_ERRORS_PER_SECOND = 20;
export const UNSOLICITED_ERRORS_BURST = 40;

/**
 * What the dispatcher asks of its limits (ClientLimits; SharedClientLimits across worker threads).
 * Clients are counted by their normalised address (ClientAddress.text: one IPv4 client is one
 * client on either kind of socket).
 */
export interface ClientLimiter {
  spendUnverified(client: ClientAddress, bytes: number): boolean;
  /** `address` as the socket reported it (a packet outside any session is not parsed beforehand). */
  shouldAnswerUnsolicited(address: string): boolean;
  admit(client: ClientAddress): Admission;
  shouldAnswerRefusal(client: ClientAddress): boolean;
  atSessionCap(client: ClientAddress): boolean;
  sessionOpened(client: ClientAddress): void;
  sessionClosed(client: ClientAddress): void;
  /** Sessions counted by sessionOpened/sessionClosed (all threads' for the shared limits). */
  readonly totalSessions: number;
}

/**
 * Per-client limits the dispatcher asks before opening a session: a request rate (token bucket)
 * and a cap on concurrent sessions. Clients are keyed by canonical address (one NAT'd site is one
 * client: size the limits for it). Refusals for the rate limit are answered at most once a second
 * per client, so a flood of requests (possibly spoofed) is not turned into a flood of replies.
 */
export class ClientLimits implements ClientLimiter {
  private readonly sessions = new Map<string, number>();
  private total = 0;
  private readonly requests: TokenBuckets | undefined;
  private readonly replies: TokenBuckets;
  private readonly unsolicited: TokenBuckets;
  private readonly unverified: TokenBuckets | undefined;

  constructor(private readonly options: ClientLimitOptions) {
    const maxKeys = options.maxTrackedClients ?? 100_000;
    this.requests =
      options.ratePerSecond > 0
        ? new TokenBuckets({ ratePerSecond: options.ratePerSecond, burst: Math.max(1, options.burst), maxKeys, clock: options.clock })
        : undefined;
    this.replies = new TokenBuckets({ ratePerSecond: 1, burst: 1, maxKeys, clock: options.clock });
    this.unsolicited = new TokenBuckets({
      ratePerSecond: UNSOLICITED_ERRORS_PER_SECOND,
      burst: UNSOLICITED_ERRORS_BURST,
      maxKeys,
      clock: options.clock,
    });
    const unverifiedRate = options.unverifiedBytesPerSecond ?? 0;
    this.unverified =
      unverifiedRate > 0 ? new TokenBuckets({ ratePerSecond: unverifiedRate, burst: unverifiedRate, maxKeys, clock: options.clock }) : undefined;
  }

  /** Spends `bytes` of the address's allowance for peers that have not answered yet. */
  spendUnverified(client: ClientAddress, bytes: number): boolean {
    return this.unverified ? this.unverified.take(client.text, bytes) : true;
  }

  /**
   * Whether an ERROR to a packet outside any session (a stray DATA/ACK: ERROR 5; a malformed
   * request: ERROR 4) may go to this address. Such packets can carry a spoofed source, and the
   * ERROR is a few times their size: answers are capped per address, the rest get silence.
   */
  shouldAnswerUnsolicited(address: string): boolean {
    return this.unsolicited.take(parseClientAddress(address).text);
  }

  /** Spends one request token for the client. */
  admit(client: ClientAddress): Admission {
    if (this.requests && !this.requests.take(client.text)) return 'rate-limited';
    return 'ok';
  }

  /** Whether a rate-limit refusal to this client should be answered (at most one a second). */
  shouldAnswerRefusal(client: ClientAddress): boolean {
    return this.replies.take(client.text);
  }

  /** True when the client already has as many sessions as it may. */
  atSessionCap(client: ClientAddress): boolean {
    const cap = this.options.maxSessionsPerClient;
    return cap > 0 && (this.sessions.get(client.text) ?? 0) >= cap;
  }

  get totalSessions(): number {
    return this.total;
  }

  sessionOpened(client: ClientAddress): void {
    this.total++;
    this.sessions.set(client.text, (this.sessions.get(client.text) ?? 0) + 1);
  }

  sessionClosed(client: ClientAddress): void {
    if (this.total > 0) this.total--;
    const n = (this.sessions.get(client.text) ?? 0) - 1;
    if (n > 0) this.sessions.set(client.text, n);
    else this.sessions.delete(client.text);
  }

  /** Clients with at least one session (the table is empty when the gateway is idle). */
  get trackedClients(): number {
    return this.sessions.size;
  }
}
