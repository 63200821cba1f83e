/**
 * TFTP wire codec (RFC 1350, 2347). Pure functions: no I/O, no exceptions on untrusted input.
 * `decodePacket` returns a result object; it never throws, whatever the bytes.
 */

export enum Opcode {
  RRQ = 1,
  WRQ = 2,
  DATA = 3,
  ACK = 4,
  ERROR = 5,
  OACK = 6,
}

/** TFTP error codes (RFC 1350 §5, RFC 2347 for 8). */
export enum ErrorCode {
  NotDefined = 0,
  FileNotFound = 1,
  AccessViolation = 2,
  DiskFull = 3,
  IllegalOperation = 4,
  UnknownTransferId = 5,
  FileExists = 6,
  NoSuchUser = 7,
  OptionRefused = 8,
}

export type TransferMode = 'octet' | 'netascii';

export interface RequestPacket {
  readonly opcode: Opcode.RRQ | Opcode.WRQ;
  /** File name exactly as sent (latin1-decoded so every byte survives). */
  readonly filename: string;
  /** Mode lower-cased, as sent (validated by the caller: `mail` and unknown modes are refused there). */
  readonly mode: string;
  /** Options with lower-cased names, in the order the client sent them; the first occurrence wins. */
  readonly options: ReadonlyMap<string, string>;
}

export interface DataPacket {
  readonly opcode: Opcode.DATA;
  readonly block: number;
  /** A view into the received datagram; copy it if it must outlive the callback. */
  readonly data: Buffer;
}

export interface AckPacket {
  readonly opcode: Opcode.ACK;
  readonly block: number;
}

export interface ErrorPacket {
  readonly opcode: Opcode.ERROR;
  readonly code: number;
  readonly message: string;
}

export interface OackPacket {
  readonly opcode: Opcode.OACK;
  readonly options: ReadonlyMap<string, string>;
}

export type Packet = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

export type DecodeResult =
  | { readonly ok: true; readonly packet: Packet }
  | { readonly ok: false; readonly reason: string; readonly opcode: number | undefined };

/** Upper bound on options we look at in one request; more is either junk or an attack. */
const MAX_OPTIONS = 32;

function fail(reason: string, opcode?: number): DecodeResult {
  return { ok: false, reason, opcode };
}

/** Splits NUL-terminated strings from `start`. A missing final NUL is tolerated for the last field (some ROMs omit it). */
function splitStrings(buf: Buffer, start: number): string[] {
  const fields: string[] = [];
  let pos = start;
  while (pos < buf.length) {
    let end = buf.indexOf(0, pos);
    if (end === -1) end = buf.length;
    fields.push(buf.toString('latin1', pos, end));
    pos = end + 1;
  }
  return fields;
}

export function decodePacket(buf: Buffer): DecodeResult {
  if (buf.length < 2) return fail('packet shorter than an opcode');
  const opcode = buf.readUInt16BE(0);
  switch (opcode) {
    case Opcode.RRQ:
    case Opcode.WRQ: {
      const fields = splitStrings(buf, 2);
      const filename = fields[0];
      const mode = fields[1];
      if (filename === undefined || filename.length === 0) return fail('request without a file name', opcode);
      if (mode === undefined || mode.length === 0) return fail('request without a mode', opcode);
      const options = new Map<string, string>();
      for (let i = 2; i + 1 < fields.length && options.size < MAX_OPTIONS; i += 2) {
        const name = fields[i]!.toLowerCase();
        if (name.length === 0) continue;
        if (!options.has(name)) options.set(name, fields[i + 1]!);
      }
      return { ok: true, packet: { opcode, filename, mode: mode.toLowerCase(), options } };
    }
    case Opcode.DATA:
      if (buf.length < 4) return fail('DATA shorter than its header', opcode);
      return { ok: true, packet: { opcode, block: buf.readUInt16BE(2), data: buf.subarray(4) } };
    case Opcode.ACK:
      if (buf.length < 4) return fail('ACK shorter than its header', opcode);
      return { ok: true, packet: { opcode, block: buf.readUInt16BE(2) } };
    case Opcode.ERROR: {
      if (buf.length < 4) return fail('ERROR shorter than its header', opcode);
      const message = splitStrings(buf, 4)[0] ?? '';
      return { ok: true, packet: { opcode, code: buf.readUInt16BE(2), message } };
    }
    case Opcode.OACK: {
      const fields = splitStrings(buf, 2);
      const options = new Map<string, string>();
      for (let i = 0; i + 1 < fields.length && options.size < MAX_OPTIONS; i += 2) {
        options.set(fields[i]!.toLowerCase(), fields[i + 1]!);
      }
      return { ok: true, packet: { opcode, options } };
    }
    default:
      return fail(`unknown opcode ${opcode}`, opcode);
  }
}

function stringsLength(strings: readonly string[]): number {
  let n = 0;
  for (const s of strings) n += Buffer.byteLength(s, 'latin1') + 1;
  return n;
}

function writeStrings(buf: Buffer, offset: number, strings: readonly string[]): void {
  let pos = offset;
  for (const s of strings) {
    pos += buf.write(s, pos, 'latin1');
    buf[pos++] = 0;
  }
}

export function encodeRequest(
  opcode: Opcode.RRQ | Opcode.WRQ,
  filename: string,
  mode: string,
  options: ReadonlyMap<string, string> = new Map(),
): Buffer {
  const strings = [filename, mode];
  for (const [k, v] of options) strings.push(k, v);
  const buf = Buffer.allocUnsafe(2 + stringsLength(strings));
  buf.writeUInt16BE(opcode, 0);
  writeStrings(buf, 2, strings);
  return buf;
}

/** Opcode and a 16-bit block number: an ACK, or the header of a DATA. */
function blockPacket(opcode: Opcode.DATA | Opcode.ACK, block: number): Buffer {
  const buf = Buffer.allocUnsafe(4);
  buf.writeUInt16BE(opcode, 0);
  buf.writeUInt16BE(block & 0xffff, 2);
  return buf;
}

/** The 4-byte DATA header; the payload travels separately (socket.send([header, ...payload])). */
export function encodeDataHeader(block: number): Buffer {
  return blockPacket(Opcode.DATA, block);
}

export function encodeData(block: number, data: Buffer): Buffer {
  return Buffer.concat([encodeDataHeader(block), data]);
}

export function encodeAck(block: number): Buffer {
  return blockPacket(Opcode.ACK, block);
}

export function encodeError(code: number, message: string): Buffer {
  const buf = Buffer.allocUnsafe(4 + stringsLength([message]));
  buf.writeUInt16BE(Opcode.ERROR, 0);
  buf.writeUInt16BE(code & 0xffff, 2);
  writeStrings(buf, 4, [message]);
  return buf;
}

export function encodeOack(options: ReadonlyMap<string, string>): Buffer {
  const strings: string[] = [];
  for (const [k, v] of options) strings.push(k, v);
  const buf = Buffer.allocUnsafe(2 + stringsLength(strings));
  buf.writeUInt16BE(Opcode.OACK, 0);
  writeStrings(buf, 2, strings);
  return buf;
}
