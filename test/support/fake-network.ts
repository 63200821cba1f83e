/**
 * An in-process network for session tests: a virtual clock, lossy links driven by a seeded PRNG,
 * minimal RFC-correct TFTP clients (reader and writer, with RFC 7440 windows) and in-memory
 * storage fakes. Nothing here touches a socket or the wall clock, so a run is fast and the same
 * seed always gives the same packet history.
 *
 * Client-side packets are built by hand here (not with the codec under test), so a codec bug cannot
 * hide itself; packets are decoded with `decodePacket`, as the dispatcher does.
 */
import { negotiateOptions, buildOack, type NegotiationLimits } from '../../src/protocol/options.js';
import { decodePacket, encodeRequest, Opcode, type Packet } from '../../src/protocol/packet.js';
import { TransferError } from '../../src/errors.js';
import { ReadSession } from '../../src/session/read-session.js';
import type {
  Clock,
  PeerChannel,
  ReadSource,
  RetransmitPolicy,
  TimerHandle,
  TransferStats,
  UploadSink,
} from '../../src/session/types.js';
import { WriteSession } from '../../src/session/write-session.js';

// ---------------------------------------------------------------------------------------------
// Seeded PRNG

export { mulberry32 } from './prng.js';
import { mulberry32 } from './prng.js';

/** Deterministic pseudo-random bytes. */
export function seededBytes(seed: number, length: number): Buffer {
  const rng = mulberry32(seed);
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(rng() * 256);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Virtual clock

interface VirtualTimer {
  readonly due: number;
  readonly seq: number;
  readonly fn: () => void;
  readonly tag: string;
  live: boolean;
}

interface VirtualHandle extends TimerHandle {
  readonly timer: VirtualTimer;
}

/**
 * A virtual clock. Timers fire in (due time, creation order); between two timers the microtask and
 * immediate queues are drained, so promise chains settle "instantly" in virtual time, as they would
 * between two real timer callbacks. Every timer carries a tag ('session', 'client', 'net',
 * 'storage', ...) so a test can ask whether a given party left timers behind.
 */
export class VirtualClock implements Clock {
  private time = 0;
  private seq = 0;
  /** Pending timers sorted by (due, seq). */
  private queue: VirtualTimer[] = [];
  private readonly counts = new Map<string, number>();
  /** Timers fired so far (all tags). */
  fired = 0;

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.schedule(fn, ms, 'default');
  }

  clearTimeout(handle: TimerHandle): void {
    const timer = (handle as VirtualHandle | undefined)?.timer;
    if (!timer || !timer.live) return;
    timer.live = false;
    const i = this.queue.indexOf(timer);
    if (i !== -1) this.queue.splice(i, 1);
    this.counts.set(timer.tag, (this.counts.get(timer.tag) ?? 1) - 1);
  }

  schedule(fn: () => void, ms: number, tag: string): TimerHandle {
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const timer: VirtualTimer = { due: this.time + delay, seq: this.seq++, fn, tag, live: true };
    // Binary search for the insertion point (after every timer with due <= this one).
    let lo = 0;
    let hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.queue[mid]!.due <= timer.due) lo = mid + 1;
      else hi = mid;
    }
    this.queue.splice(lo, 0, timer);
    this.counts.set(tag, (this.counts.get(tag) ?? 0) + 1);
    const handle: VirtualHandle = { timer };
    return handle;
  }

  /** A `Clock` whose timers carry `tag` (for example the session under test's own view). */
  tagged(tag: string): Clock {
    return {
      now: () => this.now(),
      setTimeout: (fn, ms) => this.schedule(fn, ms, tag),
      clearTimeout: (h) => this.clearTimeout(h),
    };
  }

  /** Pending timers, all of them or those with `tag`. */
  pending(tag?: string): number {
    if (tag === undefined) return this.queue.length;
    return this.counts.get(tag) ?? 0;
  }

  /** Due time of the next pending timer. */
  nextDue(): number | undefined {
    return this.queue[0]?.due;
  }

  /** Lets promise callbacks (and anything queued with setImmediate) run. */
  async settle(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /** Fires, in order, every timer due at or before `untilMs`, then sets the time to `untilMs`. */
  async run(untilMs: number, stopWhen?: () => boolean): Promise<void> {
    await this.settle();
    for (;;) {
      if (stopWhen?.()) return;
      const timer = this.queue[0];
      if (timer === undefined || timer.due > untilMs) break;
      this.queue.shift();
      timer.live = false;
      this.counts.set(timer.tag, (this.counts.get(timer.tag) ?? 1) - 1);
      this.time = timer.due;
      this.fired++;
      timer.fn();
      await this.settle();
    }
    if (untilMs > this.time && Number.isFinite(untilMs)) this.time = untilMs;
  }

  /** Moves time forward by `ms`, firing timers on the way. */
  async advance(ms: number): Promise<void> {
    await this.run(this.time + ms);
  }

  /**
   * Runs until no timer is pending (the whole system is quiet), or `stopWhen` holds. Throws if that
   * takes longer than `limitMs` of virtual time (a livelock) or `maxEvents` timers.
   */
  async runUntilIdle(limitMs = 3_600_000, stopWhen?: () => boolean, maxEvents = 5_000_000): Promise<void> {
    const deadline = this.time + limitMs;
    const startFired = this.fired;
    await this.settle();
    for (;;) {
      if (stopWhen?.()) return;
      const timer = this.queue[0];
      if (timer === undefined) return;
      if (timer.due > deadline) throw new Error(`still busy after ${limitMs} ms of virtual time (${this.queue.length} timers pending: ${this.describePending()})`);
      if (this.fired - startFired > maxEvents) throw new Error(`more than ${maxEvents} timers fired`);
      this.queue.shift();
      timer.live = false;
      this.counts.set(timer.tag, (this.counts.get(timer.tag) ?? 1) - 1);
      this.time = timer.due;
      this.fired++;
      timer.fn();
      await this.settle();
    }
  }

  private describePending(): string {
    return [...this.counts].filter(([, n]) => n > 0).map(([t, n]) => `${t}=${n}`).join(' ');
  }
}

// ---------------------------------------------------------------------------------------------
// Hand-built datagrams (independent of the encoders under test)

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

export function ackBytes(block: number): Buffer {
  return Buffer.from([0, Opcode.ACK, ...u16(block & 0xffff)]);
}

export function dataBytes(block: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0, Opcode.DATA, ...u16(block & 0xffff)]), payload]);
}

export function errorBytes(code: number, message: string): Buffer {
  return Buffer.concat([Buffer.from([0, Opcode.ERROR, ...u16(code)]), Buffer.from(message, 'latin1'), Buffer.from([0])]);
}

/** A short human-readable name for trace assertions: 'DATA 3', 'ACK 0', 'OACK', 'ERROR 1'. */
export function describePacket(p: Packet | undefined): string {
  if (!p) return 'malformed';
  switch (p.opcode) {
    case Opcode.RRQ: return 'RRQ';
    case Opcode.WRQ: return 'WRQ';
    case Opcode.DATA: return `DATA ${p.block}`;
    case Opcode.ACK: return `ACK ${p.block}`;
    case Opcode.ERROR: return `ERROR ${p.code}`;
    case Opcode.OACK: return 'OACK';
  }
}

// ---------------------------------------------------------------------------------------------
// Links and network

export type Direction = 'toClient' | 'toServer';

export interface TraceEntry {
  readonly dir: Direction;
  /** Virtual time the packet was sent. */
  readonly time: number;
  readonly bytes: Buffer;
  readonly packet: Packet | undefined;
  /** What the link did with it: delivered (maybe twice), lost at random, or dropped by a script. */
  readonly fate: 'delivered' | 'duplicated' | 'lost' | 'dropped';
}

export interface LinkConfig {
  /** One-way delivery latency, ms (default 5). */
  readonly latencyMs?: number;
  /** Probability a datagram is lost. */
  readonly loss?: number;
  /** Probability a datagram is delivered twice. */
  readonly duplicate?: number;
  /** Probability a datagram is held back by up to `reorderDelayMs` extra, so later ones overtake it. */
  readonly reorder?: number;
  readonly reorderDelayMs?: number;
  /** Scripted drop: return true to drop this datagram (called once per datagram sent). */
  readonly drop?: (packet: Packet | undefined, entry: { time: number }) => boolean;
  /** Scripted extra delay for one datagram, ms. */
  readonly extraDelay?: (packet: Packet | undefined) => number;
}

/** A predicate that matches `match` and answers true for its first `times` matches (default 1). */
export function firstMatches(match: (p: Packet) => boolean, times = 1): (p: Packet | undefined) => boolean {
  let left = times;
  return (p) => {
    if (!p || !match(p) || left <= 0) return false;
    left--;
    return true;
  };
}

export const isData = (block?: number) => (p: Packet): boolean =>
  p.opcode === Opcode.DATA && (block === undefined || p.block === (block & 0xffff));
export const isAck = (block?: number) => (p: Packet): boolean =>
  p.opcode === Opcode.ACK && (block === undefined || p.block === (block & 0xffff));
export const isOack = (p: Packet): boolean => p.opcode === Opcode.OACK;

class Link {
  private readonly rng: () => number;
  constructor(
    private readonly clock: VirtualClock,
    seed: number,
    private readonly dir: Direction,
    private readonly config: LinkConfig,
    private readonly trace: TraceEntry[],
    private readonly deliver: (bytes: Buffer) => void,
  ) {
    this.rng = mulberry32(seed);
  }

  send(bytes: Buffer): void {
    const decoded = decodePacket(bytes);
    const packet = decoded.ok ? decoded.packet : undefined;
    const time = this.clock.now();
    const c = this.config;
    // Draw the same number of random values for every datagram, so one scripted drop does not
    // reshuffle the fate of every later packet.
    const rLoss = this.rng();
    const rDup = this.rng();
    const rReorder = [this.rng(), this.rng()] as const;
    const rReorder2 = [this.rng(), this.rng()] as const;
    if (c.drop?.(packet, { time })) {
      this.trace.push({ dir: this.dir, time, bytes, packet, fate: 'dropped' });
      return;
    }
    if (rLoss < (c.loss ?? 0)) {
      this.trace.push({ dir: this.dir, time, bytes, packet, fate: 'lost' });
      return;
    }
    const copies = rDup < (c.duplicate ?? 0) ? 2 : 1;
    this.trace.push({ dir: this.dir, time, bytes, packet, fate: copies === 2 ? 'duplicated' : 'delivered' });
    const base = (c.latencyMs ?? 5) + (c.extraDelay?.(packet) ?? 0);
    for (let i = 0; i < copies; i++) {
      const r = i === 0 ? rReorder : rReorder2;
      const extra = r[0] < (c.reorder ?? 0) ? r[1] * (c.reorderDelayMs ?? 4 * (c.latencyMs ?? 5)) : 0;
      this.clock.schedule(() => this.deliver(bytes), base + extra + i * 0.5, 'net');
    }
  }
}

export interface PacketHandler {
  handle(packet: Packet): void;
}

export interface NetworkOptions {
  readonly seed?: number;
  readonly toClient?: LinkConfig;
  readonly toServer?: LinkConfig;
}

/**
 * Two links between the session under test (the "server") and a client. The session gets
 * `serverPeer` as its PeerChannel; the client sends with `clientSend`. Datagrams reaching the
 * session are decoded first and malformed ones dropped, as the dispatcher does.
 */
export class FakeNetwork {
  readonly trace: TraceEntry[] = [];
  private readonly toClient: Link;
  private readonly toServer: Link;
  private server: PacketHandler | undefined;
  private client: PacketHandler | undefined;
  /** Set once the session has ended; anything it sends afterwards is a bug. */
  sentAfterEnd = 0;
  serverEnded = false;

  constructor(readonly clock: VirtualClock, options: NetworkOptions = {}) {
    const seed = options.seed ?? 1;
    this.toClient = new Link(clock, seed * 2 + 1, 'toClient', options.toClient ?? {}, this.trace, (b) => this.deliverToClient(b));
    this.toServer = new Link(clock, seed * 2 + 2, 'toServer', options.toServer ?? {}, this.trace, (b) => this.deliverToServer(b));
  }

  readonly serverPeer: PeerChannel = {
    send: (segments) => {
      if (this.serverEnded) this.sentAfterEnd++;
      // Copy now: the segments may be views into storage buffers.
      this.toClient.send(Buffer.concat(segments as Buffer[]));
    },
  };

  clientSend(bytes: Buffer): void {
    this.toServer.send(bytes);
  }

  connect(server: PacketHandler, client: PacketHandler | undefined): void {
    this.server = server;
    this.client = client;
  }

  private deliverToServer(bytes: Buffer): void {
    const d = decodePacket(bytes);
    if (!d.ok) return;
    // A repeated request reaches the session as the dispatcher passes it on.
    if (d.packet.opcode === Opcode.RRQ || d.packet.opcode === Opcode.WRQ) (this.server as { repeatFirst?: () => void } | undefined)?.repeatFirst?.();
    else this.server?.handle(d.packet);
  }

  private deliverToClient(bytes: Buffer): void {
    const d = decodePacket(bytes);
    if (d.ok) this.client?.handle(d.packet);
  }

  /** Packets sent in one direction (whatever their fate), as short names: ['OACK', 'DATA 1', ...]. */
  sent(dir: Direction): string[] {
    return this.trace.filter((e) => e.dir === dir).map((e) => describePacket(e.packet));
  }

  /** Trace entries from the session matching an opcode. */
  fromServer(opcode?: Opcode): TraceEntry[] {
    return this.trace.filter((e) => e.dir === 'toClient' && (opcode === undefined || e.packet?.opcode === opcode));
  }

  fromClient(opcode?: Opcode): TraceEntry[] {
    return this.trace.filter((e) => e.dir === 'toServer' && (opcode === undefined || e.packet?.opcode === opcode));
  }
}

// ---------------------------------------------------------------------------------------------
// Test clients

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
export class TestReader implements PacketHandler {
  state: ClientState = 'start';
  readonly chunks: Buffer[] = [];
  oack: Map<string, string> | undefined;
  error: { code: number; message: string } | undefined;
  blksize = 512;
  windowsize = 1;
  acksSent = 0;
  private expected = 1;
  private inWindow = 0;
  private gapAcked = false;
  private retries = 0;
  private lastBlock = 0;
  private timer: TimerHandle | undefined;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly dallyMs: number;

  constructor(
    private readonly clock: Clock,
    private readonly send: (bytes: Buffer) => void,
    private readonly options: ReaderOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 1000;
    this.maxRetries = options.maxRetries ?? 8;
    this.dallyMs = options.dallyMs ?? 3 * this.timeoutMs;
  }

  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Arms the first wait (the first request is not modelled: the session starts directly; repeats are). */
  start(): void {
    this.arm(this.timeoutMs);
  }

  handle(p: Packet): void {
    switch (p.opcode) {
      case Opcode.OACK:
        this.onOack(p.options);
        return;
      case Opcode.DATA:
        this.onData(p.block, p.data);
        return;
      case Opcode.ERROR:
        if (this.state === 'start' || this.state === 'transferring') {
          this.error = { code: p.code, message: p.message };
          this.state = 'error';
          this.disarm();
        }
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
    else this.arm(this.timeoutMs);
  }

  private ack(block: number, rearm = true): void {
    this.inWindow = 0;
    this.acksSent++;
    this.send(ackBytes(block));
    if (rearm) this.arm(this.timeoutMs);
  }

  private onTimeout(): void {
    if (this.state === 'done') return; // dally over: quiet
    if (this.state !== 'transferring' && this.state !== 'start') return;
    this.retries++;
    if (this.retries > this.maxRetries) {
      this.state = 'failed';
      return;
    }
    if (this.state === 'start') {
      // Nothing from the server yet: repeat the request, as real clients do.
      this.send(encodeRequest(Opcode.RRQ, 'download', 'octet'));
      this.arm(this.timeoutMs);
      return;
    }
    this.gapAcked = false;
    this.ack(this.expected - 1);
  }

  private arm(ms: number): void {
    this.disarm();
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.onTimeout();
    }, ms);
  }

  private disarm(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
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
export class TestWriter implements PacketHandler {
  state: ClientState = 'start';
  oack: Map<string, string> | undefined;
  error: { code: number; message: string } | undefined;
  blksize = 512;
  windowsize = 1;
  dataSent = 0;
  private base = 1;
  private next = 1;
  private lastBlock = 1;
  private retries = 0;
  private timer: TimerHandle | undefined;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;

  /** `wire` is the upload as it travels (already netascii-encoded if the mode says so). */
  constructor(
    private readonly clock: Clock,
    private readonly send: (bytes: Buffer) => void,
    private readonly wire: Buffer,
    private readonly options: WriterOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 1000;
    this.maxRetries = options.maxRetries ?? 8;
  }

  start(): void {
    this.arm();
  }

  handle(p: Packet): void {
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
      case Opcode.ERROR:
        if (this.state === 'start' || this.state === 'transferring') {
          this.error = { code: p.code, message: p.message };
          this.state = 'error';
          this.disarm();
        }
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

  private onTimeout(): void {
    if (this.state !== 'transferring' && this.state !== 'start') return;
    this.retries++;
    if (this.retries > this.maxRetries) {
      this.state = 'failed';
      return;
    }
    if (this.state === 'start') {
      // No OACK / ACK 0 yet: repeat the request, as real clients do.
      this.send(encodeRequest(Opcode.WRQ, 'upload', 'octet'));
      this.arm();
      return;
    }
    this.next = this.base;
    this.sendWindow();
  }

  private arm(): void {
    this.disarm();
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.onTimeout();
    }, this.timeoutMs);
  }

  private disarm(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Storage fakes

export interface MemorySourceOptions {
  /** Virtual delay of each `load`; 0/undefined: everything is in memory from the start. */
  readonly loadDelayMs?: number;
  /** Granularity of loading, bytes (default 4096). */
  readonly rangeSize?: number;
  /** Report the size as unknown (as a netascii source does). */
  readonly unknownSize?: boolean;
  /** A load touching bytes at or beyond this offset rejects with `error`. */
  readonly failAt?: { readonly offset: number; readonly error: unknown };
  /** Return each slice as two segments when possible (exercises multi-segment sends). */
  readonly splitSegments?: boolean;
}

/** An in-memory ReadSource. With a load delay, ranges become available only after `load` resolves. */
export class MemorySource implements ReadSource {
  readonly size: number | undefined;
  private readonly loaded = new Set<number>();
  loads = 0;
  closeCalls = 0;
  releasedTo = 0;
  /** slice() calls after close(): a session must not read a closed source. */
  slicesAfterClose = 0;

  constructor(
    readonly data: Buffer,
    private readonly clock: VirtualClock | undefined = undefined,
    private readonly options: MemorySourceOptions = {},
  ) {
    this.size = options.unknownSize ? undefined : data.length;
  }

  private get rangeSize(): number {
    return this.options.rangeSize ?? 4096;
  }

  private ready(offset: number, length: number): boolean {
    if (!this.options.loadDelayMs) return true;
    const end = Math.min(offset + length, this.data.length);
    if (offset >= end) return true; // past the end: the answer (nothing) needs no load
    for (let r = Math.floor(offset / this.rangeSize); r * this.rangeSize < end; r++) if (!this.loaded.has(r)) return false;
    return true;
  }

  slice(offset: number, length: number): readonly Buffer[] | undefined {
    if (this.closeCalls > 0) this.slicesAfterClose++;
    if (this.options.failAt && offset + length > this.options.failAt.offset && offset < this.data.length) return undefined;
    if (!this.ready(offset, length)) return undefined;
    const end = Math.min(offset + length, this.data.length);
    if (offset >= end) return [];
    const view = this.data.subarray(offset, end);
    if (this.options.splitSegments && view.length >= 2) {
      const mid = view.length >> 1;
      return [view.subarray(0, mid), view.subarray(mid)];
    }
    return [view];
  }

  load(offset: number, length: number): Promise<void> {
    this.loads++;
    const fail = this.options.failAt;
    const delay = this.options.loadDelayMs ?? 0;
    return new Promise<void>((resolve, reject) => {
      const finish = (): void => {
        if (fail && offset + length > fail.offset) {
          reject(fail.error);
          return;
        }
        const end = Math.min(offset + length, this.data.length);
        for (let r = Math.floor(offset / this.rangeSize); r * this.rangeSize < end; r++) this.loaded.add(r);
        resolve();
      };
      if (delay > 0 && this.clock) this.clock.schedule(finish, delay, 'storage');
      else finish();
    });
  }

  release(offset: number): void {
    this.releasedTo = Math.max(this.releasedTo, offset);
  }

  close(): void {
    this.closeCalls++;
  }
}

export interface MemorySinkOptions {
  /** Each write returns a promise settling after this virtual delay (backpressure). */
  readonly writeDelayMs?: number;
  /** finish() resolves after this virtual delay. */
  readonly finishDelayMs?: number;
  /** The nth write (1-based) rejects with `error`. */
  readonly failWrite?: { readonly nth: number; readonly error: unknown };
  /** finish() rejects with this. */
  readonly failFinish?: unknown;
}

/** An in-memory UploadSink recording every call. */
export class MemorySink implements UploadSink {
  readonly chunks: Buffer[] = [];
  writes = 0;
  finishCalls = 0;
  /** Virtual time at which finish() resolved. */
  finishedAt: number | undefined;
  readonly aborts: string[] = [];
  /** Writes after finish/abort: a session must not do that. */
  lateWrites = 0;

  constructor(
    private readonly clock: VirtualClock | undefined = undefined,
    private readonly options: MemorySinkOptions = {},
  ) {}

  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }

  write(chunk: Buffer): Promise<void> | undefined {
    this.writes++;
    if (this.finishCalls > 0 || this.aborts.length > 0) this.lateWrites++;
    this.chunks.push(Buffer.from(chunk));
    const fail = this.options.failWrite;
    const delay = this.options.writeDelayMs ?? 0;
    if (fail && fail.nth === this.writes) {
      return this.later(delay, () => Promise.reject(fail.error));
    }
    if (delay > 0) return this.later(delay, () => Promise.resolve());
    return undefined;
  }

  finish(): Promise<void> {
    this.finishCalls++;
    return this.later(this.options.finishDelayMs ?? 0, () => {
      if (this.options.failFinish !== undefined) return Promise.reject(this.options.failFinish);
      this.finishedAt = this.clock?.now() ?? 0;
      return Promise.resolve();
    });
  }

  abort(reason: string): Promise<void> {
    this.aborts.push(reason);
    return Promise.resolve();
  }

  private later(delay: number, settle: () => Promise<void>): Promise<void> {
    if (delay <= 0 || !this.clock) return settle();
    const clock = this.clock;
    return new Promise<void>((resolve, reject) => {
      clock.schedule(() => settle().then(resolve, reject), delay, 'storage');
    });
  }
}

export function storageError(code: ConstructorParameters<typeof TransferError>[0], message = 'storage says no'): TransferError {
  return new TransferError(code, message);
}

// ---------------------------------------------------------------------------------------------
// Harnesses: a session wired to a client over a fake network

export const TEST_POLICY: RetransmitPolicy = { initialMs: 200, minMs: 50, maxMs: 2000, maxRetries: 5 };

export interface HarnessOptions extends NetworkOptions {
  /** Options the client asks for (before negotiation), in order. */
  readonly request?: Record<string, string>;
  readonly limits?: Partial<NegotiationLimits>;
  readonly policy?: RetransmitPolicy;
}

interface HarnessBase {
  readonly clock: VirtualClock;
  readonly net: FakeNetwork;
  readonly ends: TransferStats[];
  readonly oack: ReadonlyMap<string, string>;
  /** Starts session and client. */
  start(): void;
  /** Runs the virtual world until nothing is left to do. */
  runToIdle(limitMs?: number): Promise<void>;
}

export interface ReadHarness extends HarnessBase {
  readonly session: ReadSession;
  readonly source: MemorySource;
  readonly client: TestReader;
}

export interface WriteHarness extends HarnessBase {
  readonly session: WriteSession;
  readonly sink: MemorySink;
  readonly client: TestWriter;
}

function negotiate(options: HarnessOptions, tsize: number | undefined) {
  const requested = new Map(Object.entries(options.request ?? {}));
  const negotiated = negotiateOptions(requested, {
    maxBlksize: options.limits?.maxBlksize ?? 65464,
    maxWindowsize: options.limits?.maxWindowsize ?? 64,
    ...(options.limits?.refused ? { refused: options.limits.refused } : {}),
  });
  const oack = buildOack(requested, negotiated, tsize ?? negotiated.requestedTsize);
  return { negotiated, oack };
}

export function readHarness(
  data: Buffer,
  options: HarnessOptions & {
    readonly source?: MemorySourceOptions;
    readonly client?: ReaderOptions;
    readonly maxBytesInFlight?: number;
  } = {},
): ReadHarness {
  const clock = new VirtualClock();
  const net = new FakeNetwork(clock, options);
  const source = new MemorySource(data, clock, options.source ?? {});
  const tsize = source.size !== undefined && source.size > 0 ? source.size : undefined;
  const { negotiated, oack } = negotiate(options, tsize);
  const ends: TransferStats[] = [];
  const session = new ReadSession({
    peer: net.serverPeer,
    clock: clock.tagged('session'),
    policy: options.policy ?? TEST_POLICY,
    options: negotiated,
    oack,
    onEnd: (stats) => {
      net.serverEnded = true;
      ends.push(stats);
    },
    source,
    maxBytesInFlight: options.maxBytesInFlight ?? 1 << 20,
  });
  const client = new TestReader(clock.tagged('client'), (b) => net.clientSend(b), options.client ?? {});
  net.connect(session, client);
  return {
    clock,
    net,
    ends,
    oack,
    session,
    source,
    client,
    start: () => {
      session.start();
      client.start();
    },
    runToIdle: (limitMs) => clock.runUntilIdle(limitMs),
  };
}

export function writeHarness(
  wire: Buffer,
  options: HarnessOptions & {
    readonly sink?: MemorySinkOptions;
    readonly client?: WriterOptions;
    readonly netascii?: boolean;
    readonly maxBytes?: number;
  } = {},
): WriteHarness {
  const clock = new VirtualClock();
  const net = new FakeNetwork(clock, options);
  const sink = new MemorySink(clock, options.sink ?? {});
  const { negotiated, oack } = negotiate(options, undefined);
  const ends: TransferStats[] = [];
  const session = new WriteSession({
    peer: net.serverPeer,
    clock: clock.tagged('session'),
    policy: options.policy ?? TEST_POLICY,
    options: negotiated,
    oack,
    onEnd: (stats) => {
      net.serverEnded = true;
      ends.push(stats);
    },
    sink,
    netascii: options.netascii ?? false,
    maxBytes: options.maxBytes ?? Number.MAX_SAFE_INTEGER,
  });
  const client = new TestWriter(clock.tagged('client'), (b) => net.clientSend(b), wire, options.client ?? {});
  net.connect(session, client);
  return {
    clock,
    net,
    ends,
    oack,
    session,
    sink,
    client,
    start: () => {
      session.start();
      client.start();
    },
    runToIdle: (limitMs) => clock.runUntilIdle(limitMs),
  };
}
