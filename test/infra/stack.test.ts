// Template assertions for the default deployment (a fresh clone with no context): new VPC, new
// bucket, image built from this repository's Dockerfile. One synthesis shared by every test; at the
// end, the disk cache tier and warm-up settings (issue 21) and what the default leaves out of them.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { App, Duration } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import { AssetManifestArtifact } from 'aws-cdk-lib/cx-api';
import { TEST_IMAGE, cdkJsonContext, describeViolations, logicalIdOf, resourcesOfType, synth, type Synthesized } from './helpers.js';
import { CACHE_DIR_PATH, TftpGatewayStack, type TftpGatewayStackProps } from '../../infra/lib/tftp-gateway-stack.js';
import { loadConfig } from '../../src/config/config.js';

const s = synth({});
const { template, json } = s;

const ref = (id: string) => ({ Ref: id });
const getAtt = (id: string, attr: string) => ({ 'Fn::GetAtt': [id, attr] });

/** The separate rule resources (AWS::EC2::SecurityGroupIngress / Egress) of one group, by port; `peer` is the other group. */
function separateRules(kind: 'Ingress' | 'Egress', groupId: string): Array<Record<string, unknown>> {
  const peerKey = kind === 'Ingress' ? 'SourceSecurityGroupId' : 'DestinationSecurityGroupId';
  return resourcesOfType(json, `AWS::EC2::SecurityGroup${kind}`)
    .filter(([, p]) => JSON.stringify(p['GroupId']) === JSON.stringify(getAtt(groupId, 'GroupId')))
    .map(([, p]) => ({ proto: p['IpProtocol'], from: p['FromPort'], to: p['ToPort'], peer: p[peerKey] }))
    .sort((a, b) => Number(a.from) - Number(b.from));
}

const bucketId = logicalIdOf(json, 'AWS::S3::Bucket', 'Bucket');
const clusterId = logicalIdOf(json, 'AWS::ECS::Cluster', 'Cluster');
const nlbSgId = logicalIdOf(json, 'AWS::EC2::SecurityGroup', 'NlbSecurityGroup');
const serviceSgId = logicalIdOf(json, 'AWS::EC2::SecurityGroup', 'ServiceSecurityGroup');
const targetGroupId = logicalIdOf(json, 'AWS::ElasticLoadBalancingV2::TargetGroup', 'TargetGroup');
const httpTargetGroupId = logicalIdOf(json, 'AWS::ElasticLoadBalancingV2::TargetGroup', 'HttpBootTargetGroup');
const nlbId = logicalIdOf(json, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'Nlb');
const logGroupId = logicalIdOf(json, 'AWS::Logs::LogGroup', 'Logs');
const taskRoleId = logicalIdOf(json, 'AWS::IAM::Role', 'TaskRole');

test('synthesizes with no unacknowledged cdk-nag (AwsSolutions) finding, error or warning', () => {
  assert.equal(s.nag.success, true, describeViolations(s.nag));
  assert.deepEqual(s.nag.violations, []);
});

test('network load balancer: internal, cross-zone on, one security group, private subnets', () => {
  template.resourceCountIs('AWS::ElasticLoadBalancingV2::LoadBalancer', 1);
  template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
    Type: 'network',
    Scheme: 'internal',
    SecurityGroups: [getAtt(nlbSgId, 'GroupId')],
    LoadBalancerAttributes: Match.arrayWith([{ Key: 'load_balancing.cross_zone.enabled', Value: 'true' }]),
    Subnets: [ref(logicalIdOf(json, 'AWS::EC2::Subnet', 'VpcprivateSubnet1')), ref(logicalIdOf(json, 'AWS::EC2::Subnet', 'VpcprivateSubnet2'))],
  });
});

test('two listeners: UDP 69 to the TFTP target group, TCP 80 (HTTP boot) to the HTTP boot target group; no TLS without a certificate', () => {
  template.resourceCountIs('AWS::ElasticLoadBalancingV2::Listener', 2);
  template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
    LoadBalancerArn: ref(nlbId),
    Port: 69,
    Protocol: 'UDP',
    DefaultActions: [{ Type: 'forward', TargetGroupArn: ref(targetGroupId) }],
  });
  template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
    LoadBalancerArn: ref(nlbId),
    Port: 80,
    Protocol: 'TCP',
    DefaultActions: [{ Type: 'forward', TargetGroupArn: ref(httpTargetGroupId) }],
  });
  // No TLS listener, so no access logs (they exist only for TLS listeners).
  const [, nlb] = resourcesOfType(json, 'AWS::ElasticLoadBalancingV2::LoadBalancer')[0]!;
  assert.ok(!JSON.stringify(nlb['LoadBalancerAttributes']).includes('access_logs'));
});

test('HTTP boot target group: TCP 8080, ip targets, client IP preserved, the same health check as TFTP, same deregistration delay', () => {
  template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
    Port: 8080,
    Protocol: 'TCP',
    TargetType: 'ip',
    HealthCheckEnabled: true,
    HealthCheckProtocol: 'HTTP',
    HealthCheckPort: '9464',
    HealthCheckPath: '/healthz',
    Matcher: { HttpCode: '200' },
    TargetGroupAttributes: Match.arrayWith([
      { Key: 'deregistration_delay.timeout_seconds', Value: '300' },
      // IP targets of a TCP group would see the load balancer's address: the per-client policy needs the client's.
      { Key: 'preserve_client_ip.enabled', Value: 'true' },
    ]),
  });
});

test('target group: UDP 6969, ip targets, HTTP health check on /healthz port 9464, deregistration delay 300 s', () => {
  template.resourceCountIs('AWS::ElasticLoadBalancingV2::TargetGroup', 2);
  template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
    Port: 6969,
    Protocol: 'UDP',
    TargetType: 'ip',
    HealthCheckEnabled: true,
    HealthCheckProtocol: 'HTTP',
    HealthCheckPort: '9464',
    HealthCheckPath: '/healthz',
    Matcher: { HttpCode: '200' },
    TargetGroupAttributes: Match.arrayWith([{ Key: 'deregistration_delay.timeout_seconds', Value: '300' }]),
  });
});

test('load balancer security group: UDP 69 and TCP 80 from the client networks only (default: the VPC CIDR); out only to the tasks', () => {
  const [, sg] = resourcesOfType(json, 'AWS::EC2::SecurityGroup').find(([id]) => id === nlbSgId)!;
  assert.deepEqual(sg['SecurityGroupIngress'], [
    { CidrIp: '10.0.0.0/16', Description: 'TFTP from a client network', FromPort: 69, IpProtocol: 'udp', ToPort: 69 },
    { CidrIp: '10.0.0.0/16', Description: 'HTTP boot from a client network', FromPort: 80, IpProtocol: 'tcp', ToPort: 80 },
  ]);
  // An inline rule that matches nothing: with no inline egress at all, CloudFormation would add allow-all.
  assert.deepEqual(sg['SecurityGroupEgress'], [
    { CidrIp: '255.255.255.255/32', Description: 'Disallow all other traffic', FromPort: 252, IpProtocol: 'icmp', ToPort: 86 },
  ]);
  assert.deepEqual(separateRules('Egress', nlbSgId), [
    { proto: 'udp', from: 6969, to: 6969, peer: getAtt(serviceSgId, 'GroupId') },
    { proto: 'tcp', from: 8080, to: 8080, peer: getAtt(serviceSgId, 'GroupId') },
    { proto: 'tcp', from: 9464, to: 9464, peer: getAtt(serviceSgId, 'GroupId') },
  ]);
});

test('task security group: UDP 6969, TCP 8080 (HTTP boot) and TCP 9464 from the load balancer only; HTTPS out only', () => {
  const [, sg] = resourcesOfType(json, 'AWS::EC2::SecurityGroup').find(([id]) => id === serviceSgId)!;
  assert.equal(sg['SecurityGroupIngress'], undefined, 'no CIDR-based ingress on the tasks');
  assert.deepEqual(sg['SecurityGroupEgress'], [
    { CidrIp: '0.0.0.0/0', Description: 'HTTPS to S3, ECR, CloudWatch Logs and the Prometheus workspace', FromPort: 443, IpProtocol: 'tcp', ToPort: 443 },
  ]);
  assert.deepEqual(separateRules('Ingress', serviceSgId), [
    { proto: 'udp', from: 6969, to: 6969, peer: getAtt(nlbSgId, 'GroupId') },
    { proto: 'tcp', from: 8080, to: 8080, peer: getAtt(nlbSgId, 'GroupId') },
    { proto: 'tcp', from: 9464, to: 9464, peer: getAtt(nlbSgId, 'GroupId') },
  ]);
  // Nothing else anywhere admits traffic from a CIDR except the load balancer's UDP 69 and TCP 80 rules.
  assert.equal(resourcesOfType(json, 'AWS::EC2::SecurityGroupIngress').filter(([, p]) => 'CidrIp' in p).length, 0);
});

test('task definition: Fargate ARM64, CPU and memory, stopTimeout 120 s, ports, read-only root', () => {
  template.resourceCountIs('AWS::ECS::TaskDefinition', 1);
  template.hasResourceProperties('AWS::ECS::TaskDefinition', {
    RequiresCompatibilities: ['FARGATE'],
    NetworkMode: 'awsvpc',
    Cpu: '512',
    Memory: '1024',
    RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
    TaskRoleArn: getAtt(taskRoleId, 'Arn'),
    ContainerDefinitions: [
      Match.objectLike({
        Name: 'gateway',
        Essential: true,
        StopTimeout: 120,
        ReadonlyRootFilesystem: true,
        PortMappings: [
          { ContainerPort: 6969, Protocol: 'udp', Name: 'tftp' },
          { ContainerPort: 9464, Protocol: 'tcp', Name: 'http' },
          { ContainerPort: 8080, Protocol: 'tcp', Name: 'http-boot' },
        ],
        LogConfiguration: {
          LogDriver: 'awslogs',
          Options: Match.objectLike({ 'awslogs-group': ref(logGroupId), 'awslogs-stream-prefix': 'gateway' }),
        },
      }),
    ],
  });
});

test('gateway configuration: single-port UDP 6969, HTTP 9464, HTTP boot 8080, bucket, cache from memory, EMF, scale-in protection', () => {
  const [, taskDef] = resourcesOfType(json, 'AWS::ECS::TaskDefinition')[0]!;
  const containers = taskDef['ContainerDefinitions'] as Array<{ Name: string; Environment: Array<{ Name: string; Value: unknown }> }>;
  assert.deepEqual(containers.map((c) => c.Name), ['gateway'], 'no ADOT sidecar unless a Prometheus workspace is configured');
  const env = Object.fromEntries(containers[0]!.Environment.map((e) => [e.Name, e.Value]));
  assert.deepEqual(env, {
    TFTP_GATEWAY_LISTEN: '0.0.0.0:6969',
    TFTP_GATEWAY_PORT_MODE: 'single',
    TFTP_GATEWAY_HTTP_LISTEN: '0.0.0.0:9464',
    TFTP_GATEWAY_HTTP_BOOT_LISTEN: '0.0.0.0:8080',
    TFTP_GATEWAY_S3_BUCKET: ref(bucketId),
    TFTP_GATEWAY_S3_PREFIX: '',
    TFTP_GATEWAY_S3_REGION: { Ref: 'AWS::Region' }, // environment-agnostic: resolved at deploy time
    TFTP_GATEWAY_ALLOW_WRITE: 'false',
    TFTP_GATEWAY_CACHE_SIZE: '512MiB', // half of the 1024 MiB task
    TFTP_GATEWAY_LOG_LEVEL: 'info',
    TFTP_GATEWAY_DRAIN_TIMEOUT: '100', // inside the 120 s stop timeout
    TFTP_GATEWAY_CLOUDWATCH_EMF: 'true',
    TFTP_GATEWAY_CLOUDWATCH_EMF_SERVICE_NAME: 'tftp-gateway',
    TFTP_GATEWAY_SCALE_IN_PROTECTION: 'true',
  });
  assert.ok(Number(env['TFTP_GATEWAY_DRAIN_TIMEOUT']) < 120);
});

test('the image is built from the repository Dockerfile for linux/arm64; synthesis only stages the allow-listed context', () => {
  const [, taskDef] = resourcesOfType(json, 'AWS::ECS::TaskDefinition')[0]!;
  const image = JSON.stringify((taskDef['ContainerDefinitions'] as Array<{ Image: unknown }>)[0]!.Image);
  assert.match(image, /container-assets/);
  const manifests = s.assembly.artifacts.filter((a): a is AssetManifestArtifact => a instanceof AssetManifestArtifact);
  const images = manifests.flatMap((m) => Object.values(m.contents.dockerImages ?? {}));
  assert.equal(images.length, 1);
  const source = images[0]!.source;
  assert.equal(source.platform, 'linux/arm64');
  assert.equal(source.dockerFile, undefined, 'the default Dockerfile at the context root');
  const staged = readdirSync(join(s.assembly.directory, source.directory!)).sort();
  const allowed = ['.dockerignore', 'Dockerfile', 'package-lock.json', 'package.json', 'src', 'tsconfig.build.json', 'tsconfig.json'];
  assert.deepEqual(staged.filter((f) => !allowed.includes(f)), [], 'only the build inputs are staged (no node_modules, .git, cdk.out, infra, test)');
  assert.ok(staged.includes('Dockerfile') && staged.includes('package.json'));
});

test('log group with retention (30 days by default)', () => {
  template.resourceCountIs('AWS::Logs::LogGroup', 1);
  template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
});

test('bucket: public access blocked, encrypted, TLS enforced, incomplete multipart uploads aborted after a day', () => {
  template.hasResource('AWS::S3::Bucket', {
    DeletionPolicy: 'Retain',
    Properties: Match.objectLike({
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      LifecycleConfiguration: {
        Rules: [{ Id: 'abort-incomplete-multipart-uploads', Status: 'Enabled', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }],
      },
    }),
  });
  template.hasResourceProperties('AWS::S3::BucketPolicy', {
    Bucket: ref(bucketId),
    PolicyDocument: {
      Statement: Match.arrayWith([
        Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } } }),
      ]),
    },
  });
});

test('VPC with an S3 gateway endpoint on the private subnets, and flow logs', () => {
  template.resourceCountIs('AWS::EC2::VPC', 1);
  template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
    VpcEndpointType: 'Gateway',
    ServiceName: Match.objectLike({ 'Fn::Join': ['', Match.arrayWith(['.s3'])] }),
    RouteTableIds: [
      ref(logicalIdOf(json, 'AWS::EC2::RouteTable', 'VpcprivateSubnet1')),
      ref(logicalIdOf(json, 'AWS::EC2::RouteTable', 'VpcprivateSubnet2')),
    ],
  });
  template.resourceCountIs('AWS::EC2::FlowLog', 1);
});

test('task role: exactly GetObject under the prefix, ListBucket on the bucket, task protection on this cluster', () => {
  const policies = resourcesOfType(json, 'AWS::IAM::Policy').filter(([, p]) => JSON.stringify(p['Roles']) === JSON.stringify([ref(taskRoleId)]));
  assert.equal(policies.length, 1);
  assert.deepEqual(policies[0]![1]['PolicyDocument'], {
    Version: '2012-10-17',
    Statement: [
      { Sid: 'ReadServedObjects', Effect: 'Allow', Action: 's3:GetObject', Resource: { 'Fn::Join': ['', [getAtt(bucketId, 'Arn'), '/*']] } },
      { Sid: 'ListBucketFor404', Effect: 'Allow', Action: 's3:ListBucket', Resource: getAtt(bucketId, 'Arn') },
      {
        Sid: 'TaskScaleInProtection',
        Effect: 'Allow',
        Action: ['ecs:GetTaskProtection', 'ecs:UpdateTaskProtection'],
        Resource: {
          'Fn::Join': [
            '',
            ['arn:', { Ref: 'AWS::Partition' }, ':ecs:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':task/', ref(clusterId), '/*'],
          ],
        },
      },
    ],
  });
  // and no managed policies on it
  const role = json.Resources[taskRoleId]!.Properties!;
  assert.equal(role['ManagedPolicyArns'], undefined);
  assert.equal(role['Policies'], undefined);
});

test('execution role: only what pulling the image and writing logs needs', () => {
  const roleId = logicalIdOf(json, 'AWS::IAM::Role', 'TaskDefinitionExecutionRole');
  const [, policy] = resourcesOfType(json, 'AWS::IAM::Policy').find(([, p]) => JSON.stringify(p['Roles']) === JSON.stringify([ref(roleId)]))!;
  const actions = (policy['PolicyDocument'] as { Statement: Array<{ Action: string | string[] }> }).Statement.flatMap((st) =>
    Array.isArray(st.Action) ? st.Action : [st.Action],
  );
  assert.deepEqual(actions.sort(), [
    'ecr:BatchCheckLayerAvailability',
    'ecr:BatchGetImage',
    'ecr:GetAuthorizationToken',
    'ecr:GetDownloadUrlForLayer',
    'logs:CreateLogStream',
    'logs:PutLogEvents',
  ]);
});

test('ECS service: Fargate in private subnets, no public IP, behind both target groups, rollback on failure', () => {
  template.hasResourceProperties('AWS::ECS::Service', {
    Cluster: ref(clusterId),
    LaunchType: 'FARGATE',
    ServiceName: 'tftp-gateway',
    DeploymentConfiguration: { DeploymentCircuitBreaker: { Enable: true, Rollback: true }, MaximumPercent: 200, MinimumHealthyPercent: 100 },
    LoadBalancers: [
      { ContainerName: 'gateway', ContainerPort: 6969, TargetGroupArn: ref(targetGroupId) },
      { ContainerName: 'gateway', ContainerPort: 8080, TargetGroupArn: ref(httpTargetGroupId) },
    ],
    NetworkConfiguration: {
      AwsvpcConfiguration: {
        AssignPublicIp: 'DISABLED',
        SecurityGroups: [getAtt(serviceSgId, 'GroupId')],
        Subnets: [ref(logicalIdOf(json, 'AWS::EC2::Subnet', 'VpcprivateSubnet1')), ref(logicalIdOf(json, 'AWS::EC2::Subnet', 'VpcprivateSubnet2'))],
      },
    },
  });
  const [, service] = resourcesOfType(json, 'AWS::ECS::Service')[0]!;
  assert.equal(service['DesiredCount'], undefined, 'auto scaling owns the task count');
  template.hasResourceProperties('AWS::ECS::Cluster', { ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }] });
});

test('auto scaling: 2..10 tasks, target tracking on CPU and on active sessions per task', () => {
  template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
    MinCapacity: 2,
    MaxCapacity: 10,
    ScalableDimension: 'ecs:service:DesiredCount',
    ServiceNamespace: 'ecs',
  });
  const policies = resourcesOfType(json, 'AWS::ApplicationAutoScaling::ScalingPolicy').map(([, p]) => p['TargetTrackingScalingPolicyConfiguration']);
  assert.equal(policies.length, 2);
  assert.deepEqual(
    policies.find((p) => JSON.stringify(p).includes('ECSServiceAverageCPUUtilization')),
    {
      PredefinedMetricSpecification: { PredefinedMetricType: 'ECSServiceAverageCPUUtilization' },
      TargetValue: 60,
      ScaleInCooldown: 300,
      ScaleOutCooldown: 60,
    },
  );
  assert.deepEqual(
    policies.find((p) => JSON.stringify(p).includes('ActiveSessions')),
    {
      CustomizedMetricSpecification: {
        Namespace: 'TftpGateway',
        MetricName: 'ActiveSessions',
        Dimensions: [{ Name: 'ServiceName', Value: 'tftp-gateway' }],
        Statistic: 'Average',
      },
      TargetValue: 200,
      ScaleInCooldown: 300,
      ScaleOutCooldown: 60,
    },
  );
});

test('outputs: load balancer DNS name, HTTP boot URL, bucket, upload location', () => {
  template.hasOutput('LoadBalancerDnsName', { Value: getAtt(nlbId, 'DNSName') });
  template.hasOutput('HttpBootUrl', { Value: { 'Fn::Join': ['', ['http://', getAtt(nlbId, 'DNSName'), '/']] } });
  template.hasOutput('BucketName', { Value: ref(bucketId) });
  template.hasOutput('ServicePrefix', Match.anyValue());
  assert.equal(json.Outputs?.['LoadBalancerPrivateIps'], undefined);
});

test('the gateway accepts the environment the stack gives its container (the two cannot drift)', () => {
  const [, taskDef] = resourcesOfType(json, 'AWS::ECS::TaskDefinition')[0]!;
  const containers = taskDef['ContainerDefinitions'] as Array<{ Name: string; Environment: Array<{ Name: string; Value: unknown }> }>;
  // Tokens (bucket name, region) resolve at deploy time: stand in plain values for them.
  const env = Object.fromEntries(
    containers[0]!.Environment.map((e) => [e.Name, typeof e.Value === 'string' ? e.Value : `resolved-${e.Name.toLowerCase()}`]),
  );
  const config = loadConfig([], env);
  assert.equal(config.portMode, 'single');
  assert.deepEqual(config.listen, [{ host: '0.0.0.0', port: 6969 }]);
  assert.deepEqual(config.httpListen, { host: '0.0.0.0', port: 9464 });
  assert.deepEqual(config.httpBootListen, [{ host: '0.0.0.0', port: 8080 }]);
  assert.equal(config.cacheSize, 512 * 1024 * 1024);
  assert.equal(config.drainTimeoutS, 100);
  assert.equal(config.allowWrite, false);
  // With writes on, the stack adds write prefixes; the gateway must accept that combination too.
  const writes = loadConfig([], { ...env, TFTP_GATEWAY_ALLOW_WRITE: 'true', TFTP_GATEWAY_WRITE_PREFIXES: 'uploads/,crash/' });
  assert.equal(writes.allowWrite, true);
});

// ------------------------------------------------------------ disk cache tier and warm-up (issue 21)

interface ContainerDef {
  Name: string;
  Environment: Array<{ Name: string; Value: unknown }>;
  MountPoints?: Array<Record<string, unknown>>;
  HealthCheck?: { Command: string[] };
}
const taskDefinitionOf = (x: Synthesized): Record<string, unknown> => resourcesOfType(x.json, 'AWS::ECS::TaskDefinition')[0]![1];
const gatewayOf = (x: Synthesized): ContainerDef => (taskDefinitionOf(x)['ContainerDefinitions'] as ContainerDef[]).find((c) => c.Name === 'gateway')!;
const envOf = (x: Synthesized): Record<string, unknown> => Object.fromEntries(gatewayOf(x).Environment.map((e) => [e.Name, e.Value]));
const targetGroupPaths = (x: Synthesized): unknown[] => resourcesOfType(x.json, 'AWS::ElasticLoadBalancingV2::TargetGroup').map(([, p]) => p['HealthCheckPath']);
const gracePeriod = (x: Synthesized): unknown => resourcesOfType(x.json, 'AWS::ECS::Service')[0]![1]['HealthCheckGracePeriodSeconds'];
const CACHE_ENV = ['TFTP_GATEWAY_CACHE_DIR', 'TFTP_GATEWAY_CACHE_DIR_SIZE'];
const WARM_ENV = ['TFTP_GATEWAY_WARM', 'TFTP_GATEWAY_WARM_FILE', 'TFTP_GATEWAY_WARM_TIMEOUT', 'TFTP_GATEWAY_WARM_INTERVAL'];

test('default: no disk tier and no warm-up — /tmp the only volume, Fargate’s default storage, /healthz checks, 30 s grace period', () => {
  const taskDef = taskDefinitionOf(s);
  assert.deepEqual(taskDef['Volumes'], [{ Name: 'tmp' }]);
  assert.equal(taskDef['EphemeralStorage'], undefined);
  assert.deepEqual(gatewayOf(s).MountPoints, [{ ContainerPath: '/tmp', ReadOnly: false, SourceVolume: 'tmp' }]);
  assert.deepEqual(Object.keys(envOf(s)).filter((k) => CACHE_ENV.includes(k) || WARM_ENV.includes(k)), []);
  assert.deepEqual(targetGroupPaths(s), ['/healthz', '/healthz']);
  assert.equal(gracePeriod(s), 30);
});

describe('edge settings: a 40 GiB disk tier on 50 GiB of ephemeral storage, warm-up of three names, 15 min timeout, hourly re-warm', () => {
  const edge = synth({
    imageUri: TEST_IMAGE,
    cacheDirSizeMiB: 40 * 1024,
    ephemeralStorageGiB: 50,
    warm: ['pxelinux.0', ' images/ubuntu-24.04/ ', 'ipxe.efi', ''],
    warmTimeout: Duration.minutes(15),
    warmInterval: Duration.hours(1),
  });

  test('no unacknowledged cdk-nag finding', () => assert.equal(edge.nag.success, true, describeViolations(edge.nag)));

  test('the task gets 50 GiB of ephemeral storage and a "cache" volume on it, mounted read-write at /var/cache/tftp-gateway', () => {
    const taskDef = taskDefinitionOf(edge);
    assert.deepEqual(taskDef['EphemeralStorage'], { SizeInGiB: 50 });
    assert.deepEqual(taskDef['Volumes'], [{ Name: 'tmp' }, { Name: 'cache' }]);
    assert.equal(CACHE_DIR_PATH, '/var/cache/tftp-gateway');
    assert.deepEqual(gatewayOf(edge).MountPoints, [
      { ContainerPath: '/tmp', ReadOnly: false, SourceVolume: 'tmp' },
      { ContainerPath: CACHE_DIR_PATH, ReadOnly: false, SourceVolume: 'cache' },
    ]);
    edge.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [Match.objectLike({ Name: 'gateway', ReadonlyRootFilesystem: true })],
    });
  });

  test('the gateway is told the cache directory and size, the warm list, timeout and interval', () => {
    const env = envOf(edge);
    assert.equal(env['TFTP_GATEWAY_CACHE_DIR'], '/var/cache/tftp-gateway');
    assert.equal(env['TFTP_GATEWAY_CACHE_DIR_SIZE'], '40960MiB');
    assert.equal(env['TFTP_GATEWAY_WARM'], 'pxelinux.0,images/ubuntu-24.04/,ipxe.efi');
    assert.equal(env['TFTP_GATEWAY_WARM_TIMEOUT'], '900');
    assert.equal(env['TFTP_GATEWAY_WARM_INTERVAL'], '3600');
    assert.equal(env['TFTP_GATEWAY_WARM_FILE'], undefined);
    // The memory cache is sized as before: the disk tier is a second tier, not a replacement.
    assert.equal(env['TFTP_GATEWAY_CACHE_SIZE'], '512MiB');
  });

  test('readiness: both target groups check /readyz (503 while warming), and the grace period covers the warm timeout', () => {
    assert.deepEqual(targetGroupPaths(edge), ['/readyz', '/readyz']);
    edge.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      Protocol: 'UDP',
      HealthCheckProtocol: 'HTTP',
      HealthCheckPort: '9464',
      HealthCheckPath: '/readyz',
      Matcher: { HttpCode: '200' },
    });
    // 900 s warm timeout + 60 s for start-up and the two healthy checks that follow it.
    assert.equal(gracePeriod(edge), 960);
    assert.ok(Number(gracePeriod(edge)) > 900);
  });

  test('liveness stays /healthz: the container health check does not fail a warming task', () => {
    const command = gatewayOf(edge).HealthCheck!.Command.join(' ');
    assert.match(command, /\/healthz/);
    assert.doesNotMatch(command, /\/readyz/);
  });

  test('the gateway accepts the disk tier variables the stack gives it', () => {
    const env = Object.fromEntries(Object.entries(envOf(edge)).map(([k, v]) => [k, typeof v === 'string' ? v : `resolved-${k.toLowerCase()}`]));
    const config = loadConfig([], env);
    assert.equal(config.cacheDir, '/var/cache/tftp-gateway');
    assert.equal(config.cacheDirSize, 40 * 1024 * 1024 * 1024);
  });
});

describe('the disk tier and warm-up each on their own', () => {
  test('a disk tier alone: the volume on Fargate’s default 20 GiB (up to 16 GiB of cache), liveness checks and grace as before', () => {
    const x = synth({ imageUri: TEST_IMAGE, cacheDirSizeMiB: 16 * 1024 });
    assert.equal(taskDefinitionOf(x)['EphemeralStorage'], undefined);
    assert.deepEqual(taskDefinitionOf(x)['Volumes'], [{ Name: 'tmp' }, { Name: 'cache' }]);
    assert.equal(envOf(x)['TFTP_GATEWAY_CACHE_DIR_SIZE'], '16384MiB');
    assert.deepEqual(Object.keys(envOf(x)).filter((k) => WARM_ENV.includes(k)), []);
    assert.deepEqual(targetGroupPaths(x), ['/healthz', '/healthz']);
    assert.equal(gracePeriod(x), 30);
  });

  test('warm-up alone (memory cache only, no HTTP boot): /readyz, the gateway’s default timeout passed explicitly, grace 660 s, no volume', () => {
    const x = synth({ imageUri: TEST_IMAGE, httpBoot: false, warm: ['pxelinux.0'] });
    const env = envOf(x);
    assert.equal(env['TFTP_GATEWAY_WARM'], 'pxelinux.0');
    assert.equal(env['TFTP_GATEWAY_WARM_TIMEOUT'], '600');
    assert.equal(env['TFTP_GATEWAY_WARM_INTERVAL'], undefined, 'the gateway’s default (off)');
    assert.deepEqual(Object.keys(env).filter((k) => CACHE_ENV.includes(k)), []);
    assert.deepEqual(taskDefinitionOf(x)['Volumes'], [{ Name: 'tmp' }]);
    assert.deepEqual(targetGroupPaths(x), ['/readyz']);
    assert.equal(gracePeriod(x), 660);
  });

  test('a warm file alone is warm-up too; a short timeout keeps the 30 s floor plus the margin', () => {
    const x = synth({ imageUri: TEST_IMAGE, warmFile: '/etc/tftp-gateway/warm.txt', warmTimeout: Duration.seconds(10), warmInterval: Duration.seconds(0) });
    const env = envOf(x);
    assert.equal(env['TFTP_GATEWAY_WARM'], undefined);
    assert.equal(env['TFTP_GATEWAY_WARM_FILE'], '/etc/tftp-gateway/warm.txt');
    assert.equal(env['TFTP_GATEWAY_WARM_TIMEOUT'], '10');
    assert.equal(env['TFTP_GATEWAY_WARM_INTERVAL'], '0');
    assert.deepEqual(targetGroupPaths(x), ['/readyz', '/readyz']);
    assert.equal(gracePeriod(x), 70);
  });
});

describe('disk tier and warm-up settings that cannot work are refused', () => {
  const cases: Array<[string, TftpGatewayStackProps, RegExp]> = [
    ['a disk tier of 0 MiB', { cacheDirSizeMiB: 0 }, /cacheDirSizeMiB must be a whole number of MiB/],
    ['a disk tier of a fractional size', { cacheDirSizeMiB: 1.5 }, /cacheDirSizeMiB must be a whole number of MiB/],
    ['a disk tier over what Fargate’s default storage leaves (16 GiB)', { cacheDirSizeMiB: 16 * 1024 + 1 }, /does not fit the task's 20 GiB .*set ephemeralStorageGiB to 21 or more/],
    ['a disk tier over what the given storage leaves', { cacheDirSizeMiB: 40 * 1024, ephemeralStorageGiB: 30 }, /does not fit the task's 30 GiB .*set ephemeralStorageGiB to 44 or more/],
    ['a disk tier over what Fargate can give at all', { cacheDirSizeMiB: 197 * 1024, ephemeralStorageGiB: 200 }, /Fargate allows at most 200 GiB/],
    ['ephemeral storage under Fargate’s minimum', { ephemeralStorageGiB: 20 }, /ephemeralStorageGiB must be an integer 21\.\.200/],
    ['ephemeral storage over Fargate’s maximum', { ephemeralStorageGiB: 201 }, /ephemeralStorageGiB must be an integer 21\.\.200/],
    ['a warm timeout of 0', { warm: ['a'], warmTimeout: Duration.seconds(0) }, /warmTimeout must be 1\.\.3600/],
    ['a warm timeout over an hour', { warm: ['a'], warmTimeout: Duration.minutes(61) }, /warmTimeout must be 1\.\.3600/],
    ['a warm timeout in fractions of a second', { warm: ['a'], warmTimeout: Duration.millis(1500) }, /warmTimeout must be a whole number of seconds/],
    ['a warm interval in fractions of a second', { warm: ['a'], warmInterval: Duration.millis(500) }, /warmInterval must be a whole number of seconds/],
    ['a warm timeout with nothing to warm', { warmTimeout: Duration.minutes(5) }, /need something to warm/],
    ['a warm interval with an empty warm list', { warm: [' '], warmInterval: Duration.hours(1) }, /need something to warm/],
    ['a warm name with a comma', { warm: ['a,b'] }, /comma/],
    ['a relative warm file', { warmFile: 'warm.txt' }, /warmFile must be an absolute path/],
    ['the cache directory through extraEnvironment', { extraEnvironment: { TFTP_GATEWAY_CACHE_DIR: '/data' } }, /set TFTP_GATEWAY_CACHE_DIR through the cacheDirSizeMiB prop/],
    ['the warm timeout through extraEnvironment', { extraEnvironment: { TFTP_GATEWAY_WARM_TIMEOUT: '60' } }, /through the warmTimeout prop/],
  ];
  for (const [name, props, message] of cases) {
    test(name, () => {
      const app = new App({ context: cdkJsonContext() });
      assert.throws(() => new TftpGatewayStack(app, 'Bad', { imageUri: TEST_IMAGE, ...props }), message);
    });
  }
});
