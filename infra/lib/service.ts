import type { Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import type { Construct } from 'constructs';
import { FlatConstruct } from './flat-construct.js';
import { GATEWAY_TFTP_PORT } from './settings.js';

export interface GatewayServiceProps {
  readonly cluster: ecs.ICluster;
  /** The task definition; its container `gateway` is registered with the target group. */
  readonly taskDefinition: ecs.FargateTaskDefinition;
  /** ECS service name. */
  readonly serviceName: string;
  /** Security group of the tasks. */
  readonly securityGroup: ec2.ISecurityGroup;
  /** Target group the tasks' TFTP port (UDP 6969) is registered with. */
  readonly targetGroup: elbv2.INetworkTargetGroup;
  /**
   * How long ECS ignores a new task's failing health checks (load balancer and container): covers
   * start-up, and the warm-up when tasks warm their caches before they report ready.
   */
  readonly healthCheckGracePeriod: Duration;
  /** HTTP boot: the target group the tasks' HTTP boot port (TCP) is registered with; undefined: none. */
  readonly httpBoot: { readonly targetGroup: elbv2.INetworkTargetGroup; readonly containerPort: number } | undefined;
}

/**
 * The Fargate service in the private subnets, registered with the load balancer's target group.
 * It sets no desired count: auto scaling owns it (a fixed value would reset the count on every deploy).
 */
export class GatewayService extends FlatConstruct {
  readonly service: ecs.FargateService;

  constructor(scope: Construct, id: string, props: GatewayServiceProps) {
    super(scope, id);
    this.service = new ecs.FargateService(this.host, 'Service', {
      cluster: props.cluster,
      serviceName: props.serviceName,
      taskDefinition: props.taskDefinition,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      healthCheckGracePeriod: props.healthCheckGracePeriod,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      securityGroups: [props.securityGroup],
      assignPublicIp: false,
      platformVersion: ecs.FargatePlatformVersion.LATEST,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
      enableECSManagedTags: true,
    });
    props.targetGroup.addTarget(
      this.service.loadBalancerTarget({ containerName: 'gateway', containerPort: GATEWAY_TFTP_PORT, protocol: ecs.Protocol.UDP }),
    );
    if (props.httpBoot) {
      props.httpBoot.targetGroup.addTarget(
        this.service.loadBalancerTarget({ containerName: 'gateway', containerPort: props.httpBoot.containerPort, protocol: ecs.Protocol.TCP }),
      );
    }
  }
}
