import dgram from 'node:dgram';
import { decodePacket, type Packet } from '../../src/tftp/protocol/packet.js';

/** A decoded datagram as a test peer received it. */
export interface Received {
  readonly packet: Packet;
  /** Sender's address and port (the gateway's transfer port). */
  readonly address: string;
  readonly port: number;
  /** Bytes on the wire. */
  readonly size: number;
}

/** Every datagram received, decodable or not, with its size and arrival time (amplification accounting). */
export interface Arrival {
  readonly packet: Packet | undefined;
  readonly size: number;
  readonly at: number;
}

/**
 * A UDP socket playing a TFTP peer in tests: bind, send, wait for the next datagram with a
 * deadline (on the 'message' event, never by polling), close. Malformed datagrams are recorded in
 * `received` but never queued. Every wait is bounded; `close` is idempotent and lets sends still
 * queued leave first (closing right after `send` would cancel them).
 */
export class UdpPeer {
  /** Every datagram received, in order. */
  readonly received: Arrival[] = [];
  private readonly queue: Received[] = [];
  private wake: (() => void) | undefined;
  private readonly pending = new Set<Promise<void>>();
  private closed = false;

  private constructor(
    readonly socket: dgram.Socket,
    /** Where `send` goes when no host is given. */
    readonly host: string,
  ) {
    socket.on('message', (msg, rinfo) => {
      const d = decodePacket(msg);
      this.received.push({ packet: d.ok ? d.packet : undefined, size: msg.length, at: Date.now() });
      if (!d.ok) return;
      this.queue.push({ packet: d.packet, address: rinfo.address, port: rinfo.port, size: msg.length });
      this.wake?.();
    });
  }

  /**
   * Binds an ephemeral port on `bind` (any 127.0.0.0/8 address is local on Linux, for per-client
   * rules; an IPv6 address gives a udp6 socket). Sends go to `host` (default: the bound address).
   * Rejects if the address cannot be bound.
   */
  static async open(bind = '127.0.0.1', host = bind): Promise<UdpPeer> {
    const socket = dgram.createSocket(bind.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, bind, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new UdpPeer(socket, host);
  }

  get address(): string {
    return this.socket.address().address;
  }

  get port(): number {
    return this.socket.address().port;
  }

  /** Sends without waiting (`close` and `flush` wait for it). */
  send(payload: Buffer, port: number, host = this.host): void {
    void this.sendNow(payload, port, host);
  }

  /** Sends and resolves once the datagram has left the socket. */
  sendNow(payload: Buffer, port: number, host = this.host): Promise<void> {
    const sent = new Promise<void>((resolve) => this.socket.send(payload, port, host, () => resolve()));
    this.pending.add(sent);
    void sent.then(() => this.pending.delete(sent));
    return sent;
  }

  /**
   * The next datagram that passes `filter` (default: any), or undefined after `timeoutMs`. Queued
   * datagrams that fail the filter are discarded on the way.
   */
  async next(timeoutMs: number, filter: (r: Received) => boolean = () => true): Promise<Received | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let r = this.queue.shift(); r !== undefined; r = this.queue.shift()) if (filter(r)) return r;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Up to `count` datagrams passing `filter`, waiting at most `timeoutMs` in all (fewer if the deadline passes). */
  async collect(count: number, timeoutMs: number, filter?: (r: Received) => boolean): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    const out: Received[] = [];
    while (out.length < count) {
      const r = await this.next(Math.max(0, deadline - Date.now()), filter);
      if (r === undefined) break;
      out.push(r);
    }
    return out;
  }

  /** Waits until every send so far has left the socket. */
  async flush(): Promise<void> {
    await Promise.all([...this.pending]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flush();
    try {
      this.socket.close();
    } catch {
      // closed already
    }
  }
}
