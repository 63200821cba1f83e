import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { App, Validations, type PolicyValidationPluginReport } from 'aws-cdk-lib';
import type { CloudAssembly } from 'aws-cdk-lib/cx-api';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { TftpGatewayStack, type TftpGatewayStackProps } from '../../infra/lib/tftp-gateway-stack.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The feature flags and settings of cdk.json, so tests synthesize what `cdk synth` does. */
export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
    context?: Record<string, unknown>;
  };
  return cdkJson.context ?? {};
}

export interface Synthesized {
  readonly stack: TftpGatewayStack;
  readonly assembly: CloudAssembly;
  readonly template: Template;
  /** Raw template JSON, for looking at whole resources. */
  readonly json: { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }>; Outputs?: Record<string, unknown> };
  /** cdk-nag's report (AwsSolutions) on the synthesized app. */
  readonly nag: PolicyValidationPluginReport;
}

/** A pre-built image keeps the variant tests from staging the Docker build context each time. */
export const TEST_IMAGE = 'public.ecr.aws/example/tftp-gateway:test';

/**
 * Synthesizes one stack the way the app does (cdk.json context, cdk-nag registered as a
 * validation plugin). `app.synth()` throws if cdk-nag reports an unacknowledged finding.
 */
export function synth(props: TftpGatewayStackProps, extraContext: Record<string, unknown> = {}): Synthesized {
  const app = new App({ context: { ...cdkJsonContext(), ...extraContext } });
  const stack = new TftpGatewayStack(app, 'TftpGateway', props);
  const checks = new AwsSolutionsChecks(app);
  Validations.of(app).addPlugins(checks);
  const assembly = app.synth();
  const json = assembly.getStackArtifact(stack.artifactId).template as Synthesized['json'];
  return { stack, assembly, template: Template.fromJSON(json), json, nag: new AwsSolutionsChecks().validateScope(app) };
}

/** Resources of one type, as [logicalId, properties] pairs. */
export function resourcesOfType(json: Synthesized['json'], type: string): Array<[string, Record<string, unknown>]> {
  return Object.entries(json.Resources)
    .filter(([, r]) => r.Type === type)
    .map(([id, r]) => [id, r.Properties ?? {}]);
}

export function logicalIdOf(json: Synthesized['json'], type: string, prefix: string): string {
  const ids = resourcesOfType(json, type)
    .map(([id]) => id)
    .filter((id) => id.startsWith(prefix));
  if (ids.length !== 1) throw new Error(`expected one ${type} named ${prefix}*, found ${ids.join(', ') || 'none'}`);
  return ids[0]!;
}

/** Formats cdk-nag violations for an assertion message. */
export function describeViolations(report: PolicyValidationPluginReport): string {
  return report.violations
    .map((v) => `${v.ruleName} (${v.severity ?? 'error'}): ${v.violatingResources.map((r) => r.constructPath ?? r.resourceLogicalId).join(', ')}`)
    .join('\n');
}
