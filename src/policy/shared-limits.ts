import { parseClientAddress, type ClientAddress } from './client-address.js';
import { UNSOLICITED_ERRORS_BURST, UNSOLICITED_ERRORS_PER_SECOND, type Admission, type ClientLimiter } from './limits.js';

/**
 * ClientLimits for worker threads: the same per-address limits (request rate, session caps, the
 * once-a-second refusal answer, unsolicited ERRORs, bytes to unverified peers) and the overall
 * session count, kept in one SharedArrayBuffer every worker maps, so they hold for the process
 * whichever worker a client's flows land on (the kernel spreads one address's ports over workers).
 *
 * A fixed open-addressing table keyed by a 32-bit hash of the address (two addresses with the same
 * hash share limits: rare, and only ever stricter), each slot guarded by a spinlock held for a few
 * arithmetic operations. A slot is reused when its address has no session and its buckets are
 * full again (nothing to remember) or, failing that, the least recently used slot without sessions
 * in its probe window; when every slot of the window has sessions the request is let through
 * (limits bounded by memory, as the single-threaded table is bounded by maxTrackedClients).
 */

const SLOTS = 65_536;
const PROBES = 16;
/** Int32 fields per slot: lock, key hash, sessions. */
const I_LOCK = 0;
const I_KEY = 1;
const I_SESSIONS = 2;
const INTS = 3;
/** Float64 fields per slot: last use, then (tokens, at) for each bucket. */
const F_USED = 0;
const BUCKETS = 4;
const B_REQUESTS = 0;
const B_REPLIES = 1;
const B_UNSOLICITED = 2;
const B_UNVERIFIED = 3;
const FLOATS = 1 + 2 * BUCKETS;
/** Header (Int32): total sessions. */
const HEADER_INTS = 4;
const H_TOTAL = 0;

export interface SharedLimitOptions {
  readonly maxSessionsPerClient: number;
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly unverifiedBytesPerSecond?: number;
}

/** The shared memory of the limits; made once by the main thread, mapped by every worker. */
export function createSharedLimitMemory(): { ints: SharedArrayBuffer; floats: SharedArrayBuffer } {
  return {
    ints: new SharedArrayBuffer((HEADER_INTS + SLOTS * INTS) * 4),
    floats: new SharedArrayBuffer(SLOTS * FLOATS * 8),
  };
}

/** A clock shared by threads (performance.now() has a per-thread origin). */
const sharedNow = (): number => performance.timeOrigin + performance.now();

function hashAddress(address: string): number {
  // FNV-1a, never 0 (0 marks a free slot).
  let h = 0x811c9dc5;
  for (let i = 0; i < address.length; i++) {
    h ^= address.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h === 0 ? 1 : h;
}

export class SharedClientLimits implements ClientLimiter {
  private readonly ints: Int32Array;
  private readonly floats: Float64Array;
  private readonly rates: number[];
  private readonly bursts: number[];

  constructor(
    memory: { ints: SharedArrayBuffer; floats: SharedArrayBuffer },
    private readonly options: SharedLimitOptions,
    private readonly now: () => number = sharedNow,
  ) {
    this.ints = new Int32Array(memory.ints);
    this.floats = new Float64Array(memory.floats);
    const unverified = options.unverifiedBytesPerSecond ?? 0;
    this.rates = [options.ratePerSecond, 1, UNSOLICITED_ERRORS_PER_SECOND, unverified];
    this.bursts = [Math.max(1, options.burst), 1, UNSOLICITED_ERRORS_BURST, unverified];
  }

  spendUnverified(client: ClientAddress, bytes: number): boolean {
    if (this.rates[B_UNVERIFIED]! <= 0) return true;
    return this.take(client.text, B_UNVERIFIED, bytes);
  }

  shouldAnswerUnsolicited(address: string): boolean {
    return this.take(parseClientAddress(address).text, B_UNSOLICITED, 1);
  }

  admit(client: ClientAddress): Admission {
    if (this.options.ratePerSecond > 0 && !this.take(client.text, B_REQUESTS, 1)) return 'rate-limited';
    return 'ok';
  }

  shouldAnswerRefusal(client: ClientAddress): boolean {
    return this.take(client.text, B_REPLIES, 1);
  }

  atSessionCap(client: ClientAddress): boolean {
    const cap = this.options.maxSessionsPerClient;
    if (cap <= 0) return false;
    return this.withSlot(client.text, false, (slot) => Atomics.load(this.ints, this.i(slot, I_SESSIONS)) >= cap) ?? false;
  }

  sessionOpened(client: ClientAddress): void {
    Atomics.add(this.ints, H_TOTAL, 1);
    this.withSlot(client.text, true, (slot) => {
      this.ints[this.i(slot, I_SESSIONS)]! += 1;
    });
  }

  sessionClosed(client: ClientAddress): void {
    if (Atomics.sub(this.ints, H_TOTAL, 1) <= 0) Atomics.store(this.ints, H_TOTAL, 0);
    this.withSlot(client.text, false, (slot) => {
      const at = this.i(slot, I_SESSIONS);
      if (this.ints[at]! > 0) this.ints[at]! -= 1;
    });
  }

  get totalSessions(): number {
    return Atomics.load(this.ints, H_TOTAL);
  }

  private i(slot: number, field: number): number {
    return HEADER_INTS + slot * INTS + field;
  }

  private f(slot: number, field: number): number {
    return slot * FLOATS + field;
  }

  /** Spends `cost` from the address's bucket `b` if it holds that much. */
  private take(client: string, b: number, cost: number): boolean {
    const rate = this.rates[b]!;
    const burst = this.bursts[b]!;
    return (
      this.withSlot(client, true, (slot, now) => {
        const t = this.f(slot, 1 + 2 * b);
        const tokens = Math.min(burst, this.floats[t]! + ((now - this.floats[t + 1]!) / 1000) * rate);
        const ok = tokens >= cost;
        this.floats[t] = ok ? tokens - cost : tokens;
        this.floats[t + 1] = now;
        return ok;
      }) ?? true
    );
  }

  /**
   * Runs `fn` with the address's slot locked (claiming a slot when `claim`); undefined when the
   * address has no slot (and `claim` is false) or no slot can be had.
   */
  private withSlot<T>(client: string, claim: boolean, fn: (slot: number, now: number) => T): T | undefined {
    const key = hashAddress(client);
    const now = this.now();
    const start = (key >>> 0) % SLOTS;
    let candidate = -1;
    let candidateUsed = Infinity;
    for (let p = 0; p < PROBES; p++) {
      const slot = (start + p) % SLOTS;
      this.lock(slot);
      const k = this.ints[this.i(slot, I_KEY)]!;
      if (k === key) {
        try {
          this.floats[this.f(slot, F_USED)] = now;
          return fn(slot, now);
        } finally {
          this.unlock(slot);
        }
      }
      if (claim && (k === 0 || this.ints[this.i(slot, I_SESSIONS)] === 0)) {
        const used = k === 0 ? -Infinity : this.floats[this.f(slot, F_USED)]!;
        if (used < candidateUsed) {
          candidate = slot;
          candidateUsed = used;
        }
      }
      this.unlock(slot);
      if (k === 0) break;
    }
    if (candidate < 0) return undefined;
    this.lock(candidate);
    try {
      // Taken meanwhile by another address with sessions: let this one through.
      const k = this.ints[this.i(candidate, I_KEY)]!;
      if (k !== key && k !== 0 && this.ints[this.i(candidate, I_SESSIONS)] !== 0) return undefined;
      if (k !== key) {
        this.ints[this.i(candidate, I_KEY)] = key;
        this.ints[this.i(candidate, I_SESSIONS)] = 0;
        for (let b = 0; b < BUCKETS; b++) {
          this.floats[this.f(candidate, 1 + 2 * b)] = this.bursts[b]!;
          this.floats[this.f(candidate, 2 + 2 * b)] = now;
        }
      }
      this.floats[this.f(candidate, F_USED)] = now;
      return fn(candidate, now);
    } finally {
      this.unlock(candidate);
    }
  }

  private lock(slot: number): void {
    const at = this.i(slot, I_LOCK);
    while (Atomics.compareExchange(this.ints, at, 0, 1) !== 0) {
      // Held for a few operations by another thread: spin.
    }
  }

  private unlock(slot: number): void {
    Atomics.store(this.ints, this.i(slot, I_LOCK), 0);
  }
}
