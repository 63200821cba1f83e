import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type { Construct } from 'constructs';
import { FlatConstruct } from './flat-construct.js';
import { SESSIONS_METRIC } from './settings.js';

export interface GatewayScalingProps {
  readonly service: ecs.FargateService;
  /** Fewest and most tasks. */
  readonly minTasks: number;
  readonly maxTasks: number;
  /** Average CPU (%) to scale to. */
  readonly cpuTargetPercent: number;
  /** Average active sessions per task to scale to. */
  readonly sessionsPerTaskTarget: number;
  /** The `ServiceName` dimension of the sessions metric the gateway writes (its EMF service name). */
  readonly serviceName: string;
}

/** Target tracking on CPU and on the gateway's active sessions per task (its Embedded Metric Format metric). */
export class GatewayScaling extends FlatConstruct {
  readonly scalableTaskCount: ecs.ScalableTaskCount;

  constructor(scope: Construct, id: string, props: GatewayScalingProps) {
    super(scope, id);
    const scaling = props.service.autoScaleTaskCount({ minCapacity: props.minTasks, maxCapacity: props.maxTasks });
    scaling.scaleOnCpuUtilization('CpuScaling', {
      targetUtilizationPercent: props.cpuTargetPercent,
      scaleOutCooldown: Duration.seconds(60),
      scaleInCooldown: Duration.seconds(300),
    });
    scaling.scaleToTrackCustomMetric('SessionScaling', {
      metric: new cloudwatch.Metric({
        namespace: SESSIONS_METRIC.namespace,
        metricName: SESSIONS_METRIC.metricName,
        dimensionsMap: { [SESSIONS_METRIC.dimension]: props.serviceName },
        statistic: cloudwatch.Stats.AVERAGE,
        period: Duration.minutes(1),
      }),
      targetValue: props.sessionsPerTaskTarget,
      scaleOutCooldown: Duration.seconds(60),
      scaleInCooldown: Duration.seconds(300),
    });
    this.scalableTaskCount = scaling;
  }
}
