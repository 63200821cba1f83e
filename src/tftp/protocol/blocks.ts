/**
 * Block-number arithmetic. Sessions count blocks with an unbounded "absolute" index
 * (1, 2, 3, ... past 65535); the wire carries it modulo 65536 (rollover wraps to 0, as
 * tftp-hpa, dnsmasq and most clients expect).
 */

export function wireBlock(absolute: number): number {
  return absolute & 0xffff;
}

/**
 * Maps a 16-bit block number from the wire back to the absolute index nearest to `reference`
 * (the session's current position), within a half-space of 32768 blocks either way.
 */
export function absoluteBlock(wire: number, reference: number): number {
  const base = reference - (reference & 0xffff);
  let candidate = base + wire;
  if (candidate - reference > 0x8000) candidate -= 0x10000;
  else if (reference - candidate > 0x8000) candidate += 0x10000;
  return candidate;
}
