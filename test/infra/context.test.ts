// How the CDK app turns context (cdk.json, cdk.context.json, -c key=value) into stack props.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { CONTEXT_KEYS, configFromContext } from '../../infra/lib/context.js';
import { cdkJsonContext } from './helpers.js';

const from = (ctx: Record<string, unknown>, env: Record<string, string | undefined> = {}) => configFromContext((k) => ctx[k], env);

test('no context, no credentials: stack "TftpGateway", environment-agnostic, every default left to the stack', () => {
  const { stackName, props } = from({});
  assert.equal(stackName, 'TftpGateway');
  assert.deepEqual(props.env, {});
  assert.deepEqual(
    Object.keys(props).sort(),
    ['description', 'env'],
  );
});

test('cdk.json turns CLI telemetry off and pins the recommended feature flags', () => {
  const ctx = cdkJsonContext();
  assert.equal(ctx['cli-telemetry'], false);
  assert.equal(ctx['@aws-cdk/aws-elasticloadbalancingv2:networkLoadBalancerWithSecurityGroupByDefault'], true);
});

test('every context key the app reads is listed (and documented) in CONTEXT_KEYS', () => {
  const read = new Set<string>();
  configFromContext((k) => {
    read.add(k);
    return undefined;
  }, {});
  assert.deepEqual([...read].sort(), [...CONTEXT_KEYS].sort());
});

test('account and region: context first, then the CLI’s CDK_DEFAULT_ACCOUNT / CDK_DEFAULT_REGION', () => {
  assert.deepEqual(from({}, { CDK_DEFAULT_ACCOUNT: '111111111111', CDK_DEFAULT_REGION: 'us-east-2' }).props.env, {
    account: '111111111111',
    region: 'us-east-2',
  });
  assert.deepEqual(
    from({ account: '222222222222', region: 'eu-central-1' }, { CDK_DEFAULT_ACCOUNT: '111111111111', CDK_DEFAULT_REGION: 'us-east-2' }).props.env,
    { account: '222222222222', region: 'eu-central-1' },
  );
});

test('-c values arrive as strings: numbers, booleans and comma-separated lists are parsed', () => {
  const { stackName, props } = from({
    stackName: 'Netboot',
    bucketName: 'netboot-images',
    s3Prefix: 'tftp/',
    allowWrite: 'true',
    writePrefixes: 'uploads/, dumps/',
    clientCidrs: '10.1.0.0/16,10.2.0.0/16',
    nlbPrivateIps: '10.0.16.10,10.0.32.10',
    cpu: '1024',
    memoryMiB: '2048',
    minTasks: '3',
    maxTasks: '12',
    longestTransferSeconds: '900',
    logRetentionDays: '90',
    createAmpWorkspace: 'false',
    s3GatewayEndpoint: 'FALSE',
  });
  assert.equal(stackName, 'Netboot');
  assert.equal(props.bucketName, 'netboot-images');
  assert.equal(props.allowWrite, true);
  assert.deepEqual(props.writePrefixes, ['uploads/', 'dumps/']);
  assert.deepEqual(props.clientCidrs, ['10.1.0.0/16', '10.2.0.0/16']);
  assert.deepEqual(props.nlbPrivateIps, ['10.0.16.10', '10.0.32.10']);
  assert.equal(props.cpu, 1024);
  assert.equal(props.memoryMiB, 2048);
  assert.equal(props.minTasks, 3);
  assert.equal(props.maxTasks, 12);
  assert.equal(props.longestTransfer?.toSeconds(), 900);
  assert.equal(props.logRetention, RetentionDays.THREE_MONTHS);
  assert.equal(props.createAmpWorkspace, false);
  assert.equal(props.s3GatewayEndpoint, false);
});

test('HTTP boot context: on/off, ports, certificate and TLS policy', () => {
  const { props } = from({
    httpBoot: 'true',
    httpBootPort: '8000',
    httpBootContainerPort: '8888',
    httpBootCertificateArn: ' arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555 ',
    httpBootTlsPolicy: 'ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06',
  });
  assert.equal(props.httpBoot, true);
  assert.equal(props.httpBootPort, 8000);
  assert.equal(props.httpBootContainerPort, 8888);
  assert.equal(props.httpBootCertificateArn, 'arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555');
  assert.equal(props.httpBootTlsPolicy, 'ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06');
  assert.equal(from({ httpBoot: 'false' }).props.httpBoot, false);
  assert.equal(from({ httpBoot: false }).props.httpBoot, false);
  assert.equal(from({}).props.httpBoot, undefined, 'unset: the stack’s default (on)');
  assert.throws(() => from({ httpBoot: 'off' }), /context httpBoot: expected true or false/);
  assert.throws(() => from({ httpBootPort: 'http' }), /context httpBootPort: expected a number/);
});

test('cdk.json / cdk.context.json values keep their JSON types', () => {
  const { props } = from({ allowWrite: true, writePrefixes: ['uploads/'], cpu: 2048, memoryMiB: 4096, clientCidrs: ['10.0.0.0/8'] });
  assert.equal(props.allowWrite, true);
  assert.deepEqual(props.writePrefixes, ['uploads/']);
  assert.equal(props.cpu, 2048);
  assert.deepEqual(props.clientCidrs, ['10.0.0.0/8']);
});

test('wrong types and values are reported with the key', () => {
  assert.throws(() => from({ cpu: 'lots' }), /context cpu: expected a number/);
  assert.throws(() => from({ allowWrite: 'yes' }), /context allowWrite: expected true or false/);
  assert.throws(() => from({ clientCidrs: [10] }), /context clientCidrs/);
  assert.throws(() => from({ bucketEncryption: 'aes' }), /context bucketEncryption/);
  assert.throws(() => from({ logRetentionDays: '31' }), /context logRetentionDays/);
  assert.throws(() => from({ bucketName: 42 }), /context bucketName: expected a string/);
});

test('looking up an existing VPC needs a concrete account and region', () => {
  assert.throws(() => from({ vpcId: 'vpc-0123456789abcdef0' }), /account and a region/);
  const { props } = from({ vpcId: 'vpc-0123456789abcdef0', account: '123456789012', region: 'eu-west-1' });
  assert.equal(props.vpcId, 'vpc-0123456789abcdef0');
});

test('disk cache tier and warm-up context: sizes as numbers, warm as a comma-separated list, times in seconds', () => {
  const { props } = from({
    cacheDirSizeMiB: '40960',
    ephemeralStorageGiB: '50',
    warm: 'pxelinux.0, images/ubuntu-24.04/,ipxe.efi',
    warmFile: '/etc/tftp-gateway/warm.txt',
    warmTimeoutSeconds: '900',
    warmIntervalSeconds: '3600',
  });
  assert.equal(props.cacheDirSizeMiB, 40960);
  assert.equal(props.ephemeralStorageGiB, 50);
  assert.deepEqual(props.warm, ['pxelinux.0', 'images/ubuntu-24.04/', 'ipxe.efi']);
  assert.equal(props.warmFile, '/etc/tftp-gateway/warm.txt');
  assert.equal(props.warmTimeout?.toSeconds(), 900);
  assert.equal(props.warmInterval?.toSeconds(), 3600);
  // cdk.json keeps JSON types: a list stays a list, numbers stay numbers.
  const json = from({ warm: ['pxelinux.0', 'boot/'], cacheDirSizeMiB: 1024, warmTimeoutSeconds: 120 }).props;
  assert.deepEqual(json.warm, ['pxelinux.0', 'boot/']);
  assert.equal(json.cacheDirSizeMiB, 1024);
  assert.equal(json.warmTimeout?.toSeconds(), 120);
  // Unset: no disk tier and no warm-up (the stack's defaults).
  const none = from({}).props;
  for (const k of ['cacheDirSizeMiB', 'ephemeralStorageGiB', 'warm', 'warmFile', 'warmTimeout', 'warmInterval'] as const) assert.equal(none[k], undefined, k);
  assert.throws(() => from({ cacheDirSizeMiB: 'big' }), /context cacheDirSizeMiB: expected a number/);
  assert.throws(() => from({ warm: [1] }), /context warm/);
  assert.throws(() => from({ warmTimeoutSeconds: 'ten' }), /context warmTimeoutSeconds: expected a number/);
});
