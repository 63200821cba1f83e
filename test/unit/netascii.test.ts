import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeNetascii, NetasciiDecoder } from '../../src/tftp/protocol/netascii.js';
import { mulberry32 } from '../support/prng.js';

const CR = 0x0d;
const LF = 0x0a;
const NUL = 0x00;
const b = (...xs: (number | string)[]): Buffer =>
  Buffer.from(xs.flatMap((x) => (typeof x === 'string' ? [...Buffer.from(x, 'latin1')] : [x])));

function decodeChunks(chunks: Buffer[]): Buffer {
  const d = new NetasciiDecoder();
  const out = chunks.map((c) => d.decode(c));
  out.push(d.end());
  return Buffer.concat(out);
}

describe('encodeNetascii (local → wire)', () => {
  test('LF becomes CR LF', () => {
    assert.deepEqual(encodeNetascii(b('a', LF, 'b', LF)), b('a', CR, LF, 'b', CR, LF));
  });

  test('CR becomes CR NUL', () => {
    assert.deepEqual(encodeNetascii(b('a', CR, 'b')), b('a', CR, NUL, 'b'));
  });

  test('CR LF in the local text becomes CR NUL CR LF', () => {
    assert.deepEqual(encodeNetascii(b(CR, LF)), b(CR, NUL, CR, LF));
  });

  test('runs of newlines and a trailing CR', () => {
    assert.deepEqual(encodeNetascii(b(LF, LF, CR)), b(CR, LF, CR, LF, CR, NUL));
  });

  test('other bytes (NUL, 0xff, text) are untouched', () => {
    const plain = b('hello', NUL, 0xff, 0x7f, 'x');
    assert.deepEqual(encodeNetascii(plain), plain);
    assert.deepEqual(encodeNetascii(Buffer.alloc(0)), Buffer.alloc(0));
  });

  test('chunks convert independently (no state)', () => {
    const text = b('a', CR, LF, CR, 'b', LF);
    const whole = encodeNetascii(text);
    for (let i = 0; i <= text.length; i++) {
      assert.deepEqual(Buffer.concat([encodeNetascii(text.subarray(0, i)), encodeNetascii(text.subarray(i))]), whole, `split at ${i}`);
    }
  });
});

describe('NetasciiDecoder (wire → local)', () => {
  test('CR LF → LF and CR NUL → CR', () => {
    assert.deepEqual(decodeChunks([b('a', CR, LF, 'b', CR, NUL, 'c')]), b('a', LF, 'b', CR, 'c'));
  });

  test('a lone CR followed by another byte is kept, and that byte handled normally', () => {
    assert.deepEqual(decodeChunks([b('a', CR, 'b')]), b('a', CR, 'b'));
    // CR CR LF: the first CR is lone, the second pairs with LF.
    assert.deepEqual(decodeChunks([b(CR, CR, LF)]), b(CR, LF));
    // CR CR NUL: lone CR then CR NUL.
    assert.deepEqual(decodeChunks([b(CR, CR, NUL)]), b(CR, CR));
  });

  test('a NUL without a CR before it is data', () => {
    assert.deepEqual(decodeChunks([b('a', NUL, 'b')]), b('a', NUL, 'b'));
  });

  test('end() flushes a dangling CR once', () => {
    const d = new NetasciiDecoder();
    assert.deepEqual(d.decode(b('x', CR)), b('x'));
    assert.deepEqual(d.end(), b(CR));
    assert.deepEqual(d.end(), Buffer.alloc(0));
    assert.deepEqual(new NetasciiDecoder().end(), Buffer.alloc(0));
  });

  test('a CR at the end of one chunk pairs with LF or NUL at the start of the next', () => {
    const d = new NetasciiDecoder();
    assert.deepEqual(d.decode(b('line', CR)), b('line'));
    assert.deepEqual(d.decode(b(LF, 'next', CR)), b(LF, 'next'));
    assert.deepEqual(d.decode(b(NUL)), b(CR));
    assert.deepEqual(d.decode(b(CR)), Buffer.alloc(0));
    assert.deepEqual(d.decode(b('z')), b(CR, 'z'));
    assert.deepEqual(d.end(), Buffer.alloc(0));
  });

  test('empty chunks keep the pending CR', () => {
    const d = new NetasciiDecoder();
    d.decode(b(CR));
    assert.deepEqual(d.decode(Buffer.alloc(0)), Buffer.alloc(0));
    assert.deepEqual(d.decode(b(LF)), b(LF));
  });

  test('every way of splitting a tricky wire stream into three chunks decodes the same', () => {
    // Hand-built: wire form and its local form.
    const wire = b('l1', CR, LF, CR, NUL, CR, LF, 'x', CR, 'y', CR, CR, LF, NUL, CR, NUL, CR);
    const local = b('l1', LF, CR, LF, 'x', CR, 'y', CR, LF, NUL, CR, CR);
    assert.deepEqual(decodeChunks([wire]), local);
    for (let i = 0; i <= wire.length; i++) {
      for (let j = i; j <= wire.length; j++) {
        const got = decodeChunks([wire.subarray(0, i), wire.subarray(i, j), wire.subarray(j)]);
        assert.deepEqual(got, local, `split at ${i},${j}`);
      }
    }
  });

  test('byte-at-a-time decoding', () => {
    const wire = b(CR, LF, CR, NUL, CR, CR, LF, 'a', CR);
    const local = b(LF, CR, CR, LF, 'a', CR);
    assert.deepEqual(decodeChunks([...wire].map((x) => Buffer.from([x]))), local);
  });
});

describe('round trip property', () => {
  for (const seed of [7, 1234, 99991]) {
    test(`decode(encode(text)) = text under random chunking (seed=${seed})`, () => {
      const rng = mulberry32(seed);
      const alphabet = [CR, LF, NUL, CR, LF, 0x41, 0x20, 0xff, 0x0c];
      for (let iter = 0; iter < 500; iter++) {
        const n = Math.floor(rng() * 200);
        const text = Buffer.alloc(n);
        for (let i = 0; i < n; i++) text[i] = rng() < 0.8 ? alphabet[Math.floor(rng() * alphabet.length)]! : Math.floor(rng() * 256);
        // Encode in random chunks too (stateless).
        const encParts: Buffer[] = [];
        for (let pos = 0; pos < n; ) {
          const len = 1 + Math.floor(rng() * 20);
          encParts.push(encodeNetascii(text.subarray(pos, pos + len)));
          pos += len;
        }
        const wire = Buffer.concat(encParts);
        // The wire form never carries a bare LF or a CR followed by anything but LF / NUL.
        for (let i = 0; i < wire.length; i++) {
          if (wire[i] === CR) assert.ok(wire[i + 1] === LF || wire[i + 1] === NUL);
          if (wire[i] === LF) assert.equal(wire[i - 1], CR);
        }
        const chunks: Buffer[] = [];
        for (let pos = 0; pos < wire.length; ) {
          const len = Math.floor(rng() * 9); // zero-length chunks included
          chunks.push(wire.subarray(pos, pos + len));
          pos += len;
        }
        assert.deepEqual(decodeChunks(chunks), text);
      }
    });
  }
});
