import { encodeError, Opcode, type ErrorCode } from './protocol/packet.js';
import type { ClientAddress } from '../policy/client-address.js';
import type { PeerChannel } from './session/types.js';
import type { DatagramSocket, Peer, TransferSocketFactory } from './transport.js';

/** What a channel reports as it sends. */
export interface ChannelCounters {
  sent(opcode: number): void;
  errorSent(code: number): void;
  suppressed(): void;
}

/** The allowance for peers that have not answered yet (ClientLimits, keyed by address). */
export type UnverifiedAllowance = (bytes: number) => boolean;

export interface ChannelOptions {
  readonly socket: DatagramSocket;
  readonly peer: Peer;
  /**
   * The socket belongs to this transfer (per-transfer mode): the channel closes it, and only after
   * its last datagram has left. A shared listening socket is never closed here.
   */
  readonly ownsSocket: boolean;
  readonly counters: ChannelCounters;
  /**
   * Bytes that may be sent per byte received from a peer that has not answered yet (a request
   * can carry a forged source address: this bounds the amplification); 0: no bound.
   */
  readonly unverifiedFactor: number;
  /** Per-address allowance for unverified peers, shared by every channel to that address. */
  readonly allowance: UnverifiedAllowance;
}

/**
 * One transfer's way to its client, the same in both port modes: counts what it sends (an ERROR
 * when it is sent), holds back what an unverified peer may not get, and owns a per-transfer socket
 * until the last datagram handed to it has left (a datagram given to a socket that is closed in
 * the same tick never leaves).
 */
export class TransferChannel implements PeerChannel {
  private verified = false;
  /** Bytes still allowed to an unverified peer (grows with each request it sends). */
  private budget = 0;
  /** Datagrams handed to an owned socket that have not left yet. */
  private pending = 0;
  private closing = false;
  private socketClosed = false;
  private readonly onSent = (): void => {
    this.pending--;
    if (this.closing && this.pending === 0) this.closeSocket();
  };

  constructor(private readonly options: ChannelOptions) {}

  get peer(): Peer {
    return this.options.peer;
  }

  get socket(): DatagramSocket {
    return this.options.socket;
  }

  /** The socket is this transfer's own (per-transfer mode), not the listening socket. */
  get ownsSocket(): boolean {
    return this.options.ownsSocket;
  }

  /** A request of `bytes` arrived from the peer: it earns that many times the factor in sends. */
  credit(bytes: number): void {
    this.budget += bytes * this.options.unverifiedFactor;
  }

  confirmed(): void {
    this.verified = true;
  }

  send(segments: readonly Buffer[]): void {
    if (this.closing) return;
    const first = segments[0];
    const opcode = first !== undefined && first.length >= 2 ? first.readUInt16BE(0) : 0;
    // ERRORs are tiny and end the transfer: never held back.
    if (!this.verified && opcode !== Opcode.ERROR && !this.mayAddress(segments)) {
      this.options.counters.suppressed();
      return;
    }
    this.options.counters.sent(opcode);
    if (opcode === Opcode.ERROR) this.options.counters.errorSent(first!.length >= 4 ? first!.readUInt16BE(2) : 0);
    if (this.options.ownsSocket) {
      this.pending++;
      this.options.socket.send(segments, this.options.peer, this.onSent);
    } else {
      this.options.socket.send(segments, this.options.peer);
    }
  }

  /** No more sends; an owned socket closes once everything handed to it has left. Idempotent. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.options.ownsSocket && this.pending === 0) this.closeSocket();
  }

  private mayAddress(segments: readonly Buffer[]): boolean {
    if (this.options.unverifiedFactor <= 0) return true;
    let bytes = 0;
    for (const s of segments) bytes += s.length;
    if (bytes > this.budget || !this.options.allowance(bytes)) return false;
    this.budget -= bytes;
    return true;
  }

  private closeSocket(): void {
    if (this.socketClosed) return;
    this.socketClosed = true;
    this.options.socket.close();
  }
}

export interface TransferChannelsOptions {
  readonly counters: ChannelCounters;
  /** Bytes per request byte to an unverified peer (see ChannelOptions.unverifiedFactor). */
  readonly unverifiedFactor: number;
  /** The per-address allowance for unverified peers (ClientLimiter.spendUnverified). */
  readonly allowance: (clientAddress: ClientAddress, bytes: number) => boolean;
  /** Per-transfer mode: where a transfer's own socket comes from. */
  readonly sockets?: TransferSocketFactory;
}

/**
 * The transport side of transfers: every way a datagram reaches a client. A transfer's channel is
 * either over the listening socket (single-port mode, ready at once) or over a socket of its own
 * (per-transfer mode, once bound); datagrams outside any transfer (strays, early refusals) leave
 * from the socket they answer.
 */
export class TransferChannels {
  constructor(private readonly options: TransferChannelsOptions) {}

  /** Single-port mode: a channel over the listening socket, credited with the request's bytes. */
  shared(listening: DatagramSocket, peer: Peer, clientAddress: ClientAddress, requestLength: number): TransferChannel {
    return this.channel(listening, peer, false, clientAddress, requestLength);
  }

  /**
   * Per-transfer mode: a channel over a fresh socket on the listening socket's address, which the
   * channel owns (closed after its last datagram). Rejects (TransferError BUSY) when none is free.
   */
  async own(listening: DatagramSocket, peer: Peer, clientAddress: ClientAddress, requestLength: number): Promise<TransferChannel> {
    if (!this.options.sockets) throw new Error('per-transfer mode needs a transfer socket factory');
    const socket = await this.options.sockets.open(listening);
    return this.channel(socket, peer, true, clientAddress, requestLength);
  }

  /** An ERROR outside any transfer (strays, refusals before a channel exists), counted as it is sent. */
  sendError(socket: DatagramSocket, to: Peer, code: ErrorCode, message: string): void {
    this.options.counters.errorSent(code);
    this.options.counters.sent(Opcode.ERROR);
    socket.send([encodeError(code, message)], to);
  }

  private channel(socket: DatagramSocket, peer: Peer, ownsSocket: boolean, clientAddress: ClientAddress, requestLength: number): TransferChannel {
    const channel = new TransferChannel({
      socket,
      peer,
      ownsSocket,
      counters: this.options.counters,
      unverifiedFactor: this.options.unverifiedFactor,
      allowance: (bytes) => this.options.allowance(clientAddress, bytes),
    });
    channel.credit(requestLength);
    return channel;
  }
}
