import { absoluteBlock, wireBlock } from '../protocol/blocks.js';
import { encodeOack, ErrorCode, Opcode, type Packet } from '../protocol/packet.js';
import { errorMessage, tftpErrorFor, TransferError } from '../../errors.js';
import { SessionBase, type SessionDeps } from './session-base.js';
import type { ReadSource, TransferResult } from './types.js';

export interface ReadSessionDeps extends SessionDeps {
  readonly source: ReadSource;
  /** Upper bound on DATA payload bytes sent and not yet acknowledged (protects small client buffers). */
  readonly maxBytesInFlight: number;
}

type ReadState = 'oack' | 'sending';

/** Consecutive windows cut short in their first half that count as receiver overrun. */
const OVERRUN_WINDOWS = 3;

/**
 * Sender state machine (RRQ). Blocks are counted with absolute indexes and sent as index mod 65536.
 * Retransmits only on timeout, never because an ACK was repeated (Sorcerer's Apprentice); an ACK
 * inside the window restarts the window after it (RFC 7440 §4). The window stays at the negotiated
 * size (bounded by the bytes-in-flight cap): strict receivers ACK only full windows, so a smaller
 * window would stall them until their own timer. It shrinks only on evidence of receiver overrun
 * (window after window cut short early) and grows back after clean windows. No block is sent twice
 * within one window.
 */
export class ReadSession extends SessionBase {
  private readonly source: ReadSource;
  private readonly blksize: number;
  private readonly maxWindow: number;
  private window: number;
  private state: ReadState = 'oack';
  /** First block not yet acknowledged. */
  private base = 1;
  /** Next block to put on the wire. */
  private next = 1;
  /** Index of the final (short) block once known. */
  private lastBlock: number | undefined;
  private loading = false;
  /** Send time of each block in the window, for RTT samples (ring indexed by block). */
  private readonly sentAt: Float64Array;
  /** Blocks at or below this index were sent more than once: no RTT samples from them (Karn). */
  private retransmittedUpTo = 0;
  private oackSentAt = 0;
  /** The OACK as sent: windowsize lowered to what the bytes-in-flight cap allows (see constructor). */
  private readonly oack: ReadonlyMap<string, string>;
  /**
   * DATA headers, one per block slot (block mod 2·window): reused, never allocated per packet. A slot
   * is rewritten only two windows later, when its earlier datagram has long left the socket.
   */
  private readonly headers: Buffer[];
  /** The datagram being sent: header then payload views (reused; the socket copies the list). */
  private readonly datagram: Buffer[] = [];
  /** Consecutive windows cut short in their first half (receiver overrun evidence), and the most accepted in one. */
  private shortWindows = 0;
  private shortWindowsBest = 0;
  /** Consecutive full windows since the window was last reduced. */
  private cleanWindows = 0;

  constructor(deps: ReadSessionDeps) {
    super(deps);
    this.source = deps.source;
    this.blksize = deps.options.blksize;
    const byBytes = Math.max(1, Math.floor(deps.maxBytesInFlight / this.blksize));
    this.maxWindow = Math.max(1, Math.min(deps.options.windowsize, byBytes));
    this.window = this.maxWindow;
    this.sentAt = new Float64Array(this.maxWindow);
    // A client ACKs after `windowsize` blocks (RFC 7440): if the bytes cap allows fewer, grant fewer
    // in the OACK, or the client would wait for blocks that never come and each window would cost a
    // retransmission timeout.
    let oack = deps.oack;
    for (const [name, value] of deps.oack) {
      if (name.toLowerCase() === 'windowsize' && Number(value) > this.maxWindow) {
        oack = new Map([...deps.oack].map(([k, v]) => [k, k === name ? String(this.maxWindow) : v] as [string, string]));
      }
    }
    this.oack = oack;
    const slots = 2 * this.maxWindow;
    const headerBytes = Buffer.allocUnsafeSlow(4 * slots);
    this.headers = [];
    for (let i = 0; i < slots; i++) {
      const header = headerBytes.subarray(4 * i, 4 * i + 4);
      header.writeUInt16BE(Opcode.DATA, 0);
      this.headers.push(header);
    }
    const size = deps.source.size;
    if (size !== undefined) this.lastBlock = Math.floor(size / this.blksize) + 1;
  }

  get hasProgressed(): boolean {
    return this.base > 1;
  }

  protected onStart(): void {
    if (this.deps.oack.size > 0) {
      this.sendOack();
    } else {
      this.state = 'sending';
      this.pump();
    }
  }

  protected onRepeatedRequest(): void {
    if (this.state === 'oack') {
      if (!this.firstPacketOverdue(this.oackSentAt)) return;
      this.retransmits++;
      this.sendOack();
    } else if (this.next > this.base && this.firstPacketOverdue(this.sentAt[this.base % this.maxWindow]!)) {
      this.resendWindow();
    }
  }

  /**
   * Every block was sent and only the final ACK is missing: the client most likely has the file
   * (clients need not linger after their last ACK). Not a failure, not worth an ERROR: 'unconfirmed'.
   */
  protected override giveUp(reason: string): void {
    if (this.state === 'sending' && this.lastBlock !== undefined && this.blocks >= this.lastBlock) {
      this.end('unconfirmed', `final ACK never came: ${reason}`);
      return;
    }
    super.giveUp(reason);
  }

  protected onPacket(packet: Packet): void {
    switch (packet.opcode) {
      case Opcode.ACK:
        this.onAck(packet.block);
        return;
      case Opcode.ERROR:
        // A client that asked for tsize and ends negotiation with ERROR 8 was only probing the size (UEFI).
        if (this.state === 'oack' && packet.code === ErrorCode.OptionRefused) {
          this.end('size-probe', `client ended negotiation: ${packet.message}`);
        } else {
          this.end('client-error', `client sent ERROR ${packet.code}: ${packet.message}`);
        }
        return;
      default:
        return; // DATA/OACK to a sender is meaningless; requests are routed by the dispatcher
    }
  }

  private sendOack(): void {
    this.oackSentAt = this.clock.now();
    this.peer.send([encodeOack(this.oack)]);
    this.armTimer();
  }

  private onAck(wire: number): void {
    const now = this.clock.now();
    if (this.state === 'oack') {
      if (wire !== 0) return;
      if (this.retries === 0) this.rto.sample(now - this.oackSentAt);
      this.retries = 0;
      this.noteProgress();
      this.state = 'sending';
      this.pump();
      return;
    }
    const acked = absoluteBlock(wire, this.base);
    // Duplicates and ACKs for blocks never sent are ignored: resending is the timer's job.
    // "Never sent" is judged against the highest block ever sent (this.blocks), not `next`: after a
    // timeout rewinds `next`, an ACK for a block sent before the rewind is still progress.
    if (acked < this.base || acked > this.blocks) return;
    if (acked >= this.next) this.next = acked + 1;
    const windowStart = this.base;

    if (acked > this.retransmittedUpTo) this.rto.sample(now - this.sentAt[acked % this.maxWindow]!);
    else this.rto.onProgress();
    this.retries = 0;
    this.noteProgress();
    const fullWindow = acked === this.next - 1;
    this.base = acked + 1;
    this.source.release((this.base - 1) * this.blksize);

    if (this.lastBlock !== undefined && acked >= this.lastBlock) {
      this.end('ok');
      return;
    }
    if (fullWindow) {
      this.onFullWindow();
    } else {
      // The client is missing block acked+1: a new window starts there (RFC 7440 §4).
      this.onShortWindow(acked - windowStart + 1);
      this.retransmittedUpTo = this.next - 1;
      this.retransmits += this.next - this.base;
      this.next = this.base;
    }
    // No disarm: pump() re-arms, which only moves the deadline (clearing and creating a timer on
    // every ACK was a measurable share of the lock-step path). Waiting on storage, the timer that
    // is left finds nothing on the wire and sleeps again.
    this.pump();
  }

  private onFullWindow(): void {
    this.shortWindows = 0;
    this.shortWindowsBest = 0;
    if (this.window < this.maxWindow && ++this.cleanWindows >= 4) {
      this.window = Math.min(this.maxWindow, this.window * 2);
      this.cleanWindows = 0;
    }
  }

  /**
   * A window was acknowledged short, `accepted` blocks in. Random loss cuts windows anywhere; a
   * receiver whose buffer overflows cuts them early, time after time. Only that shrinks the window:
   * to the most it accepted in those windows.
   */
  private onShortWindow(accepted: number): void {
    this.cleanWindows = 0;
    if (this.window <= 1 || accepted * 2 > this.window) {
      this.shortWindows = 0;
      this.shortWindowsBest = 0;
      return;
    }
    this.shortWindows++;
    this.shortWindowsBest = Math.max(this.shortWindowsBest, accepted);
    if (this.shortWindows >= OVERRUN_WINDOWS) {
      this.window = Math.max(1, this.shortWindowsBest);
      this.shortWindows = 0;
      this.shortWindowsBest = 0;
    }
  }

  protected onTimeout(): void {
    if (this.state === 'oack') {
      // The OACK is not resent on our timer: a client that did not get it repeats its request
      // (answered in onRepeatedRequest), one whose ACK 0 was lost resends that, and a repeated
      // OACK makes atftp abort. The give-up time still runs.
      if (this.countTimeout()) this.armTimer();
      return;
    }
    if (this.next === this.base) {
      // Nothing on the wire: we are waiting on storage, whose calls have their own deadlines.
      this.armTimer();
      return;
    }
    if (!this.countTimeout()) return;
    this.resendWindow();
  }

  /** Sends the window again from the oldest unacknowledged block, at its full size. */
  private resendWindow(): void {
    this.retransmittedUpTo = Math.max(this.retransmittedUpTo, this.next - 1);
    this.retransmits += this.next - this.base;
    this.next = this.base;
    this.pump();
  }

  /** Puts as many blocks on the wire as the window allows and storage has ready. */
  private pump(): void {
    if (this.isEnded || this.state !== 'sending') return;
    const limit = this.base + this.window - 1;
    const blksize = this.blksize;
    while (this.next <= limit && (this.lastBlock === undefined || this.next <= this.lastBlock)) {
      const block = this.next;
      const segments = this.source.slice((block - 1) * blksize, blksize);
      if (segments === undefined) {
        this.waitForStorage(block);
        break;
      }
      const length = this.sendData(block, segments);
      this.sentAt[block % this.maxWindow] = this.clock.now();
      if (block > this.blocks) {
        this.blocks = block;
        this.bytes += length;
      }
      if (length < blksize) this.lastBlock = block;
      this.next++;
    }
    if (this.next > this.base) this.armTimer();
  }

  /** Sends DATA `block` made of `segments` (no copy of the payload); returns the payload length. */
  private sendData(block: number, segments: readonly Buffer[]): number {
    const header = this.headers[block % this.headers.length]!;
    header.writeUInt16BE(wireBlock(block), 2);
    const datagram = this.datagram;
    datagram.length = 1 + segments.length;
    datagram[0] = header;
    let length = 0;
    for (let i = 0; i < segments.length; i++) {
      const s = segments[i]!;
      datagram[i + 1] = s;
      length += s.length;
    }
    this.peer.send(datagram);
    return length;
  }

  private waitForStorage(block: number): void {
    if (this.loading) return;
    this.loading = true;
    this.source.load((block - 1) * this.blksize, this.blksize).then(
      () =>
        this.contained(() => {
          this.loading = false;
          this.resumedAfterStorage();
          this.pump();
        }),
      (err: unknown) =>
        this.contained(() => {
          this.loading = false;
          const wire = tftpErrorFor(err);
          const detail = errorMessage(err);
          this.fail(resultFor(err), wire.code, wire.message, detail);
        }),
    );
  }

  protected releaseResources(): void {
    this.source.close();
  }
}

function resultFor(err: unknown): TransferResult {
  if (err instanceof TransferError) {
    if (err.code === 'NOT_FOUND') return 'not-found';
    if (err.code === 'ACCESS_DENIED') return 'denied';
  }
  return 'storage-error';
}
