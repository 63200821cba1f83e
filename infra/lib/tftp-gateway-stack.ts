import { fileURLToPath } from 'node:url';
import {
  Arn,
  ArnFormat,
  Aws,
  CfnOutput,
  Duration,
  RemovalPolicy,
  Size,
  Stack,
  Token,
  Validations,
  type StackProps,
} from 'aws-cdk-lib';
import * as aps from 'aws-cdk-lib/aws-aps';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { acknowledgeWildcardResources } from './nag.js';

/** Ports of the gateway container (its contract; the Dockerfile EXPOSEs the same). */
export const GATEWAY_TFTP_PORT = 6969;
export const GATEWAY_HTTP_PORT = 9464;
/** The port clients use (TFTP's well-known port), on the load balancer. */
export const TFTP_PORT = 69;
/** Fargate's maximum stopTimeout: the time between SIGTERM and SIGKILL. */
export const STOP_TIMEOUT_SECONDS = 120;
/** The gateway's drain budget after SIGTERM: kept below the stop timeout. */
export const DRAIN_TIMEOUT_SECONDS = 100;
/** CloudWatch metric the gateway writes in Embedded Metric Format (TFTP_GATEWAY_CLOUDWATCH_EMF). */
export const SESSIONS_METRIC = { namespace: 'TftpGateway', metricName: 'ActiveSessions', dimension: 'ServiceName' } as const;
/** Memory kept for the ADOT collector sidecar when it runs. */
export const ADOT_MEMORY_MIB = 256;
export const DEFAULT_ADOT_IMAGE = 'public.ecr.aws/aws-observability/aws-otel-collector:v0.48.0';

/** The repository root: the Docker build context of the gateway image. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface TftpGatewayStackProps extends StackProps {
  // ----- network -----
  /** Use this existing VPC (looked up at synth time: needs `env` with account and region). Default: a new VPC. */
  readonly vpcId?: string;
  /** CIDR of the new VPC. Default 10.0.0.0/16. Ignored with `vpcId`. */
  readonly vpcCidr?: string;
  /** Availability zones of the new VPC. Default 2. */
  readonly maxAzs?: number;
  /** NAT gateways of the new VPC (tasks pull the image and ship logs through them). Default 1. */
  readonly natGateways?: number;
  /** Add an S3 gateway endpoint to the VPC's private subnets. Default true (set false if an imported VPC already has one). */
  readonly s3GatewayEndpoint?: boolean;
  /** Networks allowed to reach UDP 69 on the load balancer. Default: the VPC's CIDR. */
  readonly clientCidrs?: string[];
  /**
   * Fixed private IPv4 addresses of the load balancer, one per private subnet in subnet order
   * (a DHCP `next-server` needs a stable address). Default: addresses chosen by AWS.
   */
  readonly nlbPrivateIps?: string[];

  // ----- bucket -----
  /** Serve this existing bucket. Default: create one. */
  readonly bucketName?: string;
  /** KMS key that encrypts the existing bucket (SSE-KMS). Default: none (SSE-S3). */
  readonly bucketKmsKeyArn?: string;
  /** Encryption of a created bucket: 's3' (SSE-S3, default) or 'kms' (a new customer managed key). */
  readonly bucketEncryption?: 's3' | 'kms';
  /** Key prefix the gateway serves (TFTP_GATEWAY_S3_PREFIX). Default '' (whole bucket). */
  readonly s3Prefix?: string;
  /** Accept write requests (WRQ). Default false. Requires `writePrefixes`. */
  readonly allowWrite?: boolean;
  /** Prefixes, relative to `s3Prefix`, under which writes are allowed (TFTP_GATEWAY_WRITE_PREFIXES). */
  readonly writePrefixes?: string[];

  // ----- tasks -----
  /** Container image to run, e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com/tftp-gateway:1.2.3`. Default: built from this repository's Dockerfile. */
  readonly imageUri?: string;
  /** Build context for the default image. Default: the repository root. */
  readonly imageDirectory?: string;
  /** Task CPU units. Default 512 (0.5 vCPU). */
  readonly cpu?: number;
  /** Task memory in MiB. Default 1024. */
  readonly memoryMiB?: number;
  /**
   * Share of the gateway container's memory given to the read cache. Default 0.5, or 0.25 when writes
   * are allowed (each upload buffers its multipart parts in memory too).
   */
  readonly cacheFraction?: number;
  /** Fewest and most tasks. Default 2 and 10. */
  readonly minTasks?: number;
  readonly maxTasks?: number;
  /** Average CPU the service scales to. Default 60 (%). */
  readonly cpuTargetPercent?: number;
  /** Average active sessions per task the service scales to. Default 200. */
  readonly sessionsPerTaskTarget?: number;
  /** Longest expected transfer: the target group's deregistration delay. Default 300 s (at most 3600 s). */
  readonly longestTransfer?: Duration;
  /** ECS service name; also the `ServiceName` dimension of the sessions metric. Default 'tftp-gateway'. */
  readonly serviceName?: string;
  /** Log retention. Default one month. */
  readonly logRetention?: logs.RetentionDays;
  /** TFTP_GATEWAY_LOG_LEVEL. Default 'info'. */
  readonly logLevel?: string;
  /** TFTP_GATEWAY_MAX_BLKSIZE. Default: the gateway's (1468). */
  readonly maxBlksize?: number;
  /** Extra TFTP_GATEWAY_* variables for the gateway container. */
  readonly extraEnvironment?: Record<string, string>;

  // ----- Prometheus -----
  /** Remote-write to this Amazon Managed Service for Prometheus workspace through an ADOT sidecar. */
  readonly ampWorkspaceArn?: string;
  /** Create a workspace and remote-write to it. Default false. */
  readonly createAmpWorkspace?: boolean;
  /** Image of the ADOT collector sidecar. */
  readonly adotImage?: string;
}

/**
 * TFTP gateway on ECS Fargate (ARM64) behind an internal UDP Network Load Balancer, serving one S3 bucket.
 */
export class TftpGatewayStack extends Stack {
  readonly vpc: ec2.IVpc;
  readonly bucket: s3.IBucket;
  readonly cluster: ecs.Cluster;
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly loadBalancer: elbv2.NetworkLoadBalancer;
  readonly targetGroup: elbv2.NetworkTargetGroup;
  readonly logGroup: logs.LogGroup;
  /** Cache size given to the gateway, in MiB (derived from the task memory). */
  readonly cacheSizeMiB: number;

  constructor(scope: Construct, id: string, props: TftpGatewayStackProps = {}) {
    super(scope, id, props);
    const cfg = resolveProps(props);

    // ---------------------------------------------------------------- network
    let vpc: ec2.IVpc;
    let logBucket: s3.Bucket | undefined;
    if (cfg.vpcId !== undefined) {
      vpc = ec2.Vpc.fromLookup(this, 'Vpc', { vpcId: cfg.vpcId });
    } else {
      logBucket = this.createLogBucket();
      const newVpc = new ec2.Vpc(this, 'Vpc', {
        ipAddresses: ec2.IpAddresses.cidr(cfg.vpcCidr),
        maxAzs: cfg.maxAzs,
        natGateways: cfg.natGateways,
        subnetConfiguration: [
          { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
          { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
        ],
      });
      newVpc.addFlowLog('FlowLogs', {
        destination: ec2.FlowLogDestination.toS3(logBucket, 'vpc-flow-logs/'),
        trafficType: ec2.FlowLogTrafficType.REJECT,
      });
      vpc = newVpc;
    }
    this.vpc = vpc;
    const privateSubnets = vpc.selectSubnets({ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS });
    if (cfg.s3GatewayEndpoint) {
      vpc.addGatewayEndpoint('S3Endpoint', {
        service: ec2.GatewayVpcEndpointAwsService.S3,
        subnets: [{ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }],
      });
    }

    // ----------------------------------------------------------------- bucket
    let bucketKey: kms.IKey | undefined;
    if (cfg.bucketName !== undefined) {
      bucketKey = cfg.bucketKmsKeyArn !== undefined ? kms.Key.fromKeyArn(this, 'BucketKey', cfg.bucketKmsKeyArn) : undefined;
      this.bucket = s3.Bucket.fromBucketAttributes(this, 'Bucket', {
        bucketName: cfg.bucketName,
        ...(bucketKey ? { encryptionKey: bucketKey } : {}),
      });
    } else {
      logBucket ??= this.createLogBucket();
      if (cfg.bucketEncryption === 'kms') {
        bucketKey = new kms.Key(this, 'BucketKey', {
          description: 'Encrypts the TFTP gateway bucket',
          enableKeyRotation: true,
          removalPolicy: RemovalPolicy.RETAIN,
        });
      }
      this.bucket = new s3.Bucket(this, 'Bucket', {
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        encryption: bucketKey ? s3.BucketEncryption.KMS : s3.BucketEncryption.S3_MANAGED,
        ...(bucketKey ? { encryptionKey: bucketKey, bucketKeyEnabled: true } : {}),
        enforceSSL: true,
        minimumTLSVersion: 1.2,
        lifecycleRules: [{ id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) }],
        serverAccessLogsBucket: logBucket,
        serverAccessLogsPrefix: 'bucket-access-logs/',
        removalPolicy: RemovalPolicy.RETAIN,
      });
    }

    // ------------------------------------------------------------ ECS cluster
    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: cfg.logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const taskRole = new iam.Role(this, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com', {
        conditions: {
          ArnLike: { 'aws:SourceArn': Arn.format({ service: 'ecs', resource: '*' }, this) },
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
        },
      }),
      description: 'TFTP gateway tasks: read the served prefix, write the write prefixes',
    });

    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'TaskDefinition', {
      cpu: cfg.cpu,
      memoryLimitMiB: cfg.memoryMiB,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.ARM64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
      taskRole,
      volumes: [{ name: 'tmp' }],
    });

    const amp = this.prometheusTarget(cfg);
    const sidecarMiB = amp ? ADOT_MEMORY_MIB : 0;
    this.cacheSizeMiB = cfg.cacheSizeMiBFor(sidecarMiB);

    const environment: Record<string, string> = {
      TFTP_GATEWAY_LISTEN: `0.0.0.0:${GATEWAY_TFTP_PORT}`,
      TFTP_GATEWAY_PORT_MODE: 'single',
      TFTP_GATEWAY_HTTP_LISTEN: `0.0.0.0:${GATEWAY_HTTP_PORT}`,
      TFTP_GATEWAY_S3_BUCKET: this.bucket.bucketName,
      TFTP_GATEWAY_S3_PREFIX: cfg.s3Prefix,
      TFTP_GATEWAY_S3_REGION: this.bucket.env.region,
      TFTP_GATEWAY_ALLOW_WRITE: String(cfg.allowWrite),
      TFTP_GATEWAY_CACHE_SIZE: `${this.cacheSizeMiB}MiB`,
      TFTP_GATEWAY_LOG_LEVEL: cfg.logLevel,
      TFTP_GATEWAY_DRAIN_TIMEOUT: String(DRAIN_TIMEOUT_SECONDS),
      TFTP_GATEWAY_CLOUDWATCH_EMF: 'true',
      TFTP_GATEWAY_CLOUDWATCH_EMF_SERVICE_NAME: cfg.serviceName,
      TFTP_GATEWAY_SCALE_IN_PROTECTION: 'true',
      ...(cfg.allowWrite ? { TFTP_GATEWAY_WRITE_PREFIXES: cfg.writePrefixes.join(',') } : {}),
      ...(cfg.maxBlksize !== undefined ? { TFTP_GATEWAY_MAX_BLKSIZE: String(cfg.maxBlksize) } : {}),
      ...cfg.extraEnvironment,
    };

    const gateway = this.taskDefinition.addContainer('gateway', {
      containerName: 'gateway',
      image: this.gatewayImage(cfg),
      essential: true,
      environment,
      portMappings: [
        { name: 'tftp', containerPort: GATEWAY_TFTP_PORT, protocol: ecs.Protocol.UDP },
        { name: 'http', containerPort: GATEWAY_HTTP_PORT, protocol: ecs.Protocol.TCP },
      ],
      stopTimeout: Duration.seconds(STOP_TIMEOUT_SECONDS),
      readonlyRootFilesystem: true,
      linuxParameters: new ecs.LinuxParameters(this, 'GatewayLinuxParameters', { initProcessEnabled: true }),
      healthCheck: {
        // The slim image has no curl: Node's fetch asks the gateway's own liveness endpoint.
        command: [
          'CMD',
          'node',
          '-e',
          `fetch('http://127.0.0.1:${GATEWAY_HTTP_PORT}/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`,
        ],
        interval: Duration.seconds(15),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(20),
      },
      logging: ecs.LogDrivers.awsLogs({
        logGroup: this.logGroup,
        streamPrefix: 'gateway',
        mode: ecs.AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(25),
      }),
    });
    gateway.addMountPoints({ containerPath: '/tmp', sourceVolume: 'tmp', readOnly: false });

    // ------------------------------------------------------ task permissions
    this.grantBucketAccess(taskRole, cfg, bucketKey);

    // ------------------------------------------------------ security groups
    const nlbSecurityGroup = new ec2.SecurityGroup(this, 'NlbSecurityGroup', {
      vpc,
      allowAllOutbound: false,
      description: 'TFTP gateway load balancer: UDP 69 from the client networks only',
    });
    // Default: the VPC's own range, as a literal (cdk-nag's open-ingress check cannot read a token).
    const clientCidrs = cfg.clientCidrs.length > 0 ? cfg.clientCidrs : [cfg.vpcId === undefined ? cfg.vpcCidr : vpc.vpcCidrBlock];
    for (const cidr of clientCidrs) {
      nlbSecurityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.udp(TFTP_PORT), 'TFTP from a client network');
    }
    const serviceSecurityGroup = new ec2.SecurityGroup(this, 'ServiceSecurityGroup', {
      vpc,
      allowAllOutbound: false,
      description: 'TFTP gateway tasks: TFTP and health checks from the load balancer; HTTPS out',
    });
    serviceSecurityGroup.addIngressRule(nlbSecurityGroup, ec2.Port.udp(GATEWAY_TFTP_PORT), 'TFTP from the load balancer');
    serviceSecurityGroup.addIngressRule(nlbSecurityGroup, ec2.Port.tcp(GATEWAY_HTTP_PORT), 'Health checks from the load balancer');
    serviceSecurityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to S3, ECR, CloudWatch Logs and the Prometheus workspace');
    nlbSecurityGroup.addEgressRule(serviceSecurityGroup, ec2.Port.udp(GATEWAY_TFTP_PORT), 'TFTP to the tasks');
    nlbSecurityGroup.addEgressRule(serviceSecurityGroup, ec2.Port.tcp(GATEWAY_HTTP_PORT), 'Health checks to the tasks');
    // The two rules above are separate resources; without an inline rule CloudFormation would give the
    // group its default allow-all egress. This inline rule matches no traffic and keeps egress closed.
    nlbSecurityGroup.addEgressRule(ec2.Peer.ipv4('255.255.255.255/32'), ec2.Port.icmpTypeAndCode(252, 86), 'Disallow all other traffic');

    // ---------------------------------------------------------- load balancer
    this.loadBalancer = new elbv2.NetworkLoadBalancer(this, 'Nlb', {
      vpc,
      internetFacing: false,
      crossZoneEnabled: true,
      securityGroups: [nlbSecurityGroup],
      ...(cfg.nlbPrivateIps.length > 0
        ? {
            subnetMappings: privateSubnets.subnets.map((subnet, i) => ({
              subnet,
              privateIpv4Address: cfg.nlbPrivateIps[i]!,
            })),
          }
        : { vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } }),
    });
    if (cfg.nlbPrivateIps.length > 0) {
      checkFixedIps(cfg.nlbPrivateIps, privateSubnets.subnets);
    }

    this.targetGroup = new elbv2.NetworkTargetGroup(this, 'TargetGroup', {
      vpc,
      port: GATEWAY_TFTP_PORT,
      protocol: elbv2.Protocol.UDP,
      targetType: elbv2.TargetType.IP,
      deregistrationDelay: cfg.longestTransfer,
      healthCheck: {
        enabled: true,
        protocol: elbv2.Protocol.HTTP,
        port: String(GATEWAY_HTTP_PORT),
        path: '/healthz',
        healthyHttpCodes: '200',
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 2,
      },
    });
    this.loadBalancer.addListener('Tftp', {
      port: TFTP_PORT,
      protocol: elbv2.Protocol.UDP,
      defaultTargetGroups: [this.targetGroup],
    });

    // ----------------------------------------------------------------- service
    this.service = new ecs.FargateService(this, 'Service', {
      cluster: this.cluster,
      serviceName: cfg.serviceName,
      taskDefinition: this.taskDefinition,
      // No desiredCount: auto scaling owns it (a fixed value would reset the count on every deploy).
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      healthCheckGracePeriod: Duration.seconds(30),
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      securityGroups: [serviceSecurityGroup],
      assignPublicIp: false,
      platformVersion: ecs.FargatePlatformVersion.LATEST,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
      enableECSManagedTags: true,
    });
    this.targetGroup.addTarget(
      this.service.loadBalancerTarget({ containerName: 'gateway', containerPort: GATEWAY_TFTP_PORT, protocol: ecs.Protocol.UDP }),
    );
    // The gateway keeps its own task from being chosen for scale-in while it has sessions.
    const clusterTasks = this.formatArn({ service: 'ecs', resource: 'task', resourceName: `${this.cluster.clusterName}/*` });
    taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'TaskScaleInProtection',
        actions: ['ecs:GetTaskProtection', 'ecs:UpdateTaskProtection'],
        resources: [clusterTasks],
      }),
    );
    acknowledgeWildcardResources(taskRole, [
      {
        resource: clusterTasks,
        reason: 'Task IDs are not known before the tasks start; the statement is limited to tasks of this cluster and the two task-protection actions.',
      },
    ]);

    // ----------------------------------------------------------------- scaling
    const scaling = this.service.autoScaleTaskCount({ minCapacity: cfg.minTasks, maxCapacity: cfg.maxTasks });
    scaling.scaleOnCpuUtilization('CpuScaling', {
      targetUtilizationPercent: cfg.cpuTargetPercent,
      scaleOutCooldown: Duration.seconds(60),
      scaleInCooldown: Duration.seconds(300),
    });
    scaling.scaleToTrackCustomMetric('SessionScaling', {
      metric: new cloudwatch.Metric({
        namespace: SESSIONS_METRIC.namespace,
        metricName: SESSIONS_METRIC.metricName,
        dimensionsMap: { [SESSIONS_METRIC.dimension]: cfg.serviceName },
        statistic: cloudwatch.Stats.AVERAGE,
        period: Duration.minutes(1),
      }),
      targetValue: cfg.sessionsPerTaskTarget,
      scaleOutCooldown: Duration.seconds(60),
      scaleInCooldown: Duration.seconds(300),
    });

    // ---------------------------------------------------------- Prometheus path
    if (amp) {
      this.addAdotSidecar(amp, cfg.adotImage, taskRole);
    }

    // ------------------------------------------------------------- cdk-nag acks
    const executionRole = this.taskDefinition.executionRole;
    if (executionRole) {
      acknowledgeWildcardResources(executionRole, [
        {
          resource: '*',
          reason: 'ecr:GetAuthorizationToken (added by CDK to pull the image) has no resource-level permissions; the image pull itself is limited to the image repository.',
        },
      ]);
    }
    Validations.of(this.taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason: 'The environment variables are the non-secret gateway configuration (bucket, prefixes, ports, sizes); credentials come from the task role.',
    });
    Validations.of(this.loadBalancer).acknowledge({
      id: 'AwsSolutions-ELB2',
      reason: 'Network Load Balancer access logs exist only for TLS listeners; this one has a single UDP listener. Transfers are logged by the gateway (JSON lines in CloudWatch Logs) and rejected flows by VPC flow logs.',
    });

    // ------------------------------------------------------------------ outputs
    new CfnOutput(this, 'LoadBalancerDnsName', {
      value: this.loadBalancer.loadBalancerDnsName,
      description: 'DNS name of the internal NLB (TFTP on UDP 69)',
    });
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
    if (amp) {
      new CfnOutput(this, 'PrometheusRemoteWriteUrl', { value: amp.remoteWriteUrl });
    }
  }

  /** Bucket for S3 server access logs and VPC flow logs (only when the stack creates the bucket or the VPC). */
  private createLogBucket(): s3.Bucket {
    const bucket = new s3.Bucket(this, 'LogBucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      lifecycleRules: [
        { id: 'expire-logs', expiration: Duration.days(90) },
        { id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This bucket is the destination of the access logs and flow logs; logging its own access would log the log deliveries.',
    });
    return bucket;
  }

  private gatewayImage(cfg: ResolvedProps): ecs.ContainerImage {
    if (cfg.imageUri === undefined) {
      return ecs.ContainerImage.fromAsset(cfg.imageDirectory, {
        platform: Platform.LINUX_ARM64,
        // The build context is narrowed by the repository's .dockerignore (an allow-list).
      });
    }
    const ecrMatch = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\/([^:@]+)(?::([^@]+))?(?:@(sha256:[a-f0-9]{64}))?$/.exec(
      cfg.imageUri,
    );
    if (ecrMatch) {
      const [, account, region, repositoryName, tag, digest] = ecrMatch;
      const repository = ecr.Repository.fromRepositoryAttributes(this, 'ImageRepository', {
        repositoryName: repositoryName!,
        repositoryArn: Arn.format(
          { partition: this.partition, service: 'ecr', account, region, resource: 'repository', resourceName: repositoryName },
          this,
        ),
      });
      return ecs.ContainerImage.fromEcrRepository(repository, digest ?? tag ?? 'latest');
    }
    return ecs.ContainerImage.fromRegistry(cfg.imageUri);
  }

  /** Least-privilege S3 (and KMS) access for the tasks. */
  private grantBucketAccess(role: iam.Role, cfg: ResolvedProps, key: kms.IKey | undefined): void {
    const readResource = this.bucket.arnForObjects(`${cfg.s3Prefix}*`);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ReadServedObjects', actions: ['s3:GetObject'], resources: [readResource] }),
    );
    // Without ListBucket, S3 answers 403 instead of 404 for a missing key, and the gateway could not say "file not found".
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ListBucketFor404', actions: ['s3:ListBucket'], resources: [this.bucket.bucketArn] }),
    );
    const acks = [{ resource: readResource, reason: 'Reads are limited to objects under the served prefix; object names are chosen by the operator at upload time.' }];
    if (cfg.allowWrite) {
      const writeResources = cfg.writePrefixes.map((p) => this.bucket.arnForObjects(`${cfg.s3Prefix}${p}*`));
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'WriteUploadPrefixes',
          actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
          resources: writeResources,
        }),
      );
      for (const resource of writeResources) {
        acks.push({ resource, reason: 'Writes are limited to the configured write prefixes; the file names are chosen by the TFTP clients.' });
      }
    }
    if (key) {
      const viaS3 = { StringEquals: { 'kms:ViaService': `s3.${this.bucket.env.region}.amazonaws.com` } };
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'BucketKeyViaS3',
          actions: cfg.allowWrite ? ['kms:Decrypt', 'kms:GenerateDataKey'] : ['kms:Decrypt'],
          resources: [key.keyArn],
          conditions: viaS3,
        }),
      );
    }
    acknowledgeWildcardResources(role, acks);
  }

  private prometheusTarget(cfg: ResolvedProps): { workspaceArn: string; remoteWriteUrl: string; region: string } | undefined {
    if (cfg.createAmpWorkspace) {
      const workspace = new aps.CfnWorkspace(this, 'PrometheusWorkspace', { alias: `${this.stackName}-tftp-gateway` });
      return {
        workspaceArn: workspace.attrArn,
        remoteWriteUrl: `${workspace.attrPrometheusEndpoint}api/v1/remote_write`,
        region: this.region,
      };
    }
    if (cfg.ampWorkspaceArn !== undefined) {
      const parts = Arn.split(cfg.ampWorkspaceArn, ArnFormat.SLASH_RESOURCE_NAME);
      const region = parts.region ?? this.region;
      return {
        workspaceArn: cfg.ampWorkspaceArn,
        remoteWriteUrl: `https://aps-workspaces.${region}.amazonaws.com/workspaces/${parts.resourceName}/api/v1/remote_write`,
        region,
      };
    }
    return undefined;
  }

  /** ADOT collector: scrapes the gateway's /metrics on localhost and remote-writes to the workspace. */
  private addAdotSidecar(amp: { workspaceArn: string; remoteWriteUrl: string; region: string }, image: string, role: iam.Role): void {
    const config = adotConfig(amp.remoteWriteUrl, amp.region);
    this.taskDefinition.addContainer('adot-collector', {
      containerName: 'adot-collector',
      image: ecs.ContainerImage.fromRegistry(image),
      essential: false,
      memoryLimitMiB: ADOT_MEMORY_MIB,
      environment: { AOT_CONFIG_CONTENT: config },
      logging: ecs.LogDrivers.awsLogs({
        logGroup: this.logGroup,
        streamPrefix: 'adot',
        mode: ecs.AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(4),
      }),
    });
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'PrometheusRemoteWrite', actions: ['aps:RemoteWrite'], resources: [amp.workspaceArn] }),
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

// --------------------------------------------------------------------------- props

type ResolvedProps = ReturnType<typeof resolveProps>;

const FARGATE_MEMORY: Record<number, { min: number; max: number; step: number }> = {
  256: { min: 512, max: 2048, step: 512 },
  512: { min: 1024, max: 4096, step: 1024 },
  1024: { min: 2048, max: 8192, step: 1024 },
  2048: { min: 4096, max: 16384, step: 1024 },
  4096: { min: 8192, max: 30720, step: 1024 },
  8192: { min: 16384, max: 61440, step: 4096 },
  16384: { min: 32768, max: 122880, step: 8192 },
};

/** Defaults and validation, in one place (the stack throws on a configuration that cannot work). */
export function resolveProps(props: TftpGatewayStackProps) {
  const cpu = props.cpu ?? 512;
  const memoryMiB = props.memoryMiB ?? 1024;
  const sizes = FARGATE_MEMORY[cpu];
  if (!sizes) throw new Error(`cpu must be one of ${Object.keys(FARGATE_MEMORY).join(', ')} (got ${cpu})`);
  const validMemory =
    memoryMiB >= sizes.min && memoryMiB <= sizes.max && ((memoryMiB - sizes.min) % sizes.step === 0 || (cpu === 256 && memoryMiB === 512));
  if (!validMemory) {
    throw new Error(`memoryMiB ${memoryMiB} is not a Fargate size for cpu ${cpu} (${sizes.min}..${sizes.max} in steps of ${sizes.step})`);
  }
  const cacheFraction = props.cacheFraction ?? (props.allowWrite ? 0.25 : 0.5);
  if (!(cacheFraction > 0 && cacheFraction < 0.9)) throw new Error(`cacheFraction must be in (0, 0.9) (got ${cacheFraction})`);

  const allowWrite = props.allowWrite ?? false;
  const writePrefixes = (props.writePrefixes ?? []).map((p) => p.trim().replace(/^\/+/, '')).filter((p) => p.length > 0);
  if (allowWrite && writePrefixes.length === 0) {
    throw new Error('allowWrite needs writePrefixes: the task role only grants writes under them');
  }
  if (props.bucketKmsKeyArn !== undefined && props.bucketName === undefined) {
    throw new Error('bucketKmsKeyArn is for an imported bucket (bucketName); use bucketEncryption: "kms" for a created one');
  }
  if (props.ampWorkspaceArn !== undefined && props.createAmpWorkspace) {
    throw new Error('set either ampWorkspaceArn or createAmpWorkspace, not both');
  }
  const minTasks = props.minTasks ?? 2;
  const maxTasks = props.maxTasks ?? 10;
  if (!(Number.isInteger(minTasks) && minTasks >= 1 && Number.isInteger(maxTasks) && maxTasks >= minTasks)) {
    throw new Error(`need integers 1 <= minTasks <= maxTasks (got ${minTasks}, ${maxTasks})`);
  }
  const longestTransfer = props.longestTransfer ?? Duration.seconds(300);
  const delay = longestTransfer.toSeconds();
  if (delay < 0 || delay > 3600) throw new Error(`longestTransfer must be at most 3600 s, the NLB's longest deregistration delay (got ${delay})`);
  const clientCidrs = props.clientCidrs ?? [];
  for (const cidr of clientCidrs) {
    if (!Token.isUnresolved(cidr) && parseCidr(cidr) === undefined) throw new Error(`clientCidrs: not an IPv4 CIDR: ${cidr}`);
  }
  const nlbPrivateIps = props.nlbPrivateIps ?? [];
  for (const ip of nlbPrivateIps) {
    if (parseIpv4(ip) === undefined) throw new Error(`nlbPrivateIps: not an IPv4 address: ${ip}`);
  }
  return {
    vpcId: props.vpcId,
    vpcCidr: props.vpcCidr ?? '10.0.0.0/16',
    maxAzs: props.maxAzs ?? 2,
    natGateways: props.natGateways ?? 1,
    s3GatewayEndpoint: props.s3GatewayEndpoint ?? true,
    clientCidrs,
    nlbPrivateIps,
    bucketName: props.bucketName,
    bucketKmsKeyArn: props.bucketKmsKeyArn,
    bucketEncryption: props.bucketEncryption ?? 's3',
    s3Prefix: normalisePrefix(props.s3Prefix ?? ''),
    allowWrite,
    writePrefixes,
    imageUri: props.imageUri,
    imageDirectory: props.imageDirectory ?? REPO_ROOT,
    cpu,
    memoryMiB,
    /** Cache = share of what the gateway container has once the sidecar's memory is set aside. */
    cacheSizeMiBFor: (sidecarMiB: number) => Math.floor((memoryMiB - sidecarMiB) * cacheFraction),
    minTasks,
    maxTasks,
    cpuTargetPercent: props.cpuTargetPercent ?? 60,
    sessionsPerTaskTarget: props.sessionsPerTaskTarget ?? 200,
    longestTransfer,
    serviceName: props.serviceName ?? 'tftp-gateway',
    logRetention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
    logLevel: props.logLevel ?? 'info',
    maxBlksize: props.maxBlksize,
    extraEnvironment: props.extraEnvironment ?? {},
    ampWorkspaceArn: props.ampWorkspaceArn,
    createAmpWorkspace: props.createAmpWorkspace ?? false,
    adotImage: props.adotImage ?? DEFAULT_ADOT_IMAGE,
  };
}

/** Same rule as the gateway's own: no leading slash, one trailing slash unless empty. */
export function normalisePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  return trimmed.length === 0 ? '' : `${trimmed}/`;
}

export function parseIpv4(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const octets = m.slice(1).map(Number);
  if (octets.some((o) => o > 255)) return undefined;
  return octets.reduce((acc, o) => acc * 256 + o, 0);
}

export function parseCidr(cidr: string): { base: number; size: number } | undefined {
  const [ip, bits, ...rest] = cidr.split('/');
  if (ip === undefined || bits === undefined || rest.length > 0 || !/^\d{1,2}$/.test(bits)) return undefined;
  const base = parseIpv4(ip);
  const n = Number(bits);
  if (base === undefined || n > 32) return undefined;
  const size = 2 ** (32 - n);
  return { base: base - (base % size), size };
}

/** The NLB needs one address per subnet, inside that subnet, clear of the 4 reserved first and the last address. */
function checkFixedIps(ips: string[], subnets: ec2.ISubnet[]): void {
  if (ips.length !== subnets.length) {
    throw new Error(`nlbPrivateIps: give one address per private subnet (${subnets.length}), in subnet order (got ${ips.length})`);
  }
  ips.forEach((ip, i) => {
    const cidr = subnets[i]!.ipv4CidrBlock;
    if (Token.isUnresolved(cidr)) return;
    const range = parseCidr(cidr);
    const addr = parseIpv4(ip)!;
    if (!range || addr < range.base + 4 || addr >= range.base + range.size - 1) {
      throw new Error(`nlbPrivateIps: ${ip} is not a usable address of subnet ${i + 1} (${cidr})`);
    }
  });
}
