import net from 'node:net';

/**
 * A client's address, parsed once when its request is admitted and handed to the access policy
 * and the per-client limits. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack
 * socket reports for an IPv4 client) are the IPv4 address they carry, so one IPv4 rule or limit
 * covers a client on either kind of socket.
 */
export interface ClientAddress {
  /**
   * The address clients are known by in logs, limits and map rules' `\i`: IPv4 dotted, IPv4-mapped
   * IPv6 as IPv4, other IPv6 lower-case without a zone id (`%eth0`). Text that is not an IP address
   * is kept as it was.
   */
  readonly text: string;
  /** undefined: not an IP address (it then falls in no CIDR block). */
  readonly family: 'ipv4' | 'ipv6' | undefined;
  /** The address as hex digits (tftp-hpa's `\x`): 8 for IPv4 (as PXELINUX uses), 32 for IPv6; '' if not an address. */
  readonly hex: string;
}

/** Parses a client address (as a socket reports it, or as an operator types it). Never throws. */
export function parseClientAddress(address: string): ClientAddress {
  const bare = address.trim().replace(/%.*$/, '');
  if (net.isIPv4(bare)) return ipv4(bare.split('.').map(Number));
  if (net.isIPv6(bare)) {
    const groups = ipv6Groups(bare);
    if (isV4Mapped(groups)) return ipv4([groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff]);
    return { text: bare.toLowerCase(), family: 'ipv6', hex: groups.map((g) => hex(g, 4)).join('') };
  }
  return { text: address, family: undefined, hex: '' };
}

function ipv4(octets: readonly number[]): ClientAddress {
  return { text: octets.join('.'), family: 'ipv4', hex: octets.map((o) => hex(o, 2)).join('') };
}

function hex(n: number, digits: number): string {
  return n.toString(16).toUpperCase().padStart(digits, '0');
}

/** Whether eight IPv6 groups are an IPv4-mapped address (`::ffff:0:0/96`). */
export function isV4Mapped(groups: readonly number[]): boolean {
  return groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
}

/** The eight 16-bit groups of an IPv6 address `net.isIPv6` accepted (a dotted IPv4 tail included). */
export function ipv6Groups(text: string): number[] {
  let head = text;
  const lastColon = head.lastIndexOf(':');
  const last = head.slice(lastColon + 1);
  if (last.includes('.')) {
    const [a, b, c, d] = last.split('.').map(Number) as [number, number, number, number];
    head = `${head.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const leftParts = left ? left.split(':') : [];
  const rightParts = right ? right.split(':') : [];
  const missing = 8 - leftParts.length - rightParts.length;
  return [...leftParts, ...new Array<string>(Math.max(0, missing)).fill('0'), ...rightParts].map((g) => parseInt(g, 16));
}
