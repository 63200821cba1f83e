// The "Deploy on AWS" README section stays complete: every context key, the deploy command, DHCP,
// uploads, and a dated cost table whose worked figures follow from its own prices.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CONTEXT_KEYS } from '../../infra/lib/context.js';

function deploySection(): string {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('## Deploy on AWS');
  assert.ok(start !== -1, 'README.md has no "## Deploy on AWS" section');
  const next = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, next === -1 ? undefined : next);
}

const doc = deploySection();

test('documents every context key the app reads', () => {
  const missing = CONTEXT_KEYS.filter((k) => !doc.includes(`\`${k}\``));
  assert.deepEqual(missing, []);
});

test('has prerequisites, the deploy command, DHCP, uploads and costs', () => {
  for (const heading of ['### Prerequisites', '### Context values', '### Deploy', '### Point DHCP at the load balancer', '### Upload boot images', '### What it costs']) {
    assert.ok(doc.includes(heading), `missing ${heading}`);
  }
  assert.match(doc, /npx cdk deploy/);
  assert.match(doc, /next-server/);
  assert.match(doc, /aws s3 (cp|sync)/);
});

test('costs: dated list prices with a region; the per-task figure follows from the Fargate prices', () => {
  assert.match(doc, /2026-11-25/);
  assert.match(doc, /US East \(N\. Virginia\)/);
  const m = /\$([0-9.]+) per vCPU-hour, \$([0-9.]+) per GB-hour/.exec(doc);
  assert.ok(m, 'Fargate vCPU-hour and GB-hour prices');
  const perHour = 0.5 * Number(m[1]) + 1 * Number(m[2]);
  assert.ok(doc.includes(`$${perHour.toFixed(5)}/hour`), `0.5 vCPU + 1 GB should read $${perHour.toFixed(5)}/hour`);
  assert.ok(doc.includes(`$${(perHour * 730).toFixed(2)} per task-month`), `per task-month should be $${(perHour * 730).toFixed(2)}`);
  assert.match(doc, /per GB/);
});
