// `cdk synth` as a user runs it from a fresh clone: the real CLI, cdk.json's app, no AWS account.
// The environment forbids every way the CLI could reach out (credentials, instance metadata,
// version check, notices, telemetry), so this runs offline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './helpers.js';

const run = promisify(execFile);

export function offlineEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(AWS_|CDK_)/.test(k)) continue; // no credentials, profiles or CDK defaults from the caller
    env[k] = v;
  }
  return {
    ...env,
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials',
    AWS_CONFIG_FILE: '/nonexistent/config',
    CDK_DISABLE_VERSION_CHECK: '1',
    CDK_DISABLE_CLI_TELEMETRY: '1',
    CI: 'true',
  };
}

test('npx cdk synth works with no AWS account and no Docker, and cdk-nag passes', { timeout: 180_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'tftp-gateway-synth-'));
  try {
    const cdk = join(REPO_ROOT, 'node_modules', '.bin', 'cdk');
    const { stderr } = await run(cdk, ['synth', '--quiet', '--no-notices', '--output', out], {
      cwd: REPO_ROOT,
      env: offlineEnv(),
      maxBuffer: 64 * 1024 * 1024,
    });
    assert.doesNotMatch(stderr, /AwsSolutions-/);
    const templatePath = join(out, 'TftpGateway.template.json');
    assert.ok(existsSync(templatePath), `no template in ${out}; stderr:\n${stderr}`);
    const template = JSON.parse(readFileSync(templatePath, 'utf8')) as { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }> };
    const listeners = Object.values(template.Resources)
      .filter((r) => r.Type === 'AWS::ElasticLoadBalancingV2::Listener')
      .map((r) => `${String(r.Properties!['Protocol'])} ${String(r.Properties!['Port'])}`);
    assert.deepEqual(listeners.sort(), ['TCP 80', 'UDP 69'], 'TFTP, and HTTP boot (on by default; no HTTPS without a certificate)');
    const report = JSON.parse(readFileSync(join(out, 'validation-report.json'), 'utf8')) as { pluginReports: unknown[] };
    assert.deepEqual(report.pluginReports, [], 'no validation findings');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
