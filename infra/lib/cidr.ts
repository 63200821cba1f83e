import * as gatewayCidr from '../../src/policy/cidr.js';

/** A CIDR block as the gateway's parser returns it (the contract of src/policy/cidr.ts `parseCidr`). */
export interface ParsedCidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

/**
 * The gateway's CIDR parser (src/policy/cidr.ts), so infra and the gateway accept the same blocks.
 *
 * TEMPORARY ADAPTER: src/policy/cidr.ts is being rewritten on `net.BlockList` to export
 * `parseCidr(text: string): ParsedCidr` (throwing on invalid text). Until that lands it exports
 * `parseCidr(text): { family: 4 | 6; bits: number; text: string; ... } | undefined`. This function
 * accepts either result, so it compiles and behaves the same before and after; once the rewrite
 * has landed it can become `export { parseCidr } from '../../src/policy/cidr.js'`.
 */
export function parseCidr(text: string): ParsedCidr {
  const parsed: unknown = gatewayCidr.parseCidr(text);
  if (isObject(parsed)) {
    const { address, prefix, family, bits } = parsed;
    if (typeof address === 'string' && typeof prefix === 'number' && (family === 'ipv4' || family === 'ipv6')) {
      return { address, prefix, family };
    }
    if (typeof parsed['text'] === 'string' && typeof bits === 'number' && (family === 4 || family === 6)) {
      return { address: parsed['text'].slice(0, parsed['text'].lastIndexOf('/')), prefix: bits, family: family === 4 ? 'ipv4' : 'ipv6' };
    }
  }
  throw new Error(`not a CIDR block: ${text}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/** A dotted-quad IPv4 address as a number; undefined if it is not one. */
export function parseIpv4(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const octets = m.slice(1).map(Number);
  if (octets.some((o) => o > 255)) return undefined;
  return octets.reduce((acc, o) => acc * 256 + o, 0);
}

/**
 * An IPv4 block written `a.b.c.d/n` (what a security group rule takes) as its first address and
 * size; undefined for anything else (a bare address, IPv6, an invalid block).
 */
export function ipv4Block(text: string): { base: number; size: number } | undefined {
  if (!/^[0-9.]+\/[0-9]{1,2}$/.test(text)) return undefined;
  let parsed: ParsedCidr;
  try {
    parsed = parseCidr(text);
  } catch {
    return undefined;
  }
  const address = parseIpv4(parsed.address);
  if (parsed.family !== 'ipv4' || address === undefined) return undefined;
  const size = 2 ** (32 - parsed.prefix);
  return { base: address - (address % size), size };
}
