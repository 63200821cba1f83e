import type { GatewayConfig } from '../config/config.js';
import { accessPolicyFromConfig } from '../policy/from-config.js';
import type { DispatcherOptions } from './dispatcher.js';
import type { RequestPolicy } from '../app/requests.js';

/**
 * The dispatcher's and the request opener's settings from the configuration: one place, used by
 * the single-threaded gateway and by every worker thread alike.
 */
export function requestPolicy(config: GatewayConfig): RequestPolicy {
  return {
    access: accessPolicyFromConfig(config),
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
