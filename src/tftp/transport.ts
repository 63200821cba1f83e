import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { TransferError } from '../errors.js';
import type { Logger } from '../ops/logger.js';

/** The other end of a datagram. */
export interface Peer {
  readonly address: string;
  readonly port: number;
}

/**
 * What the dispatcher needs of a UDP socket: a dgram socket in production, a socket on a fake
 * network in the dispatcher's virtual-clock tests.
 */
export interface DatagramSocket {
  /** The bound port (a transfer's server-side TID in per-transfer mode). */
  readonly localPort: number;
  /** Sends one datagram made of `segments`; `done` runs once it has left (or failed). */
  send(segments: readonly Buffer[], to: Peer, done?: (err: Error | null) => void): void;
  /** Closes the socket; a datagram not yet handed to the kernel is lost (see TransferChannel). */
  close(): void;
  onMessage(handler: (msg: Buffer, from: Peer) => void): void;
}

/** Opens the sockets of per-transfer mode. */
export interface TransferSocketFactory {
  /** A fresh socket on the listening socket's address, for one transfer. Throws TransferError BUSY. */
  open(listening: DatagramSocket): Promise<DatagramSocket>;
}

/**
 * dgram's `lookup` for sockets that only ever send to addresses they received from: an IP
 * literal is used as it is, in the same tick. The default (dns.lookup) defers every send to the
 * next tick even for a literal, which costs a tick per datagram on the lock-step path.
 */
export const literalAddressLookup = ((address: string, family: number | dns.LookupOneOptions, callback: (err: Error | null, address: string, family: number) => void): void => {
  // dgram passes the family as a number (4 or 6), whatever @types/node says.
  if (net.isIP(address) !== 0) callback(null, address, typeof family === 'number' ? family : (family.family as number));
  else dns.lookup(address, typeof family === 'number' ? { family } : family, callback);
}) as NonNullable<dgram.SocketOptions['lookup']>;

/** A bound dgram socket as a DatagramSocket. */
export class UdpSocket implements DatagramSocket {
  constructor(readonly socket: dgram.Socket) {}

  get localPort(): number {
    return this.socket.address().port;
  }

  get localAddress(): string {
    return this.socket.address().address;
  }

  send(segments: readonly Buffer[], to: Peer, done?: (err: Error | null) => void): void {
    // Without a callback Node sends at once (no extra tick per datagram); errors (rare: ENOBUFS)
    // then surface as the socket's 'error' event, and the session's timer retransmits.
    if (done) this.socket.send(segments as Buffer[], to.port, to.address, done);
    else this.socket.send(segments as Buffer[], to.port, to.address);
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }

  onMessage(handler: (msg: Buffer, from: Peer) => void): void {
    this.socket.on('message', handler);
  }
}

/**
 * Per-transfer sockets on the listening address: any free port, or a free one from `portRange`
 * (tried from a random start, so transfers spread out).
 */
export class UdpTransferSocketFactory implements TransferSocketFactory {
  constructor(
    private readonly portRange: { readonly low: number; readonly high: number } | undefined,
    private readonly logger: Logger,
  ) {}

  async open(listening: DatagramSocket): Promise<DatagramSocket> {
    const local = (listening as UdpSocket).socket.address();
    const type = local.family === 'IPv6' ? 'udp6' : 'udp4';
    const range = this.portRange;
    const span = range ? range.high - range.low + 1 : 1;
    const first = range ? Math.floor(Math.random() * span) : 0;
    for (let i = 0; i < Math.min(span, 64); i++) {
      const port = range ? range.low + ((first + i) % span) : 0;
      const socket = dgram.createSocket({ type, lookup: literalAddressLookup });
      try {
        await new Promise<void>((resolve, reject) => {
          socket.once('error', reject);
          socket.bind({ address: local.address, port, exclusive: true }, () => {
            socket.off('error', reject);
            resolve();
          });
        });
      } catch {
        socket.close();
        continue;
      }
      socket.on('error', (err) => this.logger.warn({ err: err.message }, 'transfer socket error'));
      return new UdpSocket(socket);
    }
    throw new TransferError('BUSY', 'no free port in --port-range');
  }
}
