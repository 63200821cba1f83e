import os from 'node:os';
import process from 'node:process';
import { parseArgs } from 'node:util';
import { usableCpus } from './cpus.js';

/**
 * One configuration schema: every flag has an environment twin (--s3-bucket ↔ TFTP_GATEWAY_S3_BUCKET),
 * flags win over the environment, and every problem is reported at once before the gateway starts.
 * The access policy flags (CIDR lists, client prefixes, map file, write prefixes) are kept as the
 * operator wrote them: the policy layer parses them (src/policy/from-config.ts), so this module
 * depends on no other part of the gateway.
 */

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface GatewayConfig {
  readonly listen: readonly ListenAddress[];
  readonly portMode: PortMode;
  readonly portRange: { readonly low: number; readonly high: number } | undefined;
  readonly s3Bucket: string;
  readonly s3Prefix: string;
  readonly s3Endpoint: string | undefined;
  readonly s3Region: string;
  readonly s3ForcePathStyle: boolean;
  readonly s3Checksum: ChecksumMode;
  readonly s3MaxAttempts: number;
  readonly s3RequestTimeoutMs: number;
  /** Deadline of one HeadObject attempt (metadata lookups). */
  readonly s3MetadataTimeoutMs: number;
  /** How long an S3 call may go without an answer or progress, retries included. */
  readonly s3RetryBudgetMs: number;
  readonly allowWrite: boolean;
  readonly allowOverwrite: boolean;
  readonly maxUploadSize: number;
  readonly maxBlksize: number;
  readonly maxWindowsize: number;
  readonly maxWindowBytes: number;
  readonly retries: number;
  /** Seconds without progress after which a transfer is given up (before the stall reaper). */
  readonly giveUpTimeoutS: number;
  /** Factor the retransmission timeout grows by on each expiry. */
  readonly rtoBackoff: number;
  /** Retransmissions of the first packet to a peer that has not answered yet. */
  readonly unverifiedRetries: number;
  /** Bytes sent per request byte to a peer that has not answered yet (0: unbounded). */
  readonly unverifiedAmplification: number;
  /** Bytes per second all unverified peers of one address may be sent (0: no cap). */
  readonly unverifiedBytesPerSecond: number;
  readonly rtoInitialMs: number;
  readonly rtoMinMs: number;
  readonly rtoMaxMs: number;
  readonly maxSessions: number;
  /**
   * Access policy and limits (docs/policy.md). The policy flags are the values as given (repeated
   * and comma-separated); src/policy/from-config.ts parses and checks them.
   */
  readonly mapFile: string | undefined;
  readonly mapBackslashes: boolean;
  readonly mapLowercase: boolean;
  readonly mapStripJunk: boolean;
  /** --client-prefix `CIDR=PREFIX` entries. */
  readonly clientPrefixes: readonly string[];
  /** --read-allow CIDR blocks; undefined: every client may read. */
  readonly readAllow: readonly string[] | undefined;
  readonly readDeny: readonly string[];
  readonly writeAllow: readonly string[];
  readonly writeDeny: readonly string[];
  readonly writePrefixes: readonly string[];
  readonly refuseOptions: readonly string[];
  readonly maxSessionsPerClient: number;
  readonly rateLimit: number;
  readonly rateBurst: number;
  readonly stallTimeoutS: number;
  readonly cacheSize: number;
  /** Directory of the persistent disk tier (undefined: off). */
  readonly cacheDir: string | undefined;
  readonly cacheDirSize: number;
  /** --warm names as given (objects, or paths ending in '/'): src/policy/warm-names.ts checks them. */
  readonly warm: readonly string[];
  /** File of warm names, one per line (undefined: none). */
  readonly warmFile: string | undefined;
  /** Seconds readiness waits for the first warm-up (0: never). */
  readonly warmTimeoutS: number;
  /** Seconds between revalidations of the warm set (0: off). */
  readonly warmIntervalS: number;
  readonly rangeSize: number;
  readonly readAhead: number;
  /** Ranged GETs in flight at once at most (all transfers). */
  readonly s3Streams: number;
  /** Ranged GETs per cache range at most (parts of at least 2 MiB). */
  readonly rangeStreams: number;
  readonly metadataTtlMs: number;
  /** Seconds past the metadata TTL a cached object is still served while S3 fails (0: off). */
  readonly staleIfErrorS: number;
  readonly uploadPartSize: number;
  readonly uploadQueueSize: number;
  readonly httpListen: ListenAddress | undefined;
  /** TCP addresses the HTTP boot front end serves files on (empty: off). */
  readonly httpBootListen: readonly ListenAddress[];
  /** Open HTTP boot connections at most (process-wide per thread's share: see src/http). */
  readonly httpMaxConnections: number;
  /** Open HTTP boot connections per client address at most (0: no cap). */
  readonly httpMaxConnectionsPerClient: number;
  /** Seconds a client may take to send a request's headers. */
  readonly httpHeaderTimeoutS: number;
  /** Seconds an idle keep-alive connection is kept open. */
  readonly httpKeepAliveTimeoutS: number;
  /** Seconds a response may make no progress (a reader that takes no bytes) before it is cut off. */
  readonly httpSendTimeoutS: number;
  readonly logLevel: LogLevel;
  readonly drainTimeoutS: number;
  /** Write the ActiveSessions metric as CloudWatch EMF lines on stdout every `cloudwatchEmfIntervalS`. */
  readonly cloudwatchEmf: boolean;
  readonly cloudwatchEmfIntervalS: number;
  /** The ServiceName dimension of the EMF metric. */
  readonly serviceName: string;
  /** Keep the ECS task scale-in protected while sessions run (needs ECS_AGENT_URI). */
  readonly scaleInProtection: boolean;
  /** Run against an embedded S3-compatible store kept in this directory (no AWS account needed). */
  readonly local: boolean;
  readonly localDir: string;
  /**
   * Threads serving UDP (worker_threads, each with its own sockets on the listen ports, SO_REUSEPORT);
   * 1: today's single-threaded mode, no worker threads.
   */
  readonly workers: number;
}

type Kind = 'string' | 'list' | 'int' | 'size' | 'bool';

interface FlagSpec {
  readonly flag: string;
  readonly kind: Kind;
  readonly help: string;
  /** Default as the user would type it. */
  readonly default?: string;
  readonly choices?: readonly string[];
  readonly min?: number;
  readonly max?: number;
}

const MiB = 1024 * 1024;

function defaultCacheSize(): number {
  // A quarter of the memory we may use (the cgroup limit in a container), at most 4 GiB.
  const limit = process.constrainedMemory?.() || os.totalmem();
  const budget = Math.min(Math.floor(limit / 4), 4096 * MiB);
  return Math.max(64 * MiB, budget);
}

/**
 * The one flag schema. Declared `as const` so the type of every flag's value derives from its entry
 * (FlagValues below): reading a flag that is not in this list does not compile.
 */
export const FLAGS = [
  { flag: 'listen', kind: 'list', default: '[::]:69', help: 'UDP address:port to serve TFTP on (repeatable)' },
  { flag: 'port-mode', kind: 'string', default: 'single', choices: ['single', 'per-transfer'], help: 'single: every transfer on the listening port (NAT/load balancer safe); per-transfer: a new port per transfer (RFC 1350)' },
  { flag: 'port-range', kind: 'string', help: 'ports for per-transfer mode, LOW-HIGH (default: any free port)' },
  { flag: 's3-bucket', kind: 'string', help: 'bucket holding the files (required unless --local)' },
  { flag: 's3-prefix', kind: 'string', default: '', help: 'key prefix the served tree lives under' },
  { flag: 's3-endpoint', kind: 'string', help: 'S3 endpoint URL for S3-compatible stores' },
  { flag: 's3-region', kind: 'string', help: 'AWS region (default: AWS_REGION, else us-east-1)' },
  { flag: 's3-force-path-style', kind: 'bool', default: 'false', help: 'path-style bucket addressing (most S3-compatible stores)' },
  { flag: 's3-checksum', kind: 'string', default: 'when-supported', choices: ['when-supported', 'when-required'], help: 'request checksums and response validation; when-required for stores that reject CRC checksums' },
  { flag: 's3-max-attempts', kind: 'int', default: '4', min: 1, max: 20, help: 'attempts per S3 request (SDK retries with backoff)' },
  { flag: 's3-request-timeout-ms', kind: 'int', default: '15000', min: 100, max: 600000, help: 'socket inactivity timeout of an S3 request' },
  { flag: 's3-metadata-timeout-ms', kind: 'int', default: '1500', min: 50, max: 600000, help: 'deadline of one HeadObject attempt (a metadata lookup is retried within --s3-retry-budget-ms)' },
  { flag: 's3-retry-budget-ms', kind: 'int', default: '4000', min: 100, max: 600000, help: 'time an S3 call may go without an answer or progress, retries included, before the client gets ERROR 0 "Storage unavailable" (keep well under clients\' give-up time)' },
  { flag: 'allow-write', kind: 'bool', default: 'false', help: 'accept write requests (WRQ); off by default' },
  { flag: 'allow-overwrite', kind: 'bool', default: 'false', help: 'let uploads replace existing objects (default: refuse with ERROR 6)' },
  { flag: 'max-upload-size', kind: 'size', default: '4GiB', min: 0, help: 'largest upload accepted' },
  { flag: 'max-blksize', kind: 'int', default: '1468', min: 8, max: 65464, help: 'largest blksize granted (1468 avoids IP fragmentation on Ethernet)' },
  { flag: 'max-windowsize', kind: 'int', default: '64', min: 1, max: 65535, help: 'largest windowsize granted' },
  { flag: 'max-window-bytes', kind: 'size', default: '96KiB', min: 512, help: 'cap on DATA bytes in flight per transfer (client receive buffers are small)' },
  { flag: 'retries', kind: 'int', default: '0', min: 0, max: 1000, help: 'retransmissions of one packet before a transfer is abandoned (0: no count limit, --give-up-timeout decides)' },
  { flag: 'give-up-timeout', kind: 'int', default: '63', min: 1, max: 3600, help: "seconds without progress before a transfer is abandoned with ERROR 0 (tftpd-hpa gives up after 63 s; must be below --stall-timeout, and follows a shorter one down when not given)" },
  { flag: 'rto-backoff', kind: 'int', default: '2', min: 1, max: 4, help: 'factor the retransmission timeout grows by on each expiry (up to --rto-max-ms)' },
  { flag: 'unverified-retries', kind: 'int', default: '4', min: 0, max: 1000, help: "retransmissions of the first packet before the peer has answered at all (a request's source may be forged; the client's own repeated request always earns a resend)" },
  { flag: 'unverified-amplification', kind: 'int', default: '90', min: 0, max: 10000, help: 'bytes sent per request byte to a peer that has not answered yet (0: unbounded); below 100 keeps a forged request from drawing 100x its size' },
  { flag: 'unverified-bytes-per-second', kind: 'size', default: '1MiB', min: 0, help: "bytes per second (and burst) one address's not-yet-answering peers may be sent in all (0: no cap)" },
  { flag: 'rto-initial-ms', kind: 'int', default: '1000', min: 10, max: 255000, help: 'retransmission timeout before any round trip is measured' },
  { flag: 'rto-min-ms', kind: 'int', default: '100', min: 1, max: 255000, help: 'lower bound of the adaptive retransmission timeout' },
  { flag: 'rto-max-ms', kind: 'int', default: '16000', min: 10, max: 255000, help: 'upper bound of the adaptive retransmission timeout' },
  { flag: 'max-sessions', kind: 'int', default: '10000', min: 1, help: 'concurrent transfers at most' },
  { flag: 'max-sessions-per-client', kind: 'int', default: '0', min: 0, help: 'concurrent transfers per client address at most (0: no cap; a NATed site is one address)' },
  { flag: 'rate-limit', kind: 'int', default: '0', min: 0, max: 100000, help: 'requests per second per client address, token bucket (0: off)' },
  { flag: 'rate-burst', kind: 'int', default: '20', min: 1, max: 1000000, help: 'requests a client may send in a burst under --rate-limit' },
  { flag: 'stall-timeout', kind: 'int', default: '90', min: 1, max: 3600, help: 'seconds a transfer may make no progress before it is ended (keep under the load balancer flow timeout, 120 s)' },
  { flag: 'read-allow', kind: 'list', help: 'CIDR blocks that may read (comma-separated; default: every client)' },
  { flag: 'read-deny', kind: 'list', help: 'CIDR blocks that may not read (wins over --read-allow)' },
  { flag: 'write-allow', kind: 'list', help: 'CIDR blocks that may write (instead of --allow-write for everyone)' },
  { flag: 'write-deny', kind: 'list', help: 'CIDR blocks that may not write (wins over --write-allow and --allow-write)' },
  { flag: 'write-prefixes', kind: 'list', help: "paths within the client's tree that writes must land under, e.g. uploads/,logs/ (default: anywhere)" },
  { flag: 'client-prefix', kind: 'list', help: 'CIDR=PREFIX: clients in CIDR are served the tree under key PREFIX instead of --s3-prefix (repeatable; most specific wins)' },
  { flag: 'map-file', kind: 'string', help: 'tftp-hpa-style file name rewrite rules (see docs/policy.md; test with tftp-gateway map-test)' },
  { flag: 'map-backslashes', kind: 'bool', default: 'false', help: 'turn backslashes in file names into slashes (Windows/WDS clients)' },
  { flag: 'map-lowercase', kind: 'bool', default: 'false', help: 'lower-case file names (clients that send any letter case; store keys in lower case)' },
  { flag: 'map-strip-junk', kind: 'bool', default: 'false', help: 'cut file names at the first control byte or byte that is not valid UTF-8 (old ROMs append junk)' },
  { flag: 'refuse-options', kind: 'list', help: 'options never granted, like tftp-hpa --refuse (blksize, tsize, timeout, windowsize); refusing timeout keeps the adaptive retransmission timer' },
  { flag: 'cache-size', kind: 'size', help: 'bytes of object data the read cache may hold (default: a quarter of memory, at most 4 GiB)' },
  { flag: 'cache-dir', kind: 'string', help: 'directory of a persistent disk cache tier: ranges and object metadata survive restarts (default: off)' },
  { flag: 'cache-dir-size', kind: 'size', default: '1GiB', min: 1, help: 'bytes of range files the --cache-dir tier holds at most (least recently used evicted)' },
  { flag: 'warm', kind: 'list', help: "object to fetch into the cache at start, named as clients name it (relative to --s3-prefix); a name ending in '/' is every object under that path, '/' the whole tree (repeatable; /readyz answers 503 'warming' until done or --warm-timeout)" },
  { flag: 'warm-file', kind: 'string', help: "file of --warm names, one per line ('#' comment lines and blank lines ignored)" },
  { flag: 'warm-timeout', kind: 'int', default: '600', min: 0, max: 86400, help: 'seconds /readyz waits for the first warm-up before answering ready anyway (a warning and tftp_gateway_warm_timeouts_total; warming goes on); 0: never wait' },
  { flag: 'warm-interval', kind: 'int', default: '0', min: 0, max: 86400, help: 'seconds between revalidations of the warm set: objects whose ETag changed are fetched again, new objects under a warmed path are fetched (0: off)' },
  { flag: 'range-size', kind: 'size', default: '8MiB', min: 64 * 1024, max: 1024 * MiB, help: 'size of the aligned ranges read from S3' },
  { flag: 'read-ahead', kind: 'int', default: '2', min: 0, max: 64, help: 'ranges fetched ahead of a transfer at least (deeper when measured S3 latency and throughput need it, see --s3-streams; 0: no read-ahead)' },
  { flag: 'range-streams', kind: 'int', default: '8', min: 1, max: 64, help: 'ranged GETs reading one range at once at most (parts sized from measured S3 latency and throughput), so a cold transfer is not held to one S3 stream' },
  { flag: 's3-streams', kind: 'int', default: '32', min: 1, max: 256, help: 'ranged GETs in flight at once at most, all transfers together; read-ahead deepens to keep them busy when S3 is far (a WAN)' },
  { flag: 'metadata-ttl-ms', kind: 'int', default: '5000', min: 0, max: 3600000, help: 'how long a HeadObject answer is reused' },
  { flag: 'stale-if-error', kind: 'int', default: '3600', min: 0, max: 604800, help: 'seconds past --metadata-ttl-ms a cached object is still served (same version) while S3 fails with 5xx, throttling, timeouts or connection errors (0: off)' },
  { flag: 'upload-part-size', kind: 'size', default: '8MiB', min: 5 * MiB, max: 5 * 1024 * MiB, help: 'multipart upload part size' },
  { flag: 'upload-queue-size', kind: 'int', default: '2', min: 1, max: 16, help: 'parts uploaded in parallel per upload' },
  { flag: 'http-listen', kind: 'string', default: '0.0.0.0:9464', help: "address:port for /metrics, /healthz, /readyz ('off' to disable)" },
  { flag: 'http-boot-listen', kind: 'list', help: "TCP address:port to serve the same files over HTTP (GET, HEAD, byte ranges) for stage-2 network boot (repeatable; default: off)" },
  { flag: 'http-max-connections', kind: 'int', default: '10000', min: 1, max: 1000000, help: 'open HTTP boot connections at most; more are closed at once (counted)' },
  { flag: 'http-max-connections-per-client', kind: 'int', default: '256', min: 0, max: 1000000, help: 'open HTTP boot connections per client address at most (0: no cap; a NATed site is one address)' },
  { flag: 'http-header-timeout', kind: 'int', default: '10', min: 1, max: 3600, help: 'seconds a client may take to send the request line and headers (slow clients are cut off)' },
  { flag: 'http-keepalive-timeout', kind: 'int', default: '15', min: 1, max: 3600, help: 'seconds an idle keep-alive HTTP connection is kept open' },
  { flag: 'http-send-timeout', kind: 'int', default: '60', min: 1, max: 3600, help: 'seconds an HTTP response may go without the client taking any bytes before the connection is closed' },
  { flag: 'log-level', kind: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], help: 'log level' },
  { flag: 'drain-timeout', kind: 'int', default: '100', min: 0, max: 3600, help: 'seconds to let transfers finish after SIGTERM' },
  { flag: 'cloudwatch-emf', kind: 'bool', default: 'false', help: 'write the ActiveSessions metric (namespace TftpGateway) as CloudWatch Embedded Metric Format lines on stdout' },
  { flag: 'cloudwatch-emf-interval', kind: 'int', default: '60', min: 1, max: 3600, help: 'seconds between CloudWatch EMF lines' },
  { flag: 'service-name', kind: 'string', help: 'ServiceName dimension of the CloudWatch metric (default: --cloudwatch-emf-service-name, else tftp-gateway)' },
  { flag: 'cloudwatch-emf-service-name', kind: 'string', help: 'same as --service-name (the name the CDK stack sets)' },
  { flag: 'scale-in-protection', kind: 'bool', default: 'false', help: 'protect the ECS task from scale-in while transfers run (uses ECS_AGENT_URI; off outside ECS)' },
  { flag: 'local', kind: 'bool', default: 'false', help: 'serve from an embedded S3-compatible store on local disk (no AWS account)' },
  { flag: 'local-dir', kind: 'string', default: '.data/s3', help: 'directory of the embedded store' },
  { flag: 'workers', kind: 'int', min: 1, max: 256, help: 'threads serving transfers, sharing one block cache (default: the CPUs the process may use, honouring a cgroup CPU quota; 1: single-threaded, no worker threads)' },
] as const satisfies readonly FlagSpec[];

type Spec = (typeof FLAGS)[number];
/** A schema entry with every optional field readable (for code that walks all flags). */
type AnySpec = Spec & FlagSpec;
const SPEC_LIST: readonly AnySpec[] = FLAGS;
/** Every flag name, e.g. `'give-up-timeout'`. */
export type FlagName = Spec['flag'];
type SpecOf<F extends FlagName> = Extract<Spec, { readonly flag: F }>;
type ValueOfSpec<S> = S extends { readonly kind: 'list' }
  ? readonly string[]
  : S extends { readonly kind: 'int' | 'size' }
    ? number
    : S extends { readonly kind: 'bool' }
      ? boolean
      : S extends { readonly choices: readonly (infer C)[] }
        ? C
        : string;
/** A flag's parsed value: its kind's type (a choice union for `choices`), undefined only when it has no default. */
export type FlagValue<F extends FlagName> = ValueOfSpec<SpecOf<F>> | (SpecOf<F> extends { readonly default: string } ? never : undefined);
/** Every flag's parsed value, keyed by flag name. */
export type FlagValues = { readonly [F in FlagName]: FlagValue<F> };

export type PortMode = FlagValue<'port-mode'>;
export type ChecksumMode = FlagValue<'s3-checksum'>;
export type LogLevel = FlagValue<'log-level'>;

export function envName(flag: string): string {
  return `TFTP_GATEWAY_${flag.toUpperCase().replace(/-/g, '_')}`;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: MiB, mb: 1e6, mib: MiB, g: 1024 * MiB, gb: 1e9, gib: 1024 * MiB,
};

export function parseSize(text: string): number | undefined {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  return Math.floor(Number(m[1]) * unit);
}

export function parseListenAddress(text: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}

export function usage(): string {
  const lines = ['Usage: tftp-gateway serve [flags]', '', 'Flags (each also read from its environment variable):'];
  for (const spec of SPEC_LIST) {
    const arg = spec.kind === 'bool' ? '' : ' <value>';
    const def = spec.default !== undefined && spec.default !== '' ? ` (default ${spec.default})` : '';
    lines.push(`  --${spec.flag}${arg}`, `      ${spec.help}${def}. Env: ${envName(spec.flag)}`);
  }
  return lines.join('\n');
}

const SPECS: ReadonlyMap<string, AnySpec> = new Map(SPEC_LIST.map((s) => [s.flag, s]));

/** parseArgs options for every flag: booleans take no separate value, everything else one value. */
const PARSE_ARGS_OPTIONS = Object.fromEntries(
  FLAGS.map((s) => [s.flag, { type: s.kind === 'bool' ? 'boolean' : 'string', multiple: true }] as const),
) as Record<FlagName, { type: 'boolean' | 'string'; multiple: true }>;

/**
 * Splits argv into raw values per flag with `node:util` parseArgs (non-strict, from its tokens, so
 * every unknown or malformed flag is collected as a problem rather than stopping at the first).
 * `--no-X` turns a boolean flag off.
 */
function readArgv(argv: readonly string[], problems: string[]): Map<FlagName, string[]> {
  const values = new Map<FlagName, string[]>();
  const { tokens } = parseArgs({ args: [...argv], options: PARSE_ARGS_OPTIONS, strict: false, allowPositionals: true, tokens: true });
  let lastShortIndex = -1;
  for (const token of tokens) {
    if (token.kind === 'positional') {
      problems.push(`unexpected argument '${token.value}'`);
      continue;
    }
    if (token.kind === 'option-terminator') {
      problems.push('unknown flag --');
      continue;
    }
    if (!token.rawName.startsWith('--')) {
      // A short option (or a group, -abc, which parseArgs splits): one problem per argument.
      if (token.index !== lastShortIndex) problems.push(`unexpected argument '${argv[token.index]!}'`);
      lastShortIndex = token.index;
      continue;
    }
    const name = token.name;
    let value = token.value;
    let spec = SPECS.get(name);
    if (!spec && name.startsWith('no-') && SPECS.get(name.slice(3))?.kind === 'bool') {
      spec = SPECS.get(name.slice(3));
      value = 'false';
    }
    if (!spec) {
      problems.push(`unknown flag --${name}`);
      continue;
    }
    if (value === undefined) {
      if (spec.kind === 'bool') value = 'true';
      else {
        problems.push(`--${name} needs a value`);
        continue;
      }
    }
    const list = values.get(spec.flag) ?? [];
    list.push(value);
    values.set(spec.flag, list);
  }
  return values;
}

/** What a configuration was loaded from (worker threads load the same configuration again). */
export interface ConfigSource {
  readonly argv: readonly string[];
  /** Only the variables loadConfig reads: TFTP_GATEWAY_*, AWS_REGION, AWS_DEFAULT_REGION. */
  readonly env: Readonly<Record<string, string>>;
}

const configSources = new WeakMap<GatewayConfig, ConfigSource>();

/** The argv and environment `config` was loaded from (not a field: nothing of it is logged). */
export function configSource(config: GatewayConfig): ConfigSource | undefined {
  return configSources.get(config);
}

/**
 * Checks another layer adds (the access policy parses its flags): its problems join the same
 * ConfigError. It sees the configuration even when flags had problems, those flags at their defaults.
 */
export type ConfigCheck = (config: GatewayConfig) => readonly string[];

export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, check?: ConfigCheck): GatewayConfig {
  const config = parseConfig(argv, env, check);
  const read: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && (k.startsWith('TFTP_GATEWAY_') || k === 'AWS_REGION' || k === 'AWS_DEFAULT_REGION')) read[k] = v;
  }
  configSources.set(config, { argv: [...argv], env: read });
  return config;
}

function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv, check: ConfigCheck | undefined): GatewayConfig {
  const problems: string[] = [];
  const fromArgv = readArgv(argv, problems);

  const raw = (spec: AnySpec): string[] | undefined => {
    const cli = fromArgv.get(spec.flag);
    if (cli) return cli;
    const e = env[envName(spec.flag)];
    if (e !== undefined && e !== '') return spec.kind === 'list' ? e.split(',').map((s) => s.trim()).filter(Boolean) : [e];
    return undefined;
  };

  // Every flag that parsed; a flag with a problem (or without a value and default) is missing.
  const parsed = new Map<FlagName, FlagValues[FlagName]>();
  // What a flag with a problem falls back to (its default) while the other checks run.
  const fallback = new Map<FlagName, FlagValues[FlagName]>();
  for (const spec of SPEC_LIST) {
    const values = raw(spec);
    if (values !== undefined) {
      const v = parseValue(spec, values, problems);
      if (v !== undefined) parsed.set(spec.flag, v);
      else if (spec.default !== undefined) fallback.set(spec.flag, parseValue(spec, [spec.default], []));
    } else if (spec.default !== undefined) {
      parsed.set(spec.flag, parseValue(spec, [spec.default], problems));
    }
  }

  /**
   * A flag's value, typed by the schema. Undefined while validating when the flag had a problem;
   * `flag` must be a name in FLAGS (a typo does not compile).
   */
  const get = <F extends FlagName>(flag: F): FlagValue<F> | undefined => parsed.get(flag) as FlagValue<F> | undefined;
  /** A flag's value, or its default when the given value had a problem (a flag with a default always has one). */
  const value = <F extends FlagName>(flag: F): FlagValue<F> => (parsed.has(flag) ? parsed.get(flag) : fallback.get(flag)) as FlagValue<F>;
  const local = get('local') ?? false;

  const listen: ListenAddress[] = [];
  for (const text of get('listen') ?? []) {
    const addr = parseListenAddress(text);
    if (addr) listen.push(addr);
    else problems.push(`--listen: '${text}' is not host:port or [ipv6]:port`);
  }

  let portRange: GatewayConfig['portRange'];
  const rangeText = get('port-range');
  if (rangeText !== undefined) {
    const m = /^([0-9]{1,5})-([0-9]{1,5})$/.exec(rangeText);
    const low = m ? Number(m[1]) : NaN;
    const high = m ? Number(m[2]) : NaN;
    if (!m || low < 1 || high > 65535 || low > high) problems.push(`--port-range: '${rangeText}' is not LOW-HIGH within 1-65535`);
    else portRange = { low, high };
  }

  const bucket = get('s3-bucket');
  if (!bucket && !local) problems.push(`--s3-bucket (${envName('s3-bucket')}) is required (or --local for the embedded store)`);

  const endpoint = get('s3-endpoint');
  if (endpoint !== undefined) {
    try {
      const url = new URL(endpoint);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') problems.push(`--s3-endpoint: '${endpoint}' must be http(s)`);
    } catch {
      problems.push(`--s3-endpoint: '${endpoint}' is not a URL`);
    }
  }

  let httpListen: ListenAddress | undefined;
  const httpText = get('http-listen');
  if (httpText !== undefined && httpText !== 'off') {
    httpListen = parseListenAddress(httpText);
    if (!httpListen) problems.push(`--http-listen: '${httpText}' is not host:port or 'off'`);
  }

  const httpBootListen: ListenAddress[] = [];
  for (const text of get('http-boot-listen') ?? []) {
    for (const part of text.split(',').map((t) => t.trim()).filter(Boolean)) {
      const addr = parseListenAddress(part);
      if (addr) httpBootListen.push(addr);
      else problems.push(`--http-boot-listen: '${part}' is not host:port or [ipv6]:port`);
    }
  }

  // A transfer gives up with its own ERROR before the stall reaper: an explicit give-up time at or
  // over the stall timeout is a mistake; the default follows a shorter stall timeout down (below).
  const giveUp = get('give-up-timeout');
  const stall = get('stall-timeout');
  if (giveUp !== undefined && stall !== undefined && giveUp >= stall && raw(SPECS.get('give-up-timeout')!) !== undefined) {
    problems.push(`--give-up-timeout (${giveUp} s) must be below --stall-timeout (${stall} s)`);
  }

  const rtoMin = get('rto-min-ms');
  const rtoMax = get('rto-max-ms');
  if (rtoMin !== undefined && rtoMax !== undefined && rtoMin > rtoMax) problems.push('--rto-min-ms must not exceed --rto-max-ms');
  const metadataTimeout = get('s3-metadata-timeout-ms');
  const retryBudget = get('s3-retry-budget-ms');
  if (metadataTimeout !== undefined && retryBudget !== undefined && metadataTimeout > retryBudget) {
    problems.push('--s3-metadata-timeout-ms must not exceed --s3-retry-budget-ms');
  }

  let cacheSize = get('cache-size');
  if (cacheSize === undefined) cacheSize = defaultCacheSize();
  const rangeSize = get('range-size');
  if (rangeSize !== undefined && cacheSize < rangeSize * 2) {
    problems.push(`--cache-size must hold at least two ranges (${rangeSize * 2} bytes)`);
  }

  const refuseOptions = splitList(get('refuse-options') ?? []).map((o) => o.toLowerCase());
  for (const o of refuseOptions) {
    if (!['blksize', 'tsize', 'timeout', 'windowsize'].includes(o)) problems.push(`--refuse-options: '${o}' is not one of blksize, tsize, timeout, windowsize`);
  }

  const config: GatewayConfig = Object.freeze({
    listen,
    portMode: value('port-mode'),
    portRange,
    s3Bucket: bucket ?? 'tftp',
    s3Prefix: value('s3-prefix'),
    s3Endpoint: endpoint,
    s3Region: value('s3-region') ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    s3ForcePathStyle: value('s3-force-path-style'),
    s3Checksum: value('s3-checksum'),
    s3MaxAttempts: value('s3-max-attempts'),
    s3RequestTimeoutMs: value('s3-request-timeout-ms'),
    s3MetadataTimeoutMs: value('s3-metadata-timeout-ms'),
    s3RetryBudgetMs: value('s3-retry-budget-ms'),
    allowWrite: value('allow-write'),
    allowOverwrite: value('allow-overwrite'),
    maxUploadSize: value('max-upload-size'),
    maxBlksize: value('max-blksize'),
    maxWindowsize: value('max-windowsize'),
    maxWindowBytes: value('max-window-bytes'),
    retries: value('retries'),
    // The default (63 s) follows a shorter --stall-timeout down to just below it.
    giveUpTimeoutS: Math.min(value('give-up-timeout'), Math.max(1, value('stall-timeout') - 1)),
    rtoBackoff: value('rto-backoff'),
    unverifiedRetries: value('unverified-retries'),
    unverifiedAmplification: value('unverified-amplification'),
    unverifiedBytesPerSecond: value('unverified-bytes-per-second'),
    rtoInitialMs: value('rto-initial-ms'),
    rtoMinMs: value('rto-min-ms'),
    rtoMaxMs: value('rto-max-ms'),
    maxSessions: value('max-sessions'),
    mapFile: value('map-file'),
    mapBackslashes: value('map-backslashes'),
    mapLowercase: value('map-lowercase'),
    mapStripJunk: value('map-strip-junk'),
    clientPrefixes: value('client-prefix') ?? [],
    readAllow: value('read-allow'),
    readDeny: value('read-deny') ?? [],
    writeAllow: value('write-allow') ?? [],
    writeDeny: value('write-deny') ?? [],
    writePrefixes: value('write-prefixes') ?? [],
    refuseOptions,
    maxSessionsPerClient: value('max-sessions-per-client'),
    rateLimit: value('rate-limit'),
    rateBurst: value('rate-burst'),
    stallTimeoutS: value('stall-timeout'),
    cacheSize,
    cacheDir: value('cache-dir') || undefined,
    cacheDirSize: value('cache-dir-size'),
    warm: value('warm') ?? [],
    warmFile: value('warm-file') || undefined,
    warmTimeoutS: value('warm-timeout'),
    warmIntervalS: value('warm-interval'),
    rangeSize: value('range-size'),
    readAhead: value('read-ahead'),
    rangeStreams: value('range-streams'),
    s3Streams: value('s3-streams'),
    metadataTtlMs: value('metadata-ttl-ms'),
    staleIfErrorS: value('stale-if-error'),
    uploadPartSize: value('upload-part-size'),
    uploadQueueSize: value('upload-queue-size'),
    httpListen,
    httpBootListen,
    httpMaxConnections: value('http-max-connections'),
    httpMaxConnectionsPerClient: value('http-max-connections-per-client'),
    httpHeaderTimeoutS: value('http-header-timeout'),
    httpKeepAliveTimeoutS: value('http-keepalive-timeout'),
    httpSendTimeoutS: value('http-send-timeout'),
    logLevel: value('log-level'),
    drainTimeoutS: value('drain-timeout'),
    cloudwatchEmf: value('cloudwatch-emf'),
    cloudwatchEmfIntervalS: value('cloudwatch-emf-interval'),
    serviceName: value('service-name') || value('cloudwatch-emf-service-name') || 'tftp-gateway',
    scaleInProtection: value('scale-in-protection'),
    local,
    localDir: value('local-dir'),
    workers: value('workers') ?? usableCpus(),
  });
  // Checks of another layer (the access policy) see the configuration even when flags had problems
  // (those flags read as their defaults), so one ConfigError lists every problem.
  if (check) problems.push(...check(config));
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Parses one flag's values (the last wins, lists keep all); a problem is reported, the result is then undefined. */
function parseValue(spec: AnySpec, values: readonly string[], problems: string[]): FlagValues[FlagName] | undefined {
  const last = values[values.length - 1]!;
  const where = `--${spec.flag} (${envName(spec.flag)})`;
  switch (spec.kind) {
    case 'list':
      return values;
    case 'string':
      if (spec.choices && !spec.choices.includes(last)) {
        problems.push(`${where}: '${last}' is not one of ${spec.choices.join(', ')}`);
        return undefined;
      }
      return last;
    case 'bool': {
      const v = last.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(v)) return true;
      if (['false', '0', 'no', 'off'].includes(v)) return false;
      problems.push(`${where}: '${last}' is not a boolean`);
      return undefined;
    }
    case 'int':
    case 'size': {
      const n = spec.kind === 'int' ? (/^\s*[0-9]+\s*$/.test(last) ? Number(last) : undefined) : parseSize(last);
      if (n === undefined || !Number.isSafeInteger(n)) problems.push(`${where}: '${last}' is not a ${spec.kind === 'int' ? 'whole number' : 'size (e.g. 512MiB)'}`);
      else if (spec.min !== undefined && n < spec.min) problems.push(`${where}: ${n} is below the minimum ${spec.min}`);
      else if (spec.max !== undefined && n > spec.max) problems.push(`${where}: ${n} is above the maximum ${spec.max}`);
      else return n;
      return undefined;
    }
  }
}

/** Flattens repeated and comma-separated values, dropping empty ones. */
function splitList(texts: readonly string[]): string[] {
  return texts.flatMap((t) => t.split(',')).map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * The configuration as logged at start (no secrets live in it: credentials come from the AWS chain).
 * The policy flags appear as given; the composition root adds the parsed policy's summary.
 */
export function describeConfig(config: GatewayConfig): Record<string, unknown> {
  return {
    ...config,
    listen: config.listen.map((a) => `${a.host}:${a.port}`),
    httpBootListen: config.httpBootListen.map((a) => `${a.host}:${a.port}`),
  };
}
