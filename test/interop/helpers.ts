import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { decodePacket, encodeAck, Opcode, type Packet } from '../../src/protocol/packet.js';
import type { TestGateway } from '../support/gateway.js';
import { CLIENTS, helpText, type ClientName, type Endpoint, type TransferSpec } from '../support/clients.js';
import type { Cell, Exclusion } from './matrix.js';

export type LogLine = Record<string, unknown>;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Position in the gateway's log: lines after it belong to what the test does next. */
export function logMark(gw: TestGateway): number {
  return gw.logs.length;
}

/** The gateway's "transfer started" lines for `key` logged after `since`. */
export function startedLines(gw: TestGateway, since: number, key: string, op: 'read' | 'write'): LogLine[] {
  return gw.logs.slice(since).filter((l) => l.msg === 'transfer started' && l.key === key && l.op === op);
}

/** The one "transfer started" line for `key` after `since` (a client run is exactly one transfer). */
export function startedLine(gw: TestGateway, since: number, key: string, op: 'read' | 'write'): LogLine {
  const lines = startedLines(gw, since, key, op);
  assert.equal(lines.length, 1, `expected one '${op}' transfer of ${key}, the gateway logged ${lines.length}`);
  return lines[0]!;
}

/**
 * The "transfer finished" line of the transfer `started` began, waiting at most `timeoutMs` (a
 * reader ends when the final ACK arrives, which can be just after the client process exits).
 */
export async function finishedLine(gw: TestGateway, since: number, started: LogLine, timeoutMs = 5000): Promise<LogLine> {
  const deadline = Date.now() + timeoutMs;
  // Search after the started line: a client port can carry two transfers of one key (PXE probe).
  const from = Math.max(since, gw.logs.indexOf(started));
  for (;;) {
    for (let i = from; i < gw.logs.length; i++) {
      const l = gw.logs[i]!;
      if (l.msg === 'transfer finished' && l.key === started.key && l.op === started.op && l.port === started.port && l.client === started.client) return l;
    }
    if (Date.now() >= deadline) assert.fail(`the gateway logged no end of the '${String(started.op)}' transfer of ${String(started.key)} within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** What a client is told to ask for in a matrix cell (only what it can ask). */
export function specFor(cell: Pick<Cell, 'client' | 'blksize' | 'windowsize'>, extra: TransferSpec = {}): TransferSpec {
  const info = CLIENTS[cell.client];
  return {
    ...(info.blksize ? { blksize: cell.blksize } : {}),
    ...(info.windowsize ? { windowsize: cell.windowsize } : {}),
    ...(cell.client === 'atftp' ? { tsize: true } : {}),
    ...extra,
  };
}

/** Checks an exclusion's reason still holds. */
export async function verifyExclusion(ex: Exclusion, optionsSent: (client: ClientName) => Promise<Record<string, unknown>>): Promise<void> {
  switch (ex.verify) {
    case 'no-options-sent': {
      const options = await optionsSent(ex.client);
      assert.deepEqual(options, {}, `${ex.client} now sends options: the exclusion '${ex.what}' is stale`);
      return;
    }
    case 'no-windowsize-flag': {
      const help = await helpText(ex.client);
      assert.ok(help.length > 0, `no help text from ${ex.client}`);
      assert.doesNotMatch(help, /window/i, `${ex.client} now documents a window option: the exclusion '${ex.what}' is stale`);
      return;
    }
    case undefined:
      return;
  }
}

export function ipv6Endpoint(gw: TestGateway): Endpoint | undefined {
  const a = gw.gateway.udpAddresses.find((x) => x.family === 'IPv6');
  return a ? { host: a.address, port: a.port } : undefined;
}

/** Independent netascii encoder (RFC 764 as used by RFC 1350): LF → CR LF, CR → CR NUL. */
export function toNetascii(local: Buffer): Buffer {
  const out: number[] = [];
  for (const b of local) {
    if (b === 0x0a) out.push(0x0d, 0x0a);
    else if (b === 0x0d) out.push(0x0d, 0x00);
    else out.push(b);
  }
  return Buffer.from(out);
}

/**
 * A raw UDP peer for exchanges no client can script (the PXE size probe, checking which port
 * answers). Every wait is bounded; `close` is idempotent.
 */
export class RawPeer {
  private readonly queue: { packet: Packet; port: number }[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  private constructor(private readonly socket: dgram.Socket, readonly host: string) {
    socket.on('message', (msg, rinfo) => {
      const d = decodePacket(msg);
      if (!d.ok) return;
      this.queue.push({ packet: d.packet, port: rinfo.port });
      this.wake?.();
    });
  }

  static async open(host: string): Promise<RawPeer> {
    const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new RawPeer(socket, host);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(payload: Buffer, port: number): void {
    this.socket.send(payload, port, this.host);
  }

  /** Next packet, or a failed assertion after `timeoutMs`. */
  async next(timeoutMs: number, what: string): Promise<{ packet: Packet; port: number }> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`no packet within ${timeoutMs} ms (waiting for ${what})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
    return this.queue.shift()!;
  }

  /**
   * Receives a whole file after the request (and the OACK, if any, already consumed): ACKs every
   * block (windowsize 1), tolerates duplicates, returns the bytes.
   */
  async receive(serverPort: number, blksize: number, timeoutMs = 3000): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let expected = 1;
    for (;;) {
      const { packet, port } = await this.next(timeoutMs, `DATA ${expected}`);
      assert.equal(port, serverPort, 'DATA from the transfer port');
      if (packet.opcode === Opcode.ERROR) assert.fail(`ERROR ${packet.code} ${packet.message} at block ${expected}`);
      if (packet.opcode !== Opcode.DATA) continue;
      if (packet.block !== (expected & 0xffff)) {
        this.send(encodeAck((expected - 1) & 0xffff), serverPort);
        continue;
      }
      chunks.push(Buffer.from(packet.data));
      this.send(encodeAck(expected & 0xffff), serverPort);
      if (packet.data.length < blksize) return Buffer.concat(chunks);
      expected++;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}

/** True if this host can bind a UDP socket on ::1 (IPv6 loopback configured). */
export async function hasIpv6Loopback(): Promise<boolean> {
  try {
    (await RawPeer.open('::1')).close();
    return true;
  } catch {
    return false;
  }
}
