import fs from 'node:fs';
import type { GatewayConfig } from '../config/config.js';
import { parseClientPrefixes, parseWritePrefixes, type AccessPolicyOptions } from './access-policy.js';
import { CidrList } from './cidr.js';
import { normalisePrefix } from './keys.js';
import { MapFileError, parseMapRules, type MapRule } from './map-rules.js';
import { errorMessage } from '../errors.js';

/** Longest file name accepted (S3 keys are at most 1024 bytes too). */
export const MAX_NAME_LENGTH = 1024;

/** The configuration the access policy is built from (the policy flags, as given). */
export type AccessPolicyConfig = Pick<
  GatewayConfig,
  | 's3Prefix'
  | 'clientPrefixes'
  | 'readAllow'
  | 'readDeny'
  | 'allowWrite'
  | 'writeAllow'
  | 'writeDeny'
  | 'writePrefixes'
  | 'mapFile'
  | 'mapBackslashes'
  | 'mapLowercase'
  | 'mapStripJunk'
>;

export interface AccessPolicyFromConfig {
  readonly policy: AccessPolicyOptions;
  /** What is wrong with the policy flags, in the words of the configuration's other problems. */
  readonly problems: readonly string[];
}

/**
 * The access policy a configuration describes (used by the gateway and by map-test): parses the
 * CIDR lists, client prefixes, write prefixes and the map file, collecting every problem (the
 * composition root reports them as a ConfigError; `policy` is unusable when there are any).
 */
export function accessPolicyFromConfig(config: AccessPolicyConfig): AccessPolicyFromConfig {
  const problems: string[] = [];
  let mapRules: MapRule[] = [];
  const mapFile = config.mapFile;
  if (mapFile !== undefined) {
    try {
      mapRules = parseMapRules(fs.readFileSync(mapFile, 'utf8'));
    } catch (err) {
      if (err instanceof MapFileError) problems.push(...err.problems.map((p) => `--map-file ${mapFile}: ${p}`));
      else problems.push(`--map-file: cannot read '${mapFile}': ${errorMessage(err)}`);
    }
  }
  const readAllow = config.readAllow ? CidrList.parse(config.readAllow, problems, '--read-allow') : undefined;
  const readDeny = CidrList.parse(config.readDeny, problems, '--read-deny');
  const writeAllow = CidrList.parse(config.writeAllow, problems, '--write-allow');
  const writeDeny = CidrList.parse(config.writeDeny, problems, '--write-deny');
  if (config.allowWrite && !writeAllow.isEmpty) {
    problems.push('--allow-write lets every client write: give either it or --write-allow CIDRs, not both');
  }
  const clientPrefixes = parseClientPrefixes(config.clientPrefixes, problems);
  const policy: AccessPolicyOptions = {
    defaultPrefix: normalisePrefix(config.s3Prefix),
    clientPrefixes,
    readAllow,
    readDeny,
    writeAllowAll: config.allowWrite,
    writeAllow,
    writeDeny,
    writePrefixes: parseWritePrefixes(config.writePrefixes),
    names: { stripJunk: config.mapStripJunk, backslashes: config.mapBackslashes, lowercase: config.mapLowercase },
    mapRules,
    maxNameLength: MAX_NAME_LENGTH,
  };
  return { policy, problems };
}

/** The parsed policy for the start log line: canonical CIDR blocks, client prefixes, the number of map rules. */
export function describeAccessPolicy(policy: AccessPolicyOptions): Record<string, unknown> {
  const cidrs = (list: CidrList | undefined): string[] | undefined => list?.entries.map((c) => c.text);
  return {
    mapRules: policy.mapRules.length,
    clientPrefixes: policy.clientPrefixes.map((c) => `${c.cidr.text}=${c.prefix}`),
    readAllow: cidrs(policy.readAllow),
    readDeny: cidrs(policy.readDeny),
    writeAllow: cidrs(policy.writeAllow),
    writeDeny: cidrs(policy.writeDeny),
    writePrefixes: policy.writePrefixes,
  };
}
