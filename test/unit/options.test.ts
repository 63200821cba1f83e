import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildOack, negotiateOptions, parseOptionInt, type NegotiationLimits } from '../../src/tftp/protocol/options.js';

const limits: NegotiationLimits = { maxBlksize: 1468, maxWindowsize: 64 };
const wide: NegotiationLimits = { maxBlksize: 1_000_000, maxWindowsize: 1_000_000 };

const req = (...pairs: [string, string][]): Map<string, string> => new Map(pairs);
const negotiate = (pairs: [string, string][], l: NegotiationLimits = limits) => negotiateOptions(req(...pairs), l);

describe('defaults', () => {
  test('no options: RFC 1350 transfer and no OACK', () => {
    const n = negotiate([]);
    assert.equal(n.blksize, 512);
    assert.equal(n.windowsize, 1);
    assert.equal(n.timeoutMs, undefined);
    assert.equal(n.requestedTsize, undefined);
    assert.equal(n.tsizeRequested, false);
    assert.equal(n.oack.size, 0);
    assert.equal(buildOack(req(), n, 1234).size, 0);
  });
});

describe('blksize', () => {
  test('granted as asked within the limit', () => {
    const n = negotiate([['blksize', '1024']]);
    assert.equal(n.blksize, 1024);
    assert.deepEqual([...n.oack], [['blksize', '1024']]);
  });

  test('clamped to the operator limit', () => {
    const n = negotiate([['blksize', '9000']]);
    assert.equal(n.blksize, 1468);
    assert.equal(n.oack.get('blksize'), '1468');
  });

  test('clamped to 65464 (RFC 2348) even when the limit is higher', () => {
    for (const asked of ['65465', '65535', '70000', '999999999999']) {
      const n = negotiate([['blksize', asked]], wide);
      assert.equal(n.blksize, 65464, asked);
      assert.equal(n.oack.get('blksize'), '65464');
    }
    assert.equal(negotiate([['blksize', '65464']], wide).blksize, 65464);
  });

  test('8 is the smallest granted; below 8 is ignored (transfer at 512, no OACK entry)', () => {
    assert.equal(negotiate([['blksize', '8']]).blksize, 8);
    assert.equal(negotiate([['blksize', '8']]).oack.get('blksize'), '8');
    for (const asked of ['7', '1', '0']) {
      const n = negotiate([['blksize', asked]]);
      assert.equal(n.blksize, 512, asked);
      assert.equal(n.oack.has('blksize'), false, asked);
    }
  });

  test('non-numeric values are ignored', () => {
    for (const asked of ['', 'abc', '-1', '+512', ' 512', '512 ', '1e3', '0x200', '512.0', '５１２', '9999999999999']) {
      const n = negotiate([['blksize', asked]]);
      assert.equal(n.blksize, 512, JSON.stringify(asked));
      assert.equal(n.oack.size, 0, JSON.stringify(asked));
    }
  });
});

describe('windowsize', () => {
  test('granted, clamped to the limit and to 65535; 0 ignored', () => {
    assert.equal(negotiate([['windowsize', '4']]).windowsize, 4);
    assert.equal(negotiate([['windowsize', '4']]).oack.get('windowsize'), '4');
    assert.equal(negotiate([['windowsize', '1']]).windowsize, 1);
    const clamped = negotiate([['windowsize', '1000']]);
    assert.equal(clamped.windowsize, 64);
    assert.equal(clamped.oack.get('windowsize'), '64');
    assert.equal(negotiate([['windowsize', '100000']], wide).windowsize, 65535);
    const zero = negotiate([['windowsize', '0']]);
    assert.equal(zero.windowsize, 1);
    assert.equal(zero.oack.has('windowsize'), false);
    assert.equal(negotiate([['windowsize', 'many']]).oack.size, 0);
  });
});

describe('timeout', () => {
  test('1..255 seconds pin the retransmission timeout', () => {
    for (const [asked, ms] of [['1', 1000], ['5', 5000], ['255', 255_000]] as const) {
      const n = negotiate([['timeout', asked]]);
      assert.equal(n.timeoutMs, ms);
      assert.equal(n.oack.get('timeout'), asked);
    }
  });

  test('outside 1..255 or not a number: ignored', () => {
    for (const asked of ['0', '256', '1000', '-1', '1.5', '']) {
      const n = negotiate([['timeout', asked]]);
      assert.equal(n.timeoutMs, undefined, asked);
      assert.equal(n.oack.has('timeout'), false, asked);
    }
  });
});

describe('tsize', () => {
  test('recorded but not put in the negotiated OACK (the caller fills it in)', () => {
    const n = negotiate([['tsize', '0']]);
    assert.equal(n.tsizeRequested, true);
    assert.equal(n.requestedTsize, 0);
    assert.equal(n.oack.has('tsize'), false);
  });

  test('a WRQ announces its size', () => {
    const n = negotiate([['tsize', '123456789']]);
    assert.equal(n.requestedTsize, 123456789);
    assert.deepEqual([...buildOack(req(['tsize', '123456789']), n, n.requestedTsize)], [['tsize', '123456789']]);
  });

  test('a non-numeric tsize is ignored', () => {
    const n = negotiate([['tsize', 'big']]);
    assert.equal(n.tsizeRequested, false);
    assert.equal(n.requestedTsize, undefined);
    assert.equal(buildOack(req(['tsize', 'big']), n, 99).size, 0);
  });

  test('buildOack fills in tsize only when asked and known', () => {
    const asked = req(['tsize', '0']);
    const n = negotiateOptions(asked, limits);
    assert.deepEqual([...buildOack(asked, n, 4096)], [['tsize', '4096']]);
    assert.equal(buildOack(asked, n, undefined).size, 0);
    const notAsked = req(['blksize', '1024']);
    assert.deepEqual([...buildOack(notAsked, negotiateOptions(notAsked, limits), 4096)], [['blksize', '1024']]);
  });
});

describe('OACK contents', () => {
  test('unknown options are ignored and never appear in the OACK', () => {
    const asked = req(['multicast', ''], ['blksize', '1024'], ['x-foo', '1'], ['rollover', '0'], ['utimeout', '500']);
    const n = negotiateOptions(asked, limits);
    assert.equal(n.blksize, 1024);
    assert.deepEqual([...buildOack(asked, n, 10)], [['blksize', '1024']]);
  });

  test('only requested and accepted options, in the client order', () => {
    const asked = req(['windowsize', '8'], ['tsize', '0'], ['junk', 'x'], ['timeout', '300'], ['blksize', '1432'], ['timeout2', '1']);
    const n = negotiateOptions(asked, limits);
    assert.deepEqual([...buildOack(asked, n, 77)], [
      ['windowsize', '8'],
      ['tsize', '77'],
      ['blksize', '1432'],
    ]);
  });

  test('the order follows the client even when reversed', () => {
    const asked = req(['blksize', '1024'], ['timeout', '3'], ['windowsize', '2'], ['tsize', '0']);
    const n = negotiateOptions(asked, limits);
    assert.deepEqual([...buildOack(asked, n, 5)].map(([k]) => k), ['blksize', 'timeout', 'windowsize', 'tsize']);
  });

  test('refused options are treated as not asked', () => {
    const asked = req(['blksize', '1024'], ['tsize', '0'], ['windowsize', '4'], ['timeout', '2']);
    const n = negotiateOptions(asked, { ...limits, refused: new Set(['blksize', 'tsize']) });
    assert.equal(n.blksize, 512);
    assert.equal(n.tsizeRequested, false);
    assert.equal(n.windowsize, 4);
    assert.equal(n.timeoutMs, 2000);
    assert.deepEqual([...buildOack(asked, n, 4096)], [
      ['windowsize', '4'],
      ['timeout', '2'],
    ]);
  });

  test('refusing everything yields no OACK', () => {
    const asked = req(['blksize', '1024'], ['windowsize', '4']);
    const n = negotiateOptions(asked, { ...limits, refused: new Set(['blksize', 'windowsize', 'timeout', 'tsize']) });
    assert.equal(buildOack(asked, n, 1).size, 0);
  });

  test('the granted values are what the OACK says', () => {
    const asked = req(['blksize', '2000'], ['windowsize', '200']);
    const n = negotiateOptions(asked, limits);
    const oack = buildOack(asked, n, undefined);
    assert.equal(oack.get('blksize'), String(n.blksize));
    assert.equal(oack.get('windowsize'), String(n.windowsize));
  });
});

describe('parseOptionInt', () => {
  test('digits only', () => {
    assert.equal(parseOptionInt('0'), 0);
    assert.equal(parseOptionInt('007'), 7);
    assert.equal(parseOptionInt('999999999999'), 999999999999);
    for (const bad of ['', ' 1', '1 ', '-0', '+1', '1.0', '1e2', 'x', '9999999999999']) assert.equal(parseOptionInt(bad), undefined, bad);
  });
});
