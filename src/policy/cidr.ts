import net from 'node:net';
import { ipv6Groups, isV4Mapped, type ClientAddress } from './client-address.js';

/**
 * CIDR blocks and lists of them, matched with Node's `net.BlockList`. An IPv4-mapped IPv6 block
 * of at least /96 (`::ffff:10.0.0.0/104`) is the IPv4 block it maps (`10.0.0.0/8`), and clients
 * come IPv4-mapped addresses already turned into IPv4 (ClientAddress), so one IPv4 rule covers a
 * client on either kind of socket. IPv4 and IPv6 rules are kept apart: an IPv6 block (even `::/0`)
 * never matches an IPv4 client, nor an IPv4 block an IPv6 one.
 */

export type IpFamily = 'ipv4' | 'ipv6';

/** A CIDR block: its network address, prefix length and family. */
export interface CidrBlock {
  /** The network address (host bits cleared), e.g. `10.0.0.0`. */
  readonly address: string;
  /** Prefix length in bits. */
  readonly prefix: number;
  readonly family: IpFamily;
}

export class InvalidCidrError extends Error {
  override readonly name = 'InvalidCidrError';
  constructor(readonly text: string) {
    super(`'${text}' is not an IPv4/IPv6 address or CIDR block`);
  }
}

/**
 * Parses `a.b.c.d/n`, `x::y/n` or a bare address (a /32 or /128); throws InvalidCidrError.
 * IPv4-mapped IPv6 blocks of /96 or longer come back as IPv4; a zone id (`%eth0`) is ignored.
 */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const block = cidrBlock(text);
  if (!block) throw new InvalidCidrError(text);
  return block;
}

function cidrBlock(text: string): CidrBlock | undefined {
  const trimmed = text.trim();
  const slash = trimmed.indexOf('/');
  const addrText = (slash === -1 ? trimmed : trimmed.slice(0, slash)).replace(/%.*$/, '');
  const bitsText = slash === -1 ? undefined : trimmed.slice(slash + 1);
  if (bitsText !== undefined && !/^[0-9]{1,3}$/.test(bitsText)) return undefined;
  if (net.isIPv4(addrText)) {
    const prefix = bitsText === undefined ? 32 : Number(bitsText);
    if (prefix > 32) return undefined;
    return { address: maskV4(addrText.split('.').map(Number), prefix), prefix, family: 'ipv4' };
  }
  if (!net.isIPv6(addrText)) return undefined;
  const prefix = bitsText === undefined ? 128 : Number(bitsText);
  if (prefix > 128) return undefined;
  const groups = ipv6Groups(addrText);
  if (isV4Mapped(groups) && prefix >= 96) {
    const octets = [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff];
    return { address: maskV4(octets, prefix - 96), prefix: prefix - 96, family: 'ipv4' };
  }
  const masked = groups.map((g, i) => g & maskBits(prefix - i * 16, 16));
  // Canonical text: lower-case hex groups, the first run of two or more zero groups as `::`.
  const address = masked.map((g) => g.toString(16)).join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
  return { address, prefix, family: 'ipv6' };
}

/** The mask of one `width`-bit part of an address when `bits` of the prefix fall in it. */
function maskBits(bits: number, width: number): number {
  const n = Math.max(0, Math.min(width, bits));
  return n === 0 ? 0 : (((1 << width) - 1) >> (width - n)) << (width - n);
}

function maskV4(octets: readonly number[], prefix: number): string {
  return octets.map((o, i) => o & maskBits(prefix - i * 8, 8)).join('.');
}

/** A parsed block with its canonical text (`10.0.0.0/8`), matchable against client addresses. */
export class Cidr implements CidrBlock {
  readonly address: string;
  readonly prefix: number;
  readonly family: IpFamily;
  /** Canonical text, e.g. `10.0.0.0/8`. */
  readonly text: string;
  private readonly list = new net.BlockList();

  constructor(block: CidrBlock) {
    this.address = block.address;
    this.prefix = block.prefix;
    this.family = block.family;
    this.text = `${block.address}/${block.prefix}`;
    this.list.addSubnet(block.address, block.prefix, block.family);
  }

  /** Undefined if `text` is not a block or address. */
  static parse(text: string): Cidr | undefined {
    const block = cidrBlock(text);
    return block ? new Cidr(block) : undefined;
  }

  contains(client: ClientAddress): boolean {
    return client.family === this.family && this.list.check(client.text, client.family);
  }
}

/** A list of CIDR blocks; `matches` says whether a client falls in any of them. */
export class CidrList {
  private readonly v4 = new net.BlockList();
  private readonly v6 = new net.BlockList();

  constructor(readonly entries: readonly Cidr[]) {
    for (const c of entries) (c.family === 'ipv4' ? this.v4 : this.v6).addSubnet(c.address, c.prefix, c.family);
  }

  get isEmpty(): boolean {
    return this.entries.length === 0;
  }

  matches(client: ClientAddress): boolean {
    if (client.family === 'ipv4') return this.v4.check(client.text, 'ipv4');
    if (client.family === 'ipv6') return this.v6.check(client.text, 'ipv6');
    return false;
  }

  /** Parses comma-separated CIDR texts; every invalid one is reported in `problems`. */
  static parse(texts: readonly string[], problems: string[], what: string): CidrList {
    const entries: Cidr[] = [];
    for (const text of splitList(texts)) {
      const cidr = Cidr.parse(text);
      if (cidr) entries.push(cidr);
      else problems.push(`${what}: ${new InvalidCidrError(text).message}`);
    }
    return new CidrList(entries);
  }
}

/** Flattens repeated and comma-separated values, dropping empty ones. */
export function splitList(texts: readonly string[]): string[] {
  return texts.flatMap((t) => t.split(',')).map((s) => s.trim()).filter((s) => s.length > 0);
}
