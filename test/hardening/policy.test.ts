import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError } from '../../src/config/config.js';
import { loadGatewaySetup } from '../../src/gateway/compose.js';
import { checkClient, PolicyRefusal, prefixFor, resolveRequest, type AccessPolicyOptions } from '../../src/policy/access-policy.js';
import { Cidr, CidrList, InvalidCidrError, parseCidr } from '../../src/policy/cidr.js';
import { parseClientAddress } from '../../src/policy/client-address.js';
import { ClientLimits } from '../../src/policy/limits.js';
import { applyMapRules, MapFileError, parseMapRules, type MapContext } from '../../src/policy/map-rules.js';
import { decodeFileName, normaliseName, stripJunk } from '../../src/policy/names.js';
import { TokenBuckets } from '../../src/policy/token-bucket.js';
import { negotiateOptions } from '../../src/tftp/protocol/options.js';

/** A clock the test moves by hand. */
function manualClock(): { now(): number; advance(ms: number): void } {
  let t = 0;
  return { now: () => t, advance: (ms) => (t += ms) };
}

const cidrs = (...texts: string[]): CidrList => CidrList.parse(texts, [], 'test');

function policy(overrides: Partial<AccessPolicyOptions> = {}): AccessPolicyOptions {
  return {
    defaultPrefix: 'tftp/',
    clientPrefixes: [],
    readAllow: undefined,
    readDeny: cidrs(),
    writeAllowAll: false,
    writeAllow: cidrs(),
    writeDeny: cidrs(),
    writePrefixes: [],
    names: { stripJunk: false, backslashes: false, lowercase: false },
    mapRules: [],
    maxNameLength: 1024,
    ...overrides,
  };
}

function refusalOf(fn: () => unknown): PolicyRefusal {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PolicyRefusal, `expected a PolicyRefusal, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

describe('CIDR matching (IPv4, IPv6, IPv4-mapped IPv6)', () => {
  test('parses and canonicalises blocks', () => {
    assert.equal(Cidr.parse('10.1.2.3/8')?.text, '10.0.0.0/8');
    assert.equal(Cidr.parse('192.168.1.7')?.text, '192.168.1.7/32');
    assert.equal(Cidr.parse('fd00:1:2::/48')?.family, 'ipv6');
    assert.equal(Cidr.parse('::ffff:10.0.0.0/104')?.text, '10.0.0.0/8');
    assert.equal(Cidr.parse('::/0')?.prefix, 0);
    assert.deepEqual(parseCidr('10.1.2.3/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    assert.deepEqual(parseCidr('fd00:1:2:3::/48'), { address: 'fd00:1:2::', prefix: 48, family: 'ipv6' });
    assert.deepEqual(parseCidr('::ffff:10.0.0.0/104'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0/8', 'nonsense', '10.0.0.0/x', '1.2.3.4/']) {
      assert.equal(Cidr.parse(bad), undefined, bad);
      assert.throws(() => parseCidr(bad), InvalidCidrError, bad);
    }
  });

  test('matches addresses of either family; IPv4-mapped clients match IPv4 rules', () => {
    const list = cidrs('10.0.0.0/8', 'fd00:1::/32');
    assert.ok(list.matches(parseClientAddress('10.200.3.4')));
    assert.ok(list.matches(parseClientAddress('::ffff:10.200.3.4')));
    assert.ok(list.matches(parseClientAddress('::FFFF:10.0.0.1')));
    assert.ok(list.matches(parseClientAddress('fd00:1:ffff::9')));
    assert.ok(!list.matches(parseClientAddress('11.0.0.1')));
    assert.ok(!list.matches(parseClientAddress('::ffff:11.0.0.1')));
    assert.ok(!list.matches(parseClientAddress('fd00:2::1')));
    assert.ok(!list.matches(parseClientAddress('::a00:1')), 'IPv4-compatible (not mapped) stays IPv6');
    assert.ok(cidrs('0.0.0.0/0').matches(parseClientAddress('::ffff:1.2.3.4')));
    assert.ok(!cidrs('0.0.0.0/0').matches(parseClientAddress('2001:db8::1')));
    assert.ok(cidrs('::/0').matches(parseClientAddress('2001:db8::1')));
    assert.ok(cidrs('fe80::/10').matches(parseClientAddress('fe80::1%eth0')));
    assert.ok(!list.matches(parseClientAddress('not an address')));
  });

  test('client address forms for logs and \\i / \\x', () => {
    assert.equal(parseClientAddress('::ffff:192.168.0.1').text, '192.168.0.1');
    assert.equal(parseClientAddress('2001:DB8::1').text, '2001:db8::1');
    assert.equal(parseClientAddress('192.168.0.1').hex, 'C0A80001');
    assert.equal(parseClientAddress('::ffff:10.0.0.255').hex, '0A0000FF');
    assert.equal(parseClientAddress('2001:db8::1').hex, '20010DB8000000000000000000000001');
  });

  test('invalid entries are reported, not ignored', () => {
    const problems: string[] = [];
    CidrList.parse(['10.0.0.0/8,bogus', '300.1.1.1'], problems, '--read-allow');
    assert.equal(problems.length, 2);
  });
});

describe('map rules (tftp-hpa syntax and semantics)', () => {
  const ctx: MapContext = { operation: 'read', clientAddress: '10.1.2.3', clientHex: '0A010203' };
  const map = (rules: string, name: string, c: MapContext = ctx) => applyMapRules(parseMapRules(rules), name, c);

  test('r replaces the matched part; \\0-\\9 groups; e stops; comments and escapes', () => {
    const rules = [
      '# PXELINUX default config per client',
      're ^pxelinux\\.cfg/default$ pxelinux.cfg/\\x   # per-client file',
      'r ^(boot)/(.*)$ \\2/\\1',
      'r a\\ b a_b',
    ].join('\n');
    assert.deepEqual(map(rules, 'pxelinux.cfg/default'), { kind: 'mapped', name: 'pxelinux.cfg/0A010203', applied: [2] });
    assert.equal((map(rules, 'boot/x.efi') as { name: string }).name, 'x.efi/boot');
    assert.equal((map(rules, 'a b') as { name: string }).name, 'a_b');
    assert.equal((map(rules, 'other') as { name: string }).name, 'other');
  });

  test('g applies again until no match; i ignores case; \\i is the client IP', () => {
    assert.equal((map('rg \\\\ /', 'a\\b\\c') as { name: string }).name, 'a/b/c');
    assert.equal((map('ri ^BOOT/ boot/', 'BoOt/x') as { name: string }).name, 'boot/x');
    assert.equal((map('r ^ hosts/\\i/', 'grub.cfg') as { name: string }).name, 'hosts/10.1.2.3/grub.cfg');
  });

  test('a refuses; ~ inverts; G and P select the operation', () => {
    const rules = 'a \\.\\.\na~ ^[[:alnum:]_./-]+$\nrP ^ uploads/\nrG ^ images/';
    assert.equal(map(rules, 'x/../y').kind, 'denied');
    assert.equal(map(rules, 'bad name!').kind, 'denied');
    assert.equal((map(rules, 'ok.bin') as { name: string }).name, 'images/ok.bin');
    assert.equal((map(rules, 'ok.bin', { ...ctx, operation: 'write' }) as { name: string }).name, 'uploads/ok.bin');
  });

  test('s starts over; a looping rule set is refused, not spun forever', () => {
    const rules = 'rs ^old/ new/\nr ^new/old/ x/';
    assert.equal((map(rules, 'old/old/f') as { name: string }).name, 'x/f');
    assert.equal(map('rg a aa', 'a').kind, 'error');
    assert.equal(map('rs ^ x', 'f').kind, 'error');
  });

  test('bad lines are all reported with line numbers', () => {
    assert.throws(
      () => parseMapRules('r ^a\nq x y\nr (unclosed y\nr~ x y\nr a b c d'),
      (err: unknown) => err instanceof MapFileError && err.problems.length === 5 && err.problems[0]!.startsWith('line 1'),
    );
  });
});

describe('built-in name conveniences', () => {
  test('junk after the name, backslashes, letter case, UTF-8', () => {
    assert.equal(stripJunk('pxelinux.0\xff\xfe\x01junk'), 'pxelinux.0');
    assert.equal(stripJunk('boot.img   '), 'boot.img');
    assert.equal(stripJunk(Buffer.from('café.efi', 'utf8').toString('latin1') + '\xc3'), Buffer.from('café.efi', 'utf8').toString('latin1'));
    assert.equal(normaliseName('\\Boot\\X64\\WDSNBP.COM', { stripJunk: false, backslashes: true, lowercase: true }), '/boot/x64/wdsnbp.com');
    assert.equal(decodeFileName(Buffer.from('café/ü', 'utf8').toString('latin1')), 'café/ü');
    assert.equal(decodeFileName('caf\xe9'), undefined, 'not UTF-8: no key keeps its bytes (refused)');
  });
});

describe('access decisions', () => {
  test('reads: everyone unless --read-allow; --read-deny wins', () => {
    const p = policy({ readAllow: cidrs('10.0.0.0/8'), readDeny: cidrs('10.9.0.0/16') });
    assert.equal(checkClient(p, 'read', parseClientAddress('10.1.1.1')), undefined);
    assert.equal(checkClient(p, 'read', parseClientAddress('10.9.1.1'))?.reason, 'read-denied');
    assert.equal(checkClient(p, 'read', parseClientAddress('192.168.1.1'))?.reason, 'read-denied');
    assert.equal(checkClient(policy(), 'read', parseClientAddress('192.168.1.1')), undefined);
  });

  test('writes: off unless a rule allows them; deny wins; --write-prefixes limit where', () => {
    assert.equal(checkClient(policy(), 'write', parseClientAddress('10.0.0.1'))?.reason, 'write-disabled');
    const p = policy({ writeAllow: cidrs('10.0.0.0/8'), writeDeny: cidrs('10.0.0.66'), writePrefixes: ['uploads/', 'logs/'] });
    assert.equal(checkClient(p, 'write', parseClientAddress('::ffff:10.3.3.3')), undefined);
    assert.equal(checkClient(p, 'write', parseClientAddress('10.0.0.66'))?.reason, 'write-denied');
    assert.equal(checkClient(p, 'write', parseClientAddress('172.16.0.1'))?.reason, 'write-denied');
    assert.equal(resolveRequest(p, '/uploads/a.bin', 'write', parseClientAddress('10.3.3.3')).key, 'tftp/uploads/a.bin');
    assert.equal(refusalOf(() => resolveRequest(p, 'boot/a.bin', 'write', parseClientAddress('10.3.3.3'))).reason, 'write-location');
    assert.equal(refusalOf(() => resolveRequest(p, 'uploadsX/a', 'write', parseClientAddress('10.3.3.3'))).reason, 'write-location');
    assert.equal(resolveRequest(policy({ writeAllowAll: true }), 'any/where', 'write', parseClientAddress('1.2.3.4')).key, 'tftp/any/where');
  });

  test('per-client prefixes: the most specific block wins, the rest get the default', () => {
    const p = policy({
      clientPrefixes: [
        { cidr: Cidr.parse('10.0.0.0/8')!, prefix: 'sites/all/' },
        { cidr: Cidr.parse('10.1.0.0/16')!, prefix: 'sites/berlin/' },
        { cidr: Cidr.parse('fd00:b::/32')!, prefix: 'sites/v6/' },
      ],
    });
    assert.equal(prefixFor(p, parseClientAddress('10.1.2.3')), 'sites/berlin/');
    assert.equal(prefixFor(p, parseClientAddress('::ffff:10.2.2.3')), 'sites/all/');
    assert.equal(prefixFor(p, parseClientAddress('fd00:b::7')), 'sites/v6/');
    assert.equal(prefixFor(p, parseClientAddress('192.0.2.1')), 'tftp/');
    assert.equal(resolveRequest(p, '/pxelinux.0', 'read', parseClientAddress('10.1.9.9')).key, 'sites/berlin/pxelinux.0');
  });

  test('map rules run before the key lookup and cannot escape the tree', () => {
    const p = policy({ mapRules: parseMapRules('r ^windows/ ../../etc/\nr ^up/ %2e%2e/x/\na ^secret'), names: { stripJunk: true, backslashes: true, lowercase: false } });
    assert.equal(refusalOf(() => resolveRequest(p, 'windows/passwd', 'read', parseClientAddress('10.0.0.1'))).reason, 'invalid-path');
    assert.equal(refusalOf(() => resolveRequest(p, 'up/f', 'read', parseClientAddress('10.0.0.1'))).reason, 'invalid-path');
    assert.equal(refusalOf(() => resolveRequest(p, 'secret.txt', 'read', parseClientAddress('10.0.0.1'))).reason, 'map-denied');
    assert.equal(resolveRequest(p, '\\Boot\\pxe.0\xff', 'read', parseClientAddress('10.0.0.1')).key, 'tftp/Boot/pxe.0');
  });

  test('path attacks are refused whatever their spelling', () => {
    const p = policy({ names: { stripJunk: false, backslashes: true, lowercase: false } });
    const attacks = [
      '../etc/passwd', '/../etc/passwd', 'a/../../b', '..', '%2e%2e/x', '%2E%2e%2fx/../y', '.%2e/x', 'a/%2e%2e',
      '..\\x', 'a\\..\\..\\b', 'C:\\Windows\\win.ini', 'c:/x', 'a\x00b', 'a\x1fb', 'a\x7f',
      'a\u0085b', 'x'.repeat(1025), '/', '.', './', '',
    ];
    for (const name of attacks) {
      const r = refusalOf(() => resolveRequest(p, name, 'read', parseClientAddress('10.0.0.1')));
      assert.equal(r.reason, 'invalid-path', JSON.stringify(name));
    }
    assert.equal(resolveRequest(p, '/etc/passwd', 'read', parseClientAddress('10.0.0.1')).key, 'tftp/etc/passwd', 'absolute means the tree root');
    assert.equal(resolveRequest(p, 'a/..b/c', 'read', parseClientAddress('10.0.0.1')).key, 'tftp/a/..b/c', '..b is a name, not a parent reference');
    // A UNC-style name stays inside the tree once backslashes are separators, and is refused otherwise.
    assert.equal(resolveRequest(p, '\\\\server\\share\\f', 'read', parseClientAddress('10.0.0.1')).key, 'tftp/server/share/f');
    const raw = policy();
    assert.equal(refusalOf(() => resolveRequest(raw, '\\\\server\\share\\f', 'read', parseClientAddress('10.0.0.1'))).reason, 'invalid-path');
  });
});

describe('token bucket and client limits (injected clock)', () => {
  test('burst, then the rate; memory bounded', () => {
    const clock = manualClock();
    const buckets = new TokenBuckets({ ratePerSecond: 2, burst: 3, maxKeys: 100, clock });
    assert.deepEqual([1, 2, 3, 4].map(() => buckets.take('a')), [true, true, true, false]);
    assert.equal(buckets.take('b'), true, 'other clients are not affected');
    clock.advance(499);
    assert.equal(buckets.take('a'), false);
    clock.advance(1);
    assert.equal(buckets.take('a'), true);
    assert.equal(buckets.take('a'), false);
    for (let i = 0; i < 1000; i++) buckets.take(`c${i}`);
    assert.ok(buckets.size <= 100);
  });

  test('per-client session cap and answered refusals at most once a second', () => {
    const clock = manualClock();
    const limits = new ClientLimits({ maxSessionsPerClient: 2, ratePerSecond: 1, burst: 1, clock });
    limits.sessionOpened(parseClientAddress('10.0.0.1'));
    assert.equal(limits.atSessionCap(parseClientAddress('10.0.0.1')), false);
    limits.sessionOpened(parseClientAddress('10.0.0.1'));
    assert.equal(limits.atSessionCap(parseClientAddress('10.0.0.1')), true);
    assert.equal(limits.atSessionCap(parseClientAddress('10.0.0.2')), false);
    limits.sessionClosed(parseClientAddress('10.0.0.1'));
    limits.sessionClosed(parseClientAddress('10.0.0.1'));
    assert.equal(limits.trackedClients, 0);
    assert.equal(limits.admit(parseClientAddress('10.0.0.1')), 'ok');
    assert.equal(limits.admit(parseClientAddress('10.0.0.1')), 'rate-limited');
    assert.equal(limits.shouldAnswerRefusal(parseClientAddress('10.0.0.1')), true);
    assert.equal(limits.shouldAnswerRefusal(parseClientAddress('10.0.0.1')), false);
    clock.advance(1000);
    assert.equal(limits.shouldAnswerRefusal(parseClientAddress('10.0.0.1')), true);
  });
});

describe('configuration of the policy flags', () => {
  const base = ['--s3-bucket', 'b'];

  test('parses lists, CIDRs, client prefixes, refused options, map file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tftpgw-map-'));
    const file = path.join(dir, 'rules');
    fs.writeFileSync(file, 'rg \\\\ /\n');
    try {
      const { config: c, access } = loadGatewaySetup([
        ...base,
        '--read-allow', '10.0.0.0/8,192.168.0.0/16', '--read-allow', 'fd00::/8',
        '--write-allow', '10.1.0.0/16', '--write-prefixes', 'uploads,/logs/',
        '--client-prefix', '10.1.0.0/16=sites/berlin', '--refuse-options', 'Timeout,tsize',
        '--map-file', file, '--map-lowercase', '--max-sessions-per-client', '8', '--rate-limit', '5', '--stall-timeout', '30',
      ], {});
      assert.deepEqual(access.readAllow?.entries.map((e) => e.text), ['10.0.0.0/8', '192.168.0.0/16', 'fd00::/8']);
      assert.deepEqual(access.writePrefixes, ['uploads/', 'logs/']);
      assert.equal(access.clientPrefixes[0]?.prefix, 'sites/berlin/');
      assert.deepEqual(c.refuseOptions, ['timeout', 'tsize']);
      assert.equal(access.mapRules.length, 1);
      assert.equal(c.mapLowercase, true);
      assert.equal(c.maxSessionsPerClient, 8);
      assert.equal(c.stallTimeoutS, 30);
      const env = loadGatewaySetup(base, { TFTP_GATEWAY_WRITE_ALLOW: '10.0.0.0/8, fd00::/16' }).access;
      assert.equal(env.writeAllow.entries.length, 2);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('every problem is reported at once', () => {
    try {
      loadGatewaySetup([...base, '--read-deny', 'nope', '--client-prefix', 'x', '--refuse-options', 'multicast', '--map-file', '/nonexistent/rules', '--allow-write', '--write-allow', '10.0.0.0/8'], {});
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 5, err.problems.join('\n'));
    }
  });
});

describe('per-option refusal', () => {
  test('a refused option is left out of the OACK; refusing timeout leaves the timer adaptive', () => {
    const requested = new Map([['blksize', '1468'], ['timeout', '5'], ['windowsize', '8']]);
    const n = negotiateOptions(requested, { maxBlksize: 1468, maxWindowsize: 64, refused: new Set(['timeout', 'windowsize']) });
    assert.equal(n.timeoutMs, undefined);
    assert.equal(n.windowsize, 1);
    assert.deepEqual([...n.oack.keys()], ['blksize']);
  });
});
