import dgram from 'node:dgram';
import net from 'node:net';

/**
 * A user-space WAN path on loopback: it adds a round trip of `rttMs` (half each way) between
 * clients and servers, for TCP (HTTP) and UDP (TFTP). Nothing but 127.0.0.1.
 *
 * TCP is relayed connection by connection. Each direction of a connection is one FIFO drained by
 * one timer (a DelayLine), so a connection's bytes stay in order (a timer per chunk may reorder
 * them). The first bytes from a client go out no earlier than one round trip after the connection
 * was accepted plus the one-way delay, as a TCP handshake would cost. Each direction holds at most
 * `windowBytes / 2` bytes in flight (the source is paused beyond that), so one connection carries at
 * most windowBytes per round trip, as a TCP window of that size would; memory stays bounded.
 *
 * UDP is relayed flow by flow (a flow: one client address and port). The first datagram goes to the
 * server's port; later ones to the port the server last answered from (TFTP's transfer ID). Every
 * datagram waits the one-way delay in its direction's FIFO; a full FIFO drops (a router queue).
 */

export interface DelayForward {
  readonly kind: 'tcp' | 'udp';
  /** The server's port on 127.0.0.1. */
  readonly target: number;
}

export interface DelayPathOptions {
  readonly rttMs: number;
  /** TCP bytes a connection may have in flight per round trip (default 4 MiB). */
  readonly windowBytes?: number;
  /**
   * Bandwidth of each TCP connection, per direction, in bytes per second (default: no cap): a
   * connection's bytes leave its FIFO no faster than this (serialisation delay), as one TCP flow
   * across a WAN link or a per-flow shaper would carry them.
   */
  readonly bytesPerSecond?: number;
}

export interface DelayPathStats {
  tcpConnections: number;
  tcpBytes: number;
  udpDatagrams: number;
  udpDropped: number;
}

export interface DelayPath {
  /** The port clients use for each forward, in the order given. */
  readonly ports: readonly number[];
  readonly stats: Readonly<DelayPathStats>;
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
/** UDP bytes waiting per direction at most (beyond: dropped). */
const UDP_QUEUE_BYTES = 16 * 1024 * 1024;
/** A UDP flow idle this long is forgotten (its socket closed). */
const UDP_IDLE_MS = 60_000;
/** UDP flows at once at most (a datagram from a new client beyond that is dropped). */
const UDP_MAX_FLOWS = 4096;
export const DEFAULT_WINDOW_BYTES = 4 * 1024 * 1024;

const END = Symbol('end');
type Chunk = Buffer | typeof END;

/**
 * One direction's FIFO: items leave in the order they came, each no earlier than `delayMs` after it
 * arrived, driven by one timer. `deliver` returns false when the destination is full: the line then
 * waits for `resume()` (the destination's 'drain').
 */
export class DelayLine<T> {
  private readonly items: { due: number; item: T }[] = [];
  private head = 0;
  private lastDue = 0;
  /** When the line's link finishes sending what is queued (bandwidth cap), performance.now() ms. */
  private linkFreeAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private blocked = false;
  private closed = false;
  /** Bytes waiting in the line. */
  queuedBytes = 0;

  constructor(
    private readonly delayMs: number,
    /** Bytes an item counts for. */
    private readonly size: (item: T) => number,
    private readonly deliver: (item: T) => boolean,
    /** Called whenever bytes left the line (the source may read again). */
    private readonly onDrained: () => void = () => undefined,
    /** Bytes per second the line carries at most (0: no cap). */
    private readonly bytesPerSecond = 0,
  ) {}

  get length(): number {
    return this.items.length - this.head;
  }

  /** Queues an item, due `delayMs` from now (and not before `notBefore`, nor before the last one). */
  push(item: T, notBefore = 0): void {
    if (this.closed) return;
    const now = performance.now();
    let sent = now;
    if (this.bytesPerSecond > 0) {
      // A link of this rate: the item is on the wire after everything queued before it.
      this.linkFreeAt = Math.max(this.linkFreeAt, now) + (this.size(item) * 1000) / this.bytesPerSecond;
      sent = this.linkFreeAt;
    }
    const due = Math.max(sent + this.delayMs, notBefore, this.lastDue);
    this.lastDue = due;
    this.items.push({ due, item });
    this.queuedBytes += this.size(item);
    this.schedule();
  }

  resume(): void {
    this.blocked = false;
    this.schedule();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.items.length = 0;
    this.head = 0;
    this.queuedBytes = 0;
  }

  private schedule(): void {
    if (this.closed || this.blocked || this.timer || this.length === 0) return;
    const wait = Math.max(0, this.items[this.head]!.due - performance.now());
    this.timer = setTimeout(() => this.drain(), wait);
  }

  private drain(): void {
    this.timer = undefined;
    const now = performance.now();
    let moved = false;
    // Timers fire in whole milliseconds: anything due within the next half millisecond goes now.
    while (!this.closed && this.length > 0 && this.items[this.head]!.due <= now + 0.5) {
      const { item } = this.items[this.head]!;
      this.items[this.head] = undefined as never;
      this.head++;
      this.queuedBytes -= this.size(item);
      moved = true;
      if (!this.deliver(item)) {
        this.blocked = true;
        break;
      }
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    if (moved) this.onDrained();
    this.schedule();
  }
}

/** Starts the path: one loopback listener per forward. */
export async function startDelayPath(forwards: readonly DelayForward[], options: DelayPathOptions): Promise<DelayPath> {
  const oneWay = options.rttMs / 2;
  const lineLimit = Math.max(64 * 1024, (options.windowBytes ?? DEFAULT_WINDOW_BYTES) / 2);
  const stats: DelayPathStats = { tcpConnections: 0, tcpBytes: 0, udpDatagrams: 0, udpDropped: 0 };
  const closers: (() => Promise<void>)[] = [];
  const ports: number[] = [];
  try {
    for (const f of forwards) {
      const started = f.kind === 'tcp' ? await tcpForward(f.target, oneWay, lineLimit, options.bytesPerSecond ?? 0, stats) : await udpForward(f.target, oneWay, stats);
      ports.push(started.port);
      closers.push(() => started.close());
    }
  } catch (err) {
    await Promise.all(closers.map((c) => c()));
    throw err;
  }
  return {
    ports,
    stats,
    close: async () => {
      await Promise.all(closers.map((c) => c()));
    },
  };
}

async function tcpForward(target: number, oneWay: number, lineLimit: number, bytesPerSecond: number, stats: DelayPathStats): Promise<{ port: number; close(): Promise<void> }> {
  const live = new Set<() => void>();
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    stats.tcpConnections++;
    const accepted = performance.now();
    const upstream = net.connect({ host: HOST, port: target, allowHalfOpen: true });
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const destroy = (): void => {
      up.close();
      down.close();
      client.destroy();
      upstream.destroy();
      live.delete(destroy);
    };
    live.add(destroy);
    // A line's destination full: wait for its 'drain'. A line over its limit: pause its source.
    const chunkSize = (c: Chunk): number => (c === END ? 0 : c.length);
    const up: DelayLine<Chunk> = new DelayLine<Chunk>(
      oneWay,
      chunkSize,
      (item) => {
        if (item === END) {
          upstream.end();
          return true;
        }
        return upstream.write(item);
      },
      () => {
        if (up.queuedBytes < lineLimit / 2 && client.isPaused()) client.resume();
      },
      bytesPerSecond,
    );
    const down: DelayLine<Chunk> = new DelayLine<Chunk>(
      oneWay,
      chunkSize,
      (item) => {
        if (item === END) {
          client.end();
          return true;
        }
        stats.tcpBytes += item.length;
        return client.write(item);
      },
      () => {
        if (down.queuedBytes < lineLimit / 2 && upstream.isPaused()) upstream.resume();
      },
      bytesPerSecond,
    );
    upstream.on('drain', () => up.resume());
    client.on('drain', () => down.resume());
    // Nothing from the client reaches the server before the handshake's round trip and the
    // one-way delay have passed.
    const firstDue = accepted + 3 * oneWay;
    client.on('data', (chunk: Buffer) => {
      up.push(chunk, firstDue);
      if (up.queuedBytes >= lineLimit) client.pause();
    });
    upstream.on('data', (chunk: Buffer) => {
      down.push(chunk);
      if (down.queuedBytes >= lineLimit) upstream.pause();
    });
    client.on('end', () => up.push(END, firstDue));
    upstream.on('end', () => down.push(END));
    client.on('error', destroy);
    upstream.on('error', destroy);
    // Both sides closed (each end delivered in its turn): forget the connection.
    let closedSides = 0;
    const closed = (): void => {
      if (++closedSides === 2) destroy();
    };
    client.on('close', closed);
    upstream.on('close', closed);
  });
  await listen(server);
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const d of [...live]) d();
        server.close(() => resolve());
      }),
  };
}

function listen(server: net.Server): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

interface UdpFlow {
  readonly address: string;
  readonly port: number;
  readonly socket: dgram.Socket;
  /** Where the server last answered from (TFTP's transfer ID); its listen port at first. */
  serverPort: number;
  lastActive: number;
}

async function udpForward(target: number, oneWay: number, stats: DelayPathStats): Promise<{ port: number; close(): Promise<void> }> {
  const front = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.bind(0, HOST, () => {
      front.off('error', reject);
      resolve();
    });
  });
  front.on('error', () => undefined);
  const flows = new Map<string, UdpFlow>();
  type Datagram = { flow: UdpFlow; data: Buffer };
  let closed = false;
  // One FIFO per direction for every flow: the items carry their flow.
  const size = (d: Datagram): number => d.data.length;
  const up = new DelayLine<Datagram>(oneWay, size, (d) => {
    if (!closed) d.flow.socket.send(d.data, d.flow.serverPort, HOST);
    return true;
  });
  const down = new DelayLine<Datagram>(oneWay, size, (d) => {
    if (!closed) front.send(d.data, d.flow.port, d.flow.address);
    return true;
  });
  const enqueue = (line: DelayLine<Datagram>, flow: UdpFlow, data: Buffer): void => {
    stats.udpDatagrams++;
    if (line.queuedBytes + data.length > UDP_QUEUE_BYTES) {
      stats.udpDropped++;
      return;
    }
    flow.lastActive = performance.now();
    line.push({ flow, data });
  };
  front.on('message', (data, rinfo) => {
    const key = `${rinfo.address}:${rinfo.port}`;
    let flow = flows.get(key);
    if (!flow) {
      if (flows.size >= UDP_MAX_FLOWS) {
        stats.udpDropped++;
        return;
      }
      const socket = dgram.createSocket('udp4');
      const created: UdpFlow = { address: rinfo.address, port: rinfo.port, socket, serverPort: target, lastActive: performance.now() };
      flow = created;
      flows.set(key, created);
      socket.on('error', () => undefined);
      socket.on('message', (reply, from) => {
        if (from.address !== HOST) return;
        created.serverPort = from.port;
        enqueue(down, created, reply);
      });
      socket.bind(0, HOST);
    }
    enqueue(up, flow, data);
  });
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const [key, flow] of flows) {
      // Idle far longer than any datagram waits in a line.
      if (now - flow.lastActive < UDP_IDLE_MS) continue;
      flows.delete(key);
      flow.socket.close();
    }
  }, 10_000);
  sweep.unref();
  return {
    port: front.address().port,
    close: async () => {
      closed = true;
      clearInterval(sweep);
      up.close();
      down.close();
      for (const flow of flows.values()) flow.socket.close();
      flows.clear();
      await new Promise<void>((resolve) => front.close(() => resolve()));
    },
  };
}
