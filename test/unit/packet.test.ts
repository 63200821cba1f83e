import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodePacket,
  encodeAck,
  encodeData,
  encodeDataHeader,
  encodeError,
  encodeOack,
  encodeRequest,
  ErrorCode,
  Opcode,
  type DecodeResult,
  type Packet,
} from '../../src/tftp/protocol/packet.js';
import { mulberry32 } from '../support/prng.js';

// ----- helpers: expected bytes are written out by hand, never produced by the encoder under test

const ascii = (s: string): number[] => [...Buffer.from(s, 'latin1')];
const bytes = (...parts: (number | number[] | string)[]): Buffer =>
  Buffer.from(parts.flatMap((p) => (typeof p === 'string' ? ascii(p) : Array.isArray(p) ? p : [p])));

function decodeOk(buf: Buffer): Packet {
  const r = decodePacket(buf);
  assert.ok(r.ok, `expected ok, got ${r.ok ? '' : r.reason}`);
  return r.packet;
}

function decodeFail(buf: Buffer): { reason: string; opcode: number | undefined } {
  const r = decodePacket(buf);
  assert.equal(r.ok, false, 'expected a decode failure');
  if (r.ok) throw new Error('unreachable');
  return r;
}

describe('hand-built byte vectors', () => {
  test('RRQ without options', () => {
    const wire = bytes(0, 1, 'pxelinux.0', 0, 'octet', 0);
    assert.deepEqual(encodeRequest(Opcode.RRQ, 'pxelinux.0', 'octet'), wire);
    const p = decodeOk(wire);
    assert.equal(p.opcode, Opcode.RRQ);
    if (p.opcode !== Opcode.RRQ) return;
    assert.equal(p.filename, 'pxelinux.0');
    assert.equal(p.mode, 'octet');
    assert.equal(p.options.size, 0);
  });

  test('WRQ with options in order', () => {
    const wire = bytes(0, 2, 'up/f.bin', 0, 'netascii', 0, 'blksize', 0, '1468', 0, 'tsize', 0, '1000', 0);
    const opts = new Map([
      ['blksize', '1468'],
      ['tsize', '1000'],
    ]);
    assert.deepEqual(encodeRequest(Opcode.WRQ, 'up/f.bin', 'netascii', opts), wire);
    const p = decodeOk(wire);
    assert.equal(p.opcode, Opcode.WRQ);
    if (p.opcode !== Opcode.WRQ) return;
    assert.equal(p.filename, 'up/f.bin');
    assert.equal(p.mode, 'netascii');
    assert.deepEqual([...p.options], [
      ['blksize', '1468'],
      ['tsize', '1000'],
    ]);
  });

  test('DATA', () => {
    const wire = bytes(0, 3, 0x12, 0x34, 1, 2, 3);
    assert.deepEqual(encodeData(0x1234, Buffer.from([1, 2, 3])), wire);
    assert.deepEqual(encodeDataHeader(0x1234), bytes(0, 3, 0x12, 0x34));
    const p = decodeOk(wire);
    assert.equal(p.opcode, Opcode.DATA);
    if (p.opcode !== Opcode.DATA) return;
    assert.equal(p.block, 0x1234);
    assert.deepEqual(p.data, Buffer.from([1, 2, 3]));
  });

  test('empty DATA (end of a file whose size is a multiple of blksize)', () => {
    const wire = bytes(0, 3, 0, 7);
    assert.deepEqual(encodeData(7, Buffer.alloc(0)), wire);
    const p = decodeOk(wire);
    assert.ok(p.opcode === Opcode.DATA && p.block === 7 && p.data.length === 0);
  });

  test('DATA payload is carried byte-exact, including NULs and 0xff', () => {
    const payload = Buffer.from([0, 0, 0xff, 0, 0x0d, 0x0a, 0]);
    const p = decodeOk(bytes(0, 3, 0, 1, [...payload]));
    assert.ok(p.opcode === Opcode.DATA);
    assert.deepEqual(p.data, payload);
  });

  test('ACK', () => {
    assert.deepEqual(encodeAck(0), bytes(0, 4, 0, 0));
    assert.deepEqual(encodeAck(65535), bytes(0, 4, 0xff, 0xff));
    assert.deepEqual(encodeAck(258), bytes(0, 4, 1, 2));
    const p = decodeOk(bytes(0, 4, 0xab, 0xcd));
    assert.deepEqual(p, { opcode: Opcode.ACK, block: 0xabcd });
  });

  test('block numbers are written modulo 65536', () => {
    assert.deepEqual(encodeAck(65536), bytes(0, 4, 0, 0));
    assert.deepEqual(encodeAck(65537), bytes(0, 4, 0, 1));
    assert.deepEqual(encodeDataHeader(70000), bytes(0, 3, 0x11, 0x70)); // 70000 - 65536 = 4464 = 0x1170
    assert.deepEqual(encodeData(131071, Buffer.from([9])), bytes(0, 3, 0xff, 0xff, 9));
  });

  test('ERROR', () => {
    const wire = bytes(0, 5, 0, 1, 'File not found', 0);
    assert.deepEqual(encodeError(ErrorCode.FileNotFound, 'File not found'), wire);
    assert.deepEqual(decodeOk(wire), { opcode: Opcode.ERROR, code: 1, message: 'File not found' });
    assert.deepEqual(encodeError(8, ''), bytes(0, 5, 0, 8, 0));
    assert.deepEqual(decodeOk(bytes(0, 5, 0, 8, 0)), { opcode: Opcode.ERROR, code: 8, message: '' });
  });

  test('ERROR whose message lacks the final NUL', () => {
    assert.deepEqual(decodeOk(bytes(0, 5, 0, 2, 'denied')), { opcode: Opcode.ERROR, code: 2, message: 'denied' });
  });

  test('ERROR without any message bytes at all', () => {
    assert.deepEqual(decodeOk(bytes(0, 5, 0, 4)), { opcode: Opcode.ERROR, code: 4, message: '' });
  });

  test('OACK', () => {
    const wire = bytes(6 >> 8, 6, 'blksize', 0, '1024', 0, 'tsize', 0, '99', 0);
    const opts = new Map([
      ['blksize', '1024'],
      ['tsize', '99'],
    ]);
    assert.deepEqual(encodeOack(opts), wire);
    const p = decodeOk(wire);
    assert.ok(p.opcode === Opcode.OACK);
    assert.deepEqual([...p.options], [...opts]);
  });

  test('error codes match RFC 1350 / 2347', () => {
    assert.equal(ErrorCode.NotDefined, 0);
    assert.equal(ErrorCode.FileNotFound, 1);
    assert.equal(ErrorCode.AccessViolation, 2);
    assert.equal(ErrorCode.DiskFull, 3);
    assert.equal(ErrorCode.IllegalOperation, 4);
    assert.equal(ErrorCode.UnknownTransferId, 5);
    assert.equal(ErrorCode.FileExists, 6);
    assert.equal(ErrorCode.NoSuchUser, 7);
    assert.equal(ErrorCode.OptionRefused, 8);
  });
});

describe('request parsing', () => {
  test('option names and mode are case-insensitive; the file name keeps its case', () => {
    const p = decodeOk(bytes(0, 1, 'Boot/BOOTX64.EFI', 0, 'OcTeT', 0, 'BLKSIZE', 0, '1468', 0, 'TSize', 0, '0', 0));
    assert.ok(p.opcode === Opcode.RRQ);
    assert.equal(p.filename, 'Boot/BOOTX64.EFI');
    assert.equal(p.mode, 'octet');
    assert.deepEqual([...p.options], [
      ['blksize', '1468'],
      ['tsize', '0'],
    ]);
  });

  test('option values keep their case and bytes', () => {
    const p = decodeOk(bytes(0, 1, 'f', 0, 'octet', 0, 'x-Vendor', 0, 'AbC', 0));
    assert.ok(p.opcode === Opcode.RRQ);
    assert.equal(p.options.get('x-vendor'), 'AbC');
  });

  test('the first occurrence of an option wins, whatever its case', () => {
    const p = decodeOk(bytes(0, 1, 'f', 0, 'octet', 0, 'blksize', 0, '1024', 0, 'BLKSIZE', 0, '512', 0, 'blksize', 0, '8', 0));
    assert.ok(p.opcode === Opcode.RRQ);
    assert.equal(p.options.get('blksize'), '1024');
    assert.equal(p.options.size, 1);
  });

  test('missing final NUL after the mode is tolerated', () => {
    const p = decodeOk(bytes(0, 1, 'file', 0, 'octet'));
    assert.ok(p.opcode === Opcode.RRQ);
    assert.equal(p.filename, 'file');
    assert.equal(p.mode, 'octet');
  });

  test('missing final NUL after the last option value is tolerated', () => {
    const p = decodeOk(bytes(0, 2, 'file', 0, 'octet', 0, 'blksize', 0, '1432'));
    assert.ok(p.opcode === Opcode.WRQ);
    assert.equal(p.options.get('blksize'), '1432');
  });

  test('an option name without a value is ignored', () => {
    const p = decodeOk(bytes(0, 1, 'file', 0, 'octet', 0, 'blksize', 0, '1024', 0, 'tsize', 0));
    assert.ok(p.opcode === Opcode.RRQ);
    assert.deepEqual([...p.options], [['blksize', '1024']]);
  });

  test('an empty option name is skipped', () => {
    const p = decodeOk(bytes(0, 1, 'file', 0, 'octet', 0, 0, 'x', 0, 'blksize', 0, '1024', 0));
    assert.ok(p.opcode === Opcode.RRQ);
    assert.equal(p.options.has(''), false);
    assert.equal(p.options.get('blksize'), '1024');
  });

  test('trailing padding NULs (some ROMs) do not break the request', () => {
    const p = decodeOk(bytes(0, 1, 'file', 0, 'octet', 0, 0, 0, 0, 0));
    assert.ok(p.opcode === Opcode.RRQ);
    assert.equal(p.filename, 'file');
    assert.equal(p.mode, 'octet');
    assert.equal(p.options.size, 0);
  });

  test('every byte of a latin1 file name survives', () => {
    const name = Buffer.from([0x80, 0xe9, 0xff, 0x41, 0x5c]);
    const p = decodeOk(Buffer.concat([bytes(0, 1), name, bytes(0, 'octet', 0)]));
    assert.ok(p.opcode === Opcode.RRQ);
    assert.deepEqual(Buffer.from(p.filename, 'latin1'), name);
  });

  test('a huge option list is bounded', () => {
    const parts: (number | string)[] = [0, 1, 'f', 0, 'octet', 0];
    for (let i = 0; i < 2000; i++) parts.push(`opt${i}`, 0, String(i), 0);
    const p = decodeOk(bytes(...parts));
    assert.ok(p.opcode === Opcode.RRQ);
    assert.ok(p.options.size <= 32, `kept ${p.options.size} options`);
    assert.ok(p.options.size > 0);
    assert.equal(p.options.get('opt0'), '0'); // the first ones are kept
  });

  test('requests without a file name or a mode are refused', () => {
    assert.equal(decodeFail(bytes(0, 1)).opcode, 1);
    assert.equal(decodeFail(bytes(0, 1, 0, 'octet', 0)).opcode, 1);
    assert.equal(decodeFail(bytes(0, 2, 'file', 0)).opcode, 2);
    assert.equal(decodeFail(bytes(0, 2, 'file')).opcode, 2);
    assert.equal(decodeFail(bytes(0, 1, 'file', 0, 0)).opcode, 1);
  });
});

describe('malformed datagrams', () => {
  test('shorter than an opcode: no opcode in the result', () => {
    assert.equal(decodeFail(Buffer.alloc(0)).opcode, undefined);
    assert.equal(decodeFail(Buffer.from([0])).opcode, undefined);
  });

  test('unknown opcodes are reported with the opcode', () => {
    for (const op of [0, 7, 8, 0x100, 0xffff]) {
      const f = decodeFail(bytes(op >> 8, op & 0xff, 0, 1));
      assert.equal(f.opcode, op);
      assert.ok(f.reason.length > 0);
    }
  });

  test('DATA, ACK and ERROR shorter than their header', () => {
    assert.equal(decodeFail(bytes(0, 3)).opcode, 3);
    assert.equal(decodeFail(bytes(0, 3, 0)).opcode, 3);
    assert.equal(decodeFail(bytes(0, 4, 0)).opcode, 4);
    assert.equal(decodeFail(bytes(0, 5, 0)).opcode, 5);
  });

  test('an ACK with trailing junk is still an ACK', () => {
    assert.deepEqual(decodeOk(bytes(0, 4, 0, 9, 1, 2, 3)), { opcode: Opcode.ACK, block: 9 });
  });

  test('an empty OACK decodes to no options', () => {
    const p = decodeOk(bytes(0, 6));
    assert.ok(p.opcode === Opcode.OACK && p.options.size === 0);
  });
});

// ----- round trips

type Spec =
  | { kind: 'req'; opcode: Opcode.RRQ | Opcode.WRQ; filename: string; mode: string; options: Map<string, string> }
  | { kind: 'data'; block: number; data: Buffer }
  | { kind: 'ack'; block: number }
  | { kind: 'error'; code: number; message: string }
  | { kind: 'oack'; options: Map<string, string> };

function randomString(rng: () => number, min: number, max: number, lower = false): string {
  const n = min + Math.floor(rng() * (max - min + 1));
  let s = '';
  for (let i = 0; i < n; i++) {
    // Any latin1 byte except NUL (the separator).
    let c = 1 + Math.floor(rng() * 255);
    if (lower && c >= 0x41 && c <= 0x5a) c += 0x20;
    s += String.fromCharCode(c);
  }
  return lower ? s.toLowerCase() : s;
}

function randomOptions(rng: () => number, max: number): Map<string, string> {
  const m = new Map<string, string>();
  const n = Math.floor(rng() * (max + 1));
  for (let i = 0; i < n; i++) {
    // Lower-cased names (the decoder lower-cases); toLowerCase on latin1 can leave non-ASCII letters alone.
    const name = randomString(rng, 1, 12, true);
    if (name.toLowerCase() !== name) continue;
    if (!m.has(name)) m.set(name, randomString(rng, 0, 12));
  }
  return m;
}

function randomSpec(rng: () => number): Spec {
  switch (Math.floor(rng() * 5)) {
    case 0: {
      const filename = randomString(rng, 1, 40);
      const mode = rng() < 0.5 ? 'octet' : 'netascii';
      return { kind: 'req', opcode: rng() < 0.5 ? Opcode.RRQ : Opcode.WRQ, filename, mode, options: randomOptions(rng, 6) };
    }
    case 1: {
      const data = Buffer.alloc(Math.floor(rng() * 600));
      for (let i = 0; i < data.length; i++) data[i] = Math.floor(rng() * 256);
      return { kind: 'data', block: Math.floor(rng() * 65536), data };
    }
    case 2:
      return { kind: 'ack', block: Math.floor(rng() * 65536) };
    case 3:
      return { kind: 'error', code: Math.floor(rng() * 9), message: randomString(rng, 0, 60) };
    default: {
      const options = randomOptions(rng, 6);
      // The OACK decoder does not skip empty values; keep values non-empty-name only.
      return { kind: 'oack', options };
    }
  }
}

function encodeSpec(s: Spec): Buffer {
  switch (s.kind) {
    case 'req': return encodeRequest(s.opcode, s.filename, s.mode, s.options);
    case 'data': return encodeData(s.block, s.data);
    case 'ack': return encodeAck(s.block);
    case 'error': return encodeError(s.code, s.message);
    case 'oack': return encodeOack(s.options);
  }
}

function checkRoundTrip(s: Spec, p: Packet): void {
  switch (s.kind) {
    case 'req':
      assert.ok(p.opcode === s.opcode);
      assert.equal(p.filename, s.filename);
      assert.equal(p.mode, s.mode);
      assert.deepEqual([...p.options], [...s.options]);
      return;
    case 'data':
      assert.ok(p.opcode === Opcode.DATA);
      assert.equal(p.block, s.block);
      assert.deepEqual(p.data, s.data);
      return;
    case 'ack':
      assert.deepEqual(p, { opcode: Opcode.ACK, block: s.block });
      return;
    case 'error':
      assert.deepEqual(p, { opcode: Opcode.ERROR, code: s.code, message: s.message });
      return;
    case 'oack':
      assert.ok(p.opcode === Opcode.OACK);
      assert.deepEqual([...p.options], [...s.options]);
      return;
  }
}

describe('round trips', () => {
  test('every packet type: decode(encode(x)) = x', () => {
    const cases: Spec[] = [
      { kind: 'req', opcode: Opcode.RRQ, filename: 'a', mode: 'octet', options: new Map() },
      { kind: 'req', opcode: Opcode.WRQ, filename: 'dir\\WIN.BIN', mode: 'netascii', options: new Map([['windowsize', '4'], ['timeout', '3']]) },
      { kind: 'data', block: 1, data: Buffer.alloc(512, 0xaa) },
      { kind: 'data', block: 65535, data: Buffer.alloc(0) },
      { kind: 'data', block: 0, data: Buffer.alloc(65464, 7) },
      { kind: 'ack', block: 0 },
      { kind: 'ack', block: 65535 },
      { kind: 'error', code: 0, message: 'Storage error' },
      { kind: 'error', code: 65535, message: '' },
      { kind: 'oack', options: new Map([['tsize', '123456'], ['blksize', '1468'], ['windowsize', '16']]) },
    ];
    for (const c of cases) checkRoundTrip(c, decodeOk(encodeSpec(c)));
  });

  test('random packets round-trip (seed=2024, 20k cases)', () => {
    const rng = mulberry32(2024);
    for (let i = 0; i < 20_000; i++) {
      const s = randomSpec(rng);
      checkRoundTrip(s, decodeOk(encodeSpec(s)));
    }
  });
});

// ----- property: decoding arbitrary bytes never throws and answers something well-formed

function checkWellFormed(buf: Buffer, r: DecodeResult): void {
  assert.equal(typeof r.ok, 'boolean');
  if (!r.ok) {
    assert.equal(typeof r.reason, 'string');
    assert.ok(r.reason.length > 0);
    if (buf.length < 2) assert.equal(r.opcode, undefined);
    else assert.equal(r.opcode, buf.readUInt16BE(0));
    return;
  }
  const p = r.packet;
  assert.equal(p.opcode, buf.readUInt16BE(0));
  switch (p.opcode) {
    case Opcode.RRQ:
    case Opcode.WRQ:
      assert.ok(typeof p.filename === 'string' && p.filename.length > 0 && !p.filename.includes('\0'));
      assert.ok(typeof p.mode === 'string' && p.mode.length > 0 && p.mode === p.mode.toLowerCase() && !p.mode.includes('\0'));
      assert.ok(p.options instanceof Map);
      assert.ok(p.options.size <= 32);
      for (const [k, v] of p.options as ReadonlyMap<string, unknown>) {
        assert.ok(k.length > 0 && k === k.toLowerCase() && !k.includes('\0'));
        assert.ok(typeof v === 'string' && !v.includes('\0'));
      }
      return;
    case Opcode.DATA:
      assert.ok(Number.isInteger(p.block) && p.block >= 0 && p.block <= 0xffff);
      assert.ok(Buffer.isBuffer(p.data));
      assert.equal(p.data.length, buf.length - 4);
      return;
    case Opcode.ACK:
      assert.ok(Number.isInteger(p.block) && p.block >= 0 && p.block <= 0xffff);
      assert.ok(buf.length >= 4);
      return;
    case Opcode.ERROR:
      assert.ok(Number.isInteger(p.code) && p.code >= 0 && p.code <= 0xffff);
      assert.ok(typeof p.message === 'string' && !p.message.includes('\0'));
      return;
    case Opcode.OACK:
      assert.ok(p.options instanceof Map);
      assert.ok(p.options.size <= 32);
      for (const [k, v] of p.options as ReadonlyMap<string, unknown>) {
        assert.ok(k === k.toLowerCase() && !k.includes('\0'));
        assert.ok(typeof v === 'string' && !v.includes('\0'));
      }
      return;
    default:
      assert.fail(`unexpected opcode ${(p as Packet).opcode}`);
  }
}

function fuzzDatagram(rng: () => number): Buffer {
  const pick = rng();
  const randomBytes = (n: number, nulBias = 0): Buffer => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = rng() < nulBias ? 0 : Math.floor(rng() * 256);
    return b;
  };
  if (pick < 0.2) {
    // Pure noise, short or long.
    return randomBytes(Math.floor(rng() * (rng() < 0.9 ? 16 : 1500)));
  }
  if (pick < 0.4) {
    // Plausible opcode (or a bad one), random body heavy in NULs.
    const op = rng() < 0.8 ? Math.floor(rng() * 8) : Math.floor(rng() * 65536);
    return Buffer.concat([Buffer.from([op >> 8, op & 0xff]), randomBytes(Math.floor(rng() * 64), 0.3)]);
  }
  if (pick < 0.22) {
    // A huge option list, sometimes with duplicate names differing in case, sometimes without NULs at the end.
    let body = 'f\0octet\0';
    const n = 50 + Math.floor(rng() * 1500);
    for (let i = 0; i < n; i++) {
      const name = rng() < 0.3 ? (rng() < 0.5 ? 'BLKSIZE' : 'blksize') : `o${Math.floor(rng() * 100)}`;
      body += `${name}\0${Math.floor(rng() * 100000)}\0`;
    }
    const buf = Buffer.concat([Buffer.from([0, rng() < 0.5 ? 1 : 6]), Buffer.from(body, 'latin1')]);
    return rng() < 0.5 ? buf.subarray(0, buf.length - 1) : buf;
  }
  // A valid packet, then mutated.
  const buf = Buffer.from(encodeSpec(randomSpec(rng)));
  const mutation = Math.floor(rng() * 6);
  switch (mutation) {
    case 0: // truncated anywhere
      return buf.subarray(0, Math.floor(rng() * buf.length));
    case 1: // final NUL removed
      return buf[buf.length - 1] === 0 ? buf.subarray(0, buf.length - 1) : buf;
    case 2: { // every NUL after the opcode replaced
      for (let i = 2; i < buf.length; i++) if (buf[i] === 0) buf[i] = 0x41;
      return buf;
    }
    case 3: { // random byte flips
      const flips = 1 + Math.floor(rng() * 4);
      for (let i = 0; i < flips && buf.length > 0; i++) buf[Math.floor(rng() * buf.length)] = Math.floor(rng() * 256);
      return buf;
    }
    case 4: { // bad opcode
      const op = [0, 7, 8, 255, 256, 0xffff][Math.floor(rng() * 6)]!;
      if (buf.length >= 2) buf.writeUInt16BE(op, 0);
      return buf;
    }
    default: // extra junk appended
      return Buffer.concat([buf, randomBytes(Math.floor(rng() * 32), 0.2)]);
  }
}

describe('decoder property', () => {
  for (const seed of [0x5eed, 42]) {
    test(`100k random and mutated datagrams never throw and decode well-formed (seed=${seed})`, () => {
      const rng = mulberry32(seed);
      let ok = 0;
      let failed = 0;
      for (let i = 0; i < 100_000; i++) {
        const buf = fuzzDatagram(rng);
        let r: DecodeResult;
        try {
          r = decodePacket(buf);
        } catch (err) {
          assert.fail(`decodePacket threw on ${buf.toString('hex').slice(0, 200)}: ${String(err)}`);
        }
        checkWellFormed(buf, r);
        if (r.ok) ok++;
        else failed++;
      }
      // The generator must exercise both outcomes.
      assert.ok(ok > 10_000 && failed > 10_000, `ok=${ok} failed=${failed}`);
    });
  }
});
