/**
 * Hand-built datagrams, independent of the encoders under test (so a codec bug cannot hide
 * itself), and short names for packets in trace assertions.
 */
import { Opcode, type Packet } from '../../../src/tftp/protocol/packet.js';

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

export function ackBytes(block: number): Buffer {
  return Buffer.from([0, Opcode.ACK, ...u16(block & 0xffff)]);
}

export function dataBytes(block: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0, Opcode.DATA, ...u16(block & 0xffff)]), payload]);
}

export function errorBytes(code: number, message: string): Buffer {
  return Buffer.concat([Buffer.from([0, Opcode.ERROR, ...u16(code)]), Buffer.from(message, 'latin1'), Buffer.from([0])]);
}

/** A short human-readable name for trace assertions: 'DATA 3', 'ACK 0', 'OACK', 'ERROR 1'. */
export function describePacket(p: Packet | undefined): string {
  if (!p) return 'malformed';
  switch (p.opcode) {
    case Opcode.RRQ: return 'RRQ';
    case Opcode.WRQ: return 'WRQ';
    case Opcode.DATA: return `DATA ${p.block}`;
    case Opcode.ACK: return `ACK ${p.block}`;
    case Opcode.ERROR: return `ERROR ${p.code}`;
    case Opcode.OACK: return 'OACK';
  }
}
