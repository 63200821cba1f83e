import { Duration, type Environment } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { TftpGatewayStackProps } from './settings.js';

/**
 * Context keys the app reads (`cdk.json` "context", `cdk.context.json`, or `-c key=value`).
 * Values given with `-c` arrive as strings; lists are comma-separated there.
 */
export const CONTEXT_KEYS = [
  'stackName',
  'account',
  'region',
  'vpcId',
  'vpcCidr',
  'maxAzs',
  'natGateways',
  's3GatewayEndpoint',
  'clientCidrs',
  'nlbPrivateIps',
  'httpBoot',
  'httpBootPort',
  'httpBootContainerPort',
  'httpBootCertificateArn',
  'httpBootTlsPolicy',
  'bucketName',
  'bucketKmsKeyArn',
  'bucketEncryption',
  's3Prefix',
  'allowWrite',
  'writePrefixes',
  'imageUri',
  'cpu',
  'memoryMiB',
  'cacheFraction',
  'minTasks',
  'maxTasks',
  'cpuTargetPercent',
  'sessionsPerTaskTarget',
  'longestTransferSeconds',
  'serviceName',
  'logRetentionDays',
  'logLevel',
  'maxBlksize',
  'cacheDirSizeMiB',
  'ephemeralStorageGiB',
  'warm',
  'warmFile',
  'warmTimeoutSeconds',
  'warmIntervalSeconds',
  'ampWorkspaceArn',
  'createAmpWorkspace',
  'adotImage',
] as const;

export type ContextKey = (typeof CONTEXT_KEYS)[number];

export interface AppConfig {
  readonly stackName: string;
  readonly props: TftpGatewayStackProps;
}

/**
 * Builds the stack's props from context. Nothing here talks to AWS: with no account or region
 * in context or in CDK_DEFAULT_ACCOUNT / CDK_DEFAULT_REGION, the stack is environment-agnostic.
 */
export function configFromContext(
  get: (key: string) => unknown,
  processEnv: Record<string, string | undefined> = process.env,
): AppConfig {
  const str = (key: ContextKey): string | undefined => {
    const v = get(key);
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw new Error(`context ${key}: expected a string, got ${JSON.stringify(v)}`);
    return v.trim();
  };
  const num = (key: ContextKey): number | undefined => {
    const v = get(key);
    if (v === undefined || v === null || v === '') return undefined;
    const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v.trim()) : NaN;
    if (!Number.isFinite(n)) throw new Error(`context ${key}: expected a number, got ${JSON.stringify(v)}`);
    return n;
  };
  const bool = (key: ContextKey): boolean | undefined => {
    const v = get(key);
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v === 'boolean') return v;
    if (typeof v === 'string' && /^(true|false)$/i.test(v.trim())) return v.trim().toLowerCase() === 'true';
    throw new Error(`context ${key}: expected true or false, got ${JSON.stringify(v)}`);
  };
  const list = (key: ContextKey): string[] | undefined => {
    const v = get(key);
    if (v === undefined || v === null || v === '') return undefined;
    const items = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : undefined;
    if (!items || items.some((i) => typeof i !== 'string')) {
      throw new Error(`context ${key}: expected a list of strings or a comma-separated string, got ${JSON.stringify(v)}`);
    }
    return (items as string[]).map((i) => i.trim()).filter((i) => i.length > 0);
  };

  const account = str('account') ?? processEnv['CDK_DEFAULT_ACCOUNT'];
  const region = str('region') ?? processEnv['CDK_DEFAULT_REGION'];
  const env: Environment = { ...(account ? { account } : {}), ...(region ? { region } : {}) };

  const vpcId = str('vpcId');
  if (vpcId !== undefined && (account === undefined || region === undefined)) {
    throw new Error('context vpcId: looking up an existing VPC needs an account and a region (context account/region, or AWS credentials)');
  }

  const bucketEncryption = str('bucketEncryption');
  if (bucketEncryption !== undefined && bucketEncryption !== 's3' && bucketEncryption !== 'kms') {
    throw new Error(`context bucketEncryption: expected "s3" or "kms", got ${JSON.stringify(bucketEncryption)}`);
  }

  const retentionDays = num('logRetentionDays');
  if (retentionDays !== undefined && !Object.values(logs.RetentionDays).includes(retentionDays)) {
    throw new Error(`context logRetentionDays: ${retentionDays} is not a CloudWatch Logs retention (1, 3, 5, 7, 14, 30, 60, 90, ...)`);
  }
  const longest = num('longestTransferSeconds');
  const warmTimeout = num('warmTimeoutSeconds');
  const warmInterval = num('warmIntervalSeconds');

  const props: TftpGatewayStackProps = {
    env,
    description: 'TFTP gateway: ECS Fargate tasks behind an internal Network Load Balancer, files in Amazon S3',
    vpcId,
    vpcCidr: str('vpcCidr'),
    maxAzs: num('maxAzs'),
    natGateways: num('natGateways'),
    s3GatewayEndpoint: bool('s3GatewayEndpoint'),
    clientCidrs: list('clientCidrs'),
    nlbPrivateIps: list('nlbPrivateIps'),
    httpBoot: bool('httpBoot'),
    httpBootPort: num('httpBootPort'),
    httpBootContainerPort: num('httpBootContainerPort'),
    httpBootCertificateArn: str('httpBootCertificateArn'),
    httpBootTlsPolicy: str('httpBootTlsPolicy'),
    bucketName: str('bucketName'),
    bucketKmsKeyArn: str('bucketKmsKeyArn'),
    bucketEncryption: bucketEncryption,
    s3Prefix: str('s3Prefix'),
    allowWrite: bool('allowWrite'),
    writePrefixes: list('writePrefixes'),
    imageUri: str('imageUri'),
    cpu: num('cpu'),
    memoryMiB: num('memoryMiB'),
    cacheFraction: num('cacheFraction'),
    minTasks: num('minTasks'),
    maxTasks: num('maxTasks'),
    cpuTargetPercent: num('cpuTargetPercent'),
    sessionsPerTaskTarget: num('sessionsPerTaskTarget'),
    longestTransfer: longest !== undefined ? Duration.seconds(longest) : undefined,
    serviceName: str('serviceName'),
    logRetention: retentionDays,
    logLevel: str('logLevel'),
    maxBlksize: num('maxBlksize'),
    cacheDirSizeMiB: num('cacheDirSizeMiB'),
    ephemeralStorageGiB: num('ephemeralStorageGiB'),
    warm: list('warm'),
    warmFile: str('warmFile'),
    warmTimeout: warmTimeout !== undefined ? Duration.seconds(warmTimeout) : undefined,
    warmInterval: warmInterval !== undefined ? Duration.seconds(warmInterval) : undefined,
    ampWorkspaceArn: str('ampWorkspaceArn'),
    createAmpWorkspace: bool('createAmpWorkspace'),
    adotImage: str('adotImage'),
  };
  // Drop unset keys so the stack's defaults apply.
  const defined = Object.fromEntries(Object.entries(props).filter(([, v]) => v !== undefined)) as TftpGatewayStackProps;
  return { stackName: str('stackName') ?? 'TftpGateway', props: defined };
}
