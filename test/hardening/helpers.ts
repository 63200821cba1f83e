import { createHash } from 'node:crypto';
import { encodeData, encodeRequest, Opcode } from '../../src/tftp/protocol/packet.js';
import type { TestGateway } from '../support/gateway.js';
import { tftpGet, type ClientResult } from '../support/tftp-client.js';
import { UdpPeer } from '../support/udp-peer.js';
import { eventually } from '../support/wait.js';

export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * A UDP peer bound to a chosen loopback address (127.0.0.0/8 is all local on Linux, for client
 * rules), sending to the gateway on 127.0.0.1.
 */
export const openPeer = (bind = '127.0.0.1'): Promise<UdpPeer> => UdpPeer.open(bind, '127.0.0.1');

export type Outcome = ClientResult;

/** RRQ from `bind`: window-1 reader (honours a windowsize the server grants). */
export function get(port: number, name: string, opts: { bind?: string; options?: Record<string, string>; timeoutMs?: number } = {}): Promise<Outcome> {
  return tftpGet(name, { port, host: '127.0.0.1', ...opts });
}

/** WRQ from `bind`: sends windows of `window` blocks (RFC 7440 when the server grants windowsize). */
export async function put(
  port: number,
  name: string,
  data: Buffer,
  opts: { bind?: string; options?: Record<string, string>; timeoutMs?: number; beforeLastBlock?: () => Promise<void> } = {},
): Promise<Outcome> {
  const peer = await openPeer(opts.bind);
  try {
    peer.send(encodeRequest(Opcode.WRQ, name, 'octet', new Map(Object.entries(opts.options ?? {}))), port);
    const first = await peer.next(opts.timeoutMs ?? 3000);
    if (!first) throw new Error('no answer to WRQ');
    const serverPort = first.port;
    if (first.packet.opcode === Opcode.ERROR) return { data, oack: undefined, error: { code: first.packet.code, message: first.packet.message } };
    let oack: Map<string, string> | undefined;
    if (first.packet.opcode === Opcode.OACK) oack = new Map(first.packet.options);
    const blksize = Number(oack?.get('blksize') ?? 512);
    const window = Number(oack?.get('windowsize') ?? 1);
    const blocks = Math.floor(data.length / blksize) + 1;
    let base = 1;
    let attempts = 0;
    while (base <= blocks) {
      const end = Math.min(blocks, base + window - 1);
      if (end === blocks && opts.beforeLastBlock) {
        await opts.beforeLastBlock();
        opts = { ...opts, beforeLastBlock: undefined };
      }
      for (let b = base; b <= end; b++) {
        peer.send(encodeData(b & 0xffff, data.subarray((b - 1) * blksize, Math.min(data.length, b * blksize))), serverPort);
      }
      const deadline = Date.now() + (end === blocks ? 15000 : (opts.timeoutMs ?? 3000));
      let advanced = false;
      while (Date.now() < deadline) {
        const got = await peer.next(deadline - Date.now());
        if (!got) break;
        if (got.packet.opcode === Opcode.ERROR) return { data, oack, error: { code: got.packet.code, message: got.packet.message } };
        if (got.packet.opcode !== Opcode.ACK) continue;
        const acked = unwrap(got.packet.block, base - 1);
        if (acked >= base) {
          base = acked + 1;
          advanced = true;
          break;
        }
        // The server re-acknowledged the block before the window (its timer fired: the window was
        // lost): send the window again now, as tftp-hpa's client does.
        if (acked === base - 1) break;
      }
      if (!advanced && ++attempts > 5) throw new Error(`no ACK after block ${base - 1}`);
      if (advanced) attempts = 0;
    }
    return { data, oack, error: undefined };
  } finally {
    await peer.close();
  }
}

function unwrap(wire: number, near: number): number {
  const candidate = (near & ~0xffff) | wire;
  if (candidate < near - 0x8000) return candidate + 0x10000;
  if (candidate > near + 0x8000) return candidate - 0x10000;
  return candidate;
}

/** The value of tftp_gateway_requests_refused_total{reason}. */
export async function refused(gw: TestGateway, reason: string): Promise<number> {
  // Summed over worker threads (TFTPGW_TEST_WORKERS), as /metrics has it.
  const m = await gw.gateway.metricValues('tftp_gateway_requests_refused_total');
  return m.find((v) => v.labels.reason === reason)?.value ?? 0;
}

/** The 'request refused' log lines so far. */
export function refusalLogs(gw: TestGateway): Record<string, unknown>[] {
  return gw.logs.filter((l) => l.msg === 'request refused');
}

/** Waits (bounded) until the gateway's session table is empty. */
export async function drained(gw: TestGateway, timeoutMs = 10_000): Promise<boolean> {
  await eventually(() => gw.gateway.dispatcher.activeSessions === 0, timeoutMs);
  await gw.gateway.dispatcher.settled();
  return gw.gateway.dispatcher.activeSessions === 0;
}
