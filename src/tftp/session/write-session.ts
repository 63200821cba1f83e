import { absoluteBlock } from '../protocol/blocks.js';
import { NetasciiDecoder } from '../protocol/netascii.js';
import { encodeAck, encodeOack, ErrorCode, Opcode, type Packet } from '../protocol/packet.js';
import { errorMessage, tftpErrorFor, TransferError } from '../../errors.js';
import { SessionBase, type SessionDeps } from './session-base.js';
import type { TransferResult, UploadSink } from './types.js';

export interface WriteSessionDeps extends SessionDeps {
  readonly sink: UploadSink;
  readonly netascii: boolean;
  /** Largest upload accepted, in bytes (wire form); beyond it the upload is aborted with ERROR 3. */
  readonly maxBytes: number;
  /** Called once the object is stored, just before the final ACK goes out (cache invalidation). */
  readonly onStored?: () => void;
  /**
   * The WRQ carried no options: an RFC 1350 sender, typically the BSD loop (tftp-hpa's uploader),
   * which ignores a repeated ACK (RFC 1123's Sorcerer's Apprentice rule) and restarts its own
   * retransmission timer on every packet it receives. Re-ACKs then delay its resend of a lost
   * block, so they stop after QUIET_AFTER_REACKS.
   */
  readonly classicSender?: boolean;
}

/** Timeouts in the data phase answered with a re-ACK before waiting silently for a classic sender. */
const QUIET_AFTER_REACKS = 2;

type WriteState = 'receiving' | 'completing';

/**
 * Receiver state machine (WRQ). Accepts blocks strictly in order, ACKs at the end of each window
 * (or on a gap, so the sender restarts after its last good block), and withholds the final ACK
 * until the sink reports the object stored: the client's success means the object exists. The
 * session ends `ok` with that ACK; answering a resent last DATA afterwards (the ACK was lost) is the
 * dispatcher's linger, not the session's.
 */
export class WriteSession extends SessionBase {
  private readonly sink: UploadSink;
  private readonly blksize: number;
  private readonly windowsize: number;
  private readonly decoder: NetasciiDecoder | undefined;
  private state: WriteState = 'receiving';
  /** Next block expected. */
  private expected = 1;
  /** Block that the current window started at (ACK when `windowsize` blocks arrived). */
  private windowStart = 1;
  /** Last ACK sent (absolute block), resent on timeout; -1 means the OACK is what to resend. */
  private lastAcked = 0;
  /**
   * Block number of the last duplicate or out-of-order DATA since progress (undefined: none). A
   * sender that starts over (a block number not above it) draws one re-ACK; the rest of a resent
   * window, arriving in rising order, draws none. With windowsize 1 every retransmission is a
   * start-over, so each is answered, as tftpd-hpa does.
   */
  private lastStray: number | undefined;
  /** An ACK held back because the sink asked for backpressure. */
  private ackHeld = false;
  /** The newest sink write that has not settled (sink backpressure), if any. */
  private backlog: Promise<void> | undefined;
  private readonly maxBytes: number;
  private readonly onStored: (() => void) | undefined;
  private readonly classicSender: boolean;
  private lastAckSentAt = 0;

  constructor(deps: WriteSessionDeps) {
    super(deps);
    this.sink = deps.sink;
    this.maxBytes = deps.maxBytes;
    this.onStored = deps.onStored;
    this.classicSender = deps.classicSender ?? false;
    this.blksize = deps.options.blksize;
    this.windowsize = deps.options.windowsize;
    this.decoder = deps.netascii ? new NetasciiDecoder() : undefined;
  }

  get hasProgressed(): boolean {
    return this.expected > 1;
  }

  protected onStart(): void {
    if (this.deps.oack.size > 0) this.lastAcked = -1;
    this.sendLastAck();
  }

  protected onRepeatedRequest(): void {
    if (this.expected > 1 || this.state !== 'receiving' || !this.firstPacketOverdue(this.lastAckSentAt)) return;
    this.retransmits++;
    this.sendLastAck();
  }

  protected onPacket(packet: Packet): void {
    switch (packet.opcode) {
      case Opcode.DATA:
        this.onData(packet.block, packet.data);
        return;
      case Opcode.ERROR:
        this.end('client-error', `client sent ERROR ${packet.code}: ${packet.message}`);
        return;
      default:
        return;
    }
  }

  private sendLastAck(): void {
    this.lastAckSentAt = this.clock.now();
    if (this.lastAcked === -1) this.peer.send([encodeOack(this.deps.oack)]);
    else this.peer.send([encodeAck(this.lastAcked)]);
    this.armTimer();
  }

  private onData(wire: number, data: Buffer): void {
    // Retransmitted final DATA while the object is being stored: nothing to say yet.
    if (this.state !== 'receiving') return;
    const block = absoluteBlock(wire, this.expected);
    if (block !== this.expected) {
      // A duplicate (our ACK was lost) or a gap (a block was lost): ACK the last good block once
      // per start-over of the sender.
      const startOver = this.lastStray === undefined || block <= this.lastStray;
      this.lastStray = block;
      if (startOver && !this.ackHeld) {
        this.windowStart = this.expected;
        this.lastAcked = this.expected - 1;
        this.retransmits++;
        this.sendLastAck();
      }
      return;
    }
    if (data.length > this.blksize) {
      this.fail('protocol-error', ErrorCode.IllegalOperation, 'Block larger than blksize');
      return;
    }
    if (this.bytes + data.length > this.maxBytes) {
      this.fail('too-large', ErrorCode.DiskFull, 'File too large', `upload exceeds ${this.maxBytes} bytes`);
      return;
    }
    this.expected++;
    this.blocks++;
    this.bytes += data.length;
    this.retries = 0;
    this.noteProgress();
    this.lastStray = undefined;
    this.rto.onProgress();
    const final = data.length < this.blksize;

    let chunk = this.decoder ? this.decoder.decode(data) : data;
    if (final && this.decoder) chunk = Buffer.concat([chunk, this.decoder.end()]);
    const written = chunk.length > 0 ? this.sink.write(chunk) : undefined;
    if (written) this.trackBacklog(written);
    // Any write of this window still waiting on the sink holds the window's ACK, not just the last one.
    const pending = this.backlog;

    if (final) {
      this.complete(block, pending);
      return;
    }
    if (block - this.windowStart + 1 >= this.windowsize) {
      this.windowStart = block + 1;
      if (pending) this.holdAck(block, pending);
      else {
        this.lastAcked = block;
        this.sendLastAck();
      }
    } else {
      this.armTimer();
    }
  }

  /** Remembers the newest unsettled sink write; a failure ends the session at once. */
  private trackBacklog(written: Promise<void>): void {
    const settled = written.then(
      () => {
        if (this.backlog === settled) this.backlog = undefined;
      },
      (err: unknown) => {
        if (this.backlog === settled) this.backlog = undefined;
        this.contained(() => this.failFromStorage(err));
        throw err;
      },
    );
    settled.catch(() => undefined);
    this.backlog = settled;
  }

  private holdAck(block: number, pending: Promise<void>): void {
    this.ackHeld = true;
    this.disarmTimer();
    pending.then(
      () =>
        this.contained(() => {
          this.ackHeld = false;
          if (this.isEnded) return;
          this.resumedAfterStorage();
          this.lastAcked = block;
          this.sendLastAck();
        }),
      (err: unknown) => this.contained(() => this.failFromStorage(err)),
    );
  }

  private complete(block: number, pending: Promise<void> | undefined): void {
    this.state = 'completing';
    this.disarmTimer();
    const done = (pending ?? Promise.resolve()).then(() => this.sink.finish());
    done.then(
      () =>
        this.contained(() => {
          if (this.isEnded) return;
          // Reads must see the new object from the moment the client is told it is stored.
          this.onStored?.();
          this.peer.send([encodeAck(block)]);
          this.end('ok');
        }),
      (err: unknown) => this.contained(() => this.failFromStorage(err)),
    );
  }

  private failFromStorage(err: unknown): void {
    if (this.isEnded) return;
    const wire = tftpErrorFor(err);
    const detail = errorMessage(err);
    let result: TransferResult = 'storage-error';
    if (err instanceof TransferError) {
      if (err.code === 'EXISTS') result = 'exists';
      else if (err.code === 'TOO_LARGE') result = 'too-large';
      else if (err.code === 'ACCESS_DENIED') result = 'denied';
    }
    this.fail(result, wire.code, wire.message, detail);
  }

  protected onTimeout(): void {
    if (this.state === 'completing' || this.ackHeld) return; // storage has the ball
    if (!this.countTimeout()) return;
    this.lastStray = undefined;
    // The sender owns recovery; our re-ACKs (backing off, as tftpd-hpa's) only shorten it: a sender
    // that lost our ACK, or whose DATA was lost and that answers a repeated ACK by resending (atftp,
    // curl), goes on at once. Our OACK is never resent on our timer: a repeated OACK is harmful
    // (curl 7.88 then sends block 2's bytes as DATA 1), and a sender that did not get it repeats
    // its WRQ (answered in onRepeatedRequest). A plain ACK 0 is resent: a client that lost it
    // otherwise waits for its own timer (tftp-hpa: 5 s) for every copy lost. A classic sender gets
    // two re-ACKs, then silence: it ignores repeated ACKs and restarts its timer on each, so more
    // would only postpone its resend. Either way the give-up time still runs.
    if (this.lastAcked < 0 || (this.classicSender && this.retries > QUIET_AFTER_REACKS)) {
      this.armTimer();
      return;
    }
    this.retransmits++;
    this.sendLastAck();
  }

  protected releaseResources(result: TransferResult): void {
    if (result !== 'ok') {
      this.sink.abort(result).catch(() => undefined);
    }
  }
}
