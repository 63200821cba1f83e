import type { DatagramSocket, Peer, TransferSocketFactory } from '../../src/tftp/transport.js';
import type { VirtualClock } from './fake/clock.js';

/** One datagram as it left a socket. */
export interface WireDatagram {
  readonly time: number;
  readonly from: Peer;
  readonly to: Peer;
  readonly bytes: Buffer;
}

export interface VirtualUdpOptions {
  /** One-way delay of every datagram, virtual ms (default 1). */
  readonly delayMs?: number;
  /** Decides whether a datagram that left is lost on the way (default: never). */
  readonly drop?: (d: WireDatagram) => boolean;
}

/**
 * UDP on a virtual clock, for the dispatcher's tests. Like Node's dgram, a datagram handed to
 * `send` leaves a tick later, and not at all if its socket is closed in the same tick: a channel
 * that closes too early loses its last datagram here as it would on a real socket.
 */
export class VirtualUdp {
  /** Every datagram that left a socket, in order. */
  readonly wire: WireDatagram[] = [];
  /** Datagrams that never left because their socket was closed first. */
  readonly lostOnClose: WireDatagram[] = [];
  private readonly sockets = new Map<string, VirtualSocket>();
  private nextPort = 40000;

  constructor(
    readonly clock: VirtualClock,
    private readonly options: VirtualUdpOptions = {},
  ) {}

  /** Opens a socket at `address` (a free port unless given). */
  open(address: string, port?: number): VirtualSocket {
    const p = port ?? this.nextPort++;
    const socket = new VirtualSocket(this, { address, port: p });
    this.sockets.set(`${address}|${p}`, socket);
    return socket;
  }

  /** Sockets not closed yet. */
  get openSockets(): number {
    return this.sockets.size;
  }

  /** A per-transfer socket factory opening sockets on the listening socket's address. */
  transferSockets(): TransferSocketFactory {
    return { open: (listening) => Promise.resolve(this.open((listening as VirtualSocket).local.address)) };
  }

  /** @internal */
  emit(from: VirtualSocket, segments: readonly Buffer[], to: Peer, done?: (err: Error | null) => void): void {
    const bytes = Buffer.concat(segments);
    this.clock.schedule(
      () => {
        const d: WireDatagram = { time: this.clock.now(), from: from.local, to, bytes };
        if (from.closed) {
          this.lostOnClose.push(d);
          done?.(new Error('socket closed'));
          return;
        }
        this.wire.push(d);
        done?.(null);
        if (this.options.drop?.(d)) return;
        this.clock.schedule(() => this.sockets.get(`${to.address}|${to.port}`)?.deliver(bytes, from.local), this.options.delayMs ?? 1, 'net');
      },
      0,
      'net',
    );
  }

  /** @internal */
  closed(socket: VirtualSocket): void {
    this.sockets.delete(`${socket.local.address}|${socket.local.port}`);
  }
}

export class VirtualSocket implements DatagramSocket {
  closed = false;
  private handler: ((msg: Buffer, from: Peer) => void) | undefined;
  /** What this socket received, in order. */
  readonly received: { time: number; from: Peer; bytes: Buffer }[] = [];

  constructor(
    private readonly net: VirtualUdp,
    readonly local: Peer,
  ) {}

  get localPort(): number {
    return this.local.port;
  }

  send(segments: readonly Buffer[], to: Peer, done?: (err: Error | null) => void): void {
    if (this.closed) return;
    this.net.emit(this, segments, to, done);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.net.closed(this);
  }

  onMessage(handler: (msg: Buffer, from: Peer) => void): void {
    this.handler = handler;
  }

  /** @internal */
  deliver(bytes: Buffer, from: Peer): void {
    if (this.closed) return;
    this.received.push({ time: this.net.clock.now(), from, bytes });
    this.handler?.(Buffer.from(bytes), from);
  }
}
