import process from 'node:process';
import { ConfigError, loadConfig, type GatewayConfig } from '../config/config.js';
import type { AccessPolicyOptions } from '../policy/access-policy.js';
import { accessPolicyFromConfig } from '../policy/from-config.js';
import { warmSetFromConfig } from '../policy/warm-names.js';
import type { DispatcherOptions } from '../tftp/dispatcher.js';
import type { HttpFrontEndOptions } from '../http/http-front-end.js';
import { ClientLimits } from '../policy/limits.js';
import type { Clock } from '../tftp/session/types.js';
import type { RequestPolicy } from '../tftp/requests.js';

/** A configuration and the access policy it describes. */
export interface GatewaySetup {
  readonly config: GatewayConfig;
  readonly access: AccessPolicyOptions;
}

/**
 * Loads the configuration and builds the access policy from it (the policy layer parses its own
 * flags): every problem of either in one ConfigError. What the CLI and map-test start from.
 */
export function loadGatewaySetup(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): GatewaySetup {
  let access: AccessPolicyOptions | undefined;
  const config = loadConfig(argv, env, (c) => {
    const built = accessPolicyFromConfig(c);
    access = built.policy;
    // The warm set's names obey the request name rules: a bad one is a configuration problem too.
    return [...built.problems, ...warmSetFromConfig(c).problems];
  });
  return { config, access: access! };
}

/** The access policy of a configuration; throws ConfigError when its policy flags are wrong. */
export function accessPolicy(config: GatewayConfig): AccessPolicyOptions {
  const { policy, problems } = accessPolicyFromConfig(config);
  if (problems.length > 0) throw new ConfigError(problems);
  return policy;
}

/**
 * The dispatcher's and the request opener's settings from the configuration: one place, used by
 * the single-threaded gateway and by every worker thread alike.
 */
export function requestPolicy(config: GatewayConfig): RequestPolicy {
  return {
    access: accessPolicy(config),
    refusedOptions: new Set(config.refuseOptions),
    allowOverwrite: config.allowOverwrite,
    maxUploadSize: config.maxUploadSize,
    maxBlksize: config.maxBlksize,
    maxWindowsize: config.maxWindowsize,
    readAhead: config.readAhead,
  };
}

export function dispatcherOptions(config: GatewayConfig): DispatcherOptions {
  return {
    portMode: config.portMode,
    maxSessions: config.maxSessions,
    maxWindowBytes: config.maxWindowBytes,
    maxUploadSize: config.maxUploadSize,
    maxSessionsPerClient: config.maxSessionsPerClient,
    rateLimit: config.rateLimit,
    rateBurst: config.rateBurst,
    stallTimeoutMs: config.stallTimeoutS * 1000,
    unverifiedAmplification: config.unverifiedAmplification,
    unverifiedBytesPerSecond: config.unverifiedBytesPerSecond,
    retransmit: {
      initialMs: config.rtoInitialMs,
      minMs: config.rtoMinMs,
      maxMs: config.rtoMaxMs,
      maxRetries: config.retries,
      giveUpMs: config.giveUpTimeoutS * 1000,
      backoff: config.rtoBackoff,
      unverifiedRetries: config.unverifiedRetries,
    },
  };
}

/** The per-client limits of one thread (single-threaded mode): TFTP and HTTP requests share the rate limit. */
export function clientLimits(config: GatewayConfig, clock: Clock): ClientLimits {
  return new ClientLimits({
    maxSessionsPerClient: config.maxSessionsPerClient,
    ratePerSecond: config.rateLimit,
    burst: config.rateBurst,
    unverifiedBytesPerSecond: config.unverifiedBytesPerSecond,
    clock,
  });
}

/**
 * The HTTP boot front end's settings. With worker threads each thread serves its share of the
 * connections (the kernel spreads them by SO_REUSEPORT), so each holds its share of the caps.
 */
export function httpFrontEndOptions(config: GatewayConfig, threads: number): HttpFrontEndOptions {
  const share = (cap: number): number => (cap === 0 ? 0 : Math.max(1, Math.ceil(cap / threads)));
  return {
    listen: config.httpBootListen,
    maxConnections: share(config.httpMaxConnections),
    maxConnectionsPerClient: share(config.httpMaxConnectionsPerClient),
    headerTimeoutMs: config.httpHeaderTimeoutS * 1000,
    keepAliveTimeoutMs: config.httpKeepAliveTimeoutS * 1000,
    sendTimeoutMs: config.httpSendTimeoutS * 1000,
    reusePort: threads > 1,
  };
}
