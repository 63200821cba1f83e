/** Minimal RFC-correct TFTP clients (reader and writer, with RFC 7440 windows) on a virtual clock. */
import { encodeRequest, Opcode, type Packet } from '../../../src/tftp/protocol/packet.js';
import type { Clock, TimerHandle } from '../../../src/tftp/session/types.js';
import { ackBytes, dataBytes, errorBytes } from './datagrams.js';
import type { PacketHandler } from './network.js';

export type ClientState = 'start' | 'transferring' | 'done' | 'failed' | 'error' | 'refused';

export interface ClientTiming {
  /** Client retransmission timeout, ms. */
  readonly timeoutMs?: number;
  /** Retransmissions before the client gives up. */
  readonly maxRetries?: number;
  /** How long a finished reader keeps answering a retransmitted last DATA, ms. */
  readonly dallyMs?: number;
}

/** Absolute block nearest to `ref` whose low 16 bits are `wire` (the client's own rollover logic). */
function nearestBlock(wire: number, ref: number): number {
  let best = ref - (ref & 0xffff) + wire;
  if (best - ref > 32768) best -= 65536;
  else if (ref - best > 32768) best += 65536;
  return best;
}

function grantedInt(oack: ReadonlyMap<string, string>, name: string, fallback: number): number {
  const v = oack.get(name);
  return v !== undefined && /^[0-9]+$/.test(v) ? Number(v) : fallback;
}

/**
 * What both test clients share: the state, the granted options, one retransmission timer, and
 * giving up after `maxRetries` timeouts in a row.
 */
abstract class TestClient implements PacketHandler {
  state: ClientState = 'start';
  oack: Map<string, string> | undefined;
  error: { code: number; message: string } | undefined;
  blksize = 512;
  windowsize = 1;
  /** Timeouts in a row (reset by progress). */
  protected retries = 0;
  protected readonly timeoutMs: number;
  private readonly maxRetries: number;
  private timer: TimerHandle | undefined;

  constructor(
    protected readonly clock: Clock,
    protected readonly send: (bytes: Buffer) => void,
    timing: ClientTiming,
  ) {
    this.timeoutMs = timing.timeoutMs ?? 1000;
    this.maxRetries = timing.maxRetries ?? 8;
  }

  handle(p: Packet): void {
    if (p.opcode === Opcode.ERROR) this.onError(p);
    else this.onPacket(p);
  }

  /** Any packet but an ERROR. */
  protected abstract onPacket(p: Packet): void;

  /** What the client sends again when its timer fires (before giving up). */
  protected abstract retransmit(): void;

  /** An ERROR from the server ends a transfer still under way. */
  protected onError(p: Extract<Packet, { opcode: Opcode.ERROR }>): void {
    if (this.state === 'start' || this.state === 'transferring') {
      this.error = { code: p.code, message: p.message };
      this.state = 'error';
      this.disarm();
    }
  }

  private onTimeout(): void {
    if (this.state !== 'transferring' && this.state !== 'start') return; // done (dally over), or ended
    this.retries++;
    if (this.retries > this.maxRetries) {
      this.state = 'failed';
      return;
    }
    this.retransmit();
  }

  protected arm(ms = this.timeoutMs): void {
    this.disarm();
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.onTimeout();
    }, ms);
  }

  protected disarm(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}

export interface ReaderOptions extends ClientTiming {
  /** Refuse the OACK with ERROR 8 (a UEFI size probe). */
  readonly refuseOack?: boolean;
  /** Classic RFC 1350 behaviour: ACK every duplicate DATA (instead of once per gap). */
  readonly ackEveryDuplicate?: boolean;
  /** Send an ERROR (code, message) instead of the ACK once this block has arrived. */
  readonly errorAfterBlock?: { readonly block: number; readonly code: number; readonly message: string };
}

/**
 * A downloading client: accepts DATA strictly in order, ACKs at the end of each window, on the
 * last block, once per gap or duplicate (so the sender restarts after the last good block, RFC 7440
 * §4), and on its own timeout; after the last block it lingers to re-ACK a repeated last DATA.
 */
export class TestReader extends TestClient {
  readonly chunks: Buffer[] = [];
  acksSent = 0;
  private expected = 1;
  private inWindow = 0;
  private gapAcked = false;
  private lastBlock = 0;
  private readonly dallyMs: number;

  constructor(
    clock: Clock,
    send: (bytes: Buffer) => void,
    private readonly options: ReaderOptions = {},
  ) {
    super(clock, send, options);
    this.dallyMs = options.dallyMs ?? 3 * this.timeoutMs;
  }

  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Arms the first wait (the first request is not modelled: the session starts directly; repeats are). */
  start(): void {
    this.arm();
  }

  protected onPacket(p: Packet): void {
    switch (p.opcode) {
      case Opcode.OACK:
        this.onOack(p.options);
        return;
      case Opcode.DATA:
        this.onData(p.block, p.data);
        return;
      default:
        return;
    }
  }

  private onOack(options: ReadonlyMap<string, string>): void {
    if (this.state === 'start') {
      if (this.options.refuseOack) {
        this.state = 'refused';
        this.disarm();
        this.send(errorBytes(8, 'size probe'));
        return;
      }
      this.oack = new Map(options);
      this.blksize = grantedInt(options, 'blksize', 512);
      this.windowsize = grantedInt(options, 'windowsize', 1);
      this.state = 'transferring';
      this.ack(0);
      return;
    }
    // A repeated OACK (our ACK 0 was lost) before any DATA: ACK 0 again.
    if (this.state === 'transferring' && this.expected === 1) this.ack(0);
  }

  private onData(wire: number, data: Buffer): void {
    if (this.state === 'start') this.state = 'transferring'; // no OACK: plain RFC 1350 start
    if (this.state === 'done') {
      if (wire === (this.lastBlock & 0xffff)) this.ack(this.lastBlock, false);
      return;
    }
    if (this.state !== 'transferring') return;
    if (wire !== (this.expected & 0xffff)) {
      if (this.options.ackEveryDuplicate || !this.gapAcked) {
        this.gapAcked = true;
        this.ack(this.expected - 1);
      }
      return;
    }
    const block = this.expected;
    this.chunks.push(Buffer.from(data));
    this.expected++;
    this.inWindow++;
    this.gapAcked = false;
    this.retries = 0;
    const eb = this.options.errorAfterBlock;
    if (eb && eb.block === block) {
      this.state = 'error';
      this.disarm();
      this.send(errorBytes(eb.code, eb.message));
      return;
    }
    if (data.length < this.blksize) {
      this.lastBlock = block;
      this.state = 'done';
      this.ack(block, false);
      this.arm(this.dallyMs);
      return;
    }
    if (this.inWindow >= this.windowsize) this.ack(block);
    else this.arm();
  }

  private ack(block: number, rearm = true): void {
    this.inWindow = 0;
    this.acksSent++;
    this.send(ackBytes(block));
    if (rearm) this.arm();
  }

  protected retransmit(): void {
    if (this.state === 'start') {
      // Nothing from the server yet: repeat the request, as real clients do.
      this.send(encodeRequest(Opcode.RRQ, 'download', 'octet'));
      this.arm();
      return;
    }
    this.gapAcked = false;
    this.ack(this.expected - 1);
  }
}

export interface WriterOptions extends ClientTiming {
  /** Stop (send ERROR code/message) instead of sending this block. */
  readonly errorAtBlock?: { readonly block: number; readonly code: number; readonly message: string };
}

/**
 * An uploading client: sends `windowsize` blocks, waits for an ACK; an ACK inside the window
 * restarts after the acknowledged block, a duplicate ACK is ignored (never a resend: Sorcerer's
 * Apprentice), a timeout resends the window from the first unacknowledged block.
 */
export class TestWriter extends TestClient {
  dataSent = 0;
  private base = 1;
  private next = 1;
  private lastBlock = 1;

  /** `wire` is the upload as it travels (already netascii-encoded if the mode says so). */
  constructor(
    clock: Clock,
    send: (bytes: Buffer) => void,
    private readonly wire: Buffer,
    private readonly options: WriterOptions = {},
  ) {
    super(clock, send, options);
  }

  start(): void {
    this.arm();
  }

  protected onPacket(p: Packet): void {
    switch (p.opcode) {
      case Opcode.OACK:
        if (this.state !== 'start') return; // a repeated OACK: our DATA 1 is on its way or will be resent
        this.oack = new Map(p.options);
        this.blksize = grantedInt(p.options, 'blksize', 512);
        this.windowsize = grantedInt(p.options, 'windowsize', 1);
        this.begin();
        return;
      case Opcode.ACK:
        this.onAck(p.block);
        return;
      default:
        return;
    }
  }

  private begin(): void {
    this.lastBlock = Math.floor(this.wire.length / this.blksize) + 1;
    this.state = 'transferring';
    this.sendWindow();
  }

  private onAck(wire: number): void {
    if (this.state === 'start') {
      if (wire === 0) this.begin();
      return;
    }
    if (this.state !== 'transferring') return;
    const acked = nearestBlock(wire, this.base);
    if (acked < this.base || acked >= this.next) return; // duplicate or bogus: the timer resends
    this.retries = 0;
    this.base = acked + 1;
    if (acked === this.lastBlock) {
      this.state = 'done';
      this.disarm();
      return;
    }
    this.next = this.base; // end of window, or a restart after the last block the server has
    this.sendWindow();
  }

  private sendWindow(): void {
    while (this.next < this.base + this.windowsize && this.next <= this.lastBlock) {
      const block = this.next;
      const eb = this.options.errorAtBlock;
      if (eb && eb.block === block) {
        this.state = 'error';
        this.disarm();
        this.send(errorBytes(eb.code, eb.message));
        return;
      }
      const start = (block - 1) * this.blksize;
      this.dataSent++;
      this.send(dataBytes(block, this.wire.subarray(start, Math.min(start + this.blksize, this.wire.length))));
      this.next++;
    }
    this.arm();
  }

  protected retransmit(): void {
    if (this.state === 'start') {
      // No OACK / ACK 0 yet: repeat the request, as real clients do.
      this.send(encodeRequest(Opcode.WRQ, 'upload', 'octet'));
      this.arm();
      return;
    }
    this.next = this.base;
    this.sendWindow();
  }
}
