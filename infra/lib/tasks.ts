import { Arn, Aws, Duration, RemovalPolicy, Size, Stack, Validations } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { FlatConstruct } from './flat-construct.js';
import { acknowledgeWildcardResources } from './nag.js';
import {
  CACHE_DIR_PATH,
  DRAIN_TIMEOUT_SECONDS,
  GATEWAY_HTTP_PORT,
  GATEWAY_TFTP_PORT,
  STOP_TIMEOUT_SECONDS,
  type DiskCacheSettings,
  type WarmUpSettings,
} from './settings.js';
import type { GatewayBucket } from './storage.js';

export interface GatewayTasksProps {
  /** The VPC of the cluster. */
  readonly vpc: ec2.IVpc;
  /** The served bucket: the tasks are granted access to it and told its name and region. */
  readonly bucket: GatewayBucket;
  /** The served key prefix ('' or ending in '/'). */
  readonly s3Prefix: string;
  readonly allowWrite: boolean;
  /** Prefixes, relative to `s3Prefix`, that writes are allowed under (used with `allowWrite`). */
  readonly writePrefixes: readonly string[];
  /** Task CPU units and memory (a valid Fargate pair). */
  readonly cpu: number;
  readonly memoryMiB: number;
  /** The gateway's block cache size (TFTP_GATEWAY_CACHE_SIZE). */
  readonly cacheSizeMiB: number;
  /** Run this image; undefined builds the image from `imageDirectory`'s Dockerfile. */
  readonly imageUri: string | undefined;
  readonly imageDirectory: string;
  /** ECS service name, also the `ServiceName` dimension of the sessions metric the gateway writes. */
  readonly serviceName: string;
  readonly logRetention: logs.RetentionDays;
  readonly logLevel: string;
  readonly maxBlksize: number | undefined;
  /** The container's HTTP boot port (TFTP_GATEWAY_HTTP_BOOT_LISTEN); undefined: HTTP boot off. */
  readonly httpBootPort: number | undefined;
  /** Extra variables for the gateway container. */
  readonly extraEnvironment: Readonly<Record<string, string>>;
  /** Fargate ephemeral storage of a task (21..200 GiB); undefined: Fargate's default (20 GiB). */
  readonly ephemeralStorageGiB: number | undefined;
  /** The disk cache tier on the task's ephemeral storage; undefined: off (no volume). */
  readonly diskCache: DiskCacheSettings | undefined;
  /** What the gateway warms before it reports ready; undefined: no warm-up. */
  readonly warmUp: WarmUpSettings | undefined;
}

/**
 * What the gateway runs as: the ECS cluster, the log group, the task role (bucket access and
 * scale-in protection), and the ARM64 Fargate task definition with the gateway container.
 */
export class GatewayTasks extends FlatConstruct {
  readonly cluster: ecs.Cluster;
  readonly logGroup: logs.LogGroup;
  readonly taskRole: iam.Role;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly gatewayContainer: ecs.ContainerDefinition;

  constructor(scope: Construct, id: string, props: GatewayTasksProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const { bucket } = props.bucket;

    this.cluster = new ecs.Cluster(this.host, 'Cluster', {
      vpc: props.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });

    this.logGroup = new logs.LogGroup(this.host, 'Logs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.taskRole = new iam.Role(this.host, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com', {
        conditions: {
          ArnLike: { 'aws:SourceArn': Arn.format({ service: 'ecs', resource: '*' }, stack) },
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
        },
      }),
      description: 'TFTP gateway tasks: read the served prefix, write the write prefixes',
    });

    this.taskDefinition = new ecs.FargateTaskDefinition(this.host, 'TaskDefinition', {
      cpu: props.cpu,
      memoryLimitMiB: props.memoryMiB,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.ARM64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
      taskRole: this.taskRole,
      // Task volumes are bind mounts on the task's ephemeral storage; the cache volume is the disk tier's.
      volumes: [{ name: 'tmp' }, ...(props.diskCache ? [{ name: 'cache' }] : [])],
      ...(props.ephemeralStorageGiB !== undefined ? { ephemeralStorageGiB: props.ephemeralStorageGiB } : {}),
    });
    const { diskCache, warmUp } = props;

    const environment: Record<string, string> = {
      TFTP_GATEWAY_LISTEN: `0.0.0.0:${GATEWAY_TFTP_PORT}`,
      TFTP_GATEWAY_PORT_MODE: 'single',
      TFTP_GATEWAY_HTTP_LISTEN: `0.0.0.0:${GATEWAY_HTTP_PORT}`,
      ...(props.httpBootPort !== undefined ? { TFTP_GATEWAY_HTTP_BOOT_LISTEN: `0.0.0.0:${props.httpBootPort}` } : {}),
      TFTP_GATEWAY_S3_BUCKET: bucket.bucketName,
      TFTP_GATEWAY_S3_PREFIX: props.s3Prefix,
      TFTP_GATEWAY_S3_REGION: bucket.env.region,
      TFTP_GATEWAY_ALLOW_WRITE: String(props.allowWrite),
      TFTP_GATEWAY_CACHE_SIZE: `${props.cacheSizeMiB}MiB`,
      TFTP_GATEWAY_LOG_LEVEL: props.logLevel,
      TFTP_GATEWAY_DRAIN_TIMEOUT: String(DRAIN_TIMEOUT_SECONDS),
      TFTP_GATEWAY_CLOUDWATCH_EMF: 'true',
      TFTP_GATEWAY_CLOUDWATCH_EMF_SERVICE_NAME: props.serviceName,
      TFTP_GATEWAY_SCALE_IN_PROTECTION: 'true',
      ...(props.allowWrite ? { TFTP_GATEWAY_WRITE_PREFIXES: props.writePrefixes.join(',') } : {}),
      ...(props.maxBlksize !== undefined ? { TFTP_GATEWAY_MAX_BLKSIZE: String(props.maxBlksize) } : {}),
      ...(diskCache ? { TFTP_GATEWAY_CACHE_DIR: CACHE_DIR_PATH, TFTP_GATEWAY_CACHE_DIR_SIZE: `${diskCache.sizeMiB}MiB` } : {}),
      ...(warmUp && warmUp.names.length > 0 ? { TFTP_GATEWAY_WARM: warmUp.names.join(',') } : {}),
      ...(warmUp?.file !== undefined ? { TFTP_GATEWAY_WARM_FILE: warmUp.file } : {}),
      // Always explicit: the service's grace period is computed from this value, not from the gateway's default.
      ...(warmUp ? { TFTP_GATEWAY_WARM_TIMEOUT: String(warmUp.timeoutSeconds) } : {}),
      ...(warmUp?.intervalSeconds !== undefined ? { TFTP_GATEWAY_WARM_INTERVAL: String(warmUp.intervalSeconds) } : {}),
      ...props.extraEnvironment,
    };

    this.gatewayContainer = this.taskDefinition.addContainer('gateway', {
      containerName: 'gateway',
      image: this.gatewayImage(props.imageUri, props.imageDirectory),
      essential: true,
      environment,
      portMappings: [
        { name: 'tftp', containerPort: GATEWAY_TFTP_PORT, protocol: ecs.Protocol.UDP },
        { name: 'http', containerPort: GATEWAY_HTTP_PORT, protocol: ecs.Protocol.TCP },
        ...(props.httpBootPort !== undefined ? [{ name: 'http-boot', containerPort: props.httpBootPort, protocol: ecs.Protocol.TCP }] : []),
      ],
      stopTimeout: Duration.seconds(STOP_TIMEOUT_SECONDS),
      readonlyRootFilesystem: true,
      linuxParameters: new ecs.LinuxParameters(this.host, 'GatewayLinuxParameters', { initProcessEnabled: true }),
      healthCheck: {
        // The slim image has no curl: Node's fetch asks the gateway's own liveness endpoint. Liveness,
        // not readiness: /healthz is 200 once the UDP sockets are bound, warm-up or not (a warming task
        // answers 503 on /readyz only), so ECS never restarts a task for warming; the target groups
        // keep it out of the load balancer until it is ready.
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
    this.gatewayContainer.addMountPoints({ containerPath: '/tmp', sourceVolume: 'tmp', readOnly: false });
    if (diskCache) {
      // The image declares CACHE_DIR_PATH a VOLUME owned by its runtime user: Fargate gives the mounted
      // volume that owner, so the unprivileged gateway can write there while the root file system stays read-only.
      this.gatewayContainer.addMountPoints({ containerPath: CACHE_DIR_PATH, sourceVolume: 'cache', readOnly: false });
    }

    // ------------------------------------------------------ task permissions
    props.bucket.grantGatewayAccess(this.taskRole, { prefix: props.s3Prefix, allowWrite: props.allowWrite, writePrefixes: props.writePrefixes });
    // The gateway keeps its own task from being chosen for scale-in while it has sessions.
    const clusterTasks = stack.formatArn({ service: 'ecs', resource: 'task', resourceName: `${this.cluster.clusterName}/*` });
    this.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'TaskScaleInProtection',
        actions: ['ecs:GetTaskProtection', 'ecs:UpdateTaskProtection'],
        resources: [clusterTasks],
      }),
    );
    acknowledgeWildcardResources(this.taskRole, [
      {
        resource: clusterTasks,
        reason: 'Task IDs are not known before the tasks start; the statement is limited to tasks of this cluster and the two task-protection actions.',
      },
    ]);

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
  }

  private gatewayImage(imageUri: string | undefined, imageDirectory: string): ecs.ContainerImage {
    if (imageUri === undefined) {
      return ecs.ContainerImage.fromAsset(imageDirectory, {
        platform: Platform.LINUX_ARM64,
        // The build context is narrowed by the repository's .dockerignore (an allow-list).
      });
    }
    const ecrMatch = /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\/([^:@]+)(?::([^@]+))?(?:@(sha256:[a-f0-9]{64}))?$/.exec(imageUri);
    if (ecrMatch) {
      const [, account, region, repositoryName, tag, digest] = ecrMatch;
      const stack = Stack.of(this);
      const repository = ecr.Repository.fromRepositoryAttributes(this.host, 'ImageRepository', {
        repositoryName: repositoryName!,
        repositoryArn: Arn.format(
          { partition: stack.partition, service: 'ecr', account, region, resource: 'repository', resourceName: repositoryName },
          stack,
        ),
      });
      return ecs.ContainerImage.fromEcrRepository(repository, digest ?? tag ?? 'latest');
    }
    return ecs.ContainerImage.fromRegistry(imageUri);
  }
}
