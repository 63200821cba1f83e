import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { GatewayMetrics } from '../../src/metrics/metrics.js';
import { buildOack, negotiateOptions } from '../../src/tftp/protocol/options.js';
import { decodePacket, encodeRequest, Opcode, type Packet, type RequestPacket } from '../../src/tftp/protocol/packet.js';
import { Dispatcher, type DispatcherOptions, type TransferOpener } from '../../src/tftp/dispatcher.js';
import type { PreparedTransfer } from '../../src/tftp/requests.js';
import { reportTransfers, type TransferFinished } from '../../src/tftp/transfer-report.js';
import { TransferError } from '../../src/errors.js';
import type { ReadSource } from '../../src/tftp/session/types.js';
import { ackBytes, dataBytes, errorBytes, MemorySink, MemorySource, seededBytes, VirtualClock } from '../support/fake/index.js';
import { VirtualUdp, type VirtualSocket } from '../support/virtual-udp.js';

/**
 * The dispatcher on a virtual clock and virtual UDP (test/support/virtual-udp.ts, where a datagram
 * given to a socket closed in the same tick never leaves, as with dgram): port modes, what each
 * packet on a live TID does, the unverified-peer budget, patience, containment of faults.
 */

const SERVER = '10.0.0.1';
const CLIENT = '10.0.0.2';

interface StoredFile {
  readonly data: Buffer;
  /** Virtual delay before the HEAD answers. */
  readonly headDelayMs?: number;
  /** Wraps the source (fault injection). */
  readonly wrap?: (source: ReadSource) => ReadSource;
}

class FakeOpener implements TransferOpener {
  readonly uploads = new Map<string, MemorySink>();
  readonly uploadedCalls: { key: string; time: number }[] = [];
  constructor(
    private readonly clock: VirtualClock,
    readonly files: Map<string, StoredFile>,
    private readonly writeDelayMs = 0,
  ) {}

  open(request: RequestPacket): Promise<PreparedTransfer> {
    const options = negotiateOptions(request.options, { maxBlksize: 1468, maxWindowsize: 64 });
    const key = request.filename;
    if (request.opcode === Opcode.WRQ) {
      const sink = new MemorySink(this.clock);
      this.uploads.set(key, sink);
      const prepared: PreparedTransfer = { kind: 'write', key, mode: 'octet', options, oack: buildOack(request.options, options, options.requestedTsize), sink };
      return this.later(this.writeDelayMs, () => prepared);
    }
    const file = this.files.get(key);
    return this.later(file?.headDelayMs ?? 0, () => {
      if (!file) throw new TransferError('NOT_FOUND', `no ${key}`);
      const memory = new MemorySource(file.data, this.clock);
      const source = file.wrap ? file.wrap(memory) : memory;
      return { kind: 'read', key, mode: 'octet', options, oack: buildOack(request.options, options, file.data.length || undefined), source };
    });
  }

  uploaded(key: string): void {
    this.uploadedCalls.push({ key, time: this.clock.now() });
  }

  private later<T>(ms: number, fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const run = (): void => {
        try {
          resolve(fn());
        } catch (err) {
          reject(err);
        }
      };
      if (ms > 0) this.clock.schedule(run, ms, 'storage');
      else run();
    });
  }
}

interface World {
  readonly clock: VirtualClock;
  readonly net: VirtualUdp;
  readonly listen: VirtualSocket;
  readonly dispatcher: Dispatcher;
  readonly opener: FakeOpener;
  readonly metrics: GatewayMetrics;
  readonly logs: Record<string, unknown>[];
  /** Every transfer's finished record, in order (the dispatcher's transfer events). */
  readonly finished: TransferFinished[];
  client(port?: number): TestPeer;
}

const BASE_OPTIONS: DispatcherOptions = {
  portMode: 'single',
  maxSessions: 100,
  maxWindowBytes: 1 << 20,
  maxUploadSize: 1 << 30,
  stallTimeoutMs: 90_000,
  unverifiedAmplification: 90,
  unverifiedBytesPerSecond: 1 << 20,
  retransmit: { initialMs: 1000, minMs: 100, maxMs: 5000, maxRetries: 0, giveUpMs: 63_000, backoff: 2, unverifiedRetries: 4 },
};

function world(files: Record<string, StoredFile> = {}, options: Partial<DispatcherOptions> & { drop?: (bytes: Buffer, toServer: boolean) => boolean; writeDelayMs?: number } = {}): World {
  const clock = new VirtualClock();
  const net = new VirtualUdp(clock, options.drop ? { drop: (d) => options.drop!(d.bytes, d.to.address === SERVER) } : {});
  const listen = net.open(SERVER, 69);
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const metrics = new GatewayMetrics({ defaultMetrics: false });
  const opener = new FakeOpener(clock, new Map(Object.entries(files)), options.writeDelayMs);
  const dispatcher = new Dispatcher({ ...BASE_OPTIONS, ...options }, opener, metrics, logger, clock.tagged('dispatcher'), net.transferSockets());
  // Wired as the gateway wires it: metrics and log lines subscribe to the transfer events.
  reportTransfers(dispatcher.transfers, metrics, logger, () => dispatcher.progress());
  const finished: TransferFinished[] = [];
  dispatcher.transfers.onFinished((t) => finished.push(t));
  const endpoint = { socket: listen, id: 0 };
  listen.onMessage((msg, from) => dispatcher.handleDatagram(endpoint, msg, from));
  let nextClientPort = 2000;
  return { clock, net, listen, dispatcher, opener, metrics, logs, finished, client: (port) => new TestPeer(net, port ?? nextClientPort++) };
}

/** A scripted client: sends what the test says, records what it gets. */
class TestPeer {
  readonly socket: VirtualSocket;
  constructor(
    private readonly net: VirtualUdp,
    port: number,
  ) {
    this.socket = net.open(CLIENT, port);
  }

  get packets(): { packet: Packet; fromPort: number; time: number }[] {
    return this.socket.received.map((r) => {
      const d = decodePacket(r.bytes);
      assert.ok(d.ok, 'the server sent a well-formed packet');
      return { packet: d.packet, fromPort: r.from.port, time: r.time };
    });
  }

  describe(): string[] {
    return this.packets.map(({ packet: p }) =>
      p.opcode === Opcode.DATA ? `DATA ${p.block}` : p.opcode === Opcode.ACK ? `ACK ${p.block}` : p.opcode === Opcode.ERROR ? `ERROR ${p.code}` : p.opcode === Opcode.OACK ? 'OACK' : `op ${p.opcode}`,
    );
  }

  send(bytes: Buffer, port = 69): void {
    this.socket.send([bytes], { address: SERVER, port });
  }

  rrq(name: string, options: Record<string, string> = {}): Buffer {
    const bytes = encodeRequest(Opcode.RRQ, name, 'octet', new Map(Object.entries(options)));
    this.send(bytes);
    return bytes;
  }

  wrq(name: string, options: Record<string, string> = {}): Buffer {
    const bytes = encodeRequest(Opcode.WRQ, name, 'octet', new Map(Object.entries(options)));
    this.send(bytes);
    return bytes;
  }
}

/** Makes a peer an honest lock-step reader: ACKs each DATA (from the port it came from) until a short block. */
function autoRead(peer: TestPeer, blksize = 512): { readonly data: Buffer; done: boolean } {
  const blocks: Buffer[] = [];
  const state = { done: false, get data() { return Buffer.concat(blocks); } };
  peer.socket.onMessage((msg, from) => {
    const d = decodePacket(msg);
    if (!d.ok) return;
    const p = d.packet;
    if (p.opcode === Opcode.OACK) peer.socket.send([ackBytes(0)], from);
    if (p.opcode !== Opcode.DATA) return;
    if (p.block === blocks.length + 1) blocks.push(Buffer.from(p.data));
    peer.socket.send([ackBytes(p.block)], from);
    if (p.data.length < blksize) state.done = true;
  });
  return state;
}

function counter(metrics: GatewayMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metrics.registry.getSingleMetric(name)!.get().then((m) => {
    const v = m.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
    return v?.value ?? 0;
  });
}

describe('per-transfer mode: one channel per transfer', () => {
  test('a refused request gets its ERROR from the transfer port, and the socket closes only after it left', async () => {
    const w = world({}, { portMode: 'per-transfer' });
    const c = w.client();
    c.rrq('missing.bin');
    await w.clock.runUntilIdle(10_000);
    assert.deepEqual(c.describe(), ['ERROR 1']);
    assert.notEqual(c.packets[0]!.fromPort, 69, 'answered from a transfer port (a new TID)');
    assert.equal(w.net.lostOnClose.length, 0, 'no datagram was lost to an early close');
    assert.equal(w.net.openSockets, 2, 'the transfer socket is closed (listening and client sockets remain)');
    assert.equal(await counter(w.metrics, 'tftp_gateway_errors_sent_total', { code: '1' }), 1, 'the ERROR is counted once, when sent');
  });

  test('an ERROR that ends a session (give-up) reaches the client before the socket closes', async () => {
    const w = world({ 'f.bin': { data: seededBytes(1, 2000) } }, { portMode: 'per-transfer', retransmit: { ...BASE_OPTIONS.retransmit, giveUpMs: 10_000, unverifiedRetries: 100 } });
    const c = w.client();
    c.rrq('f.bin');
    await w.clock.runUntilIdle(60_000);
    const seen = c.describe();
    assert.equal(seen[seen.length - 1], 'ERROR 0', seen.join(','));
    assert.equal(w.net.lostOnClose.length, 0);
    assert.equal(w.dispatcher.activeSessions, 0);
    assert.equal(w.net.openSockets, 2);
  });

  test('the shutdown ERROR of an aborted transfer reaches the client', async () => {
    const w = world({ 'f.bin': { data: seededBytes(2, 5000) } }, { portMode: 'per-transfer' });
    const c = w.client();
    c.rrq('f.bin');
    await w.clock.advance(5);
    w.dispatcher.abortAll();
    await w.clock.runUntilIdle(10_000);
    assert.deepEqual(c.describe(), ['DATA 1', 'ERROR 0']);
    assert.equal(w.net.lostOnClose.length, 0);
  });

  test('two requests from one client port are two transfers (different server ports): both complete', async () => {
    const a = seededBytes(3, 3000);
    const b = seededBytes(4, 2500);
    const w = world({ 'a.bin': { data: a }, 'b.bin': { data: b } }, { portMode: 'per-transfer' });
    const c = w.client();
    const byPort = new Map<number, Buffer[]>();
    c.socket.onMessage((msg, from) => {
      const d = decodePacket(msg);
      if (!d.ok || d.packet.opcode !== Opcode.DATA) return;
      const list = byPort.get(from.port) ?? [];
      if (d.packet.block === list.length + 1) list.push(Buffer.from(d.packet.data));
      byPort.set(from.port, list);
      c.socket.send([ackBytes(d.packet.block)], from);
    });
    c.rrq('a.bin');
    c.rrq('b.bin');
    await w.clock.runUntilIdle(60_000);
    const got = [...byPort.values()].map((l) => Buffer.concat(l));
    assert.equal(got.length, 2, 'two server ports');
    assert.ok(got.some((g) => g.equals(a)) && got.some((g) => g.equals(b)), 'both files arrived whole');
    const finished = w.finished.map((t) => t.result);
    assert.deepEqual(finished, ['ok', 'ok']);
  });
});

describe('packets on a live TID (single-port)', () => {
  test('DATA 1 arriving while a WRQ is still opening is dropped, not answered with ERROR 5', async () => {
    const w = world({}, { writeDelayMs: 50 });
    const c = w.client();
    c.wrq('up.bin');
    await w.clock.advance(10);
    c.send(dataBytes(1, Buffer.alloc(100, 1)));
    await w.clock.advance(100);
    assert.deepEqual(c.describe(), ['ACK 0'], 'only the ACK 0 once the upload is ready');
    c.send(dataBytes(1, Buffer.alloc(100, 1)));
    await w.clock.runUntilIdle(60_000);
    assert.deepEqual(c.describe(), ['ACK 0', 'ACK 1']);
    assert.deepEqual(w.opener.uploads.get('up.bin')!.data, Buffer.alloc(100, 1));
  });

  test('a malformed packet (3-byte ACK) mid-read is dropped; the transfer goes on', async () => {
    const data = seededBytes(5, 1500);
    const w = world({ 'f.bin': { data } });
    const c = w.client();
    const reader = autoRead(c);
    c.rrq('f.bin');
    await w.clock.advance(3);
    c.send(Buffer.from([0, 4, 0]));
    await w.clock.runUntilIdle(60_000);
    assert.ok(reader.done);
    assert.deepEqual(reader.data, data);
    assert.ok(!c.describe().includes('ERROR 4'), c.describe().join(','));
  });

  test('an ERROR from the client ends its transfer: nothing more is sent', async () => {
    const w = world({ 'f.bin': { data: seededBytes(6, 5000) } });
    const c = w.client();
    c.rrq('f.bin');
    await w.clock.advance(3);
    c.send(errorBytes(0, 'user abort'));
    await w.clock.runUntilIdle(60_000);
    assert.deepEqual(c.describe(), ['DATA 1']);
    assert.equal(w.finished[0]?.result, 'client-error');
  });

  test('an ERROR from a client whose request is still opening drops the request quietly', async () => {
    const w = world({ 'f.bin': { data: seededBytes(7, 5000), headDelayMs: 100 } });
    const c = w.client();
    c.rrq('f.bin');
    await w.clock.advance(10);
    c.send(errorBytes(0, 'gave up'));
    await w.clock.runUntilIdle(60_000);
    assert.deepEqual(c.describe(), []);
    assert.equal(w.dispatcher.activeSessions, 0);
  });
});

describe('unverified peers (a request may carry a forged source address)', () => {
  test('a never-answered 12-byte RRQ draws less than 100x its size', async () => {
    const w = world({ 'abc': { data: seededBytes(8, 100_000) } });
    const c = w.client();
    const rrq = c.rrq('abc');
    assert.equal(rrq.length, 12);
    await w.clock.runUntilIdle(200_000);
    const sent = c.socket.received.reduce((n, r) => n + r.bytes.length, 0);
    assert.ok(sent < 100 * rrq.length, `sent ${sent} bytes for a ${rrq.length}-byte request (${(sent / rrq.length).toFixed(0)}x)`);
    assert.ok(sent > 0);
    assert.equal(w.dispatcher.activeSessions, 0, 'the session gave up');
    assert.ok((await counter(w.metrics, 'tftp_gateway_unverified_sends_suppressed_total')) >= 1);
  });

  test('a client that lost its first DATA and repeats its request gets the file', async () => {
    const data = seededBytes(9, 3000);
    let dropped = 0;
    // The first two DATA 1 datagrams (the first send and the timer's resend) are lost.
    const w = world({ 'f.bin': { data } }, { drop: (b, toServer) => !toServer && b.readUInt16BE(0) === Opcode.DATA && b.readUInt16BE(2) === 1 && dropped++ < 2 });
    const c = w.client();
    const reader = autoRead(c);
    c.rrq('f.bin');
    await w.clock.advance(4000);
    assert.equal(reader.data.length, 0);
    c.rrq('f.bin'); // the client's own retransmission of its request
    await w.clock.runUntilIdle(60_000);
    assert.deepEqual(reader.data, data);
  });

  test('a PXE-style request (options) survives a lost OACK through its repeated request', async () => {
    const data = seededBytes(10, 3000);
    let dropped = 0;
    const w = world({ 'f.bin': { data } }, { drop: (b, toServer) => !toServer && b.readUInt16BE(0) === Opcode.OACK && dropped++ < 1 });
    const c = w.client();
    const reader = autoRead(c, 1468);
    c.rrq('f.bin', { tsize: '0', blksize: '1468' });
    await w.clock.advance(4000);
    c.rrq('f.bin', { tsize: '0', blksize: '1468' }); // the ROM's own retransmission
    await w.clock.runUntilIdle(60_000);
    assert.deepEqual(reader.data, data);
  });

  test('a repeated request while the first answer is still on its way draws no second one', async () => {
    const data = seededBytes(16, 3000);
    const w = world({ 'f.bin': { data } });
    const c = w.client();
    c.rrq('f.bin', { blksize: '1468' });
    await w.clock.advance(0.5); // before the OACK has arrived (1 ms one way)
    c.rrq('f.bin', { blksize: '1468' });
    await w.clock.advance(500);
    assert.deepEqual(c.describe(), ['OACK']);
  });
});

describe('patience by time', () => {
  test('a reader silent for 40 s (longer than six retries) then back still completes', async () => {
    const data = seededBytes(11, 3000);
    const w = world({ 'f.bin': { data } });
    const c = w.client();
    let silentUntil = 0;
    const blocks: Buffer[] = [];
    c.socket.onMessage((msg, from) => {
      const d = decodePacket(msg);
      if (!d.ok || d.packet.opcode !== Opcode.DATA) return;
      if (w.clock.now() < silentUntil) return;
      if (d.packet.block === blocks.length + 1) blocks.push(Buffer.from(d.packet.data));
      if (d.packet.block === 2 && silentUntil === 0) {
        silentUntil = w.clock.now() + 40_000;
        return;
      }
      c.socket.send([ackBytes(d.packet.block)], from);
    });
    c.rrq('f.bin');
    await w.clock.runUntilIdle(200_000);
    assert.deepEqual(Buffer.concat(blocks), data);
    assert.equal(w.finished[0]?.result, 'ok');
  });

  test('a reader that never comes back is given up after --give-up-timeout, before the stall reaper', async () => {
    const w = world({ 'f.bin': { data: seededBytes(12, 3000) } });
    const c = w.client();
    let acked = false;
    c.socket.onMessage((_msg, from) => {
      if (!acked) c.socket.send([ackBytes(1)], from);
      acked = true;
    });
    c.rrq('f.bin');
    await w.clock.runUntilIdle(200_000);
    const last = c.packets[c.packets.length - 1]!;
    assert.equal(last.packet.opcode, Opcode.ERROR);
    const ackedAt = c.packets[0]!.time;
    const gaveUpAfter = last.time - ackedAt;
    assert.ok(gaveUpAfter >= 62_000 && gaveUpAfter < 66_000, `gave up ${gaveUpAfter} ms after the last progress`);
    assert.match(String(w.finished[0]?.detail), /no progress/);
  });
});

describe('uploads: the final ACK settles the outcome', () => {
  test('reads see the upload when the final ACK goes out; a client timeout asking for a linger longer than the reaper allows still ends ok with no ERROR', async () => {
    const w = world({}, { stallTimeoutMs: 2000 });
    const c = w.client();
    c.wrq('up.bin', { timeout: '100' });
    await w.clock.advance(10);
    c.send(dataBytes(1, Buffer.alloc(10, 7)));
    await w.clock.runUntilIdle(400_000);
    assert.deepEqual(c.describe(), ['OACK', 'ACK 1']);
    const ack1 = c.packets[1]!;
    assert.equal(w.opener.uploadedCalls.length, 1);
    assert.ok(w.opener.uploadedCalls[0]!.time <= ack1.time, 'invalidated before the final ACK arrived');
    assert.equal(w.finished.length, 1);
    assert.equal(w.finished[0]!.result, 'ok');
    assert.equal(await counter(w.metrics, 'tftp_gateway_errors_sent_total', { code: '0' }), 0);
  });

  test('a late ERROR from the client after the final ACK does not turn a stored upload into a failure', async () => {
    const w = world();
    const c = w.client();
    c.wrq('up.bin');
    await w.clock.advance(10);
    c.send(dataBytes(1, Buffer.alloc(10, 7)));
    await w.clock.advance(10);
    c.send(errorBytes(0, 'bye'));
    await w.clock.runUntilIdle(60_000);
    assert.equal(w.finished[0]?.result, 'ok');
    assert.deepEqual(w.opener.uploads.get('up.bin')!.aborts, []);
  });
});

describe('containment', () => {
  test('a storage callback that throws mid-transfer ends that transfer only (ERROR 0, counted, logged with its stack)', async () => {
    const good = seededBytes(13, 20_000);
    const bad = seededBytes(14, 20_000);
    const w = world({
      'good.bin': { data: good },
      'bad.bin': {
        data: bad,
        wrap: (source) => ({
          size: source.size,
          slice: (offset, length) => {
            if (offset >= 5 * 512) throw new Error('injected storage fault');
            return source.slice(offset, length);
          },
          load: (o, l) => source.load(o, l),
          release: (o) => source.release(o),
          close: () => source.close(),
        }),
      },
    });
    const a = w.client();
    const b = w.client();
    const ra = autoRead(a);
    const rb = autoRead(b);
    a.rrq('good.bin');
    b.rrq('bad.bin');
    await w.clock.runUntilIdle(60_000);
    assert.deepEqual(ra.data, good, 'the other transfer completed');
    assert.equal(b.describe().at(-1), 'ERROR 0');
    assert.equal(rb.data.length, 5 * 512);
    assert.equal(await counter(w.metrics, 'tftp_gateway_internal_errors_total'), 1);
    const fault = w.logs.find((l) => l.msg === 'transfer fault: ended this transfer');
    assert.ok(fault, 'logged');
    assert.match(String((fault.err as { stack?: string }).stack), /injected storage fault/);
    assert.equal(w.finished.find((t) => t.file === 'bad.bin')?.result, 'internal-error');
    assert.equal(w.dispatcher.activeSessions, 0);
  });

  test('a throw while a request is being set up refuses that request with ERROR 0', async () => {
    const w = world({ 'f.bin': { data: seededBytes(15, 100) } });
    const c = w.client();
    // A source whose size getter throws: startSession fails after the open step.
    w.opener.files.set('boom.bin', {
      data: Buffer.alloc(0),
      wrap: () => {
        throw new Error('broken wrapper');
      },
    });
    c.rrq('boom.bin');
    await w.clock.runUntilIdle(10_000);
    // The opener's own throw is a rejected open: a storage error, ERROR 0, and the gateway goes on.
    assert.deepEqual(c.describe(), ['ERROR 0']);
    const d = w.client();
    const r = autoRead(d);
    d.rrq('f.bin');
    await w.clock.runUntilIdle(10_000);
    assert.equal(r.data.length, 100);
  });
});

describe('after an upload: the transfer is over at its final ACK, and a resent last DATA is still answered', () => {
  for (const portMode of ['single', 'per-transfer'] as const) {
    test(`${portMode}: the session ends ok at once; the final DATA resent 6 s later draws the final ACK again, from the same port`, async () => {
      const w = world({}, { portMode });
      const c = w.client();
      c.wrq('up.bin');
      await w.clock.advance(20);
      const port = c.packets[0]!.fromPort;
      c.send(dataBytes(1, Buffer.alloc(100, 3)), port);
      await w.clock.advance(20);
      assert.deepEqual(c.describe(), ['ACK 0', 'ACK 1']);
      assert.equal(w.dispatcher.activeSessions, 0, 'no session held open after the final ACK');
      assert.equal(w.finished[0]?.result, 'ok');
      await w.clock.advance(6000);
      c.send(dataBytes(1, Buffer.alloc(100, 3)), port); // our final ACK was "lost"
      await w.clock.advance(20);
      assert.deepEqual(c.describe(), ['ACK 0', 'ACK 1', 'ACK 1']);
      assert.equal(c.packets[2]!.fromPort, port);
      await w.clock.runUntilIdle(60_000);
      assert.equal(w.net.openSockets, 2, 'a per-transfer socket is closed when the linger ends');
      c.send(dataBytes(1, Buffer.alloc(100, 3)), port);
      await w.clock.runUntilIdle(60_000);
      assert.equal(c.describe().filter((d) => d === 'ACK 1').length, 2, `after the linger, no more ACKs: ${c.describe().join(',')}`);
    });
  }
});
