/** The small interfaces sessions talk to: no sockets, no S3 here. */

export interface TimerHandle {
  readonly __timer?: never;
}

/** Injectable clock so state machines run on a virtual clock in tests. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t as unknown as TimerHandle;
  },
  clearTimeout: (h) => clearTimeout(h as unknown as NodeJS.Timeout),
};

/** The session's way back to its client: one datagram made of these segments. */
export interface PeerChannel {
  send(segments: readonly Buffer[]): void;
  /**
   * The peer has answered (a valid ACK or DATA): it is not a forged source address, so the limits
   * on what may be sent to an unverified peer no longer apply.
   */
  confirmed?(): void;
}

/**
 * Bytes of a file to send, addressed by offset in the transfer's byte stream (after any netascii
 * conversion). Views returned by `slice` are only valid until `release` passes them.
 */
export interface ReadSource {
  /** Total bytes the transfer will carry, when known in advance (octet: the object size). */
  readonly size: number | undefined;
  /** The bytes [offset, offset+length), clipped at the end of the file, or undefined if not in memory yet. */
  slice(offset: number, length: number): readonly Buffer[] | undefined;
  /** Makes `slice(offset, length)` answer; rejects with a TransferError. */
  load(offset: number, length: number): Promise<void>;
  /** Bytes below `offset` will not be asked for again. */
  release(offset: number): void;
  /** Releases everything (idempotent). */
  close(): void;
}

/** Where an upload's bytes go (already converted from netascii if needed). */
export interface UploadSink {
  /** Accepts a chunk. A returned promise means "hold the ACK until it settles" (backpressure). */
  write(chunk: Buffer): Promise<void> | undefined;
  /** Completes the upload: resolves once the object is stored. */
  finish(): Promise<void>;
  /** Aborts: nothing is left behind. Idempotent. */
  abort(reason: string): Promise<void>;
}

/** How a transfer ended (a bounded set: the `result` label of the metrics). */
export const TRANSFER_RESULTS = [
  'ok',
  'size-probe',
  'client-error',
  'timeout',
  'storage-error',
  'not-found',
  'denied',
  'too-large',
  'exists',
  'replaced',
  'shutdown',
  'protocol-error',
  'internal-error',
  'unconfirmed',
] as const;

export type TransferResult = (typeof TRANSFER_RESULTS)[number];

export interface TransferStats {
  readonly result: TransferResult;
  /** Payload bytes carried (wire form) in the transfer's direction. */
  readonly bytes: number;
  readonly blocks: number;
  readonly retransmits: number;
  readonly timeouts: number;
  readonly durationMs: number;
  /** Detail for the log (never sent to the client). */
  readonly detail?: string;
  /** TFTP error code sent to the client, if any. */
  readonly errorSent?: number;
}

/** Retransmission timing: fixed when the client pinned `timeout`, otherwise adaptive from RTT samples. */
export interface RetransmitPolicy {
  /** RTO before any sample, ms. */
  readonly initialMs: number;
  readonly minMs: number;
  readonly maxMs: number;
  /** Retransmissions of the same packet before giving up (0: no count limit, `giveUpMs` decides). */
  readonly maxRetries: number;
  /** Time without progress after which the transfer is abandoned, ms (default: no time limit). */
  readonly giveUpMs?: number;
  /** Factor the timeout grows by on each expiry (default 2). */
  readonly backoff?: number;
  /**
   * Retransmissions of the first packet (OACK or DATA 1, ACK/OACK of a WRQ) before the peer has
   * answered at all: the request may come from a forged address (default: `maxRetries`).
   */
  readonly unverifiedRetries?: number;
}
