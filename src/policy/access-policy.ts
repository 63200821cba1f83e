import { errorMessage, TransferError, type TransferErrorCode } from '../errors.js';
import { keyUnder, normalisePrefix, relativePathFor } from './keys.js';
import { Cidr, CidrList, splitList } from './cidr.js';
import type { ClientAddress } from './client-address.js';
import { applyMapRules, type MapRule } from './map-rules.js';
import { normaliseName, type NameOptions } from './names.js';

/**
 * Who may read or write what, as pure decisions: client rules by CIDR, per-client key prefixes,
 * file name normalisation and map rules, write locations. The RequestOpener asks `resolve` for
 * every request; a refusal is a PolicyRefusal carrying a bounded metric reason.
 */

export type RefusalReason = 'read-denied' | 'write-disabled' | 'write-denied' | 'write-location' | 'map-denied' | 'invalid-path';

export class PolicyRefusal extends TransferError {
  constructor(
    readonly reason: RefusalReason,
    code: TransferErrorCode,
    detail: string,
  ) {
    super(code, detail);
  }
}

export interface ClientPrefix {
  readonly cidr: Cidr;
  /** Key prefix ('' or ending in '/'). */
  readonly prefix: string;
}

export interface AccessPolicyOptions {
  /** Key prefix for clients no --client-prefix rule matches ('' or ending in '/'). */
  readonly defaultPrefix: string;
  readonly clientPrefixes: readonly ClientPrefix[];
  /** Clients that may read; undefined: every client. */
  readonly readAllow: CidrList | undefined;
  readonly readDeny: CidrList;
  /** Every client may write (--allow-write). */
  readonly writeAllowAll: boolean;
  /** Clients that may write (--write-allow). */
  readonly writeAllow: CidrList;
  readonly writeDeny: CidrList;
  /** Paths (relative to the client's tree, each ending in '/') writes must land under; empty: anywhere. */
  readonly writePrefixes: readonly string[];
  readonly names: NameOptions;
  readonly mapRules: readonly MapRule[];
  readonly maxNameLength: number;
}

export interface Resolution {
  /** The S3 key. */
  readonly key: string;
  /** The key prefix of the client's tree. */
  readonly prefix: string;
  /** The path within the tree. */
  readonly relative: string;
  /** The name after normalisation and map rules (before validation). */
  readonly mappedName: string;
  /** Map rule lines that matched. */
  readonly rulesApplied: readonly number[];
}

export type Operation = 'read' | 'write';

/** Whether the client may make this kind of request at all (before its file name is looked at). */
export function checkClient(options: AccessPolicyOptions, operation: Operation, ip: ClientAddress): PolicyRefusal | undefined {
  if (operation === 'read') {
    if (options.readDeny.matches(ip)) return new PolicyRefusal('read-denied', 'ACCESS_DENIED', 'client matches --read-deny');
    if (options.readAllow && !options.readAllow.matches(ip)) return new PolicyRefusal('read-denied', 'ACCESS_DENIED', 'client not in --read-allow');
    return undefined;
  }
  if (!options.writeAllowAll && options.writeAllow.isEmpty) {
    return new PolicyRefusal('write-disabled', 'WRITE_DISABLED', 'write requests are disabled');
  }
  if (options.writeDeny.matches(ip)) return new PolicyRefusal('write-denied', 'ACCESS_DENIED', 'client matches --write-deny');
  if (!options.writeAllowAll && !options.writeAllow.matches(ip)) return new PolicyRefusal('write-denied', 'ACCESS_DENIED', 'client not in --write-allow');
  return undefined;
}

/** The key prefix of a client's tree: the most specific --client-prefix block, else the default. */
export function prefixFor(options: AccessPolicyOptions, ip: ClientAddress): string {
  let best: ClientPrefix | undefined;
  for (const cp of options.clientPrefixes) {
    if (cp.cidr.contains(ip) && (!best || cp.cidr.prefix > best.cidr.prefix)) best = cp;
  }
  return best ? best.prefix : options.defaultPrefix;
}

/** Whether a write may land at this path of the client's tree. */
export function writeLocationAllowed(options: AccessPolicyOptions, relative: string): boolean {
  if (options.writePrefixes.length === 0) return true;
  return options.writePrefixes.some((p) => relative.startsWith(p));
}

/** Request → S3 key, or throws PolicyRefusal. */
export function resolveRequest(options: AccessPolicyOptions, rawName: string, operation: Operation, client: ClientAddress): Resolution {
  const refusal = checkClient(options, operation, client);
  if (refusal) throw refusal;
  if (rawName.length > options.maxNameLength) throw new PolicyRefusal('invalid-path', 'INVALID_PATH', 'file name too long');
  const normalised = normaliseName(rawName, options.names);
  if (normalised === undefined) throw new PolicyRefusal('invalid-path', 'INVALID_PATH', 'file name is not valid UTF-8');
  let mappedName = normalised;
  let rulesApplied: readonly number[] = [];
  if (options.mapRules.length > 0) {
    const outcome = applyMapRules(options.mapRules, normalised, {
      operation,
      clientAddress: client.text,
      clientHex: client.hex,
    });
    rulesApplied = outcome.applied;
    if (outcome.kind === 'denied') throw new PolicyRefusal('map-denied', 'ACCESS_DENIED', `denied by map rule on line ${outcome.line}`);
    if (outcome.kind === 'error') throw new PolicyRefusal('map-denied', 'ACCESS_DENIED', `map rules: ${outcome.reason}`);
    mappedName = outcome.name;
  }
  const prefix = prefixFor(options, client);
  let relative: string;
  let key: string;
  try {
    relative = relativePathFor(mappedName, options.maxNameLength);
    key = keyUnder(prefix, relative);
  } catch (err) {
    throw new PolicyRefusal('invalid-path', 'INVALID_PATH', errorMessage(err));
  }
  if (operation === 'write' && !writeLocationAllowed(options, relative)) {
    throw new PolicyRefusal('write-location', 'ACCESS_DENIED', 'path is outside --write-prefixes');
  }
  return { key, prefix, relative, mappedName, rulesApplied };
}

/** Parses `CIDR=prefix` entries (--client-prefix); problems are collected. */
export function parseClientPrefixes(texts: readonly string[], problems: string[]): ClientPrefix[] {
  const out: ClientPrefix[] = [];
  for (const text of splitList(texts)) {
    const eq = text.indexOf('=');
    const cidr = eq > 0 ? Cidr.parse(text.slice(0, eq)) : undefined;
    if (!cidr) {
      problems.push(`--client-prefix: '${text}' is not CIDR=prefix (e.g. 10.1.0.0/16=sites/berlin/)`);
      continue;
    }
    out.push({ cidr, prefix: normalisePrefix(text.slice(eq + 1)) });
  }
  return out;
}

/** Normalises --write-prefixes entries: relative, ending in '/'. */
export function parseWritePrefixes(texts: readonly string[]): string[] {
  return splitList(texts).map((p) => normalisePrefix(p)).filter((p) => p.length > 0);
}
