import { Arn, ArnFormat, Size, Stack } from 'aws-cdk-lib';
import * as aps from 'aws-cdk-lib/aws-aps';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { FlatConstruct } from './flat-construct.js';
import { ADOT_MEMORY_MIB, GATEWAY_HTTP_PORT } from './settings.js';

/** The Amazon Managed Service for Prometheus workspace to remote-write to. */
export type PrometheusWorkspace =
  /** Create a workspace, aliased `alias`. */
  | { readonly create: true; readonly alias: string }
  /** An existing workspace. */
  | { readonly create?: false; readonly workspaceArn: string };

export interface GatewayPrometheusProps {
  readonly workspace: PrometheusWorkspace;
  /** The task definition the collector sidecar joins (after the gateway container). */
  readonly taskDefinition: ecs.TaskDefinition;
  /** The task role, granted remote-write on the workspace. */
  readonly taskRole: iam.IRole;
  /** The log group of the sidecar (stream prefix `adot`). */
  readonly logGroup: logs.ILogGroup;
  /** Image of the ADOT collector. */
  readonly adotImage: string;
}

/**
 * Prometheus path: an ADOT collector sidecar scrapes the gateway's /metrics on localhost and
 * remote-writes to an Amazon Managed Service for Prometheus workspace (created here, or existing).
 */
export class GatewayPrometheus extends FlatConstruct {
  readonly workspaceArn: string;
  readonly remoteWriteUrl: string;
  /** Region of the workspace (the collector signs its requests for it). */
  readonly region: string;

  constructor(scope: Construct, id: string, props: GatewayPrometheusProps) {
    super(scope, id);
    const stack = Stack.of(this);
    if (props.workspace.create) {
      const workspace = new aps.CfnWorkspace(this.host, 'PrometheusWorkspace', { alias: props.workspace.alias });
      this.workspaceArn = workspace.attrArn;
      this.remoteWriteUrl = `${workspace.attrPrometheusEndpoint}api/v1/remote_write`;
      this.region = stack.region;
    } else {
      const parts = Arn.split(props.workspace.workspaceArn, ArnFormat.SLASH_RESOURCE_NAME);
      this.region = parts.region ?? stack.region;
      this.workspaceArn = props.workspace.workspaceArn;
      this.remoteWriteUrl = `https://aps-workspaces.${this.region}.amazonaws.com/workspaces/${parts.resourceName}/api/v1/remote_write`;
    }

    props.taskDefinition.addContainer('adot-collector', {
      containerName: 'adot-collector',
      image: ecs.ContainerImage.fromRegistry(props.adotImage),
      essential: false,
      memoryLimitMiB: ADOT_MEMORY_MIB,
      environment: { AOT_CONFIG_CONTENT: adotConfig(this.remoteWriteUrl, this.region) },
      logging: ecs.LogDrivers.awsLogs({
        logGroup: props.logGroup,
        streamPrefix: 'adot',
        mode: ecs.AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(4),
      }),
    });
    props.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'PrometheusRemoteWrite', actions: ['aps:RemoteWrite'], resources: [this.workspaceArn] }),
    );
  }
}

/** The ADOT collector configuration (YAML; JSON is valid YAML, and needs no indentation care). */
export function adotConfig(remoteWriteUrl: string, region: string): string {
  const config = {
    extensions: {
      sigv4auth: { region, service: 'aps' },
      health_check: { endpoint: '127.0.0.1:13133' },
    },
    receivers: {
      prometheus: {
        config: {
          global: { scrape_interval: '30s', scrape_timeout: '10s' },
          scrape_configs: [
            {
              job_name: 'tftp-gateway',
              metrics_path: '/metrics',
              static_configs: [{ targets: [`127.0.0.1:${GATEWAY_HTTP_PORT}`] }],
            },
          ],
        },
      },
    },
    processors: {
      // Labels every series with its task (otherwise all tasks scrape the same "instance").
      resourcedetection: { detectors: ['env', 'ecs'], timeout: '5s', override: false },
      batch: { timeout: '30s' },
    },
    exporters: {
      prometheusremotewrite: {
        endpoint: remoteWriteUrl,
        auth: { authenticator: 'sigv4auth' },
        resource_to_telemetry_conversion: { enabled: true },
      },
    },
    service: {
      extensions: ['sigv4auth', 'health_check'],
      pipelines: {
        metrics: { receivers: ['prometheus'], processors: ['resourcedetection', 'batch'], exporters: ['prometheusremotewrite'] },
      },
    },
  };
  // Tokens (region, workspace endpoint) survive JSON.stringify as their string placeholders.
  return JSON.stringify(config);
}
