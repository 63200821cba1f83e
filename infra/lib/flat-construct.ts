import { Construct } from 'constructs';

/**
 * One part of the stack (network, bucket, tasks, ...): a construct with typed props that creates
 * its resources in its parent's scope (`host`), not under itself.
 *
 * A resource's CloudFormation logical ID comes from its construct path, and so do names CDK
 * derives from paths (the task definition family, the VPC's `Name` tags). These resources sat
 * directly under the stack before it was split into parts; creating them under a part would give
 * them new logical IDs, and CloudFormation replaces a resource whose logical ID changes. So every
 * part creates its resources in `host`, and their IDs stay what they were. Give a part an ID that
 * no resource of the stack uses (`Network`, `Storage`, ...): it shares their namespace.
 */
export abstract class FlatConstruct extends Construct {
  /** The scope this part creates its resources in: the scope it was created in. */
  protected readonly host: Construct;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.host = scope;
  }
}
