// The stack's options: imported bucket (with KMS) and writes, Prometheus sidecar, fixed load
// balancer addresses, imported VPC, pre-built images, client networks, HTTP boot (off, other ports,
// HTTPS), and the checks that refuse configurations that cannot work.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { App, Duration, Validations } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { TftpGatewayStack, adotConfig, type TftpGatewayStackProps } from '../../infra/lib/tftp-gateway-stack.js';
import { TEST_IMAGE, cdkJsonContext, describeViolations, logicalIdOf, resourcesOfType, synth, type Synthesized } from './helpers.js';

const ENV = { account: '123456789012', region: 'eu-west-1' };
const KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const ref = (id: string) => ({ Ref: id });

function taskRoleStatements(s: Synthesized): unknown[] {
  const roleId = logicalIdOf(s.json, 'AWS::IAM::Role', 'TaskRole');
  const policies = resourcesOfType(s.json, 'AWS::IAM::Policy').filter(([, p]) => JSON.stringify(p['Roles']) === JSON.stringify([ref(roleId)]));
  assert.equal(policies.length, 1);
  return (policies[0]![1]['PolicyDocument'] as { Statement: unknown[] }).Statement;
}

function containers(s: Synthesized): Array<{ Name: string; Image: unknown; Environment?: Array<{ Name: string; Value: unknown }> }> {
  const [, taskDef] = resourcesOfType(s.json, 'AWS::ECS::TaskDefinition')[0]!;
  return taskDef['ContainerDefinitions'] as ReturnType<typeof containers>;
}

function envOf(s: Synthesized, name = 'gateway'): Record<string, unknown> {
  const c = containers(s).find((x) => x.Name === name)!;
  return Object.fromEntries((c.Environment ?? []).map((e) => [e.Name, e.Value]));
}

const CERT_ARN = 'arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555';
const listeners = (s: Synthesized) =>
  resourcesOfType(s.json, 'AWS::ElasticLoadBalancingV2::Listener')
    .map(([, p]) => ({ port: p['Port'], protocol: p['Protocol'], targetGroup: (p['DefaultActions'] as Array<{ TargetGroupArn: unknown }>)[0]!.TargetGroupArn }))
    .sort((a, b) => Number(a.port) - Number(b.port));
const nlbIngress = (s: Synthesized) =>
  (s.json.Resources[logicalIdOf(s.json, 'AWS::EC2::SecurityGroup', 'NlbSecurityGroup')]!.Properties!['SecurityGroupIngress'] as Array<Record<string, unknown>>).map(
    (r) => `${String(r['IpProtocol'])}/${String(r['FromPort'])} from ${String(r['CidrIp'])}`,
  );

const TASK_PROTECTION = {
  Sid: 'TaskScaleInProtection',
  Effect: 'Allow',
  Action: ['ecs:GetTaskProtection', 'ecs:UpdateTaskProtection'],
  Resource: Match.anyValue(),
};

describe('imported bucket with a KMS key, writes under two prefixes', () => {
  const s = synth({
    env: ENV,
    imageUri: TEST_IMAGE,
    bucketName: 'netboot-images',
    bucketKmsKeyArn: KEY_ARN,
    s3Prefix: '/tftp',
    allowWrite: true,
    writePrefixes: ['uploads/', 'crash-dumps/'],
  });

  test('no unacknowledged cdk-nag finding', () => assert.equal(s.nag.success, true, describeViolations(s.nag)));

  test('no bucket is created', () => {
    assert.deepEqual(
      resourcesOfType(s.json, 'AWS::S3::Bucket').map(([id]) => id.replace(/[0-9A-F]{8}$/, '')),
      ['LogBucket'], // the flow-log bucket of the new VPC
    );
  });

  test('task role: exact S3 actions and resources, KMS only through S3', () => {
    const statements = taskRoleStatements(s);
    // (CDK's policy minimisation sorts actions and resources)
    const expected = [
      {
        Sid: 'ReadServedObjects',
        Effect: 'Allow',
        Action: 's3:GetObject',
        Resource: 'arn:aws:s3:::netboot-images/tftp/*',
      },
      { Sid: 'ListBucketFor404', Effect: 'Allow', Action: 's3:ListBucket', Resource: 'arn:aws:s3:::netboot-images' },
      {
        Sid: 'WriteUploadPrefixes',
        Effect: 'Allow',
        Action: ['s3:AbortMultipartUpload', 's3:PutObject'],
        Resource: ['arn:aws:s3:::netboot-images/tftp/crash-dumps/*', 'arn:aws:s3:::netboot-images/tftp/uploads/*'],
      },
      {
        Sid: 'BucketKeyViaS3',
        Effect: 'Allow',
        Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
        Resource: KEY_ARN,
        Condition: { StringEquals: { 'kms:ViaService': 's3.eu-west-1.amazonaws.com' } },
      },
    ];
    assert.deepEqual(statements.slice(0, 4), expected);
    assert.equal(statements.length, 5);
    assert.equal((statements[4] as { Sid: string }).Sid, 'TaskScaleInProtection');
    assert.deepEqual(statements[4], {
      ...TASK_PROTECTION,
      Resource: { 'Fn::Join': ['', ['arn:aws:ecs:eu-west-1:123456789012:task/', ref(logicalIdOf(s.json, 'AWS::ECS::Cluster', 'Cluster')), '/*']] },
    });
  });

  test('gateway environment: prefix normalised, writes on, write prefixes passed', () => {
    const env = envOf(s);
    assert.equal(env['TFTP_GATEWAY_S3_BUCKET'], 'netboot-images');
    assert.equal(env['TFTP_GATEWAY_S3_PREFIX'], 'tftp/');
    assert.equal(env['TFTP_GATEWAY_S3_REGION'], 'eu-west-1');
    assert.equal(env['TFTP_GATEWAY_ALLOW_WRITE'], 'true');
    assert.equal(env['TFTP_GATEWAY_WRITE_PREFIXES'], 'uploads/,crash-dumps/');
    assert.equal(env['TFTP_GATEWAY_CACHE_SIZE'], '256MiB', 'a quarter of the task memory when uploads also buffer parts');
  });

  test('a pre-built image from another registry is used as is, without an asset', () => {
    assert.equal(containers(s)[0]!.Image, TEST_IMAGE);
  });
});

describe('read-only with a created KMS-encrypted bucket', () => {
  const s = synth({ env: ENV, imageUri: TEST_IMAGE, bucketEncryption: 'kms' });

  test('no unacknowledged cdk-nag finding', () => assert.equal(s.nag.success, true, describeViolations(s.nag)));

  test('bucket uses the new key (rotation on) with S3 Bucket Keys', () => {
    const keyId = logicalIdOf(s.json, 'AWS::KMS::Key', 'BucketKey');
    s.template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    s.template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          {
            BucketKeyEnabled: true,
            ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: { 'Fn::GetAtt': [keyId, 'Arn'] } },
          },
        ],
      },
    });
  });

  test('task role: decrypt only (no writes, so no GenerateDataKey and no PutObject)', () => {
    const statements = taskRoleStatements(s) as Array<{ Sid: string; Action: unknown }>;
    assert.deepEqual(
      statements.map((st) => [st.Sid, st.Action]),
      [
        ['ReadServedObjects', 's3:GetObject'],
        ['ListBucketFor404', 's3:ListBucket'],
        ['BucketKeyViaS3', 'kms:Decrypt'],
        ['TaskScaleInProtection', ['ecs:GetTaskProtection', 'ecs:UpdateTaskProtection']],
      ],
    );
  });
});

describe('Prometheus: new Amazon Managed Service for Prometheus workspace and ADOT sidecar', () => {
  const s = synth({ env: ENV, imageUri: TEST_IMAGE, createAmpWorkspace: true });

  test('no unacknowledged cdk-nag finding', () => assert.equal(s.nag.success, true, describeViolations(s.nag)));

  test('workspace, sidecar (non-essential) and remote-write permission on that workspace only', () => {
    const wsId = logicalIdOf(s.json, 'AWS::APS::Workspace', 'PrometheusWorkspace');
    const sidecar = containers(s).find((c) => c.Name === 'adot-collector');
    assert.ok(sidecar);
    s.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: Match.arrayWith([
        Match.objectLike({ Name: 'adot-collector', Essential: false, Memory: 256, Image: Match.stringLikeRegexp('aws-otel-collector:v') }),
      ]),
    });
    const statements = taskRoleStatements(s);
    assert.deepEqual(statements.at(-1), {
      Sid: 'PrometheusRemoteWrite',
      Effect: 'Allow',
      Action: 'aps:RemoteWrite',
      Resource: { 'Fn::GetAtt': [wsId, 'Arn'] },
    });
  });

  test('the collector scrapes /metrics on 9464 and writes to the workspace endpoint, SigV4-signed', () => {
    const config = JSON.stringify(envOf(s, 'adot-collector')['AOT_CONFIG_CONTENT']);
    assert.match(config, /127\.0\.0\.1:9464/);
    assert.match(config, /\\"metrics_path\\":\\"\/metrics\\"/);
    assert.match(config, /PrometheusEndpoint/);
    assert.match(config, /api\/v1\/remote_write/);
    assert.match(config, /sigv4auth/);
  });

  test('cache size leaves the sidecar its memory: (1024 - 256) / 2', () => {
    assert.equal(envOf(s)['TFTP_GATEWAY_CACHE_SIZE'], '384MiB');
  });
});

describe('Prometheus: existing workspace', () => {
  const arn = 'arn:aws:aps:eu-west-1:123456789012:workspace/ws-11111111-2222-3333-4444-555555555555';
  const s = synth({ env: ENV, imageUri: TEST_IMAGE, ampWorkspaceArn: arn, cpu: 1024, memoryMiB: 4096 });

  test('remote-write URL derived from the ARN; permission on that ARN', () => {
    const config = JSON.parse(envOf(s, 'adot-collector')['AOT_CONFIG_CONTENT'] as string) as {
      exporters: { prometheusremotewrite: { endpoint: string } };
      extensions: { sigv4auth: { region: string; service: string } };
    };
    assert.equal(
      config.exporters.prometheusremotewrite.endpoint,
      'https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-11111111-2222-3333-4444-555555555555/api/v1/remote_write',
    );
    assert.deepEqual(config.extensions.sigv4auth, { region: 'eu-west-1', service: 'aps' });
    assert.deepEqual(taskRoleStatements(s).at(-1), { Sid: 'PrometheusRemoteWrite', Effect: 'Allow', Action: 'aps:RemoteWrite', Resource: arn });
    s.template.resourceCountIs('AWS::APS::Workspace', 0);
  });

  test('CPU and memory as props; cache derived from them', () => {
    s.template.hasResourceProperties('AWS::ECS::TaskDefinition', { Cpu: '1024', Memory: '4096' });
    assert.equal(envOf(s)['TFTP_GATEWAY_CACHE_SIZE'], '1920MiB');
  });
});

describe('fixed load balancer addresses, client networks, scaling and drain settings', () => {
  const s = synth({
    env: ENV,
    imageUri: TEST_IMAGE,
    nlbPrivateIps: ['10.0.16.10', '10.0.32.10'],
    clientCidrs: ['192.168.10.0/24', '172.16.0.0/12'],
    minTasks: 3,
    maxTasks: 30,
    sessionsPerTaskTarget: 50,
    cpuTargetPercent: 50,
    longestTransfer: Duration.minutes(15),
  });

  test('no unacknowledged cdk-nag finding', () => assert.equal(s.nag.success, true, describeViolations(s.nag)));

  test('one fixed private address per private subnet', () => {
    s.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      SubnetMappings: [
        { SubnetId: ref(logicalIdOf(s.json, 'AWS::EC2::Subnet', 'VpcprivateSubnet1')), PrivateIPv4Address: '10.0.16.10' },
        { SubnetId: ref(logicalIdOf(s.json, 'AWS::EC2::Subnet', 'VpcprivateSubnet2')), PrivateIPv4Address: '10.0.32.10' },
      ],
    });
    s.template.hasOutput('LoadBalancerPrivateIps', { Value: '10.0.16.10,10.0.32.10' });
  });

  test('UDP 69 and TCP 80 (HTTP boot) admitted from exactly the configured networks', () => {
    const nlbSgId = logicalIdOf(s.json, 'AWS::EC2::SecurityGroup', 'NlbSecurityGroup');
    const sg = s.json.Resources[nlbSgId]!.Properties!;
    assert.deepEqual(sg['SecurityGroupIngress'], [
      { CidrIp: '192.168.10.0/24', Description: 'TFTP from a client network', FromPort: 69, IpProtocol: 'udp', ToPort: 69 },
      { CidrIp: '192.168.10.0/24', Description: 'HTTP boot from a client network', FromPort: 80, IpProtocol: 'tcp', ToPort: 80 },
      { CidrIp: '172.16.0.0/12', Description: 'TFTP from a client network', FromPort: 69, IpProtocol: 'udp', ToPort: 69 },
      { CidrIp: '172.16.0.0/12', Description: 'HTTP boot from a client network', FromPort: 80, IpProtocol: 'tcp', ToPort: 80 },
    ]);
  });

  test('deregistration delay follows the longest transfer; scaling targets follow the props', () => {
    s.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      TargetGroupAttributes: Match.arrayWith([{ Key: 'deregistration_delay.timeout_seconds', Value: '900' }]),
    });
    s.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 3, MaxCapacity: 30 });
    s.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({ TargetValue: 50, CustomizedMetricSpecification: Match.anyValue() }),
    });
    s.template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({ TargetValue: 50, PredefinedMetricSpecification: Match.anyValue() }),
    });
  });
});

/** A looked-up VPC (what `cdk synth` would put in cdk.context.json): two public and two private subnets. */
const vpcId = 'vpc-0123456789abcdef0';
const lookupKey = `vpc-provider:account=${ENV.account}:filter.vpc-id=${vpcId}:region=${ENV.region}:returnAsymmetricSubnets=true`;
const subnet = (n: number, az: string, cidr: string) => ({
  subnetId: `subnet-0000000000000000${n}`,
  cidr,
  availabilityZone: az,
  routeTableId: `rtb-0000000000000000${n}`,
});
const lookup = {
  vpcId,
  vpcCidrBlock: '10.20.0.0/16',
  ownerAccountId: ENV.account,
  availabilityZones: [],
  subnetGroups: [
    { name: 'Public', type: 'Public', subnets: [subnet(1, 'eu-west-1a', '10.20.0.0/24'), subnet(2, 'eu-west-1b', '10.20.1.0/24')] },
    { name: 'Private', type: 'Private', subnets: [subnet(3, 'eu-west-1a', '10.20.16.0/20'), subnet(4, 'eu-west-1b', '10.20.32.0/20')] },
  ],
};

describe('imported VPC (looked up) and an image from a private ECR repository', () => {
  const image = '123456789012.dkr.ecr.eu-west-1.amazonaws.com/tftp-gateway:1.4.2';
  const s = synth({ env: ENV, vpcId, imageUri: image, bucketName: 'netboot-images', nlbPrivateIps: ['10.20.16.5', '10.20.32.5'] }, { [lookupKey]: lookup });

  test('no unacknowledged cdk-nag finding', () => assert.equal(s.nag.success, true, describeViolations(s.nag)));

  test('no VPC, no flow-log bucket created; tasks, NLB and the S3 endpoint use the looked-up private subnets', () => {
    s.template.resourceCountIs('AWS::EC2::VPC', 0);
    s.template.resourceCountIs('AWS::S3::Bucket', 0);
    s.template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
      VpcId: vpcId,
      VpcEndpointType: 'Gateway',
      RouteTableIds: ['rtb-00000000000000003', 'rtb-00000000000000004'],
    });
    s.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      SubnetMappings: [
        { SubnetId: 'subnet-00000000000000003', PrivateIPv4Address: '10.20.16.5' },
        { SubnetId: 'subnet-00000000000000004', PrivateIPv4Address: '10.20.32.5' },
      ],
    });
    s.template.hasResourceProperties('AWS::ECS::Service', {
      NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ Subnets: ['subnet-00000000000000003', 'subnet-00000000000000004'] }) },
    });
  });

  test('client networks default to the VPC CIDR', () => {
    assert.deepEqual(nlbIngress(s), ['udp/69 from 10.20.0.0/16', 'tcp/80 from 10.20.0.0/16']);
  });

  test('the ECR image is pulled by the execution role from that repository only', () => {
    const image0 = JSON.stringify(containers(s)[0]!.Image);
    assert.match(image0, /123456789012\.dkr\.ecr\.eu-west-1\./);
    assert.match(image0, /tftp-gateway:1\.4\.2/);
    s.template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: ['ecr:BatchCheckLayerAvailability', 'ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer'],
            Resource: 'arn:aws:ecr:eu-west-1:123456789012:repository/tftp-gateway',
          }),
        ]),
      },
    });
  });
});

describe('HTTP boot off (httpBoot: false): the TFTP-only deployment', () => {
  const s = synth({ env: ENV, imageUri: TEST_IMAGE, httpBoot: false, clientCidrs: ['192.168.10.0/24'] });

  test('no unacknowledged cdk-nag finding', () => assert.equal(s.nag.success, true, describeViolations(s.nag)));

  test('one listener (UDP 69), one target group, UDP 69 admitted only', () => {
    assert.deepEqual(listeners(s), [{ port: 69, protocol: 'UDP', targetGroup: ref(logicalIdOf(s.json, 'AWS::ElasticLoadBalancingV2::TargetGroup', 'TargetGroup')) }]);
    s.template.resourceCountIs('AWS::ElasticLoadBalancingV2::TargetGroup', 1);
    assert.deepEqual(nlbIngress(s), ['udp/69 from 192.168.10.0/24']);
    const tcpIn = resourcesOfType(s.json, 'AWS::EC2::SecurityGroupIngress').map(([, p]) => p['FromPort']);
    assert.deepEqual(tcpIn.sort(), [6969, 9464]);
  });

  test('the container has no HTTP boot port and the gateway no HTTP boot listener; no HTTP boot URL output', () => {
    assert.equal(envOf(s)['TFTP_GATEWAY_HTTP_BOOT_LISTEN'], undefined);
    s.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Name: 'gateway',
          PortMappings: [
            { ContainerPort: 6969, Protocol: 'udp', Name: 'tftp' },
            { ContainerPort: 9464, Protocol: 'tcp', Name: 'http' },
          ],
        }),
      ],
    });
    s.template.hasResourceProperties('AWS::ECS::Service', { LoadBalancers: [Match.objectLike({ ContainerPort: 6969 })] });
    assert.equal(s.json.Outputs?.['HttpBootUrl'], undefined);
  });
});

describe('HTTP boot on other ports, with HTTPS (a certificate): the load balancer terminates TLS', () => {
  const s = synth({
    env: ENV,
    imageUri: TEST_IMAGE,
    clientCidrs: ['192.168.10.0/24', '172.16.0.0/12'],
    nlbPrivateIps: ['10.0.16.10', '10.0.32.10'],
    httpBootPort: 8000,
    httpBootContainerPort: 8888,
    httpBootCertificateArn: CERT_ARN,
  });
  const httpTg = ref(logicalIdOf(s.json, 'AWS::ElasticLoadBalancingV2::TargetGroup', 'HttpBootTargetGroup'));
  const nlbId = logicalIdOf(s.json, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'Nlb');
  const logBucketId = logicalIdOf(s.json, 'AWS::S3::Bucket', 'LogBucket');

  test('no unacknowledged cdk-nag finding (access logs are on, not acknowledged away)', () => {
    assert.equal(s.nag.success, true, describeViolations(s.nag));
  });

  test('TCP 8000 and TLS 443 forward to the one HTTP boot target group, TCP 8888 in the container', () => {
    assert.deepEqual(listeners(s), [
      { port: 69, protocol: 'UDP', targetGroup: ref(logicalIdOf(s.json, 'AWS::ElasticLoadBalancingV2::TargetGroup', 'TargetGroup')) },
      { port: 443, protocol: 'TLS', targetGroup: httpTg },
      { port: 8000, protocol: 'TCP', targetGroup: httpTg },
    ]);
    s.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', { Port: 8888, Protocol: 'TCP', TargetType: 'ip' });
    assert.equal(envOf(s)['TFTP_GATEWAY_HTTP_BOOT_LISTEN'], '0.0.0.0:8888');
    s.template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [Match.objectLike({ PortMappings: Match.arrayWith([{ ContainerPort: 8888, Protocol: 'tcp', Name: 'http-boot' }]) })],
    });
    s.template.hasResourceProperties('AWS::ECS::Service', {
      LoadBalancers: Match.arrayWith([{ ContainerName: 'gateway', ContainerPort: 8888, TargetGroupArn: httpTg }]),
    });
  });

  test('the TLS listener: the certificate and a TLS 1.3 / 1.2 policy (post-quantum hybrid key exchange)', () => {
    s.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 443,
      Protocol: 'TLS',
      Certificates: [{ CertificateArn: CERT_ARN }],
      SslPolicy: 'ELBSecurityPolicy-TLS13-1-2-PQ-2025-09',
    });
  });

  test('security groups: UDP 69, TCP 8000 and TCP 443 from each client network; the tasks take TCP 8888 from the load balancer only', () => {
    assert.deepEqual(nlbIngress(s), [
      'udp/69 from 192.168.10.0/24',
      'tcp/8000 from 192.168.10.0/24',
      'tcp/443 from 192.168.10.0/24',
      'udp/69 from 172.16.0.0/12',
      'tcp/8000 from 172.16.0.0/12',
      'tcp/443 from 172.16.0.0/12',
    ]);
    const sgId = (prefix: string) => ({ 'Fn::GetAtt': [logicalIdOf(s.json, 'AWS::EC2::SecurityGroup', prefix), 'GroupId'] });
    s.template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: sgId('ServiceSecurityGroup'),
      SourceSecurityGroupId: sgId('NlbSecurityGroup'),
      IpProtocol: 'tcp',
      FromPort: 8888,
      ToPort: 8888,
    });
    s.template.hasResourceProperties('AWS::EC2::SecurityGroupEgress', {
      GroupId: sgId('NlbSecurityGroup'),
      DestinationSecurityGroupId: sgId('ServiceSecurityGroup'),
      IpProtocol: 'tcp',
      FromPort: 8888,
      ToPort: 8888,
    });
  });

  test('TLS access logs go to the log bucket, delivered by the log delivery service for this account only', () => {
    s.template.hasResource('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      Properties: Match.objectLike({
        LoadBalancerAttributes: Match.arrayWith([
          { Key: 'access_logs.s3.enabled', Value: 'true' },
          { Key: 'access_logs.s3.bucket', Value: ref(logBucketId) },
          { Key: 'access_logs.s3.prefix', Value: 'nlb-access-logs' },
        ]),
      }),
      DependsOn: Match.arrayWith([logicalIdOf(s.json, 'AWS::S3::BucketPolicy', 'LogBucketPolicy')]),
    });
    s.template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: ref(logBucketId),
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Sid: 'NlbAccessLogDelivery',
            Effect: 'Allow',
            Principal: { Service: 'delivery.logs.amazonaws.com' },
            Action: 's3:PutObject',
            Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [logBucketId, 'Arn'] }, '/nlb-access-logs/AWSLogs/123456789012/*']] },
            Condition: {
              StringEquals: { 's3:x-amz-acl': 'bucket-owner-full-control', 'aws:SourceAccount': '123456789012' },
              ArnLike: { 'aws:SourceArn': 'arn:aws:logs:eu-west-1:123456789012:*' },
            },
          },
          {
            Sid: 'NlbAccessLogAclCheck',
            Effect: 'Allow',
            Principal: { Service: 'delivery.logs.amazonaws.com' },
            Action: 's3:GetBucketAcl',
            Resource: { 'Fn::GetAtt': [logBucketId, 'Arn'] },
            Condition: { StringEquals: { 'aws:SourceAccount': '123456789012' }, ArnLike: { 'aws:SourceArn': 'arn:aws:logs:eu-west-1:123456789012:*' } },
          },
        ]),
      },
    });
    assert.ok(s.json.Resources[nlbId]);
  });

  test('the HTTP boot URL output uses the first fixed address and the listener port', () => {
    s.template.hasOutput('HttpBootUrl', { Value: 'http://10.0.16.10:8000/' });
  });
});

describe('HTTPS with an imported VPC and bucket: a log bucket is created for the TLS access logs alone', () => {
  const s = synth(
    {
      env: ENV,
      vpcId,
      imageUri: TEST_IMAGE,
      bucketName: 'netboot-images',
      httpBootCertificateArn: CERT_ARN,
      httpBootTlsPolicy: 'ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06',
    },
    { [lookupKey]: lookup },
  );

  test('no unacknowledged cdk-nag finding', () => assert.equal(s.nag.success, true, describeViolations(s.nag)));

  test('one bucket, the log bucket, and the load balancer logs to it', () => {
    const buckets = resourcesOfType(s.json, 'AWS::S3::Bucket').map(([id]) => id);
    assert.equal(buckets.length, 1);
    assert.match(buckets[0]!, /^LogBucket/);
    s.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      LoadBalancerAttributes: Match.arrayWith([{ Key: 'access_logs.s3.bucket', Value: ref(buckets[0]!) }]),
    });
  });

  test('the TLS policy from context (an Ext1 policy: TLS 1.2 without ECDHE, for older firmware)', () => {
    s.template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Port: 443, SslPolicy: 'ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06' });
  });
});

describe('the checks are live', () => {
  test('an open client network (0.0.0.0/0) fails synthesis with AwsSolutions-EC23', () => {
    const app = new App({ context: cdkJsonContext() });
    new TftpGatewayStack(app, 'Open', { env: ENV, imageUri: TEST_IMAGE, clientCidrs: ['0.0.0.0/0'] });
    const report = new AwsSolutionsChecks().validateScope(app);
    assert.deepEqual(
      report.violations.map((v) => v.ruleName),
      ['AwsSolutions-EC23'],
    );
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    assert.throws(() => app.synth());
  });
});

describe('configurations that cannot work are refused', () => {
  const cases: Array<[string, TftpGatewayStackProps, RegExp]> = [
    ['writes without write prefixes', { allowWrite: true }, /writePrefixes/],
    ['a CPU size Fargate does not have', { cpu: 768 }, /cpu must be one of/],
    ['a memory size that does not go with the CPU', { cpu: 512, memoryMiB: 512 }, /not a Fargate size/],
    ['a deregistration delay over an hour', { longestTransfer: Duration.hours(2) }, /3600/],
    ['both a workspace ARN and a new workspace', { ampWorkspaceArn: 'arn:aws:aps:eu-west-1:1:workspace/ws-1', createAmpWorkspace: true }, /not both/],
    ['a KMS key for a bucket the stack creates', { bucketKmsKeyArn: KEY_ARN }, /imported bucket/],
    ['one fixed address for two subnets', { nlbPrivateIps: ['10.0.16.10'] }, /one address per private subnet/],
    ['a fixed address outside its subnet', { nlbPrivateIps: ['10.0.16.10', '10.0.16.11'] }, /not a usable address of subnet 2/],
    ['a fixed address reserved by AWS', { nlbPrivateIps: ['10.0.16.1', '10.0.32.10'] }, /not a usable address of subnet 1/],
    ['a client network that is not a CIDR', { clientCidrs: ['10.0.0.0'] }, /not an IPv4 CIDR/],
    ['fewer maximum than minimum tasks', { minTasks: 4, maxTasks: 2 }, /minTasks <= maxTasks/],
    ['an HTTP boot port the container user cannot bind', { httpBootContainerPort: 80 }, /httpBootContainerPort must be 1024/],
    ['the HTTP boot listener on the metrics port', { httpBootContainerPort: 9464 }, /cannot be 9464/],
    ['an HTTP boot listener on TFTP’s port', { httpBootPort: 69 }, /httpBootPort cannot be 69/],
    ['an HTTP boot port that is not a port', { httpBootPort: 70000 }, /httpBootPort must be a TCP port/],
    ['HTTP on 443 next to the HTTPS listener', { httpBootPort: 443, httpBootCertificateArn: CERT_ARN }, /httpBootPort cannot be 443/],
    ['a certificate that is not an ACM ARN', { httpBootCertificateArn: 'arn:aws:iam::123456789012:server-certificate/boot' }, /not an ACM certificate ARN/],
    ['a TLS policy without TLS 1.3', { httpBootCertificateArn: CERT_ARN, httpBootTlsPolicy: 'ELBSecurityPolicy-2016-08' }, /not a TLS 1\.3 capable/],
    ['a TLS policy without a certificate', { httpBootTlsPolicy: 'ELBSecurityPolicy-TLS13-1-2-2021-06' }, /needs httpBootCertificateArn/],
  ];
  for (const [name, props, message] of cases) {
    test(name, () => {
      const app = new App({ context: cdkJsonContext() });
      assert.throws(() => new TftpGatewayStack(app, 'Bad', { env: ENV, imageUri: TEST_IMAGE, ...props }), message);
    });
  }
});

test('ADOT configuration is plain data (JSON is YAML)', () => {
  const parsed = JSON.parse(adotConfig('https://example.invalid/api/v1/remote_write', 'eu-west-1')) as {
    service: { pipelines: { metrics: { receivers: string[]; exporters: string[] } } };
  };
  assert.deepEqual(parsed.service.pipelines.metrics.receivers, ['prometheus']);
  assert.deepEqual(parsed.service.pipelines.metrics.exporters, ['prometheusremotewrite']);
});
