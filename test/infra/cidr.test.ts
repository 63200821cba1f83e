// The infra's use of the gateway's CIDR parser (src/policy/cidr.ts): what the stack accepts as a
// client network and how it checks fixed load balancer addresses against a subnet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ipv4Block, parseCidr, parseIpv4 } from '../../infra/lib/cidr.js';

test('parseCidr gives the contract of src/policy/cidr.ts: address, prefix length, family', () => {
  assert.deepEqual(parseCidr('10.0.16.0/20'), { address: '10.0.16.0', prefix: 20, family: 'ipv4' });
  assert.equal(parseCidr('2001:db8::/32').family, 'ipv6');
  assert.equal(parseCidr('2001:db8::/32').prefix, 32);
  assert.throws(() => parseCidr('10.0.0.0/33'));
  assert.throws(() => parseCidr('not a network'));
});

test('ipv4Block: an IPv4 block written a.b.c.d/n, as its first address and size', () => {
  assert.deepEqual(ipv4Block('10.0.16.0/20'), { base: parseIpv4('10.0.16.0'), size: 4096 });
  assert.deepEqual(ipv4Block('10.0.16.7/20'), { base: parseIpv4('10.0.16.0'), size: 4096 }, 'host bits are masked');
  assert.deepEqual(ipv4Block('0.0.0.0/0'), { base: 0, size: 2 ** 32 });
  for (const bad of ['10.0.0.0', '10.0.0.0/33', '10.0.0/8', '256.0.0.0/8', '::ffff:10.0.0.0/104', '2001:db8::/32', ' 10.0.0.0/8', '10.0.0.0/']) {
    assert.equal(ipv4Block(bad), undefined, bad);
  }
});

test('parseIpv4: dotted quads only', () => {
  assert.equal(parseIpv4('10.0.16.10'), 10 * 2 ** 24 + 16 * 2 ** 8 + 10);
  assert.equal(parseIpv4('10.0.16'), undefined);
  assert.equal(parseIpv4('10.0.16.256'), undefined);
  assert.equal(parseIpv4('fd00::1'), undefined);
});
