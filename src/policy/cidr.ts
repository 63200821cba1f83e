import net from 'node:net';

/**
 * IPv4/IPv6 addresses and CIDR blocks, pure. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a
 * dual-stack socket reports for an IPv4 client) are treated as the IPv4 address they carry, both
 * as client addresses and in rules, so one IPv4 rule covers a client on either kind of socket.
 */

export interface IpAddress {
  readonly family: 4 | 6;
  /** The address as an unsigned integer (32 or 128 bits). */
  readonly value: bigint;
}

export interface Cidr {
  readonly family: 4 | 6;
  readonly network: bigint;
  /** Prefix length in bits. */
  readonly bits: number;
  /** Canonical text, e.g. `10.0.0.0/8`. */
  readonly text: string;
}

const V4_MAPPED_PREFIX = 0xffffn << 32n;

function parseV4(text: string): bigint | undefined {
  if (!net.isIPv4(text)) return undefined;
  let value = 0n;
  for (const part of text.split('.')) value = (value << 8n) | BigInt(Number(part));
  return value;
}

function parseV6(text: string): bigint | undefined {
  if (!net.isIPv6(text)) return undefined;
  let head = text;
  let tailV4: bigint | undefined;
  const lastColon = head.lastIndexOf(':');
  const last = head.slice(lastColon + 1);
  if (last.includes('.')) {
    tailV4 = parseV4(last);
    if (tailV4 === undefined) return undefined;
    head = `${head.slice(0, lastColon + 1)}0:0`;
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const leftParts = left ? left.split(':') : [];
  const rightParts = right ? right.split(':') : [];
  const missing = 8 - leftParts.length - rightParts.length;
  if (missing < 0 || (right === undefined && missing !== 0)) return undefined;
  const groups = [...leftParts, ...new Array<string>(missing).fill('0'), ...rightParts];
  let value = 0n;
  for (const g of groups) value = (value << 16n) | BigInt(parseInt(g, 16));
  if (tailV4 !== undefined) value = (value & ~0xffffffffn) | tailV4;
  return value;
}

/** Parses an address; `::ffff:a.b.c.d` comes back as IPv4. A zone id (`%eth0`) is ignored. */
export function parseIp(text: string): IpAddress | undefined {
  const bare = text.trim().replace(/%.*$/, '');
  const v4 = parseV4(bare);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = parseV6(bare);
  if (v6 === undefined) return undefined;
  if (v6 >> 32n === 0xffffn) return { family: 4, value: v6 & 0xffffffffn };
  return { family: 6, value: v6 };
}

function formatV4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.');
}

/** The address a client is known by in logs, limits and `\i`: IPv4-mapped IPv6 shown as IPv4. */
export function canonicalClientAddress(text: string): string {
  const ip = parseIp(text);
  if (!ip) return text;
  return ip.family === 4 ? formatV4(ip.value) : text.replace(/%.*$/, '').toLowerCase();
}

/** The client address as hex digits (tftp-hpa's `\x`): 8 for IPv4 (as PXELINUX uses), 32 for IPv6. */
export function hexClientAddress(text: string): string {
  const ip = parseIp(text);
  if (!ip) return '';
  return ip.value.toString(16).toUpperCase().padStart(ip.family === 4 ? 8 : 32, '0');
}

/** Parses `a.b.c.d/n`, `x::y/n` or a bare address (a /32 or /128). Undefined if invalid. */
export function parseCidr(text: string): Cidr | undefined {
  const trimmed = text.trim();
  const slash = trimmed.indexOf('/');
  const addrText = slash === -1 ? trimmed : trimmed.slice(0, slash);
  const bitsText = slash === -1 ? undefined : trimmed.slice(slash + 1);
  if (bitsText !== undefined && !/^[0-9]{1,3}$/.test(bitsText)) return undefined;
  const bare = addrText.replace(/%.*$/, '');
  const v4 = parseV4(bare);
  let family: 4 | 6;
  let value: bigint;
  let bits: number;
  if (v4 !== undefined) {
    family = 4;
    value = v4;
    bits = bitsText === undefined ? 32 : Number(bitsText);
    if (bits > 32) return undefined;
  } else {
    const v6 = parseV6(bare);
    if (v6 === undefined) return undefined;
    bits = bitsText === undefined ? 128 : Number(bitsText);
    if (bits > 128) return undefined;
    if (v6 >> 32n === 0xffffn && bits >= 96) {
      // ::ffff:10.0.0.0/104 is the IPv4 block 10.0.0.0/8.
      family = 4;
      value = v6 & 0xffffffffn;
      bits -= 96;
    } else {
      family = 6;
      value = v6;
    }
  }
  const width = family === 4 ? 32 : 128;
  const network = value & maskOf(bits, width);
  const shown = family === 4 ? formatV4(network) : formatV6(network);
  return { family, network, bits, text: `${shown}/${bits}` };
}

function maskOf(bits: number, width: number): bigint {
  if (bits === 0) return 0n;
  const all = (1n << BigInt(width)) - 1n;
  return all ^ ((1n << BigInt(width - bits)) - 1n);
}

function formatV6(value: bigint): string {
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((value >> BigInt(i * 16)) & 0xffffn).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false;
  const width = cidr.family === 4 ? 32 : 128;
  return (ip.value & maskOf(cidr.bits, width)) === cidr.network;
}

/** A list of CIDR blocks; `matches` says whether an address falls in any of them. */
export class CidrList {
  constructor(readonly entries: readonly Cidr[]) {}

  get isEmpty(): boolean {
    return this.entries.length === 0;
  }

  matches(ip: IpAddress | undefined): boolean {
    if (!ip) return false;
    return this.entries.some((c) => cidrContains(c, ip));
  }

  /** Parses comma-separated CIDR texts; every invalid one is reported in `problems`. */
  static parse(texts: readonly string[], problems: string[], what: string): CidrList {
    const entries: Cidr[] = [];
    for (const text of splitList(texts)) {
      const cidr = parseCidr(text);
      if (cidr) entries.push(cidr);
      else problems.push(`${what}: '${text}' is not an IPv4/IPv6 address or CIDR block`);
    }
    return new CidrList(entries);
  }
}

/** Flattens repeated and comma-separated values, dropping empty ones. */
export function splitList(texts: readonly string[]): string[] {
  return texts.flatMap((t) => t.split(',')).map((s) => s.trim()).filter((s) => s.length > 0);
}
