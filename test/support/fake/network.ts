import { decodePacket, Opcode, type Packet } from '../../../src/tftp/protocol/packet.js';
import type { PeerChannel } from '../../../src/tftp/session/types.js';
import { mulberry32 } from '../prng.js';
import type { VirtualClock } from './clock.js';
import { describePacket } from './datagrams.js';

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
      this.toClient.send(Buffer.concat(segments));
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
