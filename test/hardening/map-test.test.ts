import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

/** `tftp-gateway map-test`: the real CLI, names on stdin, keys on stdout. */
function mapTest(args: readonly string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'map-test', ...args], {
      cwd: path.resolve(import.meta.dirname, '..', '..'),
      env: { ...process.env, AWS_EC2_METADATA_DISABLED: 'true' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

describe('map-test command', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tftpgw-maptest-'));
    fs.writeFileSync(path.join(dir, 'rules.map'), 're ^pxelinux\\.cfg/default$ pxelinux.cfg/\\x\na \\.exe$\nrP ^ uploads/\\i/\n');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('prints what each name becomes for each client, or why it is refused', async () => {
    const input = ['pxelinux.cfg/default 10.1.2.3', '\\Boot\\BCD\\xff ::ffff:10.9.0.1', 'setup.exe', '../etc/passwd', 'x.bin 10.1.0.5 put', '# comment', ''].join('\n');
    const r = await mapTest(
      ['--map-file', path.join(dir, 'rules.map'), '--map-backslashes', '--map-lowercase', '--map-strip-junk', '--s3-prefix', 'tftp',
        '--client-prefix', '10.1.0.0/16=sites/berlin', '--write-allow', '10.0.0.0/8'],
      input,
    );
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 5);
    assert.match(lines[0]!, /\t10\.1\.2\.3\tget\t-> sites\/berlin\/pxelinux\.cfg\/0A010203 \(rules on lines 1\)$/);
    assert.match(lines[1]!, /\tget\t-> tftp\/boot\/bcd$/);
    assert.match(lines[2]!, /refused: map-denied \(denied by map rule on line 2\)$/);
    assert.match(lines[3]!, /refused: invalid-path/);
    assert.match(lines[4]!, /\tput\t-> sites\/berlin\/uploads\/10\.1\.0\.5\/x\.bin/);
  });

  test('a bad map file is a configuration error (exit 2, every problem listed)', async () => {
    fs.writeFileSync(path.join(dir, 'bad.map'), 'q x y\nr (unclosed z\n');
    const r = await mapTest(['--map-file', path.join(dir, 'bad.map')], 'x\n');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /line 1/);
    assert.match(r.stderr, /line 2/);
  });
});
