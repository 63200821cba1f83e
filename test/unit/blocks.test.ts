import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { absoluteBlock, wireBlock } from '../../src/tftp/protocol/blocks.js';
import { mulberry32 } from '../support/prng.js';

describe('wireBlock', () => {
  test('wraps modulo 65536 (rollover to 0)', () => {
    const cases: [number, number][] = [
      [0, 0], [1, 1], [65534, 65534], [65535, 65535], [65536, 0], [65537, 1],
      [70000, 4464], [131071, 65535], [131072, 0], [196609, 1],
    ];
    for (const [abs, wire] of cases) assert.equal(wireBlock(abs), wire, String(abs));
  });
});

describe('absoluteBlock', () => {
  test('no rollover: the wire number is the block', () => {
    assert.equal(absoluteBlock(3, 5), 3);
    assert.equal(absoluteBlock(7, 5), 7);
    assert.equal(absoluteBlock(0, 1), 0);
    assert.equal(absoluteBlock(1, 1), 1);
  });

  test('forward across 65535 → 0', () => {
    assert.equal(absoluteBlock(65535, 65535), 65535);
    assert.equal(absoluteBlock(0, 65535), 65536);
    assert.equal(absoluteBlock(1, 65535), 65537);
    assert.equal(absoluteBlock(15, 65530), 65551);
    assert.equal(absoluteBlock(0, 131071), 131072);
  });

  test('backward across 0 → 65535 (an ACK for a block before the wrap)', () => {
    assert.equal(absoluteBlock(65535, 65536), 65535);
    assert.equal(absoluteBlock(65530, 65540), 65530);
    assert.equal(absoluteBlock(0, 65536), 65536);
    assert.equal(absoluteBlock(65535, 131073), 131071);
    assert.equal(absoluteBlock(65534, 131072), 131070);
  });

  test('before the first wrap, far-ahead numbers map below zero rather than ahead', () => {
    // A stale block number from "the previous lap" when there was none: never mistaken for a future block.
    assert.ok(absoluteBlock(65000, 10) < 10);
  });

  for (const seed of [1, 65536]) {
    test(`round trip within half the space either way (seed=${seed})`, () => {
      const rng = mulberry32(seed);
      for (let i = 0; i < 50_000; i++) {
        const reference = Math.floor(rng() * 400_000) + 32768;
        const delta = Math.floor(rng() * 65535) - 32767; // -32767 .. 32767
        const target = reference + delta;
        assert.equal(absoluteBlock(wireBlock(target), reference), target, `ref=${reference} delta=${delta}`);
      }
    });
  }

  test('every offset around each wrap point, both directions', () => {
    for (const wrap of [65536, 131072, 65536 * 5]) {
      for (let ref = wrap - 40; ref <= wrap + 40; ref++) {
        for (let d = -40; d <= 40; d++) assert.equal(absoluteBlock(wireBlock(ref + d), ref), ref + d);
        assert.equal(absoluteBlock(wireBlock(ref + 32767), ref), ref + 32767);
        assert.equal(absoluteBlock(wireBlock(ref - 32767), ref), ref - 32767);
      }
    }
  });
});
