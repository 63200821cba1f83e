import { Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

export interface WildcardResource {
  /** The resource exactly as put in the policy statement (may contain tokens). */
  readonly resource: string;
  /** Why the wildcard is needed and what bounds it. */
  readonly reason: string;
}

/**
 * Acknowledges cdk-nag's AwsSolutions-IAM5 finding for each listed resource, and only for those.
 *
 * cdk-nag v3 reports one finding per wildcard resource, `AwsSolutions-IAM5[Resource::<flattened>]`,
 * where <flattened> is the resolved CloudFormation value with `Ref`/`GetAtt` written as `<Name>` and
 * `<Name.Attr>`. Acknowledging the exact finding (rather than the whole rule) keeps any other
 * wildcard that later slips into the policy visible as a failure.
 */
export function acknowledgeWildcardResources(scope: IConstruct, resources: WildcardResource[]): void {
  const stack = Stack.of(scope);
  for (const { resource, reason } of resources) {
    const flat = flattenCfnReference(stack.resolve(resource));
    if (!flat.includes('*')) continue;
    Validations.of(scope).acknowledge({ id: `AwsSolutions-IAM5[Resource::${flat}]`, reason });
  }
}

/** The flattening cdk-nag applies to IAM resources before naming a finding. */
export function flattenCfnReference(node: unknown): string {
  if (node === undefined) return '';
  if (typeof node === 'string') return node.replace(/\$\{/g, '<').replace(/\}/g, '>');
  if (isObject(node)) {
    const join = node['Fn::Join'];
    if (Array.isArray(join) && join.length === 2 && Array.isArray(join[1])) {
      return (join[1] as unknown[]).map(flattenCfnReference).join(String(join[0]));
    }
    if ('Fn::Sub' in node) return flattenCfnReference(node['Fn::Sub']);
    const getAtt = node['Fn::GetAtt'];
    if (Array.isArray(getAtt) && getAtt.length === 2) {
      return `<${flattenCfnReference(getAtt[0])}.${flattenCfnReference(getAtt[1])}>`;
    }
    if ('Fn::ImportValue' in node) return flattenCfnReference(node['Fn::ImportValue']);
    if ('Ref' in node) return `<${flattenCfnReference(node['Ref'])}>`;
  }
  return JSON.stringify(node);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
