import { CfnOutput, Stack } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { GatewayLoadBalancer } from './load-balancer.js';
import { GatewayNetwork } from './network.js';
import { GatewayPrometheus } from './prometheus.js';
import { GatewayScaling } from './scaling.js';
import { GatewayService } from './service.js';
import { ADOT_MEMORY_MIB, HTTPS_BOOT_PORT, HTTP_BOOT_PORT, resolveProps, type TftpGatewayStackProps } from './settings.js';
import { GatewayBucket, createLogBucket } from './storage.js';
import { GatewayTasks } from './tasks.js';

export {
  ADOT_MEMORY_MIB,
  CACHE_DIR_PATH,
  DEFAULT_ADOT_IMAGE,
  DRAIN_TIMEOUT_SECONDS,
  DEFAULT_HTTP_BOOT_TLS_POLICY,
  GATEWAY_HTTP_BOOT_PORT,
  GATEWAY_HTTP_PORT,
  GATEWAY_TFTP_PORT,
  HTTPS_BOOT_PORT,
  HTTP_BOOT_PORT,
  REPO_ROOT,
  SESSIONS_METRIC,
  STOP_TIMEOUT_SECONDS,
  TFTP_PORT,
  resolveProps,
  type TftpGatewayStackProps,
} from './settings.js';
export { adotConfig } from './prometheus.js';

/**
 * TFTP gateway on ECS Fargate (ARM64) behind an internal UDP Network Load Balancer, serving one S3 bucket.
 *
 * The parts (one construct each) create their resources directly in this stack, so logical IDs are
 * those of the single-constructor stack this was split from (see FlatConstruct).
 */
export class TftpGatewayStack extends Stack {
  readonly vpc: ec2.IVpc;
  readonly bucket: s3.IBucket;
  readonly cluster: ecs.Cluster;
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly loadBalancer: elbv2.NetworkLoadBalancer;
  readonly targetGroup: elbv2.NetworkTargetGroup;
  /** HTTP boot's target group (TCP), when HTTP boot is on. */
  readonly httpBootTargetGroup: elbv2.NetworkTargetGroup | undefined;
  readonly logGroup: logs.LogGroup;
  /** Cache size given to the gateway, in MiB (derived from the task memory). */
  readonly cacheSizeMiB: number;

  constructor(scope: Construct, id: string, props: TftpGatewayStackProps = {}) {
    super(scope, id, props);
    const cfg = resolveProps(props);

    // One log bucket, created when the first of the VPC's flow logs or the bucket's access logs needs it.
    let logBucket: s3.Bucket | undefined;
    const getLogBucket = (): s3.Bucket => (logBucket ??= createLogBucket(this));

    const network = new GatewayNetwork(this, 'Network', {
      vpcId: cfg.vpcId,
      vpcCidr: cfg.vpcCidr,
      maxAzs: cfg.maxAzs,
      natGateways: cfg.natGateways,
      s3GatewayEndpoint: cfg.s3GatewayEndpoint,
      flowLogBucket: getLogBucket,
    });
    this.vpc = network.vpc;

    const storage = new GatewayBucket(this, 'Storage', {
      bucketName: cfg.bucketName,
      bucketKmsKeyArn: cfg.bucketKmsKeyArn,
      encryption: cfg.bucketEncryption,
      accessLogBucket: getLogBucket,
    });
    this.bucket = storage.bucket;

    const prometheusWanted = cfg.createAmpWorkspace || cfg.ampWorkspaceArn !== undefined;
    this.cacheSizeMiB = cfg.cacheSizeMiBFor(prometheusWanted ? ADOT_MEMORY_MIB : 0);

    const tasks = new GatewayTasks(this, 'Tasks', {
      vpc: network.vpc,
      bucket: storage,
      s3Prefix: cfg.s3Prefix,
      allowWrite: cfg.allowWrite,
      writePrefixes: cfg.writePrefixes,
      cpu: cfg.cpu,
      memoryMiB: cfg.memoryMiB,
      cacheSizeMiB: this.cacheSizeMiB,
      imageUri: cfg.imageUri,
      imageDirectory: cfg.imageDirectory,
      serviceName: cfg.serviceName,
      logRetention: cfg.logRetention,
      logLevel: cfg.logLevel,
      maxBlksize: cfg.maxBlksize,
      httpBootPort: cfg.httpBoot?.containerPort,
      extraEnvironment: cfg.extraEnvironment,
      ephemeralStorageGiB: cfg.ephemeralStorageGiB,
      diskCache: cfg.diskCache,
      warmUp: cfg.warmUp,
    });
    this.cluster = tasks.cluster;
    this.logGroup = tasks.logGroup;
    this.taskDefinition = tasks.taskDefinition;

    const prometheus = prometheusWanted
      ? new GatewayPrometheus(this, 'Prometheus', {
          workspace: cfg.createAmpWorkspace
            ? { create: true, alias: `${this.stackName}-tftp-gateway` }
            : { workspaceArn: cfg.ampWorkspaceArn! },
          taskDefinition: tasks.taskDefinition,
          taskRole: tasks.taskRole,
          logGroup: tasks.logGroup,
          adotImage: cfg.adotImage,
        })
      : undefined;

    const loadBalancing = new GatewayLoadBalancer(this, 'LoadBalancing', {
      vpc: network.vpc,
      privateSubnets: network.privateSubnets,
      // Default: the VPC's own range.
      clientCidrs: cfg.clientCidrs.length > 0 ? cfg.clientCidrs : [network.vpcCidr],
      privateIps: cfg.nlbPrivateIps,
      deregistrationDelay: cfg.longestTransfer,
      healthCheckPath: cfg.targetHealthCheckPath,
      httpBoot: cfg.httpBoot,
      accessLogBucket: getLogBucket,
    });
    this.loadBalancer = loadBalancing.loadBalancer;
    this.targetGroup = loadBalancing.targetGroup;
    this.httpBootTargetGroup = loadBalancing.httpBootTargetGroup;

    this.service = new GatewayService(this, 'EcsService', {
      cluster: tasks.cluster,
      taskDefinition: tasks.taskDefinition,
      serviceName: cfg.serviceName,
      securityGroup: loadBalancing.serviceSecurityGroup,
      targetGroup: loadBalancing.targetGroup,
      healthCheckGracePeriod: cfg.healthCheckGracePeriod,
      httpBoot: cfg.httpBoot && loadBalancing.httpBootTargetGroup
        ? { targetGroup: loadBalancing.httpBootTargetGroup, containerPort: cfg.httpBoot.containerPort }
        : undefined,
    }).service;

    new GatewayScaling(this, 'Scaling', {
      service: this.service,
      minTasks: cfg.minTasks,
      maxTasks: cfg.maxTasks,
      cpuTargetPercent: cfg.cpuTargetPercent,
      sessionsPerTaskTarget: cfg.sessionsPerTaskTarget,
      serviceName: cfg.serviceName,
    });

    // ------------------------------------------------------------------ outputs
    new CfnOutput(this, 'LoadBalancerDnsName', {
      value: this.loadBalancer.loadBalancerDnsName,
      description: cfg.httpBoot
        ? `DNS name of the internal NLB (TFTP on UDP 69, HTTP boot on TCP ${cfg.httpBoot.port}${cfg.httpBoot.tls ? `, HTTPS on ${HTTPS_BOOT_PORT}` : ''})`
        : 'DNS name of the internal NLB (TFTP on UDP 69)',
    });
    if (cfg.httpBoot) {
      const host = cfg.nlbPrivateIps[0] ?? this.loadBalancer.loadBalancerDnsName;
      new CfnOutput(this, 'HttpBootUrl', {
        value: `http://${host}${cfg.httpBoot.port === HTTP_BOOT_PORT ? '' : `:${cfg.httpBoot.port}`}/`,
        description: 'Base URL of the files over HTTP (the same names as TFTP), for iPXE scripts and UEFI HTTP Boot',
      });
    }
    if (cfg.nlbPrivateIps.length > 0) {
      new CfnOutput(this, 'LoadBalancerPrivateIps', {
        value: cfg.nlbPrivateIps.join(','),
        description: 'Fixed private addresses of the NLB: use one as the DHCP next-server',
      });
    }
    new CfnOutput(this, 'BucketName', { value: this.bucket.bucketName, description: 'Bucket served by the gateway' });
    new CfnOutput(this, 'ServicePrefix', {
      value: `s3://${this.bucket.bucketName}/${cfg.s3Prefix}`,
      description: 'Upload boot images here',
    });
    new CfnOutput(this, 'LogGroupName', { value: this.logGroup.logGroupName });
    if (prometheus) {
      new CfnOutput(this, 'PrometheusRemoteWriteUrl', { value: prometheus.remoteWriteUrl });
    }
  }
}
