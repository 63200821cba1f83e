import { parseCidr, type CidrBlock } from '../../src/policy/cidr.js';

/** The gateway's CIDR parser (throws on invalid text), so infra and the gateway accept the same blocks. */
export { parseCidr };
export type ParsedCidr = CidrBlock;

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
