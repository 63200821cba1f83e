import type { GatewayConfig } from '../config/config.js';
import { normalisePrefix } from './keys.js';
import type { AccessPolicyOptions } from './access-policy.js';

/** Longest file name accepted (S3 keys are at most 1024 bytes too). */
export const MAX_NAME_LENGTH = 1024;

/** The access policy a configuration describes (used by the gateway and by map-test). */
export function accessPolicyFromConfig(config: GatewayConfig): AccessPolicyOptions {
  return {
    defaultPrefix: normalisePrefix(config.s3Prefix),
    clientPrefixes: config.clientPrefixes,
    readAllow: config.readAllow,
    readDeny: config.readDeny,
    writeAllowAll: config.allowWrite,
    writeAllow: config.writeAllow,
    writeDeny: config.writeDeny,
    writePrefixes: config.writePrefixes,
    names: { stripJunk: config.mapStripJunk, backslashes: config.mapBackslashes, lowercase: config.mapLowercase },
    mapRules: config.mapRules,
    maxNameLength: MAX_NAME_LENGTH,
  };
}
