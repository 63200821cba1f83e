import { encodeAck, encodeData, encodeError, encodeRequest, Opcode, type Packet } from '../../src/tftp/protocol/packet.js';
import { UdpPeer } from './udp-peer.js';

/**
 * A small, strict TFTP client for integration tests (window 1 or RFC 7440 windows, options,
 * rollover). Every wait is bounded; the socket is always closed.
 */
export interface ClientOptions {
  readonly host?: string;
  /** Local address to send from (any 127.0.0.0/8 address is local on Linux; default: `host`). */
  readonly bind?: string;
  readonly port: number;
  readonly options?: Record<string, string>;
  readonly mode?: 'octet' | 'netascii';
  /** Per-packet wait before giving up, ms. */
  readonly timeoutMs?: number;
}

export interface ClientResult {
  readonly data: Buffer;
  readonly oack: Map<string, string> | undefined;
  readonly error: { code: number; message: string } | undefined;
}

export async function tftpGet(filename: string, opts: ClientOptions): Promise<ClientResult> {
  const host = opts.host ?? '127.0.0.1';
  const timeoutMs = opts.timeoutMs ?? 3000;
  const peer = await UdpPeer.open(opts.bind ?? host, host);
  try {
    const options = new Map(Object.entries(opts.options ?? {}));
    peer.send(encodeRequest(Opcode.RRQ, filename, opts.mode ?? 'octet', options), opts.port);
    const blksize = Number(opts.options?.blksize ?? 512);
    const chunks: Buffer[] = [];
    let expected = 1;
    let oack: Map<string, string> | undefined;
    let serverPort: number | undefined;
    let effectiveBlksize = 512;
    let windowsize = 1;
    let sinceAck = 0;
    for (;;) {
      const got = await peer.next(timeoutMs);
      if (!got) throw new Error(`timed out waiting for block ${expected}`);
      serverPort ??= got.port;
      const p = got.packet;
      if (p.opcode === Opcode.ERROR) return { data: Buffer.concat(chunks), oack, error: { code: p.code, message: p.message } };
      if (p.opcode === Opcode.OACK) {
        oack = new Map(p.options);
        effectiveBlksize = Number(oack.get('blksize') ?? 512);
        windowsize = Number(oack.get('windowsize') ?? 1);
        peer.send(encodeAck(0), serverPort);
        continue;
      }
      if (p.opcode !== Opcode.DATA) continue;
      if (oack === undefined) effectiveBlksize = 512;
      void blksize;
      if (p.block !== (expected & 0xffff)) {
        peer.send(encodeAck((expected - 1) & 0xffff), serverPort);
        sinceAck = 0;
        continue;
      }
      chunks.push(Buffer.from(p.data));
      const last = p.data.length < effectiveBlksize;
      sinceAck++;
      if (last) {
        peer.send(encodeAck(expected & 0xffff), serverPort); // `close` lets it leave first
        return { data: Buffer.concat(chunks), oack, error: undefined };
      }
      if (sinceAck >= windowsize) {
        peer.send(encodeAck(expected & 0xffff), serverPort);
        sinceAck = 0;
      }
      expected++;
    }
  } finally {
    await peer.close();
  }
}

export async function tftpPut(filename: string, data: Buffer, opts: ClientOptions): Promise<ClientResult> {
  const host = opts.host ?? '127.0.0.1';
  const timeoutMs = opts.timeoutMs ?? 3000;
  const peer = await UdpPeer.open(opts.bind ?? host, host);
  try {
    const options = new Map(Object.entries(opts.options ?? {}));
    peer.send(encodeRequest(Opcode.WRQ, filename, opts.mode ?? 'octet', options), opts.port);
    let first = await peer.next(timeoutMs);
    if (!first) throw new Error('no answer to WRQ');
    const serverPort = first.port;
    let oack: Map<string, string> | undefined;
    if (first.packet.opcode === Opcode.ERROR) {
      return { data, oack, error: { code: first.packet.code, message: first.packet.message } };
    }
    let blksize = 512;
    if (first.packet.opcode === Opcode.OACK) {
      oack = new Map(first.packet.options);
      blksize = Number(oack.get('blksize') ?? 512);
    }
    const blocks = Math.floor(data.length / blksize) + 1;
    for (let block = 1; block <= blocks; block++) {
      const payload = data.subarray((block - 1) * blksize, Math.min(data.length, block * blksize));
      let attempts = 0;
      for (;;) {
        peer.send(encodeData(block & 0xffff, payload), serverPort);
        const got = await peer.next(block === blocks ? timeoutMs * 3 : timeoutMs);
        if (got?.packet.opcode === Opcode.ERROR) {
          return { data, oack, error: { code: got.packet.code, message: got.packet.message } };
        }
        if (got?.packet.opcode === Opcode.ACK && got.packet.block === (block & 0xffff)) break;
        if (++attempts > 5) throw new Error(`no ACK for block ${block}`);
      }
    }
    first = undefined;
    return { data, oack, error: undefined };
  } finally {
    await peer.close();
  }
}

/** Sends one raw datagram and returns the first answer (or undefined after `timeoutMs`). */
export async function rawExchange(port: number, payload: Buffer, timeoutMs = 1000, host = '127.0.0.1'): Promise<Packet | undefined> {
  const peer = await UdpPeer.open(host);
  try {
    peer.send(payload, port);
    return (await peer.next(timeoutMs))?.packet;
  } finally {
    await peer.close();
  }
}

export { encodeError };
