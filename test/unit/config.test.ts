import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, envName, loadConfig, parseListenAddress, parseSize, type GatewayConfig } from '../../src/config/config.js';

const MiB = 1024 * 1024;
const base = ['--s3-bucket', 'b'];

function problemsOf(argv: string[], env: NodeJS.ProcessEnv = {}): readonly string[] {
  try {
    loadConfig(argv, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    // The message lists every problem too.
    for (const p of err.problems) assert.ok(err.message.includes(p));
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

const load = (argv: string[], env: NodeJS.ProcessEnv = {}): GatewayConfig => loadConfig(argv, env);

describe('defaults', () => {
  test('a bucket is all that is needed', () => {
    const c = load(base);
    assert.equal(c.s3Bucket, 'b');
    assert.deepEqual(c.listen, [{ host: '::', port: 69 }]);
    assert.equal(c.portMode, 'single');
    assert.equal(c.portRange, undefined);
    assert.equal(c.s3Prefix, '');
    assert.equal(c.s3Region, 'us-east-1');
    assert.equal(c.allowWrite, false);
    assert.equal(c.allowOverwrite, false);
    assert.equal(c.maxUploadSize, 4 * 1024 * MiB);
    assert.equal(c.maxBlksize, 1468);
    assert.equal(c.maxWindowsize, 64);
    assert.equal(c.maxWindowBytes, 96 * 1024);
    assert.equal(c.rangeSize, 8 * MiB);
    assert.equal(c.retries, 0);
    assert.equal(c.giveUpTimeoutS, 63);
    assert.equal(c.stallTimeoutS, 90);
    assert.equal(c.unverifiedRetries, 4);
    assert.equal(c.unverifiedAmplification, 90);
    assert.deepEqual(c.httpListen, { host: '0.0.0.0', port: 9464 });
    assert.equal(c.logLevel, 'info');
    assert.equal(c.local, false);
    assert.ok(c.cacheSize >= 64 * MiB);
  });

  test('the result is frozen', () => {
    assert.ok(Object.isFrozen(load(base)));
  });

  test('the region falls back to AWS_REGION', () => {
    assert.equal(load(base, { AWS_REGION: 'eu-west-3' }).s3Region, 'eu-west-3');
    assert.equal(load([...base, '--s3-region', 'ap-south-1'], { AWS_REGION: 'eu-west-3' }).s3Region, 'ap-south-1');
  });
});

describe('environment twins', () => {
  test('envName', () => {
    assert.equal(envName('s3-bucket'), 'TFTP_GATEWAY_S3_BUCKET');
    assert.equal(envName('max-upload-size'), 'TFTP_GATEWAY_MAX_UPLOAD_SIZE');
  });

  test('every flag can come from its environment variable', () => {
    const c = load([], {
      TFTP_GATEWAY_S3_BUCKET: 'from-env',
      TFTP_GATEWAY_ALLOW_WRITE: 'yes',
      TFTP_GATEWAY_MAX_BLKSIZE: '1024',
      TFTP_GATEWAY_MAX_UPLOAD_SIZE: '512MiB',
      TFTP_GATEWAY_PORT_MODE: 'per-transfer',
      TFTP_GATEWAY_HTTP_LISTEN: 'off',
    });
    assert.equal(c.s3Bucket, 'from-env');
    assert.equal(c.allowWrite, true);
    assert.equal(c.maxBlksize, 1024);
    assert.equal(c.maxUploadSize, 512 * MiB);
    assert.equal(c.portMode, 'per-transfer');
    assert.equal(c.httpListen, undefined);
  });

  test('an empty variable counts as unset', () => {
    assert.equal(load(base, { TFTP_GATEWAY_MAX_BLKSIZE: '' }).maxBlksize, 1468);
  });

  test('flags beat the environment', () => {
    const env = { TFTP_GATEWAY_S3_BUCKET: 'env', TFTP_GATEWAY_MAX_BLKSIZE: '1024', TFTP_GATEWAY_ALLOW_WRITE: 'true' };
    const c = load(['--s3-bucket', 'cli', '--max-blksize=512', '--no-allow-write'], env);
    assert.equal(c.s3Bucket, 'cli');
    assert.equal(c.maxBlksize, 512);
    assert.equal(c.allowWrite, false);
  });

  test('a bad environment value is reported with its variable name', () => {
    const problems = problemsOf(base, { TFTP_GATEWAY_RETRIES: 'lots' });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /TFTP_GATEWAY_RETRIES/);
  });
});

describe('flag forms', () => {
  test('--flag value and --flag=value', () => {
    assert.equal(load([...base, '--retries', '9']).retries, 9);
    assert.equal(load([...base, '--retries=9']).retries, 9);
  });

  test('the last of a repeated scalar flag wins', () => {
    assert.equal(load([...base, '--retries', '3', '--retries', '4']).retries, 4);
  });

  test('list flags repeat; from the environment they are comma-separated', () => {
    const c = load([...base, '--listen', '0.0.0.0:69', '--listen', '[::1]:6969']);
    assert.deepEqual(c.listen, [
      { host: '0.0.0.0', port: 69 },
      { host: '::1', port: 6969 },
    ]);
    const e = load(base, { TFTP_GATEWAY_LISTEN: '127.0.0.1:69, [::]:70,' });
    assert.deepEqual(e.listen, [
      { host: '127.0.0.1', port: 69 },
      { host: '::', port: 70 },
    ]);
    const both = load([...base, '--listen', '10.0.0.1:69'], { TFTP_GATEWAY_LISTEN: '127.0.0.1:69,[::]:70' });
    assert.deepEqual(both.listen, [{ host: '10.0.0.1', port: 69 }]);
  });

  test('booleans: bare flag, --no-x, and explicit values', () => {
    assert.equal(load([...base, '--allow-write']).allowWrite, true);
    assert.equal(load([...base, '--allow-write', '--no-allow-write']).allowWrite, false);
    assert.equal(load([...base, '--allow-write=off']).allowWrite, false);
    assert.equal(load([...base, '--allow-write=1']).allowWrite, true);
    assert.equal(load(base, { TFTP_GATEWAY_ALLOW_WRITE: 'ON' }).allowWrite, true);
    assert.equal(load(base, { TFTP_GATEWAY_ALLOW_WRITE: '0' }).allowWrite, false);
    assert.equal(load([...base, '--no-allow-write'], { TFTP_GATEWAY_ALLOW_WRITE: 'true' }).allowWrite, false);
    assert.equal(load([...base, '--s3-force-path-style']).s3ForcePathStyle, true);
  });

  test('--no- only applies to booleans', () => {
    const problems = problemsOf([...base, '--no-s3-bucket']);
    assert.ok(problems.some((p) => p.includes('--no-s3-bucket')), problems.join('; '));
  });

  test('sizes with units', () => {
    assert.equal(load([...base, '--max-upload-size', '512MiB']).maxUploadSize, 512 * MiB);
    assert.equal(load([...base, '--max-upload-size', '2GB']).maxUploadSize, 2e9);
    assert.equal(load([...base, '--max-upload-size', '1GiB']).maxUploadSize, 1024 * MiB);
    assert.equal(load([...base, '--max-window-bytes', '1.5KiB']).maxWindowBytes, 1536);
    assert.equal(load([...base, '--max-window-bytes', '100kb']).maxWindowBytes, 100_000);
    assert.equal(load([...base, '--max-window-bytes', '65536']).maxWindowBytes, 65536);
    assert.equal(load([...base, '--range-size', '16 MiB']).rangeSize, 16 * MiB);
  });

  test('port range and http-listen off', () => {
    const c = load([...base, '--port-mode', 'per-transfer', '--port-range', '10000-10100', '--http-listen', 'off']);
    assert.deepEqual(c.portRange, { low: 10000, high: 10100 });
    assert.equal(c.httpListen, undefined);
  });

  test('--local needs no bucket', () => {
    const c = load(['--local']);
    assert.equal(c.local, true);
    assert.equal(typeof c.s3Bucket, 'string');
    assert.equal(load([], { TFTP_GATEWAY_LOCAL: 'true' }).local, true);
  });
});

describe('validation', () => {
  test('the bucket is required unless --local', () => {
    const problems = problemsOf([]);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /s3-bucket/);
    assert.match(problems[0]!, /TFTP_GATEWAY_S3_BUCKET/);
    assert.match(problems[0]!, /--local/);
  });

  test('ONE ConfigError lists every problem at once', () => {
    let thrown = 0;
    let problems: readonly string[] = [];
    try {
      loadConfig(
        [
          'stray',
          '--bogus',
          '--max-blksize', '7',
          '--retries', 'many',
          '--port-mode', 'weird',
          '--listen', 'nohost',
          '--http-listen', '1.2.3.4:99999',
          '--s3-endpoint', 'ftp://example.com',
          '--rto-min-ms', '6000',
          '--rto-max-ms', '5000',
          '--max-upload-size', '12 parsecs',
          '--allow-write=maybe',
          '--port-range', '2000-1000',
          '--max-windowsize', '70000',
        ],
        {},
      );
    } catch (err) {
      thrown++;
      assert.ok(err instanceof ConfigError);
      problems = err.problems;
    }
    assert.equal(thrown, 1);
    const expectMention = [
      'stray', '--bogus', 'max-blksize', 'retries', 'port-mode', 'nohost', 'http-listen', 's3-endpoint',
      'rto-min-ms', 'max-upload-size', 'allow-write', 'port-range', 'max-windowsize', 's3-bucket',
    ];
    for (const word of expectMention) assert.ok(problems.some((p) => p.includes(word)), `no problem mentions ${word}:\n${problems.join('\n')}`);
    assert.equal(problems.length, expectMention.length, problems.join('\n'));
  });

  test('bounds are checked', () => {
    assert.match(problemsOf([...base, '--max-blksize', '65465'])[0]!, /maximum 65464/);
    assert.match(problemsOf([...base, '--max-blksize', '7'])[0]!, /minimum 8/);
    assert.match(problemsOf([...base, '--upload-part-size', '1MiB'])[0]!, /minimum/);
  });

  test('a flag without its value', () => {
    assert.match(problemsOf([...base, '--retries'])[0]!, /needs a value/);
  });

  test('S3 outage knobs: defaults, env twins, 0 turns stale-if-error off, the attempt deadline fits the budget', () => {
    const c = load(base);
    assert.equal(c.staleIfErrorS, 3600);
    assert.equal(c.s3MetadataTimeoutMs, 1500);
    assert.equal(c.s3RetryBudgetMs, 4000);
    assert.equal(load(base, { TFTP_GATEWAY_STALE_IF_ERROR: '0' }).staleIfErrorS, 0);
    assert.equal(load(base, { TFTP_GATEWAY_S3_RETRY_BUDGET_MS: '8000' }).s3RetryBudgetMs, 8000);
    assert.match(problemsOf([...base, '--s3-metadata-timeout-ms', '5000', '--s3-retry-budget-ms', '3000'])[0]!, /must not exceed --s3-retry-budget-ms/);
  });

  test('the cache must hold two ranges', () => {
    const problems = problemsOf([...base, '--cache-size', '10MiB', '--range-size', '8MiB']);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /cache-size/);
  });

  test('an endpoint must be an http(s) URL', () => {
    assert.equal(load([...base, '--s3-endpoint', 'http://127.0.0.1:9000']).s3Endpoint, 'http://127.0.0.1:9000');
    assert.match(problemsOf([...base, '--s3-endpoint', 'not a url'])[0]!, /not a URL/);
  });
});

describe('parseSize', () => {
  test('units', () => {
    const cases: [string, number][] = [
      ['0', 0], ['512', 512], ['1k', 1024], ['1K', 1024], ['1kb', 1000], ['1KiB', 1024], ['512MiB', 512 * MiB],
      ['1m', MiB], ['3MB', 3e6], ['2g', 2048 * MiB], ['4GiB', 4096 * MiB], ['1GB', 1e9], [' 7 b ', 7], ['1.5k', 1536],
    ];
    for (const [text, want] of cases) assert.equal(parseSize(text), want, text);
  });

  test('junk', () => {
    for (const text of ['', 'abc', '-1', '1XB', '1 k i b', 'MiB', '1e6', '0x10']) assert.equal(parseSize(text), undefined, text);
  });
});

describe('parseListenAddress', () => {
  test('host:port and [ipv6]:port', () => {
    assert.deepEqual(parseListenAddress('0.0.0.0:69'), { host: '0.0.0.0', port: 69 });
    assert.deepEqual(parseListenAddress('[::1]:6969'), { host: '::1', port: 6969 });
    assert.deepEqual(parseListenAddress('[::]:69'), { host: '::', port: 69 });
    assert.deepEqual(parseListenAddress('localhost:65535'), { host: 'localhost', port: 65535 });
  });

  test('junk', () => {
    for (const text of ['', '1.2.3.4', ':69', '[::1]', '::1:69', 'h:65536', 'h:123456', 'h:-1', '[zz]:69']) {
      assert.equal(parseListenAddress(text), undefined, text);
    }
  });
});
