import dgram from 'node:dgram';

/**
 * A lossy UDP relay on loopback, between TFTP clients and a server: it drops, duplicates, reorders
 * and delays datagrams, independently in each direction. Each client address gets an upstream
 * socket of its own, so the server sees one peer per client. Replies always leave from the relay's
 * own port, so a server that answers from a fresh port (RFC 1350 per-transfer TIDs, tftpd-hpa)
 * looks like a single-port server to the client; requests (RRQ/WRQ) always go to the server's
 * listening port, everything else to the port the server last answered from.
 *
 * Determinism: every decision about a datagram (drop it? send it twice? hold it back?) is a pure
 * function of (seed, direction, the datagram's key, which decision) — a hash, not a shared PRNG
 * stream. The key is chosen by `keyBy`:
 * - 'index' (default): the n-th datagram in the direction. If the 17th datagram the client sends is
 *   dropped in front of tftpd-hpa, the 17th is dropped in front of the gateway too, whatever
 *   happened in the other direction. Once the two servers send different packets (different
 *   retransmission timing) the same index no longer means the same TFTP packet.
 * - 'packet': the TFTP packet itself: opcode, block (DATA and ACK) and which copy of that packet it
 *   is in this direction (the first DATA 7, the second ACK 3, ...). The first copy of DATA 7 has the
 *   same fate in front of either server, however many other datagrams came before it: a timer race
 *   (a client and a server retransmitting in the same millisecond) adds a datagram but does not move
 *   the losses onto other packets. What two servers are compared on is then how each recovers from
 *   the same lost packets.
 *
 * Delay: each kept datagram is delivered `delayMs + jitter` after it arrived. The jitter is a
 * seeded function of the arrival time (per direction: a value in [-jitterMs, +jitterMs] at knots
 * every `jitterPeriodMs`, linearly interpolated), the way a path's queueing delay varies: datagrams
 * sent back to back see nearly the same delay, datagrams one round trip apart see independent
 * ones. With the default period (≥ 2.5 × jitterMs) the delay changes slower than time passes, so
 * delivery order always equals arrival order; delivery is also kept FIFO per direction explicitly.
 * Only `reorder` changes the order.
 */

export interface LossProfile {
  /** Probability a datagram is dropped, 0..1. */
  readonly loss: number;
  /** Probability a (kept) datagram is sent twice. */
  readonly duplicate?: number;
  /** Probability a (kept) datagram is held back and sent after the next one (or after `reorderDelayMs`). */
  readonly reorder?: number;
  readonly reorderDelayMs?: number;
  /** One-way delay added to every kept datagram, ms. Default 0. */
  readonly delayMs?: number;
  /** Delay varies by up to ± this, ms (seeded, order-preserving). Default 0. */
  readonly jitterMs?: number;
  /** Spacing of the jitter's knots in time, ms. Default max(25, 2.5 × jitterMs). */
  readonly jitterPeriodMs?: number;
}

export interface RelayOptions {
  readonly target: { readonly host: string; readonly port: number };
  readonly seed: number;
  /** Client → server. */
  readonly up: LossProfile;
  /** Server → client. */
  readonly down: LossProfile;
  /** What a decision is keyed by (see the class comment). Default 'index'. */
  readonly keyBy?: 'index' | 'packet';
  /** Upstream sockets (clients) at most; the oldest is closed past it. */
  readonly maxClients?: number;
  /** Called for every datagram that arrives, with its fate (for traces while debugging a seed). */
  readonly onDatagram?: (event: { dir: Direction; n: number; msg: Buffer; fate: 'dropped' | 'forwarded' | 'duplicated' | 'held' }) => void;
}

export interface RelayStats {
  /** Datagrams that arrived in this direction (the index n of the next one). */
  seen: number;
  forwarded: number;
  dropped: number;
  duplicated: number;
  reordered: number;
  /** TFTP ERROR packets (opcode 5) that arrived in this direction, dropped or not. */
  errors: number;
  /** Delayed datagrams only: the latest a datagram left after its due time, ms (event-loop lateness). */
  maxLateMs: number;
}

export type Direction = 'up' | 'down';

interface Lane {
  readonly dir: Direction;
  readonly profile: LossProfile;
  readonly stats: RelayStats;
  held: { msg: Buffer; send: (m: Buffer) => void; timer: NodeJS.Timeout } | undefined;
  /** Delayed datagrams in delivery order (FIFO). */
  readonly queue: { due: number; msg: Buffer; send: (m: Buffer) => void }[];
  timer: NodeJS.Timeout | undefined;
  lastDue: number;
  /** keyBy 'packet': copies seen so far of each (opcode, block). */
  readonly copies: Map<number, number>;
}

interface Peer {
  readonly upstream: dgram.Socket;
  serverPort: number;
}

const DECISION = { loss: 1, duplicate: 2, reorder: 3, jitter: 4 } as const;

export class LossyRelay {
  readonly stats: { up: RelayStats; down: RelayStats } = { up: zero(), down: zero() };
  /** Local ports of the upstream sockets, one per client address: the server sees the client as 127.0.0.1:port. */
  readonly upstreamPorts: number[] = [];
  private readonly socket: dgram.Socket;
  private readonly peers = new Map<string, Peer>();
  private readonly lanes: Record<Direction, Lane>;
  private readonly t0 = performance.now();
  private closed = false;

  private constructor(
    private readonly options: RelayOptions,
    socket: dgram.Socket,
  ) {
    this.socket = socket;
    const lane = (dir: Direction): Lane => ({ dir, profile: options[dir], stats: this.stats[dir], held: undefined, queue: [], timer: undefined, lastDue: 0, copies: new Map() });
    this.lanes = { up: lane('up'), down: lane('down') };
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

  /**
   * The key of a TFTP packet for keyBy 'packet': opcode, block (DATA, ACK) and copy number (0 for
   * the first copy of that packet in its direction), mixed into one 32-bit word.
   */
  static packetKey(msg: Buffer, copy: number): number {
    return hash32(0x706b7420, packetId(msg), copy);
  }

  /** Uniform [0, 1) for decision `what` about datagram `n` in `dir`: depends on nothing else. */
  static decision(seed: number, dir: Direction, n: number, what: number): number {
    return hash32(seed >>> 0, dir === 'up' ? 0x75703031 : 0x646f776e, n >>> 0, Math.floor(n / 2 ** 32), what) / 2 ** 32;
  }

  /** The one-way jitter (ms, in [-jitterMs, +jitterMs]) for a datagram arriving `atMs` after the relay started. */
  jitterAt(dir: Direction, atMs: number): number {
    const p = this.options[dir];
    const j = p.jitterMs ?? 0;
    if (j <= 0) return 0;
    const period = p.jitterPeriodMs ?? Math.max(25, 2.5 * j);
    const k = Math.floor(atMs / period);
    const frac = atMs / period - k;
    const knot = (i: number): number => (LossyRelay.decision(this.options.seed, dir, i, DECISION.jitter) * 2 - 1) * j;
    return knot(k) * (1 - frac) + knot(k + 1) * frac;
  }

  private peerFor(rinfo: dgram.RemoteInfo): Peer {
    const id = `${rinfo.address}:${rinfo.port}`;
    const peer = this.peers.get(id);
    if (peer) return peer;
    const upstream = dgram.createSocket('udp4');
    upstream.bind(0, '127.0.0.1', () => this.upstreamPorts.push(upstream.address().port));
    upstream.on('error', () => undefined);
    const created: Peer = { upstream, serverPort: this.options.target.port };
    upstream.on('message', (msg, from) => {
      created.serverPort = from.port;
      this.pass(msg, this.lanes.down, (m) => this.socket.send(m, rinfo.port, rinfo.address, noop));
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
    this.pass(msg, this.lanes.up, send);
  }

  private pass(msg: Buffer, lane: Lane, send: (m: Buffer) => void): void {
    if (this.closed) return;
    const { profile, stats } = lane;
    const n = stats.seen++;
    if (msg.length >= 2 && msg.readUInt16BE(0) === 5) stats.errors++;
    const key = this.options.keyBy === 'packet' ? this.packetKeyOf(lane, msg) : n;
    const roll = (what: number): number => LossyRelay.decision(this.options.seed, lane.dir, key, what);
    const trace = this.options.onDatagram;
    if (roll(DECISION.loss) < profile.loss) {
      stats.dropped++;
      trace?.({ dir: lane.dir, n, msg, fate: 'dropped' });
      return;
    }
    const copy = Buffer.from(msg);
    const dup = roll(DECISION.duplicate) < (profile.duplicate ?? 0);
    const reorder = roll(DECISION.reorder) < (profile.reorder ?? 0);
    trace?.({ dir: lane.dir, n, msg, fate: reorder && !lane.held ? 'held' : dup ? 'duplicated' : 'forwarded' });
    const emit = (m: Buffer, out: (m: Buffer) => void, twice: boolean): void => {
      stats.forwarded++;
      this.deliver(lane, m, out);
      if (twice) {
        stats.duplicated++;
        this.deliver(lane, m, out);
      }
    };
    // A held datagram goes out right after the next one: the two swap places.
    const held = lane.held;
    if (reorder && !held) {
      stats.reordered++;
      const timer = setTimeout(() => {
        if (lane.held?.msg === copy) {
          lane.held = undefined;
          if (!this.closed) emit(copy, send, dup);
        }
      }, profile.reorderDelayMs ?? 20);
      lane.held = { msg: copy, send, timer };
      return;
    }
    emit(copy, send, dup);
    if (held) {
      clearTimeout(held.timer);
      lane.held = undefined;
      emit(held.msg, held.send, false);
    }
  }

  private packetKeyOf(lane: Lane, msg: Buffer): number {
    const id = packetId(msg);
    const copy = lane.copies.get(id) ?? 0;
    lane.copies.set(id, copy + 1);
    return LossyRelay.packetKey(msg, copy);
  }

  /** Sends now, or after the lane's delay (FIFO: never before a datagram that arrived earlier). */
  private deliver(lane: Lane, msg: Buffer, send: (m: Buffer) => void): void {
    const delay = lane.profile.delayMs ?? 0;
    const jitter = lane.profile.jitterMs ?? 0;
    if (delay <= 0 && jitter <= 0 && lane.queue.length === 0) {
      send(msg);
      return;
    }
    const now = performance.now();
    const due = Math.max(now + Math.max(0, delay + this.jitterAt(lane.dir, now - this.t0)), lane.lastDue);
    lane.lastDue = due;
    lane.queue.push({ due, msg, send });
    this.arm(lane);
  }

  private arm(lane: Lane): void {
    if (lane.timer !== undefined || this.closed) return;
    const head = lane.queue[0];
    if (!head) return;
    lane.timer = setTimeout(() => {
      lane.timer = undefined;
      const now = performance.now();
      // Node's timers fire up to ~1 ms late: the timer is armed for the whole milliseconds left
      // and delivers everything due within the next millisecond, so delivery is at most ~1 ms early or late.
      while (lane.queue.length > 0 && lane.queue[0]!.due <= now + 1) {
        const next = lane.queue.shift()!;
        lane.stats.maxLateMs = Math.max(lane.stats.maxLateMs, now - next.due);
        if (!this.closed) next.send(next.msg);
      }
      this.arm(lane);
    }, Math.max(0, Math.floor(head.due - performance.now())));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const lane of Object.values(this.lanes)) {
      if (lane.held) clearTimeout(lane.held.timer);
      if (lane.timer) clearTimeout(lane.timer);
      lane.queue.length = 0;
    }
    for (const peer of this.peers.values()) closePeer(peer);
    this.peers.clear();
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}

/** Which TFTP packet a datagram is, whatever its copy: opcode and, for DATA and ACK, block. */
function packetId(msg: Buffer): number {
  const opcode = msg.length >= 2 ? msg.readUInt16BE(0) : 0x10000;
  const block = (opcode === 3 || opcode === 4) && msg.length >= 4 ? msg.readUInt16BE(2) : 0;
  return opcode * 0x10000 + block;
}

function closePeer(peer: Peer): void {
  try {
    peer.upstream.close();
  } catch {
    // already closed
  }
}

function zero(): RelayStats {
  return { seen: 0, forwarded: 0, dropped: 0, duplicated: 0, reordered: 0, errors: 0, maxLateMs: 0 };
}

/** Mixes 32-bit words into one (murmur3's finaliser over a running state). */
export function hash32(...words: number[]): number {
  let h = 0x811c9dc5;
  for (const w of words) {
    let k = Math.imul(w >>> 0, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
  }
  h ^= words.length * 4;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const noop = (): void => undefined;
