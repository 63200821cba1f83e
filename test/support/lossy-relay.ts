import dgram from 'node:dgram';
import { mulberry32 } from './prng.js';

/**
 * A lossy UDP relay on loopback, between TFTP clients and a server: it drops, duplicates and
 * reorders datagrams with a seeded PRNG, independently in each direction. Each client address gets
 * an upstream socket of its own, so the server sees one peer per client. Replies always leave from
 * the relay's own port, so a server that answers from a fresh port (RFC 1350 per-transfer TIDs,
 * tftpd-hpa) looks like a single-port server to the client; requests (RRQ/WRQ) always go to the
 * server's listening port, everything else to the port the server last answered from.
 */

export interface LossProfile {
  /** Probability a datagram is dropped, 0..1. */
  readonly loss: number;
  /** Probability a (kept) datagram is sent twice. */
  readonly duplicate?: number;
  /** Probability a (kept) datagram is held back and sent after the next one (or after `reorderDelayMs`). */
  readonly reorder?: number;
  readonly reorderDelayMs?: number;
}

export interface RelayOptions {
  readonly target: { readonly host: string; readonly port: number };
  readonly seed: number;
  /** Client → server. */
  readonly up: LossProfile;
  /** Server → client. */
  readonly down: LossProfile;
  /** Upstream sockets (clients) at most; the oldest is closed past it. */
  readonly maxClients?: number;
}

export interface RelayStats {
  forwarded: number;
  dropped: number;
  duplicated: number;
  reordered: number;
}

interface Lane {
  held: { msg: Buffer; timer: NodeJS.Timeout } | undefined;
}

interface Peer {
  readonly upstream: dgram.Socket;
  serverPort: number;
  readonly up: Lane;
  readonly down: Lane;
}

export class LossyRelay {
  readonly stats = { up: zero(), down: zero() };
  private readonly socket: dgram.Socket;
  private readonly peers = new Map<string, Peer>();
  private readonly random: () => number;
  private closed = false;

  private constructor(
    private readonly options: RelayOptions,
    socket: dgram.Socket,
  ) {
    this.socket = socket;
    this.random = mulberry32(options.seed);
    socket.on('message', (msg, rinfo) => this.fromClient(msg, rinfo));
    socket.on('error', () => undefined);
  }

  static async start(options: RelayOptions): Promise<LossyRelay> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new LossyRelay(options, socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  private peerFor(rinfo: dgram.RemoteInfo): Peer {
    const id = `${rinfo.address}:${rinfo.port}`;
    let peer = this.peers.get(id);
    if (peer) return peer;
    const upstream = dgram.createSocket('udp4');
    upstream.bind(0, '127.0.0.1');
    upstream.on('error', () => undefined);
    const created: Peer = { upstream, serverPort: this.options.target.port, up: { held: undefined }, down: { held: undefined } };
    upstream.on('message', (msg, from) => {
      created.serverPort = from.port;
      this.pass(msg, this.options.down, created.down, this.stats.down, (m) => this.socket.send(m, rinfo.port, rinfo.address, noop));
    });
    this.peers.set(id, created);
    const max = this.options.maxClients ?? 256;
    if (this.peers.size > max) {
      const [oldest, old] = this.peers.entries().next().value as [string, Peer];
      this.peers.delete(oldest);
      closePeer(old);
    }
    return created;
  }

  private fromClient(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closed) return;
    const peer = this.peerFor(rinfo);
    const opcode = msg.length >= 2 ? msg.readUInt16BE(0) : 0;
    const send = (m: Buffer): void => {
      const port = opcode === 1 || opcode === 2 ? this.options.target.port : peer.serverPort;
      peer.upstream.send(m, port, this.options.target.host, noop);
    };
    this.pass(msg, this.options.up, peer.up, this.stats.up, send);
  }

  private pass(msg: Buffer, profile: LossProfile, lane: Lane, stats: RelayStats, send: (m: Buffer) => void): void {
    if (this.closed) return;
    if (this.random() < profile.loss) {
      stats.dropped++;
      return;
    }
    const copy = Buffer.from(msg);
    const dup = this.random() < (profile.duplicate ?? 0);
    const reorder = this.random() < (profile.reorder ?? 0);
    const emit = (m: Buffer): void => {
      stats.forwarded++;
      send(m);
      if (dup) {
        stats.duplicated++;
        send(m);
      }
    };
    // A held datagram goes out right after the next one: the two swap places.
    const held = lane.held;
    if (reorder && !held) {
      stats.reordered++;
      const timer = setTimeout(() => {
        if (lane.held?.msg === copy) {
          lane.held = undefined;
          if (!this.closed) emit(copy);
        }
      }, profile.reorderDelayMs ?? 20);
      lane.held = { msg: copy, timer };
      return;
    }
    emit(copy);
    if (held) {
      clearTimeout(held.timer);
      lane.held = undefined;
      emit(held.msg);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const peer of this.peers.values()) closePeer(peer);
    this.peers.clear();
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}

function closePeer(peer: Peer): void {
  for (const lane of [peer.up, peer.down]) if (lane.held) clearTimeout(lane.held.timer);
  try {
    peer.upstream.close();
  } catch {
    // already closed
  }
}

function zero(): RelayStats {
  return { forwarded: 0, dropped: 0, duplicated: 0, reordered: 0 };
}

const noop = (): void => undefined;
