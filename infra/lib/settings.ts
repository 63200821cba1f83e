import { fileURLToPath } from 'node:url';
import { Duration, Token, type StackProps } from 'aws-cdk-lib';
import { SslPolicy } from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { normalisePrefix } from '../../src/policy/keys.js';
import { ipv4Block, parseIpv4 } from './cidr.js';

// The stack's props, their defaults and validation, and the gateway container's contract.

/** Ports of the gateway container (its contract; the Dockerfile EXPOSEs the same). */
export const GATEWAY_TFTP_PORT = 6969;
export const GATEWAY_HTTP_PORT = 9464;
/** The port clients use (TFTP's well-known port), on the load balancer. */
export const TFTP_PORT = 69;
/**
 * HTTP boot (stage 2): the container's HTTP file port (TFTP_GATEWAY_HTTP_BOOT_LISTEN; the Dockerfile
 * EXPOSEs it but leaves the listener off), and the load balancer's plain and TLS ports for it.
 */
export const GATEWAY_HTTP_BOOT_PORT = 8080;
export const HTTP_BOOT_PORT = 80;
export const HTTPS_BOOT_PORT = 443;
/**
 * TLS policy of the HTTPS boot listener: TLS 1.3 (with post-quantum hybrid key exchange) and TLS 1.2
 * with ECDHE only. Firmware whose TLS 1.2 has no ECDHE needs an `-Ext1-` policy (httpBootTlsPolicy).
 */
export const DEFAULT_HTTP_BOOT_TLS_POLICY = SslPolicy.TLS13_12_PQ;
/** Fargate's maximum stopTimeout: the time between SIGTERM and SIGKILL. */
export const STOP_TIMEOUT_SECONDS = 120;
/** The gateway's drain budget after SIGTERM: kept below the stop timeout. */
export const DRAIN_TIMEOUT_SECONDS = 100;
/** CloudWatch metric the gateway writes in Embedded Metric Format (TFTP_GATEWAY_CLOUDWATCH_EMF). */
export const SESSIONS_METRIC = { namespace: 'TftpGateway', metricName: 'ActiveSessions', dimension: 'ServiceName' } as const;
/** Memory kept for the ADOT collector sidecar when it runs. */
export const ADOT_MEMORY_MIB = 256;
export const DEFAULT_ADOT_IMAGE = 'public.ecr.aws/aws-observability/aws-otel-collector:v0.48.0';
/**
 * Where the disk cache tier lives in the container (TFTP_GATEWAY_CACHE_DIR). The Dockerfile creates
 * it owned by the runtime user and declares it a VOLUME: Fargate copies that owner and mode to the
 * task volume mounted there (an empty bind mount is otherwise root-owned 0755, unwritable to `node`).
 */
export const CACHE_DIR_PATH = '/var/cache/tftp-gateway';
/** Fargate's ephemeral storage when the task definition sets none, and the settable range. */
export const FARGATE_DEFAULT_EPHEMERAL_GIB = 20;
export const FARGATE_EPHEMERAL_GIB = { min: 21, max: 200 } as const;
/** Ephemeral storage kept for what else lives there: the image layers (gateway, ADOT), /tmp, the writable layer. */
export const EPHEMERAL_RESERVE_GIB = 4;
/** ECS ignores failing health checks of a new task this long; without warm-up, start-up is seconds. */
export const HEALTH_CHECK_GRACE_SECONDS = 30;
/**
 * With warm-up, the grace period is the warm timeout plus this: process start and the target group's
 * two healthy checks 10 s apart after the warm-up ends, with room to spare.
 */
export const WARM_GRACE_MARGIN_SECONDS = 60;
/** The longest warm-up the stack allows: ECS does not replace a broken new task before it is over. */
export const MAX_WARM_TIMEOUT_SECONDS = 3600;
/** The gateway's default --warm-timeout; the stack always passes it explicitly. */
export const DEFAULT_WARM_TIMEOUT_SECONDS = 600;
/** Gateway variables that the props below own (the stack sizes storage and health checks from them). */
const PROP_OWNED_ENVIRONMENT: Record<string, string> = {
  TFTP_GATEWAY_CACHE_DIR: 'cacheDirSizeMiB',
  TFTP_GATEWAY_CACHE_DIR_SIZE: 'cacheDirSizeMiB',
  TFTP_GATEWAY_WARM: 'warm',
  TFTP_GATEWAY_WARM_FILE: 'warmFile',
  TFTP_GATEWAY_WARM_TIMEOUT: 'warmTimeout',
  TFTP_GATEWAY_WARM_INTERVAL: 'warmInterval',
};

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

  // ----- HTTP boot (stage 2) -----
  /** Serve the files over HTTP too: a TCP listener on the load balancer and the gateway's HTTP boot listener. Default true. */
  readonly httpBoot?: boolean;
  /** The load balancer's HTTP boot port (TCP). Default 80. */
  readonly httpBootPort?: number;
  /** The container's HTTP boot port (TFTP_GATEWAY_HTTP_BOOT_LISTEN). Default 8080 (the container runs unprivileged: 1024 or over). */
  readonly httpBootContainerPort?: number;
  /** ACM certificate for an HTTPS listener on 443 (the load balancer terminates TLS). Default: no HTTPS listener. */
  readonly httpBootCertificateArn?: string;
  /** TLS policy of the HTTPS listener (an `ELBSecurityPolicy-TLS13-*` name). Default ELBSecurityPolicy-TLS13-1-2-PQ-2025-09. */
  readonly httpBootTlsPolicy?: string;

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
  /** Extra TFTP_GATEWAY_* variables for the gateway container (not those of the disk tier or warm-up: use their props). */
  readonly extraEnvironment?: Record<string, string>;

  // ----- disk cache tier and warm-up -----
  /**
   * Turn the gateway's disk cache tier on, this many MiB (TFTP_GATEWAY_CACHE_DIR_SIZE). Default: off.
   * It lives on the task's Fargate ephemeral storage: a task volume mounted at /var/cache/tftp-gateway
   * (TFTP_GATEWAY_CACHE_DIR), writable by the container user while the root file system stays
   * read-only. Fargate storage belongs to one task: a replaced task (deployment, scaling, a crash)
   * starts with an empty directory. On Fargate the tier is a cache larger than the task's memory and
   * a place for `warm` to fill; surviving restarts and WAN outages is what it does at edge sites that
   * run the image with a host directory mounted there (Docker, ECS Anywhere). Not EFS: every range
   * read would cross the network again (the latency and the per-GB cost the tier exists to avoid).
   * Must fit `ephemeralStorageGiB` less 4 GiB (image layers, /tmp).
   */
  readonly cacheDirSizeMiB?: number;
  /**
   * Fargate ephemeral storage per task, GiB (21..200; billed above 20). Default: Fargate's 20 GiB.
   * Raise it for a disk tier over 16 GiB.
   */
  readonly ephemeralStorageGiB?: number;
  /**
   * File names or prefixes (as the gateway's `--warm` takes them) a new task reads into its caches before
   * it reports ready (TFTP_GATEWAY_WARM). Default: none, no warm-up. With warm-up (this or
   * `warmFile`) the target groups check /readyz, which answers 503 "warming" until the warm-up is done
   * or `warmTimeout` has passed, so a cold task gets no traffic; the ECS service's health check grace
   * period covers `warmTimeout`, so the warming task is not replaced meanwhile.
   */
  readonly warm?: string[];
  /** A file inside the container listing more names or prefixes to warm, as `--warm-file` reads it (TFTP_GATEWAY_WARM_FILE; e.g. in an image built FROM this one). */
  readonly warmFile?: string;
  /** Longest warm-up before the task reports ready anyway (TFTP_GATEWAY_WARM_TIMEOUT). Default 600 s, at most 3600 s. */
  readonly warmTimeout?: Duration;
  /** Warm the list again this often, picking up new versions (TFTP_GATEWAY_WARM_INTERVAL). Default: the gateway's (0, off). */
  readonly warmInterval?: Duration;

  // ----- Prometheus -----
  /** Remote-write to this Amazon Managed Service for Prometheus workspace through an ADOT sidecar. */
  readonly ampWorkspaceArn?: string;
  /** Create a workspace and remote-write to it. Default false. */
  readonly createAmpWorkspace?: boolean;
  /** Image of the ADOT collector sidecar. */
  readonly adotImage?: string;
}

export type ResolvedProps = ReturnType<typeof resolveProps>;

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
    if (!Token.isUnresolved(cidr) && ipv4Block(cidr) === undefined) throw new Error(`clientCidrs: not an IPv4 CIDR: ${cidr}`);
  }
  const nlbPrivateIps = props.nlbPrivateIps ?? [];
  for (const ip of nlbPrivateIps) {
    if (parseIpv4(ip) === undefined) throw new Error(`nlbPrivateIps: not an IPv4 address: ${ip}`);
  }
  const httpBoot = resolveHttpBoot(props);
  const extraEnvironment = props.extraEnvironment ?? {};
  for (const key of Object.keys(extraEnvironment)) {
    const prop = PROP_OWNED_ENVIRONMENT[key];
    if (prop) throw new Error(`extraEnvironment: set ${key} through the ${prop} prop (the stack sizes storage and health checks from it)`);
  }
  const diskCache = resolveDiskCache(props);
  const warmUp = resolveWarmUp(props);
  const targetHealthCheckPath: '/readyz' | '/healthz' = warmUp ? '/readyz' : '/healthz';
  return {
    httpBoot,
    diskCache,
    warmUp,
    /**
     * A warming task answers 503 on /readyz: the target groups check it then, so the task gets traffic
     * once warm. Without warm-up they keep checking /healthz (liveness), as before.
     */
    targetHealthCheckPath,
    ephemeralStorageGiB: props.ephemeralStorageGiB,
    healthCheckGracePeriod: Duration.seconds(warmUp ? Math.max(HEALTH_CHECK_GRACE_SECONDS, warmUp.timeoutSeconds + WARM_GRACE_MARGIN_SECONDS) : HEALTH_CHECK_GRACE_SECONDS),
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
    extraEnvironment,
    ampWorkspaceArn: props.ampWorkspaceArn,
    createAmpWorkspace: props.createAmpWorkspace ?? false,
    adotImage: props.adotImage ?? DEFAULT_ADOT_IMAGE,
  };
}

export interface DiskCacheSettings {
  /** Bytes of range files the tier holds at most, in MiB. */
  readonly sizeMiB: number;
}

/** The disk tier's settings, or undefined when it is off (no volume, no variables); checks ephemeralStorageGiB too. */
function resolveDiskCache(props: TftpGatewayStackProps): DiskCacheSettings | undefined {
  const storage = props.ephemeralStorageGiB;
  if (storage !== undefined && !(Number.isInteger(storage) && storage >= FARGATE_EPHEMERAL_GIB.min && storage <= FARGATE_EPHEMERAL_GIB.max)) {
    throw new Error(`ephemeralStorageGiB must be an integer ${FARGATE_EPHEMERAL_GIB.min}..${FARGATE_EPHEMERAL_GIB.max} (Fargate's range; got ${storage})`);
  }
  const sizeMiB = props.cacheDirSizeMiB;
  if (sizeMiB === undefined) return undefined;
  if (!(Number.isInteger(sizeMiB) && sizeMiB >= 1)) throw new Error(`cacheDirSizeMiB must be a whole number of MiB, 1 or more (got ${sizeMiB})`);
  const total = storage ?? FARGATE_DEFAULT_EPHEMERAL_GIB;
  const room = (total - EPHEMERAL_RESERVE_GIB) * 1024;
  if (sizeMiB > room) {
    const needed = Math.ceil(sizeMiB / 1024) + EPHEMERAL_RESERVE_GIB;
    throw new Error(
      `cacheDirSizeMiB ${sizeMiB} does not fit the task's ${total} GiB of ephemeral storage (at most ${room} MiB: ${EPHEMERAL_RESERVE_GIB} GiB stay for image layers and /tmp); ` +
        (needed <= FARGATE_EPHEMERAL_GIB.max ? `set ephemeralStorageGiB to ${Math.max(needed, FARGATE_EPHEMERAL_GIB.min)} or more` : `Fargate allows at most ${FARGATE_EPHEMERAL_GIB.max} GiB`),
    );
  }
  return { sizeMiB };
}

export interface WarmUpSettings {
  /** Names and prefixes (TFTP_GATEWAY_WARM); may be empty when only a file is given. */
  readonly names: readonly string[];
  readonly file: string | undefined;
  readonly timeoutSeconds: number;
  /** undefined: the gateway's default (no re-warming). */
  readonly intervalSeconds: number | undefined;
}

/** Warm-up settings, or undefined when there is nothing to warm. */
function resolveWarmUp(props: TftpGatewayStackProps): WarmUpSettings | undefined {
  const names = (props.warm ?? []).map((n) => n.trim()).filter((n) => n.length > 0);
  for (const n of names) {
    // The gateway reads TFTP_GATEWAY_WARM as a comma-separated list.
    if (n.includes(',')) throw new Error(`warm: a name with a comma cannot be passed in TFTP_GATEWAY_WARM (got ${JSON.stringify(n)}); list it in warmFile`);
  }
  const file = props.warmFile?.trim() || undefined;
  if (file !== undefined && !file.startsWith('/')) throw new Error(`warmFile must be an absolute path inside the container (got ${file})`);
  if (names.length === 0 && file === undefined) {
    if (props.warmTimeout !== undefined || props.warmInterval !== undefined) {
      throw new Error('warmTimeout and warmInterval need something to warm: set warm or warmFile');
    }
    return undefined;
  }
  const timeoutSeconds = wholeSeconds('warmTimeout', props.warmTimeout) ?? DEFAULT_WARM_TIMEOUT_SECONDS;
  if (timeoutSeconds < 1 || timeoutSeconds > MAX_WARM_TIMEOUT_SECONDS) {
    throw new Error(
      `warmTimeout must be 1..${MAX_WARM_TIMEOUT_SECONDS} s (got ${timeoutSeconds}): ECS does not replace a failing new task before the grace period that covers it is over`,
    );
  }
  const intervalSeconds = wholeSeconds('warmInterval', props.warmInterval);
  return { names, file, timeoutSeconds, intervalSeconds };
}

function wholeSeconds(name: string, d: Duration | undefined): number | undefined {
  if (d === undefined) return undefined;
  const ms = d.toMilliseconds();
  if (!(Number.isInteger(ms / 1000) && ms >= 0)) throw new Error(`${name} must be a whole number of seconds (got ${d.toHumanString()})`);
  return ms / 1000;
}

export interface HttpBootSettings {
  /** The load balancer's TCP port. */
  readonly port: number;
  /** The container's port. */
  readonly containerPort: number;
  /** An HTTPS listener on 443, when a certificate is given. */
  readonly tls: { readonly certificateArn: string; readonly policy: SslPolicy } | undefined;
}

/** HTTP boot's settings, or undefined when it is off. */
function resolveHttpBoot(props: TftpGatewayStackProps): HttpBootSettings | undefined {
  // Off means off: the other httpBoot* settings may stay in cdk.json and are not read.
  if (props.httpBoot === false) return undefined;
  const port = props.httpBootPort ?? HTTP_BOOT_PORT;
  const containerPort = props.httpBootContainerPort ?? GATEWAY_HTTP_BOOT_PORT;
  if (!(Number.isInteger(port) && port >= 1 && port <= 65535)) throw new Error(`httpBootPort must be a TCP port, 1..65535 (got ${port})`);
  // A TCP and a UDP listener cannot share a port on a Network Load Balancer; 443 is the HTTPS listener's.
  if (port === TFTP_PORT) throw new Error(`httpBootPort cannot be ${TFTP_PORT}: the load balancer's TFTP listener has it`);
  if (!(Number.isInteger(containerPort) && containerPort >= 1024 && containerPort <= 65535)) {
    throw new Error(`httpBootContainerPort must be 1024..65535: the container runs as an unprivileged user (got ${containerPort})`);
  }
  if (containerPort === GATEWAY_HTTP_PORT) {
    throw new Error(`httpBootContainerPort cannot be ${GATEWAY_HTTP_PORT}: the metrics and health checks listen there`);
  }
  const certificateArn = props.httpBootCertificateArn;
  if (certificateArn === undefined) {
    if (props.httpBootTlsPolicy !== undefined) throw new Error('httpBootTlsPolicy needs httpBootCertificateArn (there is no HTTPS listener without it)');
    return { port, containerPort, tls: undefined };
  }
  if (!Token.isUnresolved(certificateArn) && !/^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[A-Za-z0-9-]+$/.test(certificateArn)) {
    throw new Error(`httpBootCertificateArn: not an ACM certificate ARN: ${certificateArn}`);
  }
  if (port === HTTPS_BOOT_PORT) throw new Error(`httpBootPort cannot be ${HTTPS_BOOT_PORT} with a certificate: the HTTPS listener has it`);
  const policy = (props.httpBootTlsPolicy ?? DEFAULT_HTTP_BOOT_TLS_POLICY) as SslPolicy;
  if (!Object.values(SslPolicy).includes(policy) || !policy.startsWith('ELBSecurityPolicy-TLS13-')) {
    throw new Error(`httpBootTlsPolicy: ${policy} is not a TLS 1.3 capable load balancer policy (ELBSecurityPolicy-TLS13-...)`);
  }
  return { port, containerPort, tls: { certificateArn, policy } };
}
