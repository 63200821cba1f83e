import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { loadGatewaySetup } from '../../src/gateway/compose.js';
import { parseWarmFile, warmSetFromConfig } from '../../src/policy/warm-names.js';

const dir = mkdtempSync(join(tmpdir(), 'warm-names-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const setOf = (argv: string[], env: NodeJS.ProcessEnv = {}) => warmSetFromConfig(loadConfig(['--s3-bucket', 'b', ...argv], env));

function problemsOf(argv: string[]): readonly string[] {
  try {
    loadGatewaySetup(['--s3-bucket', 'b', ...argv], {});
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('warm names', () => {
  test('flags and their defaults', () => {
    const c = loadConfig(['--s3-bucket', 'b'], {});
    assert.deepEqual(c.warm, []);
    assert.equal(c.warmFile, undefined);
    assert.equal(c.warmTimeoutS, 600);
    assert.equal(c.warmIntervalS, 0);
    const e = loadConfig(['--s3-bucket', 'b'], { TFTP_GATEWAY_WARM: 'a.img,boot/', TFTP_GATEWAY_WARM_TIMEOUT: '30', TFTP_GATEWAY_WARM_INTERVAL: '300' });
    assert.deepEqual(e.warm, ['a.img', 'boot/']);
    assert.equal(e.warmTimeoutS, 30);
    assert.equal(e.warmIntervalS, 300);
  });

  test('names are relative to --s3-prefix, normalised like requests; a trailing / is a path, / the whole tree', () => {
    const { targets, problems } = setOf(['--s3-prefix', '/tftp/site/', '--warm', '/boot//vmlinuz', '--warm', 'images/', '--warm', '/', '--warm', 'boot/vmlinuz', '--warm', 'images/./', '--warm', './']);
    assert.deepEqual(problems, []);
    assert.deepEqual(targets, [
      { kind: 'object', name: '/boot//vmlinuz', key: 'tftp/site/boot/vmlinuz' },
      { kind: 'prefix', name: 'images/', prefix: 'tftp/site/images/' },
      { kind: 'prefix', name: '/', prefix: 'tftp/site/' },
    ]);
  });

  test('--warm-file: one name a line, # comment lines and blank lines ignored', () => {
    assert.deepEqual(parseWarmFile('# set\n\n  a.img  \r\nb/c#d\n   # indented comment\n'), [
      { line: 3, name: 'a.img' },
      { line: 4, name: 'b/c#d' },
    ]);
    const file = join(dir, 'set.list');
    writeFileSync(file, '# boot set\nkernel\ninitrd.img\n');
    assert.deepEqual(setOf(['--warm-file', file, '--warm', 'kernel']).targets.map((t) => t.name), ['kernel', 'initrd.img']);
  });

  test('bad names and an unreadable file are configuration problems, all of them at once', () => {
    const file = join(dir, 'bad.list');
    writeFileSync(file, 'fine\n..\\windows\\x\n');
    const problems = problemsOf(['--warm', '../up', '--warm', 'a/%2e%2e/b', '--warm', 'x\u0000y', '--warm', '..\\', '--warm-file', file]);
    assert.equal(problems.length, 5, problems.join('\n'));
    assert.match(problems[0]!, /^--warm: '\.\.\/up' is not a servable name \(parent reference/);
    assert.match(problems[1]!, /encoded parent reference/);
    assert.match(problems[2]!, /'x\\x00y'.*control character/);
    assert.match(problems[3]!, /^--warm: '\.\.\\' is not a servable name \(parent reference/);
    assert.match(problems[4]!, /--warm-file .*bad\.list line 2: .*parent reference/);
    assert.match(problemsOf(['--warm-file', join(dir, 'nope.list')])[0]!, /^--warm-file: cannot read '.*nope\.list': ENOENT/);
    assert.match(problemsOf(['--warm-timeout', '-1'])[0]!, /--warm-timeout/);
  });
});
