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

export type TransferResult =
  | 'ok'
  | 'size-probe'
  | 'client-error'
  | 'timeout'
  | 'storage-error'
  | 'not-found'
  | 'denied'
  | 'too-large'
  | 'exists'
  | 'replaced'
  | 'shutdown'
  | 'protocol-error';

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
  /** Retransmissions of the same packet before giving up. */
  readonly maxRetries: number;
}
