import assert from 'node:assert/strict';
import { encodeAck, Opcode } from '../../src/tftp/protocol/packet.js';
import type { TestGateway } from '../support/gateway.js';
import { UdpPeer, type Received } from '../support/udp-peer.js';
import { until } from '../support/wait.js';
import { CLIENTS, helpText, type ClientName, type Endpoint, type TransferSpec } from '../support/clients.js';
import type { Cell, Exclusion } from './matrix.js';

export type LogLine = Record<string, unknown>;

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
  // Search after the started line: a client port can carry two transfers of one key (PXE probe).
  const from = Math.max(since, gw.logs.indexOf(started));
  const find = (): LogLine | undefined =>
    gw.logs.slice(from).find((l) => l.msg === 'transfer finished' && l.key === started.key && l.op === started.op && l.port === started.port && l.client === started.client);
  await until(() => find() !== undefined, timeoutMs, `the end of the '${String(started.op)}' transfer of ${String(started.key)} in the gateway's log`);
  return find()!;
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

/** The next packet `peer` receives, or a failed assertion naming `what` after `timeoutMs`. */
export async function expectPacket(peer: UdpPeer, timeoutMs: number, what: string): Promise<Received> {
  const got = await peer.next(timeoutMs);
  if (!got) assert.fail(`no packet within ${timeoutMs} ms (waiting for ${what})`);
  return got;
}

/**
 * Receives a whole file on `peer` after the request (and the OACK, if any, already consumed):
 * ACKs every block (windowsize 1), tolerates duplicates, returns the bytes.
 */
export async function receiveFile(peer: UdpPeer, serverPort: number, blksize: number, timeoutMs = 3000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let expected = 1;
  for (;;) {
    const { packet, port } = await expectPacket(peer, timeoutMs, `DATA ${expected}`);
    assert.equal(port, serverPort, 'DATA from the transfer port');
    if (packet.opcode === Opcode.ERROR) assert.fail(`ERROR ${packet.code} ${packet.message} at block ${expected}`);
    if (packet.opcode !== Opcode.DATA) continue;
    if (packet.block !== (expected & 0xffff)) {
      peer.send(encodeAck((expected - 1) & 0xffff), serverPort);
      continue;
    }
    chunks.push(Buffer.from(packet.data));
    peer.send(encodeAck(expected & 0xffff), serverPort);
    if (packet.data.length < blksize) return Buffer.concat(chunks);
    expected++;
  }
}

/** True if this host can bind a UDP socket on ::1 (IPv6 loopback configured). */
export async function hasIpv6Loopback(): Promise<boolean> {
  try {
    await (await UdpPeer.open('::1')).close();
    return true;
  } catch {
    return false;
  }
}
